#!/usr/bin/env bash
# Install what smart3d needs on a fresh Debian/Ubuntu machine.
#   bash install.sh        -> the app and the library
#   bash install.sh test   -> also the test tools (headless Chromium + Playwright)
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-app}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
pkgs="libosmesa6"                                     # offscreen OpenGL for pyrender on CPU
[ "$mode" = test ] && pkgs="$pkgs chromium chromium-driver g++"   # g++: torch.compile (train --compile)
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null
fi
PIP="python -m pip install -q --disable-pip-version-check"
$PIP torch==2.13.0                                    # first: the pin picks the CPU wheel here
$PIP -r requirements.txt
$PIP --no-deps pyrender==0.1.45                       # its dependencies are in requirements.txt, with a
                                                      # PyOpenGL that works (its pin, 3.1.0, breaks OSMesa)
$PIP --no-deps --no-build-isolation -e .                # smart3d importable from anywhere
if [ "$mode" = test ]; then $PIP -r requirements-test.txt; fi
echo "smart3d: install ($mode) done"
