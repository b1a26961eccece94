"""Voxel/patch geometry: exact inverses, token order, meshes that close and reload."""

import numpy as np
import pytest
import torch
import trimesh

from smart3d import geometry as G


def test_patchify_roundtrip_numpy_and_torch():
    rng = np.random.default_rng(0)
    grid = rng.random((2, 32, 32, 32)) > 0.5
    patches = G.patchify(grid)
    assert patches.shape == (2, 512, 64)
    assert np.array_equal(G.unpatchify(patches), grid)
    t = torch.from_numpy(grid)
    assert torch.equal(G.patchify(t), torch.from_numpy(patches))
    assert torch.equal(G.unpatchify(G.patchify(t)), t)


def test_patch_holds_its_own_voxels_in_token_order():
    grid = np.zeros((32, 32, 32), dtype=np.int64)
    # voxel (x, y, z) belongs to patch (x//4, y//4, z//4); token = C-order index over the lattice
    for token, (i, j, k) in enumerate(G.lattice_coords()):
        grid[4 * i:4 * i + 4, 4 * j:4 * j + 4, 4 * k:4 * k + 4] = token
    patches = G.patchify(grid)
    assert np.array_equal(patches, np.repeat(np.arange(512)[:, None], 64, axis=1))


def test_centroids_are_patch_centres():
    c = G.patch_centroids()
    assert c.shape == (512, 3)
    centers = G.voxel_centers(32)                       # mean of a patch's voxel centres
    patch_means = G.patchify(np.moveaxis(centers, -1, 0)).mean(-1).T
    assert np.allclose(c, patch_means, atol=1e-6)


def test_voxelize_points_and_visible_mask():
    pts = np.array([[-0.99, -0.99, -0.99], [0.99, 0.99, 0.99], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    grid = G.voxelize_points(pts)
    assert grid.sum() == 3 and grid[0, 0, 0] and grid[31, 31, 31] and grid[16, 16, 16]
    mask = G.visible_patch_mask(pts)
    assert mask.sum() == 3 and mask[0] and mask[511]
    assert G.visible_patch_mask(pts, min_points=2).sum() == 0


def test_surface_features_locate_the_surface_inside_each_voxel():
    rng = np.random.default_rng(0)
    v = 2.0 / 32                                          # voxel side
    # a horizontal sheet at y = 0.3 voxel above the centres of row j = 20
    y = -1 + (20 + 0.5 + 0.3) * v
    sheet = np.c_[rng.uniform(-0.5, 0.5, 4000), np.full(4000, y), rng.uniform(-0.5, 0.5, 4000)]
    f = G.surface_features(sheet)[0].numpy()
    assert f.shape == (G.SURFACE_CHANNELS, 32, 32, 32)
    assert np.array_equal(f[0].astype(bool), G.voxelize_points(sheet))
    hit = f[0] > 0
    assert np.allclose(f[2][hit], 2 * 0.3, atol=1e-4)     # mean y offset (x2)
    assert np.allclose(f[5][hit], 0.0, atol=1e-4)         # no spread across the sheet (yy moment)
    assert f[4][hit].mean() > 0.5                         # spread along it (xx ~ 12 * var of uniform = 1)
    assert (f[:, ~hit] == 0).all()
    # two sheets of a thin plate in one voxel: centred mean, large spread across
    plate = np.concatenate([sheet, sheet - [0, 0.6 * v, 0]])
    g = G.surface_features(plate)[0].numpy()
    assert np.allclose(g[2][g[0] > 0], 0.0, atol=1e-3) and np.allclose(g[5][g[0] > 0], 12 * 0.09, atol=1e-3)
    # batched, listed and out-of-cube points
    both = G.surface_features([sheet, np.r_[sheet, [[5.0, 0, 0]]]])
    assert torch.equal(both[0], both[1])


def test_mesh_from_sphere_field_is_closed_and_reloads(tmp_path):
    centers = G.voxel_centers(32)
    sdf = np.linalg.norm(centers, axis=-1) - 0.6
    mesh = G.mesh_from_field(sdf, 0.0, inside="below")
    assert mesh.is_watertight and mesh.volume > 0
    assert abs(mesh.volume - 4 / 3 * np.pi * 0.6**3) / (4 / 3 * np.pi * 0.6**3) < 0.03
    occ_mesh = G.mesh_from_field((sdf < 0).astype(np.float32), 0.5)
    assert occ_mesh.is_watertight and occ_mesh.volume > 0
    for ext in ("glb", "obj", "stl", "ply"):
        path = tmp_path / f"sphere.{ext}"
        mesh.export(path)
        back = trimesh.load(path, force="mesh")
        assert back.is_watertight, ext
        assert np.isclose(back.volume, mesh.volume, rtol=1e-4), ext


def test_field_touching_the_border_still_closes():
    occ = np.ones((32, 32, 32), dtype=np.float32)       # everything inside: surface is the cube
    mesh = G.mesh_from_field(occ, 0.5)
    assert mesh.is_watertight
    assert np.allclose(mesh.bounds, [[-1, -1, -1], [1, 1, 1]], atol=1 / 16)


def test_empty_field_gives_empty_mesh_and_zero_points():
    mesh = G.mesh_from_field(np.zeros((32, 32, 32)), 0.5)
    assert len(mesh.faces) == 0
    assert G.sample_surface(mesh, 10).shape == (10, 3)


def test_sampled_points_lie_on_surface():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    pts = G.sample_surface(mesh, 500, seed=1)
    assert pts.shape == (500, 3) and pts.dtype == np.float32
    assert np.allclose(np.linalg.norm(pts, axis=1), 0.5, atol=0.01)
    assert np.array_equal(pts, G.sample_surface(mesh, 500, seed=1))


def test_drop_small_parts_clears_floaters_only():
    c = G.voxel_centers(32)
    big = np.linalg.norm(c - [-0.3, 0, 0], axis=-1) < 0.5               # ~2100 voxels
    mid = np.linalg.norm(c - [0.6, 0.5, 0.5], axis=-1) < 0.25          # ~270 voxels, separate
    tiny = np.abs(c - [0.7, -0.7, -0.7]).max(-1) < 0.07                 # 8 voxels, separate
    field = np.where(big | mid | tiny, 0.9, 0.1).astype(np.float32)
    kept = G.drop_small_parts(field, 0.5, 0.02)
    assert np.array_equal(kept > 0.5, big | mid)                        # only the 8-voxel blob goes
    assert np.array_equal(G.drop_small_parts(field, 0.5, 0.2) > 0.5, big)
    assert np.array_equal(G.drop_small_parts(field, 0.5, 0.0), field)  # 0 disables
    assert np.array_equal(field > 0.5, big | mid | tiny)               # input untouched
    mesh = G.mesh_from_field(kept, 0.5)
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 2


def test_mesh_parts_counts_separate_pieces():
    field = np.zeros((32, 32, 32), dtype=np.float32)
    assert G.mesh_parts(G.mesh_from_field(field, 0.5)) == 0
    field[4:10, 4:10, 4:10] = 1.0
    assert G.mesh_parts(G.mesh_from_field(field, 0.5)) == 1
    field[20:26, 20:26, 20:26] = 1.0                      # a second, separate block
    assert G.mesh_parts(G.mesh_from_field(field, 0.5)) == 2
    field[9:21, 9:21, 9:21] = 1.0                         # a bridge joins them
    assert G.mesh_parts(G.mesh_from_field(field, 0.5)) == 1
