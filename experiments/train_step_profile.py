"""Where a training step's time goes: the shipped transformer, batch 16, bf16 autocast (as training
on an AMX CPU), one thread; forward / backward / optimiser wall times and the top operators by
self CPU time (torch.profiler), over ``--steps`` steps after two warm-up steps; then whole steps with
gamma learned and frozen (``train model --freeze-gamma``), interleaved, median of ``--repeats``.

    python experiments/train_step_profile.py --out experiments/results/train_step_profile.json

Shares of CPU time hold under a loaded machine; the absolute seconds do not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from smart3d.classes import CLASSES
from smart3d.dataset import DEFAULT_CACHE, load_split
from smart3d.masking import training_mask
from smart3d.model import MaskedTransformer, ModelConfig
from smart3d.sampler import empty_tokens
from smart3d.tokenizer import Tokenizer, TokenizerConfig
from smart3d.train.loop import cached_tokens
from smart3d.train.model import masked_token_loss
from smart3d.weights import cpu_has_amx, load_pretrained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights/model")
    p.add_argument("--tokenizer", default="weights/tokenizer")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer)
    train = load_split("train", CLASSES, 1000, args.cache)
    tokens = cached_tokens(tokenizer, args.tokenizer, train, args.cache, 1000, CLASSES)
    empty = int(empty_tokens(tokenizer)[-1])
    g = torch.Generator().manual_seed(0)

    def trainer(frozen: bool):
        model = load_pretrained(MaskedTransformer, ModelConfig, args.weights).train()
        for block in model.blocks:
            block.attn.gamma_raw.requires_grad_(not frozen)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-6)

    model, opt = trainer(frozen=False)
    nc = model.layout.num_coarse

    def step(model=model, opt=opt) -> tuple[float, float, float]:
        b = torch.randint(len(tokens), (16,), generator=g)
        mask = training_mask(tokens[b, nc:], empty, model.layout, g)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = masked_token_loss(model, model.level_slices(), tokens[b], mask, torch.zeros(16, dtype=torch.long))
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        times = np.array([step() for _ in range(args.steps)])
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    top = [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls_per_step": e.count / args.steps}
           for e in ops[:15]]
    fwd, bwd, opt_s = times.mean(0)
    frozen = trainer(frozen=True)
    step(*frozen)
    whole = {"learned": [], "frozen": []}
    for _ in range(args.repeats):
        whole["learned"].append(sum(step()))
        whole["frozen"].append(sum(step(*frozen)))
    med = {k: float(np.median(v)) for k, v in whole.items()}
    result = {"weights": args.weights, "amx": cpu_has_amx(), "threads": 1, "batch_size": 16, "steps": args.steps,
              "forward_s": fwd, "backward_s": bwd, "optimizer_s": opt_s, "top_ops": top,
              "step_s_gamma_learned": med["learned"], "step_s_gamma_frozen": med["frozen"],
              "frozen_speedup": med["learned"] / med["frozen"], "step_s_runs": whole}
    print(f"step: gamma learned {med['learned']:.3f} s, frozen {med['frozen']:.3f} s "
          f"(x{result['frozen_speedup']:.2f}, median of {args.repeats}, interleaved)")
    print(f"forward {fwd:.3f} s, backward {bwd:.3f} s, optimiser {opt_s:.3f} s")
    for t in top:
        print(f"  {t['op']:<40} {t['self_cpu_share']:6.1%}  {t['calls_per_step']:.0f} calls/step")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
