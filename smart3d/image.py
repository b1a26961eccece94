"""Image conditioning (MAR-3D's input): image preparation, the image encoder, the condition it gives.

How an image conditions the transformer. A small CNN reads one prepared 64 x 64 view of a single
object and predicts (a) its class and (b) the 64 coarse tokens of the shape (the 4^3 grid of
8^3-voxel blocks, see ``smart3d.tokenizer``). The *same* SMART-3D transformer then decodes with the
predicted class as its condition and the coarse tokens the encoder is sure of committed up front,
so it draws the fine tokens (and the coarse tokens left open) around a plan read from the image:
MAR-3D's coarse-to-fine cascade with an image-conditioned first stage.

Why not the image-token prefix the model also supports (``ModelConfig.cond_dim``): a prefix means
training the transformer itself on images, 2-3 s per step of 16 shapes on this project's 2-core
CPU, whereas this encoder trains in minutes and leaves the class-conditioned model untouched.

What it understands: renders and clean photos of one object on a plain background, seen from the
front or side and from above the horizon, as the benchmark views are (``smart3d.views``).
``prepare_image`` finds the object by its difference to the border colour, crops it to a square
and scales it, so framing and size do not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .classes import CLASSES

IMAGE_SIZE = 64
MIN_OBJECT_FRACTION = 0.002     # less foreground than this: no object in the picture
BACKGROUND_TOLERANCE = 0.08     # max channel difference to the border colour still counted as background
MARGIN = 1.08                   # square crop side / longer side of the object's box


def prepare_image(image) -> torch.Tensor:
    """An image (PIL image, or (H, W, 3 or 4) uint8 array) -> (3, 64, 64) float in [0, 1].

    Transparent pixels are put on white; the background is the median colour of the border
    pixels; the object (every pixel that differs from it) is cropped to a square with a small
    margin, its background set to white, and resized. Raises ValueError when no object is found.
    """
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3 or 4) image array, got shape {image.shape}")
        image = Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)))
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    a = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    h, w = a.shape[:2]
    if min(h, w) < 8:
        raise ValueError(f"image too small ({w} x {h} pixels); give at least 8 x 8")
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = np.median(border, axis=0)
    fg = np.abs(a - background).max(-1) > BACKGROUND_TOLERANCE
    if fg.mean() < MIN_OBJECT_FRACTION:
        raise ValueError("no object found in the image: it looks blank (one plain colour)")
    ys, xs = np.nonzero(fg)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * MARGIN
    out = np.where(fg[..., None], a, 1.0)
    crop = Image.fromarray((out * 255).round().astype(np.uint8)).crop(
        (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
    # PIL fills outside the picture with black: repaint those margins white
    pad = np.asarray(Image.new("L", (w, h), 255).crop(
        (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))))
    crop = np.where(pad[..., None] > 0, np.asarray(crop), 255).astype(np.uint8)
    small = Image.fromarray(crop).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageEncoderConfig:
    """CNN image encoder: 64^2 -> 4^2 in four stride-2 stages, then class and coarse-token heads."""

    width: int = 16                   # channels of the first stage (doubled at each stage)
    hidden: int = 512                 # width of the shared vector after the convolutions
    position_dim: int = 64            # feature per coarse position before its token head
    num_classes: int = len(CLASSES)
    coarse_codebook_size: int = 256   # from the tokenizer
    coarse_positions: int = 64        # 4^3 coarse tokens
    dropout: float = 0.1


PRESETS = {
    "tiny": ImageEncoderConfig(width=4, hidden=32, position_dim=8),
    "base": ImageEncoderConfig(),
}


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class ImageEncoder(nn.Module):
    """Prepared images (B, 3, 64, 64) -> class logits (B, C) and coarse-token logits (B, 64, V)."""

    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        self.config = c = config
        w = c.width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.GELU())
        self.stages = nn.Sequential(_stage(w, 2 * w), _stage(2 * w, 4 * w), _stage(4 * w, 8 * w), _stage(8 * w, 8 * w))
        self.squeeze = nn.Conv2d(8 * w, 64, 1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, c.hidden), nn.GELU(), nn.Dropout(c.dropout))
        self.class_head = nn.Linear(c.hidden, c.num_classes)
        self.position_proj = nn.Linear(c.hidden, c.coarse_positions * c.position_dim)
        self.position_emb = nn.Parameter(torch.randn(c.coarse_positions, c.position_dim) * 0.02)
        self.token_head = nn.Sequential(nn.GELU(), nn.Linear(c.position_dim, c.coarse_codebook_size))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        x = self.stages(self.stem(images * 2.0 - 1.0))                    # (B, 8w, 4, 4)
        h = self.fc(self.squeeze(x))
        pos = self.position_proj(h).view(-1, c.coarse_positions, c.position_dim) + self.position_emb
        return self.class_head(h), self.token_head(pos)


@dataclass
class ImageCondition:
    """What an image says about a shape, for the sampler."""

    label: int                    # predicted (or given) class id
    class_probs: torch.Tensor     # (C,) predicted class probabilities
    coarse: torch.Tensor          # (64,) int64 most likely coarse token per position
    confidence: torch.Tensor      # (64,) its probability
    known: torch.Tensor           # (64,) bool: committed up front (confidence >= threshold; none at 1)
    log_probs: torch.Tensor       # (64, V) log-probabilities of every coarse code (a prior for the sampler)
    image: torch.Tensor           # (3, 64, 64) the prepared view it was read from


@torch.no_grad()
def image_condition(encoder: ImageEncoder, image: torch.Tensor, threshold: float,
                    label: int | None = None) -> ImageCondition:
    """Condition from one prepared image (3, 64, 64); ``label`` overrides the predicted class.

    Coarse tokens read with probability >= ``threshold`` are marked known (threshold 1: none, even
    those whose probability rounds to 1)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"confidence threshold must be in [0, 1], got {threshold}")
    device = next(encoder.parameters()).device
    class_logits, token_logits = encoder.eval()(image[None].to(device))
    probs = class_logits[0].float().softmax(-1).cpu()
    log_probs = token_logits[0].float().log_softmax(-1).cpu()
    conf, coarse = log_probs.exp().max(-1)
    known = conf >= threshold if threshold < 1.0 else torch.zeros_like(conf, dtype=torch.bool)
    return ImageCondition(int(probs.argmax()) if label is None else int(label), probs, coarse, conf, known, log_probs,
                          image.cpu())
