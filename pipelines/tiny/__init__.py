"""Tiny random-weight models built from configs, saved in the real folder layout of their family.

They are the offline demo and the test fixtures: `build_tiny_model(family, folder)` writes a folder that
loads exactly like a downloaded checkpoint (`from_pretrained` for diffusers families, our own loader for
Fish Speech).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.catalog import Family
from pipelines.tiny import fish_speech, flux, sd3, sd15, sdxl

# Bump when a builder changes, so demo folders built by an older version are rebuilt.
BUILDER_VERSION = 3

_BUILDERS = {
    Family.SD3: sd3.build,
    Family.FLUX: flux.build,
    Family.SD15: sd15.build,
    Family.SDXL: sdxl.build,
    Family.FISH_SPEECH: fish_speech.build,
}


def build_tiny_model(family: Family, folder: Path, seed: int = 0) -> None:
    """Write a tiny random-weight pipeline of `family` into `folder` (which must not exist yet)."""
    _BUILDERS[family](Path(folder), seed)


def build_tiny_lora(family: Family, path: Path, seed: int = 0) -> None:
    """Write a random LoRA for the tiny `family` transformer, in diffusers' LoRA file layout."""
    if family is not Family.SD3:
        raise ValueError(f"no tiny LoRA builder for {family.value}")
    sd3.build_lora(Path(path), seed)
