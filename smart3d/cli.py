"""Command line: ``python -m smart3d <command>`` (see README and DESIGN "Command line and Python API")."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .shapes import CLASSES


def cmd_classes(args: argparse.Namespace) -> None:
    print("\n".join(CLASSES))


def cmd_shapes(args: argparse.Namespace) -> None:
    from .dataset import check_class, make_sample, split_indices
    from .render import contact_sheet, render_meshes

    name = check_class(args.class_name)
    if args.split == "all":
        indices = [args.seed + k for k in range(args.num)]
    else:
        indices = split_indices(args.split, args.seed + 10 * args.num)[args.seed // 10:][: args.num].tolist()
    samples = [make_sample(name, i, with_mesh=True) for i in indices]
    images = render_meshes([s.mesh for s in samples], size=args.size)
    sheet = contact_sheet(images, [f"{name} #{i}" for i in indices], columns=args.columns,
                          title=f"{name}: {len(indices)} benchmark shapes")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(indices)} {name} shapes)")


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

    from . import evaluate, train
    train.add_arguments(sub.add_parser("train", help="train a component (resumable)"))
    sub.choices["train"].set_defaults(func=cmd_train)
    evaluate.add_arguments(sub.add_parser("evaluate", help="evaluate and write a JSON of figures"))
    sub.choices["evaluate"].set_defaults(func=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as e:                    # user mistakes: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
