"""Do the fine tokens follow the coarse ones? Real shapes vs samples, with and without the gate.

    python experiments/hierarchy_agreement.py [--classes chair airplane] [--num 16] [--weights weights]

The coarse token of an 8^3 block decodes to its pooled surface bits, so it says which of its 8
fine patches hold surface (``smart3d.sampler.hierarchy_gate``). Per shape this script counts

- ``surface, coarse says empty``: fine patches with a surface code under coarse cells that are empty;
- ``empty, coarse says surface``: the reverse;
- ``occupied patches``: fine patches with a surface code;
- ``mesh parts`` and ``largest part %``: connected components of the decoded mesh and the share of
  its area in the largest (floating fragments show up here),

for tokenized validation shapes (the tokenizer's own disagreement: the floor), for the model's
samples with ``hierarchy=False`` and ``hierarchy=True`` (same seeds), and for fine tokens drawn
with ``hierarchy=True`` under the *true* coarse tokens of the validation shapes (is the coarse plan
or the fine draw to blame for fragments?). Prints a table and writes
JSON (default ``experiments/results/hierarchy_agreement.json``).
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

from smart3d.dataset import DEFAULT_CACHE, load_split  # noqa: E402
from smart3d.evaluate import print_table  # noqa: E402
from smart3d.pipeline import load_pipeline  # noqa: E402
from smart3d.sampler import SamplingOptions, empty_tokens, hierarchy_gate, sample  # noqa: E402
from smart3d.shapes import CLASSES  # noqa: E402

COLUMNS = ("surface, coarse says empty", "empty, coarse says surface", "occupied patches", "mesh parts",
           "largest part %")


def figures(pipe, tokens: torch.Tensor, seed: int) -> dict[str, float]:
    """Per-shape means of the COLUMNS for token sequences (B, L)."""
    nc = pipe.layout.num_coarse
    gate = hierarchy_gate(pipe.tokenizer, tokens, torch.zeros_like(tokens, dtype=torch.bool))
    surface = tokens[:, nc:] != empty_tokens(pipe.tokenizer)[nc:].to(tokens.device)
    parts, largest = [], []
    for r in pipe.decode(tokens, seed=seed):
        pieces = r.mesh.split(only_watertight=False)
        areas = np.array([p.area for p in pieces]) if len(pieces) else np.array([r.mesh.area])
        parts.append(len(pieces))
        largest.append(100.0 * areas.max() / max(areas.sum(), 1e-12))
    values = ((surface & (gate == 0)).sum(1).float().mean(), (~surface & (gate == 1)).sum(1).float().mean(),
              surface.sum(1).float().mean(), float(np.mean(parts)), float(np.mean(largest)))
    return {k: float(v) for k, v in zip(COLUMNS, values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", nargs="+", default=["chair", "airplane"], choices=list(CLASSES))
    p.add_argument("--num", type=int, default=16, help="shapes per class and source")
    p.add_argument("--num-per-class", type=int, default=1000)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "experiments/results/hierarchy_agreement.json"))
    args = p.parse_args()

    t0 = time.time()
    pipe = load_pipeline(args.weights, "cpu")
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    per_class, rows = {}, []
    for c in args.classes:
        sel = np.flatnonzero(val.labels == CLASSES.index(c))[: args.num]
        real = pipe.tokenizer.encode_points(torch.from_numpy(val.dense[sel].astype(np.float32)))
        per_class[c] = {"tokenized val": figures(pipe, real, args.seed)}
        labels = torch.full((len(sel),), CLASSES.index(c))
        draw = lambda h, **known: sample(pipe.model, pipe.tokenizer, labels,
                                         options=SamplingOptions(hierarchy=h, preview=False),
                                         generator=torch.Generator().manual_seed(args.seed), **known)
        for h in (False, True):
            per_class[c][f"samples, hierarchy={h}"] = figures(pipe, draw(h), args.seed)
        visible = torch.zeros_like(real, dtype=torch.bool)
        visible[:, :pipe.layout.num_coarse] = True                 # true coarse tokens, every fine one masked
        per_class[c]["true coarse, fine drawn"] = figures(pipe, draw(True, known_tokens=real, known_mask=visible),
                                                          args.seed)
        for source, m in per_class[c].items():
            rows.append([c, source] + [m[k] for k in COLUMNS])
        print(f"  {c}: done ({time.time() - t0:.0f} s)", flush=True)

    print_table(f"fine vs coarse tokens, means over {args.num} shapes per class and source",
                ["class", "source", *COLUMNS], rows)
    result = {"num": args.num, "seed": args.seed, "weights": str(args.weights),
              "model": json.loads((Path(args.weights) / "model.json").read_text()).get("command"),
              "per_class": per_class, "seconds": time.time() - t0, "threads": torch.get_num_threads()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
