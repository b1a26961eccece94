"""Command line: ``python -m smart3d <command>`` (see the README's "Command line")."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from .classes import CLASSES


def cmd_classes(args: argparse.Namespace) -> None:
    print("\n".join(CLASSES))


def cmd_shapes(args: argparse.Namespace) -> None:
    from .dataset import check_class, make_sample, split_indices
    from .render import save_mesh_sheet

    name = check_class(args.class_name)
    if args.split == "all":
        indices = [args.seed + k for k in range(args.num)]
    else:
        indices = split_indices(args.split, args.seed + 10 * args.num)[args.seed // 10:][: args.num].tolist()
    samples = [make_sample(name, i, with_mesh=True) for i in indices]
    save_mesh_sheet([s.mesh for s in samples], [f"{name} #{i}" for i in indices], args.out,
                    f"{name}: {len(indices)} benchmark shapes", size=args.size, columns=args.columns)
    print(f"wrote {args.out} ({len(indices)} {name} shapes)")


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Raise ValueError if one of ``paths`` exists and ``overwrite`` is not set: checked before
    anything is decoded or written, so a run never silently replaces earlier results."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; choose "
                         "another --out folder (or --sheet file), or pass --overwrite to replace them")


def _output_names(out: Path, stem: str, num: int, overwrite: bool) -> list[str]:
    """Stems of the ``num`` results to write into ``out`` (``stem`` or ``stem_00``, ``stem_01``, ...),
    refusing names whose files exist (see ``_refuse_existing``)."""
    names = [f"{stem}_{k:02d}" if num > 1 else stem for k in range(num)]
    _refuse_existing([out / f"{n}.{ext}" for n in names for ext in ("glb", "ply")], overwrite)
    return names


def _write_results(results, out: Path, names: list[str], settings: dict) -> None:
    """Export each result as ``out/<name>.glb`` (mesh, ``settings`` in its metadata) and ``.ply`` (points)."""
    from .export import export_mesh, export_points

    out.mkdir(parents=True, exist_ok=True)
    for k, (name, r) in enumerate(zip(names, results)):
        export_mesh(r.mesh, out / f"{name}.glb", {**settings, "index": k})
        export_points(r.points, out / f"{name}.ply")


def cmd_generate(args: argparse.Namespace) -> None:
    from .dataset import check_class
    from .pipeline import load_pipeline
    from .sampler import SamplingOptions

    hint = None if args.class_name in (None, "none", "auto") else check_class(args.class_name)
    if args.class_name is None and not args.image:
        raise ValueError("give --class (a class name, or none for unconditional) or --image")
    options = SamplingOptions.from_args(args)
    if args.sheet:
        _refuse_existing([Path(args.sheet)], args.overwrite)
    pipe = load_pipeline(args.weights, args.device)
    t0 = time.time()
    if args.image:
        image = pipe.image_condition(args.image, hint, args.confidence)
        condition = pipe.condition_from_images([image] * args.num)
        name = CLASSES[image.label]
        what = (f"{name} shapes from {Path(args.image).name} (class {'given' if hint else 'read from the image'}: "
                f"p={float(image.class_probs[image.label]):.2f}; {int(image.known.sum())}/64 coarse tokens given)")
        settings = {"class": name, "image": Path(args.image).name, "confidence": args.confidence}
    else:
        name = hint
        condition = pipe.condition(name, args.num)
        what = f"{name or 'unconditional'} shapes"
        settings = {"class": name}
    names = _output_names(Path(args.out), name or "shape", args.num, args.overwrite)
    results = pipe.run(condition, args.seed, options)
    _write_results(results, Path(args.out), names, {**settings, "seed": args.seed, "options": options.record()})
    faces = sum(len(r.mesh.faces) for r in results)
    print(f"generated {len(results)} {what} (seed {args.seed}, {options.num_steps} steps) "
          f"in {time.time() - t0:.1f} s on {pipe.device}: {', '.join(n + '.glb' for n in names)} in {args.out} "
          f"({faces} faces)")
    if args.sheet:
        from .render import save_mesh_sheet

        save_mesh_sheet([r.mesh for r in results], [f"seed {args.seed}, #{k}" for k in range(len(results))],
                        args.sheet, f"{name or 'unconditional'}: {len(results)} generated shapes "
                                    f"({options.num_steps} steps, weights: {args.weights})",
                        columns=min(8, len(results)))
        print(f"wrote {args.sheet}")


def cmd_complete(args: argparse.Namespace) -> None:
    import numpy as np

    from .dataset import check_class
    from .intake import canonical_placement, place_scan
    from .io import InputError, load_point_cloud
    from .pipeline import load_pipeline
    from .sampler import SamplingOptions

    name = None if args.class_name in (None, "none") else check_class(args.class_name)
    options = SamplingOptions.from_args(args)
    raw = load_point_cloud(args.input, generator=np.random.default_rng(args.seed))
    placement = (canonical_placement(raw) if args.placement == "canonical"
                 else place_scan(raw, name, args.up, generator=np.random.default_rng(args.seed)))
    if args.placement == "auto":
        print(f"placed {args.input}: {placement.describe()}")
    points = placement.points
    points = points[(np.abs(points) <= 1.0).all(1)]
    if not len(points):
        raise InputError(f"{args.input}: none of its points falls inside the canonical box; check --placement / --up")
    names = _output_names(Path(args.out), Path(args.input).stem + "_completed", args.num, args.overwrite)
    pipe = load_pipeline(args.weights, args.device)
    t0 = time.time()
    tokens, visible = pipe.tokens_of_points(points)
    results = pipe.run(pipe.condition(name, args.num, tokens, visible), args.seed, options)
    settings = {"class": name, "seed": args.seed, "input": Path(args.input).name, "options": options.record(),
                "frame": "canonical"}
    if args.placement == "auto" and not args.canonical_output:    # back in the scan's own frame and units
        results = [replace(r, mesh=placement.mesh_to_scan(r.mesh), points=placement.to_scan(r.points).astype(np.float32))
                   for r in results]
        settings.update(frame="scan", scan_to_canonical=np.round(placement.matrix, 8).tolist())
    _write_results(results, Path(args.out), names, settings)
    print(f"completed {args.input} ({len(points)} points) as {name or 'any class'} (seed {args.seed}) "
          f"in {time.time() - t0:.1f} s, {settings['frame']} frame: {', '.join(n + '.glb' for n in names)} in {args.out}")


def cmd_data(args: argparse.Namespace) -> None:
    from .dataset import build_cache

    t0 = time.time()
    paths = build_cache(args.classes, args.num_per_class, args.root, workers=args.workers)
    print(f"{len(paths)} class files ready under {args.root} in {time.time() - t0:.1f} s")


def cmd_train(args: argparse.Namespace) -> None:
    from . import train

    train.main(args)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from . import evaluate

    result = evaluate.run(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


def build_parser() -> argparse.ArgumentParser:
    from .dataset import DEFAULT_CACHE
    from .weights import WEIGHTS_DIR

    p = argparse.ArgumentParser(prog="python -m smart3d", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("classes", help="print the benchmark classes, one per line")
    s.set_defaults(func=cmd_classes)

    s = sub.add_parser("shapes", help="render a contact sheet of benchmark shapes")
    s.add_argument("--class", dest="class_name", required=True, help=f"one of: {', '.join(CLASSES)}")
    s.add_argument("--num", type=int, default=16, help="number of shapes")
    s.add_argument("--seed", type=int, default=0, help="first shape index")
    s.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="take consecutive indices (all) or those of one split")
    s.add_argument("--columns", type=int, default=4)
    s.add_argument("--size", type=int, default=192, help="pixels per view")
    s.add_argument("--out", required=True, help="PNG file")
    s.set_defaults(func=cmd_shapes)

    s = sub.add_parser("data", help="build the cached benchmark arrays")
    s.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    s.add_argument("--num-per-class", type=int, default=1000)
    s.add_argument("--root", default=str(DEFAULT_CACHE))
    s.add_argument("--workers", type=int, default=None)
    s.set_defaults(func=cmd_data)

    from .pipeline import DEFAULT_IMAGE_CONFIDENCE
    from .sampler import SamplingOptions

    for cmd, fn, hlp in (("generate", cmd_generate, "generate shapes of a class"),
                         ("complete", cmd_complete, "complete a partial scan")):
        s = sub.add_parser(cmd, help=hlp)
        if cmd == "generate":
            s.add_argument("--class", dest="class_name", default=None,
                           help=f"one of: {', '.join(CLASSES)}, or none (unconditional); with --image a hint "
                                "that overrides the class read from the image")
            s.add_argument("--image", default=None, help="condition on an image of one object on a plain background "
                                                         "(PNG/JPEG; renders like the benchmark views work best)")
            s.add_argument("--confidence", type=float, default=DEFAULT_IMAGE_CONFIDENCE,
                           help="with --image: keep the coarse tokens the image encoder gives at least this probability")
            s.add_argument("--sheet", default=None, help="also render the shapes into this contact sheet (.png)")
        else:
            s.add_argument("--input", required=True, help="partial scan: .ply .obj .off .stl .glb .xyz .npy .npz .pcd")
            s.add_argument("--class", dest="class_name", default=None, help="class hint (default: none)")
            s.add_argument("--placement", default="auto", choices=["auto", "canonical"],
                           help="auto: a real scan (any units and axes, floor and strays allowed) placed by "
                                "smart3d.intake for its class; canonical: already y up, front +z, inside -1..1")
            s.add_argument("--up", default=None, choices=["+x", "-x", "+y", "-y", "+z", "-z"],
                           help="the scan's up axis (auto placement; default: the floor's normal, else +z)")
            s.add_argument("--canonical-output", action="store_true",
                           help="write the completion in the canonical frame, not the scan's (auto placement)")
        s.add_argument("--num", type=int, default=4 if cmd == "generate" else 1, help="number of shapes")
        s.add_argument("--seed", type=int, default=0)
        SamplingOptions.add_arguments(s)
        s.add_argument("--weights", default=str(WEIGHTS_DIR), help="weights folder")
        s.add_argument("--device", default=None, help="cpu / cuda (default: best available)")
        s.add_argument("--out", required=True, help="output folder")
        s.add_argument("--overwrite", action="store_true", help="replace files of the same name in --out "
                                                                 "(default: refuse to)")
        s.set_defaults(func=fn)

    from . import evaluate, train
    train.add_arguments(sub.add_parser("train", help="train a component (resumable)"))
    sub.choices["train"].set_defaults(func=cmd_train)
    evaluate.add_arguments(sub.add_parser("evaluate", help="evaluate and write a JSON of figures"))
    sub.choices["evaluate"].set_defaults(func=cmd_evaluate)
    from . import bench
    bench.add_arguments(sub.add_parser("bench", help="speed benchmarks (table + JSON)"))
    sub.choices["bench"].set_defaults(func=lambda a: bench.main(a))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:    # user mistakes: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
