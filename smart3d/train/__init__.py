"""Training entry points: ``python -m smart3d train {classifier,tokenizer,decoder,model,image}``.

One module per component, each with the flags it takes (``add_arguments``, its ``--preset``
choices from that component's own registry) and its run (``main``); ``loop.py`` holds what they
share: the common flags, DDP setup, the learning-rate schedule, resumable checkpoints, EMA.
"""

from __future__ import annotations

import argparse

import torch.distributed as dist

from . import classifier, decoder, image, model, tokenizer

TRAINERS = {                                                     # component -> its module, and a line of help
    "classifier": (classifier, "point cloud -> class"),
    "tokenizer": (tokenizer, "point cloud -> coarse and fine codes -> occupancy field"),
    "decoder": (decoder, "retrain a tokenizer's field decoder on its frozen codes"),
    "model": (model, "the masked transformer over a tokenizer's codes"),
    "image": (image, "rendered view -> class and coarse codes"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One subcommand per component (``python -m smart3d train model --help`` lists its flags)."""
    sub = p.add_subparsers(dest="what", required=True, metavar="{" + ",".join(TRAINERS) + "}")
    for name, (trainer, summary) in TRAINERS.items():
        trainer.add_arguments(sub.add_parser(name, help=summary, description=trainer.__doc__))


def main(args: argparse.Namespace) -> None:
    TRAINERS[args.what][0].main(args)
    if dist.is_initialized():
        # Leave the process group in order (a barrier, then an explicit destroy): without it a gloo
        # rank can abort in the C++ teardown after its work is done.
        dist.barrier()
        dist.destroy_process_group()
