"""A real scan -> the canonical frame and back: ground, stray points, up axis, heading, scale, offset.

A scan from a sensor is in its own frame and units (metres, z-up for LiDAR and ROS), has the floor
and a few stray points in it, a random heading, and covers only part of the object. The model wants
the *whole* object's canonical frame (``smart3d.geometry``): y up, front towards +z, the full shape's
bounding box centred with its longest side ``2 * FILL``. ``place_scan`` finds a similarity transform

    canonical = scale * rotation @ scan + offset          (rotation = yaw about +y  @  up -> +y)

in five steps, each one plain numpy / scipy and seeded:

1. **Ground**: RANSAC for a plane that holds at least ``ground_min_fraction`` of the points with
   (nearly) all other points on one side of it; its points, and those below it, are dropped.
2. **Stray points**: statistical outlier removal (mean distance to the k nearest neighbours more than
   ``outlier_std`` standard deviations above average, as PCL's StatisticalOutlierRemoval), then
   clusters holding under ``min_cluster`` of the points (radius graph) are dropped.
3. **Up axis**: the user's choice; else the ground's normal; else ``default_up``.
4. **Scale and height**: the object stands on the ground (or on its lowest point) and the scan sees
   its top, so its height is known in scan units; the longest side seen (the height, or the footprint
   along its principal axes) is taken as the object's longest side, ``2 * FILL`` in the canonical box
   (an object whose longest side is hidden comes out too large); the box is centred, so the bottom
   goes to ``-height / 2``.
5. **Heading and horizontal offset, scored by fit**: for templates of the class (benchmark training
   shapes, ``assets/intake_templates.npz``) and ``headings`` starting yaws around the footprint's
   principal axes, a 2-D ICP (yaw and x/z offset; the height and scale stay fixed, so the one-sided
   fit of a partial cannot shrink it) aligns the scan to the template; the placement with the lowest
   trimmed mean squared distance wins. We score by fit rather than by the model's likelihood of the
   visible tokens: it needs no forward pass per candidate and ``benchmarks/scan_intake.py`` measures
   how well it places.

``Placement`` keeps the cleaned points in both frames and the transform (``to_canonical``,
``to_scan``, ``mesh_to_scan``), so a completion goes back to the scan's own frame and units, and
``adjusted`` re-places the same points with a hand-set up axis, yaw, scale or offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .classes import CLASSES
from .io import MIN_POINTS, InputError

FILL = 0.9  # smart3d.geometry.FILL (not imported: this module needs no torch)

TEMPLATES_PATH = Path(__file__).resolve().parent.parent / "assets" / "intake_templates.npz"
AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}


@dataclass(frozen=True)
class IntakeConfig:
    """How a scan is cleaned and placed (lengths relative to the scan's robust size, so any unit works)."""

    ground_threshold: float = 0.01      # RANSAC inlier distance, fraction of the 2-98 % box diagonal
    ground_min_fraction: float = 0.1    # a plane is the ground only if it holds this share of the points
    ground_one_side: float = 0.95       # ... and this share of the other points lie on one side of it
    ground_iterations: int = 400        # RANSAC hypotheses
    ground_max_tilt: float = 30.0       # with a given up axis: the ground's normal within this many degrees
    outlier_neighbors: int = 8          # k of the statistical outlier removal
    outlier_std: float = 2.5            # drop points whose mean k-NN distance is above mean + this * std
    cluster_radius: float = 3.0         # radius graph for clusters, times the median nearest-neighbour gap
    min_cluster: float = 0.01           # drop clusters holding less than this share of the points
    default_up: str = "+z"              # up axis when there is no ground and none is given (LiDAR, ROS, PCL)
    num_templates: int = 8              # templates per class tried in the fit (of those in the asset)
    fit_points: int = 256               # scan points used in the fit
    headings: int = 8                   # starting yaws: footprint principal axis + k * 360 / headings
    coarse_iterations: int = 3          # 2-D ICP iterations per (template, heading) in the first pass
    refine: int = 4                     # best (template, heading) pairs refined further
    icp_iterations: int = 20            # 2-D ICP iterations in the refinement
    trim: float = 0.9                   # share of the closest pairs used by ICP and the fit score
    height_quantile: float = 0.995      # the scan's top (robust to a stray point above)


# --------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------

def parse_up(up) -> np.ndarray:
    """An up axis: '+z', 'z', '-y', ... or a 3-vector -> (3,) float64 unit vector."""
    if isinstance(up, str):
        key = up.strip().lower()
        key = key if key[:1] in "+-" else "+" + key
        if key not in AXES:
            raise InputError(f"Unknown up axis {up!r}; choose one of: {', '.join(AXES)} (or a 3-vector).")
        return np.array(AXES[key], dtype=np.float64)
    v = np.asarray(up, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or not np.linalg.norm(v) > 0:
        raise InputError(f"The up axis must be one of {', '.join(AXES)} or a non-zero 3-vector; got {up!r}.")
    return v / np.linalg.norm(v)


def rotation_to_y(u: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking the unit vector ``u`` to +y (the shortest one; about +x for -y)."""
    y = np.array([0.0, 1.0, 0.0])
    v, c = np.cross(u, y), float(u @ y)
    if c < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + K + K @ K / (1.0 + c)                       # Rodrigues, for unit vectors


def yaw_matrix(deg: float) -> np.ndarray:
    """(3, 3) rotation by ``deg`` degrees about +y (x towards -z... right-handed: z -> x)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# --------------------------------------------------------------------------------------------
# The placement
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """A cleaned scan and the similarity transform ``canonical = scale * rotation @ scan + offset``."""

    scan_points: np.ndarray        # (M, 3) float64 cleaned points, scan frame and units
    up: np.ndarray                 # (3,) scan-frame unit vector that becomes canonical +y
    yaw: float                     # degrees about canonical +y, applied after the up rotation
    scale: float                   # canonical units per scan unit
    offset: np.ndarray             # (3,) canonical-frame translation
    ground: np.ndarray | None = None   # (4,) plane n . x + d = 0 in the scan frame (n = up side), or None
    removed: dict = field(default_factory=dict)   # points dropped: {"ground": n, "outliers": n, "clusters": n}
    fit: float | None = None       # trimmed mean squared distance to the best template (canonical units^2)
    template: str | None = None    # "class/index" of the best template

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) float64 scan -> canonical rotation."""
        return yaw_matrix(self.yaw) @ rotation_to_y(self.up)

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous scan -> canonical transform."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.scale * self.rotation, self.offset
        return m

    @property
    def points(self) -> np.ndarray:
        """(M, 3) float32 cleaned points in the canonical frame (what ``Pipeline.complete`` takes)."""
        return self.to_canonical(self.scan_points).astype(np.float32)

    def to_canonical(self, x: np.ndarray) -> np.ndarray:
        """(..., 3) scan-frame points -> (..., 3) float64 canonical-frame points."""
        return self.scale * np.asarray(x, dtype=np.float64) @ self.rotation.T + self.offset

    def to_scan(self, c: np.ndarray) -> np.ndarray:
        """(..., 3) canonical-frame points -> (..., 3) float64 scan-frame points (inverse of ``to_canonical``)."""
        return (np.asarray(c, dtype=np.float64) - self.offset) @ self.rotation / self.scale

    def mesh_to_scan(self, mesh):
        """A copy of a canonical-frame trimesh in the scan's frame and units (normals stay outward)."""
        out = mesh.copy()
        out.apply_transform(np.linalg.inv(self.matrix))
        return out

    def adjusted(self, up=None, yaw: float | None = None, scale: float | None = None,
                 offset=None) -> "Placement":
        """The same cleaned points placed with a hand-set up axis / yaw (deg) / scale / offset (3,)."""
        changes = {}
        if up is not None:
            changes["up"] = parse_up(up)
        if yaw is not None:
            changes["yaw"] = float(yaw)
        if scale is not None:
            if not (math.isfinite(scale) and scale > 0):
                raise InputError(f"Scale must be a positive number; got {scale!r}.")
            changes["scale"] = float(scale)
        if offset is not None:
            off = np.asarray(offset, dtype=np.float64).reshape(-1)
            if off.shape != (3,) or not np.all(np.isfinite(off)):
                raise InputError(f"Offset must be three finite numbers; got {offset!r}.")
            changes["offset"] = off
        return replace(self, **changes, fit=None, template=None) if changes else self

    def describe(self) -> str:
        """One line for a person: what was removed and how the scan was placed."""
        r = self.removed
        ground = "no ground plane found" if self.ground is None else f"ground plane removed ({r.get('ground', 0):,} points)"
        axis, v = max(AXES.items(), key=lambda kv: float(self.up @ kv[1]))     # the nearest axis, and how far off
        tilt = math.degrees(math.acos(min(1.0, float(self.up @ v))))
        up = axis if tilt < 0.05 else f"{axis} tilted {tilt:.1f} deg" if tilt < 10 else np.round(self.up, 3).tolist()
        return (f"{len(self.scan_points):,} points kept; {ground}; {r.get('outliers', 0) + r.get('clusters', 0):,} stray "
                f"points removed; up {up}, yaw {self.yaw:.0f} deg, scale {self.scale:.4g} per scan unit"
                + (f", fit {self.fit * 1e3:.2f}e-3 to template {self.template}" if self.fit is not None else "") + ".")


def canonical_placement(points: np.ndarray) -> Placement:
    """The identity placement: points already in the canonical frame."""
    return Placement(np.asarray(points, dtype=np.float64), np.array([0.0, 1.0, 0.0]), 0.0, 1.0, np.zeros(3))


# --------------------------------------------------------------------------------------------
# Cleaning: ground plane and stray points
# --------------------------------------------------------------------------------------------

def find_ground(points: np.ndarray, config: IntakeConfig, rng: np.random.Generator,
                up: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """RANSAC ground plane of (N, 3) points: (plane (4,) with unit normal towards the object, inlier mask (N,))
    or None when no plane holds enough points with the rest on one side of it."""
    n = len(points)
    lo, hi = np.percentile(points, [2, 98], axis=0)
    thr = config.ground_threshold * float(np.linalg.norm(hi - lo))
    sub = points if n <= 5000 else points[rng.choice(n, 5000, replace=False)]   # hypotheses scored on these
    best, best_count = None, config.ground_min_fraction * len(sub)
    for start in range(0, config.ground_iterations, 50):
        tri = sub[rng.integers(0, len(sub), (min(50, config.ground_iterations - start), 3))]  # (I, 3, 3)
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])                       # (I, 3)
        norm = np.linalg.norm(normal, axis=1)
        ok = norm > 1e-12
        normal, tri = normal[ok] / norm[ok, None], tri[ok]
        if up is not None:
            ok = np.abs(normal @ up) >= math.cos(math.radians(config.ground_max_tilt))
            normal, tri = normal[ok], tri[ok]
        if not len(normal):
            continue
        d = sub @ normal.T - np.einsum("ij,ij->i", tri[:, 0], normal)                          # (S, I)
        inl = np.abs(d) < thr
        count = inl.sum(0)
        above, below = ((d > 0) & ~inl).sum(0), ((d < 0) & ~inl).sum(0)
        one_side = np.maximum(above, below) / np.maximum(above + below, 1)
        count = np.where(one_side >= config.ground_one_side, count, 0)
        i = int(count.argmax())
        if count[i] > best_count:
            best_count, best = count[i], (normal[i], float(tri[i, 0] @ normal[i]), above[i] >= below[i])
    if best is None:
        return None
    normal, c, positive = best
    inliers = np.abs(points @ normal - c) < thr
    centre = points[inliers].mean(0)                       # refine by least squares on the inliers
    normal_ls = np.linalg.svd(points[inliers] - centre, full_matrices=False)[2][-1]
    normal = normal_ls if normal_ls @ normal > 0 else -normal_ls
    normal = normal if positive else -normal               # towards the object
    if up is not None and normal @ up < 0:                 # the object is below this plane: not a ground
        return None
    plane = np.append(normal, -normal @ centre)
    return plane, np.abs(points @ normal + plane[3]) < thr


def remove_outliers(points: np.ndarray, config: IntakeConfig) -> tuple[np.ndarray, int, int]:
    """(N, 3) -> (keep (N,) bool, stray points dropped, points in small clusters dropped)."""
    k = min(config.outlier_neighbors, len(points) - 1)
    tree = cKDTree(points)
    dist = tree.query(points, k + 1)[0][:, 1:]                       # (N, k), self excluded
    mean = dist.mean(1)
    keep = mean <= mean.mean() + config.outlier_std * mean.std()
    strays = int((~keep).sum())
    idx = np.flatnonzero(keep)
    radius = config.cluster_radius * float(np.median(dist[idx, 0]))
    pairs = cKDTree(points[idx]).query_pairs(radius, output_type="ndarray")      # (E, 2) radius graph
    graph = coo_matrix((np.ones(len(pairs), dtype=bool), (pairs[:, 0], pairs[:, 1])), shape=(len(idx),) * 2)
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    big = sizes[labels] >= config.min_cluster * len(idx)
    keep[idx[~big]] = False
    return keep, strays, int((~big).sum())


# --------------------------------------------------------------------------------------------
# Templates: benchmark training shapes of each class, in the canonical frame
# --------------------------------------------------------------------------------------------

def build_templates(num: int = 16, points: int = 512, classes=CLASSES, out: Path | str = TEMPLATES_PATH) -> Path:
    """Write the template asset: the first ``num`` training shapes of each class, ``points`` surface points
    each (float16), from the benchmark cache (``smart3d.dataset``; built if missing)."""
    from .dataset import cache_path, build_cache, split_indices

    arrays = {}
    for c in classes:
        path = build_cache([c], 1000)[0] if not cache_path(c, 1000).exists() else cache_path(c, 1000)
        idx = split_indices("train", 1000)[:num]
        with np.load(path) as z:
            pts = z["points"][idx][:, :points]                   # i.i.d. surface samples: the head is fair
        arrays[c] = pts.astype(np.float16)
        arrays[c + "_index"] = idx
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


@lru_cache(maxsize=None)
def _templates(class_name: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with: python -m smart3d.intake")
    with np.load(path) as z:
        return z[class_name].astype(np.float64), z[class_name + "_index"]


def templates(class_name: str, path: Path | str = TEMPLATES_PATH) -> tuple[np.ndarray, np.ndarray]:
    """(K, P, 3) float64 canonical template points of a class and their (K,) benchmark indices."""
    if class_name not in CLASSES:
        raise InputError(f"Unknown class {class_name!r}; choose one of: {', '.join(CLASSES)}.")
    return _templates(class_name, str(path))


# --------------------------------------------------------------------------------------------
# Fit: yaw and horizontal offset against templates (height and scale fixed)
# --------------------------------------------------------------------------------------------

def _icp_xz(q: np.ndarray, tree: cKDTree, yaws: np.ndarray, config: IntakeConfig,
            iterations: int, shifts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D ICP of points q (P, 3) to a template from H starting yaws (H,) deg: yaw about +y and an x/z shift.

    Returns (yaws (H,), shifts (H, 3), scores (H,)): the placement ``yaw_matrix(yaw) @ q + shift`` and its
    trimmed mean squared distance to the template."""
    yaws = np.asarray(yaws, dtype=np.float64).copy()
    H, P = len(yaws), len(q)
    keep = max(3, int(config.trim * P))
    if shifts is None:                                                    # start box centre on box centre
        x = np.einsum("hij,pj->hpi", _yaws(yaws), q)                      # (H, P, 3)
        shifts = (tree.mins + tree.maxes) / 2 - (x.min(1) + x.max(1)) / 2
        shifts[:, 1] = 0.0
    shifts = np.array(shifts, dtype=np.float64)
    for it in range(iterations + 1):
        x = np.einsum("hij,pj->hpi", _yaws(yaws), q) + shifts[:, None]    # (H, P, 3) current placements
        d, j = tree.query(x.reshape(-1, 3))
        d, j = d.reshape(H, P), j.reshape(H, P)
        sel = np.argpartition(d, keep - 1, axis=1)[:, :keep]              # (H, S) closest pairs
        if it == iterations:
            return yaws, shifts, np.mean(np.take_along_axis(d, sel, 1) ** 2, axis=1)
        a = np.take_along_axis(x[..., [0, 2]], sel[..., None], 1)         # (H, S, 2) in the x/z plane
        b = tree.data[np.take_along_axis(j, sel, 1)][..., [0, 2]]         # (H, S, 2)
        ma, mb = a.mean(1), b.mean(1)
        u, _, vt = np.linalg.svd(np.einsum("hsi,hsj->hij", a - ma[:, None], b - mb[:, None]))  # 2-D Kabsch
        flip = np.linalg.det(u @ vt) < 0
        vt[flip, -1] *= -1
        r2 = np.transpose(u @ vt, (0, 2, 1))                              # b ~ r2 a + t
        angle = np.degrees(np.arctan2(r2[:, 0, 1], r2[:, 0, 0]))          # x' = c x + s z, as yaw_matrix
        t = mb - np.einsum("hij,hj->hi", r2, ma)
        shifts = np.einsum("hij,hj->hi", _yaws(angle), shifts)           # new = step(old) + t
        shifts[:, [0, 2]] += t
        yaws += angle
    raise AssertionError("unreachable")


def _yaws(deg: np.ndarray) -> np.ndarray:
    """(H,) degrees -> (H, 3, 3) rotations about +y (as ``yaw_matrix``)."""
    a = np.radians(deg)
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def place_scan(points: np.ndarray, class_name: str | None = None, up=None, config: IntakeConfig = IntakeConfig(),
               generator: np.random.Generator | None = None, templates_path: Path | str = TEMPLATES_PATH) -> Placement:
    """Clean a real scan and place it in the canonical frame (see the module docstring).

    points : (N, 3) float, any units and frame. class_name : the object's class (None: templates of every
    class). up : '+z', '-y', ... or a 3-vector in the scan frame (None: the ground's normal, else
    ``config.default_up``). generator : numpy Generator for RANSAC and subsampling (None: seed 0).
    Returns a ``Placement``; raises InputError for unusable input.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"A scan must be an (N, 3) array of points; got shape {pts.shape}.")
    if not np.all(np.isfinite(pts)):
        raise InputError(f"The scan has {int((~np.isfinite(pts).all(1)).sum()):,} points with NaN or infinite coordinates.")
    if len(pts) < MIN_POINTS:
        raise InputError(f"The scan has {len(pts):,} points; at least {MIN_POINTS} are needed.")
    if not np.ptp(pts, axis=0).max() > 0:
        raise InputError("All points of the scan are identical, so there is no shape to place.")
    rng = generator if generator is not None else np.random.default_rng(0)
    user_up = None if up is None else parse_up(up)
    classes = CLASSES if class_name is None else (class_name,)
    banks = [templates(c, templates_path) for c in classes]

    # 1. ground
    removed = {"ground": 0, "outliers": 0, "clusters": 0}
    found = find_ground(pts, config, rng, user_up)
    plane = None
    if found is not None:
        plane, inliers = found
        below = pts @ plane[:3] + plane[3] < 0
        removed["ground"] = int((inliers | below).sum())
        ground = pts[inliers]
        pts = pts[~(inliers | below)]
    if len(pts) < MIN_POINTS:
        raise InputError(f"Only {len(pts):,} points are left after removing the ground; the scan holds no object.")
    # 2. stray points
    keep, removed["outliers"], removed["clusters"] = remove_outliers(pts, config)
    pts = pts[keep]
    if len(pts) < MIN_POINTS:
        raise InputError(f"Only {len(pts):,} points are left after removing stray points; at least {MIN_POINTS} are needed.")
    # 3. up axis
    up_vec = user_up if user_up is not None else plane[:3] if plane is not None else parse_up(config.default_up)
    p = pts @ rotation_to_y(up_vec).T                           # p[:, 1] = pts @ up_vec
    # 4. height: from the ground (or the lowest point) to the top
    bottom = float(np.quantile(p[:, 1], 1 - config.height_quantile))
    if plane is not None:
        bottom = float(np.median(ground @ up_vec))
    top = float(np.quantile(p[:, 1], config.height_quantile))
    if not top - bottom > 0:
        raise InputError("The scan has no height along the up axis; choose another up axis.")
    sub = p if len(p) <= config.fit_points else p[rng.choice(len(p), config.fit_points, replace=False)]
    # 5. heading and horizontal offset by fit to templates
    xz = sub[:, [0, 2]] - sub[:, [0, 2]].mean(0)
    axis = np.linalg.eigh(xz.T @ xz)[1][:, -1]                  # footprint principal axis (x, z)
    base = math.degrees(math.atan2(-axis[1], axis[0]))          # yaw that puts it along +x
    # scale: the canonical box's longest side is 2 * FILL; we take the longest side seen (the height, the
    # footprint along its principal axes) to be the object's. A template's height over the scan's height
    # was worse on real desks, taller for their width than our tables (benchmarks/scan_intake.py).
    lo, hi = np.quantile(np.stack([xz @ axis, xz @ [-axis[1], axis[0]]], 1), [0.005, 0.995], axis=0)
    s = 2 * FILL / max(top - bottom, *(hi - lo))
    ymin = -s * (top - bottom) / 2                              # the box is centred: bottom at -height / 2
    q = (sub - [0.0, bottom, 0.0]) * s + [0.0, ymin, 0.0]
    candidates = []                                             # coarse pass: every template and heading
    for c, (bank, index) in zip(classes, banks):
        for t, tpl in enumerate(bank[: config.num_templates]):
            tree = cKDTree(tpl)
            yaws, shifts, scores = _icp_xz(q, tree, base + 360.0 * np.arange(config.headings) / config.headings,
                                           config, config.coarse_iterations)
            candidates += [(scores[h], yaws[h], shifts[h], s, ymin, f"{c}/{int(index[t])}", q, tree)
                           for h in range(len(yaws))]
    best = None                                                 # fine pass: the best few, to convergence
    for _, yaw, shift, s, ymin, name, q, tree in sorted(candidates, key=lambda c: c[0])[: config.refine]:
        yaw, shift, score = (v[0] for v in _icp_xz(q, tree, [yaw], config, config.icp_iterations, shift[None]))
        if best is None or score < best[0]:
            best = (score, yaw, shift, s, ymin, name)
    score, yaw, shift, s, ymin, name = best
    offset = shift + np.array([0.0, ymin - s * bottom, 0.0])   # yaw about y leaves the height alone
    yaw = (yaw + 180.0) % 360.0 - 180.0
    return Placement(pts, up_vec, float(yaw), float(s), offset, plane, removed, float(score), name)


# --------------------------------------------------------------------------------------------
# Simulated sensor scans (tests and benchmarks/scan_intake.py)
# --------------------------------------------------------------------------------------------

def sensor_scan(full: np.ndarray, height: float, generator: np.random.Generator, elevation: tuple[float, float] = (10, 40),
                noise: float = 0.003, dropout: float = 0.3, ground: float = 1.0, outliers: float = 0.02
                ) -> tuple[np.ndarray, Placement, np.ndarray]:
    """What a depth sensor gives of a shape: one view, in metres, z-up, random heading, with ground and stray points.

    full : (N, 3) dense surface points of the whole shape in the canonical frame. height : the object's height
    in metres. The view (``smart3d.scans.single_view``) is from a random azimuth and an elevation in
    ``elevation`` degrees; then ``dropout`` of its points are dropped, Gaussian noise of ``noise`` metres is
    added, a ground plane under the object (``ground`` times as many points as the object, over a square
    three times the object's size) and ``outliers`` of uniform stray points in the scene's box.
    Returns (scan (M, 3) float64 in metres, the true placement (its ``scan_points``: the object's visible
    points without noise), visible (N,) bool: which of ``full`` the sensor saw).
    """
    from .scans import direction, single_view

    g = generator
    full = np.asarray(full, dtype=np.float64)
    visible = single_view(full, direction(g.uniform(-180, 180), g.uniform(*elevation)))
    obj = full[visible]
    obj = obj[g.random(len(obj)) >= dropout]
    ymin, ymax = full[:, 1].min(), full[:, 1].max()
    scale = (ymax - ymin) / height                                # canonical units per metre
    size = np.ptp(full[:, [0, 2]], axis=0).max()
    n_ground = int(ground * len(obj))
    gxz = g.uniform(-1.5 * size, 1.5 * size, (n_ground, 2))
    floor = np.stack([gxz[:, 0], np.full(n_ground, ymin), gxz[:, 1]], 1)
    scene = np.concatenate([obj, floor])
    scene = scene + g.normal(0.0, noise * scale, scene.shape)
    lo, hi = scene.min(0), scene.max(0)
    pad = 0.25 * (hi - lo)
    stray = g.uniform(lo - pad, hi + pad, (int(outliers * len(scene)), 3))
    stray[:, 1] = np.maximum(stray[:, 1], ymin)                  # nothing under the floor
    scene = np.concatenate([scene, stray])
    where = np.append(g.uniform(-3, 3, 2), -ymin / scale)        # the canonical origin in metres: floor at z = 0
    truth = Placement(np.zeros((0, 3)), np.array([0.0, 0.0, 1.0]), float(g.uniform(-180, 180)), float(scale),
                      np.zeros(3))
    truth = replace(truth, offset=-truth.scale * truth.rotation @ where)
    truth = replace(truth, scan_points=truth.to_scan(obj))
    return truth.to_scan(scene)[g.permutation(len(scene))], truth, visible


if __name__ == "__main__":                                       # rebuild the template asset
    print(build_templates())
