"""Progressive sampler invariants: each position committed once, visible tokens fixed, reproducible."""

from dataclasses import replace

import pytest
import torch

from smart3d.masking import SCHEDULES, asked_mask, masked_counts, training_mask
from smart3d.model import MaskedTransformer, ModelConfig
from smart3d.sampler import (POLICIES, SamplingOptions, _draw_level, _inverse_cdf,
                             empty_tokens, sample, sample_steps)
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


def test_bf16_sampling_commits_every_position_once(nets):
    steps = _run(nets, opts={"precision": "bf16", "preview": False})
    assert torch.all(torch.stack([s.committed for s in steps]).sum(0) == 1)
    assert steps[-1].tokens.min() >= 0


def test_logits_at_masked_positions_equal_the_full_logits(nets):
    model, _ = nets
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 32, (2, 576), generator=g)
    mask = torch.rand(2, 576, generator=g) < 0.3
    labels = torch.tensor([1, 2])
    full = model(tokens, mask, labels)
    at = model(tokens, mask, labels, at=mask)
    for sl, f, a in zip(model.level_slices(), full, at):
        assert torch.allclose(f[mask[:, sl]], a, atol=1e-6)


def test_inverse_cdf_draws_follow_the_weights():
    weights = torch.tensor([5.0, 0.0, 2.0, 3.0, 0.0]).expand(50_000, 5).contiguous()     # unnormalised
    pick = _inverse_cdf(weights, torch.rand(50_000, generator=torch.Generator().manual_seed(0)))
    freq = torch.bincount(pick, minlength=5).float() / len(pick)
    assert freq[1] == 0 and freq[4] == 0                       # zero-weight codes are never drawn
    assert torch.allclose(freq, torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0]), atol=0.01)


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
    steps = _run(nets, opts={"preview": True, "temperature": (0.8, 0.5)})
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
    logits = probs.log().expand(20_000, 11).contiguous()
    empty = torch.zeros(20_000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    first = SamplingOptions(top_k=10, occupancy_first=True)
    pick, conf, ent, _ = _draw_level(logits, None, 1.0, empty, first, 0.5, g)
    assert abs((pick == 0).float().mean().item() - 0.3) < 0.02
    assert torch.allclose(conf[pick == 0], torch.tensor(0.3)) and torch.allclose(conf[pick != 0], torch.tensor(0.7))
    assert torch.allclose(ent, -(probs * probs.log()).sum())
    plain, _, _, _ = _draw_level(logits, None, 1.0, empty, replace(first, occupancy_first=False), 0.5, g)
    assert (plain == 0).float().mean().item() > 0.5


def test_guided_draw_follows_the_guided_distribution_over_row_blocks():
    # more rows than one pass of DRAW_ROWS: uncond + 3 (cond - uncond) puts 0.8 on code 2 everywhere
    target = torch.tensor([0.05, 0.05, 0.8, 0.1])
    uncond = torch.randn(3000, 4, generator=torch.Generator().manual_seed(1))
    cond = uncond + (target.log() - uncond) / 3.0
    opts = SamplingOptions(occupancy_first=False)
    pick, conf, _, best = _draw_level(cond, uncond, 3.0, torch.zeros(3000, dtype=torch.long), opts, 1.0,
                                      torch.Generator().manual_seed(0))
    freq = torch.bincount(pick, minlength=4).float() / len(pick)
    assert torch.allclose(freq, target, atol=0.03)
    assert torch.allclose(conf, target[pick], atol=1e-5) and torch.all(best == 2)


def test_fine_patches_under_an_empty_coarse_token_come_out_empty(nets):
    # coarse plan given (half of it empty space), fine level drawn by an untrained model
    model, tok = nets
    empty = empty_tokens(tok)
    g = torch.Generator().manual_seed(0)
    known = torch.randint(0, 32, (2, 576), generator=g)
    coarse_empty = torch.rand(2, 64, generator=g) < 0.5
    known[:, :64] = torch.where(coarse_empty, empty[:64], known[:, :64])
    given = torch.zeros(2, 576, dtype=torch.bool)
    given[:, :64] = True
    final = _run(nets, known_tokens=known, known_mask=given, opts={"num_steps": 6, "preview": False})[-1].tokens
    under_empty = coarse_empty[:, model.layout.fine_to_coarse()]            # (2, 512)
    fine, fine_empty = final[:, 64:], empty[64:].expand(2, -1)
    assert torch.equal(fine[under_empty], fine_empty[under_empty])
    assert (fine[~under_empty] != fine_empty[~under_empty]).float().mean() > 0.5   # elsewhere: the model's draws


def test_asked_mask_leaves_out_what_the_sampler_fills_in(nets):
    # a masked fine patch under a visible empty coarse token is unmasked (the sampler fills it in);
    # one under a masked or occupied coarse token stays masked, and nothing new gets masked
    model, tok = nets
    empty = empty_tokens(tok)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (3, 576), generator=g)
    coarse_empty = torch.rand(3, 64, generator=g) < 0.5
    tokens[:, :64] = torch.where(coarse_empty, empty[:64], tokens[:, :64])
    mask = torch.rand(3, 576, generator=g) < 0.6
    asked = asked_mask(mask, tokens, empty, model.layout)
    parent = model.layout.fine_to_coarse()
    told_empty = (coarse_empty & ~mask[:, :64])[:, parent]                   # (3, 512)
    assert torch.equal(asked[:, :64], mask[:, :64])
    assert torch.equal(asked[:, 64:], mask[:, 64:] & ~told_empty)
    assert (mask[:, 64:] & told_empty).sum() > 50                            # the rule had work to do
