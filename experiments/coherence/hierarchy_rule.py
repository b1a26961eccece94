"""Is a fine patch under an empty coarse token always empty? The data behind the sampler's rule
(``smart3d.sampler._decided_empty``): in the cached training sequences (``SMART3D_CACHE``), the share
of fine tokens under an empty coarse token that are empty, per class; and how much of the fine level
the rule settles (the share of fine positions under an empty coarse token).

    python experiments/coherence/hierarchy_rule.py --out experiments/results/hierarchy_rule.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from smart3d.classes import CLASSES
from smart3d.dataset import DEFAULT_CACHE, load_split
from smart3d.sampler import empty_tokens
from smart3d.tokenizer import TokenLayout, Tokenizer, TokenizerConfig
from smart3d.train.loop import cached_tokens
from smart3d.weights import load_pretrained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", default="weights/tokenizer")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    t0 = time.time()
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, args.tokenizer)
    train = load_split("train", CLASSES, 1000, args.cache)
    tokens = cached_tokens(tokenizer, args.tokenizer, train, args.cache, 1000, CLASSES)   # shapes, then x-mirrors
    labels = torch.from_numpy(train.labels).repeat(len(tokens) // len(train))
    layout = TokenLayout(2)
    nc, parent = layout.num_coarse, layout.fine_to_coarse()
    empty = empty_tokens(tokenizer)
    under = (tokens[:, :nc] == empty[:nc])[:, parent]                   # (K, 512) coarse parent empty
    fine_empty = tokens[:, nc:] == empty[nc:]
    per_class = {}
    for c, name in enumerate(CLASSES):
        u, f = under[labels == c], fine_empty[labels == c]
        per_class[name] = {"fine under an empty coarse token %": 100 * u.float().mean().item(),
                           "of those, empty %": 100 * (u & f).sum().item() / max(1, u.sum().item()),
                           "sequences with a surface patch under an empty coarse token %":
                               100 * (u & ~f).any(1).float().mean().item()}
    result = {"sequences": len(tokens), "fine tokens under an empty coarse token": int(under.sum()),
              "of those, empty %": 100 * (under & fine_empty).sum().item() / under.sum().item(),
              "fine under an empty coarse token %": 100 * under.float().mean().item(),
              "per_class": per_class, "tokenizer": args.tokenizer, "seconds": time.time() - t0}
    print(json.dumps({k: v for k, v in result.items() if k != "per_class"}, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
