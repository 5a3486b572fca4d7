"""Tiny random-weight models built from configs, saved in the real folder layout of their family.

They are the offline demo and the test fixtures: `build_tiny_model(family, folder)` writes a folder that
loads exactly like a downloaded checkpoint (`from_pretrained` for diffusers families, our own loader for
Fish Speech).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.catalog import Family, Task
from pipelines.tiny import (
    ace_step, cogview4, fish_speech, flux, framepack, hidream, hunyuanvideo, hunyuanvideo_i2v, ltx, omnigen, sd3, sd15, sdxl, skyreels_v2, wan,
)

# Bump when a builder changes, so demo folders built by an older version are rebuilt.
BUILDER_VERSION = 4

_BUILDERS = {
    Family.SD3: sd3.build,
    Family.FLUX: flux.build,
    Family.HIDREAM: hidream.build,
    Family.COGVIEW4: cogview4.build,
    Family.SD15: sd15.build,
    Family.SDXL: sdxl.build,
    Family.FISH_SPEECH: fish_speech.build,
    Family.ACE_STEP: ace_step.build,
    Family.WAN: wan.build,
    Family.WAN_VACE: wan.build_vace,
    Family.SKYREELS_V2: skyreels_v2.build,
    Family.LTX: ltx.build,
    Family.OMNIGEN: omnigen.build,
    # The transformer alone, at the folder's root, as FramePack's repos publish it.
    Family.FRAMEPACK: framepack.build_transformer,
    Family.HUNYUANVIDEO: hunyuanvideo.build,
}
# Models of a family with weights of their own for another task: Wan's and HunyuanVideo's image-to-video models (LTX runs image to video
# on its text-to-video model), FLUX.1 Fill, and FLUX.1 Canny and Depth (control transformers).
_TASK_BUILDERS = {
    (Family.WAN, Task.IMAGE_TO_VIDEO): wan.build_image_to_video,
    (Family.HUNYUANVIDEO, Task.IMAGE_TO_VIDEO): hunyuanvideo_i2v.build,
    (Family.FLUX, Task.INPAINT): flux.build_fill,
    (Family.FLUX, Task.CANNY_TO_IMAGE): flux.build_control,
    (Family.FLUX, Task.DEPTH_TO_IMAGE): flux.build_control,
}


def build_tiny_model(family: Family, folder: Path, seed: int = 0, task: Task | None = None) -> None:
    """Write a tiny random-weight pipeline of `family` (for `task`, where the family has a model of its own for it)
    into `folder` (which must not exist yet)."""
    builder = _TASK_BUILDERS.get((family, task), _BUILDERS[family])
    builder(Path(folder), seed)


_LORA_BUILDERS = {
    Family.SD3: sd3.build_lora,
    Family.FLUX: flux.build_lora,
    Family.ACE_STEP: ace_step.build_lora,
}


# Demo companions (see `CompanionRepo`) by id: the components a pipeline takes from a repo of its own.
_COMPANION_BUILDERS = {
    "demo-llama": hidream.build_llama,
    "demo-flux-redux-prior": flux.build_redux_prior,
    "demo-ltxv-spatial-upscaler": ltx.build_latent_upsampler,
}


def build_tiny_companion(companion_id: str, folder: Path, seed: int = 0) -> None:
    """Write the tiny stand-in for the demo companion `companion_id` into `folder`."""
    _COMPANION_BUILDERS[companion_id](Path(folder), seed)


# Component repos (see `ComponentRepo`) by the id of their demo stand-in.
_COMPONENT_REPO_BUILDERS = {
    "demo-hunyuanvideo-base": framepack.build_hunyuanvideo_base,
    "demo-flux-redux-siglip": framepack.build_redux_image_encoder,
}


def build_tiny_component_repo(repo_id: str, folder: Path, seed: int = 0) -> None:
    """Write the tiny stand-in for the component repo `repo_id` into `folder`."""
    _COMPONENT_REPO_BUILDERS[repo_id](Path(folder), seed)


def build_tiny_lora(family: Family, path: Path, seed: int = 0) -> None:
    """Write a random LoRA for the tiny `family` transformer, in diffusers' LoRA file layout."""
    if family not in _LORA_BUILDERS:
        raise ValueError(f"no tiny LoRA builder for {family.value}")
    _LORA_BUILDERS[family](Path(path), seed)
