"""Image conditioning: image preparation, rendered views, the encoder, the pipeline and CLI paths."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.tiny_weights import write_tiny_weights
from smart3d import geometry as G
from smart3d.classes import CLASSES
from smart3d.image import IMAGE_SIZE, PRESETS, ImageEncoder, image_condition, prepare_image
from smart3d.pipeline import load_pipeline
from smart3d.sampler import SamplingOptions
from smart3d.train.image import image_batch

ROOT = Path(__file__).resolve().parent.parent


def _disc(canvas: int, cx: float, cy: float, r: float, color=(200, 40, 40), background=(255, 255, 255)) -> np.ndarray:
    """An image with one filled disc plus a square notch on its right (so left/right differ)."""
    y, x = np.mgrid[:canvas, :canvas]
    img = np.empty((canvas, canvas, 3), dtype=np.uint8)
    img[:] = background
    inside = ((x - cx) ** 2 + (y - cy) ** 2 <= r**2) | ((abs(x - cx - r) < r / 3) & (abs(y - cy) < r / 3))
    img[inside] = color
    return img


def test_prepare_image_is_invariant_to_framing_and_background():
    a = prepare_image(_disc(200, 60, 70, 30))
    b = prepare_image(_disc(400, 250, 180, 90))                      # 3x larger, elsewhere on a larger canvas
    c = prepare_image(_disc(300, 150, 150, 60, background=(40, 90, 160)))   # on a blue background
    assert a.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float((a - b).abs().mean()) < 0.03 and float((a - c).abs().mean()) < 0.03
    assert float(a[:, 0].mean()) > 0.99 and float(a[:, :, 0].mean()) > 0.99      # white margins
    # the object fills the square along its longer side (up to the margin)
    fg = (a < 0.9).any(0)
    cols = np.flatnonzero(fg.any(0).numpy())
    assert cols[-1] - cols[0] + 1 >= IMAGE_SIZE / 1.08 - 3


def test_prepare_image_reads_alpha_and_rejects_blank_images():
    rgba = np.zeros((120, 120, 4), dtype=np.uint8)                   # transparent black ...
    rgba[30:90, 40:80] = (20, 160, 20, 255)                           # ... around an opaque green box
    x = prepare_image(Image.fromarray(rgba, "RGBA"))
    assert float(x[:, 0, 0].min()) > 0.99                             # transparency became white, not black
    assert float(x[1, 32, 32]) > 0.5 and float(x[0, 32, 32]) < 0.2
    for blank in (np.full((64, 64, 3), 255, np.uint8), np.full((64, 64, 3), 30, np.uint8)):
        with pytest.raises(ValueError, match="no object found"):
            prepare_image(blank)
    with pytest.raises(ValueError, match="image array"):
        prepare_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        prepare_image(np.zeros((4, 4, 3), np.uint8))


def test_encoder_outputs_and_condition_threshold():
    torch.manual_seed(0)
    enc = ImageEncoder(PRESETS["tiny"]).eval()
    cls, tok = enc(torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert cls.shape == (2, 12) and tok.shape == (2, 64, PRESETS["tiny"].coarse_codebook_size)
    x = prepare_image(_disc(100, 50, 50, 20))
    everything = image_condition(enc, x, 0.0)
    nothing = image_condition(enc, x, 1.0)
    assert bool(everything.known.all()) and not bool(nothing.known.any())
    assert torch.equal(everything.coarse, nothing.coarse)
    assert abs(float(everything.class_probs.sum()) - 1) < 1e-5
    assert image_condition(enc, x, 0.5, label=3).label == 3
    with pytest.raises(ValueError, match="threshold"):
        image_condition(enc, x, 1.5)


def test_flipped_views_take_the_mirrored_shapes_tokens():
    images = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 2, 4, 4, 3)
    tokens = torch.arange(4)[:, None].expand(4, 600).clone()          # rows 0-1: shapes, rows 2-3: their mirrors
    labels = torch.tensor([5, 7])
    x, t, y = image_batch(images, tokens, labels, torch.tensor([1, 1]), torch.tensor([0, 1]),
                          torch.tensor([False, True]))
    assert torch.equal(t[:, 0], torch.tensor([1, 3])) and t.shape == (2, 64) and torch.equal(y, torch.tensor([7, 7]))
    assert torch.equal(x[0], torch.from_numpy(images[1, 0]).float().div(255).permute(2, 0, 1))
    assert torch.equal(x[1], torch.from_numpy(images[1, 1]).float().div(255).permute(2, 0, 1).flip(-1))


def test_rendered_views_show_the_shape_framed_like_uploads():
    from smart3d.dataset import make_sample
    from smart3d.render import Renderer
    from smart3d.views import View, render_view

    s = make_sample("mug", 0)
    with Renderer(96) as r:
        front = render_view(r, s.sdf, View(azimuth=0.0, elevation=10.0))
        side = render_view(r, s.sdf, View(azimuth=80.0, elevation=10.0))
        empty = r.render(G.mesh_from_field(np.ones((32, 32, 32), np.float32), 0.0, inside="below"))
    assert front.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and front.dtype == np.uint8
    assert (front < 230).any(-1).mean() > 0.1                        # the mug covers a good part of the view
    assert np.abs(front.astype(int) - side.astype(int)).mean() > 5   # and looks different from the side
    with pytest.raises(ValueError, match="no object found"):
        prepare_image(empty)                                         # an empty mesh renders blank


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


def test_generate_from_image_keeps_the_confident_coarse_tokens(weights, tmp_path):
    pipe = load_pipeline(weights, "cpu")
    img = tmp_path / "disc.png"
    Image.fromarray(_disc(128, 64, 64, 30)).save(img)
    cond = pipe.image_condition(img, confidence=0.0)
    steps = list(pipe.steps(pipe.condition_from_images([cond] * 2), seed=3, options=SamplingOptions(num_steps=3)))
    nc = pipe.layout.num_coarse
    final = steps[-1].tokens
    assert (final >= 0).all() and torch.equal(final[:, :nc], cond.coarse.expand(2, -1))
    assert (steps[0].order[:, :nc] == 0).all()                       # given, not drawn
    a = pipe.generate_from_image(img, seed=3, options=SamplingOptions(num_steps=3))[0]
    b = pipe.generate_from_image(img, seed=3, options=SamplingOptions(num_steps=3))[0]
    assert torch.equal(a.tokens, b.tokens) and a.points.shape == (2048, 3)
    lamp = CLASSES.index("lamp")
    assert pipe.generate_from_image(img, class_name="lamp", options=SamplingOptions(num_steps=2))[0].label == lamp
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="not a readable image"):
        pipe.image_condition(bad)
    with pytest.raises(ValueError, match="unknown class"):
        pipe.image_condition(img, class_name="spaceship")


def test_pipeline_without_image_encoder_says_so(tmp_path):
    pipe = load_pipeline(write_tiny_weights(tmp_path / "w", image_encoder=False), "cpu")
    assert pipe.image_encoder is None
    with pytest.raises(RuntimeError, match="no image encoder"):
        pipe.image_condition(_disc(64, 32, 32, 10))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "smart3d", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_generate_from_image_and_its_errors(weights, tmp_path):
    img = tmp_path / "disc.png"
    Image.fromarray(_disc(128, 64, 64, 30)).save(img)
    out = _cli("generate", "--image", str(img), "--num", "1", "--steps", "2", "--weights", str(weights),
               "--out", str(tmp_path / "gen"))
    assert out.returncode == 0, out.stderr
    assert "from disc.png (class read from the image" in out.stdout
    assert len(list((tmp_path / "gen").glob("*.glb"))) == 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    for args, msg in ((["--image", str(bad)], "not a readable image"),
                      (["--image", str(img), "--confidence", "2"], "threshold must be in [0, 1]"),
                      ([], "give --class")):
        r = _cli("generate", *args, "--weights", str(weights), "--out", str(tmp_path / "x"))
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
