"""Editing a decoded shape: resample it from step k, or regenerate the tokens inside a box.

Both are a decoding with part of the sequence given, so both become a ``pipeline.Condition`` whose
``known`` tokens are kept exactly (the sampler never changes a given token, and repair rounds never
redraw one) and are decoded by ``Pipeline.steps`` like any other condition:

    from smart3d.editing import keep_until, keep_outside
    steps = list(pipe.steps(pipe.condition("chair"), seed=0))
    again = pipe.run(keep_until(steps[9], labels), seed=1)            # what step 10 had, the rest redrawn
    back = pipe.run(keep_outside(steps[-1].tokens, labels, pipe.layout, *REGIONS["back"]), seed=1)

A region is an axis-aligned box ``lo``..``hi`` in the canonical frame (y up, front towards +z). A fine
token is redrawn when its patch centre is inside the box; a coarse token (the rough plan of 8
patches) only when all 8 of its patches are, so that a kept patch never sits under a redrawn plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .pipeline import Condition
from .sampler import Step
from .tokenizer import TokenLayout

# named halves of the canonical box: (lo, hi)
REGIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "top": ((-1.0, 0.0, -1.0), (1.0, 1.0, 1.0)),
    "bottom": ((-1.0, -1.0, -1.0), (1.0, 0.0, 1.0)),
    "front": ((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0)),
    "back": ((-1.0, -1.0, -1.0), (1.0, 1.0, 0.0)),
    "left": ((-1.0, -1.0, -1.0), (0.0, 1.0, 1.0)),
    "right": ((0.0, -1.0, -1.0), (1.0, 1.0, 1.0)),
}


def check_box(lo: Sequence[float], hi: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A region's corners as (3,) tensors; ValueError in plain words for a box that selects nothing."""
    try:
        lo_t, hi_t = torch.tensor([float(v) for v in lo]), torch.tensor([float(v) for v in hi])
    except (TypeError, ValueError):
        raise ValueError(f"A region is two corners of three numbers each; got {lo!r} and {hi!r}.") from None
    if lo_t.shape != (3,) or hi_t.shape != (3,) or not (torch.isfinite(lo_t).all() and torch.isfinite(hi_t).all()):
        raise ValueError(f"A region is two corners of three finite numbers each; got {lo!r} and {hi!r}.")
    bad = (lo_t >= hi_t).nonzero()
    if len(bad):
        a = int(bad[0])
        raise ValueError(f"The region is empty: its {'xyz'[a]} range {float(lo_t[a]):g}..{float(hi_t[a]):g} "
                         "has no width (min must be below max).")
    return lo_t, hi_t


def region_mask(layout: TokenLayout, lo: Sequence[float], hi: Sequence[float]) -> torch.Tensor:
    """(L,) bool: the positions of the sequence redrawn for the box ``lo``..``hi`` (see the module text)."""
    lo_t, hi_t = check_box(lo, hi)
    c = layout.centroids()
    inside = ((c >= lo_t) & (c <= hi_t)).all(1)
    nc = layout.num_coarse
    if nc:
        parent = layout.fine_to_coarse()
        children_in = torch.zeros(nc).index_add_(0, parent, inside[nc:].float())
        inside[:nc] = children_in == len(parent) // nc
    if not inside[nc:].any():
        raise ValueError("The region holds no patch centre: make the box larger (patches are 0.25 wide).")
    return inside


def keep_until(step: Step, labels: torch.Tensor) -> Condition:
    """Keep what was committed by ``step`` (a recorded ``Step``, batch B; ``labels`` (B,) its classes);
    everything still masked then is drawn again."""
    known = ~step.mask
    return Condition(labels, torch.where(known, step.tokens, 0), known)


def keep_outside(tokens: torch.Tensor, labels: torch.Tensor, layout: TokenLayout, lo: Sequence[float],
                 hi: Sequence[float], given: torch.Tensor | None = None) -> Condition:
    """Redraw the tokens of the box ``lo``..``hi`` in the final sequences ``tokens`` (B, L), keep the rest;
    ``given`` (B, L) bool positions (a scan's observed patches) are kept even inside the box."""
    redraw = region_mask(layout, lo, hi).expand_as(tokens)
    if given is not None:
        redraw = redraw & ~given
    return Condition(labels, tokens.clone(), ~redraw)
