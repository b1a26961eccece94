"""Self-describing weights: ``NAME.safetensors`` (tensors) + ``NAME.json`` (config and metadata).

Every shipped model is a module built from a frozen config dataclass; ``save_pretrained`` writes
both files and ``load_pretrained`` rebuilds the module from the JSON and loads the tensors strictly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def save_pretrained(module: torch.nn.Module, config, path: str | Path, **metadata) -> Path:
    """Write ``path.safetensors`` and ``path.json`` ({"config": ..., **metadata})."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(path.with_suffix(".safetensors")))
    doc = {"config": dataclasses.asdict(config), **metadata}
    path.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    return path


def matching_state(module: torch.nn.Module, source: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state with every tensor of ``source`` whose name and shape it shares (a warm start
    across configs that differ in a few layers); load it with ``module.load_state_dict``."""
    state = module.state_dict()
    state.update({k: v for k, v in source.state_dict().items() if k in state and v.shape == state[k].shape})
    return state


def read_config(path: str | Path) -> dict:
    """The JSON document next to the weights."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def load_pretrained(module_cls, config_cls, path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild ``module_cls(config_cls(**json["config"]))`` and load the tensors strictly."""
    path = Path(path).with_suffix("")
    if not path.with_suffix(".safetensors").exists():
        raise FileNotFoundError(f"no weights at {path}.safetensors (see README: training commands)")
    cfg = read_config(path)["config"]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    config = config_cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in fields})
    module = module_cls(config)
    module.load_state_dict(load_file(str(path.with_suffix(".safetensors"))), strict=True)
    return module.to(device).eval()


def best_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def cpu_has_amx() -> bool:
    """Intel AMX (bf16 tile matmuls) on this CPU: there bf16 autocast makes training and sampling several times faster.
    Read once (every decoding and every repair round asks)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run under bf16 autocast: ``precision`` "bf16" / "fp32", or "auto" (CUDA, and CPUs with AMX)."""
    if precision == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_amx())
    return precision == "bf16"
