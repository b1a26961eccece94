"""The tokenizer's decoder under bf16 autocast against fp32 (``SamplingOptions.precision``, auto: bf16 on
AMX CPUs): voxel IoU of the two fields, their largest difference, mesh parts of each, and the decode time,
on tokenized training shapes (the cached sequences under ``SMART3D_CACHE``).

    python experiments/decoder_precision.py --num 96 --out experiments/results/decoder_precision.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from smart3d import geometry as G
from smart3d.classes import CLASSES
from smart3d.dataset import DEFAULT_CACHE, load_split
from smart3d.pipeline import load_pipeline
from smart3d.repair import occupancy
from smart3d.train.loop import cached_tokens
from smart3d.weights import WEIGHTS_DIR, cpu_has_amx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num", type=int, default=96)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    pipe = load_pipeline(device="cpu")
    train = load_split("train", CLASSES, 1000, args.cache)
    tokens = cached_tokens(pipe.tokenizer, str(WEIGHTS_DIR / "tokenizer"), train, args.cache, 1000, CLASSES)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.num]
    iou, diff, parts, seconds = [], [], {"fp32": [], "bf16": []}, {"fp32": 0.0, "bf16": 0.0}
    for i in range(0, args.num, 16):
        batch, fields = tokens[pick[i:i + 16]], {}
        for name, bf16 in (("fp32", False), ("bf16", True)):
            t0 = time.perf_counter()
            fields[name] = occupancy(pipe.tokenizer, batch, bf16)
            seconds[name] += time.perf_counter() - t0
            parts[name] += [G.mesh_parts(G.mesh_from_field(f, 0.5)) for f in fields[name]]
        for a, b in zip(fields["fp32"], fields["bf16"]):
            iou.append(float(((a > 0.5) & (b > 0.5)).sum() / ((a > 0.5) | (b > 0.5)).sum()))
            diff.append(float(np.abs(a - b).max()))
    same = np.array(parts["fp32"]) == np.array(parts["bf16"])
    result = {"num": args.num, "amx": cpu_has_amx(), "threads": torch.get_num_threads(),
              "voxel IoU mean": float(np.mean(iou)), "voxel IoU min": float(np.min(iou)),
              "max probability difference": float(np.max(diff)),
              "parts fp32": float(np.mean(parts["fp32"])), "parts bf16": float(np.mean(parts["bf16"])),
              "same parts %": 100 * float(same.mean()),
              "decode ms a shape fp32": 1e3 * seconds["fp32"] / args.num,
              "decode ms a shape bf16": 1e3 * seconds["bf16"] / args.num}
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
