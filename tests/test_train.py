"""Training runs end to end on tiny configs: resumable single-process runs and 2-process DDP."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smart3d.weights import read_config

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["chair", "mug"]


def _run(args, cwd, nproc: int = 1, timeout: int = 240) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "smart3d", *args]
    else:
        cmd = [sys.executable, "-m", "smart3d", *args]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    common = ["--classes", *CLASSES, "--num-per-class", "10", "--cache", str(d / "cache"), "--batch-size", "4"]
    _run(["train", "tokenizer", "--preset", "tiny", "--steps", "6", "--save-every", "3",
          "--checkpoint", str(d / "tok.pt"), "--out", str(d / "tokenizer"), *common], d)
    return d, common


def test_tokenizer_run_writes_weights_and_resumes(workdir):
    d, common = workdir
    cfg = read_config(d / "tokenizer")
    assert cfg["steps"] == 6 and cfg["config"]["codebook_size"] == 64
    # asking for more steps resumes from the checkpoint instead of starting over
    out = _run(["train", "tokenizer", "--preset", "tiny", "--steps", "8", "--checkpoint", str(d / "tok.pt"),
                "--out", str(d / "tokenizer2"), *common], d)
    assert "resumed" in out and "at step 6" in out
    assert read_config(d / "tokenizer2")["steps"] == 8


def test_resumed_run_keeps_the_loss_curve_of_the_runs_before(workdir):
    d, common = workdir
    run = ["train", "tokenizer", "--preset", "tiny", "--checkpoint", str(d / "curve.pt"), "--out", str(d / "curve"), *common]
    _run(run + ["--steps", "20"], d)
    _run(run + ["--steps", "40"], d)                        # resumes at step 20; the curve logs every 20 steps
    assert [s for s, _ in read_config(d / "curve")["recon_curve"]] == [20, 40]


def test_ddp_two_processes_keep_replicas_identical(workdir):
    d, common = workdir
    out = _run(["train", "model", "--preset", "tiny", "--steps", "4", "--tokenizer", str(d / "tokenizer"),
                "--checkpoint", str(d / "model.pt"), "--out", str(d / "model"), "--lr", "1e-3", *common],
               d, nproc=2)
    assert "replicas identical across 2 ranks" in out
    cfg = read_config(d / "model")
    assert cfg["steps"] == 4 and cfg["hardware"].startswith("2 x")


def test_image_encoder_run_learns_writes_weights_and_resumes(workdir):
    """``train image``: rendered views -> class and coarse tokens; the loss falls, the run resumes."""
    d, common = workdir
    run = ["train", "image", "--preset", "tiny", "--views", "1", "--tokenizer", str(d / "tokenizer"), "--lr", "3e-3",
           "--warmup", "5", "--save-every", "20", "--checkpoint", str(d / "img.pt"), "--out", str(d / "image_encoder"),
           *common]
    _run(run + ["--steps", "60"], d)
    cfg = read_config(d / "image_encoder")
    assert cfg["steps"] == 60 and cfg["config"]["coarse_codebook_size"] == 32     # the tiny tokenizer's
    assert 0 <= cfg["val"]["class_accuracy"] <= 1 and cfg["val"]["images"] == 2    # 1 val shape x 2 classes
    curve = cfg["loss_curve"]
    assert curve[-1][2] < curve[0][2]                                             # coarse-token loss fell
    out = _run(run + ["--steps", "70"], d)
    assert "resumed" in out and "at step 60" in out and read_config(d / "image_encoder")["steps"] == 70


@pytest.mark.parametrize("preset", ["fine16", "fine32e"])
def test_decoder_run_keeps_every_token(workdir, preset):
    """``train decoder`` swaps in a larger decoder but leaves the encoder and codes as they were."""
    import numpy as np

    from smart3d.tokenizer import Tokenizer, TokenizerConfig
    from smart3d.weights import load_pretrained

    d, common = workdir
    _run(["train", "decoder", "--preset", preset, "--steps", "3", "--tokenizer", str(d / "tokenizer"),
          "--token-noise", "0.3", "--occupancy-loss", "0.5", "--iou-loss", "0.05", "--oversample", "chair=3", "--checkpoint", str(d / f"dec_{preset}.pt"),
          "--out", str(d / "tokenizer_dec"), *common], d)
    old = load_pretrained(Tokenizer, TokenizerConfig, d / "tokenizer")
    new = load_pretrained(Tokenizer, TokenizerConfig, d / "tokenizer_dec")
    assert new.config.fine_width == 32 and old.config.fine_width == 0
    assert new.config.token_embed == (preset == "fine32e") and not old.config.token_embed
    assert new.config.codebook_size == old.config.codebook_size == 64
    pts = [np.random.default_rng(s).uniform(-0.8, 0.8, (2000, 3)).astype(np.float32) for s in range(3)]
    tokens = old.encode_points(pts)
    assert torch.equal(tokens, new.encode_points(pts))
    with torch.no_grad():
        assert new.decode(tokens).shape == (3, 32, 32, 32)
        assert not torch.allclose(new.decode(tokens), old.decode(tokens))
    assert read_config(d / "tokenizer_dec")["encoder_from"]["steps"] == 6
    assert ("--token-noise 0.3 --occupancy-loss 0.5 --iou-loss 0.05 --oversample chair=3"
            in read_config(d / "tokenizer_dec")["command"])


@pytest.mark.parametrize("what, presets", [("model", "smart3d.model"), ("tokenizer", "smart3d.tokenizer"),
                                            ("decoder", "smart3d.tokenizer"), ("image", "smart3d.image")])
def test_each_trainer_takes_only_its_own_presets(what, presets, capsys):
    """``train model --preset fine32`` (a tokenizer preset) is a usage error naming the model presets."""
    import importlib

    from smart3d.cli import build_parser

    valid = list(importlib.import_module(presets).PRESETS)
    args = build_parser().parse_args(["train", what, "--preset", valid[-1]])
    assert args.what == what and args.preset == valid[-1]
    wrong = "fine32" if what == "model" else "XS"
    assert wrong not in valid
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(["train", what, "--preset", wrong])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"python -m smart3d train {what}: error: argument --preset: invalid choice: '{wrong}'" in err
    assert all(f"'{name}'" in err for name in valid)


def test_a_wrong_model_preset_exits_with_a_usage_error_not_a_traceback():
    out = subprocess.run([sys.executable, "-m", "smart3d", "train", "model", "--preset", "fine32"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "invalid choice: 'fine32' (choose from 'tiny', 'XS', 'S', 'B', 'L', 'XL')" in out.stderr


def test_trainers_keep_their_defaults():
    """Each trainer's flags and defaults are those the single parser had (recorded commands rerun alike)."""
    from smart3d.cli import build_parser

    def parse(*argv):
        return vars(build_parser().parse_args(["train", *argv]))

    common = {"num_per_class": 1000, "batch_size": 16, "lr": None, "seed": 0, "device": None, "out": None}
    resumable = {"minutes": None, "steps": 3000, "warmup": 100, "checkpoint": None, "save_every": 200}
    assert parse("classifier").items() >= {**common, "epochs": 4}.items()
    assert "steps" not in parse("classifier")
    assert parse("tokenizer").items() >= {**common, **resumable, "preset": "base", "init": None}.items()
    assert parse("decoder").items() >= {**common, **resumable, "preset": "fine16", "token_noise": 0.0,
                                        "occupancy_loss": 0.0, "iou_loss": 0.0, "oversample": []}.items()
    assert parse("model").items() >= {**common, **resumable, "preset": "XS", "attention": "linear", "levels": 2,
                                      "local_conv": False, "precision": "auto", "compile": False, "init": None,
                                      "ema": 0.999, "class_dropout": 0.1}.items()
    assert parse("image").items() >= {**common, **resumable, "preset": "base", "views": 2, "ema": 0.999}.items()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "model", "--token-noise", "0.3"])     # a decoder flag


def test_soft_iou_loss_is_one_minus_iou_and_weighs_small_shapes_up():
    from smart3d.train.decoder import soft_iou_loss

    big = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    big[:, 1:7, 1:7, 1:7] = True                                     # 216 voxels
    small = torch.zeros_like(big)
    small[:, 3:5, 3:5, 3:5] = True                                   # 8 voxels
    hard = lambda occ: torch.where(occ, 30.0, -30.0)
    assert float(soft_iou_loss(hard(big), big)) < 1e-6
    half = small.clone()
    half[:, 3] = False                                               # predicts 4 of the 8 voxels
    assert abs(float(soft_iou_loss(hard(half), small)) - 0.5) < 1e-6
    assert abs(float(soft_iou_loss(torch.full_like(big, -30.0, dtype=torch.float), big)) - 1.0) < 1e-6
    # one voxel wrong costs the small shape far more than the big one, as IoU does (the voxel mean
    # cross-entropy would charge both the same)
    grads = []
    for occ in (big, small):
        logits = torch.where(occ, 5.0, -5.0).requires_grad_()
        soft_iou_loss(logits, occ).backward()
        grads.append(logits.grad.abs().max())
    assert grads[1] > 10 * grads[0]


def test_oversample_draws_a_class_that_many_times_as_often_and_rejects_bad_input():
    import argparse

    import numpy as np

    from smart3d.classes import CLASSES as ALL
    from smart3d.train.decoder import class_factor, draw_weights

    assert class_factor("airplane=3") == ("airplane", 3.0)
    for bad in ("airplane", "spaceship=2", "airplane=0", "airplane=-1", "airplane=nan", "airplane=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            class_factor(bad)
    labels = np.array([ALL.index(c) for c in ("airplane", "bench", "chair", "chair")])
    w = draw_weights(labels, [("airplane", 3.0), ("bench", 2.0)], copies=2)
    assert w.tolist() == [3.0, 2.0, 1.0, 1.0] * 2                      # the mirrored copy weighs as its shape
    draws = torch.multinomial(w, 80_000, replacement=True, generator=torch.Generator().manual_seed(0))
    share = torch.bincount(draws % 4, minlength=4).float() / len(draws)
    assert torch.allclose(share, torch.tensor([3.0, 2.0, 1.0, 1.0]) / 7, atol=0.01)
    assert draw_weights(labels, []).tolist() == [1.0] * 4


def test_token_noise_moves_only_surface_tokens_to_near_codes():
    from smart3d.train.decoder import nearest_codes, perturb_tokens

    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(64, 8, generator=g)
    near = nearest_codes(codebook, exclude=5, k=4)
    assert near.shape == (64, 4)
    assert not (near == 5).any() and not (near == torch.arange(64)[:, None]).any()
    d = torch.cdist(codebook, codebook)
    assert torch.all(d.gather(1, near).max(1).values <= d.median(1).values)     # nearer than most codes
    fine = torch.randint(64, (4, 512), generator=g)
    fine[:, :100] = 5                                                           # empty space
    out = perturb_tokens(fine, near, empty=5, rate=0.5, generator=g)
    changed = out != fine
    assert not changed[:, :100].any()
    assert 0.35 < changed[:, 100:].float().mean() < 0.65
    assert torch.all((near[fine] == out[..., None]).any(-1)[changed])          # each change is to a near code
    assert torch.equal(perturb_tokens(fine, near, 5, 0.0, g), fine)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (bash install.sh test installs g++)")
def test_compiled_model_training_matches_eager(workdir):
    """``--compile`` (torch.compile, ~1.5x faster steps on CPU) changes speed, not the optimisation."""
    from safetensors.torch import load_file

    d, common = workdir
    # fp32 on every CPU: under bf16 autocast (the default where AMX is) compiled and eager kernels
    # round differently, which is not what this test is about
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        _run(["train", "model", "--preset", "tiny", "--steps", "3", "--tokenizer", str(d / "tokenizer"),
              "--checkpoint", str(d / f"{name}.pt"), "--out", str(d / name), "--lr", "1e-3", "--warmup", "1",
              "--precision", "fp32", *extra, *common],
             d, timeout=400)
    eager, compiled = load_file(d / "eager.safetensors"), load_file(d / "compiled.safetensors")
    assert eager.keys() == compiled.keys()
    for k in eager:
        assert torch.allclose(eager[k], compiled[k], atol=1e-4, rtol=1e-3), k
    from smart3d.model import MaskedTransformer, ModelConfig

    torch.manual_seed(0)                                     # the runs' initialisation (--seed 0)
    init = MaskedTransformer(ModelConfig(**read_config(d / "eager")["config"])).state_dict()
    assert max((init[k] - compiled[k]).abs().max().item() for k in init) > 1e-4   # the three steps did train


def _clouds(num: int, seed: int = 0) -> list:
    """Random clouds, each a box surface at its own place and size (varied patches, some empty space)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        lo, hi = rng.uniform(-0.8, -0.1, 3), rng.uniform(0.1, 0.8, 3)
        p = rng.uniform(lo, hi, (3000, 3))
        axis, side = rng.integers(0, 3, 3000), rng.integers(0, 2, 3000)
        p[np.arange(3000), axis] = np.where(side == 1, hi[axis], lo[axis])
        out.append(p.astype(np.float32))
    return out


def test_grow_codebook_splits_every_code_into_finer_ones():
    """``grow_codebook``: K0 codes -> K, each old code's latents split by k-means among its children."""
    from smart3d.geometry import surface_features
    from smart3d.tokenizer import PRESETS, Tokenizer, grow_codebook

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    old, new = Tokenizer(PRESETS["tiny"]).eval(), Tokenizer(PRESETS["tiny256"]).eval()
    with torch.no_grad():
        feats = surface_features(_clouds(24))
        old.init_codebooks(feats, g)
        z = old._fine_latents(feats).flatten(0, 1)
    parent = grow_codebook(new, old, z, g)
    assert parent.shape == (256,) and torch.equal(parent.bincount(), torch.full((64,), 4))
    for name in ("encoder.0.weight", "decoder.inp.weight", "coarse_quantizer.codebook"):
        assert torch.equal(new.state_dict()[name], old.state_dict()[name]), name

    def error(vq):
        return (z - vq.codebook[vq.indices(z)]).norm(dim=1).mean()

    assert error(new.quantizer) < 0.8 * error(old.quantizer)                  # finer quantisation of the same latents
    # a child fitted to its parent's latents lies in the parent's cell: the old code of a child is its parent
    assert (old.quantizer.indices(new.quantizer.codebook) == parent).float().mean() > 0.9


@pytest.fixture(scope="module")
def grown(workdir):
    d, common = workdir
    out = _run(["train", "tokenizer", "--preset", "tiny256", "--init", str(d / "tokenizer"), "--steps", "4",
                "--checkpoint", str(d / "grow.pt"), "--out", str(d / "tok_grown"), *common], d)
    assert "grew 64 codes" in out
    return d / "tok_grown"


def test_grown_tokenizer_run_keeps_the_coarse_level(workdir, grown):
    from smart3d.tokenizer import Tokenizer, TokenizerConfig
    from smart3d.weights import load_pretrained

    d, _ = workdir
    old = load_pretrained(Tokenizer, TokenizerConfig, d / "tokenizer")
    new = load_pretrained(Tokenizer, TokenizerConfig, grown)
    cfg = read_config(grown)
    assert new.config.codebook_size == 256 and cfg["grown_from"]["steps"] == 6 and "--init" in cfg["command"]
    for name in ("coarse_encoder.0.weight", "coarse_quantizer.codebook", "coarse_decoder.2.bias"):
        assert torch.equal(new.state_dict()[name], old.state_dict()[name]), name      # frozen through training
    assert not torch.equal(new.state_dict()["encoder.0.weight"], old.state_dict()["encoder.0.weight"])
    pts = _clouds(4, seed=1)
    nc = old.layout.num_coarse
    a, b = old.encode_points(pts), new.encode_points(pts)
    assert torch.equal(a[:, :nc], b[:, :nc]) and int(b[:, nc:].max()) < 256


def test_carried_over_model_predicts_what_the_old_one_did(workdir, grown):
    """``train model --init``: each new fine code starts as its parent, weighted by its share of the data."""
    from smart3d.dataset import load_split
    from smart3d.model import MaskedTransformer, ModelConfig
    from smart3d.train.loop import encode_split
    from smart3d.train.model import carry_over
    from smart3d.tokenizer import Tokenizer, TokenizerConfig
    from smart3d.weights import load_pretrained

    d, common = workdir
    _run(["train", "model", "--preset", "tiny", "--steps", "3", "--tokenizer", str(d / "tokenizer"),
          "--checkpoint", str(d / "small.pt"), "--out", str(d / "small"), "--lr", "1e-3", *common], d)
    out = _run(["train", "model", "--preset", "tiny", "--steps", "1", "--init", str(d / "small"), "--tokenizer",
                str(grown), "--checkpoint", str(d / "carried.pt"), "--out", str(d / "carried"), *common], d)
    assert "carried" in out and "64 -> 256 fine codes" in out and "--init" in read_config(d / "carried")["command"]

    train = load_split("train", CLASSES, 10, d / "cache")
    tokenizer = load_pretrained(Tokenizer, TokenizerConfig, grown)
    tokens, _ = encode_split(tokenizer, train, mirror=False)
    old = load_pretrained(MaskedTransformer, ModelConfig, d / "small").eval()
    new = MaskedTransformer(ModelConfig(**{**old.config.__dict__, "codebook_size": 256})).eval()
    parent = carry_over(new, str(d / "small"), tokens, train.dense, "cpu", torch.Generator().manual_seed(0))
    nc = new.layout.num_coarse
    seq = tokens[:3].clone()
    mask = torch.zeros_like(seq, dtype=torch.bool)
    mask[:, nc:] = True                                            # every fine token masked
    labels = torch.tensor([0, 1, 0])
    with torch.no_grad():
        (c_old, f_old), (c_new, f_new) = old(seq, mask, labels), new(seq, mask, labels)
    assert torch.allclose(c_old, c_new, atol=1e-5)
    p_old, p_new = f_old.softmax(-1), f_new.softmax(-1)
    grouped = torch.zeros_like(p_old).index_add_(-1, parent, p_new)        # new probability summed per parent
    has = torch.zeros(64, dtype=torch.bool)
    has[parent] = True
    expect = torch.where(has, p_old, 0.0)
    assert torch.allclose(grouped, expect / expect.sum(-1, keepdim=True), atol=1e-5)


def test_frozen_gamma_stays_as_init_has_it_while_the_rest_learns(workdir):
    """``train model --init X --freeze-gamma``: every head's spatial scale is X's, to the bit, though
    AdamW's weight decay and a large learning rate move every other weight."""
    from safetensors.torch import load_file

    d, common = workdir
    _run(["train", "model", "--preset", "tiny", "--steps", "2", "--tokenizer", str(d / "tokenizer"),
          "--checkpoint", str(d / "g0.pt"), "--out", str(d / "g0"), *common], d)
    _run(["train", "model", "--preset", "tiny", "--steps", "3", "--init", str(d / "g0"), "--freeze-gamma",
          "--ema", "0", "--lr", "1e-2", "--tokenizer", str(d / "tokenizer"), "--checkpoint", str(d / "g1.pt"),
          "--out", str(d / "g1"), *common], d)
    before, after = load_file(d / "g0.safetensors"), load_file(d / "g1.safetensors")
    gammas = [k for k in before if k.endswith("gamma_raw")]
    assert gammas and all(torch.equal(before[k], after[k]) for k in gammas)
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])
    assert "--freeze-gamma" in read_config(d / "g1")["command"]


def test_grown_model_computes_what_the_shallow_one_did():
    """``grow_depth``: a 2-block model grown to 4 blocks gives the same logits before any training,
    and its new blocks are not frozen copies (their zeroed outputs still get gradients)."""
    from smart3d.model import MaskedTransformer, ModelConfig
    from smart3d.train.model import grow_depth

    torch.manual_seed(0)
    c = ModelConfig(depth=2, dim=32, heads=2, codebook_size=64, local_conv=True)
    small = MaskedTransformer(c).eval()
    for p in small.parameters():                        # trained-looking weights: nothing zero by chance
        p.data += 0.05 * torch.randn_like(p)
    deep = MaskedTransformer(ModelConfig(**{**c.__dict__, "depth": 4})).eval()
    deep.load_state_dict(grow_depth(deep, small))
    g = torch.Generator().manual_seed(1)
    L = small.layout.length
    tokens = torch.randint(0, 64, (3, L), generator=g)
    mask = torch.rand(3, L, generator=g) < 0.5
    labels = torch.tensor([0, 3, small.null_class])
    for a, b in zip(small(tokens, mask, labels), deep(tokens, mask, labels)):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(deep.blocks[2].mlp[0].weight, small.blocks[1].mlp[0].weight)
    sum(lg.square().mean() for lg in deep(tokens, mask, labels)).backward()
    assert deep.blocks[1].attn.proj.weight.grad.abs().sum() > 0 and deep.blocks[3].mlp[2].weight.grad.abs().sum() > 0
