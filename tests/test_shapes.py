"""The procedural benchmark: classes, determinism, valid distance bounds, visible solids, variety."""

import json
import subprocess
import sys

import numpy as np
import pytest

from smart3d import shapes as S
from smart3d.shapes import CLASSES, describe, shape_sdf

INDICES = (0, 1, 7, 123)


def _grid(n: int, lo, hi) -> np.ndarray:
    axes = [np.linspace(a, b, n) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


# ----------------------------------------------------------------------------------------------
# Classes and arguments
# ----------------------------------------------------------------------------------------------

def test_classes_sorted_unique_and_enough():
    assert len(CLASSES) >= 10
    assert list(CLASSES) == sorted(set(CLASSES))
    for name in ("airplane", "bench", "bottle", "car", "chair", "lamp", "mug", "sofa", "table"):
        assert name in CLASSES


def test_unknown_class_names_the_valid_ones():
    with pytest.raises(ValueError, match="chair") as err:
        shape_sdf("spaceship", 0)
    assert "spaceship" in str(err.value)
    with pytest.raises(ValueError, match="table"):
        describe("spaceship", 0)


def test_negative_index_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        shape_sdf("chair", -1)


def test_points_must_be_n_by_3():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        shape_sdf("mug", 0)(np.zeros((4, 2)))


# ----------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSES)
def test_same_index_same_shape_other_index_other_shape(name):
    p = np.random.default_rng(0).uniform(-1.0, 1.0, (2000, 3))
    a, b = shape_sdf(name, 5)(p), shape_sdf(name, 5)(p)
    assert a.dtype == np.float64 and a.shape == (2000,)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, shape_sdf(name, 6)(p))


def test_shapes_do_not_depend_on_the_process():
    """Seeds must not come from Python's salted hash(): another interpreter gives the same values."""
    code = ("import numpy as np; from smart3d.shapes import CLASSES, shape_sdf; "
            "p = np.linspace(-1, 1, 30).reshape(10, 3); "
            "print(repr([float(shape_sdf(c, 3)(p).sum()) for c in CLASSES]))")
    env_runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=str(_repo_root())).stdout
                for seed in ("1", "2")]
    p = np.linspace(-1, 1, 30).reshape(10, 3)
    here = repr([float(shape_sdf(c, 3)(p).sum()) for c in CLASSES])
    assert env_runs[0].strip() == env_runs[1].strip() == here


def _repo_root():
    from pathlib import Path

    return Path(S.__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------
# Every shape is a visible solid in the canonical size
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSES)
def test_shapes_are_solid_centred_and_fit(name):
    corners = _grid(2, (-1.5,) * 3, (1.5,) * 3)
    for index in INDICES:
        f = shape_sdf(name, index)
        assert np.all(f(corners) > 0), f"{name} {index} is not empty at the corners"
        g = _grid(40, (-1.0,) * 3, (1.0,) * 3)
        inside = g[f(g) < 0]
        assert len(inside), f"{name} {index} has no inside"
        lo, hi = inside.min(0), inside.max(0)
        assert np.all(np.abs(inside) <= 0.9 + 1e-9), f"{name} {index} leaves the 1.8 box"
        assert (hi - lo).max() > 1.5, f"{name} {index} is not normalised: extent {hi - lo}"
        occupied = (f(_grid(32, lo, hi)) < 0).mean()
        assert 0.01 < occupied < 0.95, f"{name} {index}: {occupied:.3f} of its box is solid"


# ----------------------------------------------------------------------------------------------
# Valid distance bounds
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSES)
def test_sdf_is_1_lipschitz(name):
    rng = np.random.default_rng(1)
    for index in (0, 2, 9):
        f = shape_sdf(name, index)
        p = rng.uniform(-1.3, 1.3, (6000, 3))
        near = p[np.abs(f(p)) < 0.1]                           # and many pairs around the surface
        p = np.concatenate([p, near + rng.normal(scale=0.02, size=near.shape)])
        for scale in (1e-3, 1e-2, 1e-1):
            q = p + rng.normal(scale=scale, size=p.shape)
            lhs = np.abs(f(p) - f(q))
            rhs = np.linalg.norm(p - q, axis=1) * (1 + 1e-6) + 1e-12
            assert np.all(lhs <= rhs), f"{name} {index}: ratio {np.max(lhs / rhs):.6f}"


def test_primitives_are_exact():
    """Independent constructions of the same solid agree: every primitive is an exact SDF."""
    p = np.random.default_rng(2).uniform(-1.5, 1.5, (4000, 3))
    box = S.Box((0.1, 0.2, -0.1), (1.0, 0.6, 0.8))
    prism = S.Prism([(-0.5, -0.1), (0.3, -0.1), (0.3, 0.5), (-0.5, 0.5)], "x", 0.1, 1.0)
    np.testing.assert_allclose(box(p), prism(p), atol=1e-12)
    cyl = S.Cylinder((0.2, -0.3, 0.1), (0.2, 0.5, 0.1), 0.4)
    rect = S.Lathe([(0, -0.3), (0.4, -0.3), (0.4, 0.5), (0, 0.5)], center=(0.2, 0.1))
    np.testing.assert_allclose(cyl(p), rect(p), atol=1e-12)
    cone = S.Cone((0, -0.4, 0), (0, 0.6, 0), 0.5, 0.2)
    trapezoid = S.Lathe([(0, -0.4), (0.5, -0.4), (0.2, 0.6), (0, 0.6)])
    np.testing.assert_allclose(cone(p), trapezoid(p), atol=1e-12)
    tilted = S.Cone((0, 0, 0), (0.6, 0.8, 0), 0.5, 0.2)        # the same cone along another axis
    turned = S.Rotate(S.Cone((0, 0, 0), (0, 1, 0), 0.5, 0.2), "z", -np.arctan2(0.6, 0.8))
    np.testing.assert_allclose(tilted(p), turned(p), atol=1e-12)
    ring = S.Torus((0, 0, 0), 0.6, 0.15, axis="x")
    exact = np.hypot(np.hypot(p[:, 1], p[:, 2]) - 0.6, p[:, 0]) - 0.15
    np.testing.assert_allclose(ring(p), exact, atol=1e-12)


def test_a_repeated_profile_vertex_changes_nothing():
    """A zero-length edge (a bottle's profile can repeat a vertex, e.g. bottle 1535) once made the
    whole field NaN; it must give the same solid as the profile without the repeat."""
    p = np.random.default_rng(3).uniform(-1.0, 1.0, (2000, 3))
    profile = [(0, -0.5), (0.4, -0.5), (0.4, 0.2), (0.2, 0.5), (0, 0.5)]
    repeated = profile[:2] + [profile[1]] + profile[2:]
    a, b = S.Lathe(profile)(p), S.Lathe(repeated)(p)
    assert np.all(np.isfinite(b))
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert np.isfinite(shape_sdf("bottle", 1535)(p)).all()


def test_combinators_match_their_definitions():
    p = np.random.default_rng(3).uniform(-1.5, 1.5, (4000, 3))
    slat = S.Box((-0.6, 0.0, 0.0), (0.1, 0.5, 0.3))
    copies = S.Union(*[S.Box((-0.6 + 0.3 * i, 0.0, 0.0), (0.1, 0.5, 0.3)) for i in range(5)])
    np.testing.assert_allclose(S.Repeat(slat, "x", 5, 0.3)(p), copies(p), atol=1e-12)
    leg = S.Cylinder((0.5, 0, 0.4), (0.6, 1, 0.5), 0.1)
    four = [S.Cylinder((sx * 0.5, 0, sz * 0.4), (sx * 0.6, 1, sz * 0.5), 0.1) for sx in (-1, 1) for sz in (-1, 1)]
    np.testing.assert_allclose(S.Mirror(leg, "xz")(p), np.min([c(p) for c in four], axis=0), atol=1e-12)
    # culling changes values only farther than BAND from the surface, and only to lower bounds
    parts = [S.Sphere((0.8 * np.cos(a), 0.0, 0.8 * np.sin(a)), 0.1) for a in np.linspace(0, 6, 7)]
    culled = S.Union(S.Box((0, -0.5, 0), (2, 0.1, 2)), S.Union(*parts[:4]), S.Union(*parts[4:]))
    plain = np.min([S.Box((0, -0.5, 0), (2, 0.1, 2))(p)] + [s(p) for s in parts], axis=0)
    d = culled(p)
    assert np.all(d <= plain + 1e-12)
    near = plain < S.BAND
    np.testing.assert_allclose(d[near], plain[near], atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSES)
def test_describe_is_json_and_varies(name):
    first = describe(name, 0)
    assert first == describe(name, 0)
    assert json.loads(json.dumps(first)) == first
    assert first["class"] == name and first["index"] == 0
    others = [describe(name, i) for i in range(1, 6)]
    assert all(o != first for o in others)
    variants = {k for k, v in first.items() if isinstance(v, str) and k != "class"}
    assert variants, f"{name} records no structural variant"
    seen = {tuple(describe(name, i).get(k) for k in sorted(variants)) for i in range(40)}
    assert len(seen) > 2, f"{name}: structural variants never change"
