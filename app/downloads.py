"""Files the app writes for a user: one folder per browser session, removed when the session ends.

Layout: ``<root>/<session>/<run>/<class>[_completed]_<seed>.{glb,obj,stl}`` and ``..._mesh.ply`` (mesh),
``..._points.{ply,npy}`` (2048 surface points), all from the same decoded ``Result`` (no
re-sampling), plus scans made in the app. A new run in a session removes the session's older runs.
The root is a gradio static path (``layout.build_demo``), so gradio serves these files where they
are instead of copying each into its cache: removing a session folder removes every copy.

When a session goes (``SessionFiles.sweep``, called every few seconds by ``Handlers``' janitor):
- a browser tab that closed (``demo.unload`` -> ``end``): ``end_grace_s`` later, so that a heartbeat
  that drops and reconnects does not lose the files it was just shown;
- a client that never says goodbye (plain HTTP on the queue): after ``idle_ttl_s`` without a request;
- never while it is decoding (``active``): the files of a run in progress are removed after it.
Each session may keep at most ``max_session_bytes`` on disk: older scans go first, and a new run
that does not fit is refused in plain words. The root goes when the app closes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from smart3d.export import export_mesh, export_points
from smart3d.pipeline import Result

MESH_SUFFIXES = ("glb", "obj", "stl", "ply")
POINT_SUFFIXES = ("ply", "npy")


class SessionFiles:
    """Per-session folders under one root: created lazily, swept when their session ends or idles."""

    def __init__(self, root: str | Path | None = None, end_grace_s: float = 30.0, idle_ttl_s: float = 600.0,
                 max_session_bytes: int = 50 * 2**20):
        base = Path(root) if root is not None else Path(tempfile.gettempdir()) / "smart3d-app"
        base.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="sessions-", dir=base))
        self.end_grace_s, self.idle_ttl_s, self.max_session_bytes = end_grace_s, idle_ttl_s, max_session_bytes
        self._lock = threading.Lock()
        self._last_used: dict[str, float] = {}     # folder name -> time of its session's last request
        self._ended: dict[str, float] = {}         # folder name -> when its session said goodbye
        self._active: dict[str, int] = {}          # folder name -> decodings running

    @staticmethod
    def _safe(name: str | None) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name or "")[:80] or "anonymous"

    def session_dir(self, session: str | None) -> Path:
        return self.root / self._safe(session)

    def touch(self, session: str | None) -> None:
        """A request from ``session``: it is alive."""
        key = self._safe(session)
        with self._lock:
            self._last_used[key] = time.monotonic()
            self._ended.pop(key, None)

    @contextmanager
    def active(self, session: str | None):
        """Mark a decoding of ``session`` as running: its files are not swept meanwhile."""
        key = self._safe(session)
        self.touch(session)
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._active[key] -= 1
                if not self._active[key]:
                    del self._active[key]
                self._last_used[key] = time.monotonic()

    def is_active(self, session: str | None) -> bool:
        with self._lock:
            return self._safe(session) in self._active

    @property
    def running(self) -> int:
        """Decodings running now, over all sessions."""
        with self._lock:
            return sum(self._active.values())

    def new_run(self, session: str | None, reserve: int = 0) -> Path:
        """A fresh folder for one run; older runs of the same session are removed, and old scans if
        the session would hold more than ``max_session_bytes`` with ``reserve`` more bytes."""
        folder = self.session_dir(session)
        if folder.exists():
            for old in folder.iterdir():
                if old.is_dir() and old.name.startswith("run-"):
                    shutil.rmtree(old, ignore_errors=True)
        self.make_room(session, reserve)
        run = folder / f"run-{uuid.uuid4().hex[:12]}"
        run.mkdir(parents=True)
        return run

    def scratch(self, session: str | None, reserve: int = 0) -> Path:
        """Folder for scans made in the app (kept until the session ends, oldest dropped past the cap)."""
        self.make_room(session, reserve)
        folder = self.session_dir(session) / "scans"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def make_room(self, session: str | None, reserve: int) -> None:
        """Remove the session's oldest scans until ``reserve`` more bytes fit under the cap."""
        if reserve > self.max_session_bytes:
            raise ValueError(f"This would need {reserve / 2**20:.1f} MB on the server, more than the "
                             f"{self.max_session_bytes / 2**20:.0f} MB a session may keep.")
        folder = self.session_dir(session)
        files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime) \
            if folder.exists() else []
        used = sum(p.stat().st_size for p in files)
        for old in (p for p in files if p.parent.name == "scans"):
            if used + reserve <= self.max_session_bytes:
                break
            used -= old.stat().st_size
            old.unlink(missing_ok=True)

    def disk_bytes(self, session: str | None) -> int:
        folder = self.session_dir(session)
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0

    def end(self, session: str | None, now: bool = False) -> None:
        """The session said goodbye: sweep its files ``end_grace_s`` from now (at once with ``now``)."""
        key = self._safe(session)
        with self._lock:
            self._ended[key] = time.monotonic() - (self.end_grace_s if now else 0.0)
        if now:
            self.sweep()

    def sweep(self) -> list[str]:
        """Remove the files of sessions that ended ``end_grace_s`` ago or idled ``idle_ttl_s`` (never of one
        that is decoding). Returns the folder names of the sessions removed."""
        t = time.monotonic()
        with self._lock:
            known = set(self._last_used) | set(self._ended)
            known |= {p.name for p in self.root.iterdir()} if self.root.exists() else set()
            gone = [k for k in known if k not in self._active and (
                t - self._ended.get(k, float("inf")) >= self.end_grace_s or
                t - self._last_used.get(k, -float("inf")) >= self.idle_ttl_s)]
            for k in gone:
                self._last_used.pop(k, None)
                self._ended.pop(k, None)
        for k in gone:
            shutil.rmtree(self.root / k, ignore_errors=True)
        return gone

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
