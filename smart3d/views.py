"""Rendered views of the benchmark: the training and test images of the image encoder.

Every shape of a split is drawn ``views`` times with pyrender (OSMesa on CPU) from a random camera
in front of or beside it and above the horizon (azimuth within +-80 degrees of the front,
elevation 0-45 degrees), in a random matte colour and light strength, on white. The mesh is the
marching-cubes surface of the cached 32^3 signed distance field. Each view is rendered at
``RENDER_SIZE`` pixels and then goes through the same ``image.prepare_image`` that uploads go
through (crop to the object, pad to a square, resize), so training and use see the same framing.

Views are deterministic in (split, class, shape index, view number) and cached as one ``.npz`` per
split next to the benchmark arrays.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import geometry as G
from .classes import CLASSES
from .dataset import DEFAULT_CACHE, cache_dir, check_class, load_split
from .image import IMAGE_SIZE

RENDER_SIZE = 96
VIEWS_FORMAT = 1          # bump when the rendering or the framing changes


@dataclass(frozen=True)
class View:
    """A camera and a look: degrees, canonical units, RGB in [0, 1]."""

    azimuth: float = 35.0
    elevation: float = 25.0
    distance: float = 3.6
    color: tuple[float, float, float] = (0.62, 0.55, 0.47)
    light: float = 2.0


def random_view(rng: np.random.Generator) -> View:
    """A view from the training distribution (see the module docstring)."""
    return View(azimuth=float(rng.uniform(-80, 80)), elevation=float(rng.uniform(0, 45)),
                distance=float(rng.uniform(3.0, 4.4)), color=tuple(float(c) for c in rng.uniform(0.2, 0.9, 3)),
                light=float(rng.uniform(1.5, 3.0)))


def view_seed(split: str, name: str, index: int, view: int) -> int:
    return zlib.crc32(f"{split}/{name}/{index}/{view}".encode())


def render_view(renderer, sdf: np.ndarray, view: View) -> np.ndarray:
    """One prepared view (S, S, 3) uint8 of the shape with the 32^3 signed distance ``sdf``."""
    from .image import prepare_image
    from .render import view_pose

    mesh = G.mesh_from_field(sdf, 0.0, inside="below")
    img = renderer.render(mesh, (*view.color, 1.0), pose=view_pose(view.azimuth, view.elevation, view.distance),
                          light=view.light)
    return (prepare_image(img).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _render_chunk(job: tuple[str, list[tuple[str, int]], np.ndarray, int]) -> np.ndarray:
    from .render import Renderer

    split, names, sdfs, views = job
    out = np.zeros((len(names), views, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    with Renderer(RENDER_SIZE) as r:
        for i, ((name, index), sdf) in enumerate(zip(names, sdfs)):
            for v in range(views):
                rng = np.random.default_rng(view_seed(split, name, index, v))
                out[i, v] = render_view(r, sdf.astype(np.float32), random_view(rng))
    return out


def views_path(split: str, classes, num_per_class: int, views: int, root: Path | str = DEFAULT_CACHE) -> Path:
    key = zlib.crc32(" ".join(classes).encode())
    base = cache_dir(root)
    return base / f"views{VIEWS_FORMAT}_{split}_{num_per_class}_{views}_{key:08x}.npz"


@dataclass(frozen=True)
class Views:
    """Prepared images of a split: images (K, V, 64, 64, 3) uint8, labels (K,), indices (K,)."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def load_views(split: str, classes=CLASSES, num_per_class: int = 1000, views: int = 2,
               root: Path | str = DEFAULT_CACHE, workers: int | None = None, progress: bool = True) -> Views:
    """The rendered views of a split, rendering (and caching) them first if needed."""
    classes = [check_class(c) for c in classes]
    path = views_path(split, classes, num_per_class, views, root)
    if not path.exists():
        data = load_split(split, classes, num_per_class, root)
        names = [(CLASSES[int(c)], int(i)) for c, i in zip(data.labels, data.indices)]
        chunk = 32
        jobs = [(split, names[k:k + chunk], data.sdf[k:k + chunk], views) for k in range(0, len(names), chunk)]
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(names), desc=f"rendering {split} views", unit="shape", disable=not progress)
        parts = []
        with get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_render_chunk, jobs):
                parts.append(part)
                bar.update(len(part))
        bar.close()
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=np.concatenate(parts), labels=data.labels, indices=data.indices)
        tmp.replace(path)
    with np.load(path) as z:
        return Views(z["images"], z["labels"], z["indices"])
