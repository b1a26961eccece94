"""Inputs the app accepts: partial scans (uploaded or made from a benchmark shape) and images.

Every problem raises ``smart3d.io.InputError`` (a ``ValueError``) with a message in plain words; the
handlers show it as a ``gr.Error``.

Where an uploaded scan goes in the canonical frame (y up, front towards +z, the *full* shape's box
centred with its longest side 1.8), by the user's choice of ``FRAMES``:
- ``"auto"``: a real scan, any units and axes: ``smart3d.intake.place_scan`` removes the ground and
  stray points and finds the up axis, scale, heading and offset (by fit to templates of the class);
- ``"canonical"``: the points are already in the canonical frame and are used as they are (the
  examples in ``assets/scans`` and the scans made in the app).
Either way the result is a ``smart3d.intake.Placement``; the hand controls start from it (a new up
axis places the scan again; ``Scan.adjust`` turns the placed scan about the box's vertical axis,
scales it about the box's centre and shifts it), and downloads go back to the scan's own frame with it.

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
from smart3d.intake import AXES, Placement, canonical_placement, place_scan, yaw_matrix
from smart3d.io import MAX_POINTS, SUPPORTED_EXTENSIONS, InputError, load_point_cloud
from smart3d.scans import SCAN_METHODS, scan_mask

SCAN_EXTENSIONS = SUPPORTED_EXTENSIONS            # .xyz .npy .npz .pcd .ply .obj .off .stl .glb
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MESH_SAMPLES = 20_000                             # surface samples drawn from an uploaded mesh
SCAN_SAMPLES = 40_000                             # dense samples of a benchmark shape for make_scan
MAX_SCAN_POINTS = 4096                            # points written to a scan made in the app
MAX_IMAGE_PIXELS = 40_000_000
PLACE_POINTS = 100_000                            # points of an uploaded scan kept for placing and completing
FRAMES = {"auto": "place automatically (a real scan: any units, up axis and heading)",
          "canonical": "already in the canonical frame (y up, front towards +z, inside -1..1)"}
UP_CHOICES = ("auto", *AXES)                      # auto: the ground's normal, else +z (LiDAR, ROS)
# the hand controls move the placed scan in the canonical box: turn it about the box's vertical axis,
# scale it about the box's centre, shift it; within these ranges (the sliders' ranges)
MAX_TURN = 180.0                                  # degrees either way
SCALE_RANGE = (0.2, 5.0)                          # times the placement's scale
MAX_SHIFT = 2.0                                   # canonical units per axis (the box is -1..1)


@dataclass
class Scan:
    """An uploaded scan and where it sits in the canonical frame."""

    name: str                # file name it came from
    frame: str               # how it was placed: a key of FRAMES
    placement: Placement     # cleaned points (scan frame) and the transform to the canonical frame

    @property
    def points(self) -> np.ndarray:
        """(N, 3) float32 the placed points in the canonical frame (what is tokenized)."""
        return self.placement.points

    def describe(self) -> str:
        p = self.placement
        if self.frame == "canonical":
            moved = "" if p.matrix.tolist() == np.eye(4).tolist() else (
                f", then moved by hand (yaw {p.yaw:.0f} deg, scale {p.scale:.4g}, offset "
                f"{', '.join(f'{v:.2f}' for v in p.offset)})")
            text = f"{self.name}: {len(p.scan_points):,} points, taken as already in the canonical frame{moved}."
        else:
            text = f"{self.name}: {p.describe()}"
        outside = int((np.abs(self.points) > 1.0).any(1).sum())
        if outside:
            text += f" {outside:,} points lie outside the canonical box and are left out."
        return text

    def adjust(self, turn=None, factor=None, shift=None) -> "Scan":
        """The scan moved by hand in the canonical box: turned by ``turn`` degrees about the box's vertical
        axis, scaled by ``factor`` about its centre, then shifted by ``shift`` (3,) canonical units, i.e.
        ``canonical' = factor * yaw(turn) @ canonical + shift`` (``None``: no change; see ``check_placement``)."""
        turn, factor, shift = check_placement(turn, factor, shift)
        if turn is None and factor is None and shift is None:
            return self
        turn, factor = turn or 0.0, 1.0 if factor is None else factor
        shift = np.zeros(3) if shift is None else shift
        p = self.placement
        placement = p.adjusted(yaw=(p.yaw + turn + 180.0) % 360.0 - 180.0, scale=p.scale * factor,
                               offset=factor * yaw_matrix(turn) @ p.offset + shift)
        return Scan(self.name, self.frame, placement)


def check_frame(frame) -> str:
    """A key of ``FRAMES`` (``None``: "auto")."""
    frame = "auto" if frame is None else frame
    if frame not in FRAMES:
        raise InputError(f"Unknown scan frame {frame!r}; choose one of: {', '.join(FRAMES)}.")
    return frame


def check_up(up) -> str:
    """One of ``UP_CHOICES`` (``None``: "auto")."""
    up = "auto" if up is None else up
    if up not in UP_CHOICES:
        raise InputError(f"Unknown up axis {up!r}; choose one of: {', '.join(UP_CHOICES)}.")
    return up


def check_placement(turn=None, factor=None, shift=None) -> tuple[float | None, float | None, np.ndarray | None]:
    """The hand controls, checked: turn (degrees), scale factor, shift (x, y, z) in canonical units; each
    may be ``None`` (no change), and a shift of three ``None`` is ``None``."""
    def number(name, value, lo, hi):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and lo <= value <= hi):
            raise InputError(f"{name} must be a number from {lo:g} to {hi:g}; got {value!r}.")
        return float(value)

    turn = None if turn is None else number("Rotation about up (degrees)", turn, -MAX_TURN, MAX_TURN)
    factor = None if factor is None else number("Scale", factor, *SCALE_RANGE)
    if shift is not None:
        shift = list(shift)
        if len(shift) != 3:
            raise InputError(f"Offset must be three numbers (x, y, z); got {shift!r}.")
        if all(v is None for v in shift):
            shift = None
        elif any(v is None for v in shift):
            raise InputError("Offset needs all three of x, y and z (or none of them, for no shift).")
        else:
            shift = np.array([number(f"Offset {a}", v, -MAX_SHIFT, MAX_SHIFT) for a, v in zip("xyz", shift)])
    return turn, factor, shift


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


def read_scan(file, max_bytes: int, max_points: int = MAX_POINTS, seed: int = 0) -> tuple[str, np.ndarray]:
    """Read an uploaded scan (any of ``SCAN_EXTENSIONS``): (file name, (N, 3) float64 points, at most
    ``PLACE_POINTS`` of them, a seeded random subset of a larger cloud)."""
    path = _as_path(file, "No scan given: upload a point cloud or mesh, pick an example, or make one below.")
    is_mesh = Path(path).suffix.lower() in (".obj", ".off", ".stl", ".glb")   # (.ply may be either)
    rng = np.random.default_rng(seed)
    points = load_point_cloud(path, max_bytes=max_bytes, max_points=max_points, generator=rng,
                              num_points=MESH_SAMPLES if is_mesh else None)
    if len(points) > PLACE_POINTS:
        points = points[rng.choice(len(points), PLACE_POINTS, replace=False)]
    return _display_name(path), np.asarray(points, dtype=np.float64)


def load_scan(file, max_bytes: int, max_points: int = MAX_POINTS, seed: int = 0, frame: str = "canonical",
              class_name: str | None = None, up: str = "auto") -> Scan:
    """Read an uploaded scan and place it in the canonical frame: as it is (``frame="canonical"``, the
    up axis, if given, turned to +y) or by ``smart3d.intake.place_scan`` with ``class_name`` and ``up``
    (``frame="auto"``)."""
    frame, up = check_frame(frame), check_up(up)
    name, points = read_scan(file, max_bytes, max_points, seed)
    if frame == "canonical":
        placement = canonical_placement(points)
        if up != "auto":
            placement = placement.adjusted(up=up)
    else:
        placement = place_scan(points, class_name, None if up == "auto" else up,
                               generator=np.random.default_rng(seed))
    return Scan(name, frame, placement)


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
