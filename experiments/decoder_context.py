"""How much of the tokenizer's reconstruction comes from context: decoder against a per-code lookup.

    python experiments/decoder_context.py [--split val] [--train-stride 4]

A decoder that read each token on its own could do no better, per voxel, than the majority
occupancy of that voxel over all training patches with the same code. This script builds that
lookup from the training split (every ``--train-stride``-th shape, dense clouds, no mirroring),
decodes the chosen split both ways from the same tokens, and reports IoU per class. It also
counts where the shipped decoder's wrong voxels lie: in patches with a surface token or in
patches with the "empty space" token (whose inside/outside only context can tell). For a decoder
with a learned vector per code (``token_embed``), it reports how large those vectors are next to
the projected code vectors, and the IoU with them zeroed. Prints a table and writes JSON (default
``experiments/results/decoder_context.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart3d import geometry as G  # noqa: E402
from smart3d.classes import CLASSES  # noqa: E402
from smart3d.dataset import load_split  # noqa: E402
from smart3d.evaluate import print_table  # noqa: E402
from smart3d.sampler import empty_tokens  # noqa: E402
from smart3d.tokenizer import Tokenizer, TokenizerConfig, iou  # noqa: E402
from smart3d.train.loop import encode_dense  # noqa: E402
from smart3d.weights import load_pretrained  # noqa: E402


def code_majority(tokens: torch.Tensor, occupancy: np.ndarray, num_codes: int) -> torch.Tensor:
    """Fine tokens (K, 512) and occupancy (K, 32, 32, 32) -> (num_codes, 64) mean occupancy per code voxel."""
    occ = torch.from_numpy(G.patchify(occupancy)).float().flatten(0, 1)          # (K * 512, 64)
    flat = tokens.flatten()
    total = torch.zeros(num_codes, G.PATCH**3).index_add_(0, flat, occ)
    count = torch.bincount(flat, minlength=num_codes).float().clamp(min=1)
    return total / count[:, None]


def decode_all(tok, tokens: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Token sequences (K, L) -> occupancy logits (K, 32, 32, 32)."""
    with torch.no_grad():
        return torch.cat([tok.decode(tokens[i:i + batch]) for i in range(0, len(tokens), batch)])


def code_table_stats(tok, tokens: torch.Tensor, occ: torch.Tensor) -> dict:
    """Median norm of the per-code vectors over that of the projected codes, and IoU with the table zeroed."""
    dec = tok.decoder
    with torch.no_grad():
        proj = F.conv3d(tok.quantizer.codebook[:, :, None, None, None], dec.inp.weight, dec.inp.bias).flatten(1)
        ratio = float((dec.embed.weight.norm(dim=1) / proj.norm(dim=1)).median())
        kept = dec.embed.weight.clone()
        dec.embed.weight.zero_()
        zeroed = iou(decode_all(tok, tokens), occ)
        dec.embed.weight.copy_(kept)
    return {"median_norm_ratio": ratio, "iou_table_zeroed": float(zeroed.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--train-stride", type=int, default=4, help="use every n-th training shape for the lookup")
    p.add_argument("--weights", default="weights/tokenizer", help="tokenizer weights (relative to the repository)")
    p.add_argument("--out", default=str(ROOT / "experiments/results/decoder_context.json"))
    args = p.parse_args()
    t0 = time.time()
    tok = load_pretrained(Tokenizer, TokenizerConfig, ROOT / args.weights, "cpu")
    nc = tok.layout.num_coarse
    train, data = load_split("train"), load_split(args.split)
    keep = slice(None, None, args.train_stride)
    lookup = code_majority(encode_dense(tok, train.dense[keep], mirror=False)[:, nc:], train.occupancy[keep],
                           tok.config.codebook_size)
    tokens = encode_dense(tok, data.dense, mirror=False)
    fine = tokens[:, nc:]
    logits = decode_all(tok, tokens)
    table = torch.from_numpy(G.unpatchify(lookup[fine].numpy())) - 0.5             # > 0: majority inside
    occ = torch.from_numpy(data.occupancy)
    dec_iou, lookup_iou = iou(logits, occ), iou(table, occ)
    wrong = (torch.from_numpy(G.patchify((logits > 0).numpy())) != torch.from_numpy(G.patchify(data.occupancy))).sum(-1)
    surface = fine != int(empty_tokens(tok)[-1])
    rows, per_class = [], {}
    for c in np.unique(data.labels):
        m = torch.from_numpy(data.labels == c)
        per_class[CLASSES[c]] = {"decoder_iou": float(dec_iou[m].mean()), "lookup_iou": float(lookup_iou[m].mean())}
        rows.append([CLASSES[c], per_class[CLASSES[c]]["decoder_iou"], per_class[CLASSES[c]]["lookup_iou"]])
    rows.append(["mean", float(dec_iou.mean()), float(lookup_iou.mean())])
    print_table(f"voxel IoU on the {args.split} split from the same tokens", ["class", "decoder", "per-code lookup"], rows)
    errors = {"surface_token_patches": int(wrong[surface].sum()), "empty_token_patches": int(wrong[~surface].sum())}
    print(f"wrong voxels: {errors['surface_token_patches']} in patches with a surface token, "
          f"{errors['empty_token_patches']} in patches with the empty-space token")
    table_stats = code_table_stats(tok, tokens, occ) if tok.decoder.embed is not None else None
    if table_stats:
        print(f"per-code vectors: median norm {table_stats['median_norm_ratio']:.3f} x that of the projected codes; "
              f"IoU with them zeroed {table_stats['iou_table_zeroed']:.4f} (as trained {float(dec_iou.mean()):.4f})")
    out = {"split": args.split, "train_stride": args.train_stride, "weights": args.weights, "per_class": per_class,
           "mean_decoder_iou": float(dec_iou.mean()), "mean_lookup_iou": float(lookup_iou.mean()),
           "wrong_voxels": errors, "code_table": table_stats, "seconds": time.time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
