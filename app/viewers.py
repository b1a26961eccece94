"""What the browser draws: one small Plotly payload per decoding step, and the scan preview.

Why not ``gr.Plot`` for the streaming view: gradio 6.31's Plot component re-mounts its Plotly div
on every new value (a ``{#key}`` block around ``Plotly.react`` on a fresh div), so every update
rebuilds the WebGL scene and resets the camera; in headless Chromium a stream of steps into it is
drawn late and partly (``benchmarks/bench_app.py --compare-gr-plot``). Here the step viewer is a
``gr.HTML`` whose template never changes: its ``js_on_load`` creates the Plotly plots once and,
through ``watch('value')``, queues every new payload and draws them in order with
``Plotly.react`` on the same divs, waiting for the frame after each (the WebGL scene is updated,
not rebuilt, and ``uirevision`` keeps the user's camera). Nothing is skipped: a browser slower
than the model lags behind it instead. Plotly.js is served from the installed ``plotly`` Python
package, so the app needs no internet.

A payload (``step_payload``) is a dict ``{"key", "kind", "step", "num_steps", "known", "length",
"caption", "scene": {data, layout}, "chart": {data, layout}}``; ``scene`` and ``chart`` are
ordinary Plotly figures (``plotly.graph_objects.Figure(payload["scene"])`` works). The viewer
receives it as a JSON *string* (``to_json``): gradio streams a generator's outputs as diffs, and
gradio_client 2.7 fails to apply list-shrinking diffs inside nested dicts, while a string is
simply replaced. To stay small (under about 100 kB) a step shows at most 2500 surface points and one
marker per token, no meshes, with fixed axis ranges and camera:

- the forming surface: the boundary voxels of the step's belief (the committed tokens, and the
  model's best guess where still masked, decoded by the tokenizer: ``SamplingOptions.preview``),
  each coloured by the patch it lies in: grey where that patch is still a guess, orange where it was
  given (a scan, an image, an edit's kept tokens), by the step that decided it (or its confidence),
  red where this step decided it;
- the tokens, an overlay switched on from the legend: masked (grey dots), given (orange), decided
  (squares coloured by step; coarse tokens as big open squares), this step (red);
- ``counts`` partitions the L tokens (masked, given, surface, empty space): the caption, the
  legend and the chart (stacked bars of surface and empty-space tokens per step) use those numbers.
  Tokens equal to the tokenizer's empty-space code are counted but not drawn.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly
import torch

from smart3d import geometry as G
from smart3d.sampler import Step
from smart3d.tokenizer import TokenLayout

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"

SCAN_COLOR = "#ff9f1c"
NEWEST_COLOR = "#e5243b"
GHOST_COLOR = "#9aa5b1"
SURFACE_POINTS = 2500          # forming-surface points drawn per step at most
MIN_SHOW_MS = 150              # the browser keeps each streamed step on screen at least this long
STEP_SCALE = "Viridis"
GIVEN_NAMES = {"image": "from image", "resample": "kept", "region": "kept"}   # legend of the given tokens, by run kind
CONFIDENCE_SCALE = "Cividis"

_AXIS = {"range": [-1.05, 1.05], "autorange": False, "showticklabels": False, "title": {"text": ""},
         "showbackground": False, "gridcolor": "rgba(128,128,128,0.25)", "zeroline": False,
         "showspikes": False}
SCENE_LAYOUT = {
    "uirevision": "smart3d",                         # keep the user's camera across updates
    "height": 440,
    "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "showlegend": True,
    "legend": {"orientation": "h", "x": 0.0, "y": 0.0, "font": {"size": 11}, "bgcolor": "rgba(0,0,0,0)"},
    "hovermode": "closest",
    "scene": {
        "xaxis": _AXIS, "yaxis": _AXIS, "zaxis": _AXIS,
        "aspectmode": "cube",
        "camera": {"eye": {"x": 1.35, "y": 0.95, "z": 1.55}, "up": {"x": 0, "y": 1, "z": 0},
                   "center": {"x": 0, "y": -0.1, "z": 0}},   # canonical frame: y up, front faces +z
        "uirevision": "smart3d",
    },
}
CHART_LAYOUT = {
    "height": 170,
    "margin": {"l": 40, "r": 44, "t": 8, "b": 30},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "showlegend": True,
    "legend": {"orientation": "h", "x": 0.0, "y": 1.18, "font": {"size": 11}},
    "bargap": 0.15,
    "barmode": "stack",
    "xaxis": {"title": {"text": "step", "standoff": 2}, "tickfont": {"size": 10}, "autorange": False},
    "yaxis": {"title": {"text": "tokens"}, "tickfont": {"size": 10}, "rangemode": "tozero"},
    "yaxis2": {"title": {"text": "entropy (nats)"}, "overlaying": "y", "side": "right",
               "tickfont": {"size": 10}, "rangemode": "tozero", "showgrid": False},
}


@dataclass(frozen=True)
class Counts:
    """Where the L tokens of a step stand: one partition, used by the caption, the legend and the chart."""

    masked: int          # still masked
    given: int           # given by the input (scan, image, an edit's kept tokens), not empty space
    surface: int         # committed by the decoding, not empty space (this step's included)
    newest: int          # of those, committed at this step
    empty: int           # known to be empty space (committed or given): not drawn

    @property
    def known(self) -> int:
        return self.given + self.surface + self.empty


def _partition(tokens: np.ndarray, order: np.ndarray, empty: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """(L,) bool masks of a step's tokens: masked; given, decided before this step and this step's (not
    empty space); and empty space (known, not drawn). They partition the L positions."""
    masked = order < 0
    blank = ~masked & (tokens == empty)
    solid = ~masked & ~blank
    newest = solid & (order == step)
    return {"masked": masked, "given": solid & (order == 0), "done": solid & (order > 0) & ~newest,
            "newest": newest, "empty": blank}


def counts(tokens: np.ndarray, order: np.ndarray, empty: np.ndarray, step: int) -> Counts:
    part = {k: int(v.sum()) for k, v in _partition(tokens, order, empty, step).items()}
    return Counts(part["masked"], part["given"], part["done"] + part["newest"], part["newest"], part["empty"])


def caption(step: int, num_steps: int, c: Counts, length: int, repair_round: int = 0, given_name: str = "scan") -> str:
    """``step k/T - n/L tokens known: ...`` with the partition of the L tokens (``Counts``), and the repair
    round a step belongs to (``smart3d.repair``; T then counts the steps up to the end of that round)."""
    text = (f"step {step}/{num_steps} - {c.known}/{length} tokens known: "
            + (f"{c.given} {given_name}, " if c.given else "")
            + f"{c.surface} surface ({c.newest} this step), {c.empty} empty space (not drawn); {c.masked} masked")
    return text + (f" - repair round {repair_round}: loose pieces redrawn" if repair_round else "")


def surface_voxels(field: np.ndarray, limit: int = SURFACE_POINTS) -> np.ndarray:
    """(N, 3) uint8 grid indices of the voxels on the boundary of the solid ``field > 0.5`` (a (R, R, R)
    occupancy probability), evenly thinned to at most ``limit``: the forming surface of a step."""
    solid = np.asarray(field) > 0.5
    p = np.pad(solid, 1)
    interior = (solid & p[:-2, 1:-1, 1:-1] & p[2:, 1:-1, 1:-1] & p[1:-1, :-2, 1:-1] & p[1:-1, 2:, 1:-1]
                & p[1:-1, 1:-1, :-2] & p[1:-1, 1:-1, 2:])
    ijk = np.argwhere(solid & ~interior)
    if len(ijk) > limit:
        ijk = ijk[np.linspace(0, len(ijk) - 1, limit).astype(np.int64)]
    return ijk.astype(np.uint8)


def _xyz(points: np.ndarray) -> dict:
    return {"x": points[:, 0].tolist(), "y": points[:, 1].tolist(), "z": points[:, 2].tolist()}


def _markers(name: str, points: np.ndarray, **marker) -> dict:
    return {"type": "scatter3d", "mode": "markers", "name": name, **_xyz(points), "marker": marker}


def _surface_traces(voxels: np.ndarray | None, num_coarse: int, order: np.ndarray, values: np.ndarray, step: int,
                    color: dict, title: str) -> list[dict]:
    """The forming surface: the boundary voxels of the step's belief (committed tokens, and the model's
    best guess where still masked), each coloured by the state of the patch it lies in."""
    if voxels is None:
        voxels = np.zeros((0, 3), dtype=np.uint8)
    xyz = np.round(-1.0 + (voxels.astype(np.float64) + 0.5) * (2.0 / G.GRID), 2)   # to 1/3 of a voxel: small JSON
    patch = voxels.astype(np.int64) // G.PATCH
    pos = num_coarse + (patch[:, 0] * G.LATTICE + patch[:, 1]) * G.LATTICE + patch[:, 2]
    o = order[pos]
    guess, given, newest = o < 0, o == 0, o == step
    fixed = (o > 0) & ~newest
    return [
        _markers("surface: model's guess", xyz[guess], size=2.5, color=GHOST_COLOR, opacity=0.45),
        _markers("surface: given", xyz[given], size=3, color=SCAN_COLOR),
        _markers(f"surface: decided (colour: {title})", xyz[fixed], size=3, color=values[pos[fixed]].tolist(),
                 showscale=True, colorbar={"title": {"text": title, "side": "right"}, "thickness": 10, "len": 0.6,
                                           "x": 0.98, "tickfont": {"size": 10}}, **color),
        _markers("surface: this step", xyz[newest], size=3.5, color=NEWEST_COLOR),
    ]


def _scene(centroids: np.ndarray, num_coarse: int, tokens: np.ndarray, order: np.ndarray,
           confidence: np.ndarray, empty: np.ndarray, step: int, num_steps: int, color_by: str,
           given_name: str = "scan", voxels: np.ndarray | None = None) -> dict:
    """Plotly scene for one step: the forming surface (four traces) and the token overlay (four traces,
    off until picked in the legend), always in the same order (cheap ``Plotly.react``)."""
    L = len(tokens)
    coarse = np.arange(L) < num_coarse
    part = _partition(tokens, order, empty, step)
    masked, given, done, newest = part["masked"], part["given"], part["done"], part["newest"]
    if color_by == "confidence":
        values, scale, lo, hi, title = confidence, CONFIDENCE_SCALE, 0.0, 1.0, "confidence"
    else:
        values, scale, lo, hi, title = order, STEP_SCALE, 1, max(num_steps, 1), "step"
    values = np.round(values.astype(np.float64), 3)
    color = {"colorscale": scale, "cmin": lo, "cmax": hi}
    size = np.where(coarse, 14, 5)                                   # coarse tokens: the big open squares
    symbol = np.where(coarse, "square-open", "square")
    overlay = dict(visible="legendonly", legendgroup="tokens")

    def tokens_trace(name, sel, **marker):
        return {**_markers(f"{name} ({int(sel.sum())})", centroids[sel], size=size[sel].tolist(),
                           symbol=symbol[sel].tolist(), **marker), **overlay}

    traces = _surface_traces(voxels, num_coarse, order, values, step, color, title) + [
        {**_markers(f"tokens masked ({int(masked.sum())})", centroids[masked], size=np.where(coarse, 4, 2.5)[masked]
                    .tolist(), color=GHOST_COLOR, opacity=0.35), **overlay},
        tokens_trace(f"tokens {given_name}", given, color=SCAN_COLOR),
        tokens_trace("tokens decided", done, color=values[done].tolist(), **color),
        tokens_trace("tokens this step", newest, color=NEWEST_COLOR),
    ]
    for t in traces:
        colored = "decided" in t["name"]
        t["hovertemplate"] = (f"{title} %{{marker.color}}<extra>%{{fullData.name}}</extra>" if colored
                              else "%{fullData.name}<extra></extra>")
    traces[0]["hoverinfo"] = traces[4]["hoverinfo"] = "skip"
    return {"data": traces, "layout": SCENE_LAYOUT}


def _chart(surface: list[int], empty: list[int], entropies: list[float], num_steps: int) -> dict:
    """Stacked bars: tokens committed per step (surface, empty space); line: mean predictive entropy
    over the masked positions."""
    x = list(range(1, len(surface) + 1))
    layout = dict(CHART_LAYOUT, xaxis=dict(CHART_LAYOUT["xaxis"], range=[0.5, num_steps + 0.5]))
    return {"data": [
        {"type": "bar", "name": "surface tokens", "x": x, "y": surface, "marker": {"color": "#5b8def"},
         "hovertemplate": "step %{x}: %{y} surface tokens<extra></extra>"},
        {"type": "bar", "name": "empty-space tokens", "x": x, "y": empty, "marker": {"color": "#c9d3e0"},
         "hovertemplate": "step %{x}: %{y} empty-space tokens<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "name": "mean entropy", "x": x,
         "y": [round(e, 4) for e in entropies], "yaxis": "y2", "line": {"color": NEWEST_COLOR, "width": 2},
         "marker": {"size": 4}, "hovertemplate": "step %{x}: %{y:.3f} nats<extra></extra>"},
    ], "layout": layout}


def step_payload(steps: list[Step], k: int, empty: torch.Tensor, layout: TokenLayout, color_by: str = "step",
                 key: str = "", kind: str = "generate", surfaces: list[np.ndarray] | None = None) -> dict:
    """The viewer payload for recorded step ``k`` (1-based) of ``steps`` (batch element 0); ``surfaces``:
    each step's ``surface_voxels`` (None: the token overlay only)."""
    assert 1 <= k <= len(steps), f"step {k} not recorded (have {len(steps)})"
    s = steps[k - 1]
    T, L = s.num_steps, layout.length
    tokens, order = s.tokens[0].numpy(), s.order[0].numpy()
    empty_np = empty.cpu().numpy()
    c = counts(tokens, order, empty_np, k)
    surface, blank = [], []
    for r in steps[:k]:
        committed = r.committed[0].numpy()
        blank.append(int((committed & (r.tokens[0].numpy() == empty_np)).sum()))
        surface.append(int(committed.sum()) - blank[-1])
    entropies = [float(r.entropy[0]) for r in steps[:k]]
    given_name = GIVEN_NAMES.get(kind, "scan")
    voxels = surfaces[k - 1] if surfaces is not None and k <= len(surfaces) else None
    scene = _scene(layout.centroids().numpy(), layout.num_coarse, tokens, order, s.confidence[0].numpy(),
                   empty_np, k, T, color_by, given_name, voxels)
    scene["layout"] = dict(scene["layout"], meta={"key": f"{key}:{k}:{color_by}", "step": k})
    return {"key": f"{key}:{k}:{color_by}", "kind": kind, "step": k, "num_steps": T, "known": c.known, "length": L,
            "counts": dataclasses.asdict(c), "caption": caption(k, T, c, L, s.round, given_name), "scene": scene,
            "chart": _chart(surface, blank, entropies, T)}


def to_json(payload: dict) -> str:
    """Compact JSON text of a payload (what the viewer component and the API carry)."""
    return json.dumps(payload, separators=(",", ":"))


def idle_payload(message: str, layout: TokenLayout) -> dict:
    """Before any decoding: every token masked, and a hint instead of a step caption."""
    L = layout.length
    centroids = layout.centroids().numpy()
    none = np.full(L, -1)
    scene = _scene(centroids, layout.num_coarse, none, none, np.zeros(L), np.zeros(L, dtype=np.int64), 0, 1, "step")
    scene["layout"] = dict(scene["layout"], meta={"key": "idle", "step": 0})
    scene["data"][4]["visible"] = True                     # before a run: the 576 masked tokens, in view
    return {"key": "idle", "kind": "idle", "step": 0, "num_steps": 0, "known": 0, "length": L, "caption": message,
            "counts": dataclasses.asdict(Counts(L, 0, 0, 0, 0)), "scene": scene, "chart": _chart([], [], [], 25)}


OUTSIDE_COLOR = "#e5243b"
PLACEMENT_RANGE = 1.6          # the placement preview shows a margin around the canonical box


def _box_edges(half: float = 1.0) -> dict:
    """The 12 edges of the cube [-half, half]^3 as one line trace (segments separated by None)."""
    corners = np.array([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    xs, ys, zs = [], [], []
    for i in range(8):
        for j in range(i + 1, 8):
            if np.count_nonzero(corners[i] != corners[j]) == 1:        # an edge: one coordinate differs
                for k, out in enumerate((xs, ys, zs)):
                    out += [float(corners[i, k]), float(corners[j, k]), None]
    return {"type": "scatter3d", "mode": "lines", "name": "canonical box", "x": xs, "y": ys, "z": zs,
            "line": {"color": GHOST_COLOR, "width": 2}, "hoverinfo": "skip"}


def placement_preview(points: np.ndarray, limit: int = 3000) -> dict:
    """Static Plotly figure (as a dict) of a placed scan (N, 3) in the canonical frame: the box -1..1 (y up),
    the points inside it (what the model sees) and those outside it (left out) in their own colour, and
    a marker at the front (+z)."""
    rng = np.random.default_rng(0)
    if len(points) > limit:
        points = points[rng.choice(len(points), limit, replace=False)]
    points = np.round(np.asarray(points, dtype=np.float64), 3)
    inside = (np.abs(points) <= 1.0).all(1)
    axis = dict(_AXIS, range=[-PLACEMENT_RANGE, PLACEMENT_RANGE])
    layout = dict(SCENE_LAYOUT, height=360, showlegend=True,
                  scene=dict(SCENE_LAYOUT["scene"], xaxis=axis, yaxis=axis, zaxis=axis,
                             camera=dict(SCENE_LAYOUT["scene"]["camera"], eye={"x": 1.2, "y": 0.9, "z": 1.4})))
    front = {"type": "scatter3d", "mode": "text", "name": "front (+z)", "x": [0.0], "y": [-1.0], "z": [1.25],
             "text": ["front"], "textfont": {"color": GHOST_COLOR}, "hoverinfo": "skip", "showlegend": False}
    return {"data": [_box_edges(), front,
                     _markers(f"scan inside the box ({int(inside.sum())})", points[inside], size=2, color=SCAN_COLOR),
                     _markers(f"outside: left out ({int((~inside).sum())})", points[~inside], size=2,
                              color=OUTSIDE_COLOR)],
            "layout": layout}


# --------------------------------------------------------------------------------------------
# The browser side of the step viewer (gr.HTML template, CSS and js_on_load)
# --------------------------------------------------------------------------------------------

VIEWER_TEMPLATE = """
<div class="s3d-caption" data-testid="step-caption"></div>
<div class="s3d-scene"></div>
<div class="s3d-chart"></div>
"""

VIEWER_CSS = """
.s3d-caption { font: 600 15px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; padding: 2px 4px; min-height: 1.4em; }
.s3d-scene { width: 100%; height: 440px; }
.s3d-chart { width: 100%; height: 170px; }
"""

# ``element``, ``props`` and ``watch`` are given by gr.HTML. window.smart3dViewer records what was
# received and drawn (the browser test and the benchmark read it; they also hook plotly_afterplot).
VIEWER_JS = """
const P = window.Plotly;
const scene = element.querySelector('.s3d-scene');
const chart = element.querySelector('.s3d-chart');
const cap = element.querySelector('.s3d-caption');
// the main viewer's record is window.smart3dViewer (read by the browser test and the benchmark)
const log = {received: 0, drawn: [], last: null, caption: ''};
if (element.closest('#step-viewer')) window.smart3dViewer = log;
// plotGlPixelRatio 1 (Plotly's default is 2): a quarter of the pixels, so software WebGL keeps up
const sceneConfig = {displaylogo: false, responsive: true, plotGlPixelRatio: 1,
                     modeBarButtonsToRemove: ['toImage', 'resetCameraLastSave3d']};
const chartConfig = {displayModeBar: false, responsive: true, staticPlot: true};
let queue = [], busy = false, lastKey = null;
const MIN_SHOW_MS = {MIN_SHOW_MS};
async function draw(v, behind) {
  if (P) {
    await P.react(scene, v.scene.data, v.scene.layout, sceneConfig);
    // the chart is cumulative: when more steps are already waiting, the next one redraws it
    if (!behind) await P.react(chart, v.chart.data, v.chart.layout, chartConfig);
  }
  cap.textContent = v.caption || '';
  log.drawn.push(v.key); log.last = v.key; log.caption = v.caption;
}
async function pump() {
  if (busy) return;
  busy = true;
  try {
    while (queue.length) {
      const v = queue.shift(), t0 = performance.now();
      try { await draw(v, queue.length > 0); } catch (e) { console.error('smart3d viewer:', e); }
      await new Promise(r => requestAnimationFrame(() => r()));   // let the frame reach the screen
      // every step stays on screen at least MIN_SHOW_MS, so that a fast model's steps can be seen
      const left = MIN_SHOW_MS - (performance.now() - t0);
      if (queue.length && left > 0) await new Promise(r => setTimeout(r, left));
    }
  } finally { busy = false; }
}
function receive(v) {
  if (typeof v === 'string') { try { v = JSON.parse(v); } catch (e) { return; } }
  if (!v || !v.scene || v.key === lastKey) return;   // gradio re-sends the last value when a stream ends
  lastKey = v.key; log.received += 1;
  queue.push(v); pump();   // every step is drawn, in order (a slow browser lags, it does not skip)
}
if (!P) { console.error('smart3d viewer: plotly.js did not load'); }
watch('value', () => receive(props.value));
receive(props.value);
""".replace("{MIN_SHOW_MS}", str(MIN_SHOW_MS))


def viewer_head(url: str) -> str:
    """<script> tag loading plotly.js from ``url`` (served by gradio from the plotly package)."""
    return f'<script src="{url}"></script>'
