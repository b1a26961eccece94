"""Property-based fuzzing of every file loader a user can reach: point clouds and meshes
(``smart3d.io.load_point_cloud``, ``load_mesh``) and images (``app.inputs.open_image``).

    python benchmarks/fuzz_loaders.py [--examples 10000] [--seed 0] [--out benchmarks/results/fuzz.json]

Inputs, drawn by ``hypothesis`` (explicit seed, no example database): a small valid file of each
format (written here with numpy, trimesh and Pillow), then mutated (bytes flipped, inserted,
deleted, duplicated or truncated; numbers in text formats replaced by extreme values such as
``nan``, ``1e309``, ``-0`` or 20-digit integers; header counts changed), or random bytes under a
supported extension. The property: each input gives a result of the documented kind (points: (N, 3)
float32, finite; mesh: a Trimesh with faces and finite vertices; image: a description and a PIL
image) or a ``ValueError`` with a message (``InputError`` is one); never another exception (a
crash), never longer than ``--time-limit`` seconds (a hang, caught with SIGALRM), and the process's
peak memory is reported. Counts per loader go to the JSON; the test suite runs a smaller pass
(``tests/test_fuzz_loaders.py``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_BYTES = 2 * 2**20            # upload limit used here (the app's default is 20 MB)
MAX_POINTS = 200_000
EXTREMES = [b"nan", b"-nan", b"inf", b"-inf", b"1e309", b"-1e309", b"-0", b"0", b"99999999999999999999",
            b"-99999999999999999999", b"1e-320", b"", b"x", b"4294967296", b"-1", b"2147483648"]


class Hang(Exception):
    """An input took longer than the time limit."""


# --------------------------------------------------------------------------------------------
# Valid seed files, one per format
# --------------------------------------------------------------------------------------------

def seed_files() -> dict[str, list[tuple[str, bytes]]]:
    """{loader: [(extension, bytes of a small valid file), ...]}."""
    import trimesh
    from PIL import Image

    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.5, 0.5, (40, 3)).astype(np.float32)
    clouds = []
    clouds.append((".xyz", "".join(f"{x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in pts).encode()))
    buf = io.BytesIO()
    np.save(buf, pts)
    clouds.append((".npy", buf.getvalue()))
    buf = io.BytesIO()
    np.savez_compressed(buf, points=pts)
    clouds.append((".npz", buf.getvalue()))
    header = (f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {len(pts)}\nHEIGHT 1\n"
              f"POINTS {len(pts)}\n")
    clouds.append((".pcd", (header + "DATA ascii\n").encode() + "".join(f"{x} {y} {z}\n" for x, y, z in pts).encode()))
    clouds.append((".pcd", (header + "DATA binary\n").encode() + pts.tobytes()))
    clouds.append((".ply", trimesh.PointCloud(pts).export(file_type="ply")))
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.8))
    meshes = [(f".{fmt}", _export(box, fmt)) for fmt in ("ply", "obj", "off", "stl", "glb")]
    meshes.append((".ply", _export(box, "ply", encoding="ascii")))
    meshes.append((".stl", _export(box, "stl_ascii")))
    images = []
    im = Image.new("RGB", (48, 40), "white")
    im.paste((180, 60, 40), (12, 10, 36, 30))
    for fmt, ext in (("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp")):
        buf = io.BytesIO()
        im.save(buf, fmt)
        images.append((ext, buf.getvalue()))
    return {"load_point_cloud": clouds + meshes, "load_mesh": meshes, "open_image": images}


def _export(mesh, fmt: str, **kwargs) -> bytes:
    out = mesh.export(file_type=fmt, **kwargs)
    return out.encode() if isinstance(out, str) else out


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------

def mutate(data: bytes, draw, st) -> bytes:
    """Apply 1-4 random mutations to ``data`` (``draw`` is hypothesis' ``data.draw``)."""
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate", "number", "count"]))
        at = draw(st.integers(0, max(n - 1, 0)))
        if kind == "flip" and n:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 64)):]
        elif kind == "duplicate" and n:
            piece = data[at:at + draw(st.integers(1, 256))]
            data = data[:at] + piece * draw(st.integers(2, 50)) + data[at:]
        elif kind == "truncate":
            data = data[:at]
        elif kind in ("number", "count"):
            numbers = list(re.finditer(rb"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", data))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                new = draw(st.sampled_from(EXTREMES)) if kind == "number" else str(
                    draw(st.sampled_from([0, 1, 2, 3, 15, 16, 17, 255, 65536, 2**31, 2**40]))).encode()
                data = data[:m.start()] + new + data[m.end():]
    return data[:MAX_BYTES + 1024]


# --------------------------------------------------------------------------------------------
# The property
# --------------------------------------------------------------------------------------------

def load(loader: str, path: str):
    """Call ``loader`` on ``path`` and check what it returns (AssertionError if it is not right)."""
    import trimesh

    if loader == "load_point_cloud":
        from smart3d.io import load_point_cloud

        pts = load_point_cloud(path, max_bytes=MAX_BYTES, max_points=MAX_POINTS, generator=np.random.default_rng(0))
        assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 3 and np.isfinite(pts).all(), \
            f"result check: points {pts.dtype} {pts.shape}, finite {np.isfinite(pts).all()}"
    elif loader == "load_mesh":
        from smart3d.io import load_mesh

        mesh = load_mesh(path, max_bytes=MAX_BYTES, max_vertices=MAX_POINTS)
        assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all(), \
            f"result check: mesh of {len(mesh.faces)} faces"
    else:
        from app.inputs import open_image

        info, im = open_image(path, MAX_BYTES)
        assert isinstance(info, str) and im.size[0] > 0 and im.size[1] > 0, f"result check: image {im.size}"


def fuzz(loader: str, examples: int, seed: int, time_limit: float, folder: Path) -> dict:
    """Run ``examples`` hypothesis inputs through ``loader``; returns the counts."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import logging

    logging.getLogger("trimesh").setLevel(logging.CRITICAL)    # trimesh logs tracebacks of files it refuses
    seeds = seed_files()[loader]
    for ext, raw in seeds[:1]:                                  # import the loader outside the time limit
        (folder / f"warmup{ext}").write_bytes(raw)
        load(loader, str(folder / f"warmup{ext}"))
    counts = {"inputs": 0, "ok": 0, "value_error": 0, "crash": 0, "hang": 0, "crashes": [], "errors_seen": {}}
    slowest = [0.0]

    def on_alarm(signum, frame):
        raise Hang()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(st.data())
    def one(data):
        ext, raw = data.draw(st.sampled_from(seeds))
        how = data.draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "random"]))
        if how == "mutated":
            raw = mutate(raw, data.draw, st)
        elif how == "random":
            raw = data.draw(st.binary(max_size=2048))
        path = folder / f"input{ext}"
        path.write_bytes(raw)
        counts["inputs"] += 1
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            load(loader, str(path))
            counts["ok"] += 1
        except Hang:
            counts["hang"] += 1
            _keep(counts, folder, ext, raw, "hang")
        except ValueError as err:
            assert str(err).strip(), "a ValueError without a message"
            counts["value_error"] += 1
            counts["errors_seen"][type(err).__name__] = counts["errors_seen"].get(type(err).__name__, 0) + 1
        except Exception as err:                                   # a crash: keep the input to reproduce it
            counts["crash"] += 1
            what = f"{type(err).__name__}: {str(err)[:200]} (at {_where(err)})"
            _keep(counts, folder, ext, raw, what)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            slowest[0] = max(slowest[0], time.perf_counter() - t0)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    from hypothesis import seed as hypothesis_seed

    try:
        hypothesis_seed(seed)(one)()
    finally:
        signal.signal(signal.SIGALRM, previous)
    counts["slowest_input_s"] = round(slowest[0], 3)
    return counts


def _where(err: BaseException) -> str:
    """file:line where an exception was raised (its innermost frame)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else "?"


def _keep(counts: dict, folder: Path, ext: str, raw: bytes, what: str) -> None:
    if len(counts["crashes"]) < 20:
        counts["crashes"].append({"extension": ext, "bytes": len(raw), "what": what,
                                  "hex": raw[:8192].hex()})   # the whole input when small: to reproduce it


def main(args: argparse.Namespace) -> None:
    import warnings

    warnings.simplefilter("ignore")
    result = {"examples_per_loader": args.examples, "seed": args.seed, "time_limit_s": args.time_limit,
              "max_bytes": MAX_BYTES, "max_points": MAX_POINTS, "loaders": {}}
    with tempfile.TemporaryDirectory(prefix="smart3d-fuzz-") as tmp:
        for loader in args.loaders:
            t0 = time.perf_counter()
            counts = fuzz(loader, args.examples, args.seed, args.time_limit, Path(tmp))
            counts["seconds"] = round(time.perf_counter() - t0, 1)
            result["loaders"][loader] = counts
            print(f"{loader:<18} inputs {counts['inputs']:>6}  ok {counts['ok']:>6}  ValueError "
                  f"{counts['value_error']:>6}  crash {counts['crash']:>3}  hang {counts['hang']:>3}  "
                  f"slowest {counts['slowest_input_s']:.2f} s  ({counts['seconds']:.0f} s)", flush=True)
            result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            out = Path(args.out)                               # written after each loader: a long run can stop
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak RSS {result['peak_rss_mb']} MB; wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs per loader")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds before an input counts as a hang")
    parser.add_argument("--loaders", nargs="+", default=["load_point_cloud", "load_mesh", "open_image"],
                        choices=["load_point_cloud", "load_mesh", "open_image"], help="which loaders to fuzz")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"), help="JSON output")
    main(parser.parse_args())
