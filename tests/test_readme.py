"""The README's runnable blocks run, and the files the docs cite exist.

A fenced block right after a ``<!-- test -->`` line in README.md is run: every ``bash`` line as a
command, every ``python`` block as a script, from the repository root. Counts and steps are made
small (``--num 1``, 4 decoding steps) unless ``SMART3D_README_FULL=1``, and every ``--out out/...``
goes to a fresh temporary folder. Lines that install, serve the app or train are not run.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, ROOT / "weights" / "MODEL_CARD.md", ROOT / "docs" / "EXPERIMENTS.md"]
FULL = os.environ.get("SMART3D_README_FULL") == "1"
QUICK_STEPS = 4
NOT_RUN = ("bash install.sh", "python app.py", "torchrun", "python -m smart3d train", "python -m smart3d data")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block that follows a ``<!-- test -->`` line."""
    pattern = re.compile(r"^<!-- test -->\n```(\w+)\n(.*?)^```$", re.M | re.S)
    return [(m.group(1), m.group(2)) for m in pattern.finditer(text)]


BLOCKS = readme_blocks(README.read_text())
COMMANDS = [line.split("  #")[0].strip() for lang, code in BLOCKS if lang == "bash"
            for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
SCRIPTS = [code for lang, code in BLOCKS if lang == "python"]


def quick_command(line: str, tmp: Path) -> list[str]:
    """The README line as argv: small counts and steps, outputs under ``tmp``."""
    argv = shlex.split(line)
    for i, arg in enumerate(argv):
        if arg == "--out" and argv[i + 1].startswith("out/"):
            argv[i + 1] = str(tmp / argv[i + 1][len("out/"):])
        if arg == "--num" and not FULL:
            argv[i + 1] = "1"
    if not FULL and argv[:3] == ["python", "-m", "smart3d"] and argv[3] in ("generate", "complete") \
            and "--steps" not in argv:
        argv += ["--steps", str(QUICK_STEPS)]
    assert argv[0] == "python", line
    return [sys.executable, *argv[1:]]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_readme_marks_the_quick_start():
    assert SCRIPTS, "no <!-- test --> python block in README.md"
    runnable = [c for c in COMMANDS if not c.startswith(NOT_RUN)]
    for what in ("classes", "generate --class", "generate --image", "complete", "shapes"):
        assert any(c.startswith(f"python -m smart3d {what}") for c in runnable), what
    outs = [shlex.split(c)[shlex.split(c).index("--out") + 1] for c in runnable if "--out" in c]
    assert len(outs) == len(set(outs)), f"README commands share an output: {outs}"


@pytest.mark.parametrize("line", [c for c in COMMANDS if not c.startswith(NOT_RUN)])
def test_readme_command(line, tmp_path):
    argv = quick_command(line, tmp_path)
    done = run(argv)
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
        assert out.exists() and (out.is_file() or any(out.iterdir())), f"{line}: nothing written to {out}"
    if line.startswith("python -m smart3d classes"):
        assert "chair" in done.stdout.split()


@pytest.mark.parametrize("index", range(len(SCRIPTS)))
def test_readme_python(index, tmp_path):
    code = SCRIPTS[index]
    if not FULL:
        code = re.sub(r"num_steps=\d+", f"num_steps={QUICK_STEPS}", code)
        code = re.sub(r"\bnum=\d+", "num=1", code)
    script = tmp_path / "readme_block.py"
    script.write_text(code)
    done = run([sys.executable, str(script)])
    assert done.returncode == 0, f"{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def expand(pattern: str) -> list[str]:
    """``a{b,c}d`` -> [abd, acd] (nested braces not needed)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return list(itertools.chain.from_iterable(expand(pattern[:m.start()] + alt + pattern[m.end():])
                                              for alt in m.group(1).split(",")))


PATH = re.compile(r"(?<![\w/.-])((?:benchmarks|experiments|assets|weights|tests|smart3d|app|docs)/[\w{},*.\-/]+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_cited_files_exist(doc):
    """Every repository path the docs name (in code spans or links) is there; none points outside."""
    text = doc.read_text()
    assert "../shared" not in text
    missing = []
    for span in re.findall(r"`([^`]+)`", text) + re.findall(r"\]\(([^)#]+)", text):
        for raw in PATH.findall(span):
            raw = raw.rstrip(".,")
            if re.search(r"NAME|DIR", raw):
                continue  # a placeholder such as weights/NAME.json
            if raw.startswith("weights/") and "." not in raw.rsplit("/", 1)[-1]:
                continue  # a weights stem such as weights/tokenizer names a pair of files
            for path in expand(raw):
                base = doc.parent if span.startswith("..") else ROOT
                if not glob.glob(str(base / path)) and not glob.glob(str(ROOT / path)):
                    missing.append(path)
    for link in re.findall(r"\]\((\.\./[^)#]+)", text):
        if not (doc.parent / link).exists():
            missing.append(link)
    assert not missing, f"{doc.name} cites files that do not exist: {sorted(set(missing))}"
