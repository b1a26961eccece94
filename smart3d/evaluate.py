"""Evaluation tasks: ``python -m smart3d evaluate --task ...`` prints a table and returns figures.

Tasks:
- ``benchmark``: sanity of the benchmark and the metrics. 1-NNA-CD of the test split against the
  validation split of the same class (same distribution: ~50% expected) and against the
  validation split of another class (different: ~100%), and the shipped classifier's accuracy on
  the test split.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from .shapes import CLASSES

TASKS = ("benchmark",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .dataset import DEFAULT_CACHE

    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--num", type=int, default=100, help="shapes per class and split to compare")
    p.add_argument("--num-per-class", type=int, default=1000, help="benchmark size the splits come from")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", default=None, help="JSON file for the figures")


def _header(args: argparse.Namespace) -> dict:
    return {"task": args.task, "classes": list(args.classes), "num": args.num,
            "num_per_class": args.num_per_class, "machine": platform.platform(),
            "cpus": torch.get_num_threads(), "torch": torch.__version__}


def _print_table(title: str, columns: list[str], rows: list[list]) -> None:
    print(title)
    widths = [max(len(str(c)), *(len(f"{r[i]:.2f}" if isinstance(r[i], float) else str(r[i])) for r in rows))
              for i, c in enumerate(columns)]
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(fmt(v).ljust(w) for v, w in zip(r, widths)))


def evaluate_benchmark(args: argparse.Namespace) -> dict:
    from .classifier import ClassifierConfig, ShapeClassifier, classify
    from .dataset import load_split
    from .metrics import chamfer_matrix, one_nna
    from .weights import WEIGHTS_DIR, load_pretrained

    t0 = time.time()
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    model = load_pretrained(ShapeClassifier, ClassifierConfig, WEIGHTS_DIR / "classifier")
    pred, _ = classify(model, test.occupancy)
    pts = {}
    for c in args.classes:
        label = CLASSES.index(c)
        pts[c] = (torch.from_numpy(test.points[test.labels == label][: args.num]),
                  torch.from_numpy(val.points[val.labels == label][: args.num]))
    self_d = {c: chamfer_matrix(t, t) for c, (t, _) in pts.items()}          # test x test
    vself_d = {c: chamfer_matrix(v, v) for c, (_, v) in pts.items()}         # val x val
    rows, per_class = [], {}
    for k, c in enumerate(args.classes):
        other = args.classes[(k + 1) % len(args.classes)]
        t, v = pts[c]
        same = one_nna(self_d[c], vself_d[c], chamfer_matrix(t, pts[c][1]))
        diff = one_nna(self_d[c], vself_d[other], chamfer_matrix(t, pts[other][1]))
        label = CLASSES.index(c)
        acc = float((pred[test.labels == label] == label).mean())
        per_class[c] = {"1-NNA-CD same class %": 100 * same, "other class": other,
                        "1-NNA-CD other class %": 100 * diff, "classifier accuracy %": 100 * acc,
                        "num_test": int(len(t)), "num_val": int(len(v))}
        rows.append([c, len(t), 100 * same, other, 100 * diff, 100 * acc])
    overall = float((pred == test.labels).mean())
    rows.append(["mean", "", float(np.mean([r[2] for r in rows])), "", float(np.mean([r[4] for r in rows])),
                 100 * overall])
    _print_table("benchmark sanity: test split vs validation split (1-NNA-CD, %; 50 ideal when same)",
                 ["class", "n", "1-NNA same", "other", "1-NNA other", "classifier acc"], rows)
    return {**_header(args), "per_class": per_class, "classifier_accuracy_%": 100 * overall,
            "seconds": time.time() - t0}


def run(args: argparse.Namespace) -> dict:
    return {"benchmark": evaluate_benchmark}[args.task](args)
