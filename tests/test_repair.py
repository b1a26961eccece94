"""Repair rounds (smart3d.repair): which patches are redrawn, and that nothing else changes."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from smart3d import geometry as G
from smart3d.repair import loose_patches, redraw_mask
from smart3d.sampler import SamplingOptions


def _patch_of(point) -> int:
    ijk = np.floor((np.asarray(point) + 1.0) * (G.LATTICE / 2.0)).astype(int)
    return int(np.ravel_multi_index(ijk, (G.LATTICE,) * 3))


def test_loose_patches_are_those_of_every_piece_but_the_largest():
    body = trimesh.creation.box(extents=(0.8, 0.8, 0.8)).subdivide()   # the largest piece has the most faces
    blob = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    blob.apply_translation((0.7, 0.7, -0.7))
    hit = loose_patches(trimesh.util.concatenate([body, blob]))
    assert hit.shape == (G.NUM_PATCHES,) and hit[_patch_of((0.7, 0.7, -0.7))]
    assert not hit[_patch_of((0.0, 0.0, 0.0))] and not hit[_patch_of((0.35, 0.35, 0.35))]
    assert hit.sum() <= 8                                       # a 0.1 box spans at most 2 patches a side
    assert not loose_patches(body).any()                        # one piece: nothing to redraw
    assert not loose_patches(trimesh.Trimesh()).any()           # empty mesh


@pytest.fixture(scope="module")
def shipped():
    from smart3d.pipeline import load_pipeline

    return load_pipeline(device="cpu")


def _pieces_chair(pipe):
    """A shipped-weights chair that decodes in several pieces (the first such seed)."""
    options = SamplingOptions(num_steps=12, repair_rounds=0)
    for seed in range(20):
        steps = list(pipe.steps(pipe.condition("chair"), seed, options))
        if G.mesh_parts(pipe.decode(steps[-1].tokens)[0].mesh) > 1:
            return seed, steps
    pytest.fail("no chair in pieces among 20 seeds at 12 steps")


@pytest.mark.slow
def test_repair_redraws_only_the_loose_patches_and_their_neighbours(shipped):
    pipe = shipped
    seed, plain = _pieces_chair(pipe)
    T, nc = len(plain), pipe.layout.num_coarse
    before = plain[-1].tokens
    redo = redraw_mask(pipe.tokenizer, before, nc)
    assert redo.any() and not redo[:, :nc].any()               # fine positions only
    options = SamplingOptions(num_steps=12, preview=False, repair_rounds=1, repair_steps=4)
    steps = list(pipe.steps(pipe.condition("chair"), seed, options))
    assert torch.equal(steps[T - 1].tokens, before)            # the decoding itself is unchanged
    repair = steps[T:]
    assert [s.index for s in repair] == [T + 1, T + 2, T + 3, T + 4] and {s.round for s in repair} == {1}
    after = repair[-1]
    assert not after.mask.any() and (after.tokens >= 0).all()
    changed = after.tokens != before
    assert not (changed & ~redo).any()                          # nothing outside the redraw mask changed
    assert (after.order[redo] > T).all() and torch.equal(after.order[~redo], plain[-1].order[~redo])
    again = list(pipe.steps(pipe.condition("chair"), seed, options))
    assert torch.equal(again[-1].tokens, after.tokens)          # same seed, same repair


@pytest.mark.slow
def test_repair_never_redraws_given_tokens(shipped):
    pipe = shipped
    seed, plain = _pieces_chair(pipe)
    before = plain[-1].tokens
    redo = redraw_mask(pipe.tokenizer, before, pipe.layout.num_coarse)
    given = torch.zeros_like(redo)
    given[0, redo[0].nonzero()[::2, 0]] = True                 # half of what would be redrawn is given
    assert not (redraw_mask(pipe.tokenizer, before, pipe.layout.num_coarse, given) & given).any()
    options = SamplingOptions(num_steps=12, preview=False, repair_rounds=2, repair_steps=4)
    known = given.clone()
    steps = list(pipe.steps(pipe.condition("chair", 1, before[0], known[0]), seed, options))
    assert torch.equal(steps[-1].tokens[given], before[given])


def test_repair_settings_are_checked():
    with pytest.raises(ValueError, match="repair_rounds"):
        replace(SamplingOptions(), repair_rounds=-1).check()
    with pytest.raises(ValueError, match="repair_steps"):
        replace(SamplingOptions(), repair_steps=0).check()
