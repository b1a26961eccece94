"""Train the tokenizer (point cloud -> coarse and fine codes -> occupancy field):
``python -m smart3d train tokenizer``. ``save_tokenizer`` and ``tokenizer_metrics`` also end a
decoder run (decoder.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import geometry as G
from ..classes import CLASSES
from ..weights import WEIGHTS_DIR, read_config, save_pretrained
from .loop import add_common_arguments, check_replicas, command_line, cosine_lr, end_of_step, resume, setup_distributed

LR = 1e-3                                                        # peak learning rate unless --lr


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tokenizer import PRESETS

    p.add_argument("--preset", default="base", choices=list(PRESETS), help="tokenizer preset")
    p.add_argument("--init", default=None,
                   help="start from these trained weights (path without extension), each code split into "
                        "codebook_size / old codebook_size children (tokenizer.grow_codebook)")
    add_common_arguments(p, lr=LR, out="weights/tokenizer", checkpoint="checkpoints/tokenizer_<preset>.pt")


@torch.no_grad()
def tokenizer_metrics(model, dense: np.ndarray, occupancy: np.ndarray, device, batch_size: int = 32,
                      num_points: int | None = None, labels: np.ndarray | None = None) -> dict:
    """Mean voxel IoU of reconstructions, codebook usage and perplexity on a set of shapes.

    dense : (K, N, 3) surface points; the first ``num_points`` of each are encoded (all if None).
    labels : (K,) class indices; if given, the mean IoU of each class is reported too.
    """
    from ..tokenizer import iou, usage_stats

    was = model.training
    model.eval()
    ious, fine, coarse = [], [], []
    quantized = model.config.quantize
    for i in range(0, len(dense), batch_size):
        pts = torch.from_numpy(dense[i:i + batch_size, :num_points].astype(np.float32))
        feats = G.surface_features(pts).to(device)
        occ = torch.from_numpy(occupancy[i:i + batch_size]).to(device)
        logits, tokens = model.reconstruct(feats)
        ious.append(iou(logits, occ).cpu())
        if quantized:
            fine.append(tokens[:, model.layout.num_coarse:].cpu())
            coarse.append(tokens[:, :model.layout.num_coarse].cpu())
    model.train(was)
    ious = torch.cat(ious)
    out = {"iou": float(ious.mean()), "ious": ious.numpy()}
    if labels is not None:
        out["iou_per_class"] = {CLASSES[c]: float(ious[torch.from_numpy(labels == c)].mean()) for c in np.unique(labels)}
    if quantized:
        out.update({f"fine_{k}": v for k, v in usage_stats(torch.cat(fine), model.config.codebook_size).items()})
    if quantized and model.layout.num_coarse:
        out.update({f"coarse_{k}": v for k, v in
                    usage_stats(torch.cat(coarse), model.config.coarse_codebook_size).items()})
    return out


def save_tokenizer(model, args: argparse.Namespace, val, device, world: int, step: int, t0: float, t_used: float,
                   log: list, title: str, command_keys: list[str], **metadata) -> None:
    """End of a tokenizer (or decoder) run: validation figures, then weights + JSON at ``--out``.

    ``train_seconds`` counts this run's wall time since ``t0`` (validation included) plus
    ``t_used`` from the runs it resumed.
    """
    m = tokenizer_metrics(model, val.dense, val.occupancy, device, labels=val.labels)
    seconds = t_used + time.time() - t0
    summary = {k: v for k, v in m.items() if k != "ious"}
    print(f"{title} (val): " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k != "iou_per_class"))
    print("val IoU per class: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["iou_per_class"].items()))
    out_path = Path(args.out or WEIGHTS_DIR / "tokenizer")
    save_pretrained(model, model.config, out_path, preset=args.preset, command=command_line(args, command_keys),
                    train_seconds=seconds, hardware=f"{world} x {device.type}", steps=step, val=summary,
                    recon_curve=log, **metadata)
    print(f"wrote {out_path}.safetensors / .json after {seconds / 60:.1f} min")


def scan_densities(num: int, dense: int, generator: torch.Generator, low: int = 4096) -> list[int]:
    """Point counts for the tokenizer's inputs: half the shapes dense, half log-uniform in [low, dense].

    Scans and uploads are sparser than the cached clouds; training on both keeps the tokens of
    a sparser cloud close to those of the dense one.
    """
    u = torch.rand(num, 2, generator=generator)
    n = torch.exp(np.log(low) + u[:, 0] * (np.log(dense) - np.log(low))).long()
    return torch.where(u[:, 1] < 0.5, torch.full_like(n, dense), n.clamp(max=dense)).tolist()


def main(args: argparse.Namespace) -> None:
    from ..dataset import load_split
    from ..tokenizer import PRESETS, Tokenizer

    rank, world, device = setup_distributed(args.device)
    torch.manual_seed(args.seed)                                  # same initial weights on every rank
    config = PRESETS[args.preset]
    model = Tokenizer(config).to(device)
    ckpt_path = Path(args.checkpoint or f"checkpoints/tokenizer_{args.preset}.pt")
    g = torch.Generator().manual_seed(args.seed)
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    metadata = {}
    if args.init:                                                 # grow a trained tokenizer's fine codebook
        metadata["grown_from"] = {k: v for k, v in read_config(args.init).items() if k != "recon_curve"}
        if not ckpt_path.exists():
            grow_from(model, args.init, train.dense, device, g)
        model.freeze_coarse()
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    peak = args.lr or LR
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=peak, betas=(0.9, 0.95),
                            weight_decay=0.0)
    step, t_used, log = resume(ckpt_path, {"model": model}, opt, g, rank)
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    dense, sdf = train.dense, torch.from_numpy(train.sdf)
    local = args.batch_size // world
    assert local * world == args.batch_size, f"batch {args.batch_size} not divisible by {world} ranks"
    bar = tqdm(total=args.steps, initial=step, desc="tokenizer", disable=rank != 0)
    t0 = time.time()
    while step < args.steps:
        b = torch.randint(len(dense), (args.batch_size,), generator=g)[rank * local:(rank + 1) * local]
        pts, d = torch.from_numpy(dense[b.numpy()].astype(np.float32)), sdf[b]
        if torch.rand((), generator=g) < 0.5:                     # mirror in x: shapes are symmetric in kind
            pts, d = pts * torch.tensor([-1.0, 1.0, 1.0]), d.flip(1)
        feats = G.surface_features([p[:n] for p, n in zip(pts, scan_densities(len(b), pts.shape[1], g))])
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.warmup, peak)
        out = ddp(feats.to(device), d.to(device))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        step += 1
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(recon=f"{out['recon'].item():.4f}", commit=f"{out['commit'].item():.4f}")
            log.append((step, float(out["recon"].item())))
        if end_of_step(args, rank, step, ckpt_path, t0, t_used, g, opt, log, model=model):
            break
    bar.close()
    check_replicas(model)
    if rank != 0:
        return
    save_tokenizer(model, args, val, device, world, step, t0, t_used, log, "tokenizer",
                   ["preset", "init", "num_per_class", "steps", "batch_size", "lr", "warmup", "minutes", "seed"],
                   **metadata)


@torch.no_grad()
def grow_from(model, path: str, dense: np.ndarray, device, generator: torch.Generator, num: int = 2000) -> None:
    """Start ``model`` from the trained tokenizer at ``path`` with its codes split (``grow_codebook``).

    The children of each code come from the old encoder's latents of ``num`` random training
    clouds, at the point counts training will feed (``scan_densities``).
    """
    from ..tokenizer import Tokenizer, TokenizerConfig, grow_codebook
    from ..weights import load_pretrained

    old = load_pretrained(Tokenizer, TokenizerConfig, path, device).eval()
    pick = torch.randperm(len(dense), generator=generator)[:num].numpy()
    latents = []
    for i in range(0, len(pick), 64):
        pts = torch.from_numpy(dense[pick[i:i + 64]].astype(np.float32))
        feats = G.surface_features([p[:n] for p, n in zip(pts, scan_densities(len(pts), pts.shape[1], generator))])
        latents.append(old._fine_latents(feats.to(device)).flatten(0, 1))
    grow_codebook(model, old, torch.cat(latents), generator)
    print(f"grew {old.config.codebook_size} codes of {path} to {model.config.codebook_size}")
