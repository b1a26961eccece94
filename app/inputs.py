"""Inputs the app accepts: partial scans (uploaded or made from a benchmark shape) and images.

Every problem raises ``smart3d.io.InputError`` (a ``ValueError``) with a message in plain words; the
handlers show it as a ``gr.Error``.

Canonical frame of an uploaded scan: if every point already lies in [-1, 1]^3 the cloud is taken
as it is (the frame the model was trained in: the *full* shape's bounding box centred, longest
side 1.8). Otherwise it is put in the unit box by its own bounding box. That is only right when the
scan spans the whole object: a partial cloud's box is smaller than the full shape's, so a
normalised partial scan comes out too large and off-centre, and the completion is scaled with it.
Scans made in the app (and the examples in ``assets/scans``) are already in the canonical frame.

Making a scan from a benchmark shape (``make_scan``): a plane cut or a single depth view of its
surface samples, by ``smart3d.scans.scan_mask`` (see there).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smart3d import geometry as G
from smart3d.classes import CLASSES
from smart3d.dataset import make_sample
from smart3d.io import MAX_POINTS, SUPPORTED_EXTENSIONS, InputError, load_point_cloud, normalize_unit_box
from smart3d.scans import SCAN_METHODS, scan_mask

SCAN_EXTENSIONS = SUPPORTED_EXTENSIONS            # .xyz .npy .npz .pcd .ply .obj .off .stl .glb
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MESH_SAMPLES = 20_000                             # surface samples drawn from an uploaded mesh
SCAN_SAMPLES = 40_000                             # dense samples of a benchmark shape for make_scan
MAX_SCAN_POINTS = 4096                            # points written to a scan made in the app
MAX_IMAGE_PIXELS = 40_000_000


@dataclass
class Scan:
    """A partial scan in the canonical frame, ready to tokenize."""

    points: np.ndarray       # (N, 3) float32, canonical frame
    name: str                # file name it came from
    normalized: bool         # True if it was moved into the unit box (it was outside [-1, 1]^3)

    def describe(self) -> str:
        frame = ("moved into the unit box by its own bounding box (a partial scan's box is smaller "
                 "than the whole shape's, so the result may come out larger)" if self.normalized
                 else "already in the canonical frame [-1, 1]^3, used as it is")
        return f"{self.name}: {len(self.points):,} points, {frame}."


def _as_path(file, missing: str) -> str:
    """A gradio file value (path string, NamedString, FileData or its dict) -> path string."""
    if file is None:
        raise InputError(missing)
    if isinstance(file, dict):
        file = file.get("path")
    elif not isinstance(file, (str, os.PathLike)):
        file = getattr(file, "path", None) or getattr(file, "name", None)
    if not file:
        raise InputError(missing)
    return os.fspath(file)


def _display_name(path: str) -> str:
    return os.path.basename(path)


def load_scan(file, max_bytes: int, max_points: int = MAX_POINTS, seed: int = 0) -> Scan:
    """Read an uploaded scan (any of ``SCAN_EXTENSIONS``) and put it in the canonical frame."""
    path = _as_path(file, "No scan given: upload a point cloud or mesh, pick an example, or make one below.")
    is_mesh = Path(path).suffix.lower() in (".obj", ".off", ".stl", ".glb")   # (.ply may be either)
    points = load_point_cloud(path, max_bytes=max_bytes, max_points=max_points, generator=np.random.default_rng(seed),
                              num_points=MESH_SAMPLES if is_mesh else None)
    name = _display_name(path)
    if np.all(np.abs(points) <= 1.0):
        return Scan(points.astype(np.float32), name, normalized=False)
    normalized, _ = normalize_unit_box(points)
    return Scan(normalized, name, normalized=True)


def check_image(file, max_bytes: int) -> str:
    """Check that an upload is an image we can read; returns a one-line description."""
    from PIL import Image, UnidentifiedImageError

    path = _as_path(file, "No image given: upload a PNG or JPEG image.")
    name = _display_name(path)
    ext = Path(name).suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        shown = f"'{ext}'" if ext else "no extension"
        raise InputError(f"{name}: unsupported image type ({shown}). Supported types: {', '.join(IMAGE_EXTENSIONS)}.")
    size = os.path.getsize(path)
    if size == 0:
        raise InputError(f"{name} is empty (0 bytes); expected an image.")
    if size > max_bytes:
        raise InputError(f"{name} is {size / 2**20:.3g} MB, larger than the {max_bytes / 2**20:.3g} MB limit.")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputError(f"{name} is {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS:,}-pixel limit.")
            im.verify()
            fmt = im.format
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InputError(f"{name} is not an image we can read (not a valid PNG, JPEG, WebP or BMP file).") from None
    return f"{name}: {w} x {h} {fmt} image."


def open_image(file, max_bytes: int):
    """A checked upload (see ``check_image``) -> (one-line description, the decoded PIL image)."""
    from PIL import Image

    info = check_image(file, max_bytes)
    try:
        with Image.open(_as_path(file, "No image given: upload a PNG or JPEG image.")) as im:
            im.load()
            return info, im.copy()
    except OSError:                      # verify() passes some truncated files that fail to decode
        raise InputError(f"{info.split(':')[0]} is damaged: its pixels cannot be decoded.") from None


# --------------------------------------------------------------------------------------------
# Making a partial scan from a benchmark shape
# --------------------------------------------------------------------------------------------

def make_scan(class_name: str, index: int, method: str, azimuth: float, elevation: float, offset: float,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A partial scan of benchmark shape ``index`` of ``class_name``: (visible (N, 3), hidden (M, 3)) float32."""
    if class_name not in CLASSES:
        raise InputError(f"Unknown class {class_name!r}; choose one of: {', '.join(CLASSES)}.")
    if not (isinstance(index, (int, float)) and float(index).is_integer() and 0 <= index <= 100_000):
        raise InputError(f"Shape index must be a whole number between 0 and 100000; got {index!r}.")
    if method not in SCAN_METHODS:
        raise InputError(f"Unknown scan method {method!r}; choose one of: {', '.join(SCAN_METHODS)}.")
    for name, value, lo, hi in (("Azimuth", azimuth, -360, 360), ("Elevation", elevation, -90, 90),
                                ("Cut offset", offset, -1, 1)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
            raise InputError(f"{name} must be a number between {lo} and {hi}; got {value!r}.")
    sample = make_sample(class_name, int(index), with_mesh=True)
    points = G.sample_surface(sample.mesh, SCAN_SAMPLES, seed=seed)
    keep = scan_mask(points, method, azimuth, elevation, offset)
    if keep.sum() < 16:
        raise InputError("That cut leaves (almost) nothing of the shape; move the plane or change the direction.")
    visible, hidden = points[keep], points[~keep]
    rng = np.random.default_rng(seed)
    if len(visible) > MAX_SCAN_POINTS:
        visible = visible[rng.choice(len(visible), MAX_SCAN_POINTS, replace=False)]
    return visible.astype(np.float32), hidden.astype(np.float32)


def write_scan(points: np.ndarray, path: str | Path) -> Path:
    """Write a scan as a binary PLY point cloud (or .xyz / .npy by suffix)."""
    import trimesh

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, points.astype(np.float32))
    elif path.suffix == ".xyz":
        np.savetxt(path, points, fmt="%.5f")
    else:
        trimesh.PointCloud(points.astype(np.float64)).export(path)
    return path
