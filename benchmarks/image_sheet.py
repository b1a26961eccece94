"""Contact sheet of image conditioning: each example image of the app, then shapes generated from it.

    python benchmarks/image_sheet.py [--weights weights] [--num 3] [--out assets/image_conditioning.png]

Row per image in ``assets/images`` (renders of test-split shapes): the picture, what the image
encoder sees (64 x 64), then ``--num`` shapes generated from it with seeds 0.. (shipped settings),
rendered from the same 3/4 view. Also writes ``benchmarks/results/image_sheet.json`` (what the
encoder read per image, timings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smart3d.classes import CLASSES  # noqa: E402
from smart3d.pipeline import load_pipeline  # noqa: E402
from smart3d.render import contact_sheet, render_meshes  # noqa: E402


def main(args: argparse.Namespace) -> None:
    pipe = load_pipeline(args.weights, "cpu")
    size = 160
    tiles, labels, rows = [], [], []
    for path in sorted((ROOT / "assets" / "images").glob("*.png")):
        t0 = time.time()
        cond = pipe.image_condition(path)
        results = pipe.generate_from_image(path, num=args.num, seed=0)
        seconds = time.time() - t0
        picture = np.asarray(Image.open(path).convert("RGB").resize((size, size)))
        seen = (cond.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        seen = np.asarray(Image.fromarray(seen).resize((size, size), Image.Resampling.NEAREST))
        tiles += [picture, seen, *render_meshes([r.mesh for r in results], size=size)]
        name = CLASSES[cond.label]
        labels += [path.stem, f"seen: {name} p={float(cond.class_probs[cond.label]):.2f}",
                   *[f"seed {k}" for k in range(args.num)]]
        rows.append({"image": path.name, "class read": name, "p": float(cond.class_probs[cond.label]),
                     "coarse given": int(cond.known.sum()), "seconds": seconds})
        print(f"{path.name}: read as {name} (p={rows[-1]['p']:.2f}), {rows[-1]['coarse given']}/64 coarse tokens "
              f"given, {args.num} shapes in {seconds:.1f} s")
    sheet = contact_sheet(tiles, labels, columns=2 + args.num,
                          title="image -> what the encoder sees -> shapes generated from it (shipped weights)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    out = ROOT / "benchmarks" / "results" / "image_sheet.json"
    out.write_text(json.dumps({"weights": str(args.weights), "num": args.num, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out} and {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--num", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "assets" / "image_conditioning.png"))
    main(p.parse_args())
