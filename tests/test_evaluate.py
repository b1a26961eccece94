"""``python -m smart3d evaluate``: every task runs end to end on a tiny benchmark and writes its JSON."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app.tiny_weights import write_tiny_weights
from smart3d.weights import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--classes", "mug", "bottle", "--num-per-class", "20", "--num", "2"]   # 2 test shapes per class


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny random tokenizer + model, the shipped classifier, and a 20-shape cache of two classes."""
    root = tmp_path_factory.mktemp("eval")
    weights = write_tiny_weights(root / "weights")
    for ext in ("safetensors", "json"):
        shutil.copy(WEIGHTS_DIR / f"classifier.{ext}", weights / f"classifier.{ext}")
    return root, weights


def _evaluate(root: Path, weights: Path, *args: str) -> dict:
    out = root / "result.json"
    run = subprocess.run([sys.executable, "-m", "smart3d", "evaluate", *args, *TINY, "--cache", str(root / "cache"),
                          "--weights", str(weights), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def test_reconstruction_reports_iou_cd_and_codebook_use(setup):
    root, weights = setup
    r = _evaluate(root, weights, "--task", "reconstruction")
    assert set(r["per_class"]) == {"mug", "bottle"}
    for v in r["per_class"].values():
        assert 0.0 <= v["iou"] <= 1.0 and v["cd_x1e3"] > 0 and v["num"] == 2
    assert 0 < r["codebook"]["fine"]["usage"] <= 1 and r["watertight"][1] == 4
    assert r["watertight_after_reload"] == [2, 2]            # the tiny decoder is pinned to a solid cube


def test_generation_reports_metrics_and_draws_sheets(setup):
    root, weights = setup
    r = _evaluate(root, weights, "--task", "generation", "--steps", "2", "--sheets", str(root / "sheets"))
    for c in ("mug", "bottle"):
        m = r["per_class"][c]
        assert m["num_generated"] == 2 and m["num_reference"] == 2
        assert 0 <= m["1-NNA-CD %"] <= 100 and 0 <= m["class accuracy %"] <= 100
        assert m["parts"] == 1.0 and m["one part %"] == 100.0     # the tiny decoder is pinned to a solid cube
        assert Image.open(root / "sheets" / f"{c}.png").size == (2 * 160, 24 + 160)
    assert set(r["mean"]) >= {"parts", "one part %", "1-NNA-CD %", "COV-CD %", "class accuracy %"}


def test_generation_settings_and_reference_split_are_recorded(setup):
    root, weights = setup
    r = _evaluate(root, weights, "--task", "generation", "--steps", "2", "--split", "val", "--guidance", "1.5",
                  "--temperature", "1.0", "0.6", "--min-part", "0.1", "--top-k", "5", "--policy", "confidence",
                  "--emd", "--emd-points", "64")
    assert r["reference_split"] == "val" and r["per_class"]["mug"]["num_reference"] == 2
    assert r["emd_points"] == 64 and 0 <= r["per_class"]["mug"]["1-NNA-EMD %"] <= 100
    assert {k: r["options"][k] for k in ("num_steps", "cfg_scale", "temperature", "top_k", "policy", "min_part")} == \
        {"num_steps": 2, "cfg_scale": 1.5, "temperature": [1.0, 0.6], "top_k": 5, "policy": "confidence", "min_part": 0.1}
    bad = subprocess.run([sys.executable, "-m", "smart3d", "evaluate", "--task", "generation", "--min-part", "2",
                          *TINY, "--cache", str(root / "cache"), "--weights", str(weights)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "min_part must be between 0 and 1" in bad.stderr


def test_image_task_compares_image_and_class_only_generation(setup):
    root, weights = setup
    r = _evaluate(root, weights, "--task", "image", "--steps", "2", "--confidence", "0")
    assert r["confidence"] == 0.0 and r["split"] == "test" and r["options"]["num_steps"] == 2
    for c in ("mug", "bottle"):
        m = r["per_class"][c]
        assert m["num"] == 2 and m["coarse given per shape"] == 64            # confidence 0: every coarse token given
        assert 0 <= m["class accuracy %"] <= 100 and 0 <= m["coarse accuracy %"] <= 100
        for k in ("image CD x1e3", "class only CD x1e3"):
            assert m[k] > 0
        for k in ("image IoU", "class only IoU"):
            assert 0 <= m[k] <= 1
        assert m["image parts"] == 1.0 and m["image one part %"] == 100.0   # the tiny decoder: a solid cube
    assert set(r["mean"]) >= {"image CD x1e3", "class only CD x1e3", "class accuracy %"}


def test_completion_reports_distances_and_parts(setup):
    root, weights = setup
    r = _evaluate(root, weights, "--task", "completion", "--steps", "2")
    for c in ("mug", "bottle"):
        m = r["per_class"][c]
        assert m["num"] == 2
        for name in ("completion", "partial input", "NN retrieval"):
            assert m[name]["CD x1e3"] > 0 and m[name]["EMD x1e2"] > 0
        assert m["completion"]["parts"] == 1.0 and m["completion"]["one part %"] == 100.0   # a solid cube
    assert set(r["mean"]["completion"]) == {"CD x1e3", "EMD x1e2", "parts", "one part %"}
