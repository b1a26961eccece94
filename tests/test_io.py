"""smart3d.io: round-trips through every format, and a clear InputError for every kind of bad file."""
import os

import numpy as np
import pytest
import trimesh

from smart3d.io import (MESH_EXTENSIONS, SHAPENET_SYNSETS, InputError, global_normalization_stats,
                        load_mesh, load_pc15k, load_point_cloud, normalize_global, normalize_unit_box)

BOX_CENTER = np.array([0.5, -1.0, 2.0])
BOX_EXTENTS = np.array([1.0, 2.0, 3.0])


@pytest.fixture
def box():
    mesh = trimesh.creation.box(extents=BOX_EXTENTS)
    mesh.apply_translation(BOX_CENTER)
    return mesh


@pytest.fixture
def points():
    return np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)


def assert_on_box_surface(pts):
    d = np.abs(pts - BOX_CENTER) - BOX_EXTENTS / 2  # <= 0 inside, 0 on a face
    assert (d <= 1e-5).all()
    assert (np.abs(d.max(axis=1)) <= 1e-5).all()


# ---------------------------------------------------------------------------- writers

def write_xyz(path, pts):
    lines = ["# a comment line", ""] + [f"{x:.9g}, {y:.9g}, {z:.9g}  # trailing" for x, y, z in pts]
    path.write_text("\n".join(lines) + "\n")


def write_npy(path, pts):
    np.save(path, pts)


def write_npy_extra_columns(path, pts):
    np.save(path, np.concatenate([pts, np.ones_like(pts)], axis=1))  # xyz + normals


def write_npz_named(path, pts):
    np.savez(path, normals=np.zeros((7, 2)), points=pts)  # 'points' wins over the first array


def write_npz_unnamed(path, pts):
    np.savez_compressed(path, pts)


def pcd_header(n, data):
    return (f"# .PCD v0.7\nVERSION 0.7\nFIELDS intensity x y z\nSIZE 4 4 4 4\nTYPE U F F F\n"
            f"COUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n")


def write_pcd_ascii(path, pts):
    rows = "".join(f"7 {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in pts)
    path.write_text(pcd_header(len(pts), "ascii") + rows)


def write_pcd_binary(path, pts):
    rec = np.zeros(len(pts), dtype=[("i", "<u4"), ("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    rec["i"], rec["x"], rec["y"], rec["z"] = 7, pts[:, 0], pts[:, 1], pts[:, 2]
    path.write_bytes(pcd_header(len(pts), "binary").encode() + rec.tobytes())


def write_ply_points(path, pts):
    trimesh.PointCloud(pts).export(path)


POINT_WRITERS = {
    "xyz": (".xyz", write_xyz), "npy": (".npy", write_npy), "npy6": (".npy", write_npy_extra_columns),
    "npz_named": (".npz", write_npz_named), "npz": (".npz", write_npz_unnamed),
    "pcd_ascii": (".pcd", write_pcd_ascii), "pcd_binary": (".pcd", write_pcd_binary),
    "ply_points": (".ply", write_ply_points),
}


# ---------------------------------------------------------------------------- round-trips

@pytest.mark.parametrize("ext", MESH_EXTENSIONS)
def test_mesh_roundtrip_samples_surface(tmp_path, box, ext):
    path = tmp_path / f"box{ext}"
    box.export(path)
    pts = load_point_cloud(path, 500, generator=np.random.default_rng(0))
    assert pts.shape == (500, 3) and pts.dtype == np.float32 and np.isfinite(pts).all()
    assert_on_box_surface(pts)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12
    np.testing.assert_allclose(mesh.bounds, [BOX_CENTER - BOX_EXTENTS / 2, BOX_CENTER + BOX_EXTENTS / 2], atol=1e-6)
    assert mesh.volume == pytest.approx(6.0)


def test_mesh_default_sample_count_and_uppercase_extension(tmp_path, box):
    path = tmp_path / "BOX.PLY"
    box.export(path, file_type="ply")
    pts = load_point_cloud(str(path))
    assert pts.shape == (20_000, 3)


@pytest.mark.parametrize("kind", POINT_WRITERS)
def test_point_file_roundtrip(tmp_path, points, kind):
    ext, write = POINT_WRITERS[kind]
    path = tmp_path / f"cloud{ext}"
    write(path, points)
    loaded = load_point_cloud(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, points)


def test_sampling_is_deterministic(tmp_path, box, points):
    box.export(tmp_path / "box.obj")
    np.save(tmp_path / "cloud.npy", points)
    for name in ("box.obj", "cloud.npy"):
        a = load_point_cloud(tmp_path / name, 50, generator=np.random.default_rng(7))
        b = load_point_cloud(tmp_path / name, 50, generator=np.random.default_rng(7))
        c = load_point_cloud(tmp_path / name, 50, generator=np.random.default_rng(8))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    sub = load_point_cloud(tmp_path / "cloud.npy", 50, generator=np.random.default_rng(0))
    assert len(np.unique(sub, axis=0)) == 50  # without replacement
    up = load_point_cloud(tmp_path / "cloud.npy", 250, generator=np.random.default_rng(0))
    assert up.shape == (250, 3)
    assert len(np.unique(up, axis=0)) == 100  # every original point kept


# ---------------------------------------------------------------------------- bad input

def expect_error(path, *words, **kwargs):
    with pytest.raises(InputError) as info:
        load_point_cloud(path, **kwargs)
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.ply", "not found", "nope.ply")


@pytest.mark.parametrize("name", ["scan.txt", "photo.jpg", "noext"])
def test_unsupported_extension(tmp_path, name):
    (tmp_path / name).write_text("1 2 3\n")
    expect_error(tmp_path / name, "unsupported", ".xyz", ".npy", ".ply", ".glb")


@pytest.mark.parametrize("ext", [".ply", ".obj", ".off", ".stl", ".glb", ".npy", ".npz", ".xyz", ".pcd"])
def test_corrupt_bytes(tmp_path, ext):
    path = tmp_path / f"bad{ext}"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    expect_error(path, "could not read", f"bad{ext}")
    if ext in MESH_EXTENSIONS:
        with pytest.raises(InputError, match="Could not read"):
            load_mesh(path)


def test_truncated_files(tmp_path, box, points):
    box.export(tmp_path / "full.ply")
    data = (tmp_path / "full.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    expect_error(tmp_path / "cut.ply", "could not read", "PLY")
    write_pcd_binary(tmp_path / "full.pcd", points)
    data = (tmp_path / "full.pcd").read_bytes()
    (tmp_path / "cut.pcd").write_bytes(data[:-10])
    expect_error(tmp_path / "cut.pcd", "could not read", "truncated")


@pytest.mark.parametrize("ext", [".ply", ".obj", ".stl", ".glb", ".npy", ".npz", ".xyz", ".pcd"])
def test_empty_file(tmp_path, ext):
    path = tmp_path / f"empty{ext}"
    path.write_bytes(b"")
    expect_error(path, "empty")


def test_comments_only_xyz(tmp_path):
    (tmp_path / "c.xyz").write_text("# nothing here\n\n")
    expect_error(tmp_path / "c.xyz", "no points")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_rows(tmp_path, points, bad):
    pts = points.copy()
    pts[[3, 10], 1] = bad
    write_xyz(tmp_path / "n.xyz", pts)
    expect_error(tmp_path / "n.xyz", "2 of 100", "NaN or infinite")
    kept = load_point_cloud(tmp_path / "n.xyz", drop_nonfinite=True)
    np.testing.assert_array_equal(kept, np.delete(points, [3, 10], axis=0))
    expect_error(tmp_path / "n.xyz", "at least 99", "dropping", drop_nonfinite=True, min_points=99)


def test_nonfinite_mesh_vertex(tmp_path):
    (tmp_path / "n.obj").write_text("v 0 0 0\nv 1 0 nan\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 3 4\n")
    expect_error(tmp_path / "n.obj", "1 of 4 vertices", "NaN")
    pts = load_point_cloud(tmp_path / "n.obj", 64, drop_nonfinite=True, generator=np.random.default_rng(0))
    assert np.isfinite(pts).all() and np.allclose(pts[:, 0], 0)  # only the x=0 face remains


def test_too_few_points(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((1, 3)))
    expect_error(tmp_path / "one.npy", "1 points", "at least 16")


@pytest.mark.parametrize("shape", [(50, 2), (50,), (2, 50, 3)])
def test_wrong_shape(tmp_path, shape):
    np.save(tmp_path / "w.npy", np.zeros(shape))
    np.savez(tmp_path / "w.npz", points=np.zeros(shape))
    for name in ("w.npy", "w.npz"):
        expect_error(tmp_path / name, "shape", str(shape), "(N, 3)")


def test_wrong_dtype_and_pickle(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b", "c"]] * 20))
    expect_error(tmp_path / "s.npy", "could not read", "numbers")
    np.save(tmp_path / "o.npy", np.array([[1, 2, 3]] * 20, dtype=object), allow_pickle=True)
    expect_error(tmp_path / "o.npy", "could not read", "objects")


def test_too_large_file(tmp_path, points):
    np.save(tmp_path / "big.npy", points)
    size = os.path.getsize(tmp_path / "big.npy")
    expect_error(tmp_path / "big.npy", "larger than", "1000 bytes", f"{size / 1024:.3g} KB", max_bytes=1000)


def test_too_many_points(tmp_path, points, box):
    for writer in (write_npy, write_xyz, write_pcd_binary, write_npz_named):
        ext = {write_npy: ".npy", write_xyz: ".xyz", write_pcd_binary: ".pcd", write_npz_named: ".npz"}[writer]
        writer(tmp_path / f"many{ext}", points)
        expect_error(tmp_path / f"many{ext}", "100 points", "limit of 50", max_points=50)
    box.export(tmp_path / "box.stl")
    expect_error(tmp_path / "box.stl", "vertices", "limit of 4", max_points=4)


def test_identical_points(tmp_path):
    np.save(tmp_path / "same.npy", np.full((40, 3), 2.5))
    expect_error(tmp_path / "same.npy", "identical")


def test_binary_compressed_pcd_with_an_uncompressed_body_is_an_error(tmp_path, points):
    write_pcd_binary(tmp_path / "c.pcd", points)
    data = (tmp_path / "c.pcd").read_bytes().replace(b"DATA binary", b"DATA binary_compressed")
    (tmp_path / "c.pcd").write_bytes(data)
    expect_error(tmp_path / "c.pcd", "compressed data")


def test_load_mesh_rejects_point_clouds(tmp_path, points):
    write_ply_points(tmp_path / "pts.ply", points)
    with pytest.raises(InputError, match="no faces"):
        load_mesh(tmp_path / "pts.ply")
    write_xyz(tmp_path / "pts.xyz", points)
    with pytest.raises(InputError, match="mesh is needed"):
        load_mesh(tmp_path / "pts.xyz")


def test_file_objects_are_a_type_error(tmp_path, points):
    np.save(tmp_path / "p.npy", points)
    with open(tmp_path / "p.npy", "rb") as f, pytest.raises(TypeError, match="file path"):
        load_point_cloud(f)


# ---------------------------------------------------------------------------- datasets

def test_load_pc15k(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / SHAPENET_SYNSETS["chair"] / "train"
    folder.mkdir(parents=True)
    clouds = {name: rng.normal(size=(20, 3)) for name in ("b1", "a0", "c2")}
    for name, pc in clouds.items():
        np.save(folder / f"{name}.npy", pc)
    (folder / "notes.txt").write_text("ignored")
    out = load_pc15k(tmp_path, "03001627", "train")
    assert out.shape == (3, 20, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([clouds[k] for k in ("a0", "b1", "c2")]), rtol=1e-6)
    np.testing.assert_array_equal(load_pc15k(tmp_path, "chair", "train"), out)
    with pytest.raises(InputError, match="03001627"):  # names what is there
        load_pc15k(tmp_path, "chair", "val")
    np.save(folder / "d3.npy", rng.normal(size=(10, 3)))
    with pytest.raises(InputError, match="same number of points"):
        load_pc15k(tmp_path, "chair", "train")


def test_shapenet_synsets():
    expected = {"airplane": "02691156", "bench": "02828884", "bottle": "02876657", "car": "02958343",
                "chair": "03001627", "lamp": "03636649", "mug": "03797390", "sofa": "04256520",
                "table": "04379243"}
    assert expected.items() <= SHAPENET_SYNSETS.items()


# ---------------------------------------------------------------------------- normalisation

def test_normalize_unit_box(points):
    pts = points * np.array([1.0, 3.0, 0.5], dtype=np.float32) + 7
    norm, info = normalize_unit_box(pts, fill=0.8)
    lo, hi = norm.min(axis=0), norm.max(axis=0)
    assert (hi - lo).max() == pytest.approx(1.6, abs=1e-6)
    np.testing.assert_allclose(lo + hi, 0, atol=1e-6)
    np.testing.assert_allclose(norm / info["scale"] + info["center"], pts, atol=1e-5)
    with pytest.raises(InputError, match="identical"):
        normalize_unit_box(np.ones((5, 3)))


def test_global_normalization_matches_pointflow():
    rng = np.random.default_rng(0)
    clouds = rng.normal(loc=[1.0, -2.0, 5.0], scale=[1.0, 2.0, 0.5], size=(4, 30, 3)).astype(np.float32)
    stats = global_normalization_stats(clouds)
    x = clouds.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], x.reshape(-1, 3).mean(axis=0), rtol=1e-12)
    assert stats["std"] == pytest.approx(x.reshape(-1).std(), rel=1e-12)  # scalar, pooled over axes
    ragged = [clouds[0], clouds[1:].reshape(-1, 3)]
    ragged_stats = global_normalization_stats(ragged)
    np.testing.assert_allclose(ragged_stats["mean"], stats["mean"], rtol=1e-12)
    assert ragged_stats["std"] == pytest.approx(stats["std"], rel=1e-12)
    norm = normalize_global(clouds, stats)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm, (x - x.reshape(-1, 3).mean(0)) / x.reshape(-1).std(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- found by fuzzing

def test_obj_vertices_with_fewer_than_three_numbers_are_refused(tmp_path):
    # an OBJ without faces is read as a point cloud; trimesh keeps "v" lines of one or two numbers
    # as (N, 1) or (N, 2) vertices (benchmarks/fuzz_loaders.py found it)
    for k in (1, 2):
        path = tmp_path / f"v{k}.obj"
        path.write_text("".join(f"v {' '.join(str(0.1 * (i + j)) for j in range(k))}\n" for i in range(40)))
        with pytest.raises(InputError, match="do not have three coordinates"):
            load_point_cloud(path)


@pytest.mark.parametrize("points", ["-1", "-99999999999999999999"])
def test_pcd_with_a_negative_point_count_is_refused(tmp_path, points):
    path = tmp_path / "negative.pcd"
    path.write_bytes(f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 20\nHEIGHT 1\n"
                     f"POINTS {points}\nDATA binary\n".encode() + np.zeros((20, 3), np.float32).tobytes())
    with pytest.raises(InputError, match="negative or zero point count"):
        load_point_cloud(path)
