"""Progressive masked decoding: a generator that yields one ``Step`` record per decoding step.

Each step (MaskGIT / MAR, with SMART-3D's spatially-aware choice of what to commit):

1. the transformer predicts every masked token in parallel; with classifier-free guidance the
   logits are ``uncond + s_t (cond - uncond)`` where ``s_t`` grows linearly from 1 to
   ``cfg_scale`` with the revealed fraction (MAR / MAR-3D);
2. a token is *sampled* at every masked position (``_draw_level``): first whether its patch holds
   surface, from the model's own marginal (``occupancy_first``, on by default), then which surface code, at a temperature annealed
   linearly over the steps (1 throughout by default), from all codes or the top-k logits. A fine
   position whose coarse parent is committed as empty space is empty (``under_empty_parent``): the
   model is not asked;
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
from typing import Iterator, Literal, Sequence

import torch
import torch.nn.functional as F

from . import geometry as G
from .masking import SCHEDULES, masked_counts, under_empty_parent
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
    "precision": ("--precision", "transformer and decoder arithmetic: bf16 autocast, fp32, or auto (bf16 on CUDA and on CPUs with AMX)"),
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
    precision: str = "auto"                       # transformer and decoder under bf16 autocast where fast

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
        limits = {"num_steps": (1, 1024), "top_k": (0, 100_000), "cfg_scale": (0.0, 20.0), "choice_noise": (0.0, 10.0),
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


# rows of logits drawn per pass: a (256, 4096) float32 block is 4 MB, this CPU's L2; over all masked
# positions of a batch at once, each of the draw's passes (softmax, entropy, CDF) went out to memory
DRAW_ROWS = 256


Generators = torch.Generator | Sequence[torch.Generator] | None


def uniform(counts: Sequence[int], generator) -> torch.Tensor:
    """``sum(counts)`` uniforms in [0, 1), ``counts[b]`` for batch row b in row order. ``generator``: one
    generator for the batch, or one per row (a row's draws then depend on its own seed only, so a
    shape decoded beside others is the shape decoded alone)."""
    if isinstance(generator, (list, tuple)):
        assert len(generator) == len(counts), f"{len(generator)} generators for {len(counts)} rows"
        return torch.cat([torch.rand(int(n), generator=g) for n, g in zip(counts, generator)])
    return torch.rand(int(sum(counts)), generator=generator)


def _inverse_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row of non-negative ``weights`` (N, V), not necessarily normalised, from one uniform
    per row ``u`` (N,): (N,) int64. (``torch.multinomial`` draws V exponentials per row.) Overwrites weights."""
    cdf = weights.cumsum_(-1)
    return torch.searchsorted(cdf, u[:, None].to(cdf.device) * cdf[:, -1:], right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def _code_weights(logp: torch.Tensor, top_k: int, temp: float, exclude: torch.Tensor | None) -> torch.Tensor:
    """Unnormalised tempered, top-k probabilities (N, V) from log-probabilities, without the codes
    ``exclude`` (N,) of each row."""
    if exclude is not None:
        logp = logp.scatter(-1, exclude[:, None], float("-inf"))
    if 0 < top_k < logp.shape[-1]:
        logp = logp.masked_fill(logp < logp.topk(top_k, dim=-1).values[:, -1:], float("-inf"))
    if temp == 1.0:
        return logp.exp()
    return ((logp - logp.amax(-1, keepdim=True)) / temp).exp_()


def _draw_level(cond: torch.Tensor, uncond: torch.Tensor | None, scale: float, empty: torch.Tensor,
                options: SamplingOptions, temp: float, generator, want_best: bool = True,
                counts: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
    """Draw one code per row of guided logits ``uncond + scale (cond - uncond)`` (N, V; ``uncond`` None:
    no guidance), ``empty`` (N,) the "no surface here" code of each row.

    With ``options.occupancy_first``, whether a patch holds surface is drawn from the model's own
    marginal, then the code among the surface codes (tempered, top-k): one "empty" code competes with
    thousands of surface codes that share the rest of the mass, so a tempered top-k draw over all codes
    picks it far more often than the model believes it; the confidence is the model's probability of
    the drawn outcome (surface or not). Otherwise the code is drawn over all codes and the confidence is
    its tempered probability. Returns codes, confidences, predictive entropies (nats) and most likely
    codes (zeros unless ``want_best``), each (N,). Rows are processed DRAW_ROWS at a time. ``counts``:
    how many of the N rows belong to each batch row, in order (``uniform``; default: one batch row).
    """
    N = cond.shape[0]
    counts = [N] if counts is None else counts
    u_surface = uniform(counts, generator) if options.occupancy_first else None
    u_code = uniform(counts, generator)
    codes = torch.empty(N, dtype=torch.long, device=cond.device)
    conf, ent = torch.empty(N, device=cond.device), torch.empty(N, device=cond.device)
    best = torch.zeros(N, dtype=torch.long, device=cond.device)
    for i in range(0, N, DRAW_ROWS):
        j = min(N, i + DRAW_ROWS)
        lg = cond[i:j].float()
        if uncond is not None:
            lu = uncond[i:j].float()
            lg = lu.add_(lg.sub_(lu), alpha=scale)
        logp = lg.log_softmax(-1)
        p = logp.exp()
        ent[i:j] = -(p * logp).sum(-1)
        if want_best:
            best[i:j] = logp.argmax(-1)
        if options.occupancy_first:
            e = empty[i:j]
            p_empty = p.gather(-1, e[:, None]).squeeze(-1)
            if options.top_k == 0 and temp == 1.0:
                w = p.scatter_(-1, e[:, None], 0.0)
            else:
                w = _code_weights(logp, options.top_k, temp, e)
            surface = u_surface[i:j].to(p.device) >= p_empty
            codes[i:j] = torch.where(surface, _inverse_cdf(w, u_code[i:j]), e)
            conf[i:j] = torch.where(surface, 1.0 - p_empty, p_empty)
        else:
            w = _code_weights(logp, options.top_k, temp, None)
            total = w.sum(-1)
            pick = _inverse_cdf(w.clone(), u_code[i:j])
            codes[i:j] = pick
            conf[i:j] = w.gather(-1, pick[:, None]).squeeze(-1) / total
    return codes, conf, ent, best


def _gumbel(shape, generator, device) -> torch.Tensor:
    u = uniform([shape[1]] * shape[0], generator).view(shape).clamp_(1e-20, 1.0)
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
                   null: torch.Tensor, cond: torch.Tensor | None, scale: float, bf16: bool, at: torch.Tensor
                   ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Per-level conditional and unconditional logits at the positions ``at`` (B, L): [(cond (N_level,
    V_level), uncond or None), ...] in row-major order, both passes in one batch (``_draw_level``
    combines them as ``uncond + scale (cond - uncond)``); no unconditional pass when ``scale`` is 1."""
    inp = tokens.clamp(min=0)
    with torch.autocast(inp.device.type, dtype=torch.bfloat16, enabled=bf16):
        if scale == 1.0:
            return [(x, None) for x in model(inp, mask, labels, cond, at=at)]
        c_cond = None if cond is None else torch.cat([cond, torch.zeros_like(cond)])
        both = model(inp.repeat(2, 1), mask.repeat(2, 1), torch.cat([labels, null]), c_cond, at=at.repeat(2, 1))
    return [tuple(x.chunk(2)) for x in both]


def _draw_masked(logits: list[tuple[torch.Tensor, torch.Tensor | None]], scale: float, at: torch.Tensor,
                 slices: list[slice], empty: torch.Tensor, options: SamplingOptions, temp: float,
                 generator) -> tuple[torch.Tensor, ...]:
    """Draw a token at every position of ``at`` (B, L) from per-level logits there (``_guided_logits``).

    Returns, as (B, L) tensors valid where ``at``: the drawn codes, their confidences, the predictive
    entropy (nats) and the most likely codes (only with ``options.preview``)."""
    B, L = at.shape
    sampled = torch.zeros(B, L, dtype=torch.long, device=at.device)
    best = torch.zeros_like(sampled)
    conf = torch.zeros(B, L, device=at.device)
    ent = torch.zeros(B, L, device=at.device)
    for sl, (lc, lu) in zip(slices, logits):
        here = at[:, sl]                                                  # (B, l); lc: (here.sum(), V)
        drawn = _draw_level(lc, lu, scale, empty[sl].expand(B, -1)[here], options, temp, generator,
                            want_best=options.preview, counts=here.sum(1).tolist())
        for out, x in zip((sampled, conf, ent, best), drawn):
            out[:, sl][here] = x
    return sampled, conf, ent, best


@torch.no_grad()
def sample_steps(model: MaskedTransformer, tokenizer: Tokenizer, labels: torch.Tensor,
                 options: SamplingOptions = SamplingOptions(), generator: Generators = None,
                 known_tokens: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                 cond: torch.Tensor | None = None) -> Iterator[Step]:
    """Decode a batch progressively, yielding a ``Step`` after every step.

    labels : (B,) int64 class ids (``model.null_class`` for unconditional). known_tokens (B, L) and
    known_mask (B, L) bool (True = given) switch on completion. cond : (B, T, cond_dim) image prefix.
    The generator (CPU; one for the batch or one per row, see ``uniform``) drives every random choice.
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
    nc = model.layout.num_coarse
    parent = model.layout.fine_to_coarse().to(device) if nc else None
    bf16 = use_bf16(options.precision, device)
    try:
        for s in range(1, T + 1):
            revealed = 1.0 - mask.float().mean().item()
            scale = 1.0 + (options.cfg_scale - 1.0) * revealed               # MAR: guidance grows with progress
            u = (s - 1) / max(1, T - 1)
            temp = options.temperature[0] + (options.temperature[1] - options.temperature[0]) * u
            decided = mask & under_empty_parent(tokens, ~mask, empty, nc, parent)    # empty by the coarse plan
            at = mask & ~decided
            logits = _guided_logits(model, tokens, mask, labels, null, cond, scale, bf16, at)
            sampled, conf, ent, best = _draw_masked(logits, scale, at, slices, empty, options, temp, generator)
            sampled = torch.where(decided, empty, sampled)
            conf = torch.where(decided, 1.0, conf)
            best = torch.where(decided, empty, best)
            entropy = (ent * mask).sum(1) / mask.sum(1).clamp(min=1)
            # which masked positions to commit now
            if options.policy == "random":
                score = uniform([L] * B, generator).view(B, L).to(device)
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
            # a fine token committed in the same step as its parent drawn as empty space is empty too
            late = commit & under_empty_parent(torch.where(commit, sampled, tokens), ~mask | commit, empty, nc, parent)
            sampled, conf = torch.where(late, empty, sampled), torch.where(late, 1.0, conf)
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
