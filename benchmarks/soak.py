"""Soak test of the app server: many generations through the API on loopback, memory and disk after each.

    python benchmarks/soak.py [--generations 200] [--steps 4] [--weights tiny] [--out benchmarks/results/soak.json]

``python app.py`` is started as a subprocess on 127.0.0.1 with its own temporary folder (``TMPDIR`` and
``GRADIO_TEMP_DIR``), so that everything it writes (session folders, gradio's cache) can be counted.
Each generation is one ``gradio_client`` session: connect, ``/generate`` (a class and seed that change
every time), ``/replay`` of one step, then ``client.close()``, which ends the heartbeat and so the
session. After every generation the server's resident memory (``VmRSS``) and the bytes and files
under its temporary folder are recorded. At the end the script waits ``--settle`` seconds for
sessions to be cleaned, counts what is left, stops the server with SIGTERM and counts again.

Reported (JSON and a markdown table next to it): RSS after generation 1, 20, 50, 100, ... and the
last; the growth after the first 20 generations (target: under 100 MB over 200 generations); disk
left behind after the sessions end and after shutdown (target: none); seconds per generation
(wall clock on a shared machine: compare only within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = ("chair", "table", "airplane", "car", "lamp", "mug", "sofa", "bed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (``VmRSS`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def disk_usage(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder``."""
    size = files = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                size += os.path.getsize(os.path.join(dirpath, n))
                files += 1
            except OSError:                          # removed while we walk
                pass
    return size, files


def start_server(weights: Path, tmp: Path, port: int, log_path: Path, extra_env: dict,
                 extra_args: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio"), **extra_env}
    (tmp / "gradio").mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--device", "cpu",
                             "--weights", str(weights), *extra_args], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    import httpx

    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the app exited with code {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    sys.exit(f"the app did not answer within 900 s; see {log_path}")


def one_session(url: str, i: int, steps: int) -> float:
    """One client session: generate, replay a step, close. Returns its wall-clock seconds."""
    from gradio_client import Client

    t0 = time.perf_counter()
    client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})  # busy machines
    try:
        final = client.predict(CLASSES[i % len(CLASSES)], i, False, steps, 0.8, 0.5, 0, 2.0, "cosine", "spatial",
                               "step", api_name="/generate")
        assert json.loads(final[0])["caption"].startswith(f"step {steps}/{steps}"), final[0][:200]
        client.predict(max(1, steps // 2), "confidence", api_name="/replay")
    finally:
        client.close()
    return time.perf_counter() - t0


def summary(rows: list[dict], warmup: int) -> dict:
    rss = [r["rss_mb"] for r in rows]
    base = rss[min(warmup, len(rss)) - 1]
    return {"generations": len(rows), "rss_first_mb": rss[0], f"rss_after_{warmup}_mb": base, "rss_last_mb": rss[-1],
            "rss_max_mb": max(rss), f"growth_after_{warmup}_mb": round(rss[-1] - base, 1),
            f"max_growth_after_{warmup}_mb": round(max(rss[warmup - 1:]) - base, 1) if len(rss) >= warmup else None,
            "seconds_per_generation_median": round(statistics.median(r["seconds"] for r in rows), 3),
            "disk_max_bytes": max(r["disk_bytes"] for r in rows), "disk_max_files": max(r["disk_files"] for r in rows)}


def markdown(result: dict) -> str:
    s, w = result["summary"], result["warmup"]
    lines = [f"# Soak: {s['generations']} generations through the API ({result['settings']['steps']} steps each, "
             f"{result['weights']} weights)", "",
             f"Machine: {result['machine']['cpu']} x{result['machine']['cores']}, load {result['machine']['load']:.1f} "
             "at start (shared: seconds are only comparable within one run).", "",
             "| generation | server RSS (MB) | disk under its temp folder (kB) | files |", "|---:|---:|---:|---:|"]
    rows = result["rows"]
    marks = sorted({1, w, *range(50, len(rows) + 1, 50), len(rows)} & set(range(1, len(rows) + 1)))
    for k in marks:
        r = rows[k - 1]
        lines.append(f"| {k} | {r['rss_mb']:.0f} | {r['disk_bytes'] / 1024:.0f} | {r['disk_files']} |")
    lines += ["", f"Growth after generation {w}: **{s[f'growth_after_{w}_mb']} MB** "
              f"(largest {s[f'max_growth_after_{w}_mb']} MB; target < 100 MB over 200).",
              f"Disk left {result['settle_s']} s after the last session closed: "
              f"**{result['left_after_sessions']['bytes']} bytes in {result['left_after_sessions']['files']} files**; "
              f"after SIGTERM: **{result['left_after_shutdown']['bytes']} bytes in "
              f"{result['left_after_shutdown']['files']} files** (target: none).",
              "Files left after the sessions ended (app-wide, not per session: gradio's copies of the example "
              "files, removed at shutdown): " + ", ".join(f"`{Path(q).name}`" for q in
                                                         result["left_after_sessions"].get("first_paths", [])) + ".",
              f"Median seconds per generation (connect, generate, replay, close): "
              f"{s['seconds_per_generation_median']}.", f"Shutdown log line: `{result['shutdown_line']}`", ""]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="smart3d-soak-"))
    tmp = work / "server-tmp"
    tmp.mkdir()
    if args.weights == "tiny":
        from app.tiny_weights import write_tiny_weights

        weights = write_tiny_weights(work / "weights")
    else:
        weights = Path(args.weights)
    port = free_port()
    log_path = work / "server.log"
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    proc = start_server(weights, tmp, port, log_path, extra_env)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        print(f"server pid {proc.pid} on {url}, RSS {rss_mb(proc.pid):.0f} MB at start")
        for i in range(args.generations):
            seconds = one_session(url, i, args.steps)
            size, files = disk_usage(tmp)
            rows.append({"generation": i + 1, "seconds": round(seconds, 3), "rss_mb": round(rss_mb(proc.pid), 1),
                         "disk_bytes": size, "disk_files": files})
            if (i + 1) % 10 == 0 or i == 0:
                print(f"{i + 1:>5}  RSS {rows[-1]['rss_mb']:>7.1f} MB  disk {size / 1024:>8.0f} kB in {files:>4} files"
                      f"  {seconds:.1f} s", flush=True)
        time.sleep(args.settle)
        left = disk_usage(tmp)
        left_paths = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())[:20]
        rss_idle = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    after = disk_usage(tmp)
    log_text = log_path.read_text()
    shutdown = [line for line in log_text.splitlines() if "shut down" in line.lower() or "shutting down" in line.lower()]
    leftovers = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())[:20]
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    result = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "load": os.getloadavg()[0],
                          "python": platform.python_version(), "torch": torch.__version__},
              "weights": "tiny random" if args.weights == "tiny" else str(weights),
              "settings": {"steps": args.steps, "server_env": extra_env, "one_session_per_generation": True},
              "warmup": args.warmup, "settle_s": args.settle, "summary": summary(rows, args.warmup),
              "rss_idle_after_settle_mb": round(rss_idle, 1),
              "left_after_sessions": {"bytes": left[0], "files": left[1], "first_paths": left_paths},
              "left_after_shutdown": {"bytes": after[0], "files": after[1], "first_paths": leftovers},
              "server_exit_code": proc.returncode, "shutdown_line": shutdown[-1] if shutdown else None,
              "server_log_tail": log_text.splitlines()[-5:], "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200, help="client sessions, one generation each")
    parser.add_argument("--steps", type=int, default=4, help="decoding steps per generation")
    parser.add_argument("--warmup", type=int, default=20, help="growth is measured after this many generations")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait after the last session before counting what is left on disk")
    parser.add_argument("--weights", default="tiny", help="'tiny' (random tiny weights) or a weights folder")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"), help="JSON output")
    main(parser.parse_args())
