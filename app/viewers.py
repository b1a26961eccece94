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
simply replaced. To stay small (about 15 kB) a step shows one marker per token (at most 576), no
meshes, with fixed axis ranges and camera:

- masked fine tokens: faint grey dots (the region still to decode);
- given tokens (a partial scan's, the coarse tokens read from an image, or those an edit kept): orange;
- committed fine tokens: squares coloured by the step that committed them (or by confidence);
  committed coarse tokens: large open squares in the same colours;
- tokens committed at this step: red diamonds;
- committed "empty space" tokens (equal to the tokenizer's empty code) are not drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly
import torch

from smart3d.sampler import Step
from smart3d.tokenizer import TokenLayout

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"

SCAN_COLOR = "#ff9f1c"
NEWEST_COLOR = "#e5243b"
GHOST_COLOR = "#9aa5b1"
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
    "xaxis": {"title": {"text": "step", "standoff": 2}, "tickfont": {"size": 10}, "autorange": False},
    "yaxis": {"title": {"text": "tokens"}, "tickfont": {"size": 10}, "rangemode": "tozero"},
    "yaxis2": {"title": {"text": "entropy (nats)"}, "overlaying": "y", "side": "right",
               "tickfont": {"size": 10}, "rangemode": "tozero", "showgrid": False},
}


def caption(step: int, num_steps: int, known: int, length: int, repair_round: int = 0) -> str:
    """``step k/T - n/L tokens`` (n: tokens known after step k, given ones included), and the repair
    round a step belongs to (``smart3d.repair``; T then counts the steps up to the end of that round)."""
    text = f"step {step}/{num_steps} - {known}/{length} tokens"
    return text + (f" (repair round {repair_round}: loose pieces redrawn)" if repair_round else "")


def _xyz(points: np.ndarray) -> dict:
    return {"x": points[:, 0].tolist(), "y": points[:, 1].tolist(), "z": points[:, 2].tolist()}


def _markers(name: str, points: np.ndarray, **marker) -> dict:
    return {"type": "scatter3d", "mode": "markers", "name": name, **_xyz(points), "marker": marker}


def _scene(centroids: np.ndarray, num_coarse: int, tokens: np.ndarray, order: np.ndarray,
           confidence: np.ndarray, empty: np.ndarray, step: int, num_steps: int, color_by: str,
           given_name: str = "scan") -> dict:
    """Plotly scene for one step: five traces, always in the same order (cheap ``Plotly.react``)."""
    L = len(tokens)
    fine = np.arange(L) >= num_coarse
    masked = order < 0
    solid = ~masked & (tokens != empty)
    given = solid & (order == 0)
    newest = solid & (order == step)
    done = solid & (order > 0) & ~newest
    if color_by == "confidence":
        values, scale, lo, hi, title = confidence, CONFIDENCE_SCALE, 0.0, 1.0, "confidence"
    else:
        values, scale, lo, hi, title = order, STEP_SCALE, 1, max(num_steps, 1), "step"
    values = np.round(values.astype(np.float64), 3)
    color = {"colorscale": scale, "cmin": lo, "cmax": hi}
    hover = f"{title} %{{marker.color}}<extra></extra>"
    traces = [
        _markers(f"masked ({int((masked & fine).sum())})", centroids[masked & fine], size=2.5,
                 color=GHOST_COLOR, opacity=0.35),
        _markers(f"{given_name} ({int(given.sum())})", centroids[given], size=6, color=SCAN_COLOR, symbol="square"),
        _markers(f"committed ({int((done & fine).sum())})", centroids[done & fine], size=6, symbol="square",
                 color=values[done & fine].tolist(), showscale=True,
                 colorbar={"title": {"text": title, "side": "right"}, "thickness": 10, "len": 0.6,
                           "x": 0.98, "tickfont": {"size": 10}}, **color),
        _markers("coarse", centroids[done & ~fine], size=22, symbol="square-open",
                 color=values[done & ~fine].tolist(), opacity=0.6, **color),
        _markers(f"this step ({int(newest.sum())})", centroids[newest], size=7, symbol="diamond",
                 color=NEWEST_COLOR),
    ]
    for t in traces:
        colored = t["name"].startswith(("committed", "coarse"))
        t["hovertemplate"] = hover if colored else "%{fullData.name}<extra></extra>"
    traces[0]["hoverinfo"] = "skip"
    return {"data": traces, "layout": SCENE_LAYOUT}


def _chart(commits: list[int], entropies: list[float], num_steps: int) -> dict:
    """Bars: tokens committed per step; line: mean predictive entropy over the masked positions."""
    x = list(range(1, len(commits) + 1))
    layout = dict(CHART_LAYOUT, xaxis=dict(CHART_LAYOUT["xaxis"], range=[0.5, num_steps + 0.5]))
    return {"data": [
        {"type": "bar", "name": "tokens committed", "x": x, "y": commits, "marker": {"color": "#5b8def"},
         "hovertemplate": "step %{x}: %{y} tokens<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "name": "mean entropy", "x": x,
         "y": [round(e, 4) for e in entropies], "yaxis": "y2", "line": {"color": NEWEST_COLOR, "width": 2},
         "marker": {"size": 4}, "hovertemplate": "step %{x}: %{y:.3f} nats<extra></extra>"},
    ], "layout": layout}


def step_payload(steps: list[Step], k: int, empty: torch.Tensor, layout: TokenLayout, color_by: str = "step",
                 key: str = "", kind: str = "generate") -> dict:
    """The viewer payload for recorded step ``k`` (1-based) of ``steps`` (batch element 0)."""
    assert 1 <= k <= len(steps), f"step {k} not recorded (have {len(steps)})"
    s = steps[k - 1]
    T, L = s.num_steps, layout.length
    tokens, order = s.tokens[0].numpy(), s.order[0].numpy()
    known = int(L - s.mask[0].sum())
    commits = [int(r.committed[0].sum()) for r in steps[:k]]
    entropies = [float(r.entropy[0]) for r in steps[:k]]
    scene = _scene(layout.centroids().numpy(), layout.num_coarse, tokens, order, s.confidence[0].numpy(),
                   empty.cpu().numpy(), k, T, color_by, GIVEN_NAMES.get(kind, "scan"))
    scene["layout"] = dict(scene["layout"], meta={"key": f"{key}:{k}:{color_by}", "step": k})
    return {"key": f"{key}:{k}:{color_by}", "kind": kind, "step": k, "num_steps": T, "known": known, "length": L,
            "caption": caption(k, T, known, L, s.round), "scene": scene, "chart": _chart(commits, entropies, T)}


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
    return {"key": "idle", "kind": "idle", "step": 0, "num_steps": 0, "known": 0, "length": L, "caption": message,
            "scene": scene, "chart": _chart([], [], 25)}


def scan_preview(visible: np.ndarray, limit: int = 2000) -> dict:
    """Static Plotly figure (as a dict) of a partial scan in the canonical frame."""
    rng = np.random.default_rng(0)
    if len(visible) > limit:
        visible = visible[rng.choice(len(visible), limit, replace=False)]
    layout = dict(SCENE_LAYOUT, height=320, showlegend=False,
                  scene=dict(SCENE_LAYOUT["scene"], camera=dict(SCENE_LAYOUT["scene"]["camera"],
                                                                eye={"x": 0.95, "y": 0.7, "z": 1.1})))
    return {"data": [_markers("scan", np.round(visible, 3), size=2, color=SCAN_COLOR)], "layout": layout}


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
const log = window.smart3dViewer = {received: 0, drawn: [], last: null, caption: ''};
// plotGlPixelRatio 1 (Plotly's default is 2): a quarter of the pixels, so software WebGL keeps up
const sceneConfig = {displaylogo: false, responsive: true, plotGlPixelRatio: 1,
                     modeBarButtonsToRemove: ['toImage', 'resetCameraLastSave3d']};
const chartConfig = {displayModeBar: false, responsive: true, staticPlot: true};
let queue = [], busy = false, lastKey = null;
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
      const v = queue.shift();
      try { await draw(v, queue.length > 0); } catch (e) { console.error('smart3d viewer:', e); }
      await new Promise(r => requestAnimationFrame(() => r()));   // let the frame reach the screen
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
"""


def viewer_head(url: str) -> str:
    """<script> tag loading plotly.js from ``url`` (served by gradio from the plotly package)."""
    return f'<script src="{url}"></script>'
