"""What generation metrics a perfect token generator would get: the tokenizer's ceiling.

    python experiments/generation_ceiling.py [--classes chair airplane car] [--num 100]

The generation metrics compare decoded meshes with analytic test shapes, so even a transformer
that drew token sequences exactly from the data distribution would inherit the tokenizer's
reconstruction error. This script scores, with the same metrics, code and normalisation as
``python -m smart3d evaluate --task generation`` (reference: the first ``--num`` test shapes):

- ``real val``: the first ``--num`` validation shapes themselves (same distribution as the
  reference: the metrics' floor at this sample size, 1-NNA near 50%);
- ``tokenized val``: the same shapes encoded to tokens and decoded by the shipped tokenizer
  (what the transformer could at best reach with these tokens).

Compare with the model's samples in ``benchmarks/results/generation.json`` (same reference).

Prints a table and writes JSON (default ``experiments/results/generation_ceiling.json``).
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

from smart3d.classes import CLASSES  # noqa: E402
from smart3d.classifier import ClassifierConfig, ShapeClassifier  # noqa: E402
from smart3d.dataset import DEFAULT_CACHE, load_split  # noqa: E402
from smart3d.evaluate import class_stats, generation_figures, print_table  # noqa: E402
from smart3d.pipeline import load_pipeline  # noqa: E402
from smart3d.weights import WEIGHTS_DIR, load_pretrained  # noqa: E402

COLUMNS = ("1-NNA-CD %", "COV-CD %", "MMD-CD x1e3", "class accuracy %", "FD")


@torch.no_grad()
def tokenized(pipe, dense: np.ndarray, seed: int, batch: int = 25) -> np.ndarray:
    """Dense clouds (K, N, 3) -> tokens -> decoded meshes -> 2048 surface points each (K, 2048, 3)."""
    out = []
    for i in range(0, len(dense), batch):
        tokens = pipe.tokenizer.encode_points(torch.from_numpy(dense[i:i + batch].astype(np.float32)))
        out += [r.points for r in pipe.decode(tokens, seed=seed + i)]
    return np.stack(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", nargs="+", default=["chair", "airplane", "car"], choices=list(CLASSES))
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--num-per-class", type=int, default=1000)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", default=str(ROOT / "experiments/results/generation_ceiling.json"))
    args = p.parse_args()

    t0 = time.time()
    pipe = load_pipeline(WEIGHTS_DIR, "cpu")
    clf = load_pretrained(ShapeClassifier, ClassifierConfig, WEIGHTS_DIR / "classifier")
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    stats = class_stats(args.classes, args.num_per_class, args.cache)
    per_class, rows = {}, []
    for c in args.classes:
        label = CLASSES.index(c)
        ref = test.points[test.labels == label][: args.num]
        sel = np.flatnonzero(val.labels == label)[: args.num]
        per_class[c] = {"real val": generation_figures(val.points[sel], ref, stats[c], clf, label),
                        "tokenized val": generation_figures(tokenized(pipe, val.dense[sel], seed=0), ref, stats[c], clf, label)}
        for source, m in per_class[c].items():
            rows.append([c, source] + [m[k] for k in COLUMNS])
        print(f"  {c}: done ({time.time() - t0:.0f} s)", flush=True)

    print_table(f"generation metrics vs the first {args.num} test shapes per class",
                ["class", "source", *COLUMNS], rows)
    result = {"num": args.num, "reference_split": "test", "tokenizer": json.loads(
        (WEIGHTS_DIR / "tokenizer.json").read_text()).get("command"), "per_class": per_class,
        "seconds": time.time() - t0, "threads": torch.get_num_threads()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
