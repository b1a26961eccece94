"""Repair rounds (smart3d.repair) on a few shapes: parts, share in one part and seconds per shape for
several (rounds, steps per round) settings, same seeds; optionally a before/after contact sheet.

    PYTHONPATH=. python experiments/coherence/repair.py --class chair --num 16 --seed 123 \
        --settings 0x8 3x8 5x8 5x4 8x4 --sheet /tmp/repair_chair.png --out experiments/results/repair_sweep_chair.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from smart3d import geometry as G
from smart3d import SamplingOptions, load_pipeline


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--class", dest="cls", default="chair")
    p.add_argument("--num", type=int, default=16)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--settings", nargs="+", default=["0x8", "5x8"], help="ROUNDSxSTEPS per setting")
    p.add_argument("--weights", default="weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sheet", default=None, help="PNG: the first and the last setting's shapes")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    pipe = load_pipeline(a.weights, "cpu")
    rows, meshes = [], {}
    for setting in a.settings:
        rounds, steps = map(int, setting.split("x"))
        options = replace(SamplingOptions(), repair_rounds=rounds, repair_steps=steps)
        t0 = time.time()
        res = pipe.run(pipe.condition(a.cls, a.num), a.seed, options)
        seconds = (time.time() - t0) / a.num
        parts = np.array([G.mesh_parts(r.mesh) for r in res])
        voxels = np.array([int((r.field > 0.5).sum()) for r in res])       # solid volume: kept or cut away?
        rows.append({"rounds": rounds, "steps": steps, "parts": float(parts.mean()), "solid voxels": float(voxels.mean()),
                     "one part %": 100.0 * float((parts == 1).mean()), "seconds per shape": seconds,
                     "parts_per_shape": parts.tolist(), "voxels_per_shape": voxels.tolist()})
        meshes[setting] = [r.mesh for r in res]
        print({k: v for k, v in rows[-1].items() if not k.endswith("_per_shape")}, flush=True)
    if a.sheet:
        from smart3d.render import save_mesh_sheet

        first, last = a.settings[0], a.settings[-1]
        names = [f"{first} #{i} {n}p" for i, n in enumerate(rows[0]["parts_per_shape"])]
        names += [f"{last} #{i} {n}p" for i, n in enumerate(rows[-1]["parts_per_shape"])]
        save_mesh_sheet(meshes[first] + meshes[last], names, a.sheet,
                        f"{a.cls}, seed {a.seed}: repair rounds x steps {first} (top) and {last} (bottom)", columns=8)
    out = {"command": vars(a), "threads": a.threads, "loadavg": list(__import__("os").getloadavg()), "settings": rows}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
