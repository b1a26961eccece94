"""Train the SMART-3D masked transformer on a trained tokenizer's sequences:
``python -m smart3d train model``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..weights import WEIGHTS_DIR, cpu_has_amx, matching_state, read_config, save_pretrained, use_bf16
from .loop import (add_common_arguments, cached_tokens, check_replicas, command_line, cosine_lr, encode_dense,
                   end_of_step, log_progress, resume, setup_distributed, update_ema)

LR = 1e-4                                                        # peak learning rate unless --lr


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..model import PRESETS

    p.add_argument("--preset", default="XS", choices=list(PRESETS), help="model preset")
    p.add_argument("--attention", default="linear", choices=["linear", "softmax"], help="attention kind")
    p.add_argument("--levels", type=int, default=2, choices=[1, 2], help="token levels (1: fine only, ablation)")
    p.add_argument("--depth", type=int, default=None,
                   help="blocks (default: the preset's); with --init from a shallower model, its blocks are spread "
                        "out and the new ones start as identities (grow_depth)")
    p.add_argument("--local-conv", action="store_true",
                   help="a depthwise 3x3x3 convolution over each token lattice in every block")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="bf16 autocast (auto: on CUDA and on CPUs with AMX, where it is ~3.5x faster)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the transformer (~1.5x faster steps on CPU after ~1 min of compiling)")
    p.add_argument("--tokenizer", default=str(WEIGHTS_DIR / "tokenizer"), help="tokenizer weights")
    p.add_argument("--init", default=None,
                   help="start from this transformer, its fine codes carried over to --tokenizer's (carry_over)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the shipped model weights")
    p.add_argument("--freeze-gamma", action="store_true",
                   help="keep each head's spatial scale gamma as --init has it: its gradient is ~30%% of a CPU "
                        "training step and it moves ~1%% in a continued run (experiments/train_step_profile.py)")
    p.add_argument("--class-dropout", type=float, default=0.1, help="label dropout for guidance")
    add_common_arguments(p, lr=LR, out="weights/model",
                         checkpoint="checkpoints/model_<preset>_<attention>_l<levels>.pt")


def masked_token_loss(forward, slices: list[slice], tokens: torch.Tensor, mask: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the masked positions only, averaged over all masked tokens of all levels."""
    logits = forward(tokens, mask, labels, at=mask)              # output heads at masked positions only
    total = 0.0
    for sl, lg in zip(slices, logits):
        total = total + torch.nn.functional.cross_entropy(lg.float(), tokens[:, sl][mask[:, sl]], reduction="sum")
    return total / mask.sum().clamp(min=1)


def main(args: argparse.Namespace) -> None:
    from ..dataset import load_split
    from ..masking import training_mask
    from ..model import PRESETS, MaskedTransformer
    from ..sampler import empty_tokens
    from ..tokenizer import Tokenizer, TokenizerConfig
    from ..weights import load_pretrained

    rank, world, device = setup_distributed(args.device)
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer, device)
    tc = tokenizer.config
    config = PRESETS[args.preset]
    config = type(config)(**{**config.__dict__, "attention": args.attention, "levels": args.levels,
                             "local_conv": args.local_conv,
                             "depth": args.depth or config.depth,
                             "codebook_size": tc.codebook_size, "coarse_codebook_size": tc.coarse_codebook_size})
    bf16 = use_bf16(args.precision, device)
    torch.manual_seed(args.seed)
    model = MaskedTransformer(config).to(device)
    ema = MaskedTransformer(config).to(device).eval()
    ema.load_state_dict(model.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(ddp, dynamic=False) if args.compile else ddp
    peak = args.lr or LR
    opt = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.95), weight_decay=0.05)
    ckpt_path = Path(args.checkpoint or f"checkpoints/model_{args.preset}_{args.attention}_l{args.levels}.pt")
    g = torch.Generator().manual_seed(args.seed + 1)
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    tokens = cached_tokens(tokenizer, args.tokenizer, train, args.cache, args.num_per_class, args.classes)
    labels = torch.from_numpy(train.labels).repeat(2)
    if args.init and not ckpt_path.exists():
        if read_config(args.init)["config"]["codebook_size"] == config.codebook_size:
            from ..model import ModelConfig
            from ..weights import load_pretrained
            source = load_pretrained(MaskedTransformer, ModelConfig, args.init)
            model.load_state_dict(grow_depth(model, source) if source.config.depth < config.depth
                                  else matching_state(model, source))
            print(f"started from {args.init} ({source.config.depth} -> {config.depth} blocks)")
        else:
            carry_over(model, args.init, tokens[:len(train)], train.dense, device, g)
        ema.load_state_dict(model.state_dict())
    if args.freeze_gamma:
        for block in model.blocks:
            block.attn.gamma_raw.requires_grad_(False)            # no gradient: AdamW leaves it (and its decay) alone
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
                    command=command_line(args, ["preset", "depth", "init", "tokenizer", "attention", "levels", "num_per_class",
                                                 "steps", "batch_size", "lr", "warmup", "minutes", "seed"])
                    + (" --local-conv" if args.local_conv else "")
                    + (" --freeze-gamma" if args.freeze_gamma else "") + f" --precision {args.precision}",
                    train_seconds=seconds, hardware=f"{world} x {device.type}" + (" (AMX)" if cpu_has_amx() else ""),
                    precision="bf16" if bf16 else "fp32", threads=torch.get_num_threads(), steps=step,
                    loss_curve=log)
    print(f"wrote {out_path}.safetensors / .json (EMA) after {step} steps, {seconds / 60:.1f} min")


def grow_depth(model, source) -> dict[str, torch.Tensor]:
    """``model``'s state started from the shallower ``source`` of the same width, computing the same
    function: source block i becomes block i * k (k = depth ratio) and the blocks between start as
    identities (their attention, convolution and MLP outputs zeroed; they learn from there).
    A warm start for a deeper network when the shallow one is capacity-bound (train loss ~ val loss)."""
    d0, d1 = source.config.depth, model.config.depth
    assert d1 % d0 == 0 and source.config.dim == model.config.dim, "grow by a whole factor, at one width"
    state, k = matching_state(model, source), d1 // d0
    src = source.state_dict()
    for name in list(state):
        if name.startswith("blocks."):
            i, rest = name.split(".", 2)[1:]
            if int(i) % k == 0:
                state[name] = src[f"blocks.{int(i) // k}.{rest}"]
            elif rest.startswith(("attn.proj.", "mlp.2.", "local.")):
                state[name] = torch.zeros_like(state[name])
    return state


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
    from ..model import MaskedTransformer, ModelConfig
    from ..tokenizer import Tokenizer, TokenizerConfig
    from ..weights import load_pretrained

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
