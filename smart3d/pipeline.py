"""One object to get meshes: tokenizer + transformer (+ classifier) loaded from ``weights/``.

    from smart3d import load_pipeline
    pipe = load_pipeline()                                   # shipped weights, best device
    for step in pipe.sample_steps("chair", num=1, seed=0):   # stream the decoding
        print(step.index, int(step.committed.sum()))
    result = pipe.generate("chair", num=4, seed=0)[0]        # or just the results
    result.mesh.export("chair.glb"); result.points.shape     # (2048, 3) float32
    result = pipe.generate_from_image("chair.png")[0]        # image conditioning (smart3d.image)

Every way in (a class, an image, a partial scan, given tokens) becomes a ``Condition``; ``steps``
streams its decoding and ``run`` drains it and decodes the tokens to results. ``generate``,
``complete``, ``complete_tokens``, ``generate_from_image`` and ``sample_steps`` are thin wrappers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import trimesh

from . import geometry as G
from .classes import CLASSES
from .dataset import check_class
from .image import ImageCondition, ImageEncoder, ImageEncoderConfig, image_condition, prepare_image
from .model import MaskedTransformer, ModelConfig
from .repair import occupancy, repair_steps
from .sampler import SamplingOptions, Step, sample_steps
from .tokenizer import Tokenizer, TokenizerConfig
from .weights import WEIGHTS_DIR, best_device, load_pretrained, use_bf16


@dataclass
class Result:
    """A generated or completed shape."""

    tokens: torch.Tensor        # (L,) int64 final token sequence
    field: np.ndarray           # (32, 32, 32) float32 occupancy probability
    mesh: trimesh.Trimesh       # watertight, canonical frame, outward normals
    points: np.ndarray          # (2048, 3) float32 surface points
    label: int | None           # class id used (None: unconditional)
    seed: int


@dataclass(frozen=True)
class Condition:
    """What a decoding is conditioned on, per shape: a class and, optionally, given tokens."""

    labels: torch.Tensor                  # (B,) int64 class ids (the model's null class: unconditional)
    tokens: torch.Tensor | None = None    # (B, L) int64 given tokens (read only where ``known``)
    known: torch.Tensor | None = None     # (B, L) bool, True where the token is given and never changes


DEFAULT_IMAGE_CONFIDENCE = 0.0  # coarse tokens read with at least this probability are given (0: all; best on val)


class Pipeline:
    """Tokenizer + SMART-3D transformer on one device."""

    def __init__(self, tokenizer: Tokenizer, model: MaskedTransformer, device: torch.device,
                 image_encoder: ImageEncoder | None = None):
        self.tokenizer, self.model, self.device = tokenizer.eval(), model.eval(), device
        self.image_encoder = None if image_encoder is None else image_encoder.eval()
        self.layout = model.layout
        self._occupancy: tuple[bool, torch.Tensor, np.ndarray] | None = None    # the last decode (``occupancy``)

    # ---- inputs -----------------------------------------------------------------------------

    def label_of(self, class_name: str | None) -> int:
        """Class id for a class name; None -> the null (unconditional) class."""
        return self.model.null_class if class_name is None else CLASSES.index(check_class(class_name))

    @torch.no_grad()
    def tokens_of_points(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and visibility of a (partial) point cloud already in the canonical frame.

        points (N, 3) -> tokens (L,) int64 and visible (L,) bool. A fine token is visible where
        the patch holds points; a coarse token where all its patches are visible.
        """
        from .masking import _with_coarse

        tokens = self.tokenizer.encode_points(np.asarray(points, dtype=np.float32))[0].cpu()
        fine_vis = torch.from_numpy(G.visible_patch_mask(points))[None]
        return tokens, _with_coarse(fine_vis, self.layout)[0]

    def image_condition(self, image, class_name: str | None = None,
                        confidence: float = DEFAULT_IMAGE_CONFIDENCE) -> ImageCondition:
        """What the image encoder reads from an image (path, PIL image or (H, W, 3|4) uint8 array).

        ``class_name`` overrides the class it predicts; coarse tokens with at least ``confidence``
        probability are marked known. Raises ValueError for an unusable image.
        """
        if self.image_encoder is None:
            raise RuntimeError("no image encoder in this pipeline: weights/image_encoder.safetensors is missing "
                               "(see README: python -m smart3d train image)")
        if isinstance(image, (str, Path)):
            from PIL import Image, UnidentifiedImageError
            try:
                with Image.open(image) as im:
                    image = im.copy()
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"{Path(image).name}: not a readable image ({e.__class__.__name__})") from None
        label = None if class_name is None else self.label_of(class_name)
        return image_condition(self.image_encoder, prepare_image(image), confidence, label)

    def condition(self, class_name: str | None = None, num: int = 1, tokens: torch.Tensor | None = None,
                  known: torch.Tensor | None = None) -> Condition:
        """``num`` shapes of a class (None: unconditional), with the ``known`` (L,) bool positions of
        ``tokens`` (L,) int64 given (a partial scan), or nothing given."""
        _check_num(num)
        labels = torch.full((num,), self.label_of(class_name), dtype=torch.long)
        if known is None:
            return Condition(labels)
        return Condition(labels, tokens.reshape(1, -1).expand(num, -1), known.reshape(1, -1).expand(num, -1))

    def condition_from_images(self, images: Sequence[ImageCondition]) -> Condition:
        """One shape per image condition (see ``image_condition``): its class is the transformer's
        condition and its confident coarse tokens are given, nothing at the fine level."""
        _check_num(len(images))
        L, nc = self.layout.length, self.layout.num_coarse
        tokens = torch.zeros(len(images), L, dtype=torch.long)
        known = torch.zeros(len(images), L, dtype=torch.bool)
        for i, im in enumerate(images):
            tokens[i, :nc], known[i, :nc] = im.coarse, im.known
        return Condition(torch.tensor([im.label for im in images], dtype=torch.long), tokens, known)

    # ---- decoding ---------------------------------------------------------------------------

    def steps(self, condition: Condition, seed: int | Sequence[int] = 0,
              options: SamplingOptions = SamplingOptions()) -> Iterator[Step]:
        """Stream the decoding of a condition, one ``Step`` per decoding step (``smart3d.sampler.sample_steps``),
        then those of its repair rounds (``smart3d.repair``). ``seed``: one for the batch, or one per shape
        (each shape then comes out as it would decoded alone with its seed: requests batched together)."""
        if _one_seed(seed):
            g = torch.Generator().manual_seed(int(seed))
        else:
            if len(seed) != len(condition.labels):
                raise ValueError(f"{len(seed)} seeds for {len(condition.labels)} shapes")
            g = [torch.Generator().manual_seed(int(s)) for s in seed]
        last = None
        for last in sample_steps(self.model, self.tokenizer, condition.labels, options, g, condition.tokens,
                                 condition.known):
            yield last
        if options.repair_rounds:
            yield from repair_steps(self.model, self.tokenizer, last, condition.labels, options, g, condition.known,
                                    lambda tokens: self.occupancy(tokens, options.precision))

    def run(self, condition: Condition, seed: int | Sequence[int] = 0,
            options: SamplingOptions = SamplingOptions()) -> list[Result]:
        """Decode a condition to the end (no previews) and turn the final tokens into results."""
        last = None
        for last in self.steps(condition, seed, replace(options, preview=False)):
            pass
        return self.decode(last.tokens, seed, condition.labels, options.min_part, options.precision)

    @torch.no_grad()
    def occupancy(self, tokens: torch.Tensor, precision: str = "fp32") -> np.ndarray:
        """Occupancy probabilities (B, 32, 32, 32) float32 of token sequences (B, L), the decoder in
        ``precision`` (as ``SamplingOptions.precision``). The last answer is kept: the repair rounds'
        final check and ``decode`` of the same tokens share one decode."""
        bf16 = use_bf16(precision, self.device)
        memo = self._occupancy
        if memo is not None and memo[0] == bf16 and memo[1].shape == tokens.shape and torch.equal(memo[1], tokens.cpu()):
            return memo[2]
        probs = occupancy(self.tokenizer, tokens, bf16)
        self._occupancy = (bf16, tokens.cpu().clone(), probs)
        return probs

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, seed: int | Sequence[int] = 0, labels: torch.Tensor | None = None,
               min_part: float = SamplingOptions.min_part, precision: str = "fp32") -> list[Result]:
        """Token sequences (B, L) -> results with field, mesh and points; ``labels`` (B,) the classes
        they were drawn for (the null class and None: unconditional); ``precision`` of the decoder;
        ``seed``: shape i's surface points are drawn with ``seed + i``, or ``seed[i]`` when one per shape.

        Connected parts of the solid smaller than ``min_part`` of the largest one are dropped
        (``geometry.drop_small_parts``; 0 keeps everything).
        """
        probs = self.occupancy(tokens, precision)
        out = []
        for i in range(len(tokens)):
            field = G.drop_small_parts(probs[i], 0.5, min_part)
            mesh = G.mesh_from_field(field, 0.5)
            label = None if labels is None or int(labels[i]) == self.model.null_class else int(labels[i])
            own = int(seed) + i if _one_seed(seed) else int(seed[i])
            out.append(Result(tokens[i].cpu(), field, mesh, G.sample_surface(mesh, 2048, seed=own), label,
                              int(seed) if _one_seed(seed) else own))
        return out

    # ---- convenience ------------------------------------------------------------------------

    def sample_steps(self, class_name: str | None = None, num: int = 1, seed: int = 0,
                     options: SamplingOptions = SamplingOptions(), known_tokens: torch.Tensor | None = None,
                     known_mask: torch.Tensor | None = None) -> Iterator[Step]:
        """Stream the decoding of ``num`` shapes of a class, with ``known_mask`` positions of ``known_tokens`` given."""
        return self.steps(self.condition(class_name, num, known_tokens, known_mask), seed, options)

    def generate(self, class_name: str | None = None, num: int = 1, seed: int = 0,
                 options: SamplingOptions = SamplingOptions()) -> list[Result]:
        """Generate ``num`` shapes of a class (None: unconditional)."""
        return self.run(self.condition(class_name, num), seed, options)

    def complete(self, points: np.ndarray, class_name: str | None = None, seed: int = 0,
                 options: SamplingOptions = SamplingOptions(), num: int = 1,
                 visible: torch.Tensor | None = None) -> list[Result]:
        """Complete a partial point cloud given in the canonical frame (see ``smart3d.io``).

        By default a patch counts as observed where it holds points; ``visible`` (L,) bool
        overrides that (e.g. a plane cut, where the empty space on the kept side is known too).
        """
        tokens, seen = self.tokens_of_points(points)
        return self.complete_tokens(tokens, seen if visible is None else visible, class_name, seed, options, num)

    def complete_tokens(self, tokens: torch.Tensor, visible: torch.Tensor, class_name: str | None = None,
                        seed: int = 0, options: SamplingOptions = SamplingOptions(), num: int = 1) -> list[Result]:
        """Complete a token sequence (L,) whose ``visible`` (L,) positions are given."""
        return self.run(self.condition(class_name, num, tokens, visible), seed, options)

    def generate_from_image(self, image, num: int = 1, seed: int = 0, options: SamplingOptions = SamplingOptions(),
                            class_name: str | None = None, confidence: float = DEFAULT_IMAGE_CONFIDENCE) -> list[Result]:
        """Generate ``num`` shapes that look like the object in ``image``."""
        return self.run(self.condition_from_images([self.image_condition(image, class_name, confidence)] * num),
                        seed, options)


def _one_seed(seed) -> bool:
    """Whether ``seed`` is one seed for a batch (rather than one per shape)."""
    return isinstance(seed, (int, np.integer))


def _check_num(num: int) -> None:
    if not 1 <= num <= 64:
        raise ValueError(f"num must be between 1 and 64, got {num}")


def load_pipeline(weights_dir: str | Path = WEIGHTS_DIR, device: str | torch.device | None = None) -> Pipeline:
    """The shipped tokenizer and transformer (and image encoder, where its weights are) from
    ``weights_dir`` on the best (or given) device."""
    device = torch.device(device) if device is not None else best_device()
    weights_dir = Path(weights_dir)
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, weights_dir / "tokenizer", device)
    model = load_pretrained(MaskedTransformer, ModelConfig, weights_dir / "model", device)
    image_encoder = None
    if (weights_dir / "image_encoder.safetensors").exists():
        image_encoder = load_pretrained(ImageEncoder, ImageEncoderConfig, weights_dir / "image_encoder", device)
    return Pipeline(tokenizer, model, device, image_encoder)
