"""Evaluation tasks: ``python -m smart3d evaluate --task ...`` prints a table and returns figures.

Tasks:
- ``benchmark``: sanity of the benchmark and the metrics. 1-NNA-CD of the test split against the
  validation split of the same class (same distribution: ~50% expected) and against the
  validation split of another class (different: ~100%), and the shipped classifier's accuracy on
  the test split.
- ``reconstruction``: the shipped tokenizer on the test split: voxel IoU, CD between reconstructed
  and true surface points, codebook usage and perplexity.
- ``generation``: ``--num`` shapes per class from the shipped model against the test split:
  MMD / COV / 1-NNA under CD (and EMD with ``--emd``), the classifier's accuracy on the samples
  and the Frechet distance of its features (our "FID").
- ``completion``: test shapes cut in half by a random plane through the centre; the model
  completes the missing half. CD / EMD to the full shape, next to the partial input alone and to
  nearest-neighbour retrieval from the training split by partial-to-full (one-sided) CD.
- ``image``: one rendered view of each test shape (``smart3d.views``) goes through the shipped
  image encoder; the class it reads, its coarse-token accuracy, and the shapes generated from
  the image against the shape in the picture (CD, voxel IoU), next to shapes generated from the
  true class alone with the same seeds (what the image adds beyond its class).

Point metrics use PointFlow's global normalisation, with statistics from the class's training
split (``smart3d.io.global_normalization_stats``); units: CD and MMD-CD x1e3, EMD and MMD-EMD
x1e2, COV and 1-NNA in %.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import geometry as G
from .classes import CLASSES
from .sampler import SamplingOptions

SPARSE_POINTS = 4096   # reconstruction IoU is also reported from this many of the dense points
TASKS = ("benchmark", "reconstruction", "generation", "completion", "image")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .dataset import DEFAULT_CACHE

    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--num", type=int, default=100, help="shapes per class and split to compare")
    p.add_argument("--num-per-class", type=int, default=1000, help="benchmark size the splits come from")
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", default=None, help="JSON file for the figures")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (generation, completion)")
    p.add_argument("--batch-size", type=int, default=25, help="shapes decoded together")
    p.add_argument("--split", default="test", choices=["val", "test"],
                   help="generation: the reference split (tune sampling settings on val, report on test)")
    p.add_argument("--emd", action="store_true", help="also compute EMD-based metrics (slow on CPU)")
    p.add_argument("--emd-points", type=int, default=None, help="generation: EMD on this many of the 2048 points "
                   "(exact EMD is O(N^3): 256 points take ~7 ms a pair on this CPU, 2048 ~3 s; default: all)")
    p.add_argument("--sheets", default=None, help="generation: also render the first 16 samples of each class "
                                                  "into DIR/<class>.png")
    p.add_argument("--confidence", type=float, default=None, help="image: coarse tokens kept from the image "
                   "encoder (default: pipeline.DEFAULT_IMAGE_CONFIDENCE)")
    p.add_argument("--no-baseline", action="store_true", help="image: skip the class-only generation")
    p.add_argument("--weights", default=None, help="weights folder (default: weights/)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: best available)")
    SamplingOptions.add_arguments(p)           # generation, completion, image


def _header(args: argparse.Namespace) -> dict:
    return {"task": args.task, "classes": list(args.classes), "num": args.num,
            "num_per_class": args.num_per_class, "machine": platform.platform(),
            "cpus": torch.get_num_threads(), "torch": torch.__version__}


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    print(title)
    widths = [max(len(str(c)), *(len(f"{r[i]:.2f}" if isinstance(r[i], float) else str(r[i])) for r in rows))
              for i, c in enumerate(columns)]
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(fmt(v).ljust(w) for v, w in zip(r, widths)))


def evaluate_benchmark(args: argparse.Namespace) -> dict:
    from .classifier import ClassifierConfig, ShapeClassifier, classify
    from .dataset import load_split
    from .metrics import chamfer_matrix, one_nna
    from .weights import WEIGHTS_DIR, load_pretrained

    t0 = time.time()
    val = load_split("val", args.classes, args.num_per_class, args.cache)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    model = load_pretrained(ShapeClassifier, ClassifierConfig, WEIGHTS_DIR / "classifier")
    pred, _ = classify(model, test.points)
    pts = {}
    for c in args.classes:
        label = CLASSES.index(c)
        pts[c] = (torch.from_numpy(test.points[test.labels == label][: args.num]),
                  torch.from_numpy(val.points[val.labels == label][: args.num]))
    self_d = {c: chamfer_matrix(t, t) for c, (t, _) in pts.items()}          # test x test
    vself_d = {c: chamfer_matrix(v, v) for c, (_, v) in pts.items()}         # val x val
    rows, per_class = [], {}
    for k, c in enumerate(args.classes):
        other = args.classes[(k + 1) % len(args.classes)]
        t, v = pts[c]
        same = one_nna(self_d[c], vself_d[c], chamfer_matrix(t, pts[c][1]))
        diff = one_nna(self_d[c], vself_d[other], chamfer_matrix(t, pts[other][1]))
        label = CLASSES.index(c)
        acc = float((pred[test.labels == label] == label).mean())
        per_class[c] = {"1-NNA-CD same class %": 100 * same, "other class": other,
                        "1-NNA-CD other class %": 100 * diff, "classifier accuracy %": 100 * acc,
                        "num_test": int(len(t)), "num_val": int(len(v))}
        rows.append([c, len(t), 100 * same, other, 100 * diff, 100 * acc])
    overall = float((pred == test.labels).mean())
    rows.append(["mean", "", float(np.mean([r[2] for r in rows])), "", float(np.mean([r[4] for r in rows])),
                 100 * overall])
    print_table("benchmark sanity: test split vs validation split (1-NNA-CD, %; 50 ideal when same)",
                ["class", "n", "1-NNA same", "other", "1-NNA other", "classifier acc"], rows)
    return {**_header(args), "per_class": per_class, "classifier_accuracy_%": 100 * overall,
            "seconds": time.time() - t0}


def class_stats(classes, num_per_class: int, cache: str) -> dict:
    """PointFlow global-normalisation statistics per class, from its training split."""
    from .dataset import load_split
    from .io import global_normalization_stats

    train = load_split("train", classes, num_per_class, cache)
    return {c: global_normalization_stats(train.points[train.labels == CLASSES.index(c)]) for c in classes}


def normalized(points: np.ndarray, stats: dict) -> torch.Tensor:
    """Points (..., 3) in the metrics' frame: globally normalised with a class's ``stats``."""
    from .io import normalize_global

    return torch.from_numpy(np.ascontiguousarray(normalize_global(points, stats), dtype=np.float32))


def _weights_dir(args):
    from .weights import WEIGHTS_DIR

    return args.weights or WEIGHTS_DIR


def _reloads_watertight(mesh) -> bool:
    """Export ``mesh`` to every download format, load each file back: all watertight?"""
    import tempfile

    import trimesh

    from .export import MESH_FORMATS, export_mesh

    with tempfile.TemporaryDirectory() as d:
        return all(trimesh.load(export_mesh(mesh, f"{d}/m.{fmt}"), force="mesh").is_watertight for fmt in MESH_FORMATS)


def evaluate_reconstruction(args: argparse.Namespace) -> dict:
    from .dataset import load_split
    from .export import MESH_FORMATS
    from .geometry import mesh_from_field, sample_surface, surface_features
    from .metrics import chamfer_distance
    from .tokenizer import Tokenizer, TokenizerConfig, iou, usage_stats
    from .weights import best_device, load_pretrained, read_config

    t0 = time.time()
    device = torch.device(args.device or best_device())
    path = f"{_weights_dir(args)}/tokenizer"
    tok = load_pretrained(Tokenizer, TokenizerConfig, path, device)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    stats = class_stats(args.classes, args.num_per_class, args.cache)
    rows, per_class, all_tokens = [], {}, []
    watertight = total = 0
    reloads = []
    for c in args.classes:
        sel = np.flatnonzero(test.labels == CLASSES.index(c))[: args.num]
        ious, sparse_ious, cds = [], [], []
        for i in range(0, len(sel), 32):
            b = sel[i:i + 32]
            occ = torch.from_numpy(test.occupancy[b]).to(device)
            dense = torch.from_numpy(test.dense[b].astype(np.float32))
            with torch.no_grad():
                feats = surface_features(dense).to(device)
                logits, tokens = tok.reconstruct(feats)
                sparse_ious.append(iou(tok.reconstruct(surface_features(dense[:, :SPARSE_POINTS]).to(device))[0], occ).cpu())
                if tokens is not None:                   # (a continuous ablation has no tokens to count)
                    all_tokens.append(tokens.cpu())
            ious.append(iou(logits, occ).cpu())
            for j, k in enumerate(b):
                mesh = mesh_from_field(torch.sigmoid(logits[j]).cpu().numpy(), 0.5)
                watertight += int(mesh.is_watertight)
                total += 1
                if i == 0 and j == 0:                    # the first shape of each class: export and reload
                    reloads.append(_reloads_watertight(mesh))
                rec = sample_surface(mesh, 2048, seed=int(k))
                cds.append(float(chamfer_distance(normalized(rec, stats[c])[None], normalized(test.points[k], stats[c])[None])[0]))
        m_iou, m_cd = float(torch.cat(ious).mean()), 1e3 * float(np.mean(cds))
        m_sparse = float(torch.cat(sparse_ious).mean())
        per_class[c] = {"iou": m_iou, "min_iou": float(torch.cat(ious).min()), f"iou_{SPARSE_POINTS}_points": m_sparse,
                        "cd_x1e3": m_cd, "cd_x1e3_median": 1e3 * float(np.median(cds)), "num": int(len(sel))}
        rows.append([c, len(sel), f"{m_iou:.3f}", f"{m_sparse:.3f}", per_class[c]["cd_x1e3_median"], m_cd])
    nc, usage = tok.layout.num_coarse, {}
    if all_tokens:
        tokens = torch.cat(all_tokens)
        usage["fine"] = usage_stats(tokens[:, nc:], tok.config.codebook_size)
        if nc:
            usage["coarse"] = usage_stats(tokens[:, :nc], tok.config.coarse_codebook_size)
    mean_iou = float(np.mean([v["iou"] for v in per_class.values()]))
    mean_sparse = float(np.mean([v[f"iou_{SPARSE_POINTS}_points"] for v in per_class.values()]))
    rows.append(["mean", "", f"{mean_iou:.3f}", f"{mean_sparse:.3f}", float(np.mean([v["cd_x1e3_median"] for v in per_class.values()])),
                 float(np.mean([v["cd_x1e3"] for v in per_class.values()]))])
    print_table("tokenizer reconstruction on the test split (IoU from 32768 dense points and from their first "
                f"{SPARSE_POINTS})", ["class", "n", "IoU", f"IoU {SPARSE_POINTS} pts", "CD x1e3 (median)", "CD x1e3"], rows)
    print("codebook: " + ", ".join(f"{k} usage {100 * v['usage']:.1f}% perplexity {v['perplexity']:.1f}"
                                   for k, v in usage.items()) + f"; watertight meshes {watertight}/{total}; "
          f"watertight after export + reload as {'/'.join(MESH_FORMATS)}: {sum(reloads)}/{len(reloads)}")
    return {**_header(args), "weights": read_config(path).get("command"), "per_class": per_class,
            "mean_iou": mean_iou, f"mean_iou_{SPARSE_POINTS}_points": mean_sparse, "codebook": usage, "watertight": [watertight, total],
            "watertight_after_reload": [sum(reloads), len(reloads)], "reload_formats": list(MESH_FORMATS),
            "seconds": time.time() - t0}


def _generated(pipe, label_name: str, num: int, seed: int, options, batch: int):
    """Points (num, 2048, 3) and meshes of ``num`` generated shapes."""
    pts, meshes = [], []
    for i in range(0, num, batch):
        res = pipe.run(pipe.condition(label_name, min(batch, num - i)), seed + i, options)
        pts += [r.points for r in res]
        meshes += [r.mesh for r in res]
    return np.stack(pts), meshes


def part_figures(meshes) -> dict:
    """Mean connected parts per mesh and the share of meshes in one part (as decoded: nothing removed)."""
    parts = np.array([G.mesh_parts(m) for m in meshes])
    return {"parts": float(parts.mean()), "one part %": 100.0 * float((parts == 1).mean())}


def generation_figures(points: np.ndarray, ref: np.ndarray, stats: dict, clf, label: int, emd: bool = False,
                       emd_points: int | None = None) -> dict:
    """Points (K, 2048, 3) of one class against reference points: MMD / COV / 1-NNA (report units),
    the classifier's accuracy on ``points`` and the Frechet distance of its features."""
    from .classifier import classify
    from .metrics import compute_all_metrics, frechet_distance, to_report_units

    m = to_report_units(compute_all_metrics(normalized(points, stats), normalized(ref, stats), emd=emd,
                                            emd_points=emd_points))
    pred, feats = classify(clf, points)
    _, ref_feats = classify(clf, ref)
    m.update({"class accuracy %": 100 * float((pred == label).mean()), "FD": frechet_distance(feats, ref_feats)})
    return m


def evaluate_generation(args: argparse.Namespace) -> dict:
    from .classifier import ClassifierConfig, ShapeClassifier
    from .dataset import load_split
    from .pipeline import load_pipeline
    from .weights import load_pretrained, read_config

    t0 = time.time()
    options = SamplingOptions.from_args(args)
    pipe = load_pipeline(_weights_dir(args), args.device)
    clf = load_pretrained(ShapeClassifier, ClassifierConfig, f"{_weights_dir(args)}/classifier")
    test = load_split(args.split, args.classes, args.num_per_class, args.cache)
    stats = class_stats(args.classes, args.num_per_class, args.cache)
    per_class, rows = {}, []
    for c in args.classes:
        label = CLASSES.index(c)
        sel = np.flatnonzero(test.labels == label)[: args.num]
        t1 = time.time()
        gen_pts, meshes = _generated(pipe, c, args.num, args.seed + 1000 * label, options, args.batch_size)
        gen_seconds = time.time() - t1
        if args.sheets:
            from .render import save_mesh_sheet

            shown = meshes[:16]
            save_mesh_sheet(shown, [f"#{k}" for k in range(len(shown))], Path(args.sheets) / f"{c}.png",
                            f"{c}: generated samples (seed {args.seed + 1000 * label}, {options.num_steps} steps)",
                            columns=min(8, len(shown)))
        m = generation_figures(gen_pts, test.points[sel], stats[c], clf, label, args.emd, args.emd_points)
        m.update(part_figures(meshes))
        m.update({"num_generated": int(len(gen_pts)), "num_reference": int(len(sel)),
                  "seconds per shape": gen_seconds / len(gen_pts)})
        per_class[c] = m
        rows.append([c] + [m.get(k, float("nan")) for k in _GEN_COLUMNS])
        print(f"  {c}: done in {time.time() - t1:.0f} s", flush=True)
    mean = {k: float(np.mean([v[k] for v in per_class.values() if k in v])) for k in _GEN_COLUMNS if
            any(k in v for v in per_class.values())}
    rows.append(["mean"] + [mean.get(k, float("nan")) for k in _GEN_COLUMNS])
    print_table(f"generation: {args.num} samples per class vs the {args.split} split",
                ["class"] + list(_GEN_COLUMNS), rows)
    return {**_header(args), "model": read_config(f"{_weights_dir(args)}/model").get("command"),
            "steps": options.num_steps, "options": options.record(), "reference_split": args.split,
            "emd_points": (args.emd_points or 2048) if args.emd else None,
            "seed": args.seed, "per_class": per_class, "mean": mean, "seconds": time.time() - t0}


_GEN_COLUMNS = ("parts", "one part %", "1-NNA-CD %", "COV-CD %", "MMD-CD x1e3", "1-NNA-EMD %", "COV-EMD %", "MMD-EMD x1e2",
                "class accuracy %", "FD")


def evaluate_completion(args: argparse.Namespace) -> dict:
    from .dataset import load_split
    from .masking import plane_visible
    from .metrics import chamfer_distance, emd_exact
    from .pipeline import load_pipeline
    from .weights import read_config

    t0 = time.time()
    options = SamplingOptions.from_args(args)
    pipe = load_pipeline(_weights_dir(args), args.device)
    test = load_split("test", args.classes, args.num_per_class, args.cache)
    train = load_split("train", args.classes, args.num_per_class, args.cache)
    stats = class_stats(args.classes, args.num_per_class, args.cache)
    g = torch.Generator().manual_seed(args.seed)
    per_class, rows = {}, []
    for c in args.classes:
        label = CLASSES.index(c)
        sel = np.flatnonzero(test.labels == label)[: args.num]
        pool = torch.from_numpy(train.points[train.labels == label])        # retrieval candidates
        res = {"completion": ([], []), "partial input": ([], []), "NN retrieval": ([], [])}
        meshes = []
        for k in sel:
            n = torch.randn(3, generator=g)
            n = n / n.norm()
            full = test.points[k]
            keep = full @ n.numpy() > 0
            if keep.sum() < 16:                          # the cut kept (almost) nothing: flip it
                n, keep = -n, ~keep
            partial = full[keep]
            idx = torch.randint(len(partial), (len(full),), generator=g).numpy()
            partial_2048 = partial[idx]                   # resampled to 2048 points for EMD
            tokens = pipe.tokenizer.encode_points(test.dense[k].astype(np.float32))[0].cpu()
            visible = plane_visible(n[None], torch.zeros(1), pipe.layout, whole=True)[0]
            result = pipe.run(pipe.condition(c, 1, tokens, visible), args.seed + int(k), options)[0]
            done = result.points
            meshes.append(result.mesh)
            # retrieval: the training shape whose surface best explains the partial points
            pp = torch.from_numpy(partial)[None].expand(len(pool), -1, -1)
            one_sided = torch.cdist(pp, pool).min(-1).values.pow(2).mean(-1)
            nn_shape = pool[one_sided.argmin()].numpy()
            target = normalized(full, stats[c])[None]
            for name, pts in (("completion", done), ("partial input", partial_2048), ("NN retrieval", nn_shape)):
                x = normalized(pts, stats[c])[None]
                res[name][0].append(float(chamfer_distance(x, target)[0]))
                res[name][1].append(emd_exact(x[0], target[0]))     # exact is fastest on CPU
        per_class[c] = {name: {"CD x1e3": 1e3 * float(np.mean(v[0])), "EMD x1e2": 1e2 * float(np.mean(v[1]))}
                        for name, v in res.items()}
        per_class[c]["num"] = int(len(sel))
        per_class[c]["completion"].update(part_figures(meshes))
        rows.append([c, len(sel)] + [per_class[c][name][m] for name in res for m in ("CD x1e3", "EMD x1e2")]
                    + [per_class[c]["completion"][m] for m in ("parts", "one part %")])
    names = ["completion", "partial input", "NN retrieval"]
    mean = {name: {m: float(np.mean([per_class[c][name][m] for c in args.classes]))
                   for m in ("CD x1e3", "EMD x1e2") + (("parts", "one part %") if name == "completion" else ())}
            for name in names}
    rows.append(["mean", ""] + [mean[name][m] for name in names for m in ("CD x1e3", "EMD x1e2")]
                + [mean["completion"][m] for m in ("parts", "one part %")])
    print_table("completion of test shapes cut in half by a random plane (distances to the full shape)",
                ["class", "n"] + [f"{name} {m}" for name in names for m in ("CD", "EMD")]
                + ["completion parts", "one part %"], rows)
    return {**_header(args), "model": read_config(f"{_weights_dir(args)}/model").get("command"),
            "steps": options.num_steps, "options": options.record(), "seed": args.seed,
            "per_class": per_class, "mean": mean,
            "seconds": time.time() - t0}


def _shape_errors(results, target_points: np.ndarray, target_occupancy: np.ndarray,
                  stats: dict) -> tuple[list[float], list[float]]:
    """CD x1e3 (normalised with ``stats``) and voxel IoU of decoded results to their targets."""
    from .metrics import chamfer_distance

    cds, ious = [], []
    for r, pts, occ in zip(results, target_points, target_occupancy):
        cds.append(1e3 * float(chamfer_distance(normalized(r.points, stats)[None], normalized(pts, stats)[None])[0]))
        pred = r.field > 0.5
        ious.append(float((pred & occ).sum() / max(1, (pred | occ).sum())))
    return cds, ious


def evaluate_image(args: argparse.Namespace) -> dict:
    from .dataset import load_split
    from .image import image_condition
    from .pipeline import DEFAULT_IMAGE_CONFIDENCE, load_pipeline
    from .views import load_views
    from .weights import read_config

    t0 = time.time()
    options = SamplingOptions.from_args(args)
    confidence = DEFAULT_IMAGE_CONFIDENCE if args.confidence is None else args.confidence
    pipe = load_pipeline(_weights_dir(args), args.device)
    if pipe.image_encoder is None:
        raise SystemExit(f"no image encoder weights in {_weights_dir(args)} (python -m smart3d train image)")
    test = load_split(args.split, args.classes, args.num_per_class, args.cache)
    views = load_views(args.split, args.classes, args.num_per_class, 2, args.cache)
    stats = class_stats(args.classes, args.num_per_class, args.cache)
    nc = pipe.layout.num_coarse
    per_class, rows = {}, []
    for c in args.classes:
        label = CLASSES.index(c)
        sel = np.flatnonzero(test.labels == label)[: args.num]
        figs = {"class_hits": 0, "coarse_hits": 0, "known": 0, "known_hits": 0,
                "image": ([], []), "class only": ([], []), "image meshes": []}
        for i in range(0, len(sel), args.batch_size):
            b = sel[i:i + args.batch_size]
            true = pipe.tokenizer.encode_points(test.dense[b].astype(np.float32)).cpu()
            conds = [image_condition(pipe.image_encoder, torch.from_numpy(views.images[k, 0]).permute(2, 0, 1).float() / 255,
                                     confidence) for k in b]
            for j, cd in enumerate(conds):
                hit = cd.coarse == true[j, :nc]
                figs["class_hits"] += int(cd.label == label)
                figs["coarse_hits"] += int(hit.sum())
                figs["known"] += int(cd.known.sum())
                figs["known_hits"] += int(hit[cd.known].sum())
            seed = args.seed + int(b[0])
            runs = {"image": pipe.condition_from_images(conds)}
            if not args.no_baseline:
                runs["class only"] = pipe.condition(c, len(b))
            for name, condition in runs.items():
                results = pipe.run(condition, seed, options)
                if name == "image":
                    figs["image meshes"] += [r.mesh for r in results]
                cds, ious = _shape_errors(results, test.points[b], test.occupancy[b], stats[c])
                figs[name][0].extend(cds)
                figs[name][1].extend(ious)
        n = len(sel)
        m = {"num": int(n), "class accuracy %": 100 * figs["class_hits"] / n,
             "coarse accuracy %": 100 * figs["coarse_hits"] / (n * nc),
             "coarse given per shape": figs["known"] / n,
             "given coarse accuracy %": 100 * figs["known_hits"] / max(1, figs["known"])}
        for name in ("image", "class only"):
            m[f"{name} CD x1e3"] = float(np.mean(figs[name][0])) if figs[name][0] else float("nan")
            m[f"{name} IoU"] = float(np.mean(figs[name][1])) if figs[name][1] else float("nan")
        m.update({f"image {k}": v for k, v in part_figures(figs["image meshes"]).items()})
        per_class[c] = m
        rows.append([c, n] + [m[k] for k in _IMAGE_COLUMNS])
        print(f"  {c}: done in {time.time() - t0:.0f} s", flush=True)
    mean = {k: float(np.mean([v[k] for v in per_class.values()])) for k in _IMAGE_COLUMNS}
    rows.append(["mean", ""] + [mean[k] for k in _IMAGE_COLUMNS])
    print_table(f"image conditioning: one view of each {args.split} shape -> generated shape vs that shape",
                ["class", "n"] + list(_IMAGE_COLUMNS), rows)
    return {**_header(args), "image_encoder": read_config(f"{_weights_dir(args)}/image_encoder").get("command"),
            "model": read_config(f"{_weights_dir(args)}/model").get("command"), "split": args.split,
            "steps": options.num_steps, "options": options.record(), "confidence": confidence,
            "seed": args.seed,
            "per_class": per_class, "mean": mean, "seconds": time.time() - t0}


_IMAGE_COLUMNS = ("class accuracy %", "coarse accuracy %", "coarse given per shape", "given coarse accuracy %",
                  "image CD x1e3", "class only CD x1e3", "image IoU", "class only IoU", "image parts", "image one part %")


def run(args: argparse.Namespace) -> dict:
    tasks = {"benchmark": evaluate_benchmark, "reconstruction": evaluate_reconstruction,
             "generation": evaluate_generation, "completion": evaluate_completion, "image": evaluate_image}
    return tasks[args.task](args)
