"""The coherence comparison as one markdown table: one row per results JSON (evaluate --task generation).

    python experiments/coherence/table.py experiments/results/coherence_*.json

Each row: the arm (file name), its training command and minutes, and the mean over its classes of
parts per shape, share in one part, 1-NNA-CD, COV-CD, MMD-CD and class accuracy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("parts", "one part %", "1-NNA-CD %", "COV-CD %", "MMD-CD x1e3", "class accuracy %")


def row(path: Path) -> str:
    doc = json.loads(path.read_text())
    mean = doc["mean"]
    cells = [path.stem.removeprefix("coherence_"), f"`{doc.get('model', '')}`"]
    cells += [f"{mean[k]:.2f}" if k == "parts" else f"{mean[k]:.1f}" for k in COLUMNS]
    return "| " + " | ".join(cells) + " |"


def main(paths: list[str]) -> None:
    print("| arm | command | " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for p in paths:
        print(row(Path(p)))


if __name__ == "__main__":
    main(sys.argv[1:])
