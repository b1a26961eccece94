"""Start the SMART-3D app: ``python app.py [--host 127.0.0.1] [--port 7860] [--device cpu|cuda]
[--weights weights]``. Offline: no analytics, no share link; the model runs on the given device
(CUDA when present by default)."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # before gradio is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(args: argparse.Namespace) -> None:
    import torch

    from app import AppConfig, build_demo, launch_options
    from smart3d.pipeline import load_pipeline

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available here; use --device cpu.")
    weights = Path(args.weights)
    if args.random_weights:
        from app.tiny_weights import write_tiny_weights

        weights = write_tiny_weights(tempfile.mkdtemp(prefix="smart3d-random-weights-"))
        atexit.register(shutil.rmtree, weights, ignore_errors=True)
        print(f"Using random tiny weights in {weights}: the shapes will be noise.")
    missing = [p for p in (weights / "tokenizer.safetensors", weights / "model.safetensors") if not p.exists()]
    if missing:
        sys.exit(f"No weights found: {', '.join(map(str, missing))} missing. Train them (see README) or start "
                 "with --random-weights to try the interface with untrained tiny weights.")
    device = None if args.device == "auto" else args.device
    pipe = load_pipeline(weights, device)
    config = AppConfig(max_file_mb=args.max_file_mb)
    demo = build_demo(pipe, config)
    atexit.register(demo.smart3d.close)
    images = "on" if pipe.image_encoder is not None else "off (no weights/image_encoder.safetensors)"
    print(f"SMART-3D app: weights {weights}, device {pipe.device}, image conditioning {images}")
    demo.launch(server_name=args.host, server_port=args.port, **launch_options(config))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="SMART-3D: masked autoregressive 3D shape generation, in a browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the model runs")
    parser.add_argument("--weights", default=str(Path(__file__).resolve().parent / "weights"),
                        help="folder holding tokenizer.{safetensors,json} and model.{safetensors,json}")
    parser.add_argument("--max-file-mb", type=float, default=20.0, help="largest upload accepted, in MB")
    parser.add_argument("--random-weights", action="store_true",
                        help="use random tiny weights (to try the interface before training; shapes are noise)")
    main(parser.parse_args())
