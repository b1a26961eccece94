"""Repair rounds: redraw the loose pieces of a decoded shape with the rest of the shape given.

A decoded shape can come out in several pieces: a leg that misses the seat, a blob floating beside
the body. The network lines neighbouring patches up well when most of their context is given
(fill-in test: 10% of a tokenized chair's surface tokens masked and redrawn gives 1.1-1.25 parts)
and much worse when little is, as in the first steps of a decoding. So after the decoding, every
piece of the decoded mesh but the largest is located; the fine tokens of the patches it touches
and of the patches around them (which hold the gap to the body) are masked again and redrawn by
the same model in a short decoding with everything else given. This repeats up to
``SamplingOptions.repair_rounds`` times and stops for a shape once it is one piece.

Nothing is removed: a loose piece either joins the body or the model draws its patches as empty
space, and parts are counted on what the model drew. Coarse tokens and given tokens (a scan's
observed patches, an image's coarse tokens) are never redrawn.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from . import geometry as G
from .model import MaskedTransformer
from .sampler import Generators, SamplingOptions, Step, sample_steps
from .tokenizer import Tokenizer


def loose_patches(mesh: trimesh.Trimesh, lattice: int = G.LATTICE) -> np.ndarray:
    """(lattice^3,) bool in token order: the patches touched by every piece of ``mesh`` but the largest."""
    hit = np.zeros((lattice,) * 3, dtype=bool)
    if len(mesh.faces):
        pieces = mesh.split(only_watertight=False)
        for piece in sorted(pieces, key=lambda m: len(m.faces))[:-1]:
            ijk = np.clip(np.floor((piece.vertices + 1.0) * (lattice / 2.0)).astype(np.int64), 0, lattice - 1)
            hit[tuple(ijk.T)] = True
    return hit.reshape(-1)


@torch.no_grad()
def occupancy(tokenizer: Tokenizer, tokens: torch.Tensor, bf16: bool = False) -> np.ndarray:
    """Occupancy probabilities (B, 32, 32, 32) float32 of token sequences (B, L); ``bf16``: the decoder
    under bf16 autocast (with AMX 5x faster for one shape, 1.8x for 16; voxel IoU 0.998 with the fp32
    field, the same mesh parts for 97% of 96 training shapes: ``experiments/decoder_precision.py``)."""
    device = tokenizer.quantizer.codebook.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        return torch.sigmoid(tokenizer.decode(tokens.to(device)).float()).cpu().numpy()


@torch.no_grad()
def redraw_mask(tokenizer: Tokenizer, tokens: torch.Tensor, num_coarse: int, given: torch.Tensor | None = None,
                decode: Callable[[torch.Tensor], np.ndarray] | None = None) -> torch.Tensor:
    """(B, L) bool: the fine positions to redraw in each of the token sequences ``tokens`` (B, L):
    the patches of its loose pieces and their 26 neighbours, never a ``given`` (B, L) position.
    ``decode``: tokens -> occupancy probabilities (default ``occupancy``; a caller that decodes the
    final tokens again passes one that remembers)."""
    probs = decode(tokens) if decode is not None else occupancy(tokenizer, tokens)
    n = G.LATTICE
    out = torch.zeros(tokens.shape, dtype=torch.bool)
    for i, field in enumerate(probs):
        hit = torch.from_numpy(loose_patches(G.mesh_from_field(field, 0.5), n)).float().view(1, 1, n, n, n)
        out[i, num_coarse:] = F.max_pool3d(hit, 3, stride=1, padding=1).view(-1) > 0
    return out if given is None else out & ~given.cpu()


def repair_steps(model: MaskedTransformer, tokenizer: Tokenizer, last: Step, labels: torch.Tensor,
                 options: SamplingOptions, generator: Generators = None,
                 given: torch.Tensor | None = None,
                 decode: Callable[[torch.Tensor], np.ndarray] | None = None) -> Iterator[Step]:
    """Repair rounds after a decoding whose final step is ``last``, as more ``Step`` records.

    Each round decodes the shapes that are still in pieces in ``options.repair_steps`` steps; the
    records cover the whole batch (shapes not repaired keep their tokens), number their steps on
    from ``last`` and say their round. ``given`` (B, L) bool: positions never redrawn; ``decode``: see
    ``redraw_mask``.
    """
    B = last.tokens.shape[0]
    tokens, order, confidence = last.tokens.clone(), last.order.clone(), last.confidence.clone()
    preview = None if last.preview is None else last.preview.clone()
    index = last.index
    round_options = replace(options, num_steps=options.repair_steps)
    for r in range(1, options.repair_rounds + 1):
        redo = redraw_mask(tokenizer, tokens, model.layout.num_coarse, given, decode)
        rows = redo.any(1).nonzero().squeeze(1)
        if len(rows) == 0:
            return
        kept_order, kept_confidence = order[rows], confidence[rows]
        gen = [generator[r] for r in rows.tolist()] if isinstance(generator, (list, tuple)) else generator
        for s in sample_steps(model, tokenizer, labels[rows], round_options, gen, tokens[rows], ~redo[rows]):
            tokens[rows] = s.tokens
            confidence[rows] = torch.where(redo[rows], s.confidence, kept_confidence)
            order[rows] = torch.where(redo[rows], torch.where(s.order > 0, s.order + index, -1), kept_order)
            mask = torch.zeros_like(redo)
            committed = torch.zeros_like(redo)
            mask[rows], committed[rows] = s.mask, s.committed
            entropy = torch.zeros(B)
            entropy[rows] = s.entropy
            if preview is not None and s.preview is not None:
                preview[rows] = s.preview
            yield Step(index + s.index, index + s.num_steps, tokens.clone(), mask, committed, confidence.clone(),
                       order.clone(), entropy, s.cfg_scale, s.temperature,
                       None if preview is None else preview.clone(), round=r)
        index += options.repair_steps
