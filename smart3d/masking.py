"""Mask schedules and training masks (random, coarse-first, and region masks for completion).

The mask ratio plays the role of diffusion time in an absorbing-state discrete diffusion: training
draws a time ``t`` uniformly from the ``T = 1000`` "diffusion" steps and masks
``ceil(gamma(t / T) * L)`` tokens, where ``gamma`` is the cosine schedule of MaskGIT
(``cos(pi / 2 * u)``): more time is spent at high mask ratios, where generation starts.
The same schedules decide how many tokens stay masked after each decoding step in the sampler.

Region masks make completion a trained task rather than a hope: a random plane cut, a random box,
or what a single view of the shape sees (the first occupied patch along each ray and everything in
front of it) is kept visible and the rest is masked. A coarse token counts as visible only when
all eight fine patches under it are visible: its code depends on the whole 8^3-voxel block.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .tokenizer import TokenLayout

Schedule = Literal["cosine", "linear", "square", "sqrt"]
SCHEDULES: tuple[str, ...] = ("cosine", "linear", "square", "sqrt")
DIFFUSION_STEPS = 1000


def schedule_fn(name: Schedule):
    """gamma(u): the fraction still masked at progress u in [0, 1] (gamma(0) = 1, gamma(1) = 0)."""
    fns = {
        "cosine": lambda u: math.cos(math.pi / 2 * u),   # MaskGIT / MAR
        "linear": lambda u: 1.0 - u,
        "square": lambda u: 1.0 - u**2,                  # slow start: few tokens first, many at the end
        "sqrt": lambda u: 1.0 - math.sqrt(u),            # fast start
    }
    if name not in fns:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(fns)}")
    return fns[name]


def masked_counts(num_masked: int, num_steps: int, schedule: Schedule = "cosine") -> list[int]:
    """How many tokens remain masked after each of ``num_steps`` steps, starting from ``num_masked``.

    Strictly decreasing while tokens remain (at least one commit per step), ends at 0.
    """
    g = schedule_fn(schedule)
    left, out = num_masked, []
    for s in range(1, num_steps + 1):
        target = 0 if s == num_steps else math.floor(num_masked * g(s / num_steps))
        left = max(0, min(target, left - 1))
        out.append(left)
    return out


def sample_mask_ratio(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample mask ratio from the cosine schedule at a uniform diffusion step in 1..T: (B,)."""
    t = torch.randint(1, DIFFUSION_STEPS + 1, (batch,), generator=generator)
    return torch.cos(math.pi / 2 * (1.0 - t.float() / DIFFUSION_STEPS))


def random_mask(ratio: torch.Tensor, length: int, generator: torch.Generator | None = None,
                among: torch.Tensor | None = None) -> torch.Tensor:
    """Mask ``ceil(ratio * n)`` uniformly chosen positions of each row (n = length, or ``among.sum()``).

    ratio (B,) -> (B, length) bool. ``among`` (B, length) bool restricts the candidates.
    """
    B = ratio.shape[0]
    among = torch.ones(B, length, dtype=torch.bool) if among is None else among
    n = among.sum(1)
    k = torch.ceil(ratio * n).long().clamp(min=1).minimum(n)
    scores = torch.rand(B, length, generator=generator).masked_fill(~among, 2.0)
    rank = scores.argsort(1).argsort(1)
    return rank < k[:, None]


def coarse_first_mask(ratio: torch.Tensor, layout: TokenLayout, generator: torch.Generator | None = None) -> torch.Tensor:
    """The states a coarse-before-fine decoder visits: fine tokens are masked first, coarse ones last."""
    B, L, nc = ratio.shape[0], layout.length, layout.num_coarse
    k = torch.ceil(ratio * L).long().clamp(min=1)
    scores = torch.rand(B, L, generator=generator)
    scores[:, :nc] += 1.0                                  # coarse tokens rank after every fine token
    rank = scores.argsort(1).argsort(1)
    return rank < k[:, None]


# --------------------------------------------------------------------------------------------
# Region masks (completion)
# --------------------------------------------------------------------------------------------

def _with_coarse(fine_visible: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Fine visibility (B, 512) -> sequence visibility (B, L): coarse visible iff all children are."""
    if layout.num_coarse == 0:
        return fine_visible
    parent = layout.fine_to_coarse()
    B = fine_visible.shape[0]
    hidden = torch.zeros(B, layout.num_coarse, dtype=torch.long)
    hidden.index_add_(1, parent, (~fine_visible).long())
    return torch.cat([hidden == 0, fine_visible], dim=1)


PATCH_HALF_DIAGONAL = 3**0.5 * 0.125                      # centre-to-corner of a 4^3-voxel patch


def plane_visible(normal: torch.Tensor, offset: torch.Tensor, layout: TokenLayout, whole: bool = False) -> torch.Tensor:
    """Tokens on the positive side of planes n . c > offset: normal (B, 3) unit, offset (B,) -> (B, L) bool.

    ``whole=True`` keeps only patches lying entirely on that side (their tokens are then exactly
    those of the full shape): what completion of a cut shape may treat as given.
    """
    c = layout.centroids()[layout.num_coarse:]            # (512, 3)
    margin = PATCH_HALF_DIAGONAL if whole else 0.0
    fine = (c @ normal.t()).t() > offset[:, None] + margin
    return _with_coarse(fine, layout)


def random_plane_visible(batch: int, layout: TokenLayout, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random plane cuts through the middle of the cube, keeping roughly 30-70% of the tokens."""
    n = torch.randn(batch, 3, generator=generator)
    n = n / n.norm(dim=1, keepdim=True)
    offset = (torch.rand(batch, generator=generator) - 0.5) * 0.6
    return plane_visible(n, offset, layout)


def random_box_visible(batch: int, layout: TokenLayout, generator: torch.Generator | None = None) -> torch.Tensor:
    """Everything visible except a random axis-aligned box (a hole to fill)."""
    c = layout.centroids()[layout.num_coarse:]
    lo = torch.rand(batch, 3, generator=generator) * 1.4 - 1.0
    size = torch.rand(batch, 3, generator=generator) * 1.0 + 0.4
    inside = ((c[None] >= lo[:, None]) & (c[None] <= (lo + size)[:, None])).all(-1)
    return _with_coarse(~inside, layout)


def view_visible(fine_tokens: torch.Tensor, empty_token: int, axis: int, sign: int,
                 layout: TokenLayout) -> torch.Tensor:
    """What one axis-aligned view sees: along each ray, the empty patches in front of the first
    occupied patch and that patch itself. fine_tokens (B, 512) -> (B, L) bool."""
    B = fine_tokens.shape[0]
    n = round(fine_tokens.shape[1] ** (1 / 3))
    occ = (fine_tokens != empty_token).view(B, n, n, n)
    occ = occ.movedim(axis + 1, -1)
    if sign < 0:
        occ = occ.flip(-1)
    before = torch.cumsum(occ.long(), dim=-1) - occ.long()          # occupied patches strictly in front
    vis = before == 0                                               # in front of or at the first hit
    if sign < 0:
        vis = vis.flip(-1)
    vis = vis.movedim(-1, axis + 1).reshape(B, -1)
    return _with_coarse(vis, layout)


def under_empty_parent(tokens: torch.Tensor, given: torch.Tensor, empty: torch.Tensor, num_coarse: int,
                       parent: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the fine positions whose coarse parent is ``given`` (B, L) as empty space.

    Such a patch is empty: in the training sequences a fine token under an empty coarse token is
    empty in 99.997% of 5.9 M cases (``experiments/results/hierarchy_rule.json``). The sampler gives
    it the empty code instead of asking the model (a fine level that agrees with the coarse plan,
    and about 60% fewer positions to draw).
    ``empty`` (L,) is the empty shape's sequence; ``parent`` is ``layout.fine_to_coarse()``."""
    out = torch.zeros_like(given)
    if num_coarse:
        coarse_empty = given[:, :num_coarse] & (tokens[:, :num_coarse] == empty[:num_coarse])
        out[:, num_coarse:] = coarse_empty[:, parent]
    return out


def asked_mask(mask: torch.Tensor, tokens: torch.Tensor, empty: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """``mask`` without the fine positions the sampler never asks about: those under a visible empty
    coarse token (``under_empty_parent``); the loss there is the loss that matters for sampling
    (``experiments/coherence/val_loss.py``). Training on these masks only (campaign 4, arm B) tied
    with training on all of them: docs/EXPERIMENTS.md. tokens (B, L), empty (L,)."""
    parent = layout.fine_to_coarse().to(mask.device)
    return mask & ~under_empty_parent(tokens, ~mask, empty.to(mask.device), layout.num_coarse, parent)


MaskKind = Literal["random", "coarse_first", "plane", "box", "view"]


def training_mask(fine_tokens: torch.Tensor, empty_token: int, layout: TokenLayout,
                  generator: torch.Generator | None = None,
                  weights: dict[str, float] | None = None) -> torch.Tensor:
    """A mixed batch of training masks (B, L) bool: random, coarse-first and region masks.

    Region masks hide the unseen region entirely and then re-reveal a cosine-schedule fraction of
    it, which are exactly the states the completion sampler visits.
    """
    weights = weights or {"random": 0.35, "coarse_first": 0.25, "plane": 0.15, "box": 0.1, "view": 0.15}
    B, L = fine_tokens.shape[0], layout.length
    kinds = list(weights)
    p = torch.tensor([weights[k] for k in kinds])
    choice = torch.multinomial(p, B, replacement=True, generator=generator)
    ratio = sample_mask_ratio(B, generator)
    mask = random_mask(ratio, L, generator)
    if layout.num_coarse:
        cf = coarse_first_mask(ratio, layout, generator)
        mask = torch.where((choice == kinds.index("coarse_first"))[:, None], cf, mask)
    hidden = torch.zeros(B, L, dtype=torch.bool)
    region = torch.zeros(B, dtype=torch.bool)
    for kind in ("plane", "box", "view"):
        rows = choice == kinds.index(kind)
        if not rows.any():
            continue
        m = int(rows.sum())
        if kind == "plane":
            vis = random_plane_visible(m, layout, generator)
        elif kind == "box":
            vis = random_box_visible(m, layout, generator)
        else:
            axis = int(torch.randint(3, (1,), generator=generator))
            sign = 1 if torch.rand((), generator=generator) < 0.5 else -1
            vis = view_visible(fine_tokens[rows], empty_token, axis, sign, layout)
        hidden[rows] = ~vis
        region |= rows
    if region.any():
        sub = random_mask(ratio[region], L, generator, among=hidden[region])
        mask[region] = sub
    return mask
