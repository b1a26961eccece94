"""Random tiny weights in the shipped layout (``tokenizer.*``, ``model.*`` and ``image_encoder.*``), for
tests, benchmarks and trying the app before trained weights exist. They decode noise, not shapes.

With ``solid_decoder=True`` the tokenizer's last layer is pinned to a constant positive logit, so
every token sequence decodes to the same solid cube: meshes are then deterministic and watertight,
which is what plumbing tests of downloads need (random decoders give noisy fields whose meshes
are occasionally not watertight). The transformer and the encoder stay random.
"""

from __future__ import annotations

from pathlib import Path

import torch

from smart3d import geometry as G
from smart3d.image import PRESETS as IMAGE_PRESETS
from smart3d.image import ImageEncoder
from smart3d.model import MaskedTransformer, ModelConfig
from smart3d.tokenizer import PRESETS as TOKENIZER_PRESETS
from smart3d.tokenizer import Tokenizer
from smart3d.weights import save_pretrained


def write_tiny_weights(folder: str | Path, seed: int = 0, solid_decoder: bool = True,
                       image_encoder: bool = True) -> Path:
    """Write ``folder/tokenizer.*`` and ``folder/model.*`` (and ``folder/image_encoder.*``)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    tok_cfg = TOKENIZER_PRESETS["tiny"]
    tokenizer = Tokenizer(tok_cfg)
    sphere = torch.randn(20_000, 3, generator=torch.Generator().manual_seed(seed))
    tokenizer.init_codebooks(G.surface_features(0.6 * sphere / sphere.norm(dim=1, keepdim=True)),
                             torch.Generator().manual_seed(seed))       # tokens vary with the input
    if solid_decoder:
        with torch.no_grad():
            tokenizer.decoder.smooth.weight.zero_()
            tokenizer.decoder.smooth.bias.fill_(4.0)
    save_pretrained(tokenizer, tok_cfg, folder / "tokenizer", note="random tiny weights (app tests)")
    cfg = ModelConfig(depth=2, dim=32, heads=2, codebook_size=tok_cfg.codebook_size,
                      coarse_codebook_size=tok_cfg.coarse_codebook_size)
    save_pretrained(MaskedTransformer(cfg), cfg, folder / "model", note="random tiny weights (app tests)")
    if image_encoder:
        img_cfg = IMAGE_PRESETS["tiny"].__class__(**{**IMAGE_PRESETS["tiny"].__dict__,
                                                      "coarse_codebook_size": tok_cfg.coarse_codebook_size})
        save_pretrained(ImageEncoder(img_cfg).eval(), img_cfg, folder / "image_encoder",
                        note="random tiny weights (app tests)")
    return folder
