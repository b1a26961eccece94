"""The procedural benchmark as data: samples, fixed splits, and an on-disk cache.

A ``Sample`` is one benchmark shape in the canonical frame (see ``smart3d.geometry``):

- ``sdf``       (32, 32, 32) float32  signed distance at the voxel centres (canonical units)
- ``occupancy`` (32, 32, 32) bool     solid occupancy, ``sdf < 0``
- ``surface``   (32, 32, 32) bool     voxels that hold surface, from the dense points below
- ``points``    (2048, 3) float32     uniform surface points, for metrics
- ``dense``     (32768, 3) float32    the dense surface points (``points`` is their head); the
                                      tokenizer reads their per-voxel statistics
                                      (``geometry.surface_features``), which a (partial) scan
                                      gives too. Cached as float16.

Splits follow the paper's 80/10/10: index ``i`` of every class is in ``train`` if ``i % 10 < 8``,
``val`` if ``i % 10 == 8`` and ``test`` if ``i % 10 == 9``. Shapes are deterministic in
(class, index), so the split of a shape never changes whatever the dataset size.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh
from tqdm import tqdm

from . import geometry as G
from .classes import CLASSES
from .shapes import shape_sdf

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
NUM_POINTS = 2048
DENSE_POINTS = 32_768
CACHE_FORMAT = 2          # bump when the arrays stored per shape change
MESH_RESOLUTION = 64
DEFAULT_CACHE = Path(os.environ.get("SMART3D_CACHE", Path(__file__).resolve().parent.parent / "cache"))


def check_class(name: str) -> str:
    """Return ``name`` if it is a benchmark class, else raise a ValueError naming the classes."""
    if name not in CLASSES:
        raise ValueError(f"unknown class {name!r}; valid classes: {', '.join(CLASSES)}")
    return name


def split_indices(split: Split, num_per_class: int) -> np.ndarray:
    """Indices of ``split`` among the first ``num_per_class`` shapes of a class: (K,) int64."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    i = np.arange(num_per_class)
    keep = {"train": i % 10 < 8, "val": i % 10 == 8, "test": i % 10 == 9}[split]
    return i[keep]


# --------------------------------------------------------------------------------------------
# One shape
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One benchmark shape in the canonical frame (arrays described in the module docstring)."""

    name: str
    index: int
    sdf: np.ndarray
    occupancy: np.ndarray
    surface: np.ndarray
    points: np.ndarray
    dense: np.ndarray
    mesh: trimesh.Trimesh | None = None


def _unit_box(sdf, probe_resolution: int = 40, probe_extent: float = 1.4) -> tuple[np.ndarray, float]:
    """Centre and scale of the per-shape unit box, from a coarse marching-cubes pass."""
    pts = G.corner_grid(probe_resolution, probe_extent).reshape(-1, 3)
    field = sdf(pts).reshape((probe_resolution + 1,) * 3)
    mesh = G.mesh_from_field(field, 0.0, inside="below", extent=probe_extent, centered=False)
    assert len(mesh.vertices) > 0, "shape has no surface inside the probe cube"
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    return (lo + hi) / 2.0, 2.0 * G.FILL / float((hi - lo).max())


def make_sample(name: str, index: int, with_mesh: bool = False) -> Sample:
    """Build benchmark shape ``index`` of class ``name`` (deterministic)."""
    check_class(name)
    raw = shape_sdf(name, index)
    center, scale = _unit_box(raw)

    def sdf(p: np.ndarray) -> np.ndarray:                      # canonical-frame SDF, exact rescaling
        return raw(p / scale + center) * scale

    R, M = G.GRID, MESH_RESOLUTION
    field = sdf(G.voxel_centers(R).reshape(-1, 3)).reshape(R, R, R).astype(np.float32)
    fine = sdf(G.corner_grid(M).reshape(-1, 3)).reshape((M + 1,) * 3)
    mesh = G.mesh_from_field(fine, 0.0, inside="below", centered=False)
    dense = G.sample_surface(mesh, DENSE_POINTS, seed=index)   # i.i.d. uniform: its head is a fair sample
    return Sample(name, index, field, field < 0, G.voxelize_points(dense, R), dense[:NUM_POINTS].copy(),
                  dense, mesh if with_mesh else None)


# --------------------------------------------------------------------------------------------
# Cache: one .npz per class with the first N shapes
# --------------------------------------------------------------------------------------------

def _build_one(args: tuple[str, int]) -> tuple[np.ndarray, ...]:
    s = make_sample(*args)
    return (s.sdf.astype(np.float16), np.packbits(s.occupancy), np.packbits(s.surface), s.points,
            s.dense.astype(np.float16))


def _benchmark_version() -> str:
    """Hash of the code that defines the shapes, so a stale cache is never read."""
    code = (Path(__file__).resolve().parent / "shapes.py").read_bytes()
    params = f"{CACHE_FORMAT} {G.GRID} {G.FILL} {MESH_RESOLUTION} {DENSE_POINTS} {NUM_POINTS}".encode()
    return f"{zlib.crc32(code + params):08x}"


def cache_dir(root: Path | str = DEFAULT_CACHE) -> Path:
    """The folder of this benchmark version's cached arrays under ``root``."""
    return Path(root) / _benchmark_version()


def cache_path(name: str, num_per_class: int, root: Path | str = DEFAULT_CACHE) -> Path:
    return cache_dir(root) / f"{name}_{num_per_class}.npz"


def build_cache(classes=CLASSES, num_per_class: int = 1000, root: Path | str = DEFAULT_CACHE,
                workers: int | None = None, progress: bool = True) -> list[Path]:
    """Build (or reuse) the cached arrays of the first ``num_per_class`` shapes of each class."""
    workers = workers or os.cpu_count() or 1
    out = []
    for name in classes:
        path = cache_path(check_class(name), num_per_class, root)
        out.append(path)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        head = _cached_head(name, num_per_class, root)            # shapes are deterministic: reuse a smaller cache
        start = len(head["sdf"]) if head else 0
        jobs = [(name, i) for i in range(start, num_per_class)]
        bar = tqdm(total=len(jobs), desc=f"building {name}", disable=not progress, unit="shape")
        with get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            rows = []
            for row in pool.imap(_build_one, jobs, chunksize=8):
                rows.append(row)
                bar.update()
        bar.close()
        arrays = dict(zip(_CACHE_KEYS, (np.stack(c) for c in zip(*rows))))
        if head:
            arrays = {k: np.concatenate([head[k], arrays[k]]) for k in _CACHE_KEYS}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return out


_CACHE_KEYS = ("sdf", "occupancy", "surface", "points", "dense")


def _cached_head(name: str, num_per_class: int, root: Path | str) -> dict[str, np.ndarray] | None:
    """Arrays of the largest cached prefix (fewer than ``num_per_class`` shapes) of a class, if any."""
    suffixes = (p.stem[len(name) + 1:] for p in cache_dir(root).glob(f"{name}_*.npz"))
    sizes = [int(k) for k in suffixes if k.isdigit() and int(k) < num_per_class]
    if not sizes:
        return None
    with np.load(cache_path(name, max(sizes), root)) as z:
        return {k: z[k] for k in _CACHE_KEYS}


@dataclass(frozen=True)
class Arrays:
    """Stacked arrays of many shapes (see ``Sample``) with their class ids and indices."""

    sdf: np.ndarray         # (K, 32, 32, 32) float32
    occupancy: np.ndarray   # (K, 32, 32, 32) bool
    surface: np.ndarray     # (K, 32, 32, 32) bool
    points: np.ndarray      # (K, 2048, 3) float32
    dense: np.ndarray       # (K, 32768, 3) float16
    labels: np.ndarray      # (K,) int64 index into CLASSES
    indices: np.ndarray     # (K,) int64 shape index within its class

    def __len__(self) -> int:
        return len(self.labels)


def load_split(split: Split, classes=CLASSES, num_per_class: int = 1000,
               root: Path | str = DEFAULT_CACHE, build: bool = True) -> Arrays:
    """Load one split of the cached benchmark (building missing classes first if ``build``)."""
    idx = split_indices(split, num_per_class)
    classes = [check_class(c) for c in classes]
    if build:
        build_cache(classes, num_per_class, root)
    parts = []
    R = G.GRID
    for name in classes:
        with np.load(cache_path(name, num_per_class, root)) as z:
            unpack = lambda a: np.unpackbits(a[idx], axis=1)[:, : R**3].reshape(-1, R, R, R).astype(bool)
            parts.append((z["sdf"][idx].astype(np.float32), unpack(z["occupancy"]), unpack(z["surface"]),
                          z["points"][idx], z["dense"][idx], np.full(len(idx), CLASSES.index(name)), idx.copy()))
    return Arrays(*(np.concatenate(c) for c in zip(*parts)))
