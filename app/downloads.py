"""Files the app writes for a user: one folder per browser session, removed when the session ends.

Layout: ``<root>/<session>/<run>/<class>[_completed]_<seed>.{glb,obj,stl}`` and ``..._mesh.ply`` (mesh),
``..._points.{ply,npy}`` (2048 surface points), all from the same decoded ``Result`` (no
re-sampling), plus scans made in the app. A new run in a session removes the session's older runs
(gradio keeps its own copy of what it already served, cleaned by ``Blocks(delete_cache=...)``).
A session folder goes when the browser tab closes (``demo.unload``) or, for API clients that never
say goodbye, when their ``gr.State`` expires (its ``delete_callback``); the root goes when the app
closes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

from smart3d.export import export_mesh, export_points
from smart3d.pipeline import Result

MESH_SUFFIXES = ("glb", "obj", "stl", "ply")
POINT_SUFFIXES = ("ply", "npy")


class SessionFiles:
    """Per-session folders under one root (created lazily, removed by ``end`` / ``close``)."""

    def __init__(self, root: str | Path | None = None):
        base = Path(root) if root is not None else Path(tempfile.gettempdir()) / "smart3d-app"
        base.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="sessions-", dir=base))

    @staticmethod
    def _safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "anonymous"

    def session_dir(self, session: str | None) -> Path:
        return self.root / self._safe(session or "anonymous")

    def new_run(self, session: str | None) -> Path:
        """A fresh folder for one run; older runs of the same session are removed."""
        folder = self.session_dir(session)
        if folder.exists():
            for old in folder.iterdir():
                if old.is_dir() and old.name.startswith("run-"):
                    shutil.rmtree(old, ignore_errors=True)
        run = folder / f"run-{uuid.uuid4().hex[:12]}"
        run.mkdir(parents=True)
        return run

    def scratch(self, session: str | None) -> Path:
        """Folder for scans made in the app (kept until the session ends)."""
        folder = self.session_dir(session) / "scans"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def end(self, session: str | None) -> None:
        shutil.rmtree(self.session_dir(session), ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def write_downloads(result: Result, folder: Path, stem: str, metadata: dict) -> dict[str, Path]:
    """Every download of one result: ``{"glb", "obj", "stl", "ply", "points_ply", "points_npy"} -> path``.

    The GLB carries ``metadata`` (seed and settings) in its scene extras (``smart3d.export``).
    """
    out = {fmt: export_mesh(result.mesh, folder / f"{stem}.{fmt}" if fmt != "ply" else folder / f"{stem}_mesh.ply",
                            metadata if fmt == "glb" else None) for fmt in MESH_SUFFIXES}
    for fmt in POINT_SUFFIXES:
        out[f"points_{fmt}"] = export_points(result.points, folder / f"{stem}_points.{fmt}")
    return out
