"""Writing results: meshes as GLB / OBJ / STL / PLY, points as PLY / NPY, settings in GLB extras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

MESH_FORMATS = ("glb", "obj", "stl", "ply")


def export_mesh(mesh: trimesh.Trimesh, path: str | Path, metadata: dict | None = None) -> Path:
    """Write a mesh; the format follows the suffix. GLB files carry ``metadata`` in the scene extras."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {fmt!r}; valid formats: {', '.join(MESH_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "glb":
        scene = trimesh.Scene(mesh)
        scene.metadata["smart3d"] = metadata or {}
        scene.export(path)
    else:
        mesh.export(path)
    return path


def export_points(points: np.ndarray, path: str | Path) -> Path:
    """Write (N, 3) points as ``.ply`` (vertices only) or ``.npy`` (float32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, np.asarray(points, dtype=np.float32))
    elif path.suffix == ".ply":
        trimesh.PointCloud(np.asarray(points, dtype=np.float64)).export(path)
    else:
        raise ValueError(f"unsupported point format {path.suffix!r}; valid formats: .ply, .npy")
    return path


def glb_metadata(path: str | Path) -> dict:
    """The ``smart3d`` settings stored in a GLB written by ``export_mesh``."""
    return dict(trimesh.load(path).metadata.get("smart3d", {}))
