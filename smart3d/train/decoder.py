"""Retrain only the field decoder of a trained tokenizer on its frozen tokens:
``python -m smart3d train decoder``.

The encoder and both codebooks are copied unchanged, so every shape keeps its tokens and a
transformer trained on them stays valid; only tokens -> field (and so the meshes) improves.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ..classes import CLASSES
from ..weights import WEIGHTS_DIR, matching_state, read_config
from .loop import add_common_arguments, check_replicas, cosine_lr, encode_dense, end_of_step, resume, setup_distributed
from .tokenizer import save_tokenizer

LR = 1e-3                                                        # peak learning rate unless --lr
# the fields --preset takes from its tokenizer preset: the decoder's size
DECODER_FIELDS = ("width", "blocks", "fine_width", "voxel_width", "token_embed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tokenizer import PRESETS

    p.add_argument("--preset", default="fine16", choices=list(PRESETS),
                   help="tokenizer preset whose decoder size to take (" + ", ".join(DECODER_FIELDS) + ")")
    p.add_argument("--tokenizer", default=str(WEIGHTS_DIR / "tokenizer"),
                   help="tokenizer weights whose encoder and codes are kept")
    p.add_argument("--token-noise", type=float, default=0.0,
                   help="replace this fraction of the surface tokens by one of their nearest codes "
                        "(trains a decoder that tolerates the sampler's imperfect codes; 0: off)")
    p.add_argument("--occupancy-loss", type=float, default=0.0,
                   help="weight of an extra cross-entropy against the hard occupancy (sdf < 0), the "
                        "sign that voxel IoU counts, beside the soft one-voxel ramp")
    p.add_argument("--iou-loss", type=float, default=0.0,
                   help="weight of a per-shape soft-IoU loss (soft_iou_loss) beside the voxel cross-entropy; "
                        "IoU is per shape, so thin shapes' errors count more than the voxel mean gives them")
    p.add_argument("--oversample", nargs="+", default=[], metavar="CLASS=FACTOR", type=class_factor,
                   help="draw this class's shapes FACTOR times as often (e.g. airplane=3); the "
                        "metric asks every class to reach its mark, and thin classes lag")
    add_common_arguments(p, lr=LR, out="weights/tokenizer", checkpoint="checkpoints/decoder_<preset>.pt")


class ClassFactor(NamedTuple):
    """One ``--oversample`` entry; prints back as typed, so the recorded command reruns."""
    name: str
    factor: float

    def __str__(self) -> str:
        return f"{self.name}={self.factor:g}"


def class_factor(text: str) -> ClassFactor:
    """``CLASS=FACTOR`` (argparse type of ``--oversample``) -> (class, factor > 0)."""
    from ..dataset import check_class

    name, sep, factor = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected CLASS=FACTOR, got {text!r}")
    try:
        check_class(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    try:
        value = float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"FACTOR must be a number, got {factor!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"FACTOR must be a positive number, got {factor!r}")
    return ClassFactor(name, value)


def draw_weights(labels: np.ndarray, oversample: list[ClassFactor], copies: int = 1) -> torch.Tensor:
    """Per-sample draw weights over ``copies`` stacked copies of a split: 1, times each class's factor."""
    weights = torch.ones(len(labels), dtype=torch.float64)
    for name, factor in oversample:
        weights[torch.from_numpy(labels == CLASSES.index(name))] *= factor
    return weights.repeat(copies)


def nearest_codes(codebook: torch.Tensor, exclude: int, k: int = 8) -> torch.Tensor:
    """(K, D) codebook -> (K, k) int64: each code's k nearest other codes, never ``exclude`` (empty space)."""
    d = torch.cdist(codebook, codebook)
    d.fill_diagonal_(float("inf"))
    d[:, exclude] = float("inf")
    return d.topk(k, dim=1, largest=False).indices


def perturb_tokens(fine: torch.Tensor, near: torch.Tensor, empty: int, rate: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Replace a ``rate`` fraction of the surface tokens (B, 512) by a random one of their nearest codes.

    A transformer's samples are near misses more often than wild ones: a leg patch gets a code
    for a leg a little off. A decoder that saw such codes in training joins them up instead of
    decoding each patch literally. Empty-space tokens stay as they are.
    """
    hit = (torch.rand(fine.shape, generator=generator) < rate) & (fine != empty)
    pick = near[fine, torch.randint(near.shape[1], fine.shape, generator=generator)]
    return torch.where(hit, pick, fine)


def main(args: argparse.Namespace) -> None:
    """Retrain only the field decoder of ``--tokenizer`` on its frozen tokens.

    The encoder and both codebooks are copied unchanged, so every shape keeps its tokens and a
    transformer trained on them stays valid; only tokens -> field (and so the meshes) improves.
    The decoder's size comes from ``--preset``; its layers that keep their shape start from the
    old decoder. Targets are the dense-cloud tokens of the train split and its x-mirror.
    """
    from dataclasses import asdict, replace

    from ..dataset import load_split
    from ..sampler import empty_tokens
    from ..tokenizer import PRESETS, Tokenizer, TokenizerConfig, soft_occupancy
    from ..weights import load_pretrained

    rank, world, device = setup_distributed(args.device)
    torch.manual_seed(args.seed)
    old = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, device)
    config = replace(old.config, **{k: getattr(PRESETS[args.preset], k) for k in DECODER_FIELDS})
    model = Tokenizer(config).to(device)
    model.load_state_dict(matching_state(model, old))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("decoder."))
    params = list(model.decoder.parameters())
    ddp = torch.nn.parallel.DistributedDataParallel(model.decoder) if world > 1 else model.decoder
    peak = args.lr or LR
    opt = torch.optim.AdamW(params, lr=peak, betas=(0.9, 0.95), weight_decay=0.0)
    ckpt_path = Path(args.checkpoint or f"checkpoints/decoder_{args.preset}.pt")
    g = torch.Generator().manual_seed(args.seed)
    step, t_used, log = resume(ckpt_path, {"decoder": model.decoder}, opt, g, rank)
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    tokens = encode_dense(model, train.dense)
    sdf = torch.from_numpy(train.sdf)
    weights = draw_weights(train.labels, args.oversample, copies=2)     # the x-mirrors follow their shapes
    del train                                                     # the dense clouds are large; only sdf is needed now
    n = len(sdf)
    local = args.batch_size // world
    assert local * world == args.batch_size, f"batch {args.batch_size} not divisible by {world} ranks"
    model.eval()                                                  # frozen codebooks: no EMA updates
    empty = int(empty_tokens(model)[-1])
    near = nearest_codes(model.quantizer.codebook.cpu(), exclude=empty)
    bar = tqdm(total=args.steps, initial=step, desc="decoder", disable=rank != 0)
    t0 = time.time()
    while step < args.steps:
        b = torch.multinomial(weights, args.batch_size, replacement=True, generator=g)[rank * local:(rank + 1) * local]
        target = torch.stack([sdf[i - n].flip(0) if i >= n else sdf[i] for i in b.tolist()])   # 2nd half: mirrored
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.warmup, peak)
        fine = tokens[b][:, model.layout.num_coarse:]
        if args.token_noise > 0:
            fine = perturb_tokens(fine, near, empty, args.token_noise, g)
        fine, target = fine.to(device), target.to(device)
        logits = ddp(model.quantizer.codebook[fine], fine)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, soft_occupancy(target))
        if args.occupancy_loss > 0:
            loss = loss + args.occupancy_loss * torch.nn.functional.binary_cross_entropy_with_logits(
                logits, (target < 0).float())
        if args.iou_loss > 0:
            loss = loss + args.iou_loss * soft_iou_loss(logits, target < 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(recon=f"{loss.item():.4f}")
            log.append((step, float(loss.item())))
        if end_of_step(args, rank, step, ckpt_path, t0, t_used, g, opt, log, decoder=model.decoder):
            break
    bar.close()
    check_replicas(model.decoder)
    if rank != 0:
        return
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    before = {k: v for k, v in read_config(args.tokenizer).items() if k != "recon_curve"}
    save_tokenizer(model, args, val, device, world, step, t0, t_used, log, "tokenizer with the new decoder",
                   ["preset", "tokenizer", "num_per_class", "steps", "batch_size", "lr", "warmup", "token_noise",
                    "occupancy_loss", "iou_loss", "oversample", "minutes", "seed"],
                   encoder_from=before, decoder_config=asdict(config))


def soft_iou_loss(logits: torch.Tensor, occupied: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU per shape, averaged over the batch: (B, ...) occupancy logits against a bool grid.

    The voxel-mean cross-entropy weighs every voxel alike, so a wing's handful of wrong voxels
    barely moves it while they cost an airplane's IoU most; this term's gradient per voxel scales
    with 1 / (the shape's soft union), as the metric does.
    """
    p, y = torch.sigmoid(logits).flatten(1), occupied.flatten(1).float()
    inter = (p * y).sum(1)
    union = p.sum(1) + y.sum(1) - inter
    return (1.0 - inter / union.clamp_min(1e-6)).mean()
