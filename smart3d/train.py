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
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from . import geometry as G
from .classes import CLASSES
from .weights import WEIGHTS_DIR, best_device, matching_state, read_config, save_pretrained

COMPONENTS = ("classifier", "tokenizer", "decoder", "model", "image")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .dataset import DEFAULT_CACHE
    from .image import PRESETS as IMAGE_PRESETS
    from .model import PRESETS as MODEL_PRESETS
    from .tokenizer import PRESETS

    p.add_argument("what", choices=list(COMPONENTS), help="component to train")
    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--num-per-class", type=int, default=1000, help="benchmark shapes per class (80%% train)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="benchmark cache folder")
    p.add_argument("--preset", default=None, choices=sorted(set(PRESETS) | set(MODEL_PRESETS) | set(IMAGE_PRESETS)),
                   help=f"tokenizer preset ({', '.join(PRESETS)}; default base) or model preset "
                        f"({', '.join(MODEL_PRESETS)}; default XS)")
    p.add_argument("--attention", default="linear", choices=["linear", "softmax"], help="model attention kind")
    p.add_argument("--levels", type=int, default=2, choices=[1, 2], help="token levels (1: fine only, ablation)")
    p.add_argument("--local-conv", action="store_true",
                   help="model: a depthwise 3x3x3 convolution over each token lattice in every block")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="model: bf16 autocast (auto: on CUDA and on CPUs with AMX, where it is ~3.5x faster)")
    p.add_argument("--tokenizer", default=str(WEIGHTS_DIR / "tokenizer"),
                   help="tokenizer weights (model; decoder: whose encoder and codes are kept)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped model weights")
    p.add_argument("--class-dropout", type=float, default=0.1, help="label dropout for guidance")
    p.add_argument("--minutes", type=float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--epochs", type=int, default=4, help="classifier epochs")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (tokenizer, decoder)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default per component)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu / cuda (default: best available)")
    p.add_argument("--checkpoint", default=None, help="resumable checkpoint (default checkpoints/<what>.pt)")
    p.add_argument("--save-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--compile", action="store_true",
                   help="model: torch.compile the transformer (~1.5x faster steps on CPU after ~1 min of compiling)")
    p.add_argument("--token-noise", type=float, default=0.0,
                   help="decoder: replace this fraction of the surface tokens by one of their nearest codes "
                        "(trains a decoder that tolerates the sampler's imperfect codes; 0: off)")
    p.add_argument("--occupancy-loss", type=float, default=0.0,
                   help="decoder: weight of an extra cross-entropy against the hard occupancy (sdf < 0), the "
                        "sign that voxel IoU counts, beside the soft one-voxel ramp")
    p.add_argument("--iou-loss", type=float, default=0.0,
                   help="decoder: weight of a per-shape soft-IoU loss (soft_iou_loss) beside the voxel cross-entropy; "
                        "IoU is per shape, so thin shapes' errors count more than the voxel mean gives them")
    p.add_argument("--oversample", nargs="+", default=[], metavar="CLASS=FACTOR", type=class_factor,
                   help="decoder: draw this class's shapes FACTOR times as often (e.g. airplane=3); the "
                        "metric asks every class to reach its mark, and thin classes lag")
    p.add_argument("--views", type=int, default=2, help="image: rendered views per shape")
    p.add_argument("--init", default=None,
                   help="tokenizer: start from these trained weights (path without extension), each code split into "
                        "codebook_size / old codebook_size children (tokenizer.grow_codebook); model: start "
                        "from this transformer, its fine codes carried over to --tokenizer's (carry_over)")
    p.add_argument("--out", default=None, help="weights path without extension (default weights/<what>)")


class ClassFactor(NamedTuple):
    """One ``--oversample`` entry; prints back as typed, so the recorded command reruns."""
    name: str
    factor: float

    def __str__(self) -> str:
        return f"{self.name}={self.factor:g}"


def class_factor(text: str) -> ClassFactor:
    """``CLASS=FACTOR`` (argparse type of ``--oversample``) -> (class, factor > 0)."""
    from .dataset import check_class

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


# --------------------------------------------------------------------------------------------
# Shared helpers: distribution, schedule, checkpoints
# --------------------------------------------------------------------------------------------

def cpu_has_amx() -> bool:
    """Intel AMX (bf16 tile matmuls) on this CPU: there bf16 autocast makes training several times faster."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_amx())
    return precision == "bf16"


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


def _command_line(args: argparse.Namespace, keys: list[str]) -> str:
    def text(value) -> str:                                      # list flags (--oversample) space-separated
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)
    flags = " ".join(f"--{k.replace('_', '-')} {text(getattr(args, k))}" for k in keys
                     if getattr(args, k) is not None and getattr(args, k) != [])
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
    model, log = train_classifier(train.points, train.labels, val.points, val.labels, config,
                                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or 2e-3,
                                  seed=args.seed, device=device)
    pred, _ = classify(model, test.points)
    test_acc = float((pred == test.labels).mean())
    print(f"classifier: test accuracy {100 * test_acc:.2f}% on {len(test)} shapes, "
          f"trained in {log['seconds']:.0f} s")
    out = Path(args.out or WEIGHTS_DIR / "classifier")
    save_pretrained(model, config, out, classes=list(CLASSES),
                    command=_command_line(args, ["num_per_class", "epochs", "batch_size", "lr", "seed"]),
                    train_log=log, test_accuracy=test_acc, num_test=len(test))
    print(f"wrote {out}.safetensors / .json")


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def tokenizer_metrics(model, dense: np.ndarray, occupancy: np.ndarray, device, batch_size: int = 32,
                      num_points: int | None = None, labels: np.ndarray | None = None) -> dict:
    """Mean voxel IoU of reconstructions, codebook usage and perplexity on a set of shapes.

    dense : (K, N, 3) surface points; the first ``num_points`` of each are encoded (all if None).
    labels : (K,) class indices; if given, the mean IoU of each class is reported too.
    """
    from .tokenizer import iou, usage_stats

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
    save_pretrained(model, model.config, out_path, preset=args.preset, command=_command_line(args, command_keys),
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


def train_tokenizer_cmd(args: argparse.Namespace) -> None:
    from .dataset import load_split
    from .tokenizer import PRESETS, Tokenizer

    rank, world, device = setup_distributed(args.device)
    torch.manual_seed(args.seed)                                  # same initial weights on every rank
    args.preset = args.preset or "base"
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
    peak = args.lr or 1e-3
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
    from .tokenizer import Tokenizer, TokenizerConfig, grow_codebook
    from .weights import load_pretrained

    old = load_pretrained(Tokenizer, TokenizerConfig, path, device).eval()
    pick = torch.randperm(len(dense), generator=generator)[:num].numpy()
    latents = []
    for i in range(0, len(pick), 64):
        pts = torch.from_numpy(dense[pick[i:i + 64]].astype(np.float32))
        feats = G.surface_features([p[:n] for p, n in zip(pts, scan_densities(len(pts), pts.shape[1], generator))])
        latents.append(old._fine_latents(feats.to(device)).flatten(0, 1))
    grow_codebook(model, old, torch.cat(latents), generator)
    print(f"grew {old.config.codebook_size} codes of {path} to {model.config.codebook_size}")


# --------------------------------------------------------------------------------------------
# Decoder on frozen tokens
# --------------------------------------------------------------------------------------------

DECODER_FIELDS = ("width", "blocks", "fine_width", "voxel_width", "token_embed")


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


def train_decoder_cmd(args: argparse.Namespace) -> None:
    """Retrain only the field decoder of ``--tokenizer`` on its frozen tokens.

    The encoder and both codebooks are copied unchanged, so every shape keeps its tokens and a
    transformer trained on them stays valid; only tokens -> field (and so the meshes) improves.
    The decoder's size comes from ``--preset``; its layers that keep their shape start from the
    old decoder. Targets are the dense-cloud tokens of the train split and its x-mirror.
    """
    from dataclasses import asdict, replace

    from .dataset import load_split
    from .sampler import empty_tokens
    from .tokenizer import PRESETS, Tokenizer, TokenizerConfig, soft_occupancy
    from .weights import load_pretrained

    rank, world, device = setup_distributed(args.device)
    torch.manual_seed(args.seed)
    args.preset = args.preset or "fine16"
    old = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, device)
    config = replace(old.config, **{k: getattr(PRESETS[args.preset], k) for k in DECODER_FIELDS})
    model = Tokenizer(config).to(device)
    model.load_state_dict(matching_state(model, old))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("decoder."))
    params = list(model.decoder.parameters())
    ddp = torch.nn.parallel.DistributedDataParallel(model.decoder) if world > 1 else model.decoder
    peak = args.lr or 1e-3
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


# --------------------------------------------------------------------------------------------
# SMART-3D transformer
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

    from .dataset import cache_dir

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


def masked_token_loss(forward, slices: list[slice], tokens: torch.Tensor, mask: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the masked positions only, averaged over all masked tokens of all levels."""
    logits = forward(tokens, mask, labels)
    total = 0.0
    for sl, lg in zip(slices, logits):
        m = mask[:, sl]
        total = total + torch.nn.functional.cross_entropy(lg[m].float(), tokens[:, sl][m], reduction="sum")
    return total / mask.sum().clamp(min=1)


def train_model_cmd(args: argparse.Namespace) -> None:
    from .dataset import load_split
    from .masking import training_mask
    from .model import PRESETS, MaskedTransformer
    from .sampler import empty_tokens
    from .tokenizer import Tokenizer, TokenizerConfig
    from .weights import load_pretrained

    rank, world, device = setup_distributed(args.device)
    args.preset = args.preset or "XS"
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, device)
    tc = tokenizer.config
    config = PRESETS[args.preset]
    config = type(config)(**{**config.__dict__, "attention": args.attention, "levels": args.levels,
                             "local_conv": args.local_conv,
                             "codebook_size": tc.codebook_size, "coarse_codebook_size": tc.coarse_codebook_size})
    bf16 = use_bf16(args.precision, device)
    torch.manual_seed(args.seed)
    model = MaskedTransformer(config).to(device)
    ema = MaskedTransformer(config).to(device).eval()
    ema.load_state_dict(model.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(ddp, dynamic=False) if args.compile else ddp
    peak = args.lr or 1e-4
    opt = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.95), weight_decay=0.05)
    ckpt_path = Path(args.checkpoint or f"checkpoints/model_{args.preset}_{args.attention}_l{args.levels}.pt")
    g = torch.Generator().manual_seed(args.seed + 1)
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    tokens = cached_tokens(tokenizer, args.tokenizer, train, args.cache, args.num_per_class, args.classes)
    labels = torch.from_numpy(train.labels).repeat(2)
    if args.init and not ckpt_path.exists():
        if read_config(args.init)["config"]["codebook_size"] == config.codebook_size:
            from .model import ModelConfig
            from .weights import load_pretrained
            model.load_state_dict(matching_state(model, load_pretrained(MaskedTransformer, ModelConfig, args.init)))
            print(f"started from {args.init} (tensors of the same name and shape)")
        else:
            carry_over(model, args.init, tokens[:len(train)], train.dense, device, g)
        ema.load_state_dict(model.state_dict())
    del train                                                    # the dense clouds: memory
    step, t_used, log = resume(ckpt_path, {"model": model, "ema": ema}, opt, g, rank)
    full = tokenizer.layout
    if args.levels == 1 and full.num_coarse:                     # fine-only ablation: drop the coarse tokens
        tokens = tokens[:, full.num_coarse:]
    empty = int(empty_tokens(tokenizer)[-1])
    nc = model.layout.num_coarse
    local = args.batch_size // world
    assert local * world == args.batch_size, f"batch {args.batch_size} not divisible by {world} ranks"
    bar = tqdm(total=args.steps, initial=step, desc=f"model {args.preset}", disable=rank != 0)
    t0 = time.time()
    while step < args.steps:
        b = torch.randint(len(tokens), (args.batch_size,), generator=g)
        mask = training_mask(tokens[b, nc:], empty, model.layout, g)
        drop = torch.rand(args.batch_size, generator=g) < args.class_dropout
        lab = torch.where(drop, model.null_class, labels[b])
        sl = slice(rank * local, (rank + 1) * local)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.warmup, peak)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = masked_token_loss(forward, model.level_slices(), tokens[b][sl].to(device), mask[sl].to(device), lab[sl].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        update_ema(ema, model, step, args.ema)
        step += 1
        log_progress(bar, log, step, loss=loss)
        if end_of_step(args, rank, step, ckpt_path, t0, t_used, g, opt, log, model=model, ema=ema):
            break
    bar.close()
    check_replicas(model)
    if rank != 0:
        return
    seconds = t_used + time.time() - t0
    out_path = Path(args.out or WEIGHTS_DIR / "model")
    save_pretrained(ema, config, out_path, preset=args.preset, tokenizer=str(args.tokenizer),
                    command=_command_line(args, ["preset", "init", "tokenizer", "attention", "levels", "num_per_class",
                                                 "steps", "batch_size", "lr", "warmup", "minutes", "seed"])
                    + (" --local-conv" if args.local_conv else "") + f" --precision {args.precision}",
                    train_seconds=seconds, hardware=f"{world} x {device.type}" + (" (AMX)" if cpu_has_amx() else ""),
                    precision="bf16" if bf16 else "fp32", threads=torch.get_num_threads(), steps=step,
                    loss_curve=log)
    print(f"wrote {out_path}.safetensors / .json (EMA) after {step} steps, {seconds / 60:.1f} min")


@torch.no_grad()
def carry_over(model, path: str, tokens: torch.Tensor, dense: np.ndarray, device, generator: torch.Generator,
               num: int = 2000) -> torch.Tensor:
    """Start ``model`` from the transformer at ``path``, trained on the tokens of a tokenizer with fewer
    fine codes from which ``--tokenizer`` was grown (``train tokenizer --init``).

    Each new fine code takes its parent's embedding and output row: the parent is the old code the
    same patch most often had, counted over ``num`` training shapes (``dense`` are their clouds and
    ``tokens`` their new sequences, row for row), and the output bias adds the log share of the parent's
    patches that went to this child. The carried-over model so predicts what the old one did,
    spread over the children in their training proportions; everything else is copied as is.
    Returns (K,) int64, the parent of each new code.
    """
    from .model import MaskedTransformer, ModelConfig
    from .tokenizer import Tokenizer, TokenizerConfig
    from .weights import load_pretrained

    old = load_pretrained(MaskedTransformer, ModelConfig, path, device)
    old_tokenizer = load_pretrained(Tokenizer, TokenizerConfig, read_config(path)["tokenizer"], device)
    assert old.config.levels == model.config.levels and old.config.dim == model.config.dim, \
        "carry over between transformers of one preset and level count"
    pick = torch.randperm(len(dense), generator=generator)[:num]
    nc = model.layout.num_coarse
    new = tokens[pick, nc:].flatten()
    before = encode_dense(old_tokenizer, dense[pick.numpy()], mirror=False)[:, nc:].flatten()
    K, K0 = model.config.codebook_size, old.config.codebook_size
    counts = torch.zeros(K, K0).index_put_((new, before), torch.ones(len(new)), accumulate=True)
    parent = counts.argmax(1)                                    # unseen codes: parent 0, share ~0
    seen = counts.sum(1) + 1.0                                   # (add-one: no child gets probability 0)
    share = seen / torch.zeros(K0).index_add_(0, parent, seen)[parent]
    state = matching_state(model, old)
    fine_emb, fine_head = f"token_emb.{len(model.vocab) - 1}.weight", f"heads.{len(model.vocab) - 1}"
    old_state = old.state_dict()
    state[fine_emb] = torch.cat([old_state[fine_emb][parent.to(device)], old_state[fine_emb][K0:]])   # + [MASK]
    state[f"{fine_head}.weight"] = old_state[f"{fine_head}.weight"][parent.to(device)]
    state[f"{fine_head}.bias"] = old_state[f"{fine_head}.bias"][parent.to(device)] + share.log().to(device)
    model.load_state_dict(state)
    print(f"carried {path} over: {K0} -> {K} fine codes, parents from {num} training shapes "
          f"({float((counts.sum(1) > 0).float().mean()):.1%} of the new codes seen)")
    return parent


# --------------------------------------------------------------------------------------------
# Image encoder
# --------------------------------------------------------------------------------------------

def image_batch(images: np.ndarray, tokens: torch.Tensor, labels: torch.Tensor, b: torch.Tensor, view: torch.Tensor,
                flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (B, 3, 64, 64), coarse tokens (B, 64) and labels (B,) of shapes ``b`` seen in ``view``.

    ``tokens`` holds the split's sequences then those of the x-mirrored shapes (``encode_split``);
    a flipped image is the view of the mirrored shape from the mirrored camera, so it takes the
    mirrored shape's tokens.
    """
    x = torch.from_numpy(images[b.numpy(), view.numpy()]).float().div(255).permute(0, 3, 1, 2)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    k = len(images)
    return x, tokens[b + k * flip.long(), :64], labels[b]


@torch.no_grad()
def image_metrics(encoder, images: np.ndarray, tokens: torch.Tensor, labels: torch.Tensor, device,
                  empty: int, batch_size: int = 128) -> dict:
    """Class accuracy and coarse-token accuracy (all blocks / blocks holding surface) over every view."""
    was = encoder.training
    encoder.eval()
    hits = tok_hits = surf_hits = surf = 0
    n = 0
    for v in range(images.shape[1]):
        for i in range(0, len(images), batch_size):
            b = torch.arange(i, min(i + batch_size, len(images)))
            x, t, y = image_batch(images, tokens, labels, b, torch.full_like(b, v), torch.zeros(len(b), dtype=torch.bool))
            cl, tl = encoder(x.to(device))
            pred = tl.argmax(-1).cpu()
            hits += int((cl.argmax(-1).cpu() == y).sum())
            tok_hits += int((pred == t).sum())
            m = t != empty
            surf_hits += int((pred == t)[m].sum())
            surf += int(m.sum())
            n += len(b)
    encoder.train(was)
    return {"class_accuracy": hits / n, "coarse_accuracy": tok_hits / max(1, n * 64),
            "coarse_accuracy_surface_blocks": surf_hits / max(1, surf), "images": n}


def train_image_cmd(args: argparse.Namespace) -> None:
    from .dataset import load_split
    from .image import PRESETS, ImageEncoder
    from .sampler import empty_tokens
    from .tokenizer import Tokenizer, TokenizerConfig
    from .views import load_views
    from .weights import load_pretrained

    rank, world, device = setup_distributed(args.device)
    args.preset = args.preset or "base"
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, device)
    assert tokenizer.layout.num_coarse == 64, "image conditioning predicts the coarse level: needs a two-level tokenizer"
    config = PRESETS[args.preset]
    config = type(config)(**{**config.__dict__, "coarse_codebook_size": tokenizer.config.coarse_codebook_size})
    torch.manual_seed(args.seed)
    encoder = ImageEncoder(config).to(device)
    ema = ImageEncoder(config).to(device).eval()
    ema.load_state_dict(encoder.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(encoder) if world > 1 else encoder
    peak = args.lr or 2e-3
    opt = torch.optim.AdamW(encoder.parameters(), lr=peak, weight_decay=0.05)
    ckpt_path = Path(args.checkpoint or f"checkpoints/image_{args.preset}.pt")
    g = torch.Generator().manual_seed(args.seed + 1)
    step, t_used, log = resume(ckpt_path, {"model": encoder, "ema": ema}, opt, g, rank)
    views = load_views("train", args.classes, args.num_per_class, args.views, args.cache)
    tokens, labels = encode_split(tokenizer, load_split("train", args.classes, args.num_per_class, args.cache))
    empty = int(empty_tokens(tokenizer)[0])
    local = args.batch_size // world
    assert local * world == args.batch_size, f"batch {args.batch_size} not divisible by {world} ranks"
    bar = tqdm(total=args.steps, initial=step, desc=f"image encoder {args.preset}", disable=rank != 0)
    t0 = time.time()
    while step < args.steps:
        b = torch.randint(len(views.images), (args.batch_size,), generator=g)
        view = torch.randint(views.images.shape[1], (args.batch_size,), generator=g)
        flip = torch.rand(args.batch_size, generator=g) < 0.5
        x, t, y = image_batch(views.images, tokens, labels, b, view, flip)
        sl = slice(rank * local, (rank + 1) * local)
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.warmup, peak)
        class_logits, token_logits = ddp(x[sl].to(device))
        loss_class = torch.nn.functional.cross_entropy(class_logits, y[sl].to(device))
        loss_tokens = torch.nn.functional.cross_entropy(token_logits.flatten(0, 1), t[sl].flatten().to(device))
        loss = loss_class + loss_tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(ema, encoder, step, args.ema)
        step += 1
        log_progress(bar, log, step, cls=loss_class, tok=loss_tokens)
        if end_of_step(args, rank, step, ckpt_path, t0, t_used, g, opt, log, model=encoder, ema=ema):
            break
    bar.close()
    check_replicas(encoder)
    if rank != 0:
        return
    val_views = load_views("val", args.classes, args.num_per_class, args.views, args.cache)
    val_tokens, val_labels = encode_split(tokenizer, load_split("val", args.classes, args.num_per_class, args.cache))
    val = image_metrics(ema, val_views.images, val_tokens, val_labels, device, empty)
    print("image encoder (val, EMA): " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    seconds = t_used + time.time() - t0
    out_path = Path(args.out or WEIGHTS_DIR / "image_encoder")
    save_pretrained(ema, config, out_path, preset=args.preset, tokenizer=str(args.tokenizer),
                    command=_command_line(args, ["preset", "num_per_class", "views", "steps", "batch_size", "lr",
                                                 "warmup", "minutes", "seed"]),
                    train_seconds=seconds, hardware=f"{world} x {device.type}", steps=step, val=val, loss_curve=log)
    print(f"wrote {out_path}.safetensors / .json (EMA) after {step} steps, {seconds / 60:.1f} min")


def main(args: argparse.Namespace) -> None:
    {"classifier": train_classifier_cmd, "tokenizer": train_tokenizer_cmd, "decoder": train_decoder_cmd,
     "model": train_model_cmd, "image": train_image_cmd}[args.what](args)
    if dist.is_initialized():
        # Leave the process group in order (a barrier, then an explicit destroy): without it a gloo
        # rank can abort in the C++ teardown after its work is done.
        dist.barrier()
        dist.destroy_process_group()
