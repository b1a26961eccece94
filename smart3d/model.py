"""The SMART-3D transformer: a bidirectional masked-token model over the hierarchical token grid.

Input: a token sequence ``[coarse 4^3 | fine 8^3]`` where masked positions hold [MASK]. Every token
gets a token embedding (one table per level, each with its own [MASK] entry), a learned 3D position
embedding, a level embedding, and a condition vector shared by the sequence: the class embedding
(with a null class for classifier-free guidance) plus the *noise-level* embedding of the mask
ratio. In masked modelling the mask ratio is the time of an absorbing-state discrete diffusion:
this is our reading of the paper's "noise-aware embeddings". An optional condition prefix (image
tokens) is prepended. Blocks are pre-norm: spatial linear attention (``smart3d.attention``) and a
GELU MLP, each residual. Output: logits over each level's codebook at every position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .attention import SpatialAttention
from .classes import CLASSES
from .tokenizer import TokenLayout


@dataclass(frozen=True)
class ModelConfig:
    """Transformer hyper-parameters (presets below follow the paper's S/B/L/XL)."""

    depth: int = 8                    # transformer blocks
    dim: int = 256                    # embedding width
    heads: int = 4                    # attention heads
    mlp_ratio: float = 4.0            # MLP hidden = mlp_ratio * dim
    attention: str = "linear"         # "linear" (SMART-3D) or "softmax" (ablation)
    codebook_size: int = 512          # fine vocabulary (from the tokenizer)
    coarse_codebook_size: int = 256   # coarse vocabulary
    levels: int = 2                   # 2 = coarse + fine tokens, 1 = fine only
    num_classes: int = len(CLASSES)   # class labels; index num_classes is the null class
    cond_dim: int = 0                 # feature size of the condition prefix (0: no prefix)
    cond_tokens: int = 0              # number of prefix tokens
    local_conv: bool = False          # a depthwise 3x3x3 convolution over each token lattice in every block


PRESETS = {
    "tiny": ModelConfig(depth=2, dim=32, heads=2),
    "XS": ModelConfig(depth=4, dim=128, heads=4),
    "S": ModelConfig(depth=8, dim=256, heads=4),
    "B": ModelConfig(depth=12, dim=384, heads=6),
    "L": ModelConfig(depth=16, dim=512, heads=8),
    "XL": ModelConfig(depth=24, dim=768, heads=12),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled to [0, max_period]): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * max_period)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class LatticeConv(nn.Module):
    """Depthwise 3x3x3 convolution over each token lattice (coarse 4^3, fine 8^3) separately.

    Linear attention with a positive feature map spreads its weight smoothly; aligning a thin part
    across two neighbouring patches needs sharp, exact neighbour relations, which a local
    convolution gives at 27 * dim multiply-adds a token. Zero-initialised, so a block with it starts
    as the block without it (a trained model can be continued with it). Prefix tokens pass unchanged.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, lattices: list[int], prefix: int) -> torch.Tensor:
        B, L, D = x.shape
        outs, start = [torch.zeros_like(x[:, :prefix])], prefix
        # (B, n^3, D) viewed as a channels-last (B, D, n, n, n) grid: no copy. In fp32: on the AMX CPU a
        # depthwise 3D convolution is ~3.5x slower in bf16 (experiments/coherence/conv_speed.py).
        with torch.autocast(x.device.type, enabled=False):
            for n in lattices:
                grid = x[:, start:start + n**3].float().reshape(B, n, n, n, D).permute(0, 4, 1, 2, 3)
                outs.append(self.conv(grid).permute(0, 2, 3, 4, 1).reshape(B, n**3, D).to(x.dtype))
                start += n**3
        return torch.cat(outs, dim=1)


class Block(nn.Module):
    """Pre-norm transformer block: spatial attention (plus an optional local lattice convolution)
    then GELU MLP, each residual."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.dim)
        self.attn = SpatialAttention(c.dim, c.heads, kind=c.attention)
        self.local = LatticeConv(c.dim) if c.local_conv else None
        self.norm2 = nn.LayerNorm(c.dim)
        hidden = int(c.mlp_ratio * c.dim)
        self.mlp = nn.Sequential(nn.Linear(c.dim, hidden), nn.GELU(), nn.Linear(hidden, c.dim))

    def forward(self, x: torch.Tensor, lattices: list[int], prefix: int) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, lattices, prefix)
        if self.local is not None:
            x = x + self.local(h, lattices, prefix)
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class MaskedTransformer(nn.Module):
    """SMART-3D: predicts every level's token at every position from a partly masked sequence."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.layout = TokenLayout(c.levels)
        self.vocab = ([c.coarse_codebook_size] if c.levels == 2 else []) + [c.codebook_size]
        self.token_emb = nn.ModuleList([nn.Embedding(v + 1, c.dim) for v in self.vocab])   # +1: [MASK]
        self.pos_emb = nn.Parameter(torch.randn(self.layout.length, c.dim) * 0.02)
        self.level_emb = nn.Embedding(2, c.dim)
        self.class_emb = nn.Embedding(c.num_classes + 1, c.dim)                          # last: null
        self.noise_mlp = nn.Sequential(nn.Linear(c.dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.cond_proj = nn.Linear(c.cond_dim, c.dim) if c.cond_dim else None
        self.cond_pos = nn.Parameter(torch.randn(c.cond_tokens, c.dim) * 0.02) if c.cond_tokens else None
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.depth)])
        self.norm = nn.LayerNorm(c.dim)
        self.heads = nn.ModuleList([nn.Linear(c.dim, v) for v in self.vocab])
        self.register_buffer("level_ids", self.layout.level_ids(), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=0.02)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def level_slices(self) -> list[slice]:
        """Sequence slice of each level."""
        n = self.layout.num_coarse
        return ([slice(0, n)] if n else []) + [slice(n, self.layout.length)]

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                cond: torch.Tensor | None = None, at: torch.Tensor | None = None) -> list[torch.Tensor]:
        """tokens (B, L) int64, mask (B, L) bool (True = masked), labels (B,) int64 (null allowed),
        cond (B, T, cond_dim) or None -> logits per level [(B, L_level, V_level), ...].

        ``at`` (B, L) bool: only the logits at these positions, [(N_level, V_level), ...] in row-major
        order (the sampler needs them at masked positions only; the output heads are a large matmul)."""
        B, L = tokens.shape
        assert L == self.layout.length, f"sequence of {L} tokens, model expects {self.layout.length}"
        parts = []
        for sl, emb, V in zip(self.level_slices(), self.token_emb, self.vocab):
            t = torch.where(mask[:, sl], V, tokens[:, sl])                     # [MASK] = index V
            parts.append(emb(t))
        x = torch.cat(parts, dim=1) + self.pos_emb + self.level_emb(self.level_ids)   # (B, L, D)
        ratio = mask.float().mean(1)                                           # noise level in [0, 1]
        x = x + (self.class_emb(labels) + self.noise_mlp(timestep_embedding(ratio, self.config.dim)))[:, None]
        prefix = 0
        if self.cond_proj is not None and cond is not None:
            x = torch.cat([self.cond_proj(cond) + self.cond_pos, x], dim=1)
            prefix = cond.shape[1]
        lattices = self.layout.lattices()
        for block in self.blocks:
            x = block(x, lattices, prefix)
        x = x[:, prefix:]
        if at is None:
            return [head(self.norm(x[:, sl])) for sl, head in zip(self.level_slices(), self.heads)]
        return [head(self.norm(x[:, sl][at[:, sl]])) for sl, head in zip(self.level_slices(), self.heads)]
