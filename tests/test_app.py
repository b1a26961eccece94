"""The Gradio app: handlers called directly, then the launched app through ``gradio_client``.

Tiny random weights (``app.tiny_weights``, decoder pinned to a solid cube) make every run fast and
every mesh watertight; they test the plumbing, not the shapes.
"""

import json
from dataclasses import replace
import os
import time
import types
import zipfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402

from app import AppConfig, Handlers, build_demo, launch_options  # noqa: E402
from app.downloads import SessionFiles  # noqa: E402
from app.inputs import load_scan, make_scan  # noqa: E402
from app.layout import SCANS_DIR  # noqa: E402
from app.settings import options_from_ui  # noqa: E402
from app.viewers import SURFACE_POINTS  # noqa: E402
from app.tiny_weights import write_tiny_weights  # noqa: E402
from smart3d.export import glb_metadata  # noqa: E402
from smart3d.pipeline import load_pipeline  # noqa: E402
from smart3d.scans import direction  # noqa: E402

STEPS = 6
CHAIR_SCAN = SCANS_DIR / "chair_plane_cut.ply"


def settings(seed=7, randomize=False, steps=STEPS, t0=0.8, t1=0.5, top_k=10, guidance=3.0, schedule="cosine",
             policy="spatial", color_by="step"):
    """The shared settings inputs, in the order the handlers (and API endpoints) take them."""
    return [seed, randomize, steps, t0, t1, top_k, guidance, schedule, policy, color_by]


def placing(class_name="any", frame="canonical", up="auto", turn=0, scale=1.0, offset=(0, 0, 0), canonical=False):
    """The scan tab's placement inputs of ``complete``, in order: class, frame, up axis, hand controls, and
    whether the downloads are in the canonical frame."""
    return [class_name, frame, up, turn, scale, *offset, canonical]


def payload(viewer: str) -> dict:
    return json.loads(viewer)


def preview_points(plot) -> np.ndarray:
    """(N, 3) every scan point drawn in a placement preview (a go.Figure, or gradio_client's plot value)."""
    if isinstance(plot, go.Figure):
        fig = plot.to_dict()
    else:
        fig = json.loads(plot["plot"] if isinstance(plot, dict) else plot)
    traces = [t for t in fig["data"] if t.get("mode") == "markers"]
    assert [t["name"].split(" (")[0] for t in traces] == ["scan inside the box", "outside: left out"]
    return np.concatenate([np.stack([t["x"], t["y"], t["z"]], 1).reshape(-1, 3) for t in traces]).astype(float)


@pytest.fixture(scope="module")
def sensed(tmp_path_factory):
    """A simulated sensor scan of test-split chair 19 (metres, z-up, random heading, floor and stray
    points), written as .npy: (path, scan (M, 3), true placement)."""
    from smart3d.dataset import make_sample
    from smart3d.intake import sensor_scan

    scan, truth, _ = sensor_scan(make_sample("chair", 19).dense.astype(np.float64), height=0.85,
                                 generator=np.random.default_rng(3))
    path = tmp_path_factory.mktemp("sensed") / "chair_lidar.npy"
    np.save(path, scan)
    return path, scan, truth


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return load_pipeline(write_tiny_weights(tmp_path_factory.mktemp("weights")), "cpu")


@pytest.fixture(scope="module")
def config():
    return AppConfig(max_file_mb=1, end_grace_s=0.5, sweep_every_s=0.25)


@pytest.fixture(scope="module")
def handlers(pipe, config, tmp_path_factory):
    h = Handlers(pipe, config, SessionFiles(tmp_path_factory.mktemp("sessions"), end_grace_s=0.0))
    yield h
    h.close()


@pytest.fixture(scope="module")
def generated(handlers):
    return list(handlers.generate("chair", *settings()))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """One file per kind of bad upload (the size limit in these tests is 1 MB)."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.ply").write_bytes(b"")
    (d / "corrupt.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n" + os.urandom(300))
    (d / "scan.txt").write_text("0 0 0\n1 1 1\n")
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (100, 3))
    pts[5] = np.nan
    np.savetxt(d / "nan.xyz", pts)
    inf = pts.copy()
    inf[5] = [np.inf, 0, 0]
    np.save(d / "inf.npy", inf)
    (d / "one.xyz").write_text("0.1 0.2 0.3\n")
    with zipfile.ZipFile(d / "ten_million.npz", "w", zipfile.ZIP_DEFLATED) as z:   # 120 MB of zeros, ~120 kB zipped
        with z.open("points.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.zeros((10_000_000, 3), np.float32))
    (d / "big.xyz").write_text("0.1 0.2 0.3\n" * 110_000)                           # 1.3 MB > 1 MB
    (d / "not_an_image.png").write_bytes(b"this is plain text, not a PNG")
    (d / "doc.pdf").write_bytes(b"%PDF-1.4")
    return d


BAD_SCANS = [  # file, words the message must contain
    ("empty.ply", "is empty"),
    ("corrupt.ply", "Could not read corrupt.ply"),
    ("scan.txt", "unsupported file type"),
    ("nan.xyz", "NaN or infinite"),
    ("inf.npy", "NaN or infinite"),
    ("one.xyz", "has 1 points; at least 16"),
    ("ten_million.npz", "10,000,000 points, more than the limit"),
    ("big.xyz", "larger than the 1 MB limit"),
]

BAD_SETTINGS = [  # overrides of settings(), words of the message
    ({"steps": 0}, "Steps must be a whole number between 1 and 100"),
    ({"steps": 2.5}, "Steps must be a whole number"),
    ({"t0": 9.0}, "Temperature \\(start\\) must be a number between 0.05 and 2"),
    ({"t1": float("nan")}, "Temperature \\(end\\) must be a number"),
    ({"top_k": -1}, "Top-k must be a whole number between 0 and 512"),
    ({"guidance": 50}, "Guidance must be a number between 0 and 10"),
    ({"schedule": "bogus"}, "Unknown schedule 'bogus'; choose one of: cosine"),
    ({"policy": "bogus"}, "Unknown commit policy 'bogus'"),
    ({"seed": -1}, "Seed must be a whole number between 0 and"),
    ({"color_by": "rainbow"}, "Unknown colouring 'rainbow'"),
]


# --------------------------------------------------------------------------------------------
# Handlers, called directly
# --------------------------------------------------------------------------------------------

def test_generate_yields_one_output_per_step(generated):
    assert len(generated) == STEPS
    views = [payload(out[0]) for out in generated]
    assert [v["step"] for v in views] == list(range(1, STEPS + 1))
    assert [v["caption"].split(" known:")[0] for v in views] == [f"step {k}/{STEPS} - {v['known']}/576 tokens"
                                                                  for k, v in zip(range(1, STEPS + 1), views)]
    known = [v["known"] for v in views]
    assert known == sorted(known) and known[-1] == 576 and known[0] < 576
    assert all(out[1] == 7 for out in generated)                        # the seed used is shown
    assert generated[0][2] is None                                      # old downloads cleared at step 1
    assert len(generated[-1][2]) == 6                                   # GLB OBJ STL PLY + PLY/NPY points
    assert len(generated[-1][-1].steps) == STEPS


def test_step_payload_is_a_small_plotly_figure(generated):
    for out in generated:
        assert len(out[0]) < 100_000                                    # bytes of JSON per streamed step
        v = payload(out[0])
        go.Figure(v["scene"])                                           # valid Plotly (raises otherwise)
        go.Figure(v["chart"])
        markers = [len(t["x"]) for t in v["scene"]["data"]]
        assert sum(markers[:4]) <= SURFACE_POINTS and sum(markers[4:]) <= 576
        assert v["scene"]["layout"]["scene"]["xaxis"]["range"] == [-1.05, 1.05]
        assert v["scene"]["layout"]["uirevision"] == "smart3d"
    last = payload(generated[-1][0])
    names = [t["name"].split(" (")[0] for t in last["scene"]["data"]]
    assert names == ["surface: model's guess", "surface: given", "surface: decided", "surface: this step",
                     "tokens masked", "tokens scan", "tokens decided", "tokens this step"]
    assert last["scene"]["data"][0]["x"] == [] and last["scene"]["data"][4]["x"] == []   # nothing masked at the end
    assert len(last["scene"]["data"][2]["x"]) > 0                       # the (solid cube's) surface, decided
    assert all(t.get("visible") == "legendonly" for t in last["scene"]["data"][4:])   # tokens: an overlay
    assert len(last["chart"]["data"][0]["y"]) == STEPS


def test_caption_legend_and_chart_count_the_same_tokens(generated):
    """One partition of the 576 tokens (masked, given, surface, empty space) in every place it is shown."""
    run = generated[-1][-1]
    for k, out in enumerate(generated, start=1):
        v = payload(out[0])
        c, data, chart = v["counts"], v["scene"]["data"], v["chart"]["data"]
        assert c["masked"] + c["given"] + c["surface"] + c["empty"] == 576 and v["known"] == 576 - c["masked"]
        assert (f"{c['surface']} surface ({c['newest']} this step), {c['empty']} empty space (not drawn); "
                f"{c['masked']} masked") in v["caption"]
        legend = {t["name"].split(" (")[0]: int(t["name"].rsplit("(", 1)[1].rstrip(")")) for t in data[4:]}
        assert legend == {"tokens masked": c["masked"], "tokens scan": c["given"],
                          "tokens decided": c["surface"] - c["newest"], "tokens this step": c["newest"]}
        assert [len(t["x"]) for t in data[4:]] == list(legend.values())  # what the legend counts is drawn
        assert chart[0]["y"][-1] == c["newest"]                          # this step's bar: surface ...
        assert chart[0]["y"][-1] + chart[1]["y"][-1] == int(run.steps[k - 1].committed.sum())
        assert sum(chart[0]["y"]) == c["surface"] and sum(chart[0]["y"]) + sum(chart[1]["y"]) == v["known"]


def test_same_seed_same_tokens_as_the_library(pipe, generated):
    run = generated[-1][-1]
    options = options_from_ui(STEPS, 0.8, 0.5, 10, 3.0, "cosine", "spatial")
    reference = list(pipe.sample_steps("chair", 1, 7, options))
    for ours, ref in zip(run.steps, reference):
        assert torch.equal(ours.tokens, ref.tokens)


def test_replay_returns_the_recorded_tokens_without_recomputing(handlers, generated, monkeypatch):
    run = generated[-1][-1]

    def refuse(*args, **kwargs):
        raise AssertionError("replay must not run the model")

    monkeypatch.setattr(handlers.pipe, "sample_steps", refuse)
    monkeypatch.setattr(handlers.pipe, "decode", refuse)
    for k in (1, 3, STEPS):
        for color_by in ("step", "confidence"):
            viewer, record = handlers.replay(k, color_by, run)
            assert record["tokens"] == run.steps[k - 1].tokens[0].tolist()
            assert record["step"] == k and payload(viewer)["caption"].startswith(f"step {k}/{STEPS} - ")
    replayed = payload(handlers.replay(STEPS, "step", run)[0])
    assert replayed["scene"]["data"] == payload(generated[-1][0])["scene"]["data"]
    plays = list(handlers.play("step", run))
    assert [k for _, k in plays] == list(range(1, STEPS + 1))


def test_downloads_are_the_same_shape_with_settings_in_the_glb(generated):
    run = generated[-1][-1]
    files = run.files
    assert sorted(files) == ["glb", "obj", "ply", "points_npy", "points_ply", "stl"]
    meshes = {fmt: trimesh.load(files[fmt], force="mesh") for fmt in ("glb", "obj", "stl", "ply")}
    for fmt, mesh in meshes.items():
        assert mesh.is_watertight, fmt
        np.testing.assert_allclose(mesh.bounds, meshes["stl"].bounds, atol=1e-5)
        assert abs(mesh.volume - meshes["stl"].volume) < 1e-4 * abs(meshes["stl"].volume)
    points = np.load(files["points_npy"])
    assert points.shape == (2048, 3)
    np.testing.assert_allclose(np.asarray(trimesh.load(files["points_ply"]).vertices), points, atol=1e-6)
    meta = glb_metadata(files["glb"])
    assert meta["seed"] == 7 and meta["class"] == "chair" and meta["kind"] == "generate"
    assert meta["options"]["num_steps"] == STEPS and meta["options"]["cfg_scale"] == 3.0


def test_complete_keeps_the_scan_tokens_fixed(handlers, pipe):
    outs = list(handlers.complete(str(CHAIR_SCAN), *placing("chair"), *settings(seed=3)))
    assert len(outs) == STEPS
    run = outs[-1][-1]
    tokens, visible = pipe.tokens_of_points(load_scan(CHAIR_SCAN, 2**20).points)
    assert 0 < int(visible.sum()) < 576
    for step in run.steps:
        assert torch.equal(step.tokens[0][visible], tokens[visible])
        assert (step.order[0][visible] == 0).all()
    first = payload(outs[0][0])
    assert first["known"] >= int(visible.sum())
    assert len(first["scene"]["data"][5]["x"]) > 0                      # scan tokens have their own trace
    assert "already in the canonical frame" in run.scan


def test_resample_from_step_k_keeps_what_step_k_had(handlers, generated):
    parent = generated[-1][-1]
    k = 3
    kept = ~parent.steps[k - 1].mask[0]
    outs = list(handlers.resample(k, parent, *settings(seed=99)))
    run = outs[-1][-1]
    assert run.kind == "resample" and run.seed == 99 and len(outs) == STEPS
    for step in run.steps:                                              # kept exactly, at every step
        assert torch.equal(step.tokens[0][kept], parent.steps[k - 1].tokens[0][kept])
        assert (step.order[0][kept] == 0).all()
    assert not torch.equal(run.steps[-1].tokens, parent.steps[-1].tokens)   # the rest was drawn again
    first = payload(outs[0][0])
    assert first["scene"]["data"][5]["name"].startswith("tokens kept (")
    assert sorted(run.files) == ["glb", "obj", "ply", "points_npy", "points_ply", "stl"]
    assert "_resampled_99" in run.files["glb"].name and glb_metadata(run.files["glb"])["kind"] == "resample"
    with pytest.raises(gr.Error, match="nothing to draw again"):
        list(handlers.resample(parent.num_steps, parent, *settings()))
    with pytest.raises(gr.Error, match="between 1 and"):
        list(handlers.resample(0, parent, *settings()))
    with pytest.raises(gr.Error, match="generate or complete a shape first"):
        list(handlers.resample(2, None, *settings()))


def test_regenerate_region_redraws_only_the_box(handlers, generated, pipe):
    from smart3d.editing import REGIONS, region_mask

    parent = generated[-1][-1]
    before = parent.steps[-1].tokens[0]
    inside = region_mask(pipe.layout, *REGIONS["top"])
    outs = list(handlers.regenerate_region("top", 0, 0, 0, 0, 0, 0, parent, *settings(seed=5)))
    run = outs[-1][-1]
    after = run.steps[-1].tokens[0]
    assert run.kind == "region" and torch.equal(after[~inside], before[~inside])
    assert not torch.equal(after[inside], before[inside])
    assert "Region top" in run.scan
    box = list(handlers.regenerate_region("custom box", -1, 1, -1, -0.5, -1, 1, run, *settings(seed=6)))[-1][-1]
    low = region_mask(pipe.layout, (-1, -1, -1), (1, -0.5, 1))
    assert torch.equal(box.steps[-1].tokens[0][~low], after[~low]) and int(low[64:].sum()) == 128
    for region, bounds, words in (("custom box", (0.5, 0.2, -1, 1, -1, 1), "x range 0.5..0.2 has no width"),
                                  ("custom box", (0.01, 0.02, 0.01, 0.02, 0.01, 0.02), "holds no patch centre"),
                                  ("inside", (0,) * 6, "Unknown region")):
        with pytest.raises(gr.Error, match=words):
            list(handlers.regenerate_region(region, *bounds, run, *settings()))


def test_region_edits_of_a_completion_keep_the_scan(handlers, pipe):
    completed = list(handlers.complete(str(CHAIR_SCAN), *placing("chair"), *settings(seed=3)))[-1][-1]
    tokens, visible = pipe.tokens_of_points(load_scan(CHAIR_SCAN, 2**20).points)
    again = list(handlers.resample(2, completed, *settings(seed=4)))[-1][-1]
    edited = list(handlers.regenerate_region("custom box", -1, 1, -1, 1, -1, 1, again, *settings(seed=8)))[-1][-1]
    final = edited.steps[-1]
    assert torch.equal(final.tokens[0][visible], tokens[visible])         # the scan survives two edits
    assert int((final.order[0] > 0).sum()) == 576 - int(visible.sum())    # all else redrawn, even what
                                                                          # the resample had kept


def test_compare_streams_two_settings_side_by_side(handlers, pipe):
    outs = list(handlers.compare("chair", "steps", "3", " 6 ", *settings(seed=12)))
    assert len(outs) == 6                                               # one output per step of the longer side
    a = [payload(o[0]) for o in outs[:3]]
    b = [payload(o[1]) for o in outs]
    assert all(o[0] is not None and not isinstance(o[0], str) for o in outs[3:])   # A is done: skipped
    assert [v["caption"].split(" - step")[0] for v in a] == ["A: 3 steps"] * 3
    assert b[-1]["caption"].startswith("B: 6 steps - step 6/6 - 576/576 tokens known")
    assert outs[-1][2] == "chair, seed 12: A = 3 steps, B = 6 steps"
    # each side is the library's decoding with that setting, same seed
    options = options_from_ui(STEPS, 0.8, 0.5, 10, 3.0, "cosine", "spatial")
    for side, steps in ((a, 3), (b, 6)):
        reference = list(pipe.sample_steps("chair", 1, 12, replace(options, num_steps=steps)))
        assert len(reference) == steps
        for view, ref in zip(side, reference):                          # the same tokens, step by step
            empty = (ref.tokens[0] == handlers.empty) & ~ref.mask[0]
            assert view["counts"]["masked"] == int(ref.mask[0].sum()) and view["counts"]["empty"] == int(empty.sum())
    out = list(handlers.compare("chair", "guidance", "1", "4.5", *settings(seed=2)))
    assert payload(out[-1][0])["caption"].startswith("A: guidance 1 - ")
    assert payload(out[-1][1])["caption"].startswith("B: guidance 4.5 - ")
    temps = list(handlers.compare("chair", "temperature", "0.8 0.5", "1", *settings(steps=2)))
    assert temps[-1][2].endswith("A = temperature 0.8 -> 0.5, B = temperature 1 -> 1")
    for setting, a_value, words in (("guidance", "lots", "Guidance must be a number"),
                                    ("temperature", "1 2 3", "one number or two"),
                                    ("schedule", "fast", "Unknown schedule"), ("colour", "1", "Unknown setting")):
        with pytest.raises(gr.Error, match=words):
            list(handlers.compare("chair", setting, a_value, "1", *settings()))


def test_make_scan_plane_cut_and_single_view(handlers):
    d = direction(90, 0)
    visible, hidden = make_scan("chair", 3, "plane", 90, 0, 0.1)
    assert np.all(visible @ d <= 0.1 + 1e-6) and np.all(hidden @ d > 0.1)
    seen, unseen = make_scan("chair", 3, "view", 35, 25, 0.0)
    assert 16 < len(seen) <= 4096 and len(unseen) > 0
    path = handlers.make_scan("mug", 2, "view", 0, 0, 0.0)
    fig, info, *controls = handlers.place_scan(path, "any", "canonical", "auto")
    assert isinstance(fig, go.Figure) and "patches" in info and "canonical frame" in info
    assert controls == [0.0, 1.0, 0.0, 0.0, 0.0]                        # the hand controls: no change
    from scipy.spatial import cKDTree

    gap = cKDTree(load_scan(path, 2**21).points).query(preview_points(fig))[0]
    assert gap.max() < 1e-3                                             # drawn as it is (to 3 decimals)


def test_a_sensor_scan_is_placed_moved_by_hand_and_completed_back_in_its_frame(handlers, sensed, monkeypatch):
    """The intake in the scan tab: a metres, z-up scan with a floor lands in the box at about the true scale;
    the hand controls move it without a new search; downloads come back in metres, where the scan is."""
    import app.inputs

    path, scan, truth = sensed
    fig, info, *controls = handlers.place_scan(str(path), "chair", "auto", "auto")
    pts = preview_points(fig)
    assert (np.abs(pts) <= 1.0).all(1).mean() > 0.97                    # the placed scan is inside the box
    assert "ground plane removed" in info and "to template chair/" in info and controls == [0.0, 1.0, 0.0, 0.0, 0.0]
    scale = float(info.split("scale ")[1].split(" ")[0])
    assert scale / truth.scale == pytest.approx(1.0, abs=0.05)
    monkeypatch.setattr(app.inputs, "place_scan", lambda *a, **k: pytest.fail("the controls searched again"))
    turned, turned_info = handlers.preview_placement(str(path), "chair", "auto", "auto", 90, 1.0, 0, 0, 0)
    moved = preview_points(turned)                                      # yaw(90): x' = z, z' = -x
    np.testing.assert_allclose(np.sort(moved[:, 0]), np.sort(pts[:, 2]), atol=2e-3)
    np.testing.assert_allclose(np.sort(moved[:, 2]), np.sort(-pts[:, 0]), atol=2e-3)
    np.testing.assert_allclose(np.sort(moved[:, 1]), np.sort(pts[:, 1]), atol=2e-3)
    shifted = preview_points(handlers.preview_placement(str(path), "chair", "auto", "auto", 0, 0.5, 0, 0.25, 0)[0])
    np.testing.assert_allclose(np.sort(shifted[:, 1]), np.sort(0.5 * pts[:, 1] + 0.25), atol=2e-3)
    with pytest.raises(gr.Error, match="Rotation about up \\(degrees\\) must be a number from -180 to 180"):
        handlers.preview_placement(str(path), "chair", "auto", "auto", 400, 1.0, 0, 0, 0)

    def downloads(canonical):
        outs = list(handlers.complete(str(path), *placing("chair", "auto", canonical=canonical), *settings(seed=2)))
        run = outs[-1][-1]
        return run, trimesh.load(run.files["stl"], force="mesh")

    run, mesh = downloads(False)
    lo, hi = scan.min(0), scan.max(0)
    assert np.all(mesh.bounds[0] < hi) and np.all(mesh.bounds[1] > lo)  # overlaps the scan, in metres
    assert mesh.is_watertight and "scan's own frame" in run.scan
    meta = glb_metadata(run.files["glb"])
    assert meta["frame"].startswith("scan")
    points = np.load(run.files["points_npy"])                            # the points too
    assert np.all(points.min(0) < hi) and np.all(points.max(0) > lo)
    canonical_run, canonical_mesh = downloads(True)
    assert glb_metadata(canonical_run.files["glb"])["frame"] == "canonical"
    assert np.abs(canonical_mesh.bounds).max() <= 1.0 + 1e-4
    back = trimesh.transformations.transform_points(mesh.vertices, np.array(meta["scan_to_canonical"]))
    np.testing.assert_allclose(np.sort(back, 0), np.sort(canonical_mesh.vertices, 0), atol=1e-4)


@pytest.mark.parametrize("inputs, words", [
    (dict(frame="bogus"), "Unknown scan frame 'bogus'; choose one of: auto, canonical"),
    (dict(up="sideways"), "Unknown up axis 'sideways'; choose one of: auto, \\+x"),
    (dict(turn=float("nan")), "Rotation about up \\(degrees\\) must be a number"),
    (dict(scale=0.0), "Scale must be a number from 0.2 to 5"),
    (dict(offset=(0, 9, 0)), "Offset y must be a number from -2 to 2"),
    (dict(offset=(0, None, 0)), "Offset needs all three of x, y and z"),
    (dict(offset=(2, 2, 2), scale=0.2), "none of its points falls inside the canonical box"),
    (dict(canonical="yes"), "'Downloads in the canonical frame' must be true or false"),
    (dict(class_name="dragon"), "unknown class 'dragon'"),
])
def test_bad_placements_get_plain_errors(handlers, inputs, words):
    with pytest.raises(gr.Error, match=words):
        list(handlers.complete(str(CHAIR_SCAN), *placing(**inputs), *settings()))


@pytest.mark.parametrize("name, words", BAD_SCANS)
def test_bad_scans_get_plain_errors(handlers, bad_files, name, words):
    with pytest.raises(gr.Error, match=words):
        list(handlers.complete(str(bad_files / name), *placing(frame="auto"), *settings()))
    with pytest.raises(gr.Error, match=words):
        handlers.place_scan(str(bad_files / name), "any", "auto", "auto")


@pytest.mark.parametrize("override, words", BAD_SETTINGS)
def test_bad_settings_get_plain_errors(handlers, override, words):
    kwargs = dict(zip(["seed", "randomize", "steps", "t0", "t1", "top_k", "guidance", "schedule", "policy",
                       "color_by"], settings()))
    kwargs.update(override)
    with pytest.raises(gr.Error, match=words):
        list(handlers.generate("chair", *kwargs.values()))


def test_other_bad_inputs_get_plain_errors(handlers, bad_files, generated, tmp_path):
    with pytest.raises(gr.Error, match="unknown class 'dragon'; valid classes: airplane"):
        list(handlers.generate("dragon", *settings()))
    with pytest.raises(gr.Error, match="not an image we can read"):
        handlers.image(str(bad_files / "not_an_image.png"))
    with pytest.raises(gr.Error, match="unsupported image type"):
        handlers.image(str(bad_files / "doc.pdf"))
    assert handlers.image(None) == (None, "")                           # a cleared upload is not an error
    with pytest.raises(gr.Error, match="No image given"):
        list(handlers.generate_image(None, "any", 0.5, *settings()))
    with pytest.raises(gr.Error, match="No scan given"):
        list(handlers.complete(None, *placing(), *settings()))
    with pytest.raises(gr.Error, match="Nothing to replay yet"):
        handlers.replay(1, "step", None)
    with pytest.raises(gr.Error, match=f"Step must be a whole number between 1 and {STEPS}"):
        handlers.replay(STEPS + 1, "step", generated[-1][-1])
    with pytest.raises(gr.Error, match="Unknown scan method"):
        handlers.make_scan("chair", 0, "laser", 0, 0, 0)
    from PIL import Image

    Image.new("RGB", (64, 48), "white").save(tmp_path / "blank.png")
    with pytest.raises(gr.Error, match="no object found in the image"):
        handlers.image(str(tmp_path / "blank.png"))
    _disc_png(tmp_path / "disc.png")
    with pytest.raises(gr.Error, match="confidence must be a number between 0 and 1"):
        handlers.image(str(tmp_path / "disc.png"), "any", 1.5)
    with pytest.raises(gr.Error, match="unknown class 'dragon'"):
        list(handlers.generate_image(str(tmp_path / "disc.png"), "dragon", 0.5, *settings()))
    assert len(list(handlers.generate("lamp", *settings(steps=2)))) == 2  # still serving


def _disc_png(path):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(im).ellipse((40, 20, 120, 100), fill=(180, 60, 40))
    im.save(path)
    return path


def test_image_shows_what_the_encoder_reads_and_generates_from_it(handlers, tmp_path):
    img = _disc_png(tmp_path / "disc.png")
    seen, status = handlers.image(str(img), "any", 0.0)
    assert seen.shape == (64, 64, 3) and seen.dtype == np.uint8 and seen[0, 0].tolist() == [255, 255, 255]
    assert "disc.png: 160 x 120 PNG image." in status and "64 of the 64 coarse tokens" in status
    _, status = handlers.image(str(img), "lamp", 1.0)
    assert "class **lamp** (given" in status and "0 of the 64 coarse tokens" in status
    outs = list(handlers.generate_image(str(img), "any", 0.0, *settings()))
    assert len(outs) == STEPS
    run = outs[-1][-1]
    nc = handlers.layout.num_coarse
    assert run.kind == "image" and int((run.steps[0].order[0] == 0).sum()) == nc   # exactly the coarse tokens given
    assert "from image (" in json.dumps(payload(outs[0][0])["scene"]) and "disc.png" in run.scan
    assert glb_metadata(run.files["glb"])["kind"] == "image" and run.files["glb"].name.endswith("_from_image_7.glb")


def test_unexpected_errors_are_short_and_logged(handlers, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("internal detail that users should not see")

    monkeypatch.setattr(handlers.pipe, "decode", boom)
    with pytest.raises(gr.Error) as err:
        list(handlers.generate("chair", *settings(steps=2)))
    assert "Something went wrong on the server (RuntimeError)" in err.value.message
    assert "internal detail" not in err.value.message


def test_session_files_are_removed_when_the_session_ends(handlers):
    request = types.SimpleNamespace(session_hash="session-under-test")
    run = list(handlers.generate("bed", *settings(steps=2), request=request))[-1][-1]
    scan = handlers.make_scan("bed", 0, "plane", 0, 0, 0.0, request=request)
    folder = handlers.files.session_dir("session-under-test")
    assert run.files["glb"].is_relative_to(folder) and os.path.exists(scan)
    handlers.end_session(request)                                       # demo.unload
    assert "session-under-test" in handlers.files.sweep() and not folder.exists()
    run = list(handlers.generate("bed", *settings(steps=2), request=request))[-1][-1]
    handlers.drop_run(run)                                              # gr.State delete_callback
    assert "session-under-test" in handlers.files.sweep() and not folder.exists()


def test_sessions_are_swept_after_goodbye_or_idling_never_while_decoding(tmp_path):
    files = SessionFiles(tmp_path, end_grace_s=0.3, idle_ttl_s=0.6)
    for s in ("a", "b", "c"):
        files.touch(s)
        (files.new_run(s) / "mesh.glb").write_bytes(b"x" * 100)
    files.end("a")
    with files.active("c"):
        files.end("c")
        assert files.sweep() == []                                      # "a" is still in its grace period
        time.sleep(0.35)
        assert files.sweep() == ["a"]                                   # "c" is decoding: kept
        time.sleep(0.3)
        assert files.sweep() == ["b"]                                   # idle past its time to live
        assert files.session_dir("c").exists()
    assert files.sweep() == ["c"]                                       # ended while decoding: swept after
    assert list(tmp_path.rglob("*.glb")) == []


def test_a_session_keeps_at_most_its_disk_cap_oldest_scans_first(tmp_path):
    files = SessionFiles(tmp_path, max_session_bytes=10_000)
    (files.new_run("s") / "mesh.glb").write_bytes(b"m" * 4_000)
    for i in range(5):
        folder = files.scratch("s", reserve=2_000)
        (folder / f"scan{i}.ply").write_bytes(b"s" * 2_000)
        os.utime(folder / f"scan{i}.ply", (i, i))                      # make the order of ages explicit
        assert files.disk_bytes("s") <= 10_000
    assert sorted(p.name for p in (files.session_dir("s") / "scans").iterdir()) == ["scan2.ply", "scan3.ply",
                                                                                    "scan4.ply"]
    with pytest.raises(ValueError, match="more than the 0 MB a session may keep"):
        files.scratch("s", reserve=20_000)
    files.close()
    assert not files.root.exists()


# --------------------------------------------------------------------------------------------
# The launched app, through gradio_client
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(pipe, config):
    """The launched app: (demo, url)."""
    demo = build_demo(pipe, config)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=None, quiet=True, **launch_options(config))
    try:
        yield demo, url
    finally:
        demo.close()
        demo.smart3d.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[1], verbose=False)


def test_api_has_named_endpoints_and_hides_helpers(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/generate", "/complete", "/generate_image", "/replay", "/make_scan",
                                           "/place_scan", "/preview_placement", "/image", "/resample",
                                           "/regenerate_region", "/compare"}
    assert api["unnamed_endpoints"] == {}


def test_client_generate_streams_one_output_per_step(client):
    job = client.submit("chair", *settings(seed=11), api_name="/generate")
    final = job.result()
    captions = [payload(out[0])["caption"] for out in job.outputs()]
    assert len(captions) == STEPS
    assert [c.split(" - ")[0] for c in captions] == [f"step {k}/{STEPS}" for k in range(1, STEPS + 1)]
    assert captions[-1].startswith(f"step {STEPS}/{STEPS} - 576/576 tokens known")
    assert final[1] == 11 and len(final[2]) == 6
    glb = next(f for f in final[2] if f.endswith(".glb"))
    assert trimesh.load(glb, force="mesh").is_watertight


def test_client_replay_returns_the_recorded_tokens(client, pipe):
    client.predict("sofa", *settings(seed=5), api_name="/generate")     # same client = same session
    options = options_from_ui(STEPS, 0.8, 0.5, 10, 3.0, "cosine", "spatial")
    reference = list(pipe.sample_steps("sofa", 1, 5, options))          # same seed, same tokens
    for k in (2, STEPS):
        viewer, record = client.predict(k, "step", api_name="/replay")
        assert record["step"] == k and record["seed"] == 5
        assert record["tokens"] == reference[k - 1].tokens[0].tolist()
        assert payload(viewer)["caption"].startswith(f"step {k}/{STEPS}")


def test_client_resample_and_regenerate_region_keep_the_kept_tokens(client, pipe):
    from smart3d.editing import REGIONS, region_mask

    client.predict("table", *settings(seed=21), api_name="/generate")
    parent = [client.predict(k, "step", api_name="/replay")[1]["tokens"] for k in (2, STEPS)]
    final = client.predict(2, *settings(seed=22), api_name="/resample")
    assert len(final[2]) == 6 and any("_resampled_22" in f for f in final[2])
    first = torch.tensor(client.predict(1, "step", api_name="/replay")[1]["tokens"])
    kept = torch.tensor(parent[0]) >= 0                                   # what step 2 had committed
    assert torch.equal(first[kept], torch.tensor(parent[0])[kept])
    resampled = torch.tensor(client.predict(STEPS, "step", api_name="/replay")[1]["tokens"])
    assert torch.equal(resampled[kept], torch.tensor(parent[0])[kept])

    final = client.predict("front", 0, 0, 0, 0, 0, 0, *settings(seed=23), api_name="/regenerate_region")
    assert len(final[2]) == 6
    inside = region_mask(pipe.layout, *REGIONS["front"])
    regenerated = torch.tensor(client.predict(STEPS, "step", api_name="/replay")[1]["tokens"])
    assert torch.equal(regenerated[~inside], resampled[~inside])


def test_client_complete_and_make_scan(client):
    from gradio_client import handle_file

    scan = client.predict("mug", 2, "view", 30, 20, 0.0, api_name="/make_scan")
    final = client.predict(handle_file(scan), *placing("mug"), *settings(), api_name="/complete")
    assert payload(final[0])["caption"].startswith(f"step {STEPS}/{STEPS} - 576/576 tokens known")
    assert len(final[2]) == 6


def test_client_places_a_sensor_scan_and_downloads_in_its_frame(client, sensed):
    """Through the API as the scan tab uses it: place (the automatic search), turn by hand (the preview
    follows), complete; the download overlays the scan in metres."""
    from gradio_client import handle_file

    path, scan, truth = sensed
    plot, info, *controls = client.predict(handle_file(str(path)), "chair", "auto", "auto", api_name="/place_scan")
    pts = preview_points(plot)
    assert (np.abs(pts) <= 1.0).all(1).mean() > 0.97 and controls == [0, 1, 0, 0, 0]
    assert "chair_lidar.npy" in info and "ground plane removed" in info and "stray points removed" in info
    assert float(info.split("scale ")[1].split(" ")[0]) / truth.scale == pytest.approx(1.0, abs=0.05)
    turned, _ = client.predict(handle_file(str(path)), "chair", "auto", "auto", 90, 1, 0, 0, 0,
                               api_name="/preview_placement")
    moved = preview_points(turned)
    assert not np.allclose(np.sort(moved[:, 0]), np.sort(pts[:, 0]), atol=0.05)    # the preview changed ...
    np.testing.assert_allclose(np.sort(moved[:, 0]), np.sort(pts[:, 2]), atol=2e-3)  # ... turned by 90 deg
    final = client.predict(handle_file(str(path)), *placing("chair", "auto"), *settings(), api_name="/complete")
    mesh = trimesh.load(next(f for f in final[2] if f.endswith(".stl")), force="mesh")
    lo, hi = scan.min(0), scan.max(0)
    assert np.all(mesh.bounds[0] < hi) and np.all(mesh.bounds[1] > lo)   # the scan's box, in metres
    assert np.ptp(mesh.bounds, axis=0).max() < 2.0                       # metres, not canonical units


def test_client_generate_image(client, tmp_path):
    from gradio_client import handle_file

    img = handle_file(str(_disc_png(tmp_path / "disc.png")))
    seen, status = client.predict(img, "any", 0.5, api_name="/image")
    assert "disc.png" in status
    final = client.predict(img, "chair", 0.5, *settings(), api_name="/generate_image")
    assert payload(final[0])["caption"].startswith(f"step {STEPS}/{STEPS} - 576/576 tokens known")
    assert any(f.endswith("chair_from_image_7.glb") for f in final[2])


def test_client_bad_inputs_then_a_good_request(client, bad_files, config):
    import httpx
    from gradio_client import handle_file

    def refused(words, *args, api_name):
        with pytest.raises(Exception, match=words):
            client.predict(*args, api_name=api_name)

    for name, words in BAD_SCANS:
        if name == "big.xyz":                    # the client refuses it before uploading (max_file_size)
            words = "exceeds the maximum file size"
        if name == "scan.txt":                   # the File component's file_types, checked by app.guard
            words = "must be a file of one of these types: .xyz"
        refused(words, handle_file(str(bad_files / name)), *placing(frame="auto"), *settings(), api_name="/complete")
    refused("not an image we can read", handle_file(str(bad_files / "not_an_image.png")), "any", 0.5,
            api_name="/image")
    refused("image_file: .*not an image we can read", handle_file(str(bad_files / "not_an_image.png")), "any", 0.5,
            *settings(), api_name="/generate_image")          # the event validator, before the queue
    refused("scan_file: Upload a scan", None, *placing(), *settings(), api_name="/complete")
    refused("'Scale' \\(input 6\\).* must be a number from 0.2 to 5; got 0.0", handle_file(str(CHAIR_SCAN)),
            *placing(scale=0.0), *settings(), api_name="/complete")                # a slider's range, in words
    refused("'Decoding steps' \\(input 13\\).* must be a number from 1 to 100", handle_file(str(CHAIR_SCAN)),
            *placing(), *settings(steps=0), api_name="/complete")
    refused("not in the list of choices", "dragon", *settings(), api_name="/generate")
    refused("'Decoding steps' \\(input 4\\).* must be a number from 1 to 100; got 0", "chair", *settings(steps=0),
            api_name="/generate")
    refused("'Guidance \\(CFG scale at the end\\)' \\(input 8\\).* must be a number from 0 to 10; got 50", "chair",
            *settings(guidance=50), api_name="/generate")
    # the server itself refuses an over-size upload, whatever the client does
    with open(bad_files / "big.xyz", "rb") as f:
        r = httpx.post(f"{client.src.rstrip('/')}/gradio_api/upload", files={"files": ("big.xyz", f)})
    assert r.status_code == 413, r.text
    final = client.predict("chair", *settings(steps=3), api_name="/generate")
    assert payload(final[0])["caption"].startswith("step 3/3 - 576/576 tokens known")


def test_api_refuses_wrong_types_and_counts_in_plain_words(client, served, caplog, capfd):
    import httpx
    from gradio_client.exceptions import ValidationError

    url = served[1].rstrip("/") + "/gradio_api"
    good = ["chair", *settings(steps=2)]
    caplog.set_level("INFO", logger="smart3d.app")
    for index, value, words in ((1, "abc", "'Seed' (input 2)"), (3, [1, 2], "'Decoding steps' (input 4)"),
                                (2, "yes", "'Randomize seed' (input 3)"), (0, 7, "'Class' (input 1)")):
        bad = list(good)
        bad[index] = value
        with pytest.raises(ValidationError, match="must be"):
            client.predict(*bad, api_name="/generate")
        r = httpx.post(f"{url}/call/generate", json={"data": bad})
        assert r.status_code == 422 and words in r.json()["error"] and repr(value)[:20] in r.json()["error"]
    with pytest.raises(ValidationError, match="takes 11 inputs"):
        client.predict(*good, 5, api_name="/generate")                # one too many
    r = httpx.post(f"{url}/call/generate", json={"data": good[:3]})   # too few
    assert r.status_code == 422 and "/generate takes 11 inputs (Class, Seed, " in r.json()["error"]
    r = httpx.post(f"{url}/call/v2/generate", json={"class_name": "chair", "speed": 3})
    assert r.status_code == 422 and "/generate has no parameter speed" in r.json()["error"]
    r = httpx.post(f"{url}/call/v2/replay", json={"step": "last"})
    assert r.status_code == 422 and "'step' must be a number" in r.json()["error"]
    for body in ({"fn_index": 9999, "data": [], "session_hash": "abc"},
                 {"fn_index": "generate", "data": [], "session_hash": "abc"}):
        for route in ("queue/join", "run/predict"):                    # a bad event number: 404, not 500
            r = httpx.post(f"{url}/{route}", json=body)
            assert r.status_code == 404 and "No event number" in r.json()["error"]
    r = httpx.post(f"{url}/queue/join", content=b"{not json")
    assert r.status_code == 422 and "JSON object" in r.json()["error"]
    private = [f for f in served[0].fns.values() if f.api_visibility == "private" and f.fn is not None]
    assert {f.fn.__name__ for f in private} >= {"show_mesh", "place_scan", "preview_placement", "play"}
    for f in private:                                                   # helpers have no name to call
        assert f.api_name is None or httpx.post(f"{url}/call/{f.api_name}", json={"data": []}).status_code == 404
    r = httpx.post(f"{url}/call/show_mesh", json={"data": [None]})
    assert r.status_code == 404 and "No API endpoint /show_mesh; the endpoints are: /compare, /complete, " in r.json()["error"]
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refused) >= 16 and not any(r.exc_info for r in caplog.records)
    final = client.predict(*good, api_name="/generate")                 # still serving
    assert payload(final[0])["caption"].startswith("step 2/2 - 576/576 tokens known")
    assert "Traceback" not in capfd.readouterr().err


def test_downloads_are_served_from_the_session_folder_and_go_with_the_session(served, monkeypatch):
    from gradio_client import Client

    demo, url = served
    h = demo.smart3d
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.2")              # a closed client is noticed at once
    c = Client(url, verbose=False, download_files=False)
    final = c.predict("mug", *settings(steps=2), api_name="/generate")
    paths = [Path(f["path"] if isinstance(f, dict) else f.path) for f in final[2]]
    folder = h.files.session_dir(c.session_hash)
    assert len(paths) == 6 and all(p.is_relative_to(folder) and p.exists() for p in paths)   # no copy in the cache
    assert c.session_hash in demo.state_holder.session_data
    c.close()
    deadline = time.monotonic() + 30
    while (folder.exists() or c.session_hash in demo.state_holder.session_data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folder.exists() and not any(p.exists() for p in paths)
    assert c.session_hash not in demo.state_holder.session_data         # gradio's state of it is dropped too


def test_sigterm_during_a_generation_cancels_it_removes_session_files_and_logs(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    import httpx
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "OMP_NUM_THREADS": "1"}
    (tmp_path / "gradio").mkdir()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, str(root / "app.py"), "--random-weights", "--device", "cpu",
                               "--port", str(port)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900                                 # importing torch and gradio on a busy machine
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False,
                        httpx_kwargs={"timeout": 120})                  # a busy machine answers slowly
        client.predict("chair", *settings(steps=2), api_name="/generate")      # a finished run: its files
        job = client.submit("lamp", *settings(steps=100), api_name="/generate")  # and one running
        while not job.outputs() and not job.done():
            time.sleep(0.05)
        sessions = list((tmp_path / "smart3d-app").glob("sessions-*/*"))
        assert len(sessions) == 1 and any(sessions[0].rglob("*.glb"))
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=120) == 0
        with pytest.raises(Exception, match="shutting down|Connection|closed|disconnect"):
            job.result(timeout=60)
        assert len(job.outputs()) < 100                                     # it did not run to its end
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    text = (tmp_path / "server.log").read_text()
    lines = [line for line in text.splitlines() if "shut down on SIGTERM" in line]
    assert len(lines) == 1 and "1 running decoding cancelled, 1 session folder and the upload cache removed" in lines[0]
    assert "Traceback" not in text
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "server.log"]
    assert left == [] and not any((tmp_path / "smart3d-app").glob("sessions-*"))
