"""The procedural shape benchmark: signed-distance compositions of primitives, one family a class.

``shape_sdf(name, index)`` is shape ``index`` of class ``name``: a tree of exact primitives (box,
cylinder, cone, capsule, torus, sphere, revolved and extruded polygons) joined by min/max, smooth
union and rigid transforms, so every node is 1-Lipschitz, a valid distance bound. Its parameters
(structural variants and continuous sizes) come from ``np.random.default_rng([CLASS_SEED[name],
index])``, so a shape never changes; ``describe(name, index)`` returns them.

Conventions: y is up and the front of an object faces +z. Each shape is returned centred with the
longest side of its (conservative) bounding box equal to 1.8, the size the canonical frame uses.
Thin parts survive a 32^3 voxelisation of [-1, 1]^3 (voxel side 1/16): plates are built at least
0.08 thick and round rods at least ``ROD`` in radius, for a longest side of at most ~2, and parts
overlap by about a voxel so that each shape is one connected solid at that resolution.

Speed: points are evaluated in cache-sized blocks, and the root and the unions skip costly parts
where a point is farther than ``BAND`` from their bounding box, returning a box bound instead; so
values are exact distances within ``BAND`` of the surface and 1-Lipschitz lower bounds farther
away (signs are always exact).
"""

from __future__ import annotations

import itertools
import math
import operator
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from .classes import CLASSES

SDF = Callable[[np.ndarray], np.ndarray]  # (N, 3) float64 points -> (N,) float64, negative inside
BAND = 0.125        # distances are exact within this band around the surface
CHUNK = 1 << 14     # points evaluated per block
CULL_COST = 3       # union children at least this costly are skipped far from their bounding box
EXTENT = 1.8        # longest side of a shape's bounding box
ROD = 0.055         # least radius of round rods (legs, stems, tubes) at a longest side of <= 2:
                    # after normalisation a rod then always covers a 32^3 voxel centre (> 1/16/sqrt 2)
Vec = Sequence[float] | np.ndarray
AXES = {"x": 0, "y": 1, "z": 2}


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _vec(v: Vec) -> np.ndarray:
    """A point or vector as (3,) float64."""
    v = np.asarray(v, dtype=np.float64)
    assert v.shape == (3,), f"expected a 3-vector, got shape {v.shape}"
    return v


def _unit(v: Vec | str) -> np.ndarray:
    """Unit vector of v, or of the named axis "x" / "y" / "z"."""
    if isinstance(v, str):
        return np.eye(3)[AXES[v]]
    v = _vec(v)
    n = float(np.linalg.norm(v))
    assert n > 1e-12, "zero-length axis"
    return v / n


def _rotation(axis: Vec | str, angle: float) -> np.ndarray:
    """Right-handed rotation by `angle` radians about `axis`: (3, 3) (Rodrigues)."""
    kx, ky, kz = _unit(axis)
    K = np.array([[0.0, -kz, ky], [kz, 0.0, -kx], [-ky, kx, 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def _hypot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sqrt(x^2 + y^2); several times faster than np.hypot, and our values never overflow."""
    return np.sqrt(x * x + y * y)


def _corner(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact distance from 2D offsets (x, y) past a right-angled corner (box and extrusion rule)."""
    return np.minimum(np.maximum(x, y), 0.0) + _hypot(np.maximum(x, 0.0), np.maximum(y, 0.0))


def _axial(P: np.ndarray, mid: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axial coordinate t along unit u from `mid` and radial distance from that axis: (N,), (N,)."""
    k = np.flatnonzero(np.abs(u) > 1e-12)
    if len(k) == 1:                                            # axis-aligned: skip the projection
        k = int(k[0])
        i, j = [a for a in range(3) if a != k]
        t = (P[k] - mid[k]) * np.sign(u[k])
        return t, _hypot(P[i] - mid[i], P[j] - mid[j])
    D = P - mid[:, None]                                       # (3, N)
    t = u @ D
    return t, np.sqrt(np.maximum(np.einsum("ij,ij->j", D, D) - t * t, 0.0))


def _polygon(u: np.ndarray, v: np.ndarray, verts: np.ndarray, closed: bool = True,
             axis: bool = False) -> np.ndarray:
    """Signed distance to a simple closed 2D polygon (iq's sdPolygon, even-odd sign), or with
    closed=False the unsigned distance to the open polyline through verts: (N,). With axis=True
    edges on u = 0 are no surface (the axis of a solid of revolution) and are skipped."""
    d = np.full(u.shape, np.inf)
    inside = np.zeros(u.shape, dtype=bool)
    ends = np.roll(verts, 1, axis=0) if closed else verts[:-1]
    for (xi, yi), (xj, yj) in zip(verts if closed else verts[1:], ends):
        if axis and xi == 0.0 and xj == 0.0:                   # u >= 0: never crossed either
            continue
        ex, ey = xj - xi, yj - yi
        if ex == 0.0 and ey == 0.0:                            # repeated vertex: its neighbours cover it
            continue
        wx, wy = u - xi, v - yi
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        bx, by = wx - ex * t, wy - ey * t
        np.minimum(d, bx * bx + by * by, out=d)
        if closed and ey != 0.0:                               # ray towards +u crosses this edge
            inside ^= ((yi > v) != (yj > v)) & (u < xi + wy * (ex / ey))
    return np.where(inside, -1.0, 1.0) * np.sqrt(d)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (iq); its partial derivatives are in [0, 1] and sum to 1."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - 0.25 * k * h * h


def _smoothstep_profile(ys: Sequence[float], rs: Sequence[float], per_span: int = 3) -> list:
    """Polyline (r, y) through control radii with smoothstep easing between them."""
    out = []
    for (y0, r0), (y1, r1) in zip(zip(ys, rs), zip(ys[1:], rs[1:])):
        for s in np.arange(per_span) / per_span:
            e = s * s * (3.0 - 2.0 * s)
            out.append((r0 + (r1 - r0) * e, y0 + (y1 - y0) * s))
    out.append((rs[-1], ys[-1]))
    return out


# ----------------------------------------------------------------------------------------------
# Nodes and primitives
# ----------------------------------------------------------------------------------------------

class Node:
    """An SDF tree node: distances at (3, N) points, and a box [lo, hi] holding its solid."""

    lo: np.ndarray
    hi: np.ndarray
    cost: int = 1       # rough evaluation cost in "boxes", to decide when culling pays

    def eval(self, P: np.ndarray) -> np.ndarray:
        """Signed distance at P : (3, N) float64 -> (N,) float64."""
        raise NotImplementedError

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Signed distance at points : (N, 3) float64 -> (N,) float64, negative inside."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {points.shape}")
        out = np.empty(len(points))
        for s in range(0, len(points), CHUNK):                 # blocks that stay in cache
            out[s:s + CHUNK] = self.eval(np.ascontiguousarray(points[s:s + CHUNK].T))
        return out


class Sphere(Node):
    """Sphere of radius r about center."""

    def __init__(self, center: Vec, r: float):
        self.c, self.r = _vec(center), float(r)
        self.lo, self.hi = self.c - r, self.c + r

    def eval(self, P):
        D = P - self.c[:, None]
        return np.sqrt(np.einsum("ij,ij->j", D, D)) - self.r


class Box(Node):
    """Axis-aligned box of full `size` about center; `round` rounds all edges, `corner` the
    vertical (y) edges only, giving rounded-rectangle and stadium slabs."""

    def __init__(self, center: Vec, size: Vec, round: float = 0.0, corner: float = 0.0):
        self.c, half = _vec(center), 0.5 * _vec(size)
        assert np.all(half > 0), f"box size must be positive, got {size}"
        # thin random boxes can be thinner than the rounding asked for: shrink the rounding to fit
        round = min(round, half[1], min(half[0], half[2]))
        corner = min(corner, min(half[0], half[2]) - round)
        self.round, self.corner = float(round), float(corner)
        self.inner = half - round - np.array([corner, 0.0, corner])
        self.lo, self.hi = self.c - half, self.c + half

    def eval(self, P):
        x, y, z = (np.abs(P[a] - self.c[a]) - self.inner[a] for a in range(3))
        if self.corner == 0.0:
            out = np.sqrt(np.maximum(x, 0) ** 2 + np.maximum(y, 0) ** 2 + np.maximum(z, 0) ** 2)
            out += np.minimum(np.maximum(np.maximum(x, y), z), 0.0)
        else:
            out = _corner(_corner(x, z) - self.corner, y)
        return out - self.round


class Cylinder(Node):
    """Capped cylinder of radius r from a to b; `round` rounds its rims."""

    def __init__(self, a: Vec, b: Vec, r: float, round: float = 0.0):
        a, b = _vec(a), _vec(b)
        self.mid, self.u = 0.5 * (a + b), _unit(b - a)
        self.h, self.r, self.round = 0.5 * float(np.linalg.norm(b - a)), float(r), float(round)
        assert round <= min(r, self.h) + 1e-9, f"round {round} too large for cylinder r={r}, h={self.h}"
        ext = r * np.sqrt(np.maximum(1.0 - self.u**2, 0.0))    # exact box of a disc's rim
        self.lo, self.hi = np.minimum(a, b) - ext, np.maximum(a, b) + ext

    def eval(self, P):
        t, rad = _axial(P, self.mid, self.u)
        return _corner(rad - (self.r - self.round), np.abs(t) - (self.h - self.round)) - self.round


class Cone(Node):
    """Capped cone (frustum) from a (radius ra) to b (radius rb) (iq's exact sdCappedCone)."""

    def __init__(self, a: Vec, b: Vec, ra: float, rb: float):
        a, b = _vec(a), _vec(b)
        self.mid, self.u = 0.5 * (a + b), _unit(b - a)
        self.h, self.ra, self.rb = 0.5 * float(np.linalg.norm(b - a)), float(ra), float(rb)
        ext = max(ra, rb) * np.sqrt(np.maximum(1.0 - self.u**2, 0.0))
        self.lo, self.hi = np.minimum(a, b) - ext, np.maximum(a, b) + ext
        self.cost = 2

    def eval(self, P):
        t, q = _axial(P, self.mid, self.u)
        h, ra, rb = self.h, self.ra, self.rb
        kx, ky = rb - ra, 2.0 * h                              # k2 in iq's notation
        ax = q - np.minimum(q, np.where(t < 0.0, ra, rb))
        ay = np.abs(t) - h
        s = np.clip(((rb - q) * kx + (h - t) * ky) / (kx * kx + ky * ky), 0.0, 1.0)
        bx, by = q - rb + kx * s, t - h + ky * s
        sign = np.where((bx < 0.0) & (ay < 0.0), -1.0, 1.0)
        return sign * np.sqrt(np.minimum(ax * ax + ay * ay, bx * bx + by * by))


class Capsule(Node):
    """Capsule: points within r of the segment a-b."""

    def __init__(self, a: Vec, b: Vec, r: float):
        self.a, self.ba, self.r = _vec(a), _vec(b) - _vec(a), float(r)
        self.lo, self.hi = np.minimum(self.a, _vec(b)) - r, np.maximum(self.a, _vec(b)) + r

    def eval(self, P):
        D = P - self.a[:, None]
        t = np.clip(self.ba @ D / (self.ba @ self.ba), 0.0, 1.0)
        D -= self.ba[:, None] * t
        return np.sqrt(np.einsum("ij,ij->j", D, D)) - self.r


class Torus(Node):
    """Torus about center: ring radius R in the plane normal to `axis`, tube radius r."""

    def __init__(self, center: Vec, R: float, r: float, axis: Vec | str = "y"):
        self.c, self.u, self.R, self.r = _vec(center), _unit(axis), float(R), float(r)
        ext = R * np.sqrt(np.maximum(1.0 - self.u**2, 0.0)) + r
        self.lo, self.hi = self.c - ext, self.c + ext

    def eval(self, P):
        t, rad = _axial(P, self.c, self.u)
        return _hypot(rad - self.R, t) - self.r


class Lathe(Node):
    """Solid of revolution about the vertical axis through (x, z) = center of a 2D polygon of
    (radius, y) vertices, which should run along the axis (radius 0) to close the solid; with
    shell > 0 the profile is an open polyline instead, thickened to a wall `shell` thick."""

    def __init__(self, profile: Sequence[tuple[float, float]], center: tuple[float, float] = (0.0, 0.0),
                 shell: float = 0.0):
        self.verts = np.asarray(profile, dtype=np.float64)
        assert self.verts.ndim == 2 and self.verts.shape[1] == 2 and len(self.verts) >= 2
        assert self.verts[:, 0].min() >= -1e-9, "lathe radii must be >= 0"
        self.cx, self.cz = map(float, center)
        self.half = 0.5 * float(shell)
        R = self.verts[:, 0].max() + self.half
        self.lo = np.array([self.cx - R, self.verts[:, 1].min() - self.half, self.cz - R])
        self.hi = np.array([self.cx + R, self.verts[:, 1].max() + self.half, self.cz + R])
        self.cost = 1 + len(self.verts) // 2

    def eval(self, P):
        rad = _hypot(P[0] - self.cx, P[2] - self.cz)
        if self.half > 0.0:
            return _polygon(rad, P[1], self.verts, closed=False) - self.half
        return _polygon(rad, P[1], self.verts, axis=True)


class Prism(Node):
    """A 2D polygon extruded along `axis` over `depth` about `center` (exact extrusion).
    The polygon's coordinates are (z, y) for axis "x" (a side profile), (x, z) for "y" (a plan)
    and (x, y) for "z" (a front profile)."""

    PLANES = {"x": (2, 1), "y": (0, 2), "z": (0, 1)}

    def __init__(self, polygon: Sequence[tuple[float, float]], axis: str, center: float, depth: float):
        self.verts = np.asarray(polygon, dtype=np.float64)
        self.k, (self.i, self.j) = AXES[axis], self.PLANES[axis]
        self.c, self.h = float(center), 0.5 * float(depth)
        self.lo, self.hi = np.zeros(3), np.zeros(3)
        self.lo[[self.i, self.j]], self.hi[[self.i, self.j]] = self.verts.min(0), self.verts.max(0)
        self.lo[self.k], self.hi[self.k] = self.c - self.h, self.c + self.h
        self.cost = 1 + len(self.verts) // 2

    def eval(self, P):
        d2 = _polygon(P[self.i], P[self.j], self.verts)
        return _corner(d2, np.abs(P[self.k] - self.c) - self.h)


# ----------------------------------------------------------------------------------------------
# Combinators and transforms
# ----------------------------------------------------------------------------------------------

def _merge_bounds(nodes: Sequence[Node], pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    return (np.min([n.lo for n in nodes], axis=0) - pad, np.max([n.hi for n in nodes], axis=0) + pad)


def _volume(node: Node) -> float:
    return float(np.prod(node.hi - node.lo + 2 * BAND))


class Union(Node):
    """Union (min). Costly children much smaller than the union are culled by their bounding
    box (see `_culled`)."""

    def __init__(self, *children: Node):
        self.children = [c for c in children if c is not None]
        assert self.children, "empty union"
        self.lo, self.hi = _merge_bounds(self.children)
        self.cost = sum(c.cost for c in self.children)
        self.cull = [c.cost >= CULL_COST and _volume(c) < 0.5 * _volume(self) for c in self.children]

    def eval(self, P):
        out = None
        for child, cull in zip(self.children, self.cull):
            d = _culled(child, P) if cull else child.eval(P)
            out = d if out is None else np.minimum(out, d, out=out)
        return out


def _culled(node: Node, P: np.ndarray) -> np.ndarray:
    """max(c, min(d, BAND)) with c the Chebyshev distance to node's box, a lower bound of d:
    equal to d wherever d <= BAND, 1-Lipschitz, and needing d only where c <= BAND."""
    c = np.maximum(node.lo[0] - P[0], P[0] - node.hi[0])
    for a in (1, 2):
        np.maximum(c, np.maximum(node.lo[a] - P[a], P[a] - node.hi[a]), out=c)
    near = np.flatnonzero(c <= BAND)
    if len(near):
        c[near] = np.maximum(c[near], np.minimum(node.eval(P[:, near]), BAND))
    return c


class SmoothUnion(Node):
    """Union blended over distance k (polynomial smooth min), for fillets between parts."""

    def __init__(self, k: float, *children: Node):
        self.k, self.children = float(k), list(children)
        self.lo, self.hi = _merge_bounds(self.children, pad=0.25 * k * (len(children) - 1))
        self.cost = sum(c.cost for c in self.children)

    def eval(self, P):
        out = self.children[0].eval(P)
        for child in self.children[1:]:
            out = _smin(out, child.eval(P), self.k)
        return out


class Subtract(Node):
    """a minus b."""

    def __init__(self, a: Node, b: Node):
        self.a, self.b = a, b
        self.lo, self.hi, self.cost = a.lo, a.hi, a.cost + b.cost

    def eval(self, P):
        return np.maximum(self.a.eval(P), -self.b.eval(P))


class Intersect(Node):
    """Intersection of a and b."""

    def __init__(self, a: Node, b: Node):
        self.a, self.b = a, b
        self.lo, self.hi = np.maximum(a.lo, b.lo), np.minimum(a.hi, b.hi)
        self.cost = a.cost + b.cost

    def eval(self, P):
        return np.maximum(self.a.eval(P), self.b.eval(P))


class Rotate(Node):
    """child rotated by `angle` radians about `axis` through `pivot`."""

    def __init__(self, child: Node, axis: Vec | str, angle: float, pivot: Vec = (0.0, 0.0, 0.0)):
        self.child, self.R, self.pivot = child, _rotation(axis, angle), _vec(pivot)
        corners = np.array(list(itertools.product(*zip(child.lo, child.hi))))       # (8, 3)
        moved = (corners - self.pivot) @ self.R.T + self.pivot
        self.lo, self.hi, self.cost = moved.min(0), moved.max(0), child.cost

    def eval(self, P):
        p = self.pivot[:, None]
        return self.child.eval(self.R.T @ (P - p) + p)


class Mirror(Node):
    """child plus its mirror images across the planes x=0 / y=0 / z=0 named in `axes` (a fold);
    the child should lie on the positive side of those planes."""

    def __init__(self, child: Node, axes: str):
        self.child, self.axes = child, [AXES[a] for a in axes]
        self.lo, self.hi, self.cost = child.lo.copy(), child.hi.copy(), child.cost
        for a in self.axes:
            self.hi[a] = max(child.hi[a], 0.0)
            self.lo[a] = -self.hi[a]

    def eval(self, P):
        P = P.copy()
        for a in self.axes:
            np.abs(P[a], out=P[a])
        return self.child.eval(P)


class Repeat(Node):
    """`count` copies of child spaced `spacing` apart along `axis` (limited repetition); exact for
    children symmetric about their centre plane, such as boxes and axis-aligned cylinders."""

    def __init__(self, child: Node, axis: str, count: int, spacing: float):
        self.child, self.a, self.n, self.s = child, AXES[axis], int(count), float(spacing)
        assert self.n >= 1 and self.s > 0.0
        self.c0 = 0.5 * (child.lo[self.a] + child.hi[self.a])
        self.lo, self.hi, self.cost = child.lo.copy(), child.hi.copy(), child.cost
        self.hi[self.a] += (self.n - 1) * self.s

    def eval(self, P):
        P = P.copy()
        cell = np.clip(np.round((P[self.a] - self.c0) / self.s), 0, self.n - 1)
        P[self.a] -= self.s * cell
        return self.child.eval(P)


class Inflate(Node):
    """child grown by r (rounds its convex edges)."""

    def __init__(self, child: Node, r: float):
        self.child, self.r = child, float(r)
        self.lo, self.hi, self.cost = child.lo - r, child.hi + r, child.cost

    def eval(self, P):
        return self.child.eval(P) - self.r


class Normalize(Node):
    """child centred at the origin and uniformly scaled so its box's longest side is `extent`."""

    def __init__(self, child: Node, extent: float = EXTENT):
        self.child, self.center = child, 0.5 * (child.lo + child.hi)
        self.scale = extent / float((child.hi - child.lo).max())
        self.lo, self.hi = (child.lo - self.center) * self.scale, (child.hi - self.center) * self.scale
        self.cost = child.cost

    def eval(self, P):
        return self.scale * _culled(self.child, P / self.scale + self.center[:, None])


# ----------------------------------------------------------------------------------------------
# Parameter draws
# ----------------------------------------------------------------------------------------------

class _Draw:
    """Draws one shape's parameters from its generator and records them for `describe`."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.params: dict[str, float | int | str | bool] = {}

    def _record(self, name: str, value):
        assert name not in self.params, f"parameter {name!r} drawn twice"
        self.params[name] = value
        return value

    def uniform(self, name: str, low: float, high: float) -> float:
        return self._record(name, round(float(self.rng.uniform(low, high)), 4))

    def integer(self, name: str, low: int, high: int) -> int:
        """Uniform integer in [low, high], both included."""
        return self._record(name, int(self.rng.integers(low, high + 1)))

    def choice(self, name: str, options: Sequence, p: Sequence[float] | None = None):
        return self._record(name, options[int(self.rng.choice(len(options), p=p))])

    def flag(self, name: str, prob: float) -> bool:
        return self._record(name, bool(self.rng.random() < prob))


# ----------------------------------------------------------------------------------------------
# Furniture: chair, table, sofa, bench, bed, bookshelf
# ----------------------------------------------------------------------------------------------

def _leg(top: Vec, foot: Vec, t: float, style: str) -> Node:
    """A leg of thickness t from top to foot: "square" (vertical only), "round" or "tapered"."""
    top, foot = _vec(top), _vec(foot)
    if style == "square":
        assert np.allclose(top[[0, 2]], foot[[0, 2]]), "square legs are vertical"
        return Box(0.5 * (top + foot), (t, top[1] - foot[1], t), round=0.01)
    if style == "round":
        return Cylinder(foot, top, max(0.5 * t, ROD))
    return Cone(foot, top, ROD, max(0.5 * t, 0.07))


def _chair(d: _Draw) -> Node:
    """Seat, back and a base (four legs, three legs, swivel star or sled runners); optional arms."""
    base = d.choice("base", ("four", "three", "swivel", "sled"), p=(0.45, 0.1, 0.27, 0.18))
    back = d.choice("back", ("solid", "vertical_slats", "horizontal_slats"), p=(0.5, 0.25, 0.25))
    arms = d.flag("arms", 0.6 if base == "swivel" else 0.3)
    w = d.uniform("seat_width", 0.75, 1.05)
    depth = d.uniform("seat_depth", 0.7, 0.95)
    h = d.uniform("seat_height", 0.7, 0.95)                    # floor to the top of the seat
    ts = d.uniform("seat_thickness", 0.09, 0.16)
    hb = d.uniform("back_height", 0.55, 1.0)                   # above the seat
    tb = d.uniform("back_thickness", 0.09, 0.14)
    bw = w * d.uniform("back_width_ratio", 0.8, 1.0)
    tilt = math.radians(d.uniform("back_tilt_deg", 0.0, 15.0))
    t = d.uniform("leg_thickness", 0.09, 0.13)
    under = h - ts
    seat = Box((0, h - ts / 2, 0), (w, ts, depth), round=0.03)

    # back: built upright on the rear edge of the seat, then tilted backwards about that edge
    zb, yb = -depth / 2 + tb / 2, h + hb / 2 - ts / 2
    if back == "solid":
        rest = Box((0, yb, zb), (bw, hb + ts, tb), round=0.03)
    else:
        rail = d.uniform("top_rail", 0.1, 0.18)
        posts = Mirror(Box((bw / 2 - t / 2, yb, zb), (t, hb + ts, tb)), "x")
        top = Box((0, h + hb - rail / 2, zb), (bw, rail, tb))
        inner, span, sd = bw - 2 * t, hb - rail, max(0.08, 0.8 * tb)
        if back == "vertical_slats":
            n = d.integer("slats", 1, max(1, int(inner / 0.16)))
            cell = inner / n
            sw = max(0.08, min(0.5 * cell, cell - 0.07))
            slats = Repeat(Box((-inner / 2 + cell / 2, h + span / 2, zb), (sw, span, sd)), "x", n, cell)
        else:
            n = d.integer("slats", 1, max(1, int(span / 0.2)))
            cell = span / n
            sh = max(0.08, min(0.5 * cell, cell - 0.07))
            slats = Repeat(Box((0, h + cell / 2, zb), (inner + 0.02, sh, sd)), "y", n, cell)
        rest = Union(posts, top, slats)
    parts = [seat, Rotate(rest, "x", -tilt, pivot=(0, h, -depth / 2))]

    if base in ("four", "three"):
        style = d.choice("leg_style", ("square", "round", "tapered"))
        inset = d.uniform("leg_inset", 0.0, 0.08)
        splay = 0.0 if style == "square" else d.uniform("leg_splay", 0.0, 0.1)
        x, z = w / 2 - inset - t / 2, depth / 2 - inset - t / 2

        def leg(x: float, z: float, sx: float, sz: float) -> Node:
            return _leg((x, under + 0.01, z), (x + sx * splay, 0, z + sz * splay), t, style)

        if base == "four":
            legs = Mirror(leg(x, z, 1, 1), "xz")
            if d.flag("stretchers", 0.4):
                yr = d.uniform("stretcher_height", 0.2, 0.45) * under
                out = splay * (1 - yr / under)
                rung = Cylinder((x + out, yr, -z - out), (x + out, yr, z + out), ROD)
                legs = Union(legs, Mirror(rung, "x"))
        else:
            legs = Union(Mirror(leg(x, z, 1, 1), "x"), leg(0.0, -z, 0, -1))
    elif base == "swivel":
        R = d.uniform("star_radius", 0.32, 0.45)
        col = d.uniform("column_radius", ROD, 0.08)
        hub = 0.13
        feet = [(R * math.sin(a), R * math.cos(a)) for a in np.arange(5) * (2 * math.pi / 5)]
        legs = Union(Cylinder((0, hub - 0.03, 0), (0, under + 0.01, 0), col),
                     Cylinder((0, under - 0.05, 0), (0, under + 0.01, 0), 0.16),
                     *[Capsule((0, hub, 0), (x, 0.09, z), ROD) for x, z in feet],
                     *[Sphere((x, ROD, z), ROD) for x, z in feet])
    else:                                                      # sled: a bent tube each side
        r = d.uniform("tube_radius", ROD, 0.07)
        x, zf, zr = w / 2 - r, depth / 2 - 0.06, -depth / 2 + 0.06
        legs = Mirror(Union(Capsule((x, under, zf - 0.06), (x, r, zf), r),
                            Capsule((x, r, zf), (x, r, zr), r),
                            Capsule((x, r, zr), (x, under, zr + 0.06), r)), "x")
    parts.append(legs)

    if arms:
        ah = d.uniform("arm_height", 0.2, 0.32)
        aw = d.uniform("arm_width", 0.08, 0.12)
        x = w / 2 - aw / 2 + 0.02
        zp = 0.0 if base == "swivel" else 0.3 * depth
        parts.append(Mirror(Union(Box((x, h + ah, -0.075 * depth), (aw, 0.08, 0.85 * depth), round=0.02),
                                  Box((x, h + ah / 2 - ts / 2, zp), (aw, ah + ts, 0.09))), "x"))
    return Union(*parts)


def _table(d: _Draw) -> Node:
    """A top (rectangular, round or oval) on four legs, a pedestal or trestle ends; optional shelf."""
    top = d.choice("top", ("rectangular", "round", "oval"), p=(0.5, 0.25, 0.25))
    if top == "rectangular":
        base = d.choice("base", ("four", "pedestal", "trestle"), p=(0.5, 0.2, 0.3))
    else:
        base = d.choice("base", ("four", "pedestal"), p=(0.4, 0.6))
    height = d.uniform("height", 0.45, 0.8)                    # coffee table .. dining table
    tt = d.uniform("top_thickness", 0.08, 0.13)
    if top == "round":
        W = D = d.uniform("diameter", 0.9, 1.5)
        slab = Cylinder((0, height - tt, 0), (0, height, 0), W / 2, round=0.02)
    else:
        W = d.uniform("width", 1.2, 2.0)
        D = W * d.uniform("depth_ratio", 0.45, 0.85)
        corner = D / 2 - 0.02 if top == "oval" else d.uniform("corner_radius", 0.0, 0.12)
        slab = Box((0, height - tt / 2, 0), (W, tt, D), round=0.02, corner=corner)
    under = height - tt + 0.01
    parts = [slab]

    if base == "four":
        style = d.choice("leg_style", ("square", "round", "tapered"))
        t = d.uniform("leg_thickness", 0.09, 0.14)
        inset = d.uniform("leg_inset", 0.02, 0.15)
        if top == "round":
            x = z = (W / 2 - inset - t / 2) / math.sqrt(2)
        else:
            x, z = W / 2 - inset - t / 2 - (0.15 * D if top == "oval" else 0.0), D / 2 - inset - t / 2
        parts.append(Mirror(_leg((x, under, z), (x, 0, z), t, style), "xz"))
        if top != "round" and d.flag("apron", 0.5):
            ah = d.uniform("apron_height", 0.08, 0.14)
            ya = height - tt - ah / 2
            parts.append(Union(Mirror(Box((0, ya, z), (2 * x, ah, 0.08)), "z"),
                               Mirror(Box((x, ya, 0), (0.08, ah, 2 * z)), "x")))
        if top != "round" and d.flag("shelf", 0.35):
            ys = d.uniform("shelf_height", 0.15, 0.35) * height
            parts.append(Box((0, ys, 0), (2 * x + t, 0.08, 2 * z + t)))
    elif base == "pedestal":
        double = top != "round" and W > 1.5 and d.flag("double", 0.6)
        r = d.uniform("column_radius", 0.07, 0.13)
        taper = d.uniform("column_taper", 1.0, 1.8)
        foot = d.choice("foot", ("disc", "cross"))
        fr = d.uniform("foot_radius", 0.25, 0.42) * (D if double else min(W, D)) / 0.9
        fh = d.uniform("foot_height", 0.08, 0.12)
        xs = (-0.3 * W, 0.3 * W) if double else (0.0,)
        for x in xs:
            parts.append(Cone((x, 0, 0), (x, under, 0), r * taper, r))
            if double or foot == "cross":
                arms = [Box((x, fh / 2, 0), (0.12, fh, 2 * fr), round=0.02)]
                if not double:
                    arms.append(Box((x, fh / 2, 0), (2 * fr, fh, 0.12), round=0.02))
                parts.extend(arms)
            else:
                parts.append(Cylinder((x, 0, 0), (x, fh, 0), fr, round=0.02))
        if double:
            parts.append(Box((0, under - 0.05, 0), (0.6 * W, 0.1, 0.1)))
    else:                                                      # trestle: two end panels
        pt = d.uniform("panel_thickness", 0.08, 0.14)
        inset = d.uniform("panel_inset", 0.04, 0.2)
        ratio = d.uniform("panel_depth_ratio", 0.25, 1.0)
        x = W / 2 - inset - pt / 2
        end = Box((x, under / 2, 0), (pt, under, ratio * D))
        if ratio < 0.7:
            end = Union(end, Box((x, 0.05, 0), (pt + 0.04, 0.1, 0.85 * D), round=0.02),
                        Box((x, under - 0.04, 0), (pt, 0.08, 0.8 * D)))
        parts.append(Mirror(end, "x"))
        if d.flag("stretcher", 0.6):
            parts.append(Box((0, 0.35 * under, 0), (2 * x, 0.1, 0.09)))
        elif d.flag("shelf", 0.4):
            parts.append(Box((0, 0.25 * under, 0), (2 * x, 0.08, 0.8 * ratio * D)))
    return Union(*parts)


def _sofa(d: _Draw) -> Node:
    """Upholstered blocks: base, back, arms (both, one or none), 1-3 seat cushions; optional back
    cushions, feet and a chaise (L-shape)."""
    W = d.uniform("width", 1.5, 2.2)
    D = d.uniform("depth", 0.75, 1.0)
    fh = d.uniform("feet_height", 0.06, 0.14) if d.flag("feet", 0.5) else 0.0
    seat_h = d.uniform("seat_height", 0.38, 0.5)               # top of the seat cushions
    back_h = d.uniform("back_height", 0.75, 1.0)
    back_t = d.uniform("back_thickness", 0.15, 0.28)
    arms = d.choice("arms", ("both", "one", "none"), p=(0.7, 0.12, 0.18))
    arm_w = d.uniform("arm_width", 0.12, 0.25)
    arm_h = d.uniform("arm_height", seat_h + 0.1, min(back_h - 0.05, seat_h + 0.3))
    arm_style = d.choice("arm_style", ("square", "rolled"))
    n = d.integer("seats", 1, 3)
    ct = d.uniform("cushion_thickness", 0.12, 0.2)
    chaise = d.flag("chaise", 0.2)
    side = d.choice("side", (-1, 1))                           # the single arm or the chaise side
    ext = d.uniform("chaise_length", 0.5, 0.8) if chaise else 0.0
    bct = d.uniform("back_cushion_thickness", 0.12, 0.2) if d.flag("back_cushions", 0.5) else 0.0

    yb = seat_h - ct                                           # top of the base block
    parts = [Box((0, (fh + yb) / 2, 0), (W, yb - fh, D), round=0.04),
             Box((0, (fh + back_h) / 2, -D / 2 + back_t / 2), (W, back_h - fh, back_t), round=0.06)]
    arm_sides = {"both": (-1, 1), "one": (-side,) if chaise else (side,), "none": ()}[arms]
    for s in arm_sides:
        z1 = D / 2 + (ext if chaise and s == side else 0.0)
        x = s * (W / 2 - arm_w / 2)
        arm = [Box((x, (fh + arm_h) / 2, (z1 - D / 2) / 2), (arm_w, arm_h - fh, z1 + D / 2), round=0.05)]
        if arm_style == "rolled":                              # a bolster overhanging outwards
            r = 0.5 * arm_w + 0.03
            xr, yr = x + s * 0.03, arm_h - r + 0.02
            arm.append(Cylinder((xr, yr, -D / 2 + 0.02), (xr, yr, z1), r))
        parts.extend(arm)

    # cushions between the arms, in front of the back (and its cushions)
    x0 = -W / 2 + (arm_w if -1 in arm_sides else 0.0)
    x1 = W / 2 - (arm_w if 1 in arm_sides else 0.0)
    cell, gap, z0 = (x1 - x0) / n, 0.035, -D / 2 + back_t + bct
    r = min(0.06, ct / 2 - 0.01)
    seat = Box((x0 + cell / 2, seat_h - ct / 2, (z0 + D / 2) / 2), (cell - gap, ct, D / 2 - z0), round=r)
    parts.append(Repeat(seat, "x", n, cell))
    if bct:
        yt = back_h - 0.04
        zc = -D / 2 + back_t + bct / 2 - 0.02
        back = Box((x0 + cell / 2, (seat_h + yt) / 2, zc), (cell - gap, yt - seat_h, bct), round=0.05)
        parts.append(Repeat(back, "x", n, cell))
    if chaise:                                                 # base and cushion extended forwards
        xc, zc = side * (W / 2 - (arm_w if side in arm_sides else 0.0) - cell / 2), D / 2 + ext / 2
        parts.append(Box((xc, (fh + yb) / 2, zc - 0.03), (cell + 0.04, yb - fh, ext + 0.06), round=0.04))
        parts.append(Box((xc, seat_h - ct / 2, zc), (cell - gap, ct, ext - gap), round=r))
    if fh:
        xf, zf = W / 2 - 0.1, D / 2 - 0.1
        foot = lambda x, z: Cylinder((x, 0, z), (x, fh + 0.02, z), ROD)
        if chaise:
            parts += [Mirror(foot(xf, -zf), "x"), foot(-side * xf, zf), foot(side * xf, zf + ext)]
        else:
            parts.append(Mirror(foot(xf, zf), "xz"))
    return Union(*parts)


def _bench(d: _Draw) -> Node:
    """A long thin seat (slab or slats) on legs, end panels or A-frames; optional back and arms."""
    L = d.uniform("length", 1.3, 2.0)
    D = d.uniform("seat_depth", 0.35, 0.55)
    h = d.uniform("seat_height", 0.4, 0.52)
    ts = d.uniform("seat_thickness", 0.09, 0.12)
    seat = d.choice("seat", ("slab", "slats"))
    support = d.choice("support", ("legs", "panels", "a_frame"), p=(0.45, 0.35, 0.2))
    back = d.flag("back", 0.45)
    arms = d.flag("arms", 0.5 if back else 0.0)
    inset = d.uniform("support_inset", 0.03, 0.2) * L / 2
    t = d.uniform("leg_thickness", 0.09, 0.12)
    under = h - ts + 0.01
    xs = L / 2 - inset - t / 2                                 # x of the supports
    parts = []
    if seat == "slab":
        parts.append(Box((0, h - ts / 2, 0), (L, ts, D), round=0.02))
    else:
        n = d.integer("slats", 2, max(2, int(D / 0.14)))
        cell = D / n
        slat = Box((0, h - ts / 2, -D / 2 + cell / 2), (L, ts, max(0.08, cell - 0.06)))
        parts.append(Repeat(slat, "z", n, cell))
        parts.append(Mirror(Box((xs, under - 0.04, 0), (t, 0.08, D)), "x"))

    if support == "legs":
        style = d.choice("leg_style", ("square", "round"))
        z = D / 2 - t / 2 - 0.03
        parts.append(Mirror(_leg((xs, under, z), (xs, 0, z), t, style), "xz"))
        if L > 1.7:
            parts.append(Mirror(_leg((0, under, z), (0, 0, z), t, style), "z"))
        if d.flag("stretcher", 0.5):
            parts.append(Mirror(Box((xs, 0.25 * h, 0), (0.08, 0.08, 2 * z)), "x"))
    elif support == "panels":
        pt = d.uniform("panel_thickness", 0.08, 0.13)
        panel = Box((xs, under / 2, 0), (pt, under, 0.9 * D))
        if d.flag("panel_notch", 0.6):
            notch = d.uniform("notch_height", 0.08, 0.2)           # an arch cut between two feet
            panel = Subtract(panel, Box((xs, 0, 0), (pt + 0.1, 2 * notch, 0.5 * D)))
        parts.append(Mirror(panel, "x"))
    else:                                                      # A-frame: legs splayed front-back
        parts.append(Mirror(Cylinder((xs, under, 0.04), (xs, 0.0, D / 2 - 0.02), ROD), "xz"))
        ys = 0.3 * h                                           # a cross bar in each frame, a stretcher
        zs = 0.04 + (D / 2 - 0.06) * (1.0 - ys / under)
        parts.append(Mirror(Box((xs, ys, 0), (0.08, 0.08, 2 * zs)), "x"))
        parts.append(Box((0, ys, 0), (2 * xs, 0.08, 0.08)))

    if back:
        hb = d.uniform("back_height", 0.3, 0.5)
        tilt = math.radians(d.uniform("back_tilt_deg", 3.0, 15.0))
        style = d.choice("back_style", ("slats", "panel"))
        zp = -D / 2 + 0.045
        rest = [Mirror(Box((xs, (under + h + hb) / 2, zp), (0.09, h + hb - under, 0.09)), "x")]
        if style == "panel":
            rest.append(Box((0, h + 0.55 * hb, zp + 0.07), (L - 0.04, 0.7 * hb, 0.08), round=0.02))
        else:
            n = d.integer("back_slats", 2, 3)
            cell = 0.8 * hb / n
            slat = Box((0, h + hb - (n - 0.5) * cell, zp + 0.07), (L - 0.04, max(0.08, cell - 0.05), 0.08))
            rest.append(Repeat(slat, "y", n, cell))
        parts.append(Rotate(Union(*rest), "x", -tilt, pivot=(0, h, -D / 2)))
    if arms:
        ah = d.uniform("arm_height", 0.2, 0.28)
        xa = L / 2 - 0.05
        parts.append(Mirror(Union(Box((xa, h + ah, 0.02), (0.09, 0.08, D), round=0.02),
                                  Box((xa, h + ah / 2, D / 2 - 0.06), (0.09, ah, 0.09))), "x"))
    return Union(*parts)


def _bed(d: _Draw) -> Node:
    """A mattress on a frame with a headboard; optional footboard and pillows; legs, platform or bunk."""
    W = d.uniform("width", 0.95, 1.8)
    L = d.uniform("length", 1.9, 2.15)
    kind = d.choice("frame", ("legs", "platform", "bunk"), p=(0.45, 0.4, 0.15))
    fh = d.uniform("frame_height", 0.15, 0.3)
    mt = d.uniform("mattress_thickness", 0.15, 0.28)
    clear = d.uniform("clearance", 0.1, 0.25) if kind != "platform" else 0.0

    def bunk_level(y: float) -> tuple[Node, float]:
        """Frame and mattress with the frame's underside at y; returns them and the mattress top."""
        frame = Box((0, y + fh / 2, 0), (W, fh, L), round=0.02)
        top = y + fh + mt - 0.06
        mattress = Box((0, top - mt / 2, 0), (W - 0.08, mt, L - 0.1), round=min(0.06, mt / 2 - 0.01))
        return Union(frame, mattress), top

    level, ym = bunk_level(max(clear, 0.1))
    parts = [level]
    if kind == "legs":
        leg = Box((W / 2 - 0.06, (clear + 0.02) / 2, L / 2 - 0.06), (0.1, clear + 0.02, 0.1))
        parts.append(Mirror(leg, "xz"))
    elif kind == "platform":
        parts.append(Box((0, 0.06, 0), (W - 0.14, 0.12, L - 0.14)))
    if kind == "bunk":
        y2 = ym + d.uniform("bunk_gap", 0.55, 0.75)
        upper, ym2 = bunk_level(y2)
        ytop = ym2 + 0.3
        parts += [upper,
                  Mirror(Box((W / 2 + 0.01, ytop / 2, L / 2 + 0.01), (0.1, ytop, 0.1)), "xz"),
                  Mirror(Box((W / 2, ym2 + 0.18, 0), (0.08, 0.1, L)), "x"),
                  Mirror(Box((0, ytop - 0.08, L / 2 + 0.01), (W, 0.16, 0.08)), "z")]
        lx = W / 2 - 0.01                                      # ladder on the +x side
        zl = d.uniform("ladder_position", -0.3, 0.3) * L
        rungs = max(2, int((y2 - 0.15) / 0.3))
        parts += [Box((lx, y2 / 2 + 0.1, zl - 0.2), (0.08, y2 + 0.2, 0.08)),
                  Box((lx, y2 / 2 + 0.1, zl + 0.2), (0.08, y2 + 0.2, 0.08)),
                  Repeat(Box((lx, 0.3, zl), (0.08, 0.08, 0.4)), "y", rungs, (y2 - 0.3) / max(rungs - 1, 1))]
        return Union(*parts)

    head = d.choice("headboard", ("panel", "arched", "slatted", "upholstered"))
    hh = d.uniform("headboard_height", 0.4, 0.8)               # above the mattress
    ht = d.uniform("headboard_thickness", 0.08, 0.12)
    foot = d.flag("footboard", 0.4)

    def board(style: str, z: float, top: float, thick: float) -> Node:
        """A head- or footboard of `style` standing at z, from the floor to `top`."""
        c = (0, top / 2, z)
        if style == "panel":
            return Box(c, (W + 0.06, top, thick), round=0.02)
        if style == "arched":
            R = W * 0.9
            arc = Cylinder((0, top - R, z - thick), (0, top - R, z + thick), R)
            return Intersect(Box(c, (W + 0.06, top, thick)), arc)
        if style == "upholstered":
            return Box(c, (W + 0.1, top, max(thick, 0.14)), round=0.06)
        posts = Mirror(Box((W / 2 - 0.02, top / 2, z), (0.1, top, thick)), "x")
        rails = Box((0, top - 0.06, z), (W, 0.12, thick))
        n = max(2, int(W / 0.2))
        cell = (W - 0.1) / n
        slat = Box((-W / 2 + 0.05 + cell / 2, (ym + top) / 2, z), (0.08, top - ym, thick * 0.8))
        slats = Repeat(slat, "x", n, cell)
        return Union(posts, rails, slats)

    parts.append(board(head, -L / 2 + ht / 2, ym + hh, ht))   # flush with the frame's ends
    if foot:
        parts.append(board(head, L / 2 - ht / 2, ym + d.uniform("footboard_height", 0.05, 0.3), ht))
    pillows = d.integer("pillows", 0, 2 if W > 1.3 else 1)
    pt = d.uniform("pillow_thickness", 0.1, 0.15)
    zp, yp = -L / 2 + 0.28, ym + pt / 2 - 0.05
    if pillows == 1:
        parts.append(Box((0, yp, zp), (0.7 * W, pt, 0.35), round=pt / 2 - 0.005))
    elif pillows == 2:
        parts.append(Mirror(Box((W / 4 + 0.01, yp, zp), (W / 2 - 0.1, pt, 0.35), round=pt / 2 - 0.005), "x"))
    if d.flag("blanket", 0.4):
        zb = d.uniform("blanket_start", 0.0, 0.25) * L
        parts.append(Box((0, ym - 0.05, (zb + L / 2) / 2), (W - 0.02, 0.14, L / 2 - zb + 0.02), round=0.03))
    return Union(*parts)


def _bookshelf(d: _Draw) -> Node:
    """Side panels, top and bottom with 1-5 shelves; optional back, dividers, doors and books."""
    W = d.uniform("width", 0.6, 1.6)
    H = d.uniform("height", 0.9, 2.0)
    D = d.uniform("depth", 0.28, 0.45)
    t = d.uniform("panel_thickness", 0.085, 0.11)
    n = d.integer("shelves", 1, max(1, min(5, int(H / 0.33) - 1)))
    base = d.choice("base", ("plinth", "legs", "flush"))
    dividers = d.integer("dividers", 0, 2 if W > 1.1 else (1 if W > 0.8 else 0))
    back = d.flag("back", 0.7)
    doors = n >= 2 and d.flag("doors", 0.25)
    crown = d.flag("crown", 0.3)
    y0 = {"plinth": 0.1, "legs": d.uniform("leg_height", 0.1, 0.2), "flush": 0.0}[base]

    parts = [Mirror(Box((W / 2 - t / 2, (y0 + H) / 2, 0), (t, H - y0, D)), "x"),
             Box((0, y0 + t / 2, 0), (W, t, D))]
    if crown:
        parts.append(Box((0, H - t / 2, 0.02), (W + 0.08, t + 0.02, D + 0.04), round=0.02))
    else:
        parts.append(Box((0, H - t / 2, 0), (W, t, D)))
    if base == "plinth":
        parts.append(Box((0, 0.05, -0.02), (W - 0.04, 0.1, D - 0.04)))
    elif base == "legs":
        x, z = W / 2 - 0.07, D / 2 - 0.07
        parts.append(Mirror(Cylinder((x, 0, z), (x, y0 + 0.01, z), ROD), "xz"))
    spacing = (H - y0 - t) / (n + 1)                          # shelf to shelf, bottom and top included
    parts.append(Repeat(Box((0, y0 + t / 2 + spacing, 0), (W - t, t, D)), "y", n, spacing))
    if back:
        parts.append(Box((0, (y0 + H) / 2, -D / 2 + 0.04), (W - 0.02, H - y0, 0.08)))
    if dividers:
        step = (W - t) / (dividers + 1)
        divider = Box((-W / 2 + t / 2 + step, (y0 + H) / 2, 0), (t, H - y0 - t, D))
        parts.append(Repeat(divider, "x", dividers, step))
    if doors:
        parts.append(Box((0, y0 + t / 2 + spacing / 2, D / 2 - 0.04), (W - t, spacing, 0.08)))
    if d.flag("books", 0.5):
        inner = W - 2 * t
        books = []
        for k in range(1 if doors else 0, n + 1):              # a row of books per compartment
            fill = d.uniform(f"books_{k}_fill", -0.3, 0.9)
            if fill < 0.2:
                continue
            high = d.uniform(f"books_{k}_height", 0.55, 0.85) * (spacing - t)
            x0 = -inner / 2 + d.uniform(f"books_{k}_offset", 0.0, 1.0) * (1.0 - fill) * inner
            y = y0 + t + k * spacing
            books.append(Box((x0 + fill * inner / 2, y + high / 2, 0.0), (fill * inner, high, 0.75 * D)))
        if books:
            parts.append(Union(*books))
    return Union(*parts)


# ----------------------------------------------------------------------------------------------
# Vehicles: airplane, car
# ----------------------------------------------------------------------------------------------

def _airplane(d: _Draw) -> Node:
    """Fuselage with straight, swept or delta wings, 0/2/4 engines and a conventional or T tail."""
    wing = d.choice("wing", ("straight", "swept", "delta"), p=(0.3, 0.5, 0.2))
    L = d.uniform("length", 1.5, 2.0)
    r = d.uniform("fuselage_radius", 0.07, 0.12)
    span = d.uniform("half_span", 0.6, 1.0)
    wt = d.uniform("wing_thickness", 0.08, 0.1)
    mount = d.choice("wing_position", ("low", "mid", "high"))
    wing_y = {"low": -0.55 * r, "mid": 0.0, "high": 0.55 * r}[mount]
    dihedral = math.radians(d.uniform("dihedral_deg", 0.0, 7.0))
    if wing == "delta":
        root = d.uniform("root_chord", 0.45, 0.65) * L
        tip = d.uniform("tip_chord", 0.1, 0.2)
        sweep = math.atan((root - tip) / span)
        z_le = d.uniform("wing_root_z", -0.05, 0.1) * L + root / 2
        engines, tail = 0, "fin"
    else:
        root = d.uniform("root_chord", 0.25, 0.45)
        tip = root * d.uniform("taper", 0.3, 0.7 if wing == "swept" else 1.0)
        sweep = math.radians(d.uniform("sweep_deg", *((0.0, 8.0) if wing == "straight" else (20.0, 40.0))))
        z_le = d.uniform("wing_root_z", 0.0, 0.15) * L + root / 2
        engines = d.choice("engines", (0, 2, 4), p=(0.25, 0.5, 0.25))
        tail = d.choice("tail", ("conventional", "t_tail"), p=(0.7, 0.3))

    # fuselage: a capsule with a tapered, upswept tail cone
    zt = -L / 2 + 0.3 * L                                      # where the tail cone starts
    rt = 0.35 * r
    nose = Capsule((0, 0, zt), (0, 0, L / 2 - r), r)
    if wing == "delta" and d.flag("pointed_nose", 0.7):
        zn = L / 2 - 3 * r
        nose = Union(Capsule((0, 0, zt), (0, 0, zn), r), Cone((0, 0, zn), (0, 0, L / 2), r, 0.03))
    body = SmoothUnion(0.05, nose, Cone((0, 0, zt), (0, r - rt, -L / 2), r, rt))

    # wings: a trapezoid plan per side, with dihedral
    s = span
    z_tip = z_le - s * math.tan(sweep)                        # leading edge at the tip
    plan = [(0.0, z_le), (s, z_tip), (s, z_tip - tip), (0.0, z_le - root)]
    half = Rotate(Prism(plan, "y", wing_y, wt), "z", dihedral, pivot=(0, wing_y, 0))
    parts = [body, Mirror(half, "x")]

    if engines:
        er = d.uniform("engine_radius", 0.055, 0.09)
        el = d.uniform("engine_length", 0.25, 0.4)
        stations = (0.38,) if engines == 2 else (0.3, 0.62)
        pods = []
        for f in stations:
            x = f * s
            ze = z_le - x * math.tan(sweep) + 0.45 * el        # engine front ahead of the wing
            yw = wing_y + x * math.tan(dihedral) - wt / 2
            ye = yw - er - 0.04
            pods += [Cylinder((x, ye, ze - el), (x, ye, ze), er, round=0.02),
                     Box((x, (ye + yw) / 2 + 0.01, ze - 0.6 * el), (0.08, yw - ye + 0.02, 0.5 * el))]
        parts.append(Mirror(Union(*pods), "x"))

    # tail: a swept fin, and a tailplane at the fuselage or on top of the fin (T tail)
    fh = d.uniform("fin_height", 0.25, 0.45)
    fc = d.uniform("fin_chord", 0.25, 0.4)
    fs = math.radians(d.uniform("fin_sweep_deg", 20.0, 50.0))
    z0 = -L / 2 + 0.04
    yb, yt = 0.3 * r, r + fh
    fin_top_le = z0 + fc - (yt - yb) * math.tan(fs)
    fin = [(z0, yb), (z0 + fc, yb), (fin_top_le, yt), (fin_top_le - 0.5 * fc, yt)]
    parts.append(Prism(fin, "x", 0.0, 0.08))
    if tail != "fin":
        ts = d.uniform("tailplane_half_span", 0.25, 0.45)
        tc = d.uniform("tailplane_chord", 0.16, 0.28)
        tsw = math.radians(d.uniform("tailplane_sweep_deg", 0.0, 35.0))
        if tail == "t_tail":
            y, zle = yt - 0.04, fin_top_le
        else:
            y, zle = 0.25 * r, z0 + tc + 0.04
        z_tip = zle - ts * math.tan(tsw)
        plan = [(0.0, zle), (ts, z_tip), (ts, z_tip - 0.6 * tc), (0.0, zle - tc)]
        parts.append(Mirror(Prism(plan, "y", y, 0.08), "x"))
    return Union(*parts)


def _car(d: _Draw) -> Node:
    """A lower body with wheel arches, a cabin (sedan, hatchback, SUV, pickup or van) and 4 wheels."""
    kind = d.choice("body", ("sedan", "hatchback", "suv", "pickup", "van"), p=(0.3, 0.2, 0.2, 0.15, 0.15))
    L = d.uniform("length", 1.7, 2.0)
    W = d.uniform("width", 0.75, 0.95)
    big = kind in ("suv", "pickup")
    wr = d.uniform("wheel_radius", 0.17, 0.22) if big else d.uniform("wheel_radius", 0.14, 0.18)
    ww = d.uniform("wheel_width", 0.12, 0.18)
    yb = wr * d.uniform("ground_clearance", 0.45, 0.75)        # underside of the body
    bh = d.uniform("body_height", 0.26, 0.34) if big else d.uniform("body_height", 0.2, 0.28)
    ch = {"van": (0.4, 0.52), "suv": (0.26, 0.34)}.get(kind, (0.2, 0.28))
    ch = d.uniform("cabin_height", *ch)
    nose = d.uniform("nose_slope", 0.05, 0.25) * L
    front = d.uniform("front_overhang", 0.14, 0.22) * L
    rear = d.uniform("rear_overhang", 0.14, 0.24) * L
    rr = 0.05                                                  # edge rounding (grows the prisms)
    yt = yb + bh

    side = [(-L / 2, yb), (L / 2, yb + 0.03), (L / 2, yt - 0.45 * bh), (L / 2 - nose, yt), (-L / 2, yt)]
    inward = [[rr, rr], [-rr, rr], [-rr, 0], [0, -rr], [rr, -rr]]  # so that the rounded body keeps its size
    body = Inflate(Prism(np.array(side) + inward, "x", 0.0, W - 2 * rr), rr)
    zf, zr = L / 2 - front, -L / 2 + rear                      # axles
    arch = lambda z: Cylinder((W / 2 - ww / 2, wr, z), (W / 2 + 0.2, wr, z), wr + 0.03)  # keeps wheels attached
    body = Subtract(body, Mirror(Union(arch(zf), arch(zr)), "x"))

    # cabin side profile (z, y): rear base, front base, windshield top, roof rear
    lean = d.uniform("windshield_slope", 0.12, 0.25) * L
    if kind == "sedan":                                        # (rear, front) at the base, the top
        z0, z1 = -0.24 * L, L / 2 - nose - 0.12 * L
        top = (z0 + 0.12 * L, z1 - lean)
    elif kind in ("hatchback", "suv"):
        z0, z1 = -L / 2 + 0.03, L / 2 - nose - 0.1 * L
        top = (z0 + d.uniform("hatch_slope", 0.03, 0.12) * L, z1 - lean)
    elif kind == "pickup":
        zc = -L / 2 + d.uniform("bed_length", 0.3, 0.42) * L
        z0, z1 = zc, L / 2 - nose - 0.08 * L
        top = (z0 + 0.03, z1 - 0.6 * lean)
    else:                                                      # van: one tall box, sloped front
        z0, z1 = -L / 2 + 0.02, L / 2 - 0.5 * nose - 0.02
        top = (z0, z1 - 1.3 * lean)
    cab = [(z0, yt), (z1, yt), (top[1], yt + ch), (top[0], yt + ch)]
    cw = W * d.uniform("cabin_width_ratio", 0.82, 0.94)
    cab = np.array(cab) + [[0.035, -0.05], [-0.035, -0.05], [-0.035, -0.035], [0.035, -0.035]]
    parts = [body, Inflate(Prism(cab, "x", 0.0, cw - 0.07), 0.035)]
    if kind == "pickup":
        bed = Box((0, yt + 0.08, (-L / 2 + zc) / 2), (W - 0.02, 0.2, zc + L / 2 - 0.02), round=0.02)
        hole = Box((0, yt + 0.2, (-L / 2 + zc) / 2), (W - 0.2, 0.3, zc + L / 2 - 0.2))
        parts.append(Subtract(bed, hole))

    # wheels: rounded cylinders along x, sticking out a little
    x = W / 2 - ww / 2 + d.uniform("wheel_protrusion", 0.0, 0.05)
    wheel = lambda z: Cylinder((x - ww / 2, wr, z), (x + ww / 2, wr, z), wr, round=0.035)
    parts.append(Mirror(Union(wheel(zf), wheel(zr)), "x"))
    return Union(*parts)


# ----------------------------------------------------------------------------------------------
# Objects: lamp, mug, bottle, vase
# ----------------------------------------------------------------------------------------------

def _shade(style: str, top: Vec, r: float, h: float, ratio: float) -> Node:
    """A lamp shade hanging below `top`, opening downwards: "cone", "drum" or "dome"."""
    top = _vec(top)
    if style == "cone":
        return Cone(top - (0, h, 0), top, r, r * ratio)
    if style == "drum":
        return Cylinder(top - (0, h, 0), top, 0.85 * r, round=0.02)
    c = top - (0, r, 0)
    return Union(Intersect(Sphere(c, r), Box(c + (0, r / 2, 0), (2 * r, r, 2 * r))),
                 Cylinder(top - (0, 0.05, 0), top + (0, 0.03, 0), 0.06))


def _lamp(d: _Draw) -> Node:
    """A base, a stem (straight, elbowed arm or arc) and a shade (cone, drum or dome); floor or desk."""
    kind = d.choice("kind", ("floor", "desk"))
    floor = kind == "floor"
    stem = d.choice("stem", ("straight", "arc") if floor else ("straight", "arm"), p=(0.6, 0.4))
    shade = d.choice("shade", ("cone", "drum", "dome"))
    bases = ("disc", "square", "tripod") if floor and stem == "straight" else (
        ("disc", "square", "urn") if stem == "straight" else ("disc", "square"))
    base = d.choice("base", bases)
    H = d.uniform("height", 1.4, 1.9) if floor else d.uniform("height", 0.5, 0.85)
    sr = d.uniform("stem_radius", *((ROD, 0.07) if floor else (0.035, 0.05)))  # desk lamps are ~1 tall
    br = d.uniform("base_radius", 0.2, 0.35) if floor else d.uniform("base_radius", 0.15, 0.25)
    bt = d.uniform("base_thickness", 0.06, 0.1)
    r = d.uniform("shade_radius", 0.28, 0.42) if floor else d.uniform("shade_radius", 0.16, 0.3)
    sh = r * d.uniform("shade_height_ratio", 0.75, 1.4)
    ratio = d.uniform("shade_top_ratio", 0.45, 0.85)
    parts = []
    y0 = bt                                                    # where the stem starts
    if base == "disc":
        parts.append(Cylinder((0, 0, 0), (0, bt, 0), br, round=0.02))
    elif base == "square":
        parts.append(Box((0, bt / 2, 0), (1.6 * br, bt, 1.6 * br), round=0.02))
    elif base == "urn":
        ub = d.uniform("urn_radius", 0.14, 0.22)
        parts.append(SmoothUnion(0.06, Sphere((0, ub, 0), ub), Cylinder((0, 0, 0), (0, 0.06, 0), 0.7 * ub)))
        y0 = 2 * ub - 0.02
    else:                                                      # tripod
        R, y0 = br + 0.15, 0.45 * H
        parts.append(Union(*[Capsule((0, y0, 0), (R * math.sin(a), ROD, R * math.cos(a)), ROD)
                             for a in np.arange(3) * (2 * math.pi / 3) + math.pi / 3]))

    if stem == "straight":
        parts.append(Cylinder((0, y0 - 0.01, 0), (0, H, 0), sr))
        parts.append(_shade(shade, (0, H + (0.05 if shade == "dome" else 0.3 * sh), 0), r, sh, ratio))
    elif stem == "arm":                                        # two arms and a hinged head
        a1 = math.radians(d.uniform("lower_arm_deg", -30.0, 20.0))
        a2 = math.radians(d.uniform("upper_arm_deg", -35.0, 25.0))
        l1 = d.uniform("lower_arm", 0.4, 0.6)
        l2 = d.uniform("upper_arm", 0.35, 0.55)
        tilt = math.radians(d.uniform("head_tilt_deg", 10.0, 60.0))
        p0 = np.array([0.0, y0, -0.3 * br])
        p1 = p0 + l1 * np.array([0.0, math.cos(a1), math.sin(a1)])
        p2 = p1 + l2 * np.array([0.0, math.sin(a2), math.cos(a2)])
        head = _shade(shade, p2 + (0, 0.02, 0), 0.8 * r, sh, ratio)
        parts += [Sphere(p0, 1.5 * sr), Capsule(p0, p1, sr), Sphere(p1, 1.5 * sr), Capsule(p1, p2, sr),
                  Rotate(head, "x", -tilt, pivot=p2)]
    else:                                                      # arc floor lamp
        Ra = d.uniform("arc_radius", 0.35, 0.6)
        phi = math.radians(d.uniform("arc_deg", 130.0, 175.0))
        ys = H - Ra
        pts = [np.array([0.0, ys + Ra * math.sin(f), Ra - Ra * math.cos(f)]) for f in np.linspace(0, phi, 7)]
        parts.append(Cylinder((0, y0 - 0.01, 0), (0, ys, 0), sr))
        parts += [Capsule(a, b, sr) for a, b in zip(pts, pts[1:])]
        end = pts[-1]
        parts.append(_shade(shade, end - (0, 0.02, 0), r, sh, ratio))
    return Union(*parts)


def _mug(d: _Draw) -> Node:
    """A hollow, open cup (straight or tapered) with a round or square handle, or none (tumbler)."""
    handle = d.choice("handle", ("round", "square", "none"), p=(0.6, 0.3, 0.1))
    R = d.uniform("radius", 0.3, 0.45)                         # outer radius at the rim
    H = d.uniform("height", 0.55, 1.0)
    Rb = R * d.uniform("bottom_ratio", 0.75, 1.0)
    wall = d.uniform("wall", 0.06, 0.09)
    bottom = d.uniform("bottom_thickness", 0.07, 0.12)
    outer = Cone((0, 0, 0), (0, H, 0), Rb, R)
    r_at = lambda y: Rb + (R - Rb) * y / H                     # outer radius at height y
    inner = Cone((0, bottom, 0), (0, H + 0.2, 0), r_at(bottom) - wall, r_at(H + 0.2) - wall)
    cup = Subtract(outer, inner)
    if handle == "none":
        return cup
    size = d.uniform("handle_size", 0.5, 0.8) * H             # vertical extent
    reach = d.uniform("handle_reach", 0.15, 0.3)
    tr = d.uniform("handle_thickness", 0.04, 0.06)             # tube radius / half thickness
    yc = d.uniform("handle_height", 0.45, 0.55) * H
    x_out = r_at(yc) + reach                                   # outermost x of the handle
    if handle == "round":
        grip = Torus((x_out - size / 2, yc, 0), size / 2 - tr, tr, axis="z")
    else:
        frame = Box((x_out - size / 2, yc, 0), (size, size, 2 * tr), round=0.02)
        grip = Subtract(frame, Box((x_out - size / 2, yc, 0), (size - 4 * tr, size - 4 * tr, 1.0)))
    return Union(cup, Subtract(grip, outer))


def _bottle(d: _Draw) -> Node:
    """A revolved profile (body, shoulder, neck, lip or cap): wine, water, beer; or a square flask."""
    kind = d.choice("kind", ("wine", "water", "beer", "flask"), p=(0.3, 0.3, 0.2, 0.2))
    rn = d.uniform("neck_radius", 0.1, 0.14)
    if kind == "flask":
        bw = d.uniform("body_width", 0.7, 1.0)
        bd = d.uniform("body_depth", 0.3, 0.45)
        hb = d.uniform("body_height", 0.9, 1.3)
        hs = d.uniform("shoulder_height", 0.12, 0.25)
        hn = d.uniform("neck_height", 0.15, 0.35)
        body = Box((0, hb / 2, 0), (bw, hb, bd), round=min(0.14, bd / 2 - 0.01), corner=0.0)
        shoulder = Cone((0, hb - 0.1, 0), (0, hb + hs, 0), bd / 2, rn)
        top = hb + hs + hn
        return Union(SmoothUnion(0.1, body, shoulder), Cylinder((0, hb, 0), (0, top, 0), rn),
                     Cylinder((0, top - 0.02, 0), (0, top + 0.12, 0), rn + 0.03, round=0.02))
    if kind == "wine":
        rb, hb = d.uniform("body_radius", 0.26, 0.36), d.uniform("body_height", 1.0, 1.25)
        hs, hn = d.uniform("shoulder_height", 0.2, 0.35), d.uniform("neck_height", 0.45, 0.6)
    elif kind == "beer":
        rb, hb = d.uniform("body_radius", 0.26, 0.34), d.uniform("body_height", 0.8, 1.0)
        hs, hn = d.uniform("shoulder_height", 0.35, 0.5), d.uniform("neck_height", 0.35, 0.5)
    else:
        rb, hb = d.uniform("body_radius", 0.3, 0.42), d.uniform("body_height", 1.1, 1.4)
        hs, hn = d.uniform("shoulder_height", 0.2, 0.35), d.uniform("neck_height", 0.08, 0.2)
    ys, rs = [0.05, hb], [rb, rb]
    if kind == "water" and d.flag("waist", 0.5):                # pinched grip in the middle
        ys, rs = [0.05, 0.45 * hb, 0.6 * hb, 0.75 * hb, hb], [rb, rb, rb - 0.07, rb, rb]
    ys, rs = ys + [hb + hs], rs + [rn]
    if kind == "beer":                                         # long taper into the neck
        ys, rs = ys[:-1] + [hb + 0.6 * hs, hb + hs], rs[:-1] + [0.5 * (rb + rn), rn]
    profile = [(0.0, 0.0), (rb - 0.05, 0.0)] + _smoothstep_profile(ys, rs, per_span=3)
    top = hb + hs + hn
    if kind == "water":                                        # screw cap
        cr, ch = rn + d.uniform("cap_overhang", 0.025, 0.05), d.uniform("cap_height", 0.12, 0.2)
        profile += [(rn, top - ch), (cr, top - ch), (cr, top), (0.0, top)]
    else:                                                      # lip ring (wine gets a foil capsule)
        foil = 0.015 if kind == "wine" else 0.0
        profile += [(rn + foil, top - 0.3 * hn if foil else top - 0.07),
                    (rn + 0.03, top - 0.06), (rn + 0.03, top), (0.0, top)]
    return Lathe(profile)


def _vase(d: _Draw) -> Node:
    """A hollow revolved wall, open at the top: amphora, bulb, cylinder or trumpet; optional handles."""
    kind = d.choice("kind", ("amphora", "bulb", "cylinder", "trumpet"))
    H = d.uniform("height", 1.5, 2.0) if kind == "cylinder" else d.uniform("height", 1.2, 2.0)
    wall = d.uniform("wall", 0.08, 0.1)
    if kind == "amphora":
        foot, belly = d.uniform("foot_radius", 0.15, 0.25), d.uniform("belly_radius", 0.4, 0.6)
        neck, lip = d.uniform("neck_radius", 0.13, 0.2), d.uniform("lip_radius", 0.18, 0.28)
        yb = d.uniform("belly_height", 0.35, 0.5)
        ys, rs = [0.0, 0.06, yb, 0.8, 0.9, 1.0], [foot, 0.8 * foot, belly, neck, neck, lip]
    elif kind == "bulb":
        base, belly = d.uniform("base_radius", 0.2, 0.3), d.uniform("belly_radius", 0.45, 0.65)
        neck, lip = d.uniform("neck_radius", 0.12, 0.18), d.uniform("lip_radius", 0.14, 0.25)
        yb = d.uniform("belly_height", 0.25, 0.4)
        ys, rs = [0.0, yb, 0.78, 1.0], [base, belly, neck, lip]
    elif kind == "cylinder":
        r0 = d.uniform("base_radius", 0.2, 0.34)                # taller and slimmer than a tumbler
        r1 = r0 * d.uniform("top_ratio", 0.8, 1.25)
        ys, rs = [0.0, 0.5, 1.0], [r0, 0.5 * (r0 + r1) * d.uniform("bulge", 0.9, 1.12), r1]
    else:
        base, stem = d.uniform("base_radius", 0.25, 0.35), d.uniform("stem_radius", 0.12, 0.18)
        top = d.uniform("top_radius", 0.35, 0.55)
        ys, rs = [0.0, 0.06, d.uniform("stem_height", 0.2, 0.35), 1.0], [base, 0.7 * base, stem, top]
    mid = _smoothstep_profile([y * H + wall / 2 for y in ys], rs, per_span=3)
    shell = Lathe([(0.0, wall / 2)] + mid, shell=wall)
    if kind in ("amphora", "bulb") and d.flag("handles", 0.4):  # loops from the neck to the shoulder
        yh = 0.8 * H
        Rh = d.uniform("handle_radius", 0.15, 0.25)
        r, y = np.array(mid).T
        ring = Mirror(Torus((np.interp(yh, y, r) + 0.75 * Rh, yh, 0), Rh, 1.2 * ROD, axis="z"), "x")
        solid = Lathe([(0.0, 0.0)] + mid + [(0.0, mid[-1][1])])
        return Union(shell, Subtract(ring, solid))
    return shell


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------

_FAMILIES: dict[str, Callable[[_Draw], Node]] = {
    "airplane": _airplane, "bed": _bed, "bench": _bench, "bookshelf": _bookshelf, "bottle": _bottle,
    "car": _car, "chair": _chair, "lamp": _lamp, "mug": _mug, "sofa": _sofa, "table": _table, "vase": _vase,
}
assert tuple(sorted(_FAMILIES)) == CLASSES, f"shape families {sorted(_FAMILIES)} differ from classes.CLASSES {CLASSES}"
CLASS_SEED: dict[str, int] = {name: zlib.crc32(name.encode()) for name in CLASSES}  # stable, unlike hash()


def _build(name: str, index: int) -> tuple[Node, dict]:
    """The normalised SDF tree of shape `index` of class `name`, and its drawn parameters."""
    if name not in _FAMILIES:
        raise ValueError(f"unknown shape class {name!r}; valid classes: {', '.join(CLASSES)}")
    index = operator.index(index)
    if index < 0:
        raise ValueError(f"shape index must be >= 0, got {index}")
    draw = _Draw(np.random.default_rng([CLASS_SEED[name], index]))
    return Normalize(_FAMILIES[name](draw)), draw.params


def shape_sdf(name: str, index: int) -> SDF:
    """Deterministic SDF of shape `index` (any int >= 0) of class `name`:
    (N, 3) float64 points -> (N,) float64 signed distance, negative inside."""
    return _build(name, index)[0]


def describe(name: str, index: int) -> dict:
    """The structural variant choices and continuous parameters of that shape (JSON-serialisable)."""
    return {"class": name, "index": operator.index(index), **_build(name, index)[1]}
