"""Spatial linear attention (SMART-3D) and the softmax reference.

The paper writes ``Attn = phi(Q)(phi(K)^T V) + B_spatial`` with ``B(i, j) = -gamma ||c_i - c_j||^2``,
which adds an L x L matrix to an L x d output. We read it as DESIGN.md does: the attention weight
between tokens i and j is the linear-attention kernel times the Gaussian of their centroid distance,

    w_ij = phi(q_i) . phi(k_j) * exp(-gamma_h ||c_i - c_j||^2),     out_i = sum_j w_ij v_j / sum_j w_ij,

with ``phi = elu + 1`` and ``gamma_h`` learnable per head (the exponent of the paper's additive
logit bias). Tokens live on cubic lattices (one per hierarchy level), where the Gaussian factorises
per axis: ``exp(-g|c_i - c_j|^2) = prod_a exp(-g (c_ia - c_ja)^2)``. So instead of materialising
L x L weights we build the per-position states ``phi(k_j) (x) [v_j, 1]`` on each key lattice and blur
them with three small per-axis matrices (n_q x n_k) onto each query lattice, then contract with
``phi(q_i)``. Cost: O(L * n * d^2) with n = L^(1/3) tokens per axis, against O(L^2 d) for softmax.
Tokens with no position (a condition prefix) see and are seen by everything with weight 1,
through one global state, as in plain linear attention.

``materialized_spatial_linear_attention`` computes the same thing the O(L^2) way; tests compare.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0."""
    return F.elu(x) + 1.0


def lattice_axis(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Centres of n cells spanning [-1, 1]: (n,)."""
    return -1.0 + (torch.arange(n, dtype=dtype, device=device) + 0.5) * (2.0 / n)


def axis_kernel(gamma: torch.Tensor, n_q: int, n_k: int) -> torch.Tensor:
    """exp(-gamma (x_q - x_k)^2) for each head: (H, n_q, n_k)."""
    xq = lattice_axis(n_q, gamma.dtype, gamma.device)
    xk = lattice_axis(n_k, gamma.dtype, gamma.device)
    return torch.exp(-gamma[:, None, None] * (xq[:, None] - xk[None, :]) ** 2)


def spatial_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor,
                             lattices: list[int], prefix: int = 0, eps: float = 1e-6) -> torch.Tensor:
    """Linear-time spatial linear attention.

    q, k, v : (B, H, L, d) with L = prefix + sum(n^3 for n in lattices); the first ``prefix`` tokens
    have no position, then one block per lattice in C order. gamma : (H,) > 0. Returns (B, H, L, d).
    """
    B, H, L, d = q.shape
    assert L == prefix + sum(n**3 for n in lattices), f"L={L} does not match prefix {prefix} + lattices {lattices}"
    fq, fk = feature_map(q), feature_map(k)
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)            # (B, H, L, d+1): last column -> normaliser
    bounds = [0, prefix]
    for n in lattices:
        bounds.append(bounds[-1] + n**3)
    # global state of the prefix keys (kernel weight 1 to every query)
    state_prefix = torch.einsum("bhld,bhle->bhde", fk[:, :, :prefix], v1[:, :, :prefix])   # (B, H, d, d+1)
    outs = []
    if prefix:
        # prefix queries: weight 1 to every key
        state_all = torch.einsum("bhld,bhle->bhde", fk, v1)
        outs.append(torch.einsum("bhld,bhde->bhle", fq[:, :, :prefix], state_all))
    for a, n_q in enumerate(lattices):
        q_a = fq[:, :, bounds[a + 1]:bounds[a + 2]]                      # (B, H, n_q^3, d)
        acc = state_prefix[:, :, None]                                   # (B, H, 1, d, d+1)
        for b, n_k in enumerate(lattices):
            lo, hi = bounds[b + 1], bounds[b + 2]
            E = d * (d + 1)
            s = (fk[:, :, lo:hi, :, None] * v1[:, :, lo:hi, None, :]).reshape(B, H, n_k, n_k, n_k, E)
            A = axis_kernel(gamma, n_q, n_k)                             # (H, n_q, n_k)
            # blur the per-position states along z, y, x as broadcast matmuls (no transposes):
            s = torch.matmul(A[None, :, None, None], s.reshape(B, H, n_k, n_k, n_k, E))   # z: (B,H,nk,nk,nq,E)
            s = torch.matmul(A[None, :, None], s.reshape(B, H, n_k, n_k, n_q * E))         # y: (B,H,nk,nq,nq*E)
            s = torch.matmul(A[None], s.reshape(B, H, n_k, n_q * n_q * E))                 # x: (B,H,nq,nq^2*E)
            acc = acc + s.reshape(B, H, n_q**3, d, d + 1)
        outs.append(torch.matmul(q_a[..., None, :], acc).squeeze(-2))     # (B, H, n_q^3, d+1)
    out = torch.cat(outs, dim=2)                                         # (B, H, L, d+1)
    return out[..., :d] / (out[..., d:] + eps)


def token_centroids(lattices: list[int], prefix: int = 0, dtype=torch.float32, device=None) -> torch.Tensor:
    """Centroids of the lattice tokens in sequence order: (L - prefix, 3)."""
    parts = []
    for n in lattices:
        t = lattice_axis(n, dtype, device)
        parts.append(torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3))
    return torch.cat(parts)


@functools.lru_cache(maxsize=16)
def _squared_distances(lattices: tuple[int, ...]) -> torch.Tensor:
    """||c_i - c_j||^2 between all lattice tokens, float64, computed once per layout."""
    c = token_centroids(list(lattices), dtype=torch.float64)
    return ((c[:, None] - c[None]) ** 2).sum(-1)


def spatial_kernel_matrix(gamma: torch.Tensor, lattices: list[int], prefix: int = 0) -> torch.Tensor:
    """Materialised exp(-gamma ||c_i - c_j||^2) with prefix rows/columns of ones: (H, L, L)."""
    d2 = _squared_distances(tuple(lattices)).to(gamma.device, gamma.dtype)
    K = torch.exp(-gamma[:, None, None] * d2[None])
    if prefix:
        K = F.pad(K, (prefix, 0, prefix, 0), value=1.0)
    return K


# sequences per pass of the materialised form: its (H, L, L) weights of one sequence at L = 576 are
# 2.7 MB in bf16, the size of this CPU's L2; a batch of 32 at once ran 2.7x slower per sequence
# (weights out to memory and back; measured in docs/EXPERIMENTS.md, session 18 speed section)
DENSE_MAX_WEIGHTS = 1 << 21


def materialized_spatial_linear_attention(q, k, v, gamma, lattices, prefix: int = 0, eps: float = 1e-6,
                                         kernel: torch.Tensor | None = None):
    """The same attention through explicit (B, H, L, L) weights: the O(L^2) reference, a few
    sequences at a time (DENSE_MAX_WEIGHTS weights a pass).

    ``kernel``: ``spatial_kernel_matrix(gamma, lattices, prefix)`` when the caller keeps it."""
    K = spatial_kernel_matrix(gamma, lattices, prefix) if kernel is None else kernel
    fq, fk = feature_map(q), feature_map(k)
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)            # (B, H, L, d+1): last column -> sum_j w_ij
    B, H, L, d = q.shape
    step = max(1, DENSE_MAX_WEIGHTS // (H * L * L))
    out = torch.cat([((fq[i:i + step] @ fk[i:i + step].transpose(-1, -2)) * K) @ v1[i:i + step]
                     for i in range(0, B, step)])                        # (B, H, L, d+1)
    return out[..., :d] / (out[..., d:] + eps)


def softmax_spatial_attention(q, k, v, gamma, lattices, prefix: int = 0):
    """Softmax attention with the additive bias -gamma ||c_i - c_j||^2 (the ablation block)."""
    bias = torch.log(spatial_kernel_matrix(gamma, lattices, prefix).clamp_min(1e-30))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype)[None])


# Below this many tokens the materialised O(L^2) form of the *same* spatial linear attention is
# faster on CPUs than the lattice form (whose per-position d x d states cost memory traffic); above
# it the lattice form wins and keeps memory linear. ``python -m smart3d bench attention`` measures both.
DENSE_MAX_TOKENS = 1024


class SpatialAttention(nn.Module):
    """Multi-head attention over lattice tokens, linear (default) or softmax, with learnable gamma per head.

    ``impl`` picks how spatial linear attention is computed: "lattice" (linear time), "dense"
    (materialised weights) or "auto" (dense up to DENSE_MAX_TOKENS tokens). All give the same output.
    """

    def __init__(self, dim: int, heads: int, kind: str = "linear", impl: str = "auto",
                 gamma_init: tuple[float, float] = (0.5, 16.0)):
        super().__init__()
        assert impl in ("auto", "lattice", "dense"), f"unknown attention implementation {impl!r}"
        self.impl = impl
        assert dim % heads == 0, f"dim {dim} not divisible by heads {heads}"
        assert kind in ("linear", "softmax"), f"unknown attention kind {kind!r}"
        self.heads, self.kind = heads, kind
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # heads start at different spatial scales (geometric spread of gamma); softplus keeps gamma > 0
        g = torch.exp(torch.linspace(math.log(gamma_init[0]), math.log(gamma_init[1]), heads))
        self.gamma_raw = nn.Parameter(torch.log(torch.expm1(g)))
        self._kernel: tuple[tuple, torch.Tensor] | None = None       # (key, spatial kernel), see ``kernel``

    @property
    def gamma(self) -> torch.Tensor:
        return F.softplus(self.gamma_raw)

    def kernel(self, dtype: torch.dtype, lattices: list[int], prefix: int) -> torch.Tensor:
        """``spatial_kernel_matrix`` of this layer's gamma: (H, L, L). Kept between calls while gradients
        are off (sampling asks for it every step with the same gamma; recomputing it took a third of
        the layer's attention time); recomputed when gamma changes (its version counter moves). Also
        kept in training while gamma is frozen (``train model --freeze-gamma``)."""
        if torch.is_grad_enabled() and self.gamma_raw.requires_grad:
            return spatial_kernel_matrix(self.gamma.to(dtype), lattices, prefix)
        key = (self.gamma_raw.data_ptr(), self.gamma_raw._version, dtype, tuple(lattices), prefix)
        if self._kernel is None or self._kernel[0] != key:
            self._kernel = key, spatial_kernel_matrix(self.gamma.to(dtype), lattices, prefix)
        return self._kernel[1]

    def forward(self, x: torch.Tensor, lattices: list[int], prefix: int = 0) -> torch.Tensor:
        B, L, D = x.shape
        H = self.heads
        q, k, v = self.qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)   # 3 x (B, H, L, d)
        gamma = self.gamma.to(q.dtype)
        if self.kind == "softmax":
            out = softmax_spatial_attention(q, k, v, gamma, lattices, prefix)             # (B, H, L, d)
        elif self.impl == "lattice" or (self.impl == "auto" and L > DENSE_MAX_TOKENS):
            out = spatial_linear_attention(q, k, v, gamma, lattices, prefix)
        else:                                    # same weights, materialised: faster for short sequences
            out = materialized_spatial_linear_attention(q, k, v, gamma, lattices, prefix,
                                                        kernel=self.kernel(q.dtype, lattices, prefix))
        return self.proj(out.transpose(1, 2).reshape(B, L, D))
