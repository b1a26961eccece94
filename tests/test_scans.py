"""Synthetic partial scans of point clouds (smart3d.scans): what each method keeps."""

import numpy as np
import pytest

from smart3d.scans import direction, plane_cut, scan_mask, single_view


def test_single_view_sees_the_near_side_only():
    p = np.random.default_rng(0).normal(size=(20_000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True) * 2                   # sphere of radius 0.5
    for az, el in ((0, 0), (90, 0), (0, 90), (200, -30)):
        d = direction(az, el)
        seen = single_view(p, d)
        assert np.all(p[seen] @ d > -0.1)                               # nothing from the far side
        assert (p @ d > 0.2)[~seen].mean() < 0.05                       # the near cap is (almost) all seen
    assert plane_cut(p, np.array([0, 1.0, 0]), 0.0).sum() == (p[:, 1] <= 0).sum()


def test_scan_mask_is_the_chosen_method_and_names_the_valid_ones():
    p = np.random.default_rng(1).uniform(-0.5, 0.5, size=(5000, 3))
    d = direction(30, 20)
    assert np.array_equal(scan_mask(p, "plane", 30, 20, 0.1), plane_cut(p, d, 0.1))
    assert np.array_equal(scan_mask(p, "view", 30, 20), single_view(p, d))
    with pytest.raises(ValueError, match="valid methods: plane, view"):
        scan_mask(p, "laser", 0, 0)
