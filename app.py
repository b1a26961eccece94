"""Start the SMART-3D app: ``python app.py [--host 127.0.0.1] [--port 7860] [--device cpu|cuda]
[--weights weights]``. Offline: no analytics, no share link; the model runs on the given device
(CUDA when present by default).

SIGTERM (``docker stop``, systemd, ``kill``) and SIGINT (Ctrl-C) stop it cleanly: new requests are
refused, running decodings end at their next step with a message, every session's files and the
app's own gradio cache folder are removed, and one line is logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # before gradio is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")


log = logging.getLogger("smart3d.app")


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)        # not a line per request
    # gradio's cache (uploads) in a folder of our own, so that shutdown can remove all of it
    cache = Path(tempfile.mkdtemp(prefix="smart3d-gradio-", dir=os.environ.get("GRADIO_TEMP_DIR")))
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    temporary, summary = [cache], []
    try:
        serve(args, temporary, summary)
    finally:
        for folder in temporary:
            shutil.rmtree(folder, ignore_errors=True)
        if summary:
            log.info(summary[0])


def serve(args: argparse.Namespace, temporary: list[Path], summary: list[str]) -> None:
    """Run the app until SIGTERM or SIGINT; then stop it cleanly and put the line to log in ``summary``."""
    import torch

    from app import AppConfig, build_demo, launch_options
    from smart3d.pipeline import load_pipeline

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here; use --device cpu.")
    weights = Path(args.weights)
    if args.random_weights:
        from app.tiny_weights import write_tiny_weights

        weights = write_tiny_weights(tempfile.mkdtemp(prefix="smart3d-random-weights-"))
        temporary.append(weights)
        print(f"Using random tiny weights in {weights}: the shapes will be noise.")
    missing = [p for p in (weights / "tokenizer.safetensors", weights / "model.safetensors") if not p.exists()]
    if missing:
        sys.exit(f"No weights found: {', '.join(map(str, missing))} missing. Train them (see README) or start "
                 "with --random-weights to try the interface with untrained tiny weights.")
    device = None if args.device == "auto" else args.device
    pipe = load_pipeline(weights, device)
    if args.decode_batch is not None and args.decode_batch < 1:
        sys.exit("--decode-batch must be at least 1")
    batch = {} if args.decode_batch is None else {"decode_concurrency": args.decode_batch}
    config = AppConfig(max_file_mb=args.max_file_mb, **batch)
    demo = build_demo(pipe, config)
    images = "on" if pipe.image_encoder is not None else "off (no weights/image_encoder.safetensors)"
    print(f"SMART-3D app: weights {weights}, device {pipe.device}, image conditioning {images}")
    stop, received = threading.Event(), []

    def on_signal(signum, frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, **launch_options(config))
        while not stop.wait(0.5) and demo.is_running:
            pass
    finally:
        h = demo.smart3d
        cancelled = h.shutdown()                      # refuse new work, end running decodings, wait for them
        if cancelled:
            time.sleep(0.5)                           # let their clients receive the message
        sessions = sum(1 for p in h.files.root.iterdir() if p.is_dir()) if h.files.root.exists() else 0
        demo.close(verbose=False)
        h.close()
        why = f"on {received[0]}" if received else "(the server stopped)"
        summary.append(f"SMART-3D app shut down {why}: {cancelled} running decoding{'s' * (cancelled != 1)} "
                       f"cancelled, {sessions} session folder{'s' * (sessions != 1)} and the upload cache removed.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="SMART-3D: masked autoregressive 3D shape generation, in a browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the model runs")
    parser.add_argument("--weights", default=str(Path(__file__).resolve().parent / "weights"),
                        help="folder holding tokenizer.{safetensors,json} and model.{safetensors,json}")
    parser.add_argument("--max-file-mb", type=float, default=20.0, help="largest upload accepted, in MB")
    parser.add_argument("--decode-batch", type=int, default=None,
                        help="decodings in flight at once, decoded together as one batch (1: one at a time; "
                             "default: AppConfig.decode_concurrency, 8)")
    parser.add_argument("--random-weights", action="store_true",
                        help="use random tiny weights (to try the interface before training; shapes are noise)")
    main(parser.parse_args())
