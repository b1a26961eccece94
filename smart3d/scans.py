"""Synthetic partial scans of a point cloud in the canonical frame (the app's "make a scan").

- ``plane``: keep the surface points behind a plane, ``p . d <= offset``, with ``d`` the direction
  given by azimuth/elevation (``direction``);
- ``view``: a simulated single-view depth scan: surface samples are projected orthographically
  along ``d`` onto a 128 x 128 image and, in every pixel, only the points within a small depth
  tolerance of the nearest one are kept (a point z-buffer), and none that lies well behind the
  nearest surface of a neighbouring pixel (so sampling holes do not show the far side): what a
  depth camera at ``d`` looking at the origin sees.

These work on points; ``smart3d.masking`` has the token-level counterparts used in training.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy.ndimage import maximum_filter

ScanMethod = Literal["plane", "view"]
SCAN_METHODS: tuple[str, ...] = ("plane", "view")


def direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector for an azimuth (around +y, 0 = front +z) and elevation (towards +y): (3,) float64."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])


def plane_cut(points: np.ndarray, d: np.ndarray, offset: float) -> np.ndarray:
    """(N,) bool: points (N, 3) behind the plane ``p . d = offset`` (the part facing away from ``d`` is kept)."""
    return points @ d <= offset


def single_view(points: np.ndarray, d: np.ndarray, resolution: int = 128, tolerance: float = 0.03,
                gap: float = 0.15) -> np.ndarray:
    """(N,) bool: points (N, 3) a depth camera at direction ``d`` (orthographic, looking at 0) would see."""
    up = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(up, d)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    half = math.sqrt(3.0)                                           # the cube's half-diagonal
    ij = np.floor((np.stack([points @ u, points @ v], 1) + half) * (resolution / (2 * half))).astype(np.int64)
    ij = np.clip(ij, 0, resolution - 1)
    pixel = ij[:, 0] * resolution + ij[:, 1]
    depth = points @ d                                              # larger = nearer the camera
    nearest = np.full(resolution * resolution, -np.inf)
    np.maximum.at(nearest, pixel, depth)
    # a pixel that happens to hold no near-side sample must not let the far side show through: a
    # point is also hidden if a neighbouring pixel sees a surface well in front of it
    around = maximum_filter(nearest.reshape(resolution, resolution), size=3, mode="nearest").reshape(-1)
    return (depth >= nearest[pixel] - tolerance) & (depth >= around[pixel] - gap)


def scan_mask(points: np.ndarray, method: ScanMethod, azimuth: float, elevation: float,
              offset: float = 0.0) -> np.ndarray:
    """(N,) bool: the points (N, 3) a ``method`` scan from ``azimuth`` / ``elevation`` (degrees) keeps
    (``offset``: the plane's, for ``plane``)."""
    if method not in SCAN_METHODS:
        raise ValueError(f"unknown scan method {method!r}; valid methods: {', '.join(SCAN_METHODS)}")
    d = direction(azimuth, elevation)
    return plane_cut(points, d, offset) if method == "plane" else single_view(points, d)
