"""The shipped transformer's training curve: masked-token cross-entropy against step.

The shipped model was trained in two runs (steps 1-1600, then resumed to 3300 on a longer
schedule). ``weights/model.json`` keeps the loss curve of the run that wrote it; the first run's is
in the git history of that file (``--first-run REV``, default the commit that shipped it). Writes
``experiments/results/training_curve.json`` (the raw points and means per ``--window`` steps) and a
plot, ``assets/training_curve.png``.

    python experiments/training_curve.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent


def load_curve(first_run: str | None) -> tuple[list[tuple[int, float]], list[str]]:
    """(step, loss) points of every run, in step order, and the command of each run."""
    shipped = json.loads((ROOT / "weights/model.json").read_text())
    runs = [shipped]
    if first_run:
        text = subprocess.run(["git", "show", f"{first_run}:weights/model.json"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        runs.insert(0, json.loads(text))
    points: dict[int, float] = {}
    for run in runs:                                   # later runs win where they overlap
        points.update({int(s): float(v) for s, v in run["loss_curve"]})
    return sorted(points.items()), [r["command"] for r in runs]


def window_means(points: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    steps = np.array([s for s, _ in points])
    loss = np.array([v for _, v in points])
    out = []
    for end in range(window, int(steps.max()) + window, window):
        sel = (steps > end - window) & (steps <= end)
        if sel.any():
            out.append((end, float(loss[sel].mean())))
    return out


def plot(points, means, window: int, path: Path, title: str, size=(900, 420)) -> None:
    """Raw points (thin) and window means drawn at their window's centre (thick)."""
    W, H = size
    left, right, top, bottom = 60, 20, 40, 45
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    xs = [s for s, _ in points]
    lo, hi = 0.0, float(np.ceil(max(v for _, v in points)))
    x0, x1 = 0, max(xs)

    def xy(s, v):
        return (left + (W - left - right) * (s - x0) / (x1 - x0), top + (H - top - bottom) * (hi - v) / (hi - lo))

    for k in range(int(hi - lo) + 1):                  # horizontal grid, one line per nat
        y = xy(0, lo + k)[1]
        d.line([(left, y), (W - right, y)], fill=(225, 225, 225))
        d.text((left - 30, y - 6), f"{lo + k:.0f}", fill="black")
    for s in range(0, x1 + 1, 500):
        x = xy(s, lo)[0]
        d.line([(x, H - bottom), (x, H - bottom + 4)], fill="black")
        d.text((x - 12, H - bottom + 8), str(s), fill="black")
    d.line([xy(s, v) for s, v in points], fill=(170, 190, 230), width=1)
    d.line([xy(min(s, x1) - window / 2, v) for s, v in means], fill=(20, 60, 160), width=3)
    d.rectangle([left, top, W - right, H - bottom], outline="black")
    d.text((left, 12), title, fill="black")
    d.text((W // 2 - 60, H - 18), "training step (batch 16)", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--first-run", default="aea43fe", help="git revision whose weights/model.json holds run 1 ('' for none)")
    p.add_argument("--window", type=int, default=200, help="steps per mean")
    p.add_argument("--out", default=str(ROOT / "experiments/results/training_curve.json"))
    p.add_argument("--plot", default=str(ROOT / "assets/training_curve.png"))
    args = p.parse_args()
    points, commands = load_curve(args.first_run or None)
    means = window_means(points, args.window)
    print(f"{'steps':>11} | mean cross-entropy (nats, masked tokens)")
    for end, v in means:
        print(f"{end - args.window + 1:>5}-{end:<5} | {v:.3f}")
    plot(points, means, args.window, Path(args.plot), f"shipped transformer (XS): masked-token cross-entropy, raw and mean per "
                                         f"{args.window} steps")
    Path(args.out).write_text(json.dumps({"commands": commands, "window": args.window, "points": points,
                                          "window_means": means}, indent=1))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
