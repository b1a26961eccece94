"""Fill-in test: does the transformer line up neighbouring patches? A quick signal for coherence.

    python benchmarks/fill_in.py [--weights weights] [--classes chair] [--num 8] [--shares 0.1 0.3 0.6]
                                 [--guidance 1 5] [--out benchmarks/results/fill_in.json]

Tokenized validation shapes are one piece. A random share of their *surface* fine tokens (patches
whose code is not the empty code) is masked and redrawn by the model, with the coarse tokens and all
other fine tokens given (``Pipeline.complete_tokens``). The decoded meshes are then counted in
connected parts: a model that aligns a patch with its neighbours keeps them in one piece. Prints a
table of mean parts and share in one part per (share masked, guidance) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart3d import geometry as G  # noqa: E402
from smart3d.classes import CLASSES  # noqa: E402
from smart3d.dataset import DEFAULT_CACHE, load_split  # noqa: E402
from smart3d.evaluate import print_table  # noqa: E402
from smart3d.pipeline import load_pipeline  # noqa: E402
from smart3d.sampler import SamplingOptions, empty_tokens  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--classes", nargs="+", default=["chair"], choices=list(CLASSES))
    p.add_argument("--num", type=int, default=8, help="validation shapes per class")
    p.add_argument("--shares", type=float, nargs="+", default=[0.1, 0.3, 0.6], help="shares of surface tokens masked")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 5.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/fill_in.json"))
    args = p.parse_args()

    t0 = time.time()
    pipe = load_pipeline(args.weights)
    val = load_split("val", args.classes)
    nc = pipe.layout.num_coarse
    empty = empty_tokens(pipe.tokenizer)[nc:]
    rows, results = [], []
    for name in args.classes:
        sel = np.flatnonzero(val.labels == CLASSES.index(name))[: args.num]
        tokens = pipe.tokenizer.encode_points(torch.from_numpy(val.dense[sel].astype(np.float32))).cpu()
        truth = [G.mesh_parts(r.mesh) for r in pipe.decode(tokens)]
        for share in args.shares:
            for scale in args.guidance:
                g = torch.Generator().manual_seed(args.seed)
                parts = []
                for i in range(len(sel)):
                    surface = torch.flatnonzero(tokens[i, nc:] != empty)
                    hide = surface[torch.randperm(len(surface), generator=g)[: round(share * len(surface))]] + nc
                    visible = torch.ones(pipe.layout.length, dtype=torch.bool)
                    visible[hide] = False
                    options = replace(SamplingOptions(), cfg_scale=scale)
                    res = pipe.complete_tokens(tokens[i], visible, name, seed=args.seed + i, options=options)
                    parts.append(G.mesh_parts(res[0].mesh))
                parts = np.array(parts)
                row = {"class": name, "share masked": share, "guidance": scale, "parts": float(parts.mean()),
                       "one part %": 100.0 * float((parts == 1).mean()), "tokenized parts": float(np.mean(truth))}
                results.append(row)
                rows.append(list(row.values()))
                print(row, flush=True)
    print_table(f"fill-in: {args.num} validation shapes per class", list(results[0]), rows)
    doc = {"weights": str(args.weights), "num": args.num, "seed": args.seed, "rows": results,
           "threads": torch.get_num_threads(), "seconds": time.time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
