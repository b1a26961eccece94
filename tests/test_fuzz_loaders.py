"""A small pass of the loader fuzzer (``benchmarks/fuzz_loaders.py``; the big run does 10 000 inputs per
loader): random and mutated files give a result or a plain ValueError, never a crash or a hang."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

_spec = importlib.util.spec_from_file_location(
    "fuzz_loaders", Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_loaders.py")
fuzz_loaders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_loaders)


@pytest.mark.parametrize("loader, examples", [("load_point_cloud", 120), ("load_mesh", 60), ("open_image", 60)])
def test_random_and_mutated_files_give_a_result_or_a_plain_error(loader, examples, tmp_path):
    counts = fuzz_loaders.fuzz(loader, examples, seed=1, time_limit=20.0, folder=tmp_path)
    assert counts["inputs"] == examples
    assert counts["crash"] == 0 and counts["hang"] == 0, counts["crashes"]
    assert counts["ok"] + counts["value_error"] == examples
    assert counts["ok"] > 0 and counts["value_error"] > 0          # both kinds of input were drawn
