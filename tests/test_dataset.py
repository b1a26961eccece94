"""Benchmark samples: deterministic, canonical frame, consistent arrays; splits and cache."""

import numpy as np
import pytest

from smart3d import geometry as G
from smart3d.classes import CLASSES
from smart3d.dataset import build_cache, cache_path, load_split, make_sample, split_indices


@pytest.mark.parametrize("name", ["chair", "airplane", "mug"])
def test_sample_is_deterministic_and_consistent(name):
    a, b = make_sample(name, 7, with_mesh=True), make_sample(name, 7)
    assert np.array_equal(a.occupancy, b.occupancy) and np.array_equal(a.points, b.points)
    assert a.sdf.shape == (32, 32, 32) and a.points.shape == (2048, 3) and a.points.dtype == np.float32
    assert np.array_equal(a.occupancy, a.sdf < 0) and a.occupancy.any()
    # canonical frame: bounding box centred, longest side ~ 2 * FILL (from a coarse probe)
    lo, hi = a.mesh.bounds
    assert abs((hi - lo).max() - 2 * G.FILL) < 0.08 and np.abs((hi + lo) / 2).max() < 0.05
    assert a.mesh.is_watertight
    # surface voxels hold the surface points; points lie near the zero level set
    assert a.surface[tuple(np.floor((a.points + 1) * 16).astype(int).clip(0, 31).T)].all()
    # every surface voxel is within a voxel diagonal of the zero level set of the SDF
    assert np.abs(a.sdf[a.surface]).max() < np.sqrt(3) / 16 + 1e-3
    # the dense cloud: its head is the 2048 points, and it is what marks the surface voxels
    assert a.dense.shape == (32768, 3) and np.array_equal(a.dense[:2048], a.points)
    assert np.array_equal(G.voxelize_points(a.dense), a.surface)


def test_different_indices_differ():
    assert not np.array_equal(make_sample("table", 0).occupancy, make_sample("table", 1).occupancy)


def test_splits_are_80_10_10_and_disjoint():
    tr, va, te = (split_indices(s, 1000) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (800, 100, 100)
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    with pytest.raises(ValueError, match="valid splits"):
        split_indices("dev", 10)


def test_unknown_class_is_rejected():
    with pytest.raises(ValueError, match="valid classes"):
        make_sample("spaceship", 0)


def test_cache_roundtrip(tmp_path):
    build_cache(["mug"], 10, tmp_path, workers=1, progress=False)
    data = load_split("val", ["mug"], 10, tmp_path, build=False)
    s = make_sample("mug", 8)                      # index 8 is the validation shape of 10
    assert len(data) == 1 and data.indices[0] == 8 and data.labels[0] == CLASSES.index("mug")
    assert np.array_equal(data.occupancy[0], s.occupancy) and np.array_equal(data.surface[0], s.surface)
    assert np.allclose(data.sdf[0], s.sdf, atol=2e-3)      # stored as float16
    assert np.array_equal(data.points[0], s.points)
    assert data.dense.dtype == np.float16 and np.allclose(data.dense[0], s.dense, atol=1e-3)


def test_growing_the_cache_reuses_the_smaller_one(tmp_path):
    build_cache(["mug"], 10, tmp_path, workers=1, progress=False)
    small = cache_path("mug", 10, tmp_path)
    with np.load(small) as z:                          # mark the small cache to see that it is reused, not rebuilt
        arrays = {k: z[k] for k in z.files}
    arrays["sdf"][0] = 7.0
    np.savez(small, **arrays)
    build_cache(["mug"], 12, tmp_path, workers=1, progress=False)
    data = load_split("train", ["mug"], 12, tmp_path, build=False)
    assert list(data.indices) == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
    assert np.all(data.sdf[0] == 7.0)                   # the head came from the small cache
    s = make_sample("mug", 11)                          # the tail was built
    assert np.array_equal(data.occupancy[-1], s.occupancy) and np.allclose(data.sdf[-1], s.sdf, atol=2e-3)
