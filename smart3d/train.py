"""Training entry points: ``python -m smart3d train {classifier,tokenizer}``.

Long runs are resumable: a checkpoint (weights, optimiser, schedule position, RNG state) is written
to ``--checkpoint`` every ``--save-every`` steps and picked up again by re-running the same
command. Multi-process training goes through ``torchrun`` (PyTorch DDP: gloo on CPU, nccl on GPU);
each rank takes its own slice of every global batch.
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
from tqdm import tqdm

from .shapes import CLASSES
from .weights import WEIGHTS_DIR, best_device, save_pretrained

COMPONENTS = ("classifier", "tokenizer")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .dataset import DEFAULT_CACHE
    from .tokenizer import PRESETS

    p.add_argument("what", choices=list(COMPONENTS), help="component to train")
    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--num-per-class", type=int, default=1000, help="benchmark shapes per class (80%% train)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="benchmark cache folder")
    p.add_argument("--preset", default="base", choices=list(PRESETS), help="tokenizer preset")
    p.add_argument("--epochs", type=int, default=4, help="classifier epochs")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (tokenizer)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default per component)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu / cuda (default: best available)")
    p.add_argument("--checkpoint", default=None, help="resumable checkpoint (default checkpoints/<what>.pt)")
    p.add_argument("--save-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--out", default=None, help="weights path without extension (default weights/<what>)")


# --------------------------------------------------------------------------------------------
# Shared helpers: distribution, schedule, checkpoints
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


def _command_line(args: argparse.Namespace, keys: list[str]) -> str:
    flags = " ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k in keys)
    return f"python -m smart3d train {args.what} {flags}"


# --------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------

def train_classifier_cmd(args: argparse.Namespace) -> None:
    from .classifier import ClassifierConfig, classify, train_classifier
    from .dataset import load_split

    device = args.device or best_device()
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    config = ClassifierConfig()
    model, log = train_classifier(train.occupancy, train.labels, val.occupancy, val.labels, config,
                                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 2e-3,
                                  seed=args.seed, device=device)
    pred, _ = classify(model, test.occupancy)
    test_acc = float((pred == test.labels).mean())
    print(f"classifier: test accuracy {100 * test_acc:.2f}% on {len(test)} shapes, "
          f"trained in {log['seconds']:.0f} s")
    out = Path(args.out or WEIGHTS_DIR / "classifier")
    save_pretrained(model, config, out, classes=list(CLASSES),
                    command=_command_line(args, ["num_per_class", "epochs", "batch_size", "seed"]),
                    train_log=log, test_accuracy=test_acc, num_test=len(test))
    print(f"wrote {out}.safetensors / .json")


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def tokenizer_metrics(model, surface: np.ndarray, occupancy: np.ndarray, device, batch_size: int = 32) -> dict:
    """Mean voxel IoU of reconstructions, codebook usage and perplexity on a set of shapes."""
    from .tokenizer import iou, usage_stats

    was = model.training
    model.eval()
    ious, fine, coarse = [], [], []
    for i in range(0, len(surface), batch_size):
        s = torch.from_numpy(surface[i:i + batch_size]).to(device)
        tokens = model.encode(s)
        ious.append(iou(model.decode(tokens), torch.from_numpy(occupancy[i:i + batch_size]).to(device)).cpu())
        fine.append(tokens[:, model.layout.num_coarse:].cpu())
        coarse.append(tokens[:, :model.layout.num_coarse].cpu())
    model.train(was)
    out = {"iou": float(torch.cat(ious).mean()), "ious": torch.cat(ious).numpy(),
           **{f"fine_{k}": v for k, v in usage_stats(torch.cat(fine), model.config.codebook_size).items()}}
    if model.layout.num_coarse:
        out.update({f"coarse_{k}": v for k, v in
                    usage_stats(torch.cat(coarse), model.config.coarse_codebook_size).items()})
    return out


def train_tokenizer_cmd(args: argparse.Namespace) -> None:
    from .dataset import load_split
    from .tokenizer import PRESETS, Tokenizer

    rank, world, device = setup_distributed(args.device)
    torch.manual_seed(args.seed)                                  # same initial weights on every rank
    config = PRESETS[args.preset]
    model = Tokenizer(config).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    peak = args.lr or 1e-3
    opt = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.95), weight_decay=0.0)
    ckpt_path = Path(args.checkpoint or f"checkpoints/tokenizer_{args.preset}.pt")
    g = torch.Generator().manual_seed(args.seed)
    step, t_used = 0, 0.0
    if (state := load_checkpoint(ckpt_path)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["generator"])
        step, t_used = state["step"], state["seconds"]
        if rank == 0:
            print(f"resumed {ckpt_path} at step {step}")
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    surface, sdf = torch.from_numpy(train.surface), torch.from_numpy(train.sdf)
    local = args.batch_size // world
    assert local * world == args.batch_size, f"batch {args.batch_size} not divisible by {world} ranks"
    bar = tqdm(total=args.steps, initial=step, desc="tokenizer", disable=rank != 0)
    t0 = time.time()
    while step < args.steps:
        b = torch.randint(len(surface), (args.batch_size,), generator=g)[rank * local:(rank + 1) * local]
        s, d = surface[b], sdf[b]
        if torch.rand((), generator=g) < 0.5:                     # mirror in x: shapes are symmetric in kind
            s, d = s.flip(1), d.flip(1)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.warmup, peak)
        out = ddp(s.to(device), d.to(device))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        step += 1
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(recon=f"{out['recon'].item():.4f}", commit=f"{out['commit'].item():.4f}")
        if rank == 0 and (step % args.save_every == 0 or step == args.steps):
            save_checkpoint(ckpt_path, model=model.state_dict(), opt=opt.state_dict(), step=step,
                            generator=g.get_state(), seconds=t_used + time.time() - t0)
    bar.close()
    if rank != 0:
        return
    m = tokenizer_metrics(model, val.surface, val.occupancy, device)
    seconds = t_used + time.time() - t0
    summary = {k: v for k, v in m.items() if k != "ious"}
    print("tokenizer (val): " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    out_path = Path(args.out or WEIGHTS_DIR / "tokenizer")
    save_pretrained(model, config, out_path, preset=args.preset,
                    command=_command_line(args, ["preset", "num_per_class", "steps", "batch_size", "seed"]),
                    train_seconds=seconds, hardware=f"{world} x {device.type}", steps=step, val=summary)
    print(f"wrote {out_path}.safetensors / .json after {seconds / 60:.1f} min")


def main(args: argparse.Namespace) -> None:
    {"classifier": train_classifier_cmd, "tokenizer": train_tokenizer_cmd}[args.what](args)
