"""Is the transformer capacity-bound or overfitting? Its masked-token loss on training and on
validation shapes, with the same masks (training-mask distribution, ``--draws`` per shape), and on
validation the loss on the positions the sampler asks about (``masking.asked_mask``: no fine patch
under a visible empty coarse token), the loss the ``--asked-only`` training minimises.

    python experiments/coherence/val_loss.py --weights weights/model DIR/model ... --out FILE.json

Validation: the first ``--per-class`` validation shapes of every class, tokenized (no mirror);
training: as many sequences drawn from the cached training tokens (``SMART3D_CACHE``). Losses are
under bf16 autocast, like training on an AMX CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from smart3d.classes import CLASSES
from smart3d.dataset import DEFAULT_CACHE, load_split
from smart3d.masking import asked_mask, training_mask
from smart3d.model import MaskedTransformer, ModelConfig
from smart3d.sampler import empty_tokens
from smart3d.tokenizer import Tokenizer, TokenizerConfig
from smart3d.train.loop import cached_tokens, encode_dense
from smart3d.train.model import masked_token_loss
from smart3d.weights import load_pretrained


def mean_loss(model, tokens, labels, empty_seq, draws: int, seed: int, asked: bool = False) -> float:
    g = torch.Generator().manual_seed(seed)                  # the same masks for every model
    nc, out, empty = model.layout.num_coarse, [], int(empty_seq[-1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(draws):
            for i in range(0, len(tokens), 32):
                t = tokens[i:i + 32]
                mask = training_mask(t[:, nc:], empty, model.layout, g)
                if asked:
                    mask = asked_mask(mask, t, empty_seq, model.layout)
                out.append(masked_token_loss(model, model.level_slices(), t, mask, labels[i:i + 32]).item())
    return float(np.mean(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", nargs="+", required=True, help="transformer weights (paths without extension)")
    p.add_argument("--tokenizer", default="weights/tokenizer")
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer)
    empty = empty_tokens(tokenizer)
    train = load_split("train", CLASSES, 1000, args.cache)
    train_tokens = cached_tokens(tokenizer, args.tokenizer, train, args.cache, 1000, CLASSES)[:len(train)]
    val = load_split("val", CLASSES, 1000, args.cache)
    sel = np.concatenate([np.where(val.labels == c)[0][:args.per_class] for c in range(len(CLASSES))])
    val_tokens, val_labels = encode_dense(tokenizer, val.dense[sel], mirror=False), torch.from_numpy(val.labels[sel])
    pick = torch.randperm(len(train_tokens), generator=torch.Generator().manual_seed(0))[:len(sel)]
    train_labels = torch.from_numpy(train.labels)[pick]
    rows = []
    for path in args.weights:
        model = load_pretrained(MaskedTransformer, ModelConfig, path).eval()
        row = {"weights": path, "train_loss": mean_loss(model, train_tokens[pick], train_labels, empty, args.draws, 1),
               "val_loss": mean_loss(model, val_tokens, val_labels, empty, args.draws, 1),
               "val_loss_asked": mean_loss(model, val_tokens, val_labels, empty, args.draws, 1, asked=True)}
        print(f"{path}: train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
              f"val, asked positions {row['val_loss_asked']:.4f}", flush=True)
        rows.append(row)
    Path(args.out).write_text(json.dumps({"per_class": args.per_class, "draws": args.draws, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
