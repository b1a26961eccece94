"""What every trainer shares: its common flags, distribution, schedule, checkpoints, progress, EMA,
and the token sequences of a split.

Long runs are resumable: a checkpoint (weights, optimiser, schedule position, RNG state) is written
to ``--checkpoint`` every ``--save-every`` steps and picked up again by re-running the same
command (``resume``, ``end_of_step``). Multi-process training goes through ``torchrun`` (PyTorch
DDP: gloo on CPU, nccl on GPU); each rank takes its own slice of every global batch.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..classes import CLASSES
from ..weights import best_device


def add_common_arguments(p: argparse.ArgumentParser, *, lr: float, out: str, checkpoint: str | None) -> None:
    """The flags every trainer takes: data, batch, learning rate, seed, device and ``--out``.

    ``lr`` and ``out`` are the trainer's defaults (for the help; ``--lr`` itself defaults to None so
    the recorded command names it only when given). ``checkpoint`` describes the default checkpoint
    path; a trainer that does not resume (None) gets no step, time or checkpoint flags.
    """
    from ..dataset import DEFAULT_CACHE

    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--num-per-class", type=int, default=1000, help="benchmark shapes per class (80%% train)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="benchmark cache folder")
    if checkpoint is not None:
        p.add_argument("--minutes", type=float, default=None, help="stop (and save) after this wall time")
        p.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {lr:g})")
    if checkpoint is not None:
        p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu / cuda (default: best available)")
    if checkpoint is not None:
        p.add_argument("--checkpoint", default=None, help=f"resumable checkpoint (default {checkpoint})")
        p.add_argument("--save-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--out", default=None, help=f"weights path without extension (default {out})")


# --------------------------------------------------------------------------------------------
# Distribution, schedule, checkpoints
# --------------------------------------------------------------------------------------------

def setup_distributed(device: str | torch.device | None) -> tuple[int, int, torch.device]:
    """Join the torchrun process group if launched by torchrun; returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world, torch.device(device or best_device())


def cosine_lr(step: int, total: int, warmup: int, peak: float, floor: float = 0.05) -> float:
    """Linear warm-up then cosine decay to ``floor * peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(path: Path, **state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def resume(path: Path, modules: dict[str, torch.nn.Module], opt, generator: torch.Generator,
           rank: int) -> tuple[int, float, list]:
    """Restore ``modules`` (by checkpoint key), optimiser and RNG from ``path`` if it exists.

    Returns (step, training seconds used so far, the loss log so far); (0, 0.0, []) for a fresh run.
    """
    if (state := load_checkpoint(path)) is None:
        return 0, 0.0, []
    for key, module in modules.items():
        module.load_state_dict(state[key])
    opt.load_state_dict(state["opt"])
    generator.set_state(state["generator"])
    if rank == 0:
        print(f"resumed {path} at step {state['step']}")
    return state["step"], state["seconds"], list(state.get("log", []))


def end_of_step(args: argparse.Namespace, rank: int, step: int, path: Path, t0: float, t_used: float,
                generator: torch.Generator, opt, log: list, **modules: torch.nn.Module) -> bool:
    """Checkpoint every ``--save-every`` steps, at the last step and when ``--minutes`` ran out.

    Returns True when the run should stop for time.
    """
    out_of_time = args.minutes is not None and (time.time() - t0) / 60 > args.minutes
    if rank == 0 and (step % args.save_every == 0 or step == args.steps or out_of_time):
        save_checkpoint(path, **{k: m.state_dict() for k, m in modules.items()}, opt=opt.state_dict(), step=step,
                        generator=generator.get_state(), seconds=t_used + time.time() - t0, log=log)
    return out_of_time


def check_replicas(module: torch.nn.Module) -> None:
    """Under DDP, assert every rank holds bit-identical parameters and buffers (prints on rank 0)."""
    if not dist.is_initialized():
        return
    flat = torch.cat([t.detach().double().flatten().cpu() for t in module.state_dict().values()])
    sums = torch.tensor([flat.sum().item(), (flat * torch.arange(len(flat), dtype=torch.float64)).sum().item()])
    gathered = [torch.zeros_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    assert all(torch.equal(gathered[0], g) for g in gathered), f"replicas diverged: {gathered}"
    if dist.get_rank() == 0:
        print(f"replicas identical across {dist.get_world_size()} ranks")


def log_progress(bar, log: list, step: int, **losses: torch.Tensor) -> None:
    """Advance the progress bar; every 10 steps show the losses and append ``(step, *losses)`` to ``log``."""
    bar.update()
    if step % 10 == 0:
        values = {k: float(v.item()) for k, v in losses.items()}
        bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
        log.append((step, *values.values()))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """EMA of the parameters (decay warmed up over the first steps); buffers (BatchNorm statistics) copied."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def command_line(args: argparse.Namespace, keys: list[str]) -> str:
    def text(value) -> str:                                      # list flags (--oversample) space-separated
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)
    flags = " ".join(f"--{k.replace('_', '-')} {text(getattr(args, k))}" for k in keys
                     if getattr(args, k) is not None and getattr(args, k) != [])
    return f"python -m smart3d train {args.what} {flags}"


# --------------------------------------------------------------------------------------------
# Token sequences of a split (decoder, model and image trainers)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_split(tokenizer, data, mirror: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences and labels of a loaded split (``load_split``), plus its x-mirrored copy when ``mirror``."""
    return encode_dense(tokenizer, data.dense, mirror), torch.from_numpy(data.labels).repeat(2 if mirror else 1)


def cached_tokens(tokenizer, tokenizer_path: str, data, cache: str | Path, num_per_class: int, classes) -> torch.Tensor:
    """``encode_split``'s sequences, kept on disk next to the benchmark cache (encoding 19 200
    sequences takes minutes on 2 cores). Keyed by the tokenizer's weights and the split, so a
    changed tokenizer is never read stale."""
    import hashlib

    from ..dataset import cache_dir

    digest = hashlib.sha1(Path(tokenizer_path).with_suffix(".safetensors").read_bytes()).hexdigest()[:12]
    path = cache_dir(cache) / f"tokens_{digest}_{num_per_class}_{'-'.join(classes)}.pt"
    if path.exists():
        return torch.load(path)
    tokens = encode_dense(tokenizer, data.dense)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tokens, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return tokens


@torch.no_grad()
def encode_dense(tokenizer, dense: np.ndarray, mirror: bool = True) -> torch.Tensor:
    """Token sequences of dense clouds (K, N, 3), then (if ``mirror``) of their x-mirrors: (K or 2K, L)."""
    signs = [1.0, -1.0] if mirror else [1.0]
    return torch.cat([torch.cat([tokenizer.encode_points(torch.from_numpy(dense[i:i + 64].astype(np.float32))
                                                         * torch.tensor([sx, 1.0, 1.0])).cpu()
                                 for i in range(0, len(dense), 64)]) for sx in signs])
