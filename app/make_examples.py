"""Write the example partial scans and images shown in the app (``assets/scans``, ``assets/images``).

    python -m app.make_examples [--out assets/scans] [--images assets/images]

Each scan is a benchmark shape (``smart3d.dataset.make_sample``) in the canonical frame, cut by a
plane or seen by one simulated depth camera (``app.inputs.make_scan``), at most 4096 points, in three
of the accepted formats (.ply, .xyz, .npy). Each image is a 256-pixel pyrender view of a *test-split*
shape (index 9 mod 10, never trained on) from its fine 64^3 mesh, in a colour and from a camera the
image encoder's training views cover.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .inputs import make_scan, write_scan
from .layout import IMAGES_DIR, SCANS_DIR

# file -> (class, index, method, azimuth, elevation, offset)
EXAMPLES = {
    "chair_plane_cut.ply": ("chair", 3, "plane", 90, 0, 0.1),
    "airplane_single_view.xyz": ("airplane", 5, "view", 30, 35, 0.0),
    "mug_single_view.npy": ("mug", 2, "view", -40, 20, 0.0),
}


# file -> (class, test-split index, azimuth, elevation, RGB)
IMAGE_EXAMPLES = {
    "chair_render.png": ("chair", 19, 30, 20, (0.62, 0.55, 0.47)),
    "airplane_render.png": ("airplane", 9, -40, 30, (0.45, 0.55, 0.75)),
    "lamp_render.png": ("lamp", 29, 20, 15, (0.80, 0.70, 0.35)),
    "car_render.png": ("car", 39, 60, 20, (0.70, 0.30, 0.30)),
    "table_render.png": ("table", 49, -25, 30, (0.55, 0.45, 0.35)),
}


def write_images(out: Path) -> None:
    from PIL import Image

    from smart3d.dataset import make_sample
    from smart3d.render import Renderer, view_pose

    out.mkdir(parents=True, exist_ok=True)
    with Renderer(256) as r:
        for name, (cls, index, azimuth, elevation, color) in IMAGE_EXAMPLES.items():
            assert index % 10 == 9, "example images show test-split shapes"
            mesh = make_sample(cls, index, with_mesh=True).mesh
            Image.fromarray(r.render(mesh, (*color, 1.0), pose=view_pose(azimuth, elevation))).save(out / name)
            print(f"{out / name}: {cls} #{index} (test split), azimuth {azimuth}, elevation {elevation}")


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for name, spec in EXAMPLES.items():
        visible, hidden = make_scan(*spec)
        path = write_scan(visible, out / name)
        print(f"{path}: {len(visible)} points seen, {len(hidden)} of the dense samples hidden")
    write_images(Path(args.images))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SCANS_DIR), help="folder for the example scans")
    parser.add_argument("--images", default=str(IMAGES_DIR), help="folder for the example images")
    main(parser.parse_args())
