"""Tokenizer invariants: patch locality, token layout, codebook restarts, decode path."""

import numpy as np
import pytest
import torch

from smart3d import geometry as G
from smart3d.tokenizer import (COARSE_LATTICE, PRESETS, TokenLayout, Tokenizer, VectorQuantizer, iou,
                               soft_occupancy, usage_stats)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Tokenizer(PRESETS["tiny"]).eval()


def _random_surface(seed: int, B: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 32, 32, 32, generator=g) < 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_changing_voxels_outside_a_patch_never_changes_its_token(tiny, seed):
    surface = _random_surface(seed, B=1)
    before = tiny.encode(surface)[0]
    g = torch.Generator().manual_seed(100 + seed)
    patch = int(torch.randint(512, (1,), generator=g))
    inside = G.unpatchify(torch.nn.functional.one_hot(torch.tensor(patch), 512).bool()[:, None].expand(512, 64))
    noise = torch.rand(32, 32, 32, generator=g) < 0.5
    changed = torch.where(inside, surface[0], noise)        # everything outside the patch redrawn
    after = tiny.encode(changed[None])[0]
    L = tiny.layout
    assert after[L.num_coarse + patch] == before[L.num_coarse + patch]
    assert (after != before).any(), "the outside change should move other tokens"
    # coarse level: a coarse token depends only on its own 8^3 block
    block = int(L.fine_to_coarse()[patch])
    assert after[block] == before[block]


def test_layout_lengths_levels_and_centroids():
    two, one = TokenLayout(2), TokenLayout(1)
    assert two.length == 64 + 512 and one.length == 512
    assert two.level_ids().tolist() == [0] * 64 + [1] * 512
    c = two.centroids()
    assert c.shape == (576, 3)
    # every fine centroid lies inside the 8^3-voxel block of its coarse parent
    parent = c[two.fine_to_coarse()]
    assert torch.all((c[64:] - parent).abs() <= 0.25 + 1e-6)
    assert two.lattices() == [COARSE_LATTICE, 8]


def test_encode_decode_shapes(tiny):
    surface = _random_surface(3)
    tokens = tiny.encode(surface)
    assert tokens.shape == (2, 576) and tokens.dtype == torch.int64
    assert tokens[:, 64:].max() < tiny.config.codebook_size
    assert tokens[:, :64].max() < tiny.config.coarse_codebook_size
    with torch.no_grad():
        assert tiny.decode(tokens).shape == (2, 32, 32, 32)
        probs = tiny.decode_coarse(tokens)
    assert probs.shape == (2, 16, 16, 16) and probs.min() >= 0 and probs.max() <= 1


def test_soft_occupancy_thresholds_at_the_surface():
    sdf = torch.linspace(-0.2, 0.2, 101)
    t = soft_occupancy(sdf)
    assert torch.equal(t > 0.5, sdf < 0)
    assert t.min() == 0 and t.max() == 1


def test_dead_codes_are_restarted_onto_data():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, decay=0.5).train()
    z = torch.randn(256, 4) + 10.0                       # data far from every initial code
    for _ in range(20):
        vq(z)
    idx = vq.indices(z)
    assert usage_stats(idx, 16)["usage"] == 1.0          # every code ends up in use
    assert (vq.codebook - 10.0).abs().mean() < 2.0


def test_iou():
    a = torch.zeros(1, 32, 32, 32, dtype=torch.bool)
    a[0, :16] = True
    logits = torch.where(a, 1.0, -1.0)
    assert iou(logits, a).item() == 1.0
    half = a.clone()
    half[0, :8] = False
    assert iou(logits, half).item() == pytest.approx(0.5)
