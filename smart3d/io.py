"""Reading point clouds and meshes: user uploads (partial scans) and real datasets (ShapeNet PC15k).

Every problem with an input file raises ``InputError`` (a ``ValueError``) whose message is plain
words meant for a person: which file, what kind of file we tried to read it as, what is wrong, and
the limit that was crossed. The Gradio app shows these messages as they are.

Supported files
- point clouds: ``.xyz`` (text), ``.npy`` / ``.npz`` (NumPy, never unpickled), ``.pcd`` (PCL: DATA ascii
  and binary parsed here, binary_compressed decoded by ``pypcd4`` after the same header checks),
  ``.las`` / ``.laz`` (LiDAR, by ``laspy``; LAZ through its ``lazrs`` backend);
- meshes: ``.ply .obj .off .stl .glb`` via trimesh. A ``.ply`` (or ``.obj``/``.off``) that has
  vertices but no faces is read as a point cloud.

Normalisation protocols (two of them, for two purposes)
- ``normalize_unit_box``: the per-shape canonical frame used for voxelisation. The bounding box is
  centred at the origin and its longest side scaled to ``2 * fill``, so the shape sits in [-1, 1]^3
  with a margin.
- ``global_normalization_stats`` / ``normalize_global``: PointFlow's global normalisation, used for
  metrics so numbers compare with PointFlow / PVD / LION. In PointFlow's ``datasets.py``
  (``Uniform15KPC`` with ``normalize_per_shape=False, normalize_std_per_axis=False``, the setting
  used for its generation results):
    mean = all_points.reshape(-1, 3).mean(axis=0)   # (3,): per axis, over every point of every shape
    std  = all_points.reshape(-1).std()             # scalar: over all coordinates pooled together
    points = (points - mean) / std
  Note the scalar std is taken about the *grand* mean of all coordinates (x, y and z mixed), not
  about the per-axis mean; it is the population std (ddof=0). The statistics are computed on the
  training split (all 15000 points of each shape) and reused unchanged for the val/test split.
"""
from __future__ import annotations

import io as _io
import os
import warnings
import zipfile
from typing import Iterable, Literal

import numpy as np

POINT_EXTENSIONS = (".xyz", ".npy", ".npz", ".pcd", ".las", ".laz")
MESH_EXTENSIONS = (".ply", ".obj", ".off", ".stl", ".glb")
SUPPORTED_EXTENSIONS = POINT_EXTENSIONS + MESH_EXTENSIONS
MAX_FILE_BYTES = 50 * 2**20  # default upload size limit
MAX_POINTS = 5_000_000  # default limit on points (or mesh vertices) in one file
MIN_POINTS = 16  # fewer points than this cannot describe a shape
DEFAULT_SAMPLE_POINTS = 20_000  # surface samples drawn from a mesh when num_points is not given
NPZ_BYTES_PER_POINT = 64  # decompressed-size budget per allowed point (8 float64 columns)

_KIND = {
    ".xyz": "an XYZ text point cloud",
    ".npy": "a NumPy .npy array",
    ".npz": "a NumPy .npz archive",
    ".pcd": "a PCD point cloud",
    ".las": "a LAS (LiDAR) point cloud",
    ".laz": "a LAZ (compressed LiDAR) point cloud",
    ".ply": "a PLY mesh or point cloud",
    ".obj": "an OBJ mesh",
    ".off": "an OFF mesh",
    ".stl": "an STL mesh",
    ".glb": "a GLB (binary glTF) scene",
}
_NPZ_KEYS = ("points", "pc", "xyz")  # preferred array names inside an .npz

# ShapeNetCore synset ids, as listed in PointFlow's datasets.py (from optas/latent_3d_points).
SHAPENET_SYNSETS: dict[str, str] = {
    "airplane": "02691156",
    "bench": "02828884",
    "bottle": "02876657",
    "cabinet": "02933112",
    "car": "02958343",
    "chair": "03001627",
    "lamp": "03636649",
    "monitor": "03211117",
    "mug": "03797390",
    "rifle": "04090263",
    "sofa": "04256520",
    "speaker": "03691459",
    "table": "04379243",
    "telephone": "04401088",
    "vessel": "04530566",
}


class InputError(ValueError):
    """A user-facing problem with an input file, in plain words (the app shows the message as is)."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _fmt_bytes(n: int) -> str:
    if n < 2**10:
        return f"{n} bytes"
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    raise AssertionError(n)


def _short(err: BaseException) -> str:
    """First line of an exception message, trimmed, for use inside an InputError."""
    text = str(err).strip().splitlines()
    text = text[0] if text else ""
    if not text:
        return type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _check_file(path, allowed: tuple[str, ...], max_bytes: int) -> tuple[str, str, str]:
    """Validate a path before reading it. Returns (path, lowercase extension, display name)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise InputError(f"File not found: {path}")
    if os.path.isdir(path):
        raise InputError(f"{name} is a folder, not a file.")
    ext = os.path.splitext(name)[1].lower()
    if ext not in allowed:
        if ext in SUPPORTED_EXTENSIONS:
            raise InputError(f"{name} is {_KIND[ext]}, but a mesh is needed here. "
                             f"Mesh types: {', '.join(allowed)}.")
        shown = f"'{ext}'" if ext else "no extension"
        raise InputError(f"{name}: unsupported file type ({shown}). Supported types: {', '.join(allowed)}.")
    size = os.path.getsize(path)
    if size == 0:
        raise InputError(f"{name} is empty (0 bytes); expected {_KIND[ext]}.")
    if size > max_bytes:
        raise InputError(f"{name} is {_fmt_bytes(size)}, larger than the {_fmt_bytes(max_bytes)} limit.")
    return path, ext, name


def _unreadable(name: str, ext: str, reason: str) -> InputError:
    return InputError(f"Could not read {name} as {_KIND[ext]}: {reason}")


# --------------------------------------------------------------------------------------------
# Point-cloud formats, parsed with numpy
# --------------------------------------------------------------------------------------------

def _as_xyz(arr: np.ndarray, name: str, ext: str) -> np.ndarray:
    """Check dtype and shape of a raw array and return its first three columns as float64."""
    if arr.dtype.kind not in "iuf":
        raise _unreadable(name, ext, f"the array holds {arr.dtype} values, expected numbers.")
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise InputError(f"{name} holds an array of shape {tuple(arr.shape)}; expected shape (N, 3) "
                         "(or (N, C) with C >= 3, the first three columns being x, y, z).")
    return np.asarray(arr[:, :3], dtype=np.float64)


def _read_npy_stream(f, name: str, ext: str, max_points: int, max_data_bytes: int | None) -> np.ndarray:
    """Read one .npy stream, checking its header (shape, dtype, size) before reading the data."""
    if f.read(6) != b"\x93NUMPY":
        raise _unreadable(name, ext, "it does not start with the NumPy array header.")
    try:
        f.seek(0)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as err:
        raise _unreadable(name, ext, _short(err)) from None
    if dtype.hasobject:
        raise _unreadable(name, ext, "the array holds Python objects, which are never loaded (pickle).")
    if dtype.kind not in "iuf":
        raise _unreadable(name, ext, f"the array holds {dtype} values, expected numbers.")
    if len(shape) != 2 or shape[1] < 3:
        raise InputError(f"{name} holds an array of shape {tuple(shape)}; expected shape (N, 3) "
                         "(or (N, C) with C >= 3, the first three columns being x, y, z).")
    if shape[0] > max_points:
        raise InputError(f"{name} has {shape[0]:,} points, more than the limit of {max_points:,}.")
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if max_data_bytes is not None and nbytes > max_data_bytes:
        raise InputError(f"{name}: the array decompresses to {_fmt_bytes(nbytes)}, "
                         f"more than the {_fmt_bytes(max_data_bytes)} limit.")
    try:
        f.seek(0)
        arr = np.lib.format.read_array(f, allow_pickle=False)
    except Exception as err:
        raise _unreadable(name, ext, _short(err)) from None
    return _as_xyz(arr, name, ext)


def _read_npy(path: str, name: str, max_points: int) -> np.ndarray:
    with open(path, "rb") as f:
        return _read_npy_stream(f, name, ".npy", max_points, None)


def _read_npz(path: str, name: str, max_points: int) -> np.ndarray:
    """First array of the archive, or the one named 'points', 'pc' or 'xyz' if present."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if m.filename.endswith(".npy")]
            if not members:
                raise InputError(f"{name} contains no arrays; expected {_KIND['.npz']} holding an (N, 3) array.")
            by_key = {m.filename[: -len(".npy")]: m for m in members}
            key = next((k for k in _NPZ_KEYS if k in by_key), None)
            member = by_key[key] if key is not None else members[0]
            with zf.open(member) as f:
                return _read_npy_stream(f, name, ".npz", max_points, max_points * NPZ_BYTES_PER_POINT)
    except InputError:
        raise
    except Exception as err:  # BadZipFile, zlib errors, truncated archives...
        raise _unreadable(name, ".npz", _short(err)) from None


def _loadtxt_xyz(text: str, name: str, ext: str, columns=(0, 1, 2)) -> np.ndarray:
    """Parse whitespace/comma separated numbers with '#' comments; returns the chosen columns."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" is handled below
            arr = np.loadtxt(_io.StringIO(text.replace(",", " ")), comments="#", usecols=columns,
                             ndmin=2, dtype=np.float64)
    except Exception as err:
        raise _unreadable(name, ext, f"each line needs at least 3 numbers x y z ({_short(err)}).") from None
    if arr.shape[0] == 0:
        raise InputError(f"{name} contains no points (only blank lines or comments).")
    return arr


def _read_xyz(path: str, name: str, max_points: int) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _unreadable(name, ".xyz", "it is not a text file.") from None
    return _loadtxt_xyz(text, name, ".xyz")


_PCD_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4",
              ("I", 8): "<i8", ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}


def _read_pcd(path: str, name: str, max_points: int) -> np.ndarray:
    """PCL's PCD format (v0.7), DATA ascii or binary; x, y, z are taken from the named fields."""
    with open(path, "rb") as f:
        data = f.read()
    header: dict[str, list[str]] = {}
    pos = 0
    while "DATA" not in header:
        end = data.find(b"\n", pos)
        if end < 0 or pos > 65536:
            raise _unreadable(name, ".pcd", "no DATA line found in the header.")
        try:
            line = data[pos:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise _unreadable(name, ".pcd", "the header is not text.") from None
        pos = end + 1
        if line and not line.startswith("#"):
            key, *values = line.split()
            header[key.upper()] = values
    body = data[pos:]

    try:
        fields = header["FIELDS"]
        sizes = [int(s) for s in header["SIZE"]]
        types = [t.upper() for t in header["TYPE"]]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
        if "POINTS" in header:
            num = int(header["POINTS"][0])
        else:
            num = int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
        mode = header["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as err:
        raise _unreadable(name, ".pcd", f"incomplete header ({_short(err)}).") from None
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise _unreadable(name, ".pcd", "FIELDS, SIZE, TYPE and COUNT in the header have different lengths.")
    missing = [c for c in "xyz" if c not in fields]
    if missing:
        raise _unreadable(name, ".pcd", f"no {', '.join(missing)} field (fields: {' '.join(fields)}).")
    if num > max_points:
        raise InputError(f"{name} has {num:,} points, more than the limit of {max_points:,}.")
    if num < 0 or min(counts) < 1 or min(sizes) < 1:
        raise _unreadable(name, ".pcd", "the header gives a negative or zero point count, field size or COUNT.")

    if mode == "ascii":
        starts = np.cumsum([0] + counts[:-1])  # column where each field starts
        columns = tuple(int(starts[fields.index(c)]) for c in "xyz")
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise _unreadable(name, ".pcd", "DATA ascii section is not text.") from None
        points = _loadtxt_xyz(text, name, ".pcd", columns)
        if len(points) != num:
            raise _unreadable(name, ".pcd", f"the header says {num:,} points but the data has {len(points):,} rows.")
        return points
    if mode == "binary":
        try:
            dtype = np.dtype([(f"f{i}", _PCD_TYPES[t, s], (c,) if c > 1 else ())
                              for i, (t, s, c) in enumerate(zip(types, sizes, counts))])
        except KeyError as err:
            raise _unreadable(name, ".pcd", f"unknown field type/size {err.args[0]}.") from None
        except (ValueError, OverflowError) as err:          # a COUNT too large for one record
            raise _unreadable(name, ".pcd", f"impossible field layout ({_short(err)}).") from None
        if len(body) < num * dtype.itemsize:
            raise _unreadable(name, ".pcd", f"the data is truncated: {num:,} points need "
                              f"{num * dtype.itemsize:,} bytes, found {len(body):,}.")
        rec = np.frombuffer(body, dtype=dtype, count=num)
        cols = [rec[f"f{fields.index(c)}"] for c in "xyz"]
        cols = [col[:, 0] if col.ndim == 2 else col for col in cols]
        return np.stack(cols, axis=1).astype(np.float64)
    if mode == "binary_compressed":
        return _read_pcd_compressed(data, body, fields, sizes, counts, num, name)
    raise _unreadable(name, ".pcd", f"unknown DATA mode '{mode}'.")


def _read_pcd_compressed(data: bytes, body: bytes, fields: list[str], sizes: list[int], counts: list[int],
                         num: int, name: str) -> np.ndarray:
    """DATA binary_compressed (LZF, fields stored one after another), decoded by pypcd4 after our size checks."""
    import struct

    from pypcd4 import PointCloud

    if len(body) < 8:
        raise _unreadable(name, ".pcd", "the compressed data is missing (no size fields after the header).")
    packed, unpacked = struct.unpack("<II", body[:8])
    need = num * sum(s * c for s, c in zip(sizes, counts))
    if unpacked != need:                              # checked before decompressing anything
        raise _unreadable(name, ".pcd", f"the header says {num:,} points ({need:,} bytes), but the compressed "
                          f"data holds {unpacked:,} bytes.")
    if len(body) - 8 < packed:
        raise _unreadable(name, ".pcd", f"the compressed data is truncated: {packed:,} bytes announced, "
                          f"{len(body) - 8:,} found.")
    if num == 0:
        raise InputError(f"{name} contains no points.")
    try:
        cloud = PointCloud.from_fileobj(_io.BytesIO(data))
        points = cloud.numpy(("x", "y", "z"))
    except Exception as err:                          # lzf errors, malformed layouts...
        raise _unreadable(name, ".pcd", f"the compressed data cannot be decoded ({_short(err)}).") from None
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def _read_las(path: str, name: str, max_points: int) -> np.ndarray:
    """LAS / LAZ by laspy (LAZ through its lazrs backend): the scaled x, y, z of every point."""
    import laspy

    ext = os.path.splitext(name)[1].lower()
    try:
        with laspy.open(path) as reader:
            count = int(reader.header.point_count)
            if count > max_points:
                raise InputError(f"{name} has {count:,} points, more than the limit of {max_points:,}.")
            las = reader.read()
        return np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1).astype(np.float64)
    except InputError:
        raise
    except Exception as err:  # laspy raises LaspyException and others on corrupt files
        raise _unreadable(name, ext, _short(err)) from None


_POINT_READERS = {".xyz": _read_xyz, ".npy": _read_npy, ".npz": _read_npz, ".pcd": _read_pcd,
                  ".las": _read_las, ".laz": _read_las}


# --------------------------------------------------------------------------------------------
# Mesh formats, through trimesh
# --------------------------------------------------------------------------------------------

def _read_geometry(path: str, ext: str, name: str):
    """Load with trimesh; returns a Trimesh with faces, or an (N, 3) float64 array of points."""
    import trimesh

    try:
        loaded = trimesh.load(path, file_type=ext[1:], process=False)
        if isinstance(loaded, trimesh.Scene):  # flatten, applying each node's transform
            pieces = []
            for node in loaded.graph.nodes_geometry:
                transform, geometry_name = loaded.graph[node]
                piece = loaded.geometry[geometry_name].copy()
                piece.apply_transform(transform)
                pieces.append(piece)
        else:
            pieces = [loaded]
        meshes = [p for p in pieces if isinstance(p, trimesh.Trimesh) and len(p.faces) > 0]
        if meshes:
            mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
            faces = np.asarray(mesh.faces)
            if faces.min() < 0 or faces.max() >= len(mesh.vertices):
                raise ValueError("a face refers to a vertex that does not exist")
            return mesh
        clouds = [np.asarray(p.vertices, dtype=np.float64) for p in pieces
                  if isinstance(p, (trimesh.Trimesh, trimesh.PointCloud)) and len(p.vertices) > 0]
    except Exception as err:  # trimesh raises many types on corrupt files
        raise _unreadable(name, ext, _short(err)) from None
    if not clouds:
        raise _unreadable(name, ext, "no mesh or points found in the file.")
    if any(c.ndim != 2 or c.shape[1] != 3 for c in clouds):   # e.g. OBJ "v" lines with one or two numbers
        raise _unreadable(name, ext, "its vertices do not have three coordinates (x, y, z).")
    return np.concatenate(clouds, axis=0)


def _check_mesh(mesh, name: str, ext: str, max_points: int, drop_nonfinite: bool):
    """Vertex-count, finiteness and surface-area checks shared by load_mesh and load_point_cloud."""
    import trimesh

    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if len(vertices) > max_points:
        raise InputError(f"{name} has {len(vertices):,} vertices, more than the limit of {max_points:,}.")
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        if not drop_nonfinite:
            raise InputError(f"{name}: {bad:,} of {len(vertices):,} vertices have NaN or infinite coordinates.")
        keep = finite[faces].all(axis=1)  # drop faces touching a bad vertex
        if not keep.any():
            raise InputError(f"{name}: every face touches a vertex with NaN or infinite coordinates.")
        mesh = trimesh.Trimesh(vertices, faces[keep], process=False)
    if not mesh.area > 0:
        raise InputError(f"{name}: the mesh has no surface area (all of its faces are degenerate).")
    return mesh


# --------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------

def _check_points(points: np.ndarray, name: str, min_points: int, max_points: int,
                  drop_nonfinite: bool) -> np.ndarray:
    """(N, 3) float64 -> (M, 3) float32 after finiteness, count and extent checks."""
    with np.errstate(over="ignore"):
        points = points.astype(np.float32)  # values beyond float32 range become inf: reported below
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        if not drop_nonfinite:
            raise InputError(f"{name}: {bad:,} of {len(points):,} points have NaN or infinite coordinates. "
                             "Remove those rows and upload again.")
        points = points[finite]
    n = len(points)
    extra = " after dropping points with NaN or infinite coordinates" if not finite.all() else ""
    if n < max(min_points, 1):
        raise InputError(f"{name} has {n:,} points{extra}; at least {min_points:,} are needed.")
    if n > max_points:
        raise InputError(f"{name} has {n:,} points, more than the limit of {max_points:,}.")
    if not np.ptp(points, axis=0).max() > 0:
        raise InputError(f"{name}: all {n:,} points are identical, so there is no shape to read.")
    return np.ascontiguousarray(points)


def _resample(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly num_points rows: a subset without replacement, or all rows plus random repeats."""
    n = len(points)
    if n >= num_points:
        idx = rng.choice(n, num_points, replace=False)
    else:
        idx = np.concatenate([rng.permutation(n), rng.choice(n, num_points - n, replace=True)])
    return points[idx]


def load_point_cloud(path: str | os.PathLike, num_points: int | None = None, *,
                     max_bytes: int = MAX_FILE_BYTES, max_points: int = MAX_POINTS,
                     min_points: int = MIN_POINTS, drop_nonfinite: bool = False,
                     generator: np.random.Generator | None = None) -> np.ndarray:
    """Read any supported file as a point cloud.

    path : str or os.PathLike, with one of SUPPORTED_EXTENSIONS (case-insensitive).
    num_points : if given, return exactly this many points: a random subset without replacement
        when the file has more, all of them plus random repeats when it has fewer. Meshes are
        sampled on their surface (area-weighted, trimesh.sample.sample_surface) with num_points
        or DEFAULT_SAMPLE_POINTS samples; lone point primitives in a scene that has faces are ignored.
    max_bytes, max_points, min_points : limits on file size and on the point (or mesh vertex) count;
        min_points applies to point files, not to meshes.
    drop_nonfinite : rows with NaN/inf are an error by default (nothing is dropped silently);
        when True they are dropped (for meshes: the faces that touch them) and the count checks
        apply to what remains.
    generator : numpy Generator for sampling; None uses fresh OS entropy.

    Returns points : (N, 3) float32, finite, not all identical.
    Raises InputError (a ValueError) with a plain-words message for any problem with the file.
    """
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator or None, got {type(generator).__name__}")
    if num_points is not None and num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points}")
    path, ext, name = _check_file(path, SUPPORTED_EXTENSIONS, max_bytes)
    rng = generator if generator is not None else np.random.default_rng()

    if ext in _POINT_READERS:
        raw = _POINT_READERS[ext](path, name, max_points)
    else:
        raw = _read_geometry(path, ext, name)
        if not isinstance(raw, np.ndarray):  # a mesh with faces: sample its surface
            import trimesh

            mesh = _check_mesh(raw, name, ext, max_points, drop_nonfinite)
            count = num_points or DEFAULT_SAMPLE_POINTS
            samples, _ = trimesh.sample.sample_surface(mesh, count, seed=rng)
            return _check_points(np.asarray(samples, dtype=np.float64), name, 1, count, False)
    points = _check_points(raw, name, min_points, max_points, drop_nonfinite)
    if num_points is not None:
        points = _resample(points, num_points, rng)
    return points


def load_mesh(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES,
              max_vertices: int = MAX_POINTS) -> "trimesh.Trimesh":
    """Read a mesh file (.ply .obj .off .stl .glb) as one trimesh.Trimesh.

    Scenes (GLB) are flattened into one mesh with each node's transform applied; vertices are
    merged (trimesh's default processing) after the checks. Raises InputError when the file is
    missing, of the wrong type, too large, corrupt, has no faces (a point cloud), has NaN/inf
    vertices or has no surface area.
    """
    path, ext, name = _check_file(path, MESH_EXTENSIONS, max_bytes)
    loaded = _read_geometry(path, ext, name)
    if isinstance(loaded, np.ndarray):
        raise InputError(f"{name} contains {len(loaded):,} points but no faces, so it is a point cloud, "
                         "not a mesh.")
    mesh = _check_mesh(loaded, name, ext, max_vertices, drop_nonfinite=False)
    mesh.process()
    return mesh


def load_pc15k(root: str | os.PathLike, category_dir: str,
               split: Literal["train", "val", "test"]) -> np.ndarray:
    """Load one category and split of ShapeNetCore.v2.PC15k (the PointFlow release).

    Layout: root/<synset>/<split>/<model id>.npy, each (15000, 3). category_dir is the synset
    directory name (e.g. "03001627") or a class name from SHAPENET_SYNSETS (e.g. "chair").
    Returns points : (K, M, 3) float32 in file-name order (M = 15000 for the real data; every file
    must have the same shape). PointFlow instead shuffles with a fixed seed; order does not change
    any metric. Unreadable files are an error, not skipped.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be one of 'train', 'val', 'test', got {split!r}")
    root = os.fspath(root)
    synset = category_dir
    if not os.path.isdir(os.path.join(root, synset)) and category_dir in SHAPENET_SYNSETS:
        synset = SHAPENET_SYNSETS[category_dir]
    folder = os.path.join(root, synset, split)
    if not os.path.isdir(folder):
        found = sorted(os.listdir(root)) if os.path.isdir(root) else []
        raise InputError(f"No folder {folder}. Expected the ShapeNetCore.v2.PC15k layout "
                         f"root/<synset>/<split>/*.npy; found under root: {', '.join(found[:20]) or 'nothing'}.")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npy"))
    if not files:
        raise InputError(f"No .npy files in {folder}.")

    out = None
    for i, file_name in enumerate(files):
        try:
            arr = np.load(os.path.join(folder, file_name), allow_pickle=False)
        except Exception as err:
            raise InputError(f"Could not read {os.path.join(folder, file_name)}: {_short(err)}") from None
        if out is None:
            if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "iuf":
                raise InputError(f"{file_name} holds a {arr.dtype} array of shape {arr.shape}; expected (N, 3).")
            out = np.empty((len(files), *arr.shape), dtype=np.float32)  # (K, M, 3)
        if arr.shape != out.shape[1:]:
            raise InputError(f"{file_name} has shape {arr.shape}, but {files[0]} has {out.shape[1:]}; "
                             "all files of a split must have the same number of points.")
        out[i] = arr
        if not np.isfinite(out[i]).all():
            raise InputError(f"{file_name} has NaN or infinite coordinates.")
    return out


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

def normalize_unit_box(points: np.ndarray, fill: float = 0.9) -> tuple[np.ndarray, dict]:
    """Per-shape canonical frame: bounding box centred at 0, longest side scaled to 2 * fill.

    The default fill equals smart3d.geometry.FILL (not imported, to keep this module free of torch).

    points : (N, 3). Returns (points_norm (N, 3) float32, {"center": (3,) float64, "scale": float})
    with points_norm = (points - center) * scale; invert with points_norm / scale + center.
    """
    pts = np.asarray(points)
    assert pts.ndim == 2 and pts.shape[1] == 3 and len(pts) > 0, f"expected (N, 3) points, got {pts.shape}"
    lo = pts.min(axis=0).astype(np.float64)
    hi = pts.max(axis=0).astype(np.float64)
    longest = float((hi - lo).max())
    if not longest > 0:
        raise InputError("All points are identical, so the shape cannot be scaled to the unit box.")
    center = (lo + hi) / 2
    scale = 2.0 * fill / longest
    return ((pts - center) * scale).astype(np.float32), {"center": center, "scale": scale}


def global_normalization_stats(clouds: np.ndarray | Iterable[np.ndarray]) -> dict:
    """PointFlow's global statistics over a whole split (see the module docstring).

    clouds : (K, N, 3) array or an iterable of (N_i, 3) arrays; every point weighs the same.
    Returns {"mean": (3,) float64 per-axis mean over all points, "std": float, the population
    std of all coordinates pooled together (about their grand mean)}. Two passes in float64.
    """
    clouds = list(clouds)
    assert clouds and all(np.ndim(c) == 2 and np.shape(c)[1] == 3 for c in clouds), \
        "expected a non-empty collection of (N, 3) point clouds"
    count = sum(len(c) for c in clouds)
    mean = sum(np.sum(c, axis=0, dtype=np.float64) for c in clouds) / count  # (3,)
    grand = float(mean.mean())  # mean of every coordinate (each point has one x, one y, one z)
    sq = sum(float(np.sum((np.asarray(c, dtype=np.float64) - grand) ** 2)) for c in clouds)
    return {"mean": mean, "std": float(np.sqrt(sq / (3 * count)))}


def normalize_global(points: np.ndarray, stats: dict) -> np.ndarray:
    """(points - mean) / std with stats from global_normalization_stats; (..., 3) -> float32."""
    mean = np.asarray(stats["mean"], dtype=np.float64)
    return ((np.asarray(points, dtype=np.float64) - mean) / float(stats["std"])).astype(np.float32)
