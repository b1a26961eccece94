"""Scan intake (smart3d.intake) and the readers real scans come in (PCD binary_compressed, LAS/LAZ).

Synthetic data only: a benchmark test-split chair (never one of the templates) seen by a simulated
sensor, and simple generated point sets.
"""

import struct

import numpy as np
import pytest

from smart3d.dataset import make_sample
from smart3d.intake import Placement, parse_up, place_scan, rotation_to_y, sensor_scan, yaw_matrix
from smart3d.io import InputError, load_point_cloud


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation a @ b.T in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1))))


@pytest.fixture(scope="module")
def chair():
    """Dense surface points (32768, 3) of test-split chair 19 (templates are training shapes)."""
    return make_sample("chair", 19).dense.astype(np.float64)


@pytest.fixture(scope="module")
def sensed(chair):
    """A simulated sensor scan of the chair: metres, z-up, random heading, ground, stray points."""
    scan, truth, _ = sensor_scan(chair, height=0.85, generator=np.random.default_rng(3))
    return scan, truth, place_scan(scan, "chair", generator=np.random.default_rng(0))


def test_known_similarity_is_recovered(chair, sensed):
    scan, truth, placed = sensed
    assert truth.scale == pytest.approx((chair[:, 1].max() - chair[:, 1].min()) / 0.85)
    assert angle_deg(placed.rotation, truth.rotation) < 10.0                      # up and heading
    assert np.degrees(np.arccos(np.clip(placed.up @ [0, 0, 1], -1, 1))) < 2.0     # up from the ground plane
    assert placed.scale / truth.scale == pytest.approx(1.0, abs=0.05)
    origin = truth.to_scan(np.zeros(3))                                           # the true canonical origin
    assert np.linalg.norm(placed.to_canonical(origin)) < 0.15                     # canonical units (box side 2)
    # the object's visible points land where they belong, within a few voxels
    err = np.linalg.norm(placed.to_canonical(truth.scan_points) - truth.to_canonical(truth.scan_points), axis=1)
    assert np.median(err) < 0.12


def test_ground_and_stray_points_are_removed(chair, sensed):
    scan, truth, placed = sensed
    assert placed.ground is not None
    assert placed.removed["ground"] >= 0.9 * len(truth.scan_points)          # the floor has as many points as the chair
    # what is kept is the object: almost nothing far from the chair's surface
    from scipy.spatial import cKDTree

    d = cKDTree(chair).query(truth.to_canonical(placed.scan_points))[0]
    assert np.mean(d > 0.08) < 0.01
    assert len(placed.scan_points) >= 0.9 * len(truth.scan_points)


def test_round_trip_and_mesh_back_to_the_scan_frame(sensed):
    import trimesh

    _, _, placed = sensed
    x = np.random.default_rng(0).normal(size=(100, 3)) * 3
    np.testing.assert_allclose(placed.to_scan(placed.to_canonical(x)), x, atol=1e-9)
    np.testing.assert_allclose(placed.to_canonical(x), x @ placed.matrix[:3, :3].T + placed.matrix[:3, 3], atol=1e-9)
    box = trimesh.creation.box(extents=(0.5, 0.3, 0.2))
    back = placed.mesh_to_scan(box)
    np.testing.assert_allclose(back.vertices, placed.to_scan(box.vertices), atol=1e-9)
    assert back.is_watertight and back.volume > 0                                # normals still outward
    assert np.allclose(placed.points, placed.to_canonical(placed.scan_points), atol=1e-5)


def test_adjusted_placement_uses_the_hand_set_values(sensed):
    _, _, placed = sensed
    moved = placed.adjusted(up="+y", yaw=90, scale=2.0, offset=(0.1, 0.2, 0.3))
    np.testing.assert_allclose(moved.rotation, yaw_matrix(90))                   # +y up: only the yaw
    x = np.array([[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(moved.to_canonical(x), [[0.1, 0.2, 0.3 - 2.0]], atol=1e-12)
    assert moved.fit is None and placed.adjusted() is placed
    with pytest.raises(InputError, match="Scale"):
        placed.adjusted(scale=-1.0)
    with pytest.raises(InputError, match="Offset"):
        placed.adjusted(offset=(1.0, 2.0))


def test_user_up_overrides_and_no_ground_is_found_without_one(chair):
    """A y-up scan without floor or strays, at its own scale: the given up axis is used as it is."""
    from smart3d.scans import direction, single_view

    part = chair[single_view(chair, direction(30, 20))] * 0.4 + [5.0, 1.0, -2.0]
    placed = place_scan(part, "chair", up="y", generator=np.random.default_rng(0))
    assert placed.ground is None and np.allclose(placed.up, [0, 1, 0])
    assert placed.scale == pytest.approx(1 / 0.4, rel=0.08)
    assert abs((placed.yaw + 180) % 360 - 180) < 15                               # the chair faces +z already


def test_rotation_to_y():
    for v in ([0, 0, 1], [0, -1, 0], [1, 2, 3], [0, 1, 0]):
        u = np.asarray(v, float) / np.linalg.norm(v)
        r = rotation_to_y(u)
        np.testing.assert_allclose(r @ u, [0, 1, 0], atol=1e-12)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)


@pytest.mark.parametrize("points, words", [
    (np.zeros((10, 3)), "at least"),
    (np.full((50, 3), np.nan), "NaN"),
    (np.zeros((50, 2)), "(N, 3)"),
    (np.ones((50, 3)), "identical"),
])
def test_bad_scans_give_clear_errors(points, words):
    with pytest.raises(InputError, match=None) as info:
        place_scan(points, "chair")
    assert words.lower() in str(info.value).lower()


def test_bad_up_and_class_give_clear_errors():
    with pytest.raises(InputError, match="up axis"):
        parse_up("w")
    with pytest.raises(InputError, match="non-zero"):
        parse_up((0, 0, 0))
    with pytest.raises(InputError, match="Unknown class"):
        place_scan(np.random.default_rng(0).random((100, 3)), "spaceship")


# --------------------------------------------------------------------------------------------
# Readers: PCD binary_compressed and LAS / LAZ
# --------------------------------------------------------------------------------------------

def compressed_pcd(points: np.ndarray, extra: np.ndarray) -> bytes:
    """A PCL DATA binary_compressed file made by hand: x y z (float32) and an intensity (uint16), LZF."""
    import lzf                                                # python-neo-lzf, pypcd4's LZF codec

    cols = [points[:, 0].astype("<f4"), points[:, 1].astype("<f4"), points[:, 2].astype("<f4"), extra.astype("<u2")]
    raw = b"".join(c.tobytes() for c in cols)                # PCL stores each field's column in turn
    packed = lzf.compress(raw, 2 * len(raw) + 64)
    n = len(points)
    header = (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 2\n"
              f"TYPE F F F U\nCOUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
              "DATA binary_compressed\n").encode()
    return header + struct.pack("<II", len(packed), len(raw)) + packed


def test_binary_compressed_pcd_reads_back(tmp_path):
    pts = np.round(np.random.default_rng(0).normal(size=(700, 3)) * 4, 2)         # rounded: LZF finds repeats
    (tmp_path / "scan.pcd").write_bytes(compressed_pcd(pts, np.arange(700)))
    np.testing.assert_allclose(load_point_cloud(tmp_path / "scan.pcd"), pts.astype(np.float32))


def test_pcd_written_by_pypcd4_reads_back(tmp_path):
    from pypcd4 import Encoding, PointCloud

    pts = np.random.default_rng(1).random((300, 3)).astype(np.float32)
    for encoding in (Encoding.ASCII, Encoding.BINARY, Encoding.BINARY_COMPRESSED):
        path = tmp_path / f"{encoding.value}.pcd"
        PointCloud.from_xyz_points(pts).save(path, encoding=encoding)
        np.testing.assert_allclose(load_point_cloud(path), pts, atol=1e-6 if encoding == Encoding.ASCII else 0)


def test_damaged_compressed_pcd_gives_clear_errors(tmp_path):
    pts = np.round(np.random.default_rng(0).normal(size=(200, 3)), 2)
    data = compressed_pcd(pts, np.zeros(200))
    (tmp_path / "cut.pcd").write_bytes(data[:-40])
    with pytest.raises(InputError, match="truncated"):
        load_point_cloud(tmp_path / "cut.pcd")
    (tmp_path / "lie.pcd").write_bytes(data.replace(b"POINTS 200", b"POINTS 201").replace(b"WIDTH 200", b"WIDTH 201"))
    with pytest.raises(InputError, match="201 points"):
        load_point_cloud(tmp_path / "lie.pcd")
    head, body = data.split(b"binary_compressed\n", 1)
    garbage = body[:8] + bytes(255 - b for b in body[8:])
    (tmp_path / "junk.pcd").write_bytes(head + b"binary_compressed\n" + garbage)
    with pytest.raises(InputError, match="cannot be decoded|Could not read"):
        load_point_cloud(tmp_path / "junk.pcd")


@pytest.mark.parametrize("ext", [".las", ".laz"])
def test_las_and_laz_read_back(tmp_path, ext):
    import laspy

    pts = np.random.default_rng(2).uniform(-50, 50, (500, 3))
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = np.array([0.001] * 3), np.zeros(3)
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    las.write(tmp_path / f"scan{ext}")
    np.testing.assert_allclose(load_point_cloud(tmp_path / f"scan{ext}"), pts, atol=1e-3)
    with pytest.raises(InputError, match="limit"):
        load_point_cloud(tmp_path / f"scan{ext}", max_points=100)
    (tmp_path / f"bad{ext}").write_bytes(b"LASF" + bytes(300))
    with pytest.raises(InputError, match="Could not read"):
        load_point_cloud(tmp_path / f"bad{ext}")
