"""Speed benchmarks: ``python -m smart3d bench {attention,sampling}`` prints a table and writes JSON.

- ``attention``: forward time and peak memory of one attention layer against the number of tokens
  L (cubic lattices of side n, L = n^3): spatial linear attention in its lattice (linear-time) form,
  the same attention materialised (dense), and softmax attention with the same spatial bias. Each
  measurement runs in its own process under a memory cap (``--memory-gb``): a form that does not fit
  is reported as such. Ratios are to the smallest L and, at each L, lattice against softmax.
- ``sampling``: seconds for one shape at 25 steps (tokens to mesh) and shapes per second at batch
  16, with the shipped weights (preset named in the output), at batch 1 and at ``--batch-size``.
- ``decoding-steps``: masked decoding in T = 4 .. 50 steps against one token per step (T = L, linear
  schedule) with the same network: seconds per shape and quality of ``--num`` chairs against as
  many validation chairs (parts, one part %, 1-NNA-CD, COV-CD, MMD-CD).
- ``flops``: the transformer's achieved FLOP/s in a sampling step (FLOPs counted by
  ``torch.utils.flop_counter``) as a fraction of this CPU's measured matmul ceiling (a 2048^3
  matmul in the same precision).
- ``sampling-profile``: where the time of decoding one shape goes (transformer, token draws, the rest
  of a step, the per-step preview, field decode, marching cubes, point sampling) for this tree and
  for a git revision (``--baseline``) loaded side by side, runs interleaved, plus CPU seconds per
  shape at batch 1 and at ``--batch-size``. The measure is the process's CPU seconds (robust to a
  shared machine at one thread); wall seconds and the load average are recorded too.
- ``train-step``: seconds per training step of a model preset (forward, masked cross-entropy,
  backward, AdamW) eagerly and through ``torch.compile`` (``train model --compile``), in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["attention", "sampling", "sampling-profile", "train-step", "decoding-steps",
                                    "flops"])
    p.add_argument("--preset", default="XS", help="model preset (train-step)")
    p.add_argument("--sides", type=int, nargs="+", default=[4, 6, 8, 10, 12, 16], help="lattice sides (attention)")
    p.add_argument("--dim", type=int, default=128, help="attention width")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16, help="batch for the throughput figure (sampling)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--baseline", default="d93b648", help="git revision to compare with (sampling-profile)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; sampling-profile: 1)")
    p.add_argument("--memory-gb", type=float, default=12.0, help="memory cap of each attention measurement")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="attention / flops arithmetic (auto: bf16 on CPUs with AMX)")
    p.add_argument("--num", type=int, default=24, help="chairs per setting (decoding-steps)")
    p.add_argument("--step-counts", type=int, nargs="+", default=[4, 8, 12, 25, 50], help="T (decoding-steps)")
    p.add_argument("--cache", default=None, help="benchmark cache (decoding-steps; default: SMART3D_CACHE)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<what>.json)")


def _machine() -> dict:
    return {"machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _time(fn, repeats: int) -> float:
    fn()                                                       # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


_ATTENTION_CHILD = """
import json, resource, sys, time
import torch
from smart3d import attention as A
impl, n, heads, dim, dtype, repeats, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), float(sys.argv[7])
resource.setrlimit(resource.RLIMIT_AS, (int(cap * 2**30), int(cap * 2**30)))
torch.set_grad_enabled(False)
dt = getattr(torch, dtype)
d, L = dim // heads, n ** 3
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, heads, L, d, generator=g).to(dt) for _ in range(3))
gamma = torch.linspace(0.5, 16, heads).to(dt)
fn = {"lattice": A.spatial_linear_attention, "dense": A.materialized_spatial_linear_attention,
      "softmax": A.softmax_spatial_attention}[impl]
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
open("/proc/self/clear_refs", "w").write("5")                  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS:")
try:
    fn(q, k, v, gamma, [n])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(q, k, v, gamma, [n]); best = min(best, time.perf_counter() - t0)
    peak = status("VmHWM:")
    print(json.dumps({"ms": 1e3 * best, "peak_mb": (peak - base) / 2**20}))
except (MemoryError, RuntimeError) as e:
    print(json.dumps({"error": f"does not fit in {cap:g} GB: {str(e).splitlines()[0][:120]}"}))
"""


def bench_attention(args: argparse.Namespace) -> dict:
    """One attention layer, batch 1, at each lattice side: time (best of --repeats) and the peak memory
    above the inputs, each form in its own process under a memory cap."""
    from .weights import cpu_has_amx

    H = args.heads
    dtype = "bfloat16" if args.precision == "bf16" or (args.precision == "auto" and cpu_has_amx()) else "float32"
    threads = args.threads or torch.get_num_threads()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    rows = []
    for n in args.sides:
        row = {"side": n, "tokens": n**3}
        for name in ("lattice", "dense", "softmax"):
            out = subprocess.run([sys.executable, "-c", _ATTENTION_CHILD, name, str(n), str(H), str(args.dim), dtype,
                                  str(args.repeats), str(args.memory_gb)], capture_output=True, text=True, env=env)
            lines = out.stdout.strip().splitlines()
            r = json.loads(lines[-1]) if lines else {"error": f"process ended with code {out.returncode} "
                                                               f"(killed: more than {args.memory_gb:g} GB?)"}
            row[f"{name} ms"], row[f"{name} peak MB"] = r.get("ms"), r.get("peak_mb")
            if "error" in r:
                row[f"{name} error"] = r["error"]
            print(f"  L = {n**3}: {name} " + (f"{r['ms']:.1f} ms, {r['peak_mb']:.0f} MB" if "ms" in r else r["error"]),
                  flush=True)
        rows.append(row)
    base = rows[0]
    for r in rows:
        r["tokens x"] = r["tokens"] / base["tokens"]
        for name in ("lattice", "dense", "softmax"):
            ok = r[f"{name} ms"] is not None and base[f"{name} ms"] is not None
            r[f"{name} x"] = r[f"{name} ms"] / base[f"{name} ms"] if ok else None
        ok = r["lattice ms"] is not None and r["softmax ms"] is not None
        r["softmax / lattice time"] = r["softmax ms"] / r["lattice ms"] if ok else None
        ok = r["lattice peak MB"] is not None and r["softmax peak MB"] is not None
        r["softmax / lattice memory"] = r["softmax peak MB"] / max(r["lattice peak MB"], 1e-3) if ok else None
    largest = max((r for r in rows if r["softmax ms"] is not None), key=lambda r: r["tokens"])
    print(f"one attention layer, batch 1, {H} heads of {args.dim // H} dims, {dtype}, {threads} thread(s), "
          f"best of {args.repeats}; memory: peak above the inputs, cap {args.memory_gb:g} GB a process")
    cols = ["tokens", "lattice ms", "lattice peak MB", "dense ms", "dense peak MB", "softmax ms", "softmax peak MB",
            "softmax / lattice time", "softmax / lattice memory"]
    print("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>14.1f}" if isinstance(r[c], float) else f"{str(r[c]):>14}" for c in cols))
    return {"benchmark": "attention", **_machine(), "threads": threads, "dtype": dtype, "heads": H,
            "head_dim": args.dim // H, "memory_cap_gb": args.memory_gb,
            "command": f"python -m smart3d bench attention --sides {' '.join(map(str, args.sides))} "
                       f"--repeats {args.repeats} --memory-gb {args.memory_gb:g}",
            "largest_softmax_tokens": largest["tokens"], "rows": rows}


def bench_sampling(args: argparse.Namespace) -> dict:
    from .pipeline import load_pipeline
    from .sampler import SamplingOptions
    from .weights import WEIGHTS_DIR, cpu_has_amx, read_config

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights or WEIGHTS_DIR
    pipe = load_pipeline(weights, args.device)
    options = SamplingOptions(num_steps=args.steps)
    pipe.generate("chair", 2, seed=0, options=SamplingOptions(num_steps=2))    # warm-up
    one = [_seconds(lambda: pipe.generate("chair", 1, seed=1 + r, options=options))[1] for r in range(args.repeats)]
    batch = [_seconds(lambda: pipe.generate("chair", args.batch_size, seed=100 + r, options=options))[1]
             for r in range(max(1, args.repeats // 3))]
    preset = read_config(Path(weights) / "model").get("preset")
    t1, tb = statistics.median(one), statistics.median(batch)
    result = {"benchmark": "sampling", **_machine(), "amx": cpu_has_amx(), "preset": preset, "steps": args.steps,
              "options": options.record(), "device": str(pipe.device),
              "command": f"python -m smart3d bench sampling --steps {args.steps} --repeats {args.repeats} "
                         f"--batch-size {args.batch_size}" + (f" --threads {args.threads}" if args.threads else ""),
              "seconds_one_shape": t1, "seconds_one_shape_runs": one, "batch_size": args.batch_size,
              "seconds_batch": tb, "seconds_batch_runs": batch, "shapes_per_second_one": 1 / t1,
              "shapes_per_second_batch": args.batch_size / tb, "batch_over_one_rate": args.batch_size / tb * t1}
    print(f"sampling with model preset {preset} on {pipe.device} ({torch.get_num_threads()} threads), "
          f"{args.steps} steps, tokens to mesh, median of runs")
    print(f"  one shape: {t1:.2f} s   batch of {args.batch_size}: {tb:.2f} s ({args.batch_size / tb:.2f} shapes/s, "
          f"{result['batch_over_one_rate']:.2f}x the one-shape rate)")
    return result


@torch.no_grad()
def bench_decoding_steps(args: argparse.Namespace) -> dict:
    """T = --step-counts (cosine schedule) and T = L (one token a step, linear schedule), same network:
    seconds per shape (batch --batch-size) and the quality of --num chairs against as many val chairs."""
    from dataclasses import replace

    from .classifier import ClassifierConfig, ShapeClassifier
    from .classes import CLASSES
    from .dataset import DEFAULT_CACHE, load_split
    from .evaluate import _generated, class_stats, generation_figures, part_figures
    from .pipeline import load_pipeline
    from .sampler import SamplingOptions
    from .weights import WEIGHTS_DIR, cpu_has_amx, load_pretrained, read_config

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = Path(args.weights or WEIGHTS_DIR)
    cache = args.cache or DEFAULT_CACHE
    pipe = load_pipeline(weights, args.device)
    clf = load_pretrained(ShapeClassifier, ClassifierConfig, weights / "classifier")
    val = load_split("val", ["chair"], 1000, cache)
    ref = val.points[np.flatnonzero(val.labels == CLASSES.index("chair"))[:args.num]]
    stats = class_stats(["chair"], 1000, cache)["chair"]
    L = pipe.model.layout.length
    settings = [(T, "cosine") for T in args.step_counts] + [(L, "linear")]
    rows = []
    for T, schedule in settings:
        options = replace(SamplingOptions(), num_steps=T, schedule=schedule)
        t0 = time.perf_counter()
        points, meshes = _generated(pipe, "chair", args.num, 0, options, args.batch_size)
        seconds = (time.perf_counter() - t0) / args.num
        m = generation_figures(points, ref, stats, clf, CLASSES.index("chair"))
        row = {"steps": T, "schedule": schedule, "tokens per step": L / T, "seconds per shape": seconds,
               **part_figures(meshes), **{k: m[k] for k in ("1-NNA-CD %", "COV-CD %", "MMD-CD x1e3")}}
        rows.append(row)
        print(f"  T = {T} ({schedule}): {seconds:.2f} s a shape, {row['parts']:.2f} parts, 1-NNA-CD "
              f"{row['1-NNA-CD %']:.1f}, COV-CD {row['COV-CD %']:.1f}", flush=True)
    one = rows[-1]["seconds per shape"]
    for r in rows:
        r["speed-up over one token a step"] = one / r["seconds per shape"]
    command = (f"python -m smart3d bench decoding-steps --num {args.num} --batch-size {args.batch_size} "
               f"--step-counts {' '.join(map(str, args.step_counts))}" + (f" --threads {args.threads}" if args.threads else ""))
    lines = [f"# Masked decoding against one token a step ({read_config(weights / 'model').get('preset')}, chairs)", "",
             f"`{command}`: {args.num} generated chairs per row against {args.num} validation chairs, default "
             f"settings otherwise (guidance, temperature, repair rounds); seconds per shape at batch "
             f"{args.batch_size}, {torch.get_num_threads()} thread(s), AMX {cpu_has_amx()}.", "",
             "| steps T | schedule | tokens a step | s a shape | speed-up | parts | one part % | 1-NNA-CD % | COV-CD % | MMD-CD |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['steps']} | {r['schedule']} | {r['tokens per step']:.1f} | {r['seconds per shape']:.2f} | "
              f"{r['speed-up over one token a step']:.1f}x | {r['parts']:.2f} | {r['one part %']:.0f} | "
              f"{r['1-NNA-CD %']:.1f} | {r['COV-CD %']:.1f} | {r['MMD-CD x1e3']:.1f} |" for r in rows]
    return {"benchmark": "decoding-steps", **_machine(), "amx": cpu_has_amx(), "command": command, "num": args.num,
            "batch_size": args.batch_size, "rows": rows, "markdown": "\n".join(lines) + "\n"}


@torch.no_grad()
def bench_flops(args: argparse.Namespace) -> dict:
    """FLOPs of one guided sampling step of the transformer (cond + uncond, logits at every position,
    the first step's worst case) over its time, against a 2048^3 matmul's FLOP/s in the same precision."""
    from torch.utils.flop_counter import FlopCounterMode

    from .pipeline import load_pipeline
    from .weights import WEIGHTS_DIR, cpu_has_amx, read_config, use_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = Path(args.weights or WEIGHTS_DIR)
    pipe = load_pipeline(weights, "cpu")
    bf16 = use_bf16(args.precision, torch.device("cpu"))
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    ceiling = 2 * 2048**3 / _time(lambda: a @ b, args.repeats)
    model, B, L = pipe.model, 2, pipe.model.layout.length                 # cond + uncond of one shape
    tokens = torch.zeros(B, L, dtype=torch.long)
    mask = torch.ones(B, L, dtype=torch.bool)
    labels = torch.tensor([0, model.null_class])

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(tokens, mask, labels, at=mask)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = _time(step, args.repeats)
    achieved = flops / seconds
    result = {"benchmark": "flops", **_machine(), "amx": cpu_has_amx(), "precision": "bf16" if bf16 else "fp32",
              "preset": read_config(weights / "model").get("preset"),
              "command": f"python -m smart3d bench flops --repeats {args.repeats}" + (f" --threads {args.threads}" if args.threads else ""),
              "matmul_ceiling_gflops": ceiling / 1e9, "step_gflop": flops / 1e9, "step_seconds": seconds,
              "achieved_gflops": achieved / 1e9, "fraction_of_ceiling": achieved / ceiling}
    print(f"transformer step (cond + uncond, {L} positions, {result['precision']}, {torch.get_num_threads()} thread(s)): "
          f"{flops / 1e9:.2f} GFLOP in {1e3 * seconds:.1f} ms = {achieved / 1e9:.0f} GFLOP/s; "
          f"matmul ceiling {ceiling / 1e9:.0f} GFLOP/s; {100 * achieved / ceiling:.0f}% of it")
    return result


# --------------------------------------------------------------------------------------------
# sampling-profile
# --------------------------------------------------------------------------------------------

def _package_at(revision: str):
    """The ``smart3d`` package as of a git revision, imported as ``smart3d_<revision>`` (its relative
    imports keep it self-contained), so two versions run side by side in one process."""
    name = f"smart3d_{revision}"
    if name not in sys.modules:
        root = Path(__file__).resolve().parent.parent
        tar = subprocess.run(["git", "-C", str(root), "archive", revision, "smart3d"], check=True,
                             capture_output=True).stdout
        tmp = Path(tempfile.mkdtemp(prefix="smart3d_bench_"))
        tarfile.open(fileobj=io.BytesIO(tar)).extractall(tmp, filter="data")
        (tmp / "smart3d").rename(tmp / name)
        sys.path.insert(0, str(tmp))
    importlib.import_module(f"{name}.pipeline")                         # and the sampler, geometry, ... it imports
    return sys.modules[name]


class _Clock:
    """CPU and wall seconds per stage; ``wrap`` times every call of a function under a stage name."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    def add(self, stage: str, cpu: float, wall: float) -> None:
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu
        self.wall[stage] = self.wall.get(stage, 0.0) + wall

    def wrap(self, fn, stage):
        def timed(*a, **k):
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.add(stage() if callable(stage) else stage, time.process_time() - c0, time.perf_counter() - w0)
        return timed


@contextlib.contextmanager
def _patched(targets: list[tuple[object, str, object]]):
    """Temporarily ``setattr(obj, name, value)`` for each target."""
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in targets]
    try:
        for obj, name, value in targets:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


STEP_STAGES = ["transformer (cond + uncond)", "token draw (softmax, sampling)", "spatial prior",
               "rest of the step (log-softmax, entropy, ranking, commit)", "preview decode"]
# once a shape: every decode of the final field (the repair rounds' check and the mesh), every marching cubes
FINAL_STAGES = ["field decode", "small parts", "marching cubes", "point sampling"]


def _profile_once(pkg, pipe, steps: int, seed: int) -> dict[str, tuple[float, float]]:
    """Decode one chair with per-step previews: (CPU, wall) seconds per stage, per step for the step stages."""
    S, G = pkg.sampler, pkg.geometry
    clock, phase = _Clock(), ["preview decode"]
    draw = "_draw_level" if hasattr(S, "_draw_level") else "_draw"         # the token draw, before and after its rename
    targets = [(S, "_guided_logits", clock.wrap(S._guided_logits, STEP_STAGES[0])),
               (S, draw, clock.wrap(getattr(S, draw), STEP_STAGES[1])),
               (S, "_spatial_prior", clock.wrap(S._spatial_prior, STEP_STAGES[2])),
               (pipe.tokenizer, "decode", clock.wrap(pipe.tokenizer.decode, lambda: phase[0])),
               (G, "drop_small_parts", clock.wrap(G.drop_small_parts, FINAL_STAGES[1])),
               (G, "mesh_from_field", clock.wrap(G.mesh_from_field, FINAL_STAGES[2])),
               (G, "sample_surface", clock.wrap(G.sample_surface, FINAL_STAGES[3]))]
    def checking(*a, **k):                  # the repair rounds' check decodes the field: count it as field decode
        phase[0] = FINAL_STAGES[0]
        try:
            return redraw_mask(*a, **k)
        finally:
            phase[0] = "preview decode"

    redraw_mask = pkg.repair.redraw_mask
    targets.append((pkg.repair, "redraw_mask", checking))
    with _patched(targets):
        c0, w0 = time.process_time(), time.perf_counter()
        for last in pipe.steps(pipe.condition("chair", 1), seed, pkg.sampler.SamplingOptions(num_steps=steps, preview=True)):
            pass
        step_cpu, step_wall = time.process_time() - c0, time.perf_counter() - w0
        inside_cpu, inside_wall = sum(clock.cpu.values()), sum(clock.wall.values())   # every timed stage in the steps
        phase[0] = FINAL_STAGES[0]
        as_run = {"precision": "auto"} if "precision" in inspect.signature(pipe.decode).parameters else {}
        pipe.decode(last.tokens, seed, torch.tensor([pipe.label_of("chair")]), **as_run)   # as ``Pipeline.run`` does
    clock.add(STEP_STAGES[3], step_cpu - inside_cpu, step_wall - inside_wall)
    return {k: (clock.cpu.get(k, 0.0) / (steps if k in STEP_STAGES else 1),
                clock.wall.get(k, 0.0) / (steps if k in STEP_STAGES else 1)) for k in STEP_STAGES + FINAL_STAGES}


def _seconds(fn) -> tuple[float, float]:
    """(CPU, wall) seconds of ``fn()``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def bench_sampling_profile(args: argparse.Namespace) -> dict:
    from . import pipeline  # noqa: F401  (versions["after"].pipeline)
    from . import weights as W

    args.threads = args.threads or 1
    torch.set_num_threads(args.threads)
    weights = Path(args.weights or W.WEIGHTS_DIR)
    versions = {"before": _package_at(args.baseline), "after": sys.modules[__package__]}
    pipes = {v: pkg.pipeline.load_pipeline(weights, "cpu") for v, pkg in versions.items()}
    load_start = os.getloadavg()
    for v, pkg in versions.items():                                      # warm-up
        pipes[v].generate("chair", 1, seed=0, options=pkg.sampler.SamplingOptions(num_steps=2))
    runs = {v: [] for v in versions}
    for r in range(args.repeats):                                        # interleaved: before, after, before, ...
        for v, pkg in versions.items():
            runs[v].append(_profile_once(pkg, pipes[v], args.steps, seed=1 + r))
            print(f"  profile {r + 1}/{args.repeats} {v}: transformer "
                  f"{1e3 * runs[v][-1][STEP_STAGES[0]][0]:.0f} CPU ms a step", flush=True)
    stages = STEP_STAGES + FINAL_STAGES
    table = {v: {k: {"cpu": statistics.median(run[k][0] for run in runs[v]),
                     "wall": statistics.median(run[k][1] for run in runs[v])} for k in stages} for v in versions}
    # tokens to mesh as ``Pipeline.generate`` runs it (no previews), at batch 1 and at --batch-size
    shapes = {}
    for B in (1, args.batch_size):
        for v, pkg in versions.items():
            opts = pkg.sampler.SamplingOptions(num_steps=args.steps)
            cpu, wall = _seconds(lambda: pipes[v].generate("chair", B, seed=100, options=opts))
            shapes[f"{v}, batch {B}"] = {"cpu_s_per_shape": cpu / B, "wall_s_per_shape": wall / B}
            print(f"  generate {v} batch {B}: {cpu / B:.2f} CPU s a shape", flush=True)
    summary = {}
    for v in versions:
        t, step = table[v], sum(table[v][k]["cpu"] for k in STEP_STAGES if k != "preview decode")
        final = sum(t[k]["cpu"] for k in FINAL_STAGES)
        summary[v] = {"cpu_s_per_step_without_preview": step, "cpu_s_preview_per_step": t["preview decode"]["cpu"],
                      "cpu_s_final_mesh": final, "cpu_s_tokens_to_mesh": args.steps * step + final,
                      "batch_gain_per_shape": shapes[f"{v}, batch 1"]["cpu_s_per_shape"]
                      / shapes[f"{v}, batch {args.batch_size}"]["cpu_s_per_shape"]}
    ratios = {k: table["before"][k]["cpu"] / table["after"][k]["cpu"] if table["after"][k]["cpu"] > 0 else None
              for k in stages}
    ratios["tokens to mesh"] = summary["before"]["cpu_s_tokens_to_mesh"] / summary["after"]["cpu_s_tokens_to_mesh"]
    config = W.read_config(weights / "model")
    command = (f"python -m smart3d bench sampling-profile --baseline {args.baseline} --steps {args.steps} "
               f"--repeats {args.repeats} --batch-size {args.batch_size} --threads {args.threads}")
    result = {"benchmark": "sampling-profile", **_machine(), "command": command, "preset": config.get("preset"),
              "local_conv": config["config"].get("local_conv"), "amx": W.cpu_has_amx(), "steps": args.steps,
              "repeats": args.repeats, "baseline": args.baseline, "load_average_start": list(load_start),
              "load_average_end": list(os.getloadavg()),
              "measure": "process CPU seconds, median of interleaved repeats (wall seconds alongside)",
              "stages": table, "summary": summary, "before_over_after": ratios, "generate": shapes}
    lines = [f"# Decoding one chair: where the time goes ({config.get('preset')}, {args.steps} steps, "
             f"{args.threads} thread(s))", "", f"`{command}`: CPU seconds of the process, median of {args.repeats} "
             f"interleaved runs of `{args.baseline}` (before) and this tree (after); load average "
             f"{load_start[0]:.1f} at the start.", "",
             "| stage | before (CPU ms) | after (CPU ms) | before / after |", "|---|---:|---:|---:|"]
    for k in stages:
        lines.append(f"| {k}{' (a step)' if k in STEP_STAGES else ''} | {1e3 * table['before'][k]['cpu']:.1f} | "
                     f"{1e3 * table['after'][k]['cpu']:.1f} | {'-' if ratios[k] is None else f'{ratios[k]:.2f}'} |")
    lines.append(f"| **tokens to mesh** (steps without preview + final) | {1e3 * summary['before']['cpu_s_tokens_to_mesh']:.0f}"
                 f" | {1e3 * summary['after']['cpu_s_tokens_to_mesh']:.0f} | {ratios['tokens to mesh']:.2f} |")
    lines += ["", "| `Pipeline.generate` (tokens to mesh) | CPU s a shape | wall s a shape |", "|---|---:|---:|"]
    lines += [f"| {k} | {x['cpu_s_per_shape']:.2f} | {x['wall_s_per_shape']:.2f} |" for k, x in shapes.items()]
    result["markdown"] = "\n".join(lines) + "\n"
    print(result["markdown"])
    return result


def bench_train_step(args: argparse.Namespace) -> dict:
    from .masking import training_mask
    from .model import PRESETS, MaskedTransformer
    from .train.model import masked_token_loss
    from .weights import best_device

    device = torch.device(args.device) if args.device else best_device()
    g = torch.Generator().manual_seed(0)
    result = {"benchmark": "train-step", **_machine(), "preset": args.preset, "batch_size": args.batch_size,
              "device": str(device)}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = MaskedTransformer(PRESETS[args.preset]).to(device)
        c, nc = model.config, model.layout.num_coarse
        tokens = torch.cat([torch.randint(0, c.coarse_codebook_size, (args.batch_size, nc), generator=g),
                            torch.randint(0, c.codebook_size, (args.batch_size, model.layout.length - nc), generator=g)], 1)
        labels = torch.randint(0, c.num_classes, (args.batch_size,), generator=g)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
        forward = torch.compile(model, dynamic=False) if name == "compiled" else model

        def step():
            mask = training_mask(tokens[:, nc:], 0, model.layout, g)
            loss = masked_token_loss(forward, model.level_slices(), tokens.to(device), mask.to(device), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        t0 = time.perf_counter()
        step()                                                   # the compiled model compiles here
        result[f"{name} first step s"] = time.perf_counter() - t0
        result[f"{name} s/step"] = _time(step, args.repeats)
    result["speed-up"] = result["eager s/step"] / result["compiled s/step"]
    print(f"training step, preset {args.preset}, batch {args.batch_size}, {device} ({torch.get_num_threads()} threads)")
    print(f"  eager {result['eager s/step']:.2f} s/step   compiled {result['compiled s/step']:.2f} s/step "
          f"(x{result['speed-up']:.2f}; first compiled step {result['compiled first step s']:.0f} s)")
    return result


def main(args: argparse.Namespace) -> None:
    result = {"attention": bench_attention, "sampling": bench_sampling, "sampling-profile": bench_sampling_profile,
              "train-step": bench_train_step, "decoding-steps": bench_decoding_steps, "flops": bench_flops}[args.what](args)
    out = Path(args.out or RESULTS / f"{args.what}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = result.pop("markdown", None)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if markdown:
        out.with_suffix(".md").write_text(markdown)
    print(f"wrote {out}" + (f" and {out.with_suffix('.md')}" if markdown else ""))
