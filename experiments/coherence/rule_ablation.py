"""The sampler's hierarchy rule switched off, for an ablation: runs ``python -m smart3d evaluate`` with
``smart3d.sampler.under_empty_parent`` returning no positions, so the model draws every fine token.

    python experiments/coherence/rule_ablation.py evaluate --task generation ... --out FILE.json
"""

import sys

import torch

import smart3d.sampler as S
from smart3d.cli import main

S.under_empty_parent = lambda tokens, committed, *rest: torch.zeros_like(committed)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
