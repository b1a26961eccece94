"""Forward + backward time of the lattice convolution (depthwise 3x3x3 over the 8^3 fine lattice) on CPU:
fp32 vs bf16, and the channels-last view LatticeConv uses vs a transposed copy.

    OMP_NUM_THREADS=1 python experiments/coherence/conv_speed.py [--out experiments/results/conv_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def timed(fn, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--out", default=str(ROOT / "experiments/results/conv_speed.json"))
    args = p.parse_args()
    B, D, n = args.batch, args.dim, 8
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(D, D, 3, padding=1, groups=D)
    x = torch.randn(B, n**3, D, requires_grad=True)

    def run(view: bool, bf16: bool):
        def fn():
            grid = (x.reshape(B, n, n, n, D).permute(0, 4, 1, 2, 3) if view
                    else x.transpose(1, 2).reshape(B, D, n, n, n))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = conv(grid)
            y.float().sum().backward()
        return fn

    rows = {f"{'channels-last view' if v else 'transposed copy'}, {'bf16' if b else 'fp32'}": timed(run(v, b))
            for v in (False, True) for b in (False, True)}
    for k, v in rows.items():
        print(f"{k:32s} {v:7.1f} ms")
    doc = {"ms forward+backward": rows, "batch": B, "dim": D, "threads": torch.get_num_threads(),
           "amx": "amx_bf16" in Path("/proc/cpuinfo").read_text(), "machine": platform.platform(),
           "torch": torch.__version__}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
