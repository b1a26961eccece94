"""Offscreen rendering with pyrender: shaded views of meshes and contact sheets.

Headless: OSMesa on CPU (Debian's ``libosmesa6``); set ``PYOPENGL_PLATFORM=egl`` before importing
this module to use a GPU. The platform must be chosen before OpenGL is first imported, which is
why this module sets it at import time and is imported lazily by the rest of the package.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import numpy as np
import pyrender
import trimesh
from PIL import Image, ImageDraw

# One palette for everything we draw: a clay-like colour reads shape best.
CLAY = (0.62, 0.55, 0.47, 1.0)
BACKGROUND = (1.0, 1.0, 1.0, 1.0)


def _look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world pose looking from ``eye`` at ``target`` (OpenGL camera looks down -z)."""
    z = eye - target
    z = z / np.linalg.norm(z)
    x = np.cross(up, z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def view_pose(azimuth: float = 35.0, elevation: float = 25.0, distance: float = 3.6) -> np.ndarray:
    """Camera-to-world pose on a sphere around the origin (degrees; azimuth 0 looks at the front, +z)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    eye = distance * np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    return _look_at(eye, np.zeros(3))


class Renderer:
    """Reusable offscreen renderer for meshes in the canonical frame ([-1, 1]^3, y up, front +z)."""

    def __init__(self, size: int = 256, azimuth: float = 35.0, elevation: float = 25.0,
                 distance: float = 3.6):
        self.size = size
        self._renderer = pyrender.OffscreenRenderer(size, size)
        self.camera_pose = view_pose(azimuth, elevation, distance)

    def render(self, mesh: trimesh.Trimesh, color=CLAY, pose: np.ndarray | None = None,
               light: float = 2.0) -> np.ndarray:
        """Shaded image of ``mesh``: (size, size, 3) uint8 (blank if the mesh is empty).

        ``pose`` (4, 4) overrides the camera of the constructor (see ``view_pose``); the head light
        of intensity ``light`` follows the camera.
        """
        pose = self.camera_pose if pose is None else pose
        scene = pyrender.Scene(bg_color=BACKGROUND, ambient_light=(0.35, 0.35, 0.35))
        if len(mesh.faces):
            material = pyrender.MetallicRoughnessMaterial(baseColorFactor=color, metallicFactor=0.0,
                                                          roughnessFactor=0.8)
            scene.add(pyrender.Mesh.from_trimesh(mesh, material=material, smooth=False))
        scene.add(pyrender.PerspectiveCamera(yfov=np.radians(40.0)), pose=pose)
        scene.add(pyrender.DirectionalLight(intensity=light), pose=pose)
        key = _look_at(np.array([2.0, 4.0, 1.0]), np.zeros(3))
        scene.add(pyrender.DirectionalLight(intensity=1.5), pose=key)
        color_img, _ = self._renderer.render(scene)
        return np.asarray(color_img[..., :3])

    def close(self) -> None:
        self._renderer.delete()

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def contact_sheet(images: list[np.ndarray], labels: list[str] | None = None, columns: int = 4,
                  title: str | None = None) -> Image.Image:
    """Tile equally sized (H, W, 3) uint8 images into one sheet, with optional captions."""
    assert images, "no images to tile"
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    top = 24 if title else 0
    sheet = Image.new("RGB", (columns * w, rows * h + top), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 5), title, fill=(0, 0, 0))
    for k, img in enumerate(images):
        x, y = (k % columns) * w, (k // columns) * h + top
        sheet.paste(Image.fromarray(img), (x, y))
        if labels:
            draw.text((x + 4, y + h - 14), labels[k], fill=(90, 90, 90))
    return sheet


def render_meshes(meshes: list[trimesh.Trimesh], size: int = 192) -> list[np.ndarray]:
    """Render each mesh from the default 3/4 view."""
    with Renderer(size) as r:
        return [r.render(m) for m in meshes]


def save_mesh_sheet(meshes: list[trimesh.Trimesh], labels: list[str], path, title: str, size: int = 160,
                    columns: int = 4) -> None:
    """Render meshes and write them as one contact sheet PNG (parent folders created)."""
    sheet = contact_sheet(render_meshes(meshes, size=size), labels, columns=columns, title=title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
