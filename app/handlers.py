"""Event handlers: plain Python, importable and callable without launching the app.

    from app.handlers import Handlers
    h = Handlers(load_pipeline("weights"))
    for viewer, seed, downloads, slider, run in h.generate("chair", 0, False, 25, 1.0, 1.0, 0, 2.0,
                                                           "cosine", "spatial", "step"):
        print(json.loads(viewer)["caption"])       # step k/25 - n/576 tokens

``generate``, ``complete`` and ``generate_image`` turn their input into a ``smart3d.pipeline.Condition``,
iterate ``Pipeline.steps`` on it and yield exactly one output per decoding step (the last one also
carries the downloads and the recorded ``Run``). The recorded ``Step`` records live in a ``gr.State``
(a ``Run``), so ``replay`` and ``play`` redraw any step without recomputing. Every user mistake
becomes a ``gr.Error`` in plain words, logged as one line (``user_errors``); anything unexpected is
logged with its traceback and shown as a short apology, never a stack trace.

What the server keeps per session is bounded: one recorded run (its steps, no previews), the files of
that run plus a capped number of scans (``downloads.SessionFiles``), all dropped when the session
ends or idles (a janitor thread, ``start_janitor``). After each decoding freed heap pages go back to
the system (``release_memory``). ``shutdown`` refuses new work and ends running decodings at their
next step (``ShuttingDown``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import inspect
import itertools
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from smart3d.batching import DecodeBatcher, TooManyRequests
from smart3d.classes import CLASSES
from smart3d.dataset import check_class
from smart3d.editing import REGIONS, keep_outside, keep_until
from smart3d.intake import Placement
from smart3d.pipeline import DEFAULT_IMAGE_CONFIDENCE, Condition, Pipeline
from smart3d.sampler import SamplingOptions, Step, empty_tokens

from .downloads import SessionFiles, write_downloads
from .inputs import Scan, _as_path, check_frame, check_up, load_scan, make_scan, open_image, read_scan, write_scan
from .settings import check_color_mode, compare_options, options_from_ui, resolve_seed
from .viewers import placement_preview, step_payload, surface_voxels, to_json

log = logging.getLogger("smart3d.app")

ANY_CLASS = "any"        # completion without a class (the null class of classifier-free guidance)
CUSTOM_BOX = "custom box"  # region editing: the box given by its bounds rather than a named half


@dataclass(frozen=True)
class AppConfig:
    """Server-side limits of the app."""

    max_file_mb: float = 20.0          # uploads (also passed to launch(max_file_size=...))
    max_points: int = 2_000_000        # points (or mesh vertices) in an uploaded scan
    queue_size: int = 16               # requests waiting in the queue before new ones are refused
    decode_concurrency: int = 8        # decodings in flight at once: decoded together (smart3d.batching)
    batch_window_s: float = 0.05       # a decoding waits this long for others to share its batch
    max_decodes_per_user: int = 2      # one session's decodings waiting or running at once
    light_concurrency: int = 4         # replays, previews, scans
    placed_scans: int = 8              # automatic scan placements kept (the hand controls reuse them)
    state_ttl_s: int = 600             # a session idle this long is forgotten (its run, its files)
    end_grace_s: float = 30.0          # a session that said goodbye is forgotten this much later
    sweep_every_s: float = 5.0         # how often ended and idle sessions are looked for
    max_session_mb: float = 50.0       # disk one session may keep (older scans are dropped first)
    shutdown_grace_s: float = 15.0     # on SIGTERM, running decodings are cancelled and awaited this long
    play_interval_s: float = 0.15      # pause between steps when replaying with the play button

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


@dataclass
class Run:
    """One decoding, recorded for replay: what a session's ``gr.State`` holds."""

    run_id: str
    kind: str                              # "generate", "complete", "image", "resample" or "region"
    class_name: str | None
    seed: int
    options: SamplingOptions
    steps: list[Step]                      # every recorded step, batch of one, no previews
    session: str | None
    files: dict[str, Path] = field(default_factory=dict)
    surfaces: list = field(default_factory=list)   # each step's forming surface (viewers.surface_voxels, uint8)
    scan: str | None = None                # description of the scan (completion), of the image or of the edit
    labels: torch.Tensor | None = None     # (1,) the class id decoded for (null: none)
    given: torch.Tensor | None = None      # (1, L) bool, the input's given tokens (scan, image): edits keep them
    placement: Placement | None = None     # a scan's placement: downloads go back to its frame (None: canonical)

    @property
    def num_steps(self) -> int:
        return len(self.steps)


def release_memory() -> None:
    """Give freed heap pages back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    A decoding allocates and frees many mid-sized buffers from gradio's worker threads; glibc keeps
    the freed pages in per-thread arenas, so without this the server's RSS only ever grows.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_LIBC = None
try:
    if ctypes.util.find_library("c"):
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
        _LIBC.malloc_trim                   # glibc only (musl and macOS have no malloc_trim)
except (OSError, AttributeError):
    _LIBC = None


class ShuttingDown(gr.Error):
    """The server is stopping: a running decoding ends early with this message."""

    def __init__(self):
        super().__init__("The server is shutting down, so this decoding was stopped. Try again in a minute.",
                         print_exception=False)


def user_errors(fn):
    """Turn ``ValueError`` (bad input, bad settings) into ``gr.Error``, logged as one line; log anything
    else with its traceback."""

    def convert(err: Exception) -> gr.Error:
        if isinstance(err, gr.Error):
            return err
        if isinstance(err, ValueError):
            log.info("refused %s: %s", fn.__name__, err)
            return gr.Error(str(err), print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(f"Something went wrong on the server ({type(err).__name__}); the details are in its log.",
                        print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:
                raise convert(err) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise convert(err) from None
    return call


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


class Handlers:
    """The app's behaviour, bound to one pipeline (the layout wires these to components)."""

    def __init__(self, pipe: Pipeline, config: AppConfig = AppConfig(), files: SessionFiles | None = None):
        self.pipe, self.config = pipe, config
        self.files = files or SessionFiles(end_grace_s=config.end_grace_s, idle_ttl_s=config.state_ttl_s,
                                           max_session_bytes=int(config.max_session_mb * 2**20))
        self.layout = pipe.layout
        self.empty = empty_tokens(pipe.tokenizer).cpu()         # (L,) "empty space" code per position
        self.stopping = threading.Event()                       # set by ``shutdown``
        self._janitor: threading.Thread | None = None
        # concurrent decodings with the same settings run as one batch, each with its own seed
        self.batcher = DecodeBatcher(pipe, config.batch_window_s, config.decode_concurrency, config.max_decodes_per_user)
        self._placed: OrderedDict[tuple, Scan] = OrderedDict()   # (file, class, frame, up) -> placed scan
        self._placed_lock = threading.Lock()

    def _session(self, request: gr.Request | None) -> str | None:
        """The request's session (marked alive); refuses new work while shutting down."""
        if self.stopping.is_set():
            raise ShuttingDown()
        session = _session(request)
        self.files.touch(session)
        return session

    # ---- decoding -----------------------------------------------------------------------------

    def _view(self, run: Run, k: int, color_by: str, key: str) -> str:
        """The viewer value (JSON text) for recorded step ``k`` of ``run``; ``key`` names the drawing."""
        return to_json(step_payload(run.steps, k, self.empty, self.layout, color_by, key, run.kind, run.surfaces))

    @staticmethod
    def _settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k, guidance, schedule, policy,
                  color_by) -> tuple[int, SamplingOptions, str]:
        """The checked seed, sampling options and colouring of a request (every decoding tab shows the same settings)."""
        options = options_from_ui(steps, temperature_start, temperature_end, top_k, guidance, schedule, policy)
        color_by = check_color_mode(color_by)
        return resolve_seed(seed, randomize_seed), options, color_by

    def _decode(self, kind: str, class_name: str | None, condition: Condition, seed: int, options: SamplingOptions,
                color_by: str, session: str | None, scan: str | None = None, *, given: torch.Tensor | None,
                placement: Placement | None = None):
        """Stream the decoding of a one-shape ``condition``: yields (viewer, seed, downloads, slider, run), one per
        step. ``given``: the positions the input fixed (a scan's, an image's; an edit passes its parent's, so
        that a later edit may redraw what this one kept). ``placement``: a scan's, to write the downloads in
        the scan's own frame and units (None: the canonical frame)."""
        with self.files.active(session):
            try:
                yield from self._stream(kind, class_name, condition, seed, options, color_by, session, scan, given,
                                        placement)
            finally:
                release_memory()

    def _keep(self, run: Run, step: Step) -> None:
        """Record a streamed step in ``run``: its preview as the forming surface (at most 2500 voxel indices),
        the step without it. Ends the decoding if the server is shutting down."""
        if self.stopping.is_set():
            raise ShuttingDown()
        run.surfaces.append(surface_voxels(step.preview[0].numpy()))
        run.steps.append(replace(step, preview=None))

    def _stream(self, kind, class_name, condition, seed, options, color_by, session, scan, given, placement):
        T = options.num_steps
        run = Run(uuid.uuid4().hex[:12], kind, class_name, seed, options, [], session, scan=scan,
                  labels=condition.labels, given=given, placement=placement)
        pending = None           # a step is sent when the next one exists: the last one goes out with the downloads
        # the decoding, then any repair rounds; each step's preview (its belief decoded) becomes the forming
        # surface drawn in the viewer, kept as at most 2500 voxel indices (not the 32^3 field)
        try:
            steps = self.batcher.steps(condition, seed, replace(options, preview=True), user=session)
        except TooManyRequests as e:
            raise gr.Error(str(e)) from None
        for step in steps:
            self._keep(run, step)
            if pending is not None:
                yield pending
            viewer = self._view(run, step.index, color_by, run.run_id)
            first = step.index == 1
            pending = (viewer, seed, None if first else gr.skip(),
                       gr.Slider(minimum=1, maximum=T, value=1, step=1, interactive=False) if first else gr.skip(),
                       gr.skip())
        result = self.pipe.decode(run.steps[-1].tokens, seed, condition.labels, options.min_part, options.precision)[0]
        downloads = None
        if len(result.mesh.faces) == 0:
            gr.Warning("The decoded shape is empty (every token is empty space), so there is no mesh to download. "
                       "Try another seed or a higher guidance.")
        else:
            metadata = {"kind": kind, "class": class_name, "seed": seed, "options": options.record(),
                        "scan": scan, "generator": "smart3d app", "frame": "canonical"}
            if placement is not None:        # back to the scan's own frame and units: it overlays the scan
                result = replace(result, mesh=placement.mesh_to_scan(result.mesh),
                                 points=placement.to_scan(result.points).astype(np.float32))
                metadata.update(frame="scan (the uploaded file's axes and units)",
                                scan_to_canonical=np.round(placement.matrix, 8).tolist())
            suffix = {"complete": "_completed", "image": "_from_image", "resample": "_resampled",
                      "region": "_regenerated"}.get(kind, "")
            stem = f"{class_name or 'shape'}{suffix}_{seed}"
            run.files = write_downloads(result, self.files.new_run(session), stem, metadata)
            downloads = [str(p) for p in run.files.values()]
        n = run.num_steps
        yield (viewer, seed, downloads, gr.Slider(minimum=1, maximum=n, value=n, step=1, interactive=True), run)

    @user_errors
    def generate(self, class_name: str, seed: float, randomize_seed: bool, steps: float, temperature_start: float,
                 temperature_end: float, top_k: float, guidance: float, schedule: str, policy: str,
                 color_by: str, request: gr.Request = None):
        """Generate a shape of ``class_name``, streaming every decoding step."""
        check_class(class_name)
        seed, options, color_by = self._settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k,
                                                 guidance, schedule, policy, color_by)
        yield from self._decode("generate", class_name, self.pipe.condition(class_name), seed, options, color_by,
                                self._session(request), given=None)

    @user_errors
    def complete(self, scan_file, class_name: str, frame: str, up: str, turn: float, scale: float, offset_x: float,
                 offset_y: float, offset_z: float, canonical_downloads: bool, seed: float, randomize_seed: bool,
                 steps: float, temperature_start: float, temperature_end: float, top_k: float, guidance: float,
                 schedule: str, policy: str, color_by: str, request: gr.Request = None):
        """Complete a partial scan (its observed patches are given and never change). The scan is placed as
        ``frame`` says (``inputs.FRAMES``) with the up axis ``up``, then moved by hand (``Scan.adjust``: ``turn``
        degrees about the box's vertical axis, ``scale`` times, shifted by the offset; ``None``: no change);
        downloads are in the scan's frame and units unless ``canonical_downloads``."""
        class_name = None if class_name in (None, "", ANY_CLASS) else check_class(class_name)
        seed, options, color_by = self._settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k,
                                                 guidance, schedule, policy, color_by)
        if canonical_downloads not in (None, True, False):
            raise ValueError(f"'Downloads in the canonical frame' must be true or false; got {canonical_downloads!r}.")
        scan = self._scan(scan_file, class_name, frame, up).adjust(turn, scale, (offset_x, offset_y, offset_z))
        tokens, visible = self._observe(scan)
        if not visible[self.layout.num_coarse:].any():
            raise ValueError(f"{scan.name}: none of its points falls inside the canonical box, so nothing is "
                             "observed. Check the placement (scale and offset) in the preview.")
        condition = self.pipe.condition(class_name, 1, tokens, visible)
        what = scan.describe() + (" Downloads in the canonical frame." if canonical_downloads else
                                  " Downloads in the scan's own frame and units.")
        yield from self._decode("complete", class_name, condition, seed, options, color_by, self._session(request),
                                what, given=condition.known,
                                placement=None if canonical_downloads else scan.placement)

    # ---- placing a scan (smart3d.intake) --------------------------------------------------------

    def _scan(self, scan_file, class_name: str | None, frame: str, up: str) -> Scan:
        """The scan read and placed (automatically, or as it is), from the last ``placed_scans`` placements
        when the same file, class, frame and up axis were placed before: the hand controls never search again."""
        frame, up = check_frame(frame), check_up(up)
        path = _as_path(scan_file, "No scan given: upload a point cloud or mesh, pick an example, or make one below.")
        try:
            st = os.stat(path)
            key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, class_name, frame, up)
        except OSError:
            key = None                        # load_scan says what is wrong with it
        with self._placed_lock:
            if key in self._placed:
                self._placed.move_to_end(key)
                return self._placed[key]
        scan = load_scan(path, self.config.max_file_bytes, self.config.max_points, 0, frame, class_name, up)
        if key is not None:
            with self._placed_lock:
                self._placed[key] = scan
                while len(self._placed) > self.config.placed_scans:
                    self._placed.popitem(last=False)
        return scan

    def _observe(self, scan: Scan) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (L,) and visibility (L,) bool of the placed scan's points inside the canonical box."""
        points = scan.points
        inside = points[(np.abs(points) <= 1.0).all(1)]
        if not len(inside):
            return self.empty.clone(), torch.zeros(self.layout.length, dtype=torch.bool)
        return self.pipe.tokens_of_points(inside)

    def _show_scan(self, scan: Scan) -> tuple[go.Figure, str]:
        """The placement preview and the line under it (what was removed, how it is placed, what it covers)."""
        nc = self.layout.num_coarse
        observed = int(self._observe(scan)[1][nc:].sum())
        return (go.Figure(placement_preview(scan.points)),
                f"{scan.describe()} It covers {observed} of {self.layout.length - nc} patches.")

    @user_errors
    def place_scan(self, scan_file, class_name: str = ANY_CLASS, frame: str = "auto", up: str = "auto"):
        """Read and place a scan; returns (the preview, a line about it, and the hand controls back at no
        change: turn 0, scale 1, offset 0, 0, 0). A cleared upload clears the preview."""
        neutral = (0.0, 1.0, 0.0, 0.0, 0.0)
        if scan_file is None:
            return None, "", *neutral
        class_name = None if class_name in (None, "", ANY_CLASS) else check_class(class_name)
        return *self._show_scan(self._scan(scan_file, class_name, frame, up)), *neutral

    @user_errors
    def preview_placement(self, scan_file, class_name: str, frame: str, up: str, turn: float, scale: float,
                          offset_x: float, offset_y: float, offset_z: float):
        """The preview of a placed scan moved by hand (as in ``complete``), without searching again; returns
        (the preview, a line about it)."""
        if scan_file is None:
            return None, ""
        class_name = None if class_name in (None, "", ANY_CLASS) else check_class(class_name)
        scan = self._scan(scan_file, class_name, frame, up).adjust(turn, scale, (offset_x, offset_y, offset_z))
        return self._show_scan(scan)

    # ---- checks before a decoding is queued (gradio event validators) ------------------------------
    # A missing or unreadable upload is marked on its own input, in plain words; nothing else on the
    # page changes and no error piles up. (API callers get the same message as the event's error.)

    @staticmethod
    def _check_upload(file, missing: str, read, rest) -> list[dict]:
        """``gr.validate`` per input: the first (``file``) given and readable by ``read``, the others as they are."""
        message = missing if file is None else ""
        if file is not None:
            try:
                read(file)
            except ValueError as err:
                message = str(err)
        return [gr.validate(not message, message)] + [gr.validate(True, "") for _ in rest]

    def check_scan_input(self, scan_file, *rest) -> list[dict]:
        """Validator of ``complete``: the scan (its first input) must be given and readable."""
        return self._check_upload(scan_file, "Upload a scan, click an example or make one from a benchmark shape first.",
                                  lambda f: read_scan(f, self.config.max_file_bytes, self.config.max_points), rest)

    def check_image_input(self, image_file, *rest) -> list[dict]:
        """Validator of ``generate_image``: the image (its first input) must be given and readable."""
        return self._check_upload(image_file, "Upload an image or click an example first.",
                                  lambda f: open_image(f, self.config.max_file_bytes), rest)

    # ---- after decoding -----------------------------------------------------------------------

    @staticmethod
    def _check_run(run: Run | None) -> Run:
        if run is None or not run.steps:
            raise ValueError("Nothing to replay yet: generate or complete a shape first.")
        return run

    def _record(self, run: Run, k: int) -> dict:
        s = run.steps[k - 1]
        return {"run": run.run_id, "step": k, "num_steps": run.num_steps, "seed": run.seed,
                "known": int(self.layout.length - s.mask[0].sum()), "cfg_scale": round(float(s.cfg_scale), 4),
                "temperature": round(float(s.temperature), 4), "entropy": round(float(s.entropy[0]), 4),
                "tokens": s.tokens[0].tolist()}

    @staticmethod
    def _check_step(step, run: Run) -> int:
        T = run.num_steps
        try:
            k = float(step)
        except (TypeError, ValueError):
            k = float("nan")
        if not (k == k and k.is_integer() and 1 <= k <= T):
            raise ValueError(f"Step must be a whole number between 1 and {T}; got {step!r}.")
        return int(k)

    @user_errors
    def replay(self, step: float, color_by: str, run: Run | None, request: gr.Request = None):
        """Redraw recorded step ``step`` (1..T); returns (viewer, step record with its tokens)."""
        self._session(request)
        run = self._check_run(run)
        color_by = check_color_mode(color_by)
        k = self._check_step(step, run)
        viewer = self._view(run, k, color_by, f"{run.run_id}-replay")
        return viewer, self._record(run, k)

    @user_errors
    def play(self, color_by: str, run: Run | None, request: gr.Request = None):
        """Replay every recorded step in order (slider follows)."""
        self._session(request)
        run = self._check_run(run)
        color_by = check_color_mode(color_by)
        for k in range(1, run.num_steps + 1):
            if self.stopping.is_set():
                raise ShuttingDown()
            viewer = self._view(run, k, color_by, f"{run.run_id}-play")
            yield viewer, k
            time.sleep(self.config.play_interval_s)

    # ---- editing the last shape (smart3d.editing) ------------------------------------------------

    @user_errors
    def resample(self, step: float, run: Run | None, seed: float, randomize_seed: bool, steps: float,
                 temperature_start: float, temperature_end: float, top_k: float, guidance: float, schedule: str,
                 policy: str, color_by: str, request: gr.Request = None):
        """Keep what recorded step ``step`` had committed and draw the rest again (with this seed), streamed."""
        run = self._check_run(run)
        k = self._check_step(step, run)
        seed, options, color_by = self._settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k,
                                                 guidance, schedule, policy, color_by)
        if not run.steps[k - 1].mask.any():
            raise ValueError(f"Every token was committed by step {k}, so there is nothing to draw again: pick an "
                             "earlier step with the replay slider.")
        what = f"Steps 1-{k} of run {run.run_id} (seed {run.seed}) kept, the rest drawn again."
        yield from self._decode("resample", run.class_name, keep_until(run.steps[k - 1], run.labels), seed, options,
                                color_by, self._session(request), what, given=run.given, placement=run.placement)

    @user_errors
    def regenerate_region(self, region: str, x_min: float, x_max: float, y_min: float, y_max: float, z_min: float,
                          z_max: float, run: Run | None, seed: float, randomize_seed: bool, steps: float,
                          temperature_start: float, temperature_end: float, top_k: float, guidance: float,
                          schedule: str, policy: str, color_by: str, request: gr.Request = None):
        """Draw the tokens inside a box of the last shape again (a named half, or ``CUSTOM_BOX`` with these
        bounds), keeping every other token and the input's given ones, streamed."""
        run = self._check_run(run)
        if region == CUSTOM_BOX:
            lo, hi = (x_min, y_min, z_min), (x_max, y_max, z_max)
        elif region in REGIONS:
            lo, hi = REGIONS[region]
        else:
            raise ValueError(f"Unknown region {region!r}; choose one of {', '.join([*REGIONS, CUSTOM_BOX])}.")
        seed, options, color_by = self._settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k,
                                                 guidance, schedule, policy, color_by)
        condition = keep_outside(run.steps[-1].tokens, run.labels, self.layout, lo, hi, run.given)
        if condition.known.all():
            raise ValueError("Every token in that region came from the input (the scan or the image), so none can "
                             "be drawn again.")
        box = " x ".join(f"{a} {float(l):g}..{float(u):g}" for a, l, u in zip("xyz", lo, hi))
        what = f"Region {region} ({box}) of run {run.run_id} (seed {run.seed}) drawn again, the rest kept."
        yield from self._decode("region", run.class_name, condition, seed, options, color_by, self._session(request),
                                what, given=run.given, placement=run.placement)

    # ---- two settings side by side ---------------------------------------------------------------

    @user_errors
    def compare(self, class_name: str, setting: str, value_a, value_b, seed: float, randomize_seed: bool,
                steps: float, temperature_start: float, temperature_end: float, top_k: float, guidance: float,
                schedule: str, policy: str, color_by: str, request: gr.Request = None):
        """Decode one class twice with the same seed, ``setting`` (``settings.COMPARABLE``) set to ``value_a``
        and to ``value_b`` (everything else from Settings), the two decodings streamed side by side:
        yields (viewer A, viewer B, a line on the two runs), one per step of the longer one."""
        check_class(class_name)
        seed, options, color_by = self._settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k,
                                                 guidance, schedule, policy, color_by)
        sides = [compare_options(options, setting, v) for v in (value_a, value_b)]
        session = self._session(request)
        condition = self.pipe.condition(class_name)
        runs = [Run(uuid.uuid4().hex[:12], "generate", class_name, seed, o, [], session) for o, _ in sides]
        streams = [self.pipe.steps(condition, seed, replace(o, preview=True)) for o, _ in sides]
        with self.files.active(session):
            try:
                for pair in itertools.zip_longest(*streams):          # the shorter side ends first: None
                    views = []
                    for i, (run, (_, label), step) in enumerate(zip(runs, sides, pair)):
                        if step is None:
                            views.append(gr.skip())
                            continue
                        self._keep(run, step)
                        payload = step_payload(run.steps, step.index, self.empty, self.layout, color_by,
                                               f"{run.run_id}-{'ab'[i]}", "generate", run.surfaces)
                        payload["caption"] = f"{'AB'[i]}: {label} - {payload['caption']}"
                        views.append(to_json(payload))
                    yield (*views, f"{class_name}, seed {seed}: A = {sides[0][1]}, B = {sides[1][1]}")
            finally:
                release_memory()

    def show_mesh(self, run: Run | None) -> str | None:
        """The GLB of the last run, for the mesh viewer (set after the stream: see layout)."""
        return str(run.files["glb"]) if run is not None and "glb" in run.files else None

    # ---- inputs -------------------------------------------------------------------------------

    @user_errors
    def make_scan(self, class_name: str, index: float, method: str, azimuth: float, elevation: float,
                  offset: float, request: gr.Request = None) -> str:
        """Cut (plane) or scan (single view) benchmark shape ``index``; returns the scan's .ply path."""
        visible, _ = make_scan(class_name, index, method, azimuth, elevation, offset)
        name = f"scan_{class_name}_{int(index)}_{method}_{int(azimuth)}_{int(elevation)}.ply"
        return str(write_scan(visible, self.files.scratch(self._session(request)) / name))

    def _image_condition(self, image_file, class_name: str | None, confidence: float):
        """Checked upload -> (its description, the prepared view as (64, 64, 3) uint8, ImageCondition)."""
        info, picture = open_image(image_file, self.config.max_file_bytes)
        if self.pipe.image_encoder is None:
            raise ValueError("This app has no image encoder (weights/image_encoder.safetensors is missing), so it "
                             "cannot make a shape from a picture. Use the Class or Partial scan tab.")
        if not (isinstance(confidence, (int, float)) and 0.0 <= confidence <= 1.0):
            raise ValueError(f"Coarse-token confidence must be a number between 0 and 1; got {confidence!r}.")
        cond = self.pipe.image_condition(picture, class_name, float(confidence))
        view = (cond.image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        return info, view, cond

    @staticmethod
    def _describe(info: str, cond, given_class: bool) -> str:
        name = CLASSES[cond.label]
        read = CLASSES[int(cond.class_probs.argmax())]
        how = (f"class **{name}** (given; the image reads as {read}, p={float(cond.class_probs.max()):.2f})" if given_class
               else f"class **{name}** (p={float(cond.class_probs[cond.label]):.2f})")
        return (f"{info} The encoder reads {how}; {int(cond.known.sum())} of the 64 coarse tokens are sure enough "
                "to be given, the transformer draws the rest.")

    @user_errors
    def image(self, image_file, class_name: str = ANY_CLASS, confidence: float = DEFAULT_IMAGE_CONFIDENCE):
        """Check an uploaded image; returns (what the encoder sees, a line on what it reads)."""
        if image_file is None:                                   # cleared
            return None, ""
        class_name = None if class_name in (None, "", ANY_CLASS) else check_class(class_name)
        info, view, cond = self._image_condition(image_file, class_name, confidence)
        return view, self._describe(info, cond, class_name is not None)

    @user_errors
    def generate_image(self, image_file, class_name: str, confidence: float, seed: float, randomize_seed: bool,
                       steps: float, temperature_start: float, temperature_end: float, top_k: float, guidance: float,
                       schedule: str, policy: str, color_by: str, request: gr.Request = None):
        """Generate a shape that looks like the object in an image, streaming every decoding step."""
        class_name = None if class_name in (None, "", ANY_CLASS) else check_class(class_name)
        seed, options, color_by = self._settings(seed, randomize_seed, steps, temperature_start, temperature_end, top_k,
                                                 guidance, schedule, policy, color_by)
        info, _, cond = self._image_condition(image_file, class_name, confidence)
        condition = self.pipe.condition_from_images([cond])
        yield from self._decode("image", CLASSES[cond.label], condition, seed, options, color_by, self._session(request),
                                self._describe(info, cond, class_name is not None), given=condition.known)

    # ---- session end ----------------------------------------------------------------------------

    def end_session(self, request: gr.Request = None) -> None:
        """The browser tab closed (``demo.unload``): its files go ``end_grace_s`` later."""
        self.files.end(_session(request))

    def drop_run(self, run: Run | None) -> None:
        """``gr.State`` delete callback: the session's files go with its recorded run."""
        if isinstance(run, Run):
            self.files.end(run.session)

    def start_janitor(self, forget: Callable[[list[str]], None] | None = None) -> None:
        """Every ``sweep_every_s``: remove the files of ended and idle sessions (``SessionFiles.sweep``) and
        call ``forget`` with the rest of what the server keeps for sessions (gradio's state, see layout)."""
        def loop():
            while not self.stopping.wait(self.config.sweep_every_s):
                try:
                    gone = self.files.sweep()
                    if forget is not None:
                        forget(gone)
                    release_memory()
                except Exception:                    # the janitor must outlive any one bad sweep
                    log.exception("session sweep failed")

        if self._janitor is None:
            self._janitor = threading.Thread(target=loop, name="smart3d-janitor", daemon=True)
            self._janitor.start()

    def shutdown(self, grace_s: float | None = None) -> int:
        """Stop: refuse new work, cancel running decodings at their next step and wait for them (at
        most ``grace_s``). Returns how many were still running when it was called."""
        running = self.files.running
        self.stopping.set()
        deadline = time.monotonic() + (self.config.shutdown_grace_s if grace_s is None else grace_s)
        while self.files.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.batcher.close(max(0.0, deadline - time.monotonic()))
        return running

    def close(self) -> None:
        """Stop the janitor and the decode batcher and remove every session's files."""
        self.stopping.set()
        self.batcher.close(0.0)
        self.files.close()

