"""How many codes a patch-local tokenizer needs: IoU of a lookup-table codebook of binary patches.

    python experiments/patch_codebook_ceiling.py [--sizes 256 512 ...] [--train-per-class 300] [--num 100]

A patch-local tokenizer maps each 4^3 patch to one of K codes. The simplest such tokenizer keeps
the K most frequent binary 4^3 occupancy patterns of the training split as its codebook and
replaces every patch by the nearest one (Hamming distance). Its voxel IoU on the test split, per
class, shows how many bits per patch the reconstruction target needs, independent of any network:
a learned encoder/decoder can beat it (the decoder sees neighbouring codes) or fall short of it
(its codebook is learned, not counted). Prints a table and writes JSON (default
``experiments/results/patch_codebook_ceiling.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart3d import geometry as G  # noqa: E402
from smart3d.classes import CLASSES  # noqa: E402
from smart3d.dataset import load_split  # noqa: E402

BITS = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))     # bit b of a patch's 64-bit key


def patch_keys(occupancy: np.ndarray) -> np.ndarray:
    """(K, 32, 32, 32) bool -> (K, 512) uint64: each 4^3 patch as a 64-bit pattern (C order)."""
    return (G.patchify(occupancy).astype(np.uint64) * BITS).sum(-1, dtype=np.uint64)


def unpack(keys: np.ndarray) -> np.ndarray:
    """(...,) uint64 -> (..., 64) float32 bits."""
    return ((keys[..., None] & BITS) != 0).astype(np.float32)


def nearest(queries: np.ndarray, codebook: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the codebook pattern nearest in Hamming distance to each query key."""
    cb = torch.from_numpy(unpack(codebook))
    cb_pop = cb.sum(1)
    out = np.empty(len(queries), dtype=np.int64)
    for i in range(0, len(queries), chunk):
        q = torch.from_numpy(unpack(queries[i:i + chunk]))
        dist = q.sum(1, keepdim=True) + cb_pop[None] - 2.0 * q @ cb.T
        out[i:i + chunk] = dist.argmin(1).numpy()
    return out


def iou_per_shape(true_keys: np.ndarray, recon_keys: np.ndarray) -> np.ndarray:
    """Voxel IoU of each shape from its patch keys: (K, 512) x2 -> (K,)."""
    t, r = unpack(true_keys), unpack(recon_keys)
    inter = (t * r).sum((1, 2))
    union = np.maximum(t, r).sum((1, 2))
    return inter / np.maximum(union, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--train-per-class", type=int, default=300, help="training shapes per class to count patterns in")
    p.add_argument("--num", type=int, default=100, help="test shapes per class")
    p.add_argument("--num-per-class", type=int, default=1000, help="benchmark size the splits come from")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "patch_codebook_ceiling.json"))
    args = p.parse_args()
    t0 = time.time()
    train = load_split("train", CLASSES, args.num_per_class)
    keep = np.concatenate([np.flatnonzero(train.labels == c)[:args.train_per_class] for c in range(len(CLASSES))])
    train_keys = patch_keys(train.occupancy[keep])
    del train
    test = load_split("test", CLASSES, args.num_per_class)
    keep = np.concatenate([np.flatnonzero(test.labels == c)[:args.num] for c in range(len(CLASSES))])
    test_keys, test_labels = patch_keys(test.occupancy[keep]), test.labels[keep]
    del test
    patterns, counts = np.unique(train_keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    patterns, counts = patterns[order], counts[order]
    uniq, inverse = np.unique(test_keys, return_inverse=True)
    inverse = inverse.reshape(test_keys.shape)
    rows = []
    for size in args.sizes:
        codebook = patterns[:size]
        recon = codebook[nearest(uniq, codebook)][inverse]
        ious = iou_per_shape(test_keys, recon)
        per_class = {c: float(ious[test_labels == i].mean()) for i, c in enumerate(CLASSES)}
        rows.append({"codes": size, "bits": float(np.log2(size)),
                     "train_patch_share": float(counts[:size].sum() / counts.sum()),
                     "test_patches_exact": float((recon == test_keys).mean()),
                     "mean_iou": float(np.mean(list(per_class.values()))),
                     "min_class_iou": float(min(per_class.values())), "per_class": per_class})
    head = f"{'codes':>6} {'exact %':>8} {'mean IoU':>9} {'min class':>10}  " + " ".join(f"{c[:8]:>8}" for c in CLASSES)
    print(f"distinct 4^3 patterns in {len(train_keys)} training shapes: {len(patterns)}")
    print(head)
    for r in rows:
        print(f"{r['codes']:>6} {100 * r['test_patches_exact']:>8.1f} {r['mean_iou']:>9.3f} {r['min_class_iou']:>10.3f}  "
              + " ".join(f"{r['per_class'][c]:>8.3f}" for c in CLASSES))
    out = {"train_shapes_per_class": args.train_per_class, "test_shapes_per_class": args.num,
           "distinct_train_patterns": int(len(patterns)), "rows": rows, "seconds": time.time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
