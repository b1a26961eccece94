"""Train the image encoder (a rendered view -> class and coarse tokens): ``python -m smart3d train image``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..weights import WEIGHTS_DIR, save_pretrained
from .loop import (add_common_arguments, check_replicas, command_line, cosine_lr, encode_split, end_of_step,
                   log_progress, resume, setup_distributed, update_ema)

LR = 2e-3                                                        # peak learning rate unless --lr


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..image import PRESETS

    p.add_argument("--preset", default="base", choices=list(PRESETS), help="image encoder preset")
    p.add_argument("--tokenizer", default=str(WEIGHTS_DIR / "tokenizer"),
                   help="tokenizer weights (a two-level one: the encoder predicts its coarse tokens)")
    p.add_argument("--views", type=int, default=2, help="rendered views per shape")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped weights")
    add_common_arguments(p, lr=LR, out="weights/image_encoder", checkpoint="checkpoints/image_<preset>.pt")


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


def main(args: argparse.Namespace) -> None:
    from ..dataset import load_split
    from ..image import PRESETS, ImageEncoder
    from ..sampler import empty_tokens
    from ..tokenizer import Tokenizer, TokenizerConfig
    from ..views import load_views
    from ..weights import load_pretrained

    rank, world, device = setup_distributed(args.device)
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, device)
    assert tokenizer.layout.num_coarse == 64, "image conditioning predicts the coarse level: needs a two-level tokenizer"
    config = PRESETS[args.preset]
    config = type(config)(**{**config.__dict__, "coarse_codebook_size": tokenizer.config.coarse_codebook_size})
    torch.manual_seed(args.seed)
    encoder = ImageEncoder(config).to(device)
    ema = ImageEncoder(config).to(device).eval()
    ema.load_state_dict(encoder.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(encoder) if world > 1 else encoder
    peak = args.lr or LR
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
                    command=command_line(args, ["preset", "num_per_class", "views", "steps", "batch_size", "lr",
                                                 "warmup", "minutes", "seed"]),
                    train_seconds=seconds, hardware=f"{world} x {device.type}", steps=step, val=val, loss_curve=log)
    print(f"wrote {out_path}.safetensors / .json (EMA) after {step} steps, {seconds / 60:.1f} min")
