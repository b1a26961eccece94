"""Shared fixtures."""

import pytest
import torch

from smart3d.model import MaskedTransformer, ModelConfig
from smart3d.tokenizer import PRESETS, Tokenizer
from smart3d.weights import save_pretrained


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights folder with a random tiny tokenizer and transformer (seed 0): fast, untrained."""
    d = tmp_path_factory.mktemp("tiny_weights")
    torch.manual_seed(0)
    tc = PRESETS["tiny"]
    save_pretrained(Tokenizer(tc), tc, d / "tokenizer")
    mc = ModelConfig(depth=2, dim=32, heads=2, codebook_size=tc.codebook_size,
                     coarse_codebook_size=tc.coarse_codebook_size)
    save_pretrained(MaskedTransformer(mc), mc, d / "model")
    return d
