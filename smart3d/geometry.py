"""Voxel and patch geometry: grids, voxelisation, patches <-> tokens, fields -> meshes -> points.

Everything here works in the *canonical frame*: the voxel cube [-1, 1]^3, y up. A 32^3 grid has
voxels of side 1/16; it is split into 4^3-voxel patches, giving an 8^3 lattice of 512 patch tokens
whose order is C order over (x, y, z) (x slowest), the same order as ``grid.reshape(-1)`` of an
8^3 array. Shapes are put in this frame by the per-shape unit box normalisation (bounding box
centred, longest side ``2 * FILL``), see ``smart3d.dataset``.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from skimage import measure

GRID = 32                    # voxels per side
PATCH = 4                    # voxels per patch side
LATTICE = GRID // PATCH      # patches per side (8)
NUM_PATCHES = LATTICE**3     # 512 tokens
FILL = 0.9                   # the longest side of a normalised shape spans 2 * FILL of the cube [-1, 1]


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------

def voxel_centers(resolution: int = GRID) -> np.ndarray:
    """Centres of the voxels of a ``resolution^3`` grid over [-1, 1]^3: (R, R, R, 3) float64."""
    t = -1.0 + (np.arange(resolution) + 0.5) * (2.0 / resolution)
    return np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1)


def corner_grid(resolution: int, extent: float = 1.0) -> np.ndarray:
    """``(resolution + 1)^3`` lattice points spanning [-extent, extent]^3: (R+1, R+1, R+1, 3) float64."""
    t = np.linspace(-extent, extent, resolution + 1)
    return np.stack(np.meshgrid(t, t, t, indexing="ij"), axis=-1)


def patch_centroids(lattice: int = LATTICE) -> np.ndarray:
    """Centroids ``c_i`` of the patches in the canonical frame: (lattice^3, 3) float32, token order."""
    return voxel_centers(lattice).reshape(-1, 3).astype(np.float32)


def lattice_coords(lattice: int = LATTICE) -> np.ndarray:
    """Integer lattice coordinates of the tokens: (lattice^3, 3) int64, token order."""
    idx = np.arange(lattice)
    return np.stack(np.meshgrid(idx, idx, idx, indexing="ij"), axis=-1).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# Voxelisation
# --------------------------------------------------------------------------------------------

def voxelize_points(points: np.ndarray, resolution: int = GRID) -> np.ndarray:
    """Voxels hit by at least one point. points : (N, 3) in the canonical frame -> (R, R, R) bool.

    Points outside [-1, 1]^3 are ignored (the caller normalises first).
    """
    points = np.asarray(points, dtype=np.float64)
    ijk = np.floor((points + 1.0) * (resolution / 2.0)).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < resolution), axis=1)
    ijk = ijk[inside]
    grid = np.zeros((resolution,) * 3, dtype=bool)
    grid[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
    return grid


SURFACE_CHANNELS = 10        # see surface_features


def surface_features(points, resolution: int = GRID) -> torch.Tensor:
    """Per-voxel statistics of the surface points that fall in each voxel: what the tokenizer reads.

    points : (N, 3) or (B, N, 3) array/tensor in the canonical frame (points outside [-1, 1]^3 are
    ignored; a list of (N_b, 3) arrays of different sizes is accepted too)
    -> (B, 10, R, R, R) float32 with, per voxel, in units of the voxel side:

    - channel 0: 1 if the voxel holds a point (``voxelize_points``), else 0
    - channels 1-3: ``2 *`` the mean offset of its points from the voxel centre, in [-1, 1]
    - channels 4-9: ``12 *`` their second central moments (xx, yy, zz, xy, xz, yz)

    The moments say where, inside a voxel, the surface passes and how it is oriented (and whether
    two sheets of a thin part cross it), which decides whether the voxel centre is inside; a bare
    occupied/empty bit cannot. Each voxel depends only on the points inside it, so a patch's
    features (and token) depend only on the points in that patch. Empty voxels are all zero.
    """
    if isinstance(points, (list, tuple)):
        return torch.cat([surface_features(p, resolution) for p in points])
    pts = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points).float()
    if pts.ndim == 2:
        pts = pts[None]
    B, R = pts.shape[0], resolution
    u = (pts.reshape(-1, 3) + 1.0) * (R / 2.0)                          # voxel units
    ijk = torch.floor(u)
    inside = ((ijk >= 0) & (ijk < R)).all(-1).float()                  # outside points get weight 0
    x, y, z = (u - ijk - 0.5).unbind(1)                                 # offsets in [-0.5, 0.5)
    i, j, k = ijk.long().clamp(0, R - 1).unbind(1)
    batch = torch.arange(B).repeat_interleave(pts.shape[1])
    flat = ((batch * R + i) * R + j) * R + k
    stats = torch.stack([torch.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], 1) * inside[:, None]
    acc = torch.zeros(B * R**3, 10).index_add_(0, flat, stats)
    count = acc[:, :1].clamp(min=1)
    mean = acc[:, 1:4] / count
    second = acc[:, 4:] / count - mean[:, [0, 1, 2, 0, 0, 1]] * mean[:, [0, 1, 2, 1, 2, 2]]
    feats = torch.cat([(acc[:, :1] > 0).float(), 2.0 * mean, 12.0 * second], 1)
    return feats.view(B, R, R, R, 10).permute(0, 4, 1, 2, 3).contiguous()


def voxelize_mesh(mesh: trimesh.Trimesh, resolution: int = GRID) -> np.ndarray:
    """Solid occupancy of a watertight mesh at the voxel centres: (R, R, R) bool."""
    centers = voxel_centers(resolution).reshape(-1, 3)
    return mesh.contains(centers).reshape((resolution,) * 3)


# --------------------------------------------------------------------------------------------
# Patches <-> tokens
# --------------------------------------------------------------------------------------------

def patchify(grid: np.ndarray | torch.Tensor, patch: int = PATCH):
    """Split grids into patches. grid : (..., R, R, R) -> (..., (R/p)^3, p^3), token order."""
    *lead, R, R2, R3 = grid.shape
    assert R == R2 == R3 and R % patch == 0, f"grid {grid.shape} is not a cube divisible by {patch}"
    n = R // patch
    x = grid.reshape(*lead, n, patch, n, patch, n, patch)            # (..., n, p, n, p, n, p)
    k = len(lead)
    order = (*range(k), k, k + 2, k + 4, k + 1, k + 3, k + 5)        # (..., n, n, n, p, p, p)
    x = x.permute(order) if isinstance(x, torch.Tensor) else x.transpose(order)
    return x.reshape(*lead, n**3, patch**3)


def unpatchify(patches: np.ndarray | torch.Tensor, patch: int = PATCH):
    """Inverse of ``patchify``: (..., n^3, p^3) -> (..., n*p, n*p, n*p)."""
    *lead, L, P = patches.shape
    n = round(L ** (1 / 3))
    assert n**3 == L and P == patch**3, f"cannot unpatchify {patches.shape} with patch {patch}"
    x = patches.reshape(*lead, n, n, n, patch, patch, patch)
    k = len(lead)
    order = (*range(k), k, k + 3, k + 1, k + 4, k + 2, k + 5)        # (..., n, p, n, p, n, p)
    x = x.permute(order) if isinstance(x, torch.Tensor) else x.transpose(order)
    return x.reshape(*lead, n * patch, n * patch, n * patch)


def visible_patch_mask(points: np.ndarray, min_points: int = 1, lattice: int = LATTICE) -> np.ndarray:
    """Patches observed by a (partial) point cloud: those holding at least ``min_points`` points.

    points : (N, 3) canonical frame -> (lattice^3,) bool in token order.
    """
    points = np.asarray(points, dtype=np.float64)
    ijk = np.floor((points + 1.0) * (lattice / 2.0)).astype(np.int64)
    ijk = ijk[np.all((ijk >= 0) & (ijk < lattice), axis=1)]
    flat = np.ravel_multi_index(ijk.T, (lattice,) * 3)
    counts = np.bincount(flat, minlength=lattice**3)
    return counts >= min_points


# --------------------------------------------------------------------------------------------
# Fields -> meshes -> points
# --------------------------------------------------------------------------------------------

def mesh_from_field(field: np.ndarray, level: float, inside: str = "above",
                    extent: float = 1.0, centered: bool = True) -> trimesh.Trimesh:
    """Marching cubes on a scalar field sampled on a regular grid over [-extent, extent]^3.

    field : (R, R, R) float. ``inside="above"`` for occupancy/probability (inside where field > level),
    ``"below"`` for signed distance (inside where field < level). ``centered=True`` means samples sit
    at voxel centres (R voxels over the cube); ``False`` means at the R lattice points spanning it.
    The grid is padded by one sample of "outside" so the surface always closes; the result is
    watertight with outward normals. An empty field gives an empty mesh.
    """
    field = np.asarray(field, dtype=np.float32)
    R = field.shape[0]
    sign = 1.0 if inside == "above" else -1.0
    f = sign * (field - level)                                   # > 0 inside
    f[f == 0] = -1e-7                                            # no sample exactly on the surface
    if not np.any(f > 0):
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=np.int64))
    pad = float(min(f.min(), 0.0) - 1.0)
    f = np.pad(f, 1, mode="constant", constant_values=pad)
    verts, faces, _, _ = measure.marching_cubes(f, level=0.0, gradient_direction="ascent")
    verts = verts - 1.0                                          # remove the pad
    if centered:
        verts = -extent + (verts + 0.5) * (2.0 * extent / R)
    else:
        verts = -extent + verts * (2.0 * extent / (R - 1))
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)   # "ascent": outward normals
    if not mesh.is_watertight:            # samples exactly on the level make zero-area triangles
        mesh.update_faces(mesh.nondegenerate_faces())
        mesh.remove_unreferenced_vertices()
        mesh.merge_vertices()
    return mesh


def drop_small_parts(field: np.ndarray, level: float, min_fraction: float) -> np.ndarray:
    """Clear the connected parts of ``field > level`` smaller than ``min_fraction`` of the largest.

    Sampled token grids can leave small floating blobs that no training shape has (every benchmark
    shape is one 26-connected solid). Returns a copy whose cleared voxels are set just below
    ``level`` so no surface is extracted there; ``min_fraction <= 0`` returns the field unchanged.
    """
    from scipy import ndimage

    field = np.array(field, dtype=np.float32, copy=True)
    if min_fraction <= 0:
        return field
    labels, n = ndimage.label(field > level, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return field
    sizes = np.bincount(labels.ravel())[1:]
    small = np.flatnonzero(sizes < min_fraction * sizes.max()) + 1
    drop = np.isin(labels, small)
    field[drop] = np.minimum(field[drop], np.float32(level) - np.float32(1e-3))
    return field


def mesh_parts(mesh: trimesh.Trimesh) -> int:
    """Connected pieces of a mesh (face-connected surface components; 0 for an empty mesh).

    Every benchmark shape is one piece; a generated shape with floating fragments has more."""
    if len(mesh.faces) == 0:
        return 0
    return len(trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces))))


def sample_surface(mesh: trimesh.Trimesh, num_points: int, seed: int = 0) -> np.ndarray:
    """Area-uniform points on a mesh surface: (num_points, 3) float32 (zeros if the mesh is empty)."""
    if len(mesh.faces) == 0:
        return np.zeros((num_points, 3), dtype=np.float32)
    pts, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
    return np.asarray(pts, dtype=np.float32)
