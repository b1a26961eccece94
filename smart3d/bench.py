"""Speed benchmarks: ``python -m smart3d bench {attention,sampling}`` prints a table and writes JSON.

- ``attention``: forward time of one attention layer against the number of tokens L (cubic
  lattices of side n, L = n^3): spatial linear attention in its lattice (linear-time) form, the
  same attention materialised (dense), and softmax attention with the same spatial bias. Times
  are measured in one run on one machine and reported with the ratio to the smallest L.
- ``sampling``: seconds for one shape at 25 steps (tokens to mesh) and shapes per second at batch
  16, with the shipped weights (preset named in the output).
- ``train-step``: seconds per training step of a model preset (forward, masked cross-entropy,
  backward, AdamW) eagerly and through ``torch.compile`` (``train model --compile``), in one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["attention", "sampling", "train-step"])
    p.add_argument("--preset", default="XS", help="model preset (train-step)")
    p.add_argument("--sides", type=int, nargs="+", default=[4, 6, 8, 10, 12, 16], help="lattice sides (attention)")
    p.add_argument("--dim", type=int, default=128, help="attention width")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16, help="batch for the throughput figure (sampling)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<what>.json)")


def _machine() -> dict:
    return {"machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _time(fn, repeats: int) -> float:
    fn()                                                       # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def bench_attention(args: argparse.Namespace) -> dict:
    from .attention import materialized_spatial_linear_attention, softmax_spatial_attention, spatial_linear_attention

    H, d = args.heads, args.dim // args.heads
    gamma = torch.linspace(0.5, 16, H)
    rows = []
    for n in args.sides:
        L = n**3
        q, k, v = (torch.randn(1, H, L, d) for _ in range(3))
        row = {"side": n, "tokens": L}
        for name, fn in (("lattice", spatial_linear_attention), ("dense", materialized_spatial_linear_attention),
                         ("softmax", softmax_spatial_attention)):
            row[f"{name} ms"] = 1e3 * _time(lambda: fn(q, k, v, gamma, [n]), args.repeats)
        rows.append(row)
    base = rows[0]
    for r in rows:
        for name in ("lattice", "dense", "softmax"):
            r[f"{name} x"] = r[f"{name} ms"] / base[f"{name} ms"]
        r["tokens x"] = r["tokens"] / base["tokens"]
    print(f"one attention layer, batch 1, {H} heads of {d} dims (times: best of {args.repeats})")
    cols = ["tokens", "tokens x", "lattice ms", "lattice x", "dense ms", "dense x", "softmax ms", "softmax x"]
    print("  ".join(f"{c:>11}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>11.2f}" if isinstance(r[c], float) else f"{r[c]:>11}" for c in cols))
    return {"benchmark": "attention", **_machine(), "heads": H, "head_dim": d, "rows": rows}


def bench_sampling(args: argparse.Namespace) -> dict:
    from .pipeline import load_pipeline
    from .sampler import SamplingOptions
    from .weights import WEIGHTS_DIR, read_config

    weights = args.weights or WEIGHTS_DIR
    pipe = load_pipeline(weights, args.device)
    options = SamplingOptions(num_steps=args.steps)
    pipe.generate("chair", 1, seed=0, options=SamplingOptions(num_steps=2))    # warm-up
    one = _time(lambda: pipe.generate("chair", 1, seed=1, options=options), max(1, args.repeats - 1))
    t0 = time.perf_counter()
    pipe.generate("chair", args.batch_size, seed=2, options=options)
    batch = time.perf_counter() - t0
    preset = read_config(Path(weights) / "model").get("preset")
    result = {"benchmark": "sampling", **_machine(), "preset": preset, "steps": args.steps,
              "device": str(pipe.device), "seconds_one_shape": one, "batch_size": args.batch_size,
              "seconds_batch": batch, "shapes_per_second_batch": args.batch_size / batch}
    print(f"sampling with model preset {preset} on {pipe.device}, {args.steps} steps, tokens to mesh")
    print(f"  one shape: {one:.2f} s   batch of {args.batch_size}: {batch:.2f} s "
          f"({args.batch_size / batch:.2f} shapes/s)")
    return result


def bench_train_step(args: argparse.Namespace) -> dict:
    from .masking import training_mask
    from .model import PRESETS, MaskedTransformer
    from .train.model import masked_token_loss
    from .weights import best_device

    device = torch.device(args.device) if args.device else best_device()
    g = torch.Generator().manual_seed(0)
    result = {"benchmark": "train-step", **_machine(), "preset": args.preset, "batch_size": args.batch_size,
              "device": str(device)}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = MaskedTransformer(PRESETS[args.preset]).to(device)
        c, nc = model.config, model.layout.num_coarse
        tokens = torch.cat([torch.randint(0, c.coarse_codebook_size, (args.batch_size, nc), generator=g),
                            torch.randint(0, c.codebook_size, (args.batch_size, model.layout.length - nc), generator=g)], 1)
        labels = torch.randint(0, c.num_classes, (args.batch_size,), generator=g)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
        forward = torch.compile(model, dynamic=False) if name == "compiled" else model

        def step():
            mask = training_mask(tokens[:, nc:], 0, model.layout, g)
            loss = masked_token_loss(forward, model.level_slices(), tokens.to(device), mask.to(device), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        t0 = time.perf_counter()
        step()                                                   # the compiled model compiles here
        result[f"{name} first step s"] = time.perf_counter() - t0
        result[f"{name} s/step"] = _time(step, args.repeats)
    result["speed-up"] = result["eager s/step"] / result["compiled s/step"]
    print(f"training step, preset {args.preset}, batch {args.batch_size}, {device} ({torch.get_num_threads()} threads)")
    print(f"  eager {result['eager s/step']:.2f} s/step   compiled {result['compiled s/step']:.2f} s/step "
          f"(x{result['speed-up']:.2f}; first compiled step {result['compiled first step s']:.0f} s)")
    return result


def main(args: argparse.Namespace) -> None:
    result = {"attention": bench_attention, "sampling": bench_sampling, "train-step": bench_train_step}[args.what](args)
    out = Path(args.out or RESULTS / f"{args.what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
