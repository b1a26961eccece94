"""Load test of the app server: concurrent users through the API on loopback, one at a time against batched.

    python benchmarks/load.py [--users 1 4 8] [--requests 3] [--steps 25] [--weights weights] [--threads 2]

For each server setting (``--decode-batch 1``: one decoding at a time, as before batching; and
``--decode-batch 8``: decodings in flight at once, gathered into one batch by
``smart3d.batching.DecodeBatcher``), ``python app.py`` is started on 127.0.0.1, and for each number
of users that many ``gradio_client`` clients each run ``--requests`` generations back to back
(``/generate``, a class and seed per request, default settings otherwise). Reported per row: users,
requests, completed, rejected (with the server's message), lost (no answer and no message: must be
0), p50 / p95 seconds from submit to the final step, and throughput (completed generations a minute
over the row's wall time); and the ratio of batched to one-at-a-time throughput at each user count.
Timings are wall clock on a shared machine: compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from soak import CLASSES, free_port, start_server  # noqa: E402


def one_user(url: str, user: int, requests: int, steps: int, rows: list, lock: threading.Lock) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 600})
    try:
        for k in range(requests):
            i = 100 * user + k
            t0 = time.perf_counter()
            row = {"user": user, "request": k}
            try:
                final = client.predict(CLASSES[i % len(CLASSES)], i, False, steps, 1.0, 1.0, 0, 2.0, "cosine",
                                       "spatial", "step", api_name="/generate")
                caption = json.loads(final[0])["caption"]
                done = caption.startswith("step ") and "; 0 masked" in caption      # the final step: all decided
                row.update(outcome="completed" if done else "lost", seconds=time.perf_counter() - t0,
                           caption=caption[:120])
            except Exception as e:                         # noqa: BLE001  (a refusal arrives as an exception)
                message = str(e).strip()
                row.update(outcome="rejected" if message else "lost", message=message[:200],
                           seconds=time.perf_counter() - t0)
            with lock:
                rows.append(row)
    finally:
        client.close()


def run_row(url: str, users: int, requests: int, steps: int) -> dict:
    rows, lock = [], threading.Lock()
    threads = [threading.Thread(target=one_user, args=(url, u, requests, steps, rows, lock)) for u in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = sorted(r["seconds"] for r in rows if r["outcome"] == "completed")
    q = statistics.quantiles(done, n=20) if len(done) >= 2 else done * 19
    return {"users": users, "requests": users * requests, "completed": len(done),
            "rejected": sum(r["outcome"] == "rejected" for r in rows), "lost": sum(r["outcome"] == "lost" for r in rows),
            "messages": sorted({r["message"] for r in rows if r.get("message")}),
            "p50_s": statistics.median(done) if done else None, "p95_s": q[18] if done else None,
            "wall_s": wall, "per_minute": 60 * len(done) / wall}


def main(args: argparse.Namespace) -> None:
    weights = Path(args.weights).resolve()
    result = {"benchmark": "load", "machine": platform.platform(), "weights": str(weights), "steps": args.steps,
              "threads": args.threads, "requests_per_user": args.requests,
              "command": f"python benchmarks/load.py --users {' '.join(map(str, args.users))} --requests {args.requests} "
                         f"--steps {args.steps} --threads {args.threads}", "settings": {}}
    for batch in args.decode_batch:
        tmp = Path(tempfile.mkdtemp(prefix="smart3d-load-"))
        port = free_port()
        env = {"OMP_NUM_THREADS": str(args.threads)}
        proc = start_server(weights, tmp, port, tmp / "server.log", env, ["--decode-batch", str(batch)])
        url = f"http://127.0.0.1:{port}/"
        try:
            run_row(url, 1, 1, args.steps)                 # warm-up
            rows = []
            for users in args.users:
                row = run_row(url, users, args.requests, args.steps)
                rows.append(row)
                print(f"decode batch {batch}, {users} users: {row['completed']}/{row['requests']} completed, "
                      f"{row['rejected']} rejected, {row['lost']} lost, p50 {row['p50_s']} s, p95 {row['p95_s']} s, "
                      f"{row['per_minute']:.1f} a minute {row['messages']}", flush=True)
            result["settings"][f"decode batch {batch}"] = rows
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    if len(args.decode_batch) == 2:
        one, many = (result["settings"][f"decode batch {b}"] for b in args.decode_batch)
        result["throughput_ratio"] = {str(a["users"]): b["per_minute"] / a["per_minute"] for a, b in zip(one, many)}
    lines = [f"# Load: one decoding at a time against batched ({args.steps} steps, {args.threads} thread(s))", "",
             f"`{result['command']}`; each user runs {args.requests} generations back to back.", "",
             "| server | users | requests | completed | rejected | lost | p50 s | p95 s | a minute |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in result["settings"].items():
        lines += [f"| {name} | {r['users']} | {r['requests']} | {r['completed']} | {r['rejected']} | {r['lost']} | "
                  f"{r['p50_s']:.1f} | {r['p95_s']:.1f} | {r['per_minute']:.1f} |" for r in rows]
    if "throughput_ratio" in result:
        lines += ["", "Batched over one at a time, throughput: " +
                  ", ".join(f"{u} users {x:.2f}x" for u, x in result["throughput_ratio"].items())]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=3, help="generations per user, back to back")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--decode-batch", type=int, nargs="+", default=[1, 8], help="server settings to compare")
    parser.add_argument("--weights", default=str(ROOT / "weights"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.json"))
    main(parser.parse_args())
