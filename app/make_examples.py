"""Write the example partial scans shown in the app (``assets/scans``).

    python -m app.make_examples [--out assets/scans]

Each is a benchmark shape (``smart3d.dataset.make_sample``) in the canonical frame, cut by a plane
or seen by one simulated depth camera (``app.inputs.make_scan``), at most 4096 points, in three of
the accepted formats (.ply, .xyz, .npy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .inputs import make_scan, write_scan
from .layout import SCANS_DIR

# file -> (class, index, method, azimuth, elevation, offset)
EXAMPLES = {
    "chair_plane_cut.ply": ("chair", 3, "plane", 90, 0, 0.1),
    "airplane_single_view.xyz": ("airplane", 5, "view", 30, 35, 0.0),
    "mug_single_view.npy": ("mug", 2, "view", -40, 20, 0.0),
}


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for name, spec in EXAMPLES.items():
        visible, hidden = make_scan(*spec)
        path = write_scan(visible, out / name)
        print(f"{path}: {len(visible)} points seen, {len(hidden)} of the dense samples hidden")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SCANS_DIR), help="folder for the example scans")
    main(parser.parse_args())
