"""Benchmark of the app: how fast steps are produced, and how many of them a browser actually draws.

    python benchmarks/bench_app.py [--weights weights] [--runs 2] [--out benchmarks/results/app.json]

1. Server side (handlers called directly, default settings: 25 steps): seconds from the request
   to the first streamed step, seconds per step, seconds for the last step (it also decodes the
   mesh and writes the six downloads), and the size of one step's viewer payload.
2. In headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright): the app is
   launched, a ``plotly_afterplot`` listener is injected into the step viewer's Plotly div, and
   Generate is clicked with the default settings. Reported: the fraction of the run's steps that
   were drawn (distinct step keys seen by ``plotly_afterplot``; target >= 80%) and that stayed on
   screen at least 100 ms until the next step replaced them (target 100%), seconds from the
   click to the first drawn step, to the last drawn step and to the final mesh showing in the mesh
   viewer (a ``canvas`` in it).
3. ``--compare-gr-plot``: the same recorded steps streamed at the same pace into a plain
   ``gr.Plot`` (what the app avoids), counting its redraws the same way.

Uses the shipped weights in ``weights/`` when they exist, else tiny random ones (say which in the
JSON). Times are wall-clock seconds on the machine named in the JSON; the machine may be shared
(its load average at the start is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DEFAULTS = dict(class_name="chair", seed=0, randomize_seed=True, steps=25, temperature_start=0.8,
                temperature_end=0.5, top_k=0, guidance=2.0, schedule="cosine", policy="spatial", color_by="step")
VISIBLE_MS = 100           # a step counts as seen when it stayed on screen at least this long

# Injected into the page: every Plotly redraw of the step viewer, with the step key it showed.
HOOK_VIEWER = """() => {
  const gd = document.querySelector('#step-viewer .s3d-scene');
  window.benchDraws = [];
  gd.on('plotly_afterplot', () => window.benchDraws.push({t: performance.now(), key: (gd.layout.meta || {}).key}));
  window.benchMesh = null;
  const watch = () => { if (document.querySelector('#mesh-viewer canvas')) window.benchMesh = performance.now();
                        else requestAnimationFrame(watch); };
  watch();
  window.benchT0 = performance.now();
  document.querySelector('#generate-btn').click();
}"""

# The gr.Plot baseline: its div is re-mounted on every value, so hook every new Plotly div.
HOOK_PLOT = """() => {
  window.benchDraws = [];
  const hook = () => document.querySelectorAll('#baseline .js-plotly-plot').forEach(gd => {
    if (gd.benchHooked) return; gd.benchHooked = true;
    gd.on('plotly_afterplot', () => window.benchDraws.push({t: performance.now(), key: (gd.layout.meta || {}).key}));
  });
  new MutationObserver(hook).observe(document.querySelector('#baseline'), {childList: true, subtree: true});
  window.benchT0 = performance.now();
  document.querySelector('#baseline-btn').click();
}"""


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import gradio
    import plotly

    try:
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        chromium = None
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average_at_start": list(os.getloadavg()), "python": platform.python_version(),
            "torch": torch.__version__, "gradio": gradio.__version__, "plotly": plotly.__version__,
            "chromium": chromium, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def pick_weights(path: str | None) -> tuple[Path, dict]:
    from smart3d.weights import read_config

    folder = Path(path) if path else ROOT / "weights"
    if all((folder / f"{n}.safetensors").exists() for n in ("tokenizer", "model")):
        cfg = read_config(folder / "model")["config"]
        return folder, {"kind": "shipped", "path": str(folder),
                        "model": {k: cfg.get(k) for k in ("depth", "dim", "heads", "attention", "levels")}}
    if path:
        sys.exit(f"no weights in {folder}")
    from app.tiny_weights import write_tiny_weights

    folder = write_tiny_weights(tempfile.mkdtemp(prefix="bench-app-weights-"))
    return folder, {"kind": "tiny random (no shipped weights found)", "path": None,
                    "model": {"depth": 2, "dim": 32, "heads": 2}}


def bench_server(handlers, runs: int) -> tuple[dict, list[list[str]]]:
    """Time the generate handler's stream; also returns the recorded viewer payloads of the last run."""
    first, per_step, last, sizes, total = [], [], [], [], []
    payloads = []
    for _ in range(runs):
        t0 = time.perf_counter()
        stamps, payloads = [], []
        for out in handlers.generate(*DEFAULTS.values()):
            stamps.append(time.perf_counter())
            payloads.append(out[0])
        first.append(stamps[0] - t0)
        per_step += [b - a for a, b in zip(stamps[:-2], stamps[1:-1])]
        last.append(stamps[-1] - stamps[-2])
        total.append(stamps[-1] - t0)
        sizes += [len(p.encode()) for p in payloads]
    return {"runs": runs, "steps": DEFAULTS["steps"], "first_step_s": statistics.median(first),
            "per_step_s": statistics.median(per_step), "per_step_s_max": max(per_step),
            "last_step_with_mesh_and_downloads_s": statistics.median(last), "total_s": statistics.median(total),
            "payload_bytes_mean": round(statistics.mean(sizes)), "payload_bytes_max": max(sizes)}, payloads


def summarize_draws(draws: list[dict], t0: float, run_prefix: str | None, steps: int) -> dict:
    """Which of steps 1..T were drawn (keys ``<run>:<step>:<colour>``), and when (ms -> s after t0)."""
    mine = [d for d in draws if d.get("key") and (run_prefix is None or d["key"].startswith(run_prefix))]
    step_of = [int(d["key"].split(":")[-2]) for d in mine]
    seen = set(step_of) & set(range(1, steps + 1))
    last = [d["t"] for d, k in zip(mine, step_of) if k == steps]
    # how long each step stayed on screen: until the next redraw showed another step (the last one: for good)
    shown: dict[int, float] = {}
    for i, (d, k) in enumerate(zip(mine, step_of)):
        nxt = next((e["t"] for e, j in zip(mine[i + 1:], step_of[i + 1:]) if j != k), float("inf"))
        shown[k] = max(shown.get(k, 0.0), nxt - d["t"])
    visible = [k for k in range(1, steps + 1) if shown.get(k, 0.0) >= VISIBLE_MS]
    durations = sorted(v for k, v in shown.items() if v != float("inf"))
    return {"steps_drawn": len(seen), "fraction_drawn": len(seen) / steps, "redraws": len(mine),
            "fraction_visible": len(visible) / steps,
            "shortest_on_screen_ms": round(durations[0], 1) if durations else None,
            "click_to_first_draw_s": (min(d["t"] for d in mine) - t0) / 1000 if mine else None,
            "click_to_last_step_drawn_s": (max(last) - t0) / 1000 if last else None}


def bench_browser(pipe, runs: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from app import AppConfig, build_demo, launch_options

    config = AppConfig()
    demo = build_demo(pipe, config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=None, quiet=True, **launch_options(config))
    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(runs):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.wait_for_function("window.smart3dViewer && window.smart3dViewer.drawn.includes('idle')",
                                       timeout=120_000)
                page.evaluate(HOOK_VIEWER)
                T = DEFAULTS["steps"]
                page.wait_for_function(f"window.smart3dViewer.caption.startsWith('step {T}/{T} - ')", timeout=600_000)
                page.wait_for_function("window.benchMesh !== null", timeout=120_000)
                run = page.evaluate("window.smart3dViewer.last").rsplit(":", 2)[0]
                t0, draws, mesh = page.evaluate("[window.benchT0, window.benchDraws, window.benchMesh]")
                row = summarize_draws(draws, t0, run + ":", T)
                row["click_to_mesh_shown_s"] = (mesh - t0) / 1000
                rows.append(row)
                page.close()
            browser.close()
    finally:
        demo.close()
        demo.smart3d.close()
    return rows


def bench_gr_plot(payloads: list[str], per_step_s: float) -> dict:
    """Baseline: the same steps at the same pace into a gr.Plot."""
    import plotly.graph_objects as go
    from playwright.sync_api import sync_playwright

    figures = [go.Figure(json.loads(p)["scene"]) for p in payloads]
    demo = _baseline_demo(figures, per_step_s)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=None, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#baseline-btn")
            page.evaluate(HOOK_PLOT)
            page.wait_for_function("document.querySelector('#baseline-done').innerText.includes('done')",
                                   timeout=600_000)
            page.wait_for_timeout(3000)                     # let the last value draw
            t0, draws = page.evaluate("[window.benchT0, window.benchDraws]")
            browser.close()
    finally:
        demo.close()
    return summarize_draws(draws, t0, None, len(figures))


def _baseline_demo(figures, per_step_s: float):
    import gradio as gr

    def stream():
        for fig in figures:
            time.sleep(per_step_s)
            yield fig, ""
        yield gr.skip(), "done"

    with gr.Blocks(analytics_enabled=False) as demo:
        plot = gr.Plot(elem_id="baseline")
        done = gr.Markdown(elem_id="baseline-done")
        gr.Button("go", elem_id="baseline-btn").click(stream, None, [plot, done])
    return demo.queue()


def main(args: argparse.Namespace) -> None:
    from app import AppConfig, Handlers
    from smart3d.pipeline import load_pipeline

    info = machine_info()
    weights, weights_info = pick_weights(args.weights)
    pipe = load_pipeline(weights, args.device)
    handlers = Handlers(pipe, AppConfig())
    list(handlers.generate(*{**DEFAULTS, "steps": 2}.values()))      # warm-up
    server, payloads = bench_server(handlers, args.runs)
    handlers.close()
    result = {"machine": info, "device": str(pipe.device), "weights": weights_info, "settings": DEFAULTS,
              "server": server}
    if not args.no_browser:
        rows = bench_browser(pipe, args.runs)
        result["browser"] = {"runs": rows, "fraction_drawn_min": min(r["fraction_drawn"] for r in rows),
                             "fraction_visible_min": min(r["fraction_visible"] for r in rows),
                             "click_to_mesh_shown_s_median": statistics.median(r["click_to_mesh_shown_s"]
                                                                               for r in rows)}
        if args.compare_gr_plot:
            result["gr_plot_baseline"] = bench_gr_plot(payloads, server["per_step_s"])

    print(f"weights: {weights_info['kind']}  device: {pipe.device}  machine: {info['cpu']} x{info['cores']}, "
          f"load {info['load_average_at_start'][0]:.1f}")
    print(f"{'server (25 steps, handlers called directly)':<48}{'value':>10}")
    for k in ("first_step_s", "per_step_s", "per_step_s_max", "last_step_with_mesh_and_downloads_s", "total_s",
              "payload_bytes_mean", "payload_bytes_max"):
        print(f"  {k:<46}{server[k]:>10.3f}" if isinstance(server[k], float) else f"  {k:<46}{server[k]:>10}")
    if "browser" in result:
        print(f"{'headless Chromium, per run':<48}" + "".join(f"{'run ' + str(i + 1):>10}" for i in range(len(rows))))
        for k in ("fraction_drawn", "fraction_visible", "shortest_on_screen_ms", "steps_drawn", "redraws",
                  "click_to_first_draw_s", "click_to_last_step_drawn_s",
                  "click_to_mesh_shown_s"):
            cells = (f"{r[k]:>10.2f}" if isinstance(r[k], float) else f"{str(r[k]):>10}" for r in rows)
            print(f"  {k:<46}" + "".join(cells))
    if "gr_plot_baseline" in result:
        b = result["gr_plot_baseline"]
        print(f"gr.Plot baseline (same steps, same pace): {b['steps_drawn']}/{DEFAULTS['steps']} steps drawn "
              f"({b['fraction_drawn']:.0%}), last step drawn after {b['click_to_last_step_drawn_s']} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None,
                        help="weights folder (default: weights/ if complete, else tiny random)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--runs", type=int, default=2, help="runs of 25 steps (server side and in the browser)")
    parser.add_argument("--no-browser", action="store_true", help="server-side timings only")
    parser.add_argument("--compare-gr-plot", action="store_true", help="also stream the same steps into a gr.Plot")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app.json"), help="JSON output")
    main(parser.parse_args())
