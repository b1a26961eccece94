"""smart3d: masked autoregressive 3D shape generation (SMART-3D + MAR-3D ideas).

Conventions used everywhere in the package:
- y is up, the front of an object faces +z, units are arbitrary in "shape space".
- The *canonical frame* is the per-shape unit box: the bounding box is centred at the origin and
  its longest side scaled to ``2 * FILL`` (see ``smart3d.geometry``), so shapes sit inside the
  voxel cube [-1, 1]^3 with a small margin.
- Voxel grids are indexed ``[x, y, z]``; a 32^3 grid is split into 4^3 patches -> an 8^3 grid of
  512 tokens, flattened in C order (x slowest).
"""

__all__ = ["load_pipeline", "Pipeline", "Result", "SamplingOptions", "Step", "CLASSES"]

_EXPORTS = {"load_pipeline": "pipeline", "Pipeline": "pipeline", "Result": "pipeline",
            "SamplingOptions": "sampler", "Step": "sampler", "CLASSES": "shapes"}


def __getattr__(name: str):
    """``from smart3d import load_pipeline`` imports torch and the model only when asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'smart3d' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
