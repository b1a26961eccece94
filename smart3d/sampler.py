"""Progressive masked decoding: a generator that yields one ``Step`` record per decoding step.

Each step (MaskGIT / MAR, with SMART-3D's spatially-aware choice of what to commit):

1. the transformer predicts every masked token in parallel; with classifier-free guidance the
   logits are ``uncond + s_t (cond - uncond)`` where ``s_t`` grows linearly from 1 to
   ``cfg_scale`` with the revealed fraction (MAR / MAR-3D);
2. a token is *sampled* at every masked position at a temperature annealed linearly from 0.8 to
   0.5 over the steps (this is the token-sampling temperature), from all codes by default or from
   the top-k logits (the paper's k = 10: on 50 validation chairs with the first-stage model, all codes
   gave 1-NNA-CD 85% / COV-CD 34% against 97% / 26% with k = 10;
   ``experiments/results/sweep_chair_val50_*.json``);
3. the schedule (cosine by default) says how many masked tokens remain after this step; the commit
   policy picks which positions to commit among the masked ones:
   - ``spatial`` (default, SMART-3D): confidence of the sampled token plus a spatial prior:
     coarse tokens before fine ones, and fine tokens next to committed structure (occupied
     neighbours, occupied coarse parent) before those in empty space;
   - ``confidence``: confidence alone (MaskGIT); ``random``: random order; ``raster``: sequence order.
   Confidences get Gumbel noise that fades over the steps (MaskGIT's choice temperature).

Every position is committed exactly once (the paper's Proposition 1): positions leave the mask
when committed and are never revisited. In completion mode the visible tokens are given, never
change, and the schedule runs over the missing ones only. Same generator state, same result.
After the decoding, ``smart3d.repair`` may redraw the fine tokens of loose pieces (repair rounds,
each a short decoding of this kind with the rest of the shape given).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Iterator, Literal

import torch
import torch.nn.functional as F

from . import geometry as G
from .masking import SCHEDULES, masked_counts
from .model import MaskedTransformer
from .tokenizer import Tokenizer
from .weights import use_bf16

Policy = Literal["spatial", "confidence", "random", "raster"]
POLICIES: tuple[str, ...] = ("spatial", "confidence", "random", "raster")

# the command-line flag and help of each user setting (``preview`` is for displays: no flag)
_FLAGS: dict[str, tuple[str, str]] = {
    "num_steps": ("--steps", "decoding steps"),
    "schedule": ("--schedule", f"fraction still masked after each step: {', '.join(SCHEDULES)}"),
    "policy": ("--policy", f"which masked positions to commit: {', '.join(POLICIES)}"),
    "top_k": ("--top-k", "sample among the k most likely codes (0: all)"),
    "temperature": ("--temperature", "token temperature, annealed from START (first step) to END (last)"),
    "cfg_scale": ("--guidance", "classifier-free guidance scale reached when all tokens are revealed (1: none)"),
    "choice_noise": ("--choice-noise", "Gumbel noise on the commit scores, fading to 0"),
    "occupancy_first": ("--occupancy-first", "draw 'surface here or not' from the model's marginal, then the code"),
    "repair_rounds": ("--repair-rounds", "after decoding, redraw every loose piece with the rest given, up to this many times (smart3d.repair)"),
    "repair_steps": ("--repair-steps", "decoding steps of each repair round"),
    "min_part": ("--min-part", "final mesh: drop solid parts under this fraction of the largest (0: keep all)"),
    "precision": ("--precision", "transformer arithmetic: bf16 autocast, fp32, or auto (bf16 on CUDA and on CPUs with AMX)"),
}
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class SamplingOptions:
    """Decoding settings: ``check()`` validates user-provided values; ``add_arguments`` / ``from_args``
    are the command line's one spelling of them (``generate``, ``complete``, ``evaluate``)."""

    num_steps: int = 25                           # decoding steps T
    schedule: str = "cosine"                      # fraction still masked after each step
    policy: str = "spatial"                       # which masked positions to commit
    top_k: int = 0                                # sample among the k most likely tokens (0: all)
    temperature: tuple[float, float] = (1.0, 1.0)  # token temperature, annealed first -> last step (1 beat 0.8 -> 0.5 on val)
    cfg_scale: float = 2.0                        # guidance reached when all tokens are revealed (2 beat 5 on val: fewer parts)
    choice_noise: float = 1.0                     # Gumbel noise on commit scores (fades to 0)
    occupancy_first: bool = True                  # draw "surface here or not" first, then the code
    repair_rounds: int = 8                        # redraw loose pieces with the rest given (smart3d.repair)
    repair_steps: int = 4                         # decoding steps per repair round
    preview: bool = False                         # decode a field preview at every step (for displays that draw it)
    min_part: float = 0.0                         # final mesh: drop parts under this fraction of the largest
    precision: str = "auto"                       # transformer under bf16 autocast where fast (the weights were trained so)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add a flag per user setting to ``parser``, defaulting to the library's values (see ``from_args``)."""
        group = parser.add_argument_group("sampling", "decoding settings (smart3d.sampler.SamplingOptions)")
        for f in fields(cls):
            if f.name not in _FLAGS:
                continue
            flag, text = _FLAGS[f.name]
            if isinstance(f.default, bool):
                group.add_argument(flag, dest=f.name, default=f.default, action=argparse.BooleanOptionalAction,
                                   help=f"{text} (default: {'on' if f.default else 'off'})")
            elif isinstance(f.default, tuple):
                group.add_argument(flag, dest=f.name, default=f.default, type=float, nargs=2, metavar=("START", "END"),
                                   help=f"{text} (default: {' '.join(map(str, f.default))})")
            else:
                group.add_argument(flag, dest=f.name, default=f.default, type=type(f.default),
                                   metavar=flag[2:].upper().replace("-", "_"), help=f"{text} (default: {f.default})")

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> "SamplingOptions":
        """Checked options from the flags ``add_arguments`` added (``overrides``: settings without a flag)."""
        given = {name: getattr(args, name) for name in _FLAGS}
        return cls(**{**given, "temperature": tuple(given["temperature"]), **overrides}).check()

    def check(self) -> "SamplingOptions":
        limits = {"num_steps": (1, 256), "top_k": (0, 100_000), "cfg_scale": (0.0, 20.0), "choice_noise": (0.0, 10.0),
                  "repair_rounds": (0, 32), "repair_steps": (1, 64)}
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}, got {v}")
        if not 0.0 <= self.min_part <= 1.0:
            raise ValueError(f"min_part must be between 0 and 1, got {self.min_part}")
        for t in self.temperature:
            if not 0.01 <= t <= 5.0:
                raise ValueError(f"temperature must be between 0.01 and 5, got {t}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; valid policies: {', '.join(POLICIES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid precisions: {', '.join(PRECISIONS)}")
        return self

    def record(self) -> dict:
        """The settings that shape a result, as plain JSON (for result files and GLB metadata)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preview"}   # preview: display only
        return {**out, "temperature": list(self.temperature)}


@dataclass
class Step:
    """What one decoding step did and where it left the sequence (tensors on the CPU)."""

    index: int                   # 1 .. num_steps
    num_steps: int
    tokens: torch.Tensor         # (B, L) int64 committed tokens so far, -1 where still masked
    mask: torch.Tensor           # (B, L) bool, still masked after this step
    committed: torch.Tensor      # (B, L) bool, committed at this step
    confidence: torch.Tensor     # (B, L) float32 probability of each token when it was committed (1 for given)
    order: torch.Tensor          # (B, L) int64 step that committed each position (0: given, -1: masked)
    entropy: torch.Tensor        # (B,) mean predictive entropy (nats) over the positions masked before it
    cfg_scale: float             # guidance scale used at this step
    temperature: float           # token temperature used at this step
    preview: torch.Tensor | None  # (B, 32, 32, 32) occupancy probability of the current belief
    round: int = 0               # 0: the decoding; r: repair round r (smart3d.repair)


@torch.no_grad()
def empty_tokens(tokenizer: Tokenizer) -> torch.Tensor:
    """The sequence of an empty shape: (L,) int64 (each level's "nothing here" code)."""
    device = tokenizer.quantizer.codebook.device
    return tokenizer.encode(torch.zeros(1, G.SURFACE_CHANNELS, G.GRID, G.GRID, G.GRID, device=device))[0]


def _filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _categorical(probs: torch.Tensor, generator) -> torch.Tensor:
    """One draw per row of ``probs`` (..., V) -> (...) int64, by inverse CDF: one uniform per row,
    where ``torch.multinomial`` draws V exponentials per row (most of a step's time with 4096 codes)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[:-1] + (1,), generator=generator).to(cdf.device) * cdf[..., -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


def _sample_token(logits: torch.Tensor, top_k: int, temp: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k, tempered draw of one code per position: logits (..., V) -> codes (...) and their probabilities (...)."""
    probs = (_filter_top_k(logits, top_k) / temp).softmax(-1)
    pick = _categorical(probs, generator)
    return pick, probs.gather(-1, pick[..., None]).squeeze(-1)


def _sample_occupancy_first(logits: torch.Tensor, logp: torch.Tensor, empty: torch.Tensor, top_k: int, temp: float,
                            generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw whether a patch holds surface from the model's own marginal, then its code.

    One "no surface here" code competes with hundreds of surface codes that share the rest of the
    mass, so a tempered top-k draw over all codes picks it far more often than the model believes
    it (under-trained models then decode near-empty shapes). Here the binary choice keeps the
    model's marginal; top-k and temperature shape only the choice among surface codes.
    logits, logp (..., V); empty (...) the empty code of each position. Returns codes (...) and the
    model's probability of the drawn outcome (surface or not) as confidence.
    """
    empty = empty.expand(logp.shape[:-1])[..., None]
    p_empty = logp.gather(-1, empty).squeeze(-1).exp()
    surface = torch.rand(p_empty.shape, generator=generator).to(logits.device) >= p_empty
    codes, _ = _sample_token(logits.scatter(-1, empty, float("-inf")), top_k, temp, generator)
    pick = torch.where(surface, codes, empty.squeeze(-1))
    return pick, torch.where(surface, 1.0 - p_empty, p_empty)


def _draw(logits: torch.Tensor, logp: torch.Tensor, empty: torch.Tensor, options: SamplingOptions, temp: float,
          generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One level's draw at every position: codes (B, l) and their confidences (B, l)."""
    if options.occupancy_first:
        return _sample_occupancy_first(logits, logp, empty, options.top_k, temp, generator)
    return _sample_token(logits, options.top_k, temp, generator)


def _gumbel(shape, generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator).clamp_(1e-20, 1.0)
    return (-torch.log(-torch.log(u))).to(device)


def _spatial_prior(model: MaskedTransformer, tokens: torch.Tensor, mask: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """Bonus per position: coarse first (+100), then fine tokens near committed structure (0..2)."""
    B, L = tokens.shape
    nc = model.layout.num_coarse
    bonus = torch.zeros(B, L, device=tokens.device)
    occupied = (~mask) & (tokens != empty[None])                        # committed, not empty space
    n = G.LATTICE
    fine_occ = occupied[:, nc:].float().view(B, 1, n, n, n)
    near = F.avg_pool3d(fine_occ, 3, stride=1, padding=1, count_include_pad=False).view(B, -1)
    bonus[:, nc:] = near                                                # fraction of occupied neighbours
    if nc:
        bonus[:, :nc] = 100.0
        parent = model.layout.fine_to_coarse().to(tokens.device)
        bonus[:, nc:] += occupied[:, :nc][:, parent].float()            # occupied coarse parent
    return bonus


def _guided_logits(model: MaskedTransformer, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                   null: torch.Tensor, cond: torch.Tensor | None, scale: float, bf16: bool) -> list[torch.Tensor]:
    """Per-level logits ``uncond + scale (cond - uncond)`` at the masked positions: [(N_level, V_level)
    float32, ...] in row-major order (both passes in one batch)."""
    inp = tokens.clamp(min=0)
    with torch.autocast(inp.device.type, dtype=torch.bfloat16, enabled=bf16):
        if scale == 1.0:
            return [x.float() for x in model(inp, mask, labels, cond, at=mask)]
        c_cond = None if cond is None else torch.cat([cond, torch.zeros_like(cond)])
        both = model(inp.repeat(2, 1), mask.repeat(2, 1), torch.cat([labels, null]), c_cond, at=mask.repeat(2, 1))
    return [lu + scale * (lc - lu) for lc, lu in (x.float().chunk(2) for x in both)]


def _draw_masked(logits: list[torch.Tensor], mask: torch.Tensor, slices: list[slice], empty: torch.Tensor,
                 options: SamplingOptions, temp: float, generator) -> tuple[torch.Tensor, ...]:
    """Draw a token at every masked position from per-level logits at those positions (``_guided_logits``).

    Returns, as (B, L) tensors valid where ``mask``: the drawn codes, their confidences, the predictive
    entropy (nats) and the most likely codes."""
    B, L = mask.shape
    sampled = torch.zeros(B, L, dtype=torch.long, device=mask.device)
    best = torch.zeros_like(sampled)
    conf = torch.zeros(B, L, device=mask.device)
    ent = torch.zeros(B, L, device=mask.device)
    for sl, lg in zip(slices, logits):
        at = mask[:, sl]                                                  # (B, l); lg: (at.sum(), V)
        logp = lg.log_softmax(-1)
        ent[:, sl][at] = -(logp.exp() * logp).sum(-1)
        best[:, sl][at] = lg.argmax(-1)
        sampled[:, sl][at], conf[:, sl][at] = _draw(lg, logp, empty[sl].expand(B, -1)[at], options, temp, generator)
    return sampled, conf, ent, best


@torch.no_grad()
def sample_steps(model: MaskedTransformer, tokenizer: Tokenizer, labels: torch.Tensor,
                 options: SamplingOptions = SamplingOptions(), generator: torch.Generator | None = None,
                 known_tokens: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                 cond: torch.Tensor | None = None) -> Iterator[Step]:
    """Decode a batch progressively, yielding a ``Step`` after every step.

    labels : (B,) int64 class ids (``model.null_class`` for unconditional). known_tokens (B, L) and
    known_mask (B, L) bool (True = given) switch on completion. cond : (B, T, cond_dim) image prefix.
    The generator (CPU) drives every random choice.
    """
    options.check()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    B, L = labels.shape[0], model.layout.length
    labels = labels.to(device)
    tokens = torch.full((B, L), -1, dtype=torch.long, device=device)
    mask = torch.ones(B, L, dtype=torch.bool, device=device)
    if known_mask is not None:
        assert known_tokens is not None and known_tokens.shape == (B, L), "known_tokens must be (B, L)"
        known_mask = known_mask.to(device)
        tokens = torch.where(known_mask, known_tokens.to(device), tokens)
        mask = ~known_mask
    confidence = torch.where(mask, 0.0, 1.0).float()
    order = torch.where(mask, -1, 0)
    empty = empty_tokens(tokenizer).to(device)
    T = options.num_steps
    remaining = torch.tensor([masked_counts(int(m), T, options.schedule) for m in mask.sum(1).tolist()],
                             device=device)                              # (B, T)
    null = torch.full_like(labels, model.null_class)
    slices = model.level_slices()
    bf16 = use_bf16(options.precision, device)
    try:
        for s in range(1, T + 1):
            revealed = 1.0 - mask.float().mean().item()
            scale = 1.0 + (options.cfg_scale - 1.0) * revealed               # MAR: guidance grows with progress
            u = (s - 1) / max(1, T - 1)
            temp = options.temperature[0] + (options.temperature[1] - options.temperature[0]) * u
            logits = _guided_logits(model, tokens, mask, labels, null, cond, scale, bf16)
            sampled, conf, ent, best = _draw_masked(logits, mask, slices, empty, options, temp, generator)
            entropy = (ent * mask).sum(1) / mask.sum(1).clamp(min=1)
            # which masked positions to commit now
            if options.policy == "random":
                score = torch.rand(B, L, generator=generator).to(device)
            elif options.policy == "raster":
                score = -torch.arange(L, device=device, dtype=torch.float32).expand(B, L)
            else:
                score = conf.clamp_min(1e-12).log()
                score = score + options.choice_noise * (1.0 - s / T) * _gumbel((B, L), generator, device)
                if options.policy == "spatial":
                    score = score + _spatial_prior(model, tokens, mask, empty)
            score = score.masked_fill(~mask, float("-inf"))
            n_commit = mask.sum(1) - remaining[:, s - 1]                     # (B,)
            rank = score.argsort(1, descending=True).argsort(1)
            commit = (rank < n_commit[:, None]) & mask
            tokens = torch.where(commit, sampled, tokens)
            confidence = torch.where(commit, conf, confidence)
            order = torch.where(commit, s, order)
            mask = mask & ~commit
            preview = None
            if options.preview:
                belief = torch.where(mask, best, tokens)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):   # ~6x faster with AMX
                    preview = torch.sigmoid(tokenizer.decode(belief).float()).cpu()
            yield Step(s, T, tokens.cpu(), mask.cpu(), commit.cpu(), confidence.cpu(), order.cpu(),
                       entropy.cpu(), scale, temp, preview)
    finally:
        model.train(was_training)


def sample(model: MaskedTransformer, tokenizer: Tokenizer, labels: torch.Tensor, **kwargs) -> torch.Tensor:
    """Drain ``sample_steps``: the final token sequences (B, L) int64."""
    last = None
    for last in sample_steps(model, tokenizer, labels, **kwargs):
        pass
    return last.tokens
