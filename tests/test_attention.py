"""Spatial linear attention: the lattice (linear-time) form equals the materialised L x L form."""

import pytest
import torch

from smart3d.attention import (SpatialAttention, materialized_spatial_linear_attention, softmax_spatial_attention,
                               spatial_kernel_matrix, spatial_linear_attention, token_centroids)


@pytest.mark.parametrize("lattices,prefix", [([2], 0), ([4], 0), ([8], 0), ([4, 8], 0), ([4, 8], 3), ([3, 5], 2)])
def test_lattice_form_equals_materialized_form(lattices, prefix):
    g = torch.Generator().manual_seed(sum(lattices) + prefix)
    L = prefix + sum(n**3 for n in lattices)
    q, k, v = (torch.randn(2, 3, L, 6, generator=g, dtype=torch.float64) for _ in range(3))
    gamma = torch.tensor([0.2, 3.0, 40.0], dtype=torch.float64)
    fast = spatial_linear_attention(q, k, v, gamma, lattices, prefix)
    ref = materialized_spatial_linear_attention(q, k, v, gamma, lattices, prefix)
    assert ((fast - ref).norm() / ref.norm()).item() < 1e-4


def test_kernel_matrix_is_the_gaussian_of_centroid_distance():
    gamma = torch.tensor([1.5], dtype=torch.float64)
    K = spatial_kernel_matrix(gamma, [2, 4])[0]
    c = token_centroids([2, 4], dtype=torch.float64)
    i, j = 3, 40
    assert torch.isclose(K[i, j], torch.exp(-1.5 * ((c[i] - c[j]) ** 2).sum()))
    assert torch.allclose(K.diagonal(), torch.ones(len(c), dtype=torch.float64))


def test_large_gamma_makes_attention_local():
    # with a huge gamma every token only sees itself: output = its own value
    L = 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, L, 4, generator=g, dtype=torch.float64) for _ in range(3))
    out = spatial_linear_attention(q, k, v, torch.tensor([1e6], dtype=torch.float64), [4])
    assert torch.allclose(out, v, atol=1e-8)


def test_module_implementations_agree_and_gamma_learns():
    torch.manual_seed(0)
    m = SpatialAttention(16, 2).double()
    x = torch.randn(2, 72, 16, dtype=torch.float64)
    outs = []
    for impl in ("lattice", "dense"):
        m.impl = impl
        outs.append(m(x, [2, 4]))
    assert torch.allclose(outs[0], outs[1], atol=1e-10)
    outs[0].sum().backward()
    assert m.gamma_raw.grad is not None and m.gamma_raw.grad.abs().sum() > 0
    assert torch.all(m.gamma > 0)


def test_softmax_variant_uses_the_additive_bias():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 8, 4, generator=g, dtype=torch.float64) for _ in range(3))
    gamma = torch.tensor([0.5, 5.0], dtype=torch.float64)
    out = softmax_spatial_attention(q, k, v, gamma, [2])
    logits = q @ k.transpose(-1, -2) / 2.0 - gamma[:, None, None] * torch.cdist(*(2 * [token_centroids([2]).double()])) ** 2
    assert torch.allclose(out, logits.softmax(-1) @ v, atol=1e-10)


def test_lattice_conv_sees_only_lattice_neighbours_and_starts_as_identity_block():
    from smart3d.model import LatticeConv, MaskedTransformer, ModelConfig

    conv = LatticeConv(4)
    x = torch.randn(2, 3 + 64 + 512, 4)
    assert torch.equal(conv(x, [4, 8], 3), torch.zeros_like(x))           # zero-initialised: no change at start
    torch.nn.init.normal_(conv.conv.weight)
    x = torch.zeros(1, 3 + 64 + 512, 4, requires_grad=True)
    out = conv(x, [4, 8], 3)
    # the output at fine patch (2, 3, 4) depends on its 3x3x3 neighbourhood in the fine lattice only
    target = 3 + 64 + (2 * 8 + 3) * 8 + 4
    out[0, target].sum().backward()
    hit = x.grad[0].abs().sum(-1).nonzero().flatten().tolist()
    fine = [(i - 67) // 64 * 100 + (i - 67) // 8 % 8 * 10 + (i - 67) % 8 for i in hit]
    assert all(i >= 67 for i in hit) and len(hit) == 27
    assert sorted(fine) == sorted(a * 100 + b * 10 + c for a in (1, 2, 3) for b in (2, 3, 4) for c in (3, 4, 5))
    # a model with the convolution, before training, computes what the same model without it does
    torch.manual_seed(0)
    base = MaskedTransformer(ModelConfig(depth=2, dim=32, heads=2))
    torch.manual_seed(0)
    local = MaskedTransformer(ModelConfig(depth=2, dim=32, heads=2, local_conv=True))
    local.load_state_dict(base.state_dict(), strict=False)
    tokens = torch.randint(0, 256, (2, 576))
    mask = torch.rand(2, 576) < 0.5
    labels = torch.tensor([0, 3])
    for a, b in zip(base(tokens, mask, labels), local(tokens, mask, labels)):
        torch.testing.assert_close(a, b)


def test_kept_kernel_follows_gamma_and_matches_a_fresh_one():
    torch.manual_seed(0)
    m = SpatialAttention(16, 2).double().eval()
    x = torch.randn(2, 72, 16, dtype=torch.float64)
    with torch.no_grad():
        before = m(x, [2, 4])
        m.gamma_raw.add_(1.0)                                  # as an optimiser step or a weight load would
        after = m(x, [2, 4])
    fresh = m(x, [2, 4])                                       # gradients on: computed anew
    assert torch.allclose(after, fresh, atol=1e-12) and not torch.allclose(before, after)
