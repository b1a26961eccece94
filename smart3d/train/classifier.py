"""Train the point-cloud classifier: ``python -m smart3d train classifier``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..classes import CLASSES
from ..weights import WEIGHTS_DIR, best_device, save_pretrained
from .loop import add_common_arguments, command_line

LR = 2e-3                                                        # peak learning rate unless --lr


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, lr=LR, out="weights/classifier", checkpoint=None)
    p.add_argument("--epochs", type=int, default=4, help="passes over the train split")


def main(args: argparse.Namespace) -> None:
    from ..classifier import ClassifierConfig, classify, train_classifier
    from ..dataset import load_split

    device = args.device or best_device()
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    config = ClassifierConfig()
    model, log = train_classifier(train.points, train.labels, val.points, val.labels, config,
                                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or LR,
                                  seed=args.seed, device=device)
    pred, _ = classify(model, test.points)
    test_acc = float((pred == test.labels).mean())
    print(f"classifier: test accuracy {100 * test_acc:.2f}% on {len(test)} shapes, "
          f"trained in {log['seconds']:.0f} s")
    out = Path(args.out or WEIGHTS_DIR / "classifier")
    save_pretrained(model, config, out, classes=list(CLASSES),
                    command=command_line(args, ["num_per_class", "epochs", "batch_size", "lr", "seed"]),
                    train_log=log, test_accuracy=test_acc, num_test=len(test))
    print(f"wrote {out}.safetensors / .json")
