"""How finely the tokenizer must place the surface: occupied voxels by their distance to it.

    python experiments/surface_margin.py [--split val] [--num 100]

Voxel IoU counts a voxel as occupied when its centre is inside (``sdf < 0``). A voxel whose centre
lies within a fraction of a voxel of the surface flips with a sub-voxel shift of that surface,
so the share of such voxels says how much IoU depends on sub-voxel placement (thin parts: many).
Also reports the binary cross-entropy floor of the tokenizer's soft-occupancy target (its
entropy), which no decoder can go below, and where the shipped tokenizer's reconstruction errs:
the share of its wrong voxels (either way) whose centre lies within d voxels of the surface, and
the IoU it would reach if every voxel within 0.25 voxel of the surface were counted right, and its
IoU when the logits are cut at other thresholds than 0 (if another cut did much better, the
decoder would be miscalibrated; if 0 is best, the missing IoU is information the tokens lack).
Prints a table per class and writes JSON (default ``experiments/results/surface_margin.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart3d import geometry as G  # noqa: E402
from smart3d.classes import CLASSES  # noqa: E402
from smart3d.dataset import load_split  # noqa: E402
from smart3d.tokenizer import Tokenizer, TokenizerConfig, iou, soft_occupancy  # noqa: E402
from smart3d.weights import WEIGHTS_DIR, load_pretrained  # noqa: E402

BANDS = (0.1, 0.25, 0.5, 1.0)        # distances to the surface, in voxels
THRESHOLDS = (-1.0, -0.5, -0.25, 0.25, 0.5)   # other cuts of the logits than 0


def margin_stats(sdf: np.ndarray) -> dict:
    """sdf (K, 32, 32, 32) -> share of occupied voxels within each band and the target's entropy."""
    d = torch.from_numpy(sdf) / (2.0 / G.GRID)                     # in voxels
    inside = d < 0
    t = soft_occupancy(torch.from_numpy(sdf))
    h = -(t * t.clamp(min=1e-7).log() + (1 - t) * (1 - t).clamp(min=1e-7).log())
    out = {f"occupied within {b} voxel %": float(100 * (inside & (d.abs() < b)).sum() / inside.sum())
           for b in BANDS}
    out["bce floor"] = float(h.mean())
    return out


@torch.no_grad()
def error_stats(tokenizer, dense: np.ndarray, sdf: np.ndarray, batch: int = 25) -> dict:
    """Where reconstructions of dense clouds (K, N, 3) disagree with ``sdf < 0``, by distance band."""
    d = torch.from_numpy(sdf) / (2.0 / G.GRID)
    logits = torch.cat([tokenizer.decode(tokenizer.encode_points(torch.from_numpy(dense[i:i + batch].astype(np.float32))))
                        .cpu() for i in range(0, len(dense), batch)])
    inside = d < 0
    wrong = (logits > 0) != inside
    fixed = torch.where(d.abs() < 0.25, inside.float() * 2 - 1, logits)      # the voxels near the surface made right
    out = {f"errors within {b} voxel %": float(100 * (wrong & (d.abs() < b)).sum() / wrong.sum()) for b in BANDS}
    cuts = {f"iou at logit {t}": float(iou(logits - t, inside).mean()) for t in THRESHOLDS}
    return {**out, "iou": float(iou(logits, inside).mean()),
            "iou if right within 0.25 voxel": float(iou(fixed, inside).mean()), **cuts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--num", type=int, default=100, help="shapes per class")
    p.add_argument("--out", default=str(ROOT / "experiments/results/surface_margin.json"))
    p.add_argument("--tokenizer", default=str(WEIGHTS_DIR / "tokenizer"), help="tokenizer whose errors to locate")
    args = p.parse_args()
    data = load_split(args.split)
    tok = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, "cpu")
    per_class = {}
    for i, c in enumerate(CLASSES):
        sel = np.flatnonzero(data.labels == i)[:args.num]
        per_class[c] = {**margin_stats(data.sdf[sel]), **error_stats(tok, data.dense[sel], data.sdf[sel])}
    keys = list(next(iter(per_class.values())))
    mean = {k: float(np.mean([v[k] for v in per_class.values()])) for k in keys}
    print(f"share of occupied voxels (%) whose centre lies within d voxels of the surface; {args.split} split")
    print(f"{'class':10s}" + "".join(f"{'d < ' + str(b):>10s}" for b in BANDS) + f"{'BCE floor':>11s}")
    for c, v in {**per_class, "mean": mean}.items():
        print(f"{c:10s}" + "".join(f"{v[f'occupied within {b} voxel %']:10.1f}" for b in BANDS) + f"{v['bce floor']:11.4f}")
    print(f"\nshipped tokenizer: share of its wrong voxels (%) within d voxels of the surface; IoU, and IoU if "
          "the voxels within 0.25 voxel were right")
    print(f"{'class':10s}" + "".join(f"{'d < ' + str(b):>10s}" for b in BANDS) + f"{'IoU':>8s}{'IoU fixed':>11s}")
    for c, v in {**per_class, "mean": mean}.items():
        print(f"{c:10s}" + "".join(f"{v[f'errors within {b} voxel %']:10.1f}" for b in BANDS)
              + f"{v['iou']:8.3f}{v['iou if right within 0.25 voxel']:11.3f}")
    print("\nshipped tokenizer: IoU when its logits are cut at t instead of 0")
    print(f"{'class':10s}" + "".join(f"{'t = ' + str(t):>10s}" for t in (*THRESHOLDS[:3], 0.0, *THRESHOLDS[3:])))
    for c, v in {**per_class, "mean": mean}.items():
        cut = {**{t: v[f"iou at logit {t}"] for t in THRESHOLDS}, 0.0: v["iou"]}
        print(f"{c:10s}" + "".join(f"{cut[t]:10.3f}" for t in sorted(cut)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"split": args.split, "num": args.num, "tokenizer": args.tokenizer,
                                          "per_class": per_class, "mean": mean}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
