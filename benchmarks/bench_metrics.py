"""Speed and accuracy of the point-cloud metrics on benchmark shapes.

    python benchmarks/bench_metrics.py [--num-shapes 200] [--num-pairs 24] [--points 2048]

Measures (a) the full pairwise Chamfer matrix of ``--num-shapes`` shapes (both backends: the
KD-tree one CPU evaluations use and the matmul one GPUs use, the latter on a subset and
extrapolated per pair), (b) EMD on ``--num-pairs`` shape pairs (half same class, different index;
half different classes): scipy's exact assignment against the auction (``emd_approx``), and the
candidates that were measured and rejected: Fan et al.'s approxmatch (as PointFlow / PSGN ship it,
ported to torch) and a log-domain Sinkhorn with epsilon-scaling; (c) the machine. Prints a table
and writes JSON (default ``benchmarks/results/metrics.json``).

On a shared machine timings move with the load; the JSON records the load average around each part,
and the EMD timings of all methods are taken on the same pairs in one run, so compare them as ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smart3d.classes import CLASSES  # noqa: E402
from smart3d.dataset import make_sample  # noqa: E402
from smart3d.metrics import chamfer_matrix, emd_approx, emd_exact  # noqa: E402


# --------------------------------------------------------------------------------------------
# Rejected EMD candidates, kept here so their numbers can be reproduced
# --------------------------------------------------------------------------------------------

def approxmatch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fan et al. 2017's approxmatch (PSGN, used by PointFlow): (B, N, 3) x2 -> (B,) mean cost.

    Annealed soft matching: at levels exp(-4^j d^2), j = 7 .. -1, then a uniform level, each point
    spends its remaining mass in proportion to the kernel, capped by what the targets have left.
    """
    d2 = torch.cdist(x, y).pow(2)
    dist = d2.sqrt()
    B, N, M = d2.shape
    left_x = torch.ones(B, N, dtype=torch.float64)
    left_y = torch.ones(B, M, dtype=torch.float64)
    cost = torch.zeros(B, dtype=torch.float64)
    for level in [-(4.0 ** j) for j in range(7, -2, -1)] + [0.0]:
        w = torch.exp(d2 * level) * left_y.float().unsqueeze(1)
        w *= (left_x.float() / (w.sum(2) + 1e-9)).unsqueeze(2)              # rows spend what is left
        ratio = torch.clamp(left_y / (w.sum(1).double() + 1e-9), max=1.0)   # targets cap the flow
        w *= ratio.float().unsqueeze(1)
        left_x = (left_x - w.sum(2).double()).clamp_min(0)
        left_y = (left_y - w.sum(1).double()).clamp_min(0)
        cost += (w * dist).sum((1, 2)).double()
    return cost / N


def sinkhorn(x: torch.Tensor, y: torch.Tensor, eps_rel: float = 0.1, scaling: float = 0.7,
             extra_iters: int = 50) -> torch.Tensor:
    """Log-domain Sinkhorn with epsilon-scaling; transport cost of the final plan: (B,) mean cost.

    Final epsilon = eps_rel * mean nearest-neighbour distance (the EMD's own scale).
    """
    C = torch.cdist(x, y)
    B, N, M = C.shape
    eps_final = float(eps_rel * C.amin(2).mean())
    f, g = torch.zeros(B, N), torch.zeros(B, M)
    schedule, e = [], float(C.amax())
    while e > eps_final:
        schedule.append(e)
        e *= scaling
    schedule += [eps_final] * extra_iters
    log_w = -math.log(N)
    for e in schedule:
        f = -e * torch.logsumexp(log_w + (g.unsqueeze(1) - C) / e, dim=2)
        g = -e * torch.logsumexp(log_w + (f.unsqueeze(2) - C) / e, dim=1)
    plan = torch.exp((f.unsqueeze(2) + g.unsqueeze(1) - C) / eps_final + 2 * log_w)
    return (plan * C).sum((1, 2)).double()


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------

def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def shape_points(k: int, points: int) -> np.ndarray:
    """Benchmark shape k: classes in turn, index k // len(CLASSES); the first ``points`` points."""
    s = make_sample(CLASSES[k % len(CLASSES)], k // len(CLASSES))
    return s.points[:points]


def bench_chamfer(args) -> dict:
    t = time.perf_counter()
    pts = torch.from_numpy(np.stack([shape_points(k, args.points) for k in range(args.num_shapes)]))
    make_s = time.perf_counter() - t
    load0 = load()
    t = time.perf_counter()
    d = chamfer_matrix(pts, pts, backend="kdtree", progress=True)     # self-matrix: pairs j >= i
    kd_s = time.perf_counter() - t
    sub = min(args.num_shapes, args.matmul_shapes)
    t = time.perf_counter()
    d_mm = chamfer_matrix(pts[:sub], pts[:sub], backend="matmul")
    mm_s = time.perf_counter() - t
    agree = float((d_mm - d[:sub, :sub]).abs().max() / d[:sub, :sub].max())
    n = args.num_shapes
    return {"num_shapes": n, "points": args.points, "classes": len(CLASSES), "make_sample_seconds": make_s,
            "kdtree_seconds": kd_s, "kdtree_pairs_computed": n * (n + 1) // 2,
            "kdtree_ms_per_computed_pair": 1e3 * kd_s / (n * (n + 1) / 2),
            "matmul_shapes": sub, "matmul_seconds": mm_s, "matmul_ms_per_pair": 1e3 * mm_s / sub ** 2,
            "matmul_vs_kdtree_max_rel_diff": agree, "load_average": [load0, load()]}


def emd_pairs(args) -> list[tuple[str, int, str, int]]:
    """Half same class (indices i, i + 1), half different classes (same index)."""
    out = []
    for k in range(args.num_pairs):
        c = CLASSES[(k // 2) % len(CLASSES)]
        i = k // (2 * len(CLASSES))
        if k % 2 == 0:
            out.append((c, 2 * i, c, 2 * i + 1))
        else:
            other = CLASSES[(CLASSES.index(c) + 1 + k // 2) % len(CLASSES)]
            other = other if other != c else CLASSES[(CLASSES.index(c) + 1) % len(CLASSES)]
            out.append((c, i, other, i))
    return out


def bench_emd(args) -> dict:
    pairs = emd_pairs(args)
    X = torch.from_numpy(np.stack([make_sample(a, i).points[:args.points] for a, i, _, _ in pairs]))
    Y = torch.from_numpy(np.stack([make_sample(b, j).points[:args.points] for _, _, b, j in pairs]))
    load0 = load()
    t = time.perf_counter()
    exact = np.array([emd_exact(X[k], Y[k]) for k in range(len(pairs))])
    exact_s = (time.perf_counter() - t) / len(pairs)
    methods = {"auction (emd_approx)": lambda x, y: emd_approx(x, y, eps_rel=args.eps_rel)}
    if args.candidates:
        methods["approxmatch (Fan et al.)"] = approxmatch
        methods["sinkhorn (eps 0.1 NN)"] = sinkhorn
    res = {}
    for name, fn in methods.items():
        bs = args.emd_batch if name.startswith("auction") else 1
        t = time.perf_counter()
        val = torch.cat([fn(X[s:s + bs], Y[s:s + bs]) for s in range(0, len(pairs), bs)]).numpy()
        sec = (time.perf_counter() - t) / len(pairs)
        rel = (val - exact) / exact
        res[name] = {"seconds_per_pair": sec, "speedup_vs_exact": exact_s / sec,
                     "mean_abs_rel_error": float(np.abs(rel).mean()), "max_abs_rel_error": float(np.abs(rel).max()),
                     "mean_signed_rel_error": float(rel.mean()), "rel_error_per_pair": rel.round(6).tolist()}
        print(f"  {name}: {sec:.3f} s/pair, mean |rel err| {np.abs(rel).mean():.4%}", flush=True)
    same = [k for k, (a, _, b, _) in enumerate(pairs) if a == b]
    return {"num_pairs": len(pairs), "points": args.points, "pairs": [list(p) for p in pairs],
            "same_class_pairs": len(same), "exact_emd": exact.round(6).tolist(),
            "exact_seconds_per_pair": exact_s, "auction_eps_rel": args.eps_rel, "auction_batch": args.emd_batch,
            "methods": res, "load_average": [load0, load()]}


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "scipy": scipy.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.is_available()}


def main(args) -> dict:
    torch.set_flush_denormal(True)    # Sinkhorn's exp underflows to denormals, which crawl on x86
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}", flush=True)
    print(f"(a) chamfer matrix, {args.num_shapes} x {args.num_shapes} shapes of {args.points} points", flush=True)
    cd = bench_chamfer(args)
    print(f"(b) EMD on {args.num_pairs} pairs of {args.points} points", flush=True)
    emd = bench_emd(args)
    result = {"command": "python benchmarks/bench_metrics.py " + " ".join(sys.argv[1:]),
              "machine": machine(), "chamfer_matrix": cd, "emd": emd}

    print()
    print(f"Chamfer matrix {cd['num_shapes']}x{cd['num_shapes']} ({cd['points']} points): "
          f"kdtree {cd['kdtree_seconds']:.1f} s ({cd['kdtree_pairs_computed']} pairs j >= i, "
          f"{cd['kdtree_ms_per_computed_pair']:.2f} ms each); matmul {cd['matmul_ms_per_pair']:.2f} ms/pair "
          f"(all {cd['matmul_shapes']}^2 pairs)")
    print(f"EMD, {emd['num_pairs']} pairs ({emd['same_class_pairs']} same class): exact "
          f"{emd['exact_seconds_per_pair']:.3f} s/pair")
    print(f"{'method':28s} {'s/pair':>8s} {'vs exact':>9s} {'mean err':>9s} {'max err':>9s}")
    for name, r in emd["methods"].items():
        print(f"{name:28s} {r['seconds_per_pair']:8.3f} {r['speedup_vs_exact']:8.2f}x "
              f"{r['mean_abs_rel_error']:9.4%} {r['max_abs_rel_error']:9.4%}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-shapes", type=int, default=200, help="shapes in the Chamfer matrix (N x N pairs)")
    p.add_argument("--matmul-shapes", type=int, default=40, help="shapes timed with the matmul Chamfer backend")
    p.add_argument("--num-pairs", type=int, default=24, help="shape pairs for the EMD comparison (>= 20)")
    p.add_argument("--points", type=int, default=2048, help="points per shape (at most 2048)")
    p.add_argument("--eps-rel", type=float, default=0.02, help="auction's final epsilon / EMD lower bound")
    p.add_argument("--emd-batch", type=int, default=12, help="pairs per emd_approx call")
    p.add_argument("--no-candidates", dest="candidates", action="store_false",
                   help="skip the rejected EMD candidates (approxmatch, Sinkhorn)")
    p.add_argument("--out", default="benchmarks/results/metrics.json", help="JSON output path")
    main(p.parse_args())
