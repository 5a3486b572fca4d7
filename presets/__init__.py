"""Hardware presets: the budget a placement must fit, one JSON file per preset in this folder.

A preset says, per component role, the placement it prefers (resident, offload, stream, sequential); the
planner in `pipelines/placement.py` steps a component down when it does not fit the budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

PRESETS_DIR = Path(__file__).resolve().parent
GIB = 1024**3
PLACEMENTS = ("resident", "offload", "stream", "sequential")
ROLES = ("denoiser", "text_encoder", "vae")
DTYPES = ("float32", "bfloat16", "float16")
# How the denoiser and big text encoders are stored (see pipelines/loading/weight_formats.py); a user may choose per job.
WEIGHT_FORMATS = ("as shipped", "fp8", "int8", "nf4", "fp8 compute")
# Attention backends (see pipelines/speed/attention.py): PyTorch's built-in ones, and the CUDA-only ones when installed.
ATTENTION_BACKENDS = ("sdpa", "sdpa-math", "sage", "flash", "flash3")
CUDA_ONLY_ATTENTION = ("sage", "flash", "flash3")


@dataclass(frozen=True)
class Preset:
    id: str
    label: str
    description: str
    device: str
    dtype: str
    min_vram_gb: float
    min_ram_gb: float
    vram_budget_gb: float
    vram_reserve_gb: float
    placement: Mapping[str, str]
    vae_tiling: bool
    stream_blocks_per_group: int
    weights: str
    # The denoiser's attention backend where the model takes one; "sdpa" is PyTorch's own.
    attention: str
    # Host-to-GPU copy bandwidth the plan's seconds per step assume (GB/s; 0 without a GPU). PCIe 4.0 carries 1.97 GB/s
    # per lane after encoding; pinned copies reach about 80% of a link (measured: 53.7 of 63 GB/s on an H100's PCIe 5.0
    # ×16), so a laptop's PCIe 4.0 ×8 ≈ 13 GB/s and a desktop's PCIe 4.0 ×16 ≈ 25 GB/s.
    host_link_gb_s: float

    @property
    def usable_vram_bytes(self) -> int:
        return int((self.vram_budget_gb - self.vram_reserve_gb) * GIB)


class PresetError(ValueError):
    pass


def _check(data: dict, source: Path) -> Preset:
    fields = set(Preset.__dataclass_fields__)
    missing, unknown = fields - data.keys(), data.keys() - fields
    if missing or unknown:
        raise PresetError(f"{source.name}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    if data["device"] not in ("cpu", "cuda"):
        raise PresetError(f"{source.name}: device must be cpu or cuda, not {data['device']!r}")
    if data["dtype"] not in DTYPES:
        raise PresetError(f"{source.name}: dtype must be one of {DTYPES}, not {data['dtype']!r}")
    if data["weights"] not in WEIGHT_FORMATS or (data["weights"] in ("nf4", "fp8 compute") and data["device"] != "cuda"):
        raise PresetError(
            f"{source.name}: weights must be one of {WEIGHT_FORMATS} (nf4 and fp8 compute on cuda only), not {data['weights']!r}"
        )
    if data["attention"] not in ATTENTION_BACKENDS or (data["attention"] in CUDA_ONLY_ATTENTION and data["device"] != "cuda"):
        raise PresetError(
            f"{source.name}: attention must be one of {ATTENTION_BACKENDS} ({', '.join(CUDA_ONLY_ATTENTION)} on cuda only), "
            f"not {data['attention']!r}"
        )
    placement = data["placement"]
    if set(placement) != set(ROLES) or not set(placement.values()) <= set(PLACEMENTS):
        raise PresetError(f"{source.name}: placement needs {ROLES}, each one of {PLACEMENTS}; got {placement}")
    if data["vram_reserve_gb"] > data["vram_budget_gb"] or data["stream_blocks_per_group"] < 1:
        raise PresetError(f"{source.name}: reserve exceeds budget, or stream_blocks_per_group < 1")
    return Preset(**{**data, "placement": MappingProxyType(dict(placement))})


def load_presets(folder: Path = PRESETS_DIR) -> dict[str, Preset]:
    """Every preset in `folder`, by id, in ascending order of VRAM."""
    presets = [_check(json.loads(path.read_text()), path) for path in sorted(folder.glob("*.json"))]
    presets.sort(key=lambda preset: preset.min_vram_gb)
    return {preset.id: preset for preset in presets}


def choose_preset(presets: Mapping[str, Preset], vram_bytes: int, ram_bytes: int) -> tuple[Preset, list[str]]:
    """The preset for a machine with `vram_bytes` of GPU memory (0 = no usable GPU) and `ram_bytes` of RAM.

    The VRAM class decides: the largest preset whose minimum the GPU meets. RAM below what that preset
    expects for holding offloaded weights does not change the choice (less residency would need *more*
    RAM) but is reported, so the UI can say why a large model may not load.
    """
    cpu = next(preset for preset in presets.values() if preset.device == "cpu")
    fitting = [p for p in presets.values() if p.device == "cuda" and p.min_vram_gb * GIB <= vram_bytes]
    warnings = []
    if vram_bytes > 0 and not fitting:
        warnings.append(f"The GPU has {vram_bytes / GIB:.1f} GB, below the smallest GPU preset; running on the CPU.")
    chosen = max(fitting, key=lambda preset: preset.min_vram_gb) if fitting else cpu
    if ram_bytes < chosen.min_ram_gb * GIB:
        warnings.append(
            f"This machine has {ram_bytes / GIB:.0f} GB of RAM; the {chosen.label} preset expects {chosen.min_ram_gb:.0f} GB "
            "to hold offloaded weights, so the largest models may not load."
        )
    return chosen, warnings
