"""Patch-local two-level VQ autoencoder: surface points -> 64 coarse + 512 fine tokens -> field.

The encoder sees what a (partial) point cloud gives: per voxel of the 32^3 grid, whether it holds
surface points and their mean offset and second moments (``geometry.surface_features``). The
moments locate the surface inside the voxel; a bare occupied/empty bit cannot say whether the
voxel centre is inside, and that ambiguity capped voxel IoU near 0.78 on this benchmark.

- Fine level: every 4^3 patch is encoded by an MLP that sees *only that patch* (as AutoSDF's
  P-VQ-VAE), then vector-quantised -> an 8^3 lattice of 512 tokens. A partial scan therefore maps
  to exactly the tokens of the patches it covers.
- Coarse level: every 8^3 block, max-pooled to 4^3 bits, is encoded by its own MLP and quantised
  -> a 4^3 lattice of 64 tokens that fix the global layout. A small per-block decoder reconstructs
  the pooled block, which gives the sampler a cheap 16^3 preview of the coarse shape.
- Decoder: the fine codes on their 8^3 lattice go through a small 3D U-Net (context across
  patches decides inside from outside), then each token emits its 4^3 voxels (sub-voxel shuffle)
  and a 3^3 convolution smooths the seams -> occupancy logits at 32^3. Targets are the soft
  occupancy ``clip(0.5 - sdf / voxel, 0, 1)``, so marching cubes at 0.5 lands within a voxel of
  the true surface and meshes are smooth, not stairs.

Codebooks are updated by exponential moving averages with dead-code restarts (VQ-VAE-2 / Jukebox
style) so no code stays unused.

Token sequence used by the transformer: ``[coarse (64) | fine (512)]``, see ``TokenLayout``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import geometry as G
from .weights import matching_state


@dataclass(frozen=True)
class TokenizerConfig:
    """VQ autoencoder hyper-parameters."""

    codebook_size: int = 512          # fine codes
    coarse_codebook_size: int = 256   # coarse codes
    code_dim: int = 32                # dimension of the quantised space
    hidden: int = 256                 # width of the per-patch encoder MLPs
    width: int = 32                   # decoder channels at 8^3 (doubled at 4^3)
    blocks: int = 2                   # residual blocks at each decoder scale
    fine_width: int = 0               # > 0: decode through a 16^3 stage of this many channels (0: 8^3 -> 32^3 directly)
    voxel_width: int = 0              # > 0 (with fine_width): a residual 32^3 refinement stage of this many channels
    token_embed: bool = False         # decoder also learns an embedding per fine code (added to its projected vector)
    coarse_pool: int = 2              # coarse input: 8^3 block max-pooled by this -> 4^3 bits
    levels: int = 2                   # 2 = coarse + fine, 1 = fine only (ablation)
    quantize: bool = True             # False: continuous patch latents, no fine codebook (ablation: what
                                      # quantisation costs; such a model reconstructs but has no tokens)
    ema_decay: float = 0.99           # codebook EMA
    commitment: float = 0.25          # weight of the commitment loss


PRESETS = {"base": TokenizerConfig(),
           "codes2048": TokenizerConfig(codebook_size=2048),      # finer sub-voxel detail per patch token
           "codes4096": TokenizerConfig(codebook_size=4096),      # what thin parts need (patch_codebook_ceiling.py)
           "fine16": TokenizerConfig(fine_width=32),              # decoder with a 16^3 stage (``train decoder``)
           "fine32": TokenizerConfig(fine_width=32, voxel_width=8),  # ... and a 32^3 refinement (``train decoder``)
           "fine32e": TokenizerConfig(fine_width=32, voxel_width=8, token_embed=True),  # ... and a table per code
           "wide": TokenizerConfig(width=64, fine_width=32, voxel_width=8, token_embed=True),  # twice the 8^3 width
           "codes8192": TokenizerConfig(codebook_size=8192, fine_width=32, voxel_width=8),  # 13 bits per patch
           "codes4096e": TokenizerConfig(codebook_size=4096, fine_width=32, voxel_width=8, token_embed=True),  # grown
           "continuous": TokenizerConfig(quantize=False, fine_width=32, voxel_width=8),    # bottleneck ceiling
           "tiny": TokenizerConfig(codebook_size=64, coarse_codebook_size=32, code_dim=8, hidden=32, width=8, blocks=1),
           "tiny256": TokenizerConfig(codebook_size=256, coarse_codebook_size=32, code_dim=8, hidden=32, width=8,
                                      blocks=1)}        # "tiny" grown (tests of --init)

COARSE_LATTICE = G.LATTICE // 2       # 4: coarse tokens per side
COARSE_BLOCK = G.GRID // COARSE_LATTICE  # 8: voxels per coarse token side


# --------------------------------------------------------------------------------------------
# Token layout
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenLayout:
    """Where each token of the sequence lives: its level, lattice and centroid."""

    levels: int

    @property
    def num_coarse(self) -> int:
        return COARSE_LATTICE**3 if self.levels == 2 else 0

    @property
    def length(self) -> int:
        return self.num_coarse + G.NUM_PATCHES

    def level_ids(self) -> torch.Tensor:
        """(L,) int64: 0 for coarse tokens, 1 for fine tokens."""
        return torch.cat([torch.zeros(self.num_coarse, dtype=torch.long),
                          torch.ones(G.NUM_PATCHES, dtype=torch.long)])

    def centroids(self) -> torch.Tensor:
        """(L, 3) float32 token centroids ``c_i`` in the canonical frame."""
        parts = [G.patch_centroids(COARSE_LATTICE)] if self.levels == 2 else []
        return torch.from_numpy(np.concatenate(parts + [G.patch_centroids(G.LATTICE)]))

    def lattices(self) -> list[int]:
        """Side of each level's lattice, in sequence order."""
        return ([COARSE_LATTICE] if self.levels == 2 else []) + [G.LATTICE]

    def fine_to_coarse(self) -> torch.Tensor:
        """(512,) int64: for each fine token, the sequence index of the coarse token above it."""
        ijk = torch.from_numpy(G.lattice_coords(G.LATTICE)) // 2
        return (ijk[:, 0] * COARSE_LATTICE + ijk[:, 1]) * COARSE_LATTICE + ijk[:, 2]


# --------------------------------------------------------------------------------------------
# Vector quantiser
# --------------------------------------------------------------------------------------------

class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with EMA codebook updates and dead-code restarts."""

    def __init__(self, num_codes: int, dim: int, decay: float):
        super().__init__()
        self.decay = decay
        self.register_buffer("codebook", torch.randn(num_codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", self.codebook.clone())

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z : (N, D) -> (N,) int64 index of the nearest code.

        Distances are taken once per distinct latent (most patches are empty space and share one)
        and without the ``|z|^2`` term, which does not change the argmin: ~10x faster at 8192 codes.
        """
        uniq, inverse = torch.unique(z, dim=0, return_inverse=True)
        d = torch.addmm(self.codebook.pow(2).sum(1)[None], uniq, self.codebook.t(), alpha=-2.0)
        return d.argmin(1)[inverse]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z : (N, D) -> quantised with straight-through gradient (N, D), indices (N,), commitment loss."""
        idx = self.indices(z)
        q = self.codebook[idx]
        if self.training:
            self._ema_update(z.detach(), idx)
        commit = F.mse_loss(z, q.detach())
        return z + (q - z).detach(), idx, commit

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        K = self.codebook.shape[0]
        onehot_sum = torch.bincount(idx, minlength=K).to(z.dtype)           # (K,) inputs per code
        embed = torch.zeros_like(self.codebook).index_add_(0, idx, z)       # (K, D) their sum
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(onehot_sum)
            torch.distributed.all_reduce(embed)
        self.cluster_size.mul_(self.decay).add_(onehot_sum, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(embed, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        size = (self.cluster_size + 1e-5) / (n + K * 1e-5) * n          # Laplace smoothing
        self.codebook.copy_(self.embed_sum / size[:, None])
        self.restart_dead(z, min_usage=1e-3 * len(z) / K)

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, min_usage: float, generator: torch.Generator | None = None) -> int:
        """Move codes whose EMA usage fell below ``min_usage`` onto random distinct inputs ``z``."""
        dead = torch.nonzero(self.cluster_size < min_usage).flatten()
        if len(dead) == 0:
            return 0
        uniq = torch.unique(z, dim=0)
        pick = uniq[torch.randint(len(uniq), (len(dead),), generator=generator, device="cpu").to(z.device)]
        pick = pick + 1e-3 * torch.randn(pick.shape, generator=generator).to(z.device)
        self.codebook[dead] = pick
        self.embed_sum[dead] = pick
        self.cluster_size[dead] = 1.0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buf in (self.codebook, self.embed_sum, self.cluster_size):   # keep replicas identical
                torch.distributed.broadcast(buf, 0)
        return len(dead)


# --------------------------------------------------------------------------------------------
# Encoder / decoder pieces
# --------------------------------------------------------------------------------------------

def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, cout))


class ResBlock3d(nn.Module):
    """GroupNorm-SiLU-Conv residual block."""

    def __init__(self, ch: int):
        super().__init__()
        groups = min(8, ch)
        self.net = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1),
                                 nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class FieldDecoder(nn.Module):
    """Fine codes on the 8^3 lattice -> occupancy logits at 32^3 (small U-Net + sub-voxel shuffle)."""

    def __init__(self, c: TokenizerConfig):
        super().__init__()
        w = c.width
        self.inp = nn.Conv3d(c.code_dim, w, 1)
        self.embed = nn.Embedding(c.codebook_size, w) if c.token_embed else None
        if self.embed is not None:                                 # starts at zero: warm starts keep their fields
            nn.init.zeros_(self.embed.weight)
        self.hi = nn.Sequential(*[ResBlock3d(w) for _ in range(c.blocks)])
        self.down = nn.Conv3d(w, 2 * w, 2, stride=2)
        self.lo = nn.Sequential(*[ResBlock3d(2 * w) for _ in range(2 * c.blocks)])
        self.up = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.out = nn.Sequential(ResBlock3d(w), nn.GroupNorm(min(8, w), w), nn.SiLU())
        self.fine_width = f = c.fine_width
        if f:                                                      # token -> 2^3 cells of 16^3 -> 2^3 voxels each
            self.shuffle = nn.Linear(w, 8 * f)
            self.mid = nn.Sequential(ResBlock3d(f), nn.GroupNorm(min(8, f), f), nn.SiLU())
            self.voxels = nn.Linear(f, 8)
            self.voxel_width = v = c.voxel_width
            if v:                                                  # per-voxel features, refined with 32^3 context
                self.refine_in = nn.Linear(f, 8 * v)
                self.refine = nn.Sequential(ResBlock3d(v), nn.GroupNorm(min(8, v), v), nn.SiLU(), nn.Conv3d(v, 1, 1))
                nn.init.zeros_(self.refine[-1].weight)             # starts as the decoder without it
                nn.init.zeros_(self.refine[-1].bias)
        else:
            self.shuffle = nn.Linear(w, G.PATCH**3)                # each token emits its 4^3 voxels
        self.smooth = nn.Conv3d(1, 1, 3, padding=1)                # (wider convs at 32^3 are slow on CPU)

    def forward(self, codes: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """codes : (B, 512, D) code vectors of the fine tokens (B, 512) -> logits (B, 32, 32, 32).

        ``tokens`` are needed by a decoder with ``token_embed``; a decoder without it ignores them.
        """
        B, L, D = codes.shape
        n = G.LATTICE
        x = codes.transpose(1, 2).reshape(B, D, n, n, n)           # (B, D, 8, 8, 8)
        h = self.inp(x)
        if self.embed is not None:
            assert tokens is not None, "this decoder learns an embedding per code: pass the tokens"
            h = h + self.embed(tokens).transpose(1, 2).reshape(B, -1, n, n, n)
        h = self.hi(h)
        h = self.out(h + self.up(self.lo(self.down(h))))            # (B, w, 8, 8, 8)
        t = self.shuffle(h.flatten(2).transpose(1, 2))              # (B, 512, 64) or (B, 512, 8 f)
        if self.fine_width:
            t = G.unpatchify(t.view(B, L, self.fine_width, 8).transpose(1, 2), 2)   # (B, f, 16, 16, 16)
            t = self.mid(t).flatten(2).transpose(1, 2)              # (B, 4096, f)
            grid = G.unpatchify(self.voxels(t), 2)                  # (B, 32, 32, 32)
            if self.voxel_width:
                r = self.refine_in(t).view(B, -1, self.voxel_width, 8).transpose(1, 2)   # (B, v, 4096, 8)
                grid = grid + self.refine(G.unpatchify(r, 2)).squeeze(1)     # (B, v, 32, 32, 32) -> residual
        else:
            grid = G.unpatchify(t)                                  # (B, 32, 32, 32)
        return self.smooth(grid.unsqueeze(1)).squeeze(1)


# --------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------

def coarse_blocks(surface: torch.Tensor, pool: int) -> torch.Tensor:
    """(B, 32, 32, 32) -> (B, 64, (8/pool)^3) max-pooled 8^3 blocks in coarse token order."""
    x = F.max_pool3d(surface.float().unsqueeze(1), pool).squeeze(1)   # (B, 16, 16, 16)
    return G.patchify(x, COARSE_BLOCK // pool)


def soft_occupancy(sdf: torch.Tensor) -> torch.Tensor:
    """Training target: a one-voxel linear ramp, ``> 0.5`` exactly where ``sdf < 0``."""
    return (0.5 - sdf / (2.0 / G.GRID)).clamp(0.0, 1.0)


class Tokenizer(nn.Module):
    """Two-level patch-local VQ autoencoder (see the module docstring)."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.layout = TokenLayout(config.levels)
        self.coarse_frozen = False                                 # see freeze_coarse
        c = config
        self.encoder = _mlp(G.SURFACE_CHANNELS * G.PATCH**3, c.hidden, c.code_dim)
        self.quantizer = VectorQuantizer(c.codebook_size, c.code_dim, c.ema_decay)
        self.decoder = FieldDecoder(c)
        if c.levels == 2:
            bits = (COARSE_BLOCK // c.coarse_pool) ** 3
            self.coarse_encoder = _mlp(bits, c.hidden, c.code_dim)
            self.coarse_quantizer = VectorQuantizer(c.coarse_codebook_size, c.code_dim, c.ema_decay)
            self.coarse_decoder = _mlp(c.code_dim, c.hidden, bits)

    def freeze_coarse(self) -> None:
        """Keep the coarse level (encoder, codebook, decoder) as it is through further training.

        Growing the fine codebook (``grow_codebook``) should not move the coarse tokens: the
        image encoder and any transformer predict them.
        """
        if self.config.levels == 2:
            for m in (self.coarse_encoder, self.coarse_quantizer, self.coarse_decoder):
                m.requires_grad_(False)
            self.coarse_frozen = True
            self.coarse_quantizer.eval()                           # no EMA updates, no restarts

    def train(self, mode: bool = True) -> "Tokenizer":
        super().train(mode)
        if self.coarse_frozen:
            self.coarse_quantizer.eval()
        return self

    # ---- encoding ---------------------------------------------------------------------------

    def _fine_latents(self, features: torch.Tensor) -> torch.Tensor:
        patches = G.patchify(features).transpose(1, 2).flatten(2)      # (B, 512, C * 64)
        return self.encoder(patches)                                    # (B, 512, D): patch-local

    def _coarse_latents(self, features: torch.Tensor) -> torch.Tensor:
        return self.coarse_encoder(coarse_blocks(features[:, 0], self.config.coarse_pool))   # (B, 64, D)

    @torch.no_grad()
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Surface features (B, 10, 32, 32, 32) -> token sequence (B, L) int64, ``[coarse | fine]``."""
        if not self.config.quantize:
            raise ValueError("this tokenizer has continuous latents (quantize=False, an ablation): it has no tokens")
        B = features.shape[0]
        fine = self.quantizer.indices(self._fine_latents(features).flatten(0, 1)).view(B, -1)
        if self.config.levels == 1:
            return fine
        coarse = self.coarse_quantizer.indices(self._coarse_latents(features).flatten(0, 1)).view(B, -1)
        return torch.cat([coarse, fine], dim=1)

    @torch.no_grad()
    def encode_points(self, points, batch_size: int = 64) -> torch.Tensor:
        """Surface points, (N, 3), (B, N, 3) or a list of (N_b, 3), canonical frame -> tokens (B, L)."""
        device = self.quantizer.codebook.device
        if not isinstance(points, (list, tuple)):
            points = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points)
            points = list(points[None] if points.ndim == 2 else points)
        return torch.cat([self.encode(G.surface_features(points[i:i + batch_size]).to(device))
                          for i in range(0, len(points), batch_size)])

    @torch.no_grad()
    def init_codebooks(self, features: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Place the codes on latents of real inputs (features (B, 10, 32^3)), as dead-code restarts do.

        The first code of each level is put on the latent of "no surface here", so empty space has
        its own token. Useful before training, and for untrained test weights whose tokens should
        vary with the input like trained ones do.
        """
        levels = [(self.quantizer, self._fine_latents)]
        if self.config.levels == 2:
            levels.append((self.coarse_quantizer, self._coarse_latents))
        for vq, latents in levels:
            vq.restart_dead(latents(features).flatten(0, 1), min_usage=float("inf"), generator=generator)
            vq.codebook[0] = latents(torch.zeros_like(features[:1]))[0, 0]

    # ---- decoding ---------------------------------------------------------------------------

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token sequence (B, L) -> occupancy logits (B, 32, 32, 32) float32 (uses the fine tokens)."""
        fine = tokens[:, self.layout.num_coarse:]
        return self.decoder(self.quantizer.codebook[fine], fine)

    @torch.no_grad()
    def reconstruct(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Surface features (B, 10, 32^3) -> occupancy logits (B, 32, 32, 32) and the tokens (B, L) they
        were decoded from; a ``quantize=False`` ablation decodes its continuous latents (tokens None)."""
        if self.config.quantize:
            tokens = self.encode(features)
            return self.decode(tokens), tokens
        return self.decoder(self._fine_latents(features)), None

    def decode_coarse(self, tokens: torch.Tensor) -> torch.Tensor:
        """Coarse tokens of a sequence (B, L) -> occupancy probabilities of the pooled grid (B, 16, 16, 16)."""
        assert self.config.levels == 2, "fine-only tokenizer has no coarse level"
        n = COARSE_BLOCK // self.config.coarse_pool
        logits = self.coarse_decoder(self.coarse_quantizer.codebook[tokens[:, :self.layout.num_coarse]])
        return G.unpatchify(torch.sigmoid(logits), n)

    # ---- training ---------------------------------------------------------------------------

    def forward(self, features: torch.Tensor, sdf: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses and diagnostics for a batch: features (B, 10, 32^3) float, sdf (B, 32^3) float."""
        B = features.shape[0]
        z = self._fine_latents(features)
        if self.config.quantize:
            q, idx, commit = self.quantizer(z.flatten(0, 1))
            q, idx = q.view_as(z), idx.view(B, -1)
        else:
            q, idx, commit = z, None, z.new_zeros(())
        logits = self.decoder(q, idx)
        target = soft_occupancy(sdf)
        recon = F.binary_cross_entropy_with_logits(logits, target)
        out = {"recon": recon, "commit": commit, "fine_idx": idx, "logits": logits}
        loss = recon + self.config.commitment * commit
        if self.config.levels == 2:
            zc = self._coarse_latents(features)
            qc, cidx, ccommit = self.coarse_quantizer(zc.flatten(0, 1))
            bits = coarse_blocks(features[:, 0], self.config.coarse_pool)
            crecon = F.binary_cross_entropy_with_logits(self.coarse_decoder(qc).view_as(bits), bits)
            out.update(coarse_recon=crecon, coarse_idx=cidx.view(B, -1))
            loss = loss + crecon + self.config.commitment * ccommit
        out["loss"] = loss
        return out


@torch.no_grad()
def grow_codebook(model: Tokenizer, old: Tokenizer, latents: torch.Tensor, generator: torch.Generator,
                  iterations: int = 10) -> torch.Tensor:
    """Start ``model`` (K fine codes) from a trained tokenizer ``old`` with fewer codes K0 (K % K0 == 0).

    Every layer whose shape did not change is copied. Each old code is split into K / K0 children
    by k-means over the ``latents`` (N, D) that it quantises (the old encoder's outputs on real
    inputs); a child with nothing to take sits on a random latent, as a dead-code restart would.
    A child starts with its parent's decoder embedding, so the grown tokenizer decodes at least
    as well as the old one from its first step, and training then teaches the encoder and decoder
    what the extra codes can tell apart. Returns (K,) int64: the parent of each new code, which
    is how a transformer trained on the old tokens can be carried over.
    """
    K, K0 = model.config.codebook_size, old.config.codebook_size
    assert K % K0 == 0 and K > K0, f"grow {K0} codes to a multiple, not {K}"
    model.load_state_dict(matching_state(model, old))
    r = K // K0
    parent_of = old.quantizer.indices(latents)
    codebook = old.quantizer.codebook.repeat_interleave(r, 0).clone()
    for k in range(K0):
        z = torch.unique(latents[parent_of == k], dim=0)
        if len(z) == 0:
            continue
        pick = torch.randperm(len(z), generator=generator)[:r]
        centres = z[pick]
        for _ in range(iterations if len(z) > r else 0):          # Lloyd's iterations within the cluster
            assign = torch.cdist(z, centres).argmin(1)
            for j in range(r):
                if (assign == j).any():
                    centres[j] = z[assign == j].mean(0)
        codebook[k * r:k * r + len(centres)] = centres
        if len(centres) < r:                                       # fewer distinct inputs than children
            spare = latents[torch.randint(len(latents), (r - len(centres),), generator=generator)]
            codebook[k * r + len(centres):(k + 1) * r] = spare
    vq = model.quantizer
    vq.codebook.copy_(codebook)
    vq.embed_sum.copy_(codebook)
    vq.cluster_size.fill_(1.0)
    if model.decoder.embed is not None and old.decoder.embed is not None:
        model.decoder.embed.weight.copy_(old.decoder.embed.weight.repeat_interleave(r, 0))
    return torch.arange(K0).repeat_interleave(r)


def iou(logits: torch.Tensor, occupancy: torch.Tensor) -> torch.Tensor:
    """Voxel IoU per shape of ``logits > 0`` against boolean occupancy: (B,)."""
    pred = logits > 0
    occ = occupancy.bool()
    inter = (pred & occ).flatten(1).sum(1).float()
    union = (pred | occ).flatten(1).sum(1).float().clamp(min=1)
    return inter / union


def usage_stats(indices: torch.Tensor, num_codes: int) -> dict[str, float]:
    """Fraction of codes used and codebook perplexity for a set of token indices."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": float((counts > 0).float().mean()), "perplexity": float(entropy.exp())}
