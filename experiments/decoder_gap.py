"""Does the tokenizer's decoder overfit? Voxel IoU on train shapes against validation shapes.

    python experiments/decoder_gap.py [--tokenizer weights/tokenizer] [--classes airplane bench] [--num 50]

Reconstructs the first ``--num`` train and the first ``--num`` validation shapes of each class of
the 1000-per-class benchmark (the train shapes are among those every decoder run trained on) and
prints their mean IoU side by side. A decoder that does much better on the shapes it was trained
on than on new ones is overfitting, and more training shapes, not more steps, is the fix. Also
reports the encoder's relative quantisation error on both splits: if that is the same, the
codebook generalises and the gap is the decoder's. Writes JSON (default
``benchmarks/results/decoder_gap.json``, the shipped tokenizer's figure cited by the model card).
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

from smart3d.classes import CLASSES  # noqa: E402
from smart3d.dataset import load_split  # noqa: E402
from smart3d.evaluate import print_table  # noqa: E402
from smart3d.geometry import surface_features  # noqa: E402
from smart3d.tokenizer import Tokenizer, TokenizerConfig, iou  # noqa: E402
from smart3d.weights import WEIGHTS_DIR, load_pretrained  # noqa: E402


@torch.no_grad()
def split_figures(tok: Tokenizer, split: str, classes: list[str], num: int) -> dict[str, dict[str, float]]:
    """Per class: mean IoU of the reconstructions and the encoder's relative quantisation error.

    The error is |latent - its code| / |latent| averaged over the patches that hold surface (the
    most frequent code, empty space, is left out: it is exact and would dilute the figure).
    """
    data = load_split(split, classes, 1000)
    out = {}
    for c in classes:
        sel = np.flatnonzero(data.labels == CLASSES.index(c))[:num]
        feats = surface_features(torch.from_numpy(data.dense[sel].astype(np.float32)))
        rec = iou(tok.reconstruct(feats)[0], torch.from_numpy(data.occupancy[sel])).mean()
        z = tok._fine_latents(feats).flatten(0, 1)
        idx = tok.quantizer.indices(z)
        surface = idx != torch.bincount(idx).argmax()
        err = (z - tok.quantizer.codebook[idx]).norm(dim=-1)
        out[c] = {"iou": float(rec),
                  "quantisation_error": float(err[surface].mean() / z[surface].norm(dim=-1).mean())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", default=str(WEIGHTS_DIR / "tokenizer"), help="weights path without extension")
    p.add_argument("--classes", nargs="+", default=["airplane", "bench"], choices=list(CLASSES))
    p.add_argument("--num", type=int, default=50, help="shapes per class and split")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/decoder_gap.json"))
    args = p.parse_args()
    torch.set_grad_enabled(False)
    tok = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer).eval()
    figures = {split: split_figures(tok, split, args.classes, args.num) for split in ("train", "val")}
    print_table(f"decoder gap: {args.tokenizer}, first {args.num} shapes per class and split",
                ["class", "IoU train", "IoU val", "gap", "quant. error train", "quant. error val"],
                [[c, f"{figures['train'][c]['iou']:.3f}", f"{figures['val'][c]['iou']:.3f}",
                  f"{figures['train'][c]['iou'] - figures['val'][c]['iou']:+.3f}",
                  f"{figures['train'][c]['quantisation_error']:.3f}", f"{figures['val'][c]['quantisation_error']:.3f}"]
                 for c in args.classes])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"tokenizer": args.tokenizer, "num": args.num, **figures}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
