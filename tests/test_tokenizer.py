"""Tokenizer invariants: patch locality, token layout, codebook restarts, decode path."""

import numpy as np
import pytest
import torch

from smart3d import geometry as G
from smart3d.tokenizer import (COARSE_LATTICE, PRESETS, TokenLayout, Tokenizer, VectorQuantizer, iou,
                               soft_occupancy, usage_stats)


@pytest.fixture(scope="module")
def tiny():
    """A tiny tokenizer whose codes sit on real patch latents (as after training), so tokens vary."""
    torch.manual_seed(0)
    tok = Tokenizer(PRESETS["tiny"]).eval()
    feats = G.surface_features([_random_points(s, n) for s, n in ((50, 20_000), (51, 1500))])
    tok.init_codebooks(feats, torch.Generator().manual_seed(0))
    return tok


def _random_points(seed: int, n: int = 20_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g) * 2 - 1


def _lattice_cell(points: torch.Tensor, lattice: int) -> torch.Tensor:
    """Flat index of the cell of an ``lattice^3`` split of [-1, 1]^3 holding each point."""
    ijk = ((points + 1) * lattice / 2).floor().long().clamp(0, lattice - 1)
    return (ijk[:, 0] * lattice + ijk[:, 1]) * lattice + ijk[:, 2]


def _redraw_outside(points: torch.Tensor, lattice: int, cell: int, seed: int) -> torch.Tensor:
    """Keep the points in ``cell`` of the ``lattice^3`` split; redraw all others outside that cell."""
    keep = _lattice_cell(points, lattice) == cell
    fresh = _random_points(seed, 4 * len(points))
    fresh = fresh[_lattice_cell(fresh, lattice) != cell]
    return torch.cat([points[keep], fresh[: int((~keep).sum())]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_changing_points_outside_a_patch_never_changes_its_token(tiny, seed):
    pts = _random_points(seed)
    before = tiny.encode_points(pts)[0]
    patch = int(torch.randint(512, (1,), generator=torch.Generator().manual_seed(100 + seed)))
    changed = _redraw_outside(pts, 8, patch, seed=200 + seed)
    after = tiny.encode_points(changed)[0]
    L = tiny.layout
    assert after[L.num_coarse + patch] == before[L.num_coarse + patch]
    assert (after[L.num_coarse:] != before[L.num_coarse:]).sum() > 100, "the outside change should move other tokens"


@pytest.mark.parametrize("seed", [0, 1])
def test_changing_points_outside_a_coarse_block_keeps_its_tokens(tiny, seed):
    pts = _random_points(seed, 1500)                         # sparse: coarse blocks differ from each other
    before = tiny.encode_points(pts)[0]
    L = tiny.layout
    block = int(torch.randint(L.num_coarse, (1,), generator=torch.Generator().manual_seed(seed)))
    changed = _redraw_outside(pts, COARSE_LATTICE, block, seed=300 + seed)
    after = tiny.encode_points(changed)[0]
    children = torch.nonzero(L.fine_to_coarse() == block).flatten() + L.num_coarse
    assert len(children) == 8
    assert after[block] == before[block] and torch.equal(after[children], before[children])
    assert (after[:L.num_coarse] != before[:L.num_coarse]).sum() > 10, "other coarse tokens should move"


def test_encode_points_accepts_lists_of_any_size_and_empty_clouds(tiny):
    a, b = _random_points(0, 3000), _random_points(1, 500)
    both = tiny.encode_points([a, b])
    assert torch.equal(both[0], tiny.encode_points(a)[0]) and torch.equal(both[1], tiny.encode_points(b)[0])
    empty = tiny.encode_points(torch.zeros(0, 3))[0]
    assert torch.equal(empty, tiny.encode(torch.zeros(1, G.SURFACE_CHANNELS, 32, 32, 32))[0])


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
    tokens = tiny.encode_points(torch.stack([_random_points(3), _random_points(4)]))
    assert tokens.shape == (2, 576) and tokens.dtype == torch.int64
    assert tokens[:, 64:].max() < tiny.config.codebook_size
    assert tokens[:, :64].max() < tiny.config.coarse_codebook_size
    with torch.no_grad():
        assert tiny.decode(tokens).shape == (2, 32, 32, 32)
        probs = tiny.decode_coarse(tokens)
    assert probs.shape == (2, 16, 16, 16) and probs.min() >= 0 and probs.max() <= 1


def test_voxel_refinement_starts_as_the_decoder_without_it_then_learns():
    """``voxel_width`` adds a 32^3 stage whose output starts at zero: warm starts keep their fields."""
    from dataclasses import replace

    from smart3d.tokenizer import FieldDecoder

    torch.manual_seed(0)
    small = replace(PRESETS["tiny"], fine_width=8)
    base, refined = FieldDecoder(small), FieldDecoder(replace(small, voxel_width=4))
    state = refined.state_dict()
    state.update(base.state_dict())
    refined.load_state_dict(state)
    codes = torch.randn(2, 512, small.code_dim)
    with torch.no_grad():
        assert torch.equal(base(codes), refined(codes))
    opt = torch.optim.SGD(refined.refine.parameters(), lr=0.1)
    for _ in range(2):                                    # the zero layer gets gradient, then the rest
        opt.zero_grad()
        refined(codes).square().mean().backward()
        opt.step()
    with torch.no_grad():
        assert not torch.equal(base(codes), refined(codes))
    assert refined.refine[0].net[2].weight.grad.abs().sum() > 0


def test_code_embedding_starts_as_the_decoder_without_it_then_learns_per_code():
    """``token_embed`` adds a table per fine code that starts at zero (warm starts keep their fields);
    trained, it changes the field of the codes it saw and needs the tokens to decode."""
    from dataclasses import replace

    from smart3d.tokenizer import FieldDecoder

    torch.manual_seed(0)
    small = replace(PRESETS["tiny"], fine_width=8)
    base, embedded = FieldDecoder(small), FieldDecoder(replace(small, token_embed=True))
    state = embedded.state_dict()
    state.update(base.state_dict())
    embedded.load_state_dict(state)
    tokens = torch.randint(1, small.codebook_size, (2, 512))
    tokens[:, :256] = 0                                   # code 0 never trained below
    codes = torch.randn(small.codebook_size, small.code_dim)[tokens]
    with torch.no_grad():
        assert torch.equal(base(codes), embedded(codes, tokens))
    opt = torch.optim.SGD(embedded.embed.parameters(), lr=1.0)
    trained = tokens.clone()
    trained[:, :256] = 1
    opt.zero_grad()
    embedded(codes, trained).square().mean().backward()
    opt.step()
    assert embedded.embed.weight[0].abs().sum() == 0 and embedded.embed.weight[1].abs().sum() > 0
    with torch.no_grad():
        assert not torch.equal(base(codes), embedded(codes, tokens))
    with pytest.raises(AssertionError, match="pass the tokens"):
        embedded(codes)


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


def test_continuous_ablation_reconstructs_through_its_latents_and_has_no_tokens(tiny):
    from dataclasses import replace
    torch.manual_seed(0)
    cont = Tokenizer(replace(PRESETS["tiny"], quantize=False)).eval()
    feats = G.surface_features([_random_points(3, 5000)])
    out = cont(feats, torch.randn(1, 32, 32, 32))
    assert out["fine_idx"] is None and float(out["commit"]) == 0.0 and torch.isfinite(out["loss"])
    logits, tokens = cont.reconstruct(feats)
    assert logits.shape == (1, 32, 32, 32) and tokens is None
    assert torch.allclose(logits, cont.decoder(cont._fine_latents(feats)))
    with pytest.raises(ValueError, match="no tokens"):
        cont.encode(feats)
    logits, tokens = tiny.reconstruct(feats)                             # quantised: via the tokens
    assert torch.equal(tokens, tiny.encode(feats)) and torch.equal(logits, tiny.decode(tokens))
