"""Progressive sampler invariants: each position committed once, visible tokens fixed, reproducible."""

import pytest
import torch

from smart3d.masking import SCHEDULES, masked_counts, training_mask
from smart3d.model import MaskedTransformer, ModelConfig
from smart3d.sampler import (POLICIES, SamplingOptions, _sample_occupancy_first, _sample_token, empty_tokens,
                             hierarchy_gate, level_guidance, sample, sample_steps, surface_band)
from smart3d.tokenizer import PRESETS, Tokenizer


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    tok = Tokenizer(PRESETS["tiny"]).eval()
    cfg = ModelConfig(depth=2, dim=32, heads=2, codebook_size=64, coarse_codebook_size=32)
    return MaskedTransformer(cfg).eval(), tok


def _run(nets, seed=0, **kw):
    model, tok = nets
    opts = SamplingOptions(**{"num_steps": 6, **kw.pop("opts", {})})
    g = torch.Generator().manual_seed(seed)
    return list(sample_steps(model, tok, torch.tensor([0, 3]), opts, g, **kw))


@pytest.mark.parametrize("policy,schedule", [(p, "cosine") for p in POLICIES] +
                         [("spatial", s) for s in SCHEDULES if s != "cosine"])
def test_every_position_committed_exactly_once(nets, policy, schedule):
    steps = _run(nets, opts={"policy": policy, "schedule": schedule, "preview": False})
    counts = torch.stack([s.committed for s in steps]).sum(0)
    assert torch.all(counts == 1)
    assert not steps[-1].mask.any() and steps[-1].tokens.min() >= 0
    assert torch.all(steps[-1].order >= 1)
    # the schedule is followed: remaining masked counts match masked_counts
    assert [int(s.mask[0].sum()) for s in steps] == masked_counts(576, 6, schedule)


def test_same_generator_same_result_and_different_seed_differs(nets):
    a, b, c = (_run(nets, seed=s, opts={"preview": False}) for s in (1, 1, 2))
    assert torch.equal(a[-1].tokens, b[-1].tokens)
    assert not torch.equal(a[-1].tokens, c[-1].tokens)


def test_completion_never_changes_visible_tokens(nets):
    model, tok = nets
    g = torch.Generator().manual_seed(0)
    known = torch.randint(0, 32, (2, 576), generator=g)
    visible = torch.rand(2, 576, generator=g) < 0.4
    steps = _run(nets, known_tokens=known, known_mask=visible, opts={"preview": False})
    for s in steps:
        assert torch.equal(s.tokens[visible], known[visible])
        assert not s.committed[visible].any()
    counts = torch.stack([s.committed for s in steps]).sum(0)
    assert torch.all(counts[~visible] == 1)
    assert torch.all(steps[-1].order[visible] == 0)


def test_steps_record_entropy_confidence_and_preview(nets):
    steps = _run(nets)
    for s in steps:
        assert s.entropy.shape == (2,) and torch.all(s.entropy >= 0)
        assert s.preview.shape == (2, 32, 32, 32)
        c = s.confidence[s.committed]
        assert torch.all((c > 0) & (c <= 1))
    # guidance grows with the revealed fraction, temperature anneals 0.8 -> 0.5
    assert 1.0 <= steps[0].cfg_scale < steps[-1].cfg_scale <= SamplingOptions().cfg_scale
    assert steps[0].temperature == pytest.approx(0.8) and steps[-1].temperature == pytest.approx(0.5)


def test_spatial_policy_commits_coarse_tokens_first(nets):
    steps = _run(nets, opts={"num_steps": 25, "preview": False})
    order = steps[-1].order
    assert order[:, :64].max() <= order[:, 64:].min()


def test_bad_options_are_rejected_with_valid_choices(nets):
    with pytest.raises(ValueError, match="valid policies"):
        SamplingOptions(policy="zigzag").check()
    with pytest.raises(ValueError, match="num_steps"):
        SamplingOptions(num_steps=0).check()
    with pytest.raises(ValueError, match="temperature"):
        SamplingOptions(temperature=(0.0, 0.5)).check()
    with pytest.raises(ValueError, match="refine_fraction"):
        SamplingOptions(refine_fraction=0.0).check()
    with pytest.raises(ValueError, match="min_part"):
        SamplingOptions(min_part=1.5).check()


def test_options_record_names_every_setting_that_shapes_a_result():
    import dataclasses
    import json

    opts = SamplingOptions(cfg_scale=1.5, temperature=(1.0, 0.7), min_part=0.02)
    record = json.loads(json.dumps(opts.record()))
    shaping = {f.name for f in dataclasses.fields(SamplingOptions)} - {"preview"}   # preview: display only
    assert set(record) == shaping
    assert SamplingOptions(**{**record, "temperature": tuple(record["temperature"])}) == opts


def test_sample_drains_to_final_tokens(nets):
    model, tok = nets
    g = torch.Generator().manual_seed(3)
    out = sample(model, tok, torch.tensor([1]), options=SamplingOptions(num_steps=4), generator=g)
    assert out.shape == (1, 576) and out.min() >= 0


def test_training_masks_are_region_consistent(nets):
    model, tok = nets
    g = torch.Generator().manual_seed(0)
    fine = torch.randint(0, 64, (64, 512), generator=g)
    m = training_mask(fine, int(empty_tokens(tok)[-1]), model.layout, g)
    assert m.shape == (64, 576) and m.any(1).all()


def test_occupancy_first_keeps_the_models_probability_of_empty():
    # one empty code with p = 0.3 against ten surface codes sharing 0.7: a tempered top-k draw
    # over all codes inflates "empty"; the occupancy-first draw keeps it at 0.3
    probs = torch.tensor([0.3] + [0.07] * 10)
    logits = probs.log().expand(1, 20_000, 11).contiguous()
    empty = torch.zeros(20_000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    pick, conf = _sample_occupancy_first(logits, logits.log_softmax(-1), empty, top_k=10, temp=0.5, generator=g)
    assert abs((pick == 0).float().mean().item() - 0.3) < 0.02
    assert torch.allclose(conf[pick == 0], torch.tensor(0.3)) and torch.allclose(conf[pick != 0], torch.tensor(0.7))
    plain, _ = _sample_token(logits, top_k=10, temp=0.5, generator=g)
    assert (plain == 0).float().mean().item() > 0.5


@pytest.mark.parametrize("temp", [0.5, 2.0])
def test_occupancy_temperature_tempers_the_surface_or_not_draw(temp):
    # p(empty) = 0.8: the draw keeps "empty" with sigmoid(logit(0.8) / temp), the confidence stays the model's
    probs = torch.tensor([0.8] + [0.02] * 10)
    logits = probs.log().expand(1, 40_000, 11).contiguous()
    empty = torch.zeros(40_000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    pick, conf = _sample_occupancy_first(logits, logits.log_softmax(-1), empty, top_k=0, temp=1.0, generator=g,
                                         occupancy_temp=temp)
    expected = torch.sigmoid(torch.log(torch.tensor(4.0)) / temp).item()      # 16/17 at 0.5, 2/3 at 2
    assert abs((pick == 0).float().mean().item() - expected) < 0.01
    assert torch.allclose(conf[pick == 0], torch.tensor(0.8))


def test_coarse_guidance_overrides_the_schedule_on_the_coarse_level_only(nets):
    opts = SamplingOptions(cfg_scale=5.0, coarse_cfg_scale=3.0)
    assert level_guidance(opts, 2.0, has_coarse=True) == [3.0, 2.0]
    assert level_guidance(opts, 2.0, has_coarse=False) == [2.0]
    assert level_guidance(SamplingOptions(), 2.0, has_coarse=True) == [2.0, 2.0]
    # guidance on the coarse level alone (cfg_scale 1) still runs the guided forward and changes the draw
    plain = _run(nets, opts={"cfg_scale": 1.0})[-1].tokens
    guided = _run(nets, opts={"cfg_scale": 1.0, "coarse_cfg_scale": 8.0})[-1].tokens
    nc = nets[0].layout.num_coarse
    assert not torch.equal(plain[:, :nc], guided[:, :nc])
    with pytest.raises(ValueError, match="coarse_cfg_scale"):
        SamplingOptions(coarse_cfg_scale=-1.0).check()


@pytest.mark.parametrize("occupancy_first,policy", [(True, "spatial"), (False, "spatial"), (True, "confidence"),
                                                     (True, "random"), (False, "raster")])
def test_hierarchy_makes_fine_surface_follow_the_coarse_tokens(nets, occupancy_first, policy):
    model, tok = nets
    nc = model.layout.num_coarse
    empty = empty_tokens(tok)[nc:]
    parent = model.layout.fine_to_coarse()
    disagree = {}
    for hierarchy in (False, True):
        last = _run(nets, opts={"hierarchy": hierarchy, "occupancy_first": occupancy_first, "policy": policy,
                                "preview": False})[-1]
        gate = hierarchy_gate(tok, last.tokens, last.mask)
        assert torch.all(gate >= 0)
        # fine tokens committed at or after their coarse parent's step obey it; ones committed
        # earlier (possible under the random and raster orders) were drawn with the gate open
        after_parent = last.order[:, nc:] >= last.order[:, :nc][:, parent]
        surface = last.tokens[:, nc:] != empty
        disagree[hierarchy] = int((after_parent & (surface != (gate == 1))).sum())
        assert after_parent.sum() > 100
    assert disagree[True] == 0
    assert disagree[False] > 0      # the untrained model alone does not follow its coarse tokens


def test_hierarchy_gate_is_open_under_masked_coarse_tokens(nets):
    model, tok = nets
    nc = model.layout.num_coarse
    tokens = torch.zeros(1, model.layout.length, dtype=torch.long)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, 0] = True                                             # first coarse token still masked
    gate = hierarchy_gate(tok, tokens, mask)[0]
    parent = model.layout.fine_to_coarse()
    assert torch.all(gate[parent == 0] == -1) and torch.all(gate[parent != 0] >= 0)
    assert int((parent == 0).sum()) == 8


def test_refinement_redraws_a_share_of_the_surface_band_after_decoding(nets):
    model, tok = nets
    steps = _run(nets, opts={"refine_steps": 3, "refine_fraction": 0.2, "preview": False})
    assert len(steps) == 9 and all(s.num_steps == 9 for s in steps) and [s.index for s in steps] == list(range(1, 10))
    assert torch.all(torch.stack([s.committed for s in steps[:6]]).sum(0) == 1)    # decoding: each position once
    empty = empty_tokens(tok)
    for prev, s in zip(steps[5:], steps[6:]):
        band = surface_band(model, prev.tokens, empty)
        assert band.any() and not s.mask.any()
        assert not (s.committed & ~band).any()                                     # only the band, never coarse
        assert not s.committed[:, :64].any()
        want = (band.sum(1).float() * 0.2).ceil().long()
        assert torch.equal(s.committed.sum(1), want)
        assert torch.equal(s.tokens[~s.committed], prev.tokens[~s.committed])      # the rest stays
        assert torch.all(s.order[s.committed] == s.index)
        assert s.cfg_scale == SamplingOptions().cfg_scale and s.temperature == pytest.approx(0.5)
    assert not torch.equal(steps[5].tokens, steps[-1].tokens)                       # it does redraw something
    again = _run(nets, opts={"refine_steps": 3, "refine_fraction": 0.2, "preview": False})
    assert torch.equal(again[-1].tokens, steps[-1].tokens)
    own = _run(nets, opts={"refine_steps": 2, "refine_cfg_scale": 1.0, "refine_temperature": 0.3, "preview": False})
    assert [(s.cfg_scale, s.temperature) for s in own[6:]] == [(1.0, 0.3)] * 2
    assert torch.equal(own[5].tokens, steps[5].tokens)                               # decoding itself unchanged


def test_refinement_never_touches_visible_tokens(nets):
    g = torch.Generator().manual_seed(0)
    known = torch.randint(0, 32, (2, 576), generator=g)
    visible = torch.rand(2, 576, generator=g) < 0.4
    steps = _run(nets, known_tokens=known, known_mask=visible, opts={"refine_steps": 4, "refine_fraction": 0.5,
                                                                     "preview": False})
    assert any(s.committed.any() for s in steps[6:])
    for s in steps:
        assert torch.equal(s.tokens[visible], known[visible]) and not s.committed[visible].any()
    model, tok = nets
    for prev, s in zip(steps[5:], steps[6:]):                                      # the share is of the free band
        free_band = surface_band(model, prev.tokens, empty_tokens(tok)) & ~visible
        assert torch.equal(s.committed.sum(1), (free_band.sum(1).float() * 0.5).ceil().long())


def test_surface_band_is_occupied_patches_and_their_neighbours(nets):
    model, tok = nets
    empty = empty_tokens(tok)
    tokens = empty[None].clone()
    tokens[0, 64 + (3 * 8 + 4) * 8 + 5] = (int(empty[64]) + 1) % 64               # one surface patch at (3, 4, 5)
    band = surface_band(model, tokens, empty)[0]
    assert not band[:64].any() and int(band.sum()) == 27
    grid = band[64:].view(8, 8, 8)
    assert grid[2:5, 3:6, 4:7].all()
