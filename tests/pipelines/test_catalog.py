import importlib

import diffusers
import pytest

from pipelines.catalog import FAMILIES, MODELS, MODELS_BY_ID, Family, SpeechDefaults, Task

REQUIRED = [
    "sd3-medium", "sd35-medium", "sd35-large", "sd3-medium-hyper8", "flux1-dev", "flux1-schnell", "hidream-i1-full",
    "hidream-i1-dev", "hidream-i1-fast", "cogview4-6b", "openaudio-s1-mini",
]
IMAGE_TASKS = (Task.TEXT_TO_IMAGE, Task.CANNY_TO_IMAGE, Task.DEPTH_TO_IMAGE, Task.IMAGE_VARIATION)
IMAGE_MODELS = [spec for spec in MODELS if spec.task in IMAGE_TASKS]
SPEECH_MODELS = [spec for spec in MODELS if spec.task is Task.TEXT_TO_SPEECH]


def test_required_models_are_in_the_catalog():
    for model_id in REQUIRED:
        assert model_id in MODELS_BY_ID


def test_ids_are_unique():
    assert len({spec.id for spec in MODELS}) == len(MODELS)


@pytest.mark.parametrize("spec", IMAGE_MODELS, ids=lambda spec: spec.id)
def test_image_entry_is_complete_and_consistent(spec):
    family = FAMILIES[spec.family]
    assert hasattr(diffusers, spec.pipeline_class)
    assert not family.img2img_pipeline_class or hasattr(diffusers, family.img2img_pipeline_class)
    assert spec.licence
    assert spec.weight_bytes > 0
    assert spec.defaults.steps >= 1
    assert spec.defaults.scheduler in [choice.name for choice in family.schedulers]
    for size in (spec.defaults.width, spec.defaults.height):
        assert family.min_size <= size <= family.max_size and size % family.size_multiple == 0
    if spec.base:
        base = MODELS_BY_ID[spec.base]
        assert base.family is spec.family and base.demo is spec.demo
    elif not spec.demo:
        assert spec.repo and "/" in spec.repo
    assert set(spec.component_bytes) - {"lora"} <= set(family.component_roles)
    if spec.companion is not None:
        # A companion's bytes count in the download: its encoder's, or its prior's components'.
        counted = [spec.companion.encoder] if spec.companion.encoder else [n for n in family.component_roles if n.startswith("prior_")]
        assert counted and all(name in spec.component_bytes for name in counted)
        assert bool(spec.companion.encoder) != bool(spec.companion.prior_pipeline_class), "an encoder or a prior, not both"
        assert not spec.companion.prior_pipeline_class or hasattr(diffusers, spec.companion.prior_pipeline_class)


def test_flux_tools_are_the_published_repos_and_redux_shares_flux_dev_weights():
    canny, depth, redux = (MODELS_BY_ID[i] for i in ("flux1-canny-dev", "flux1-depth-dev", "flux1-redux-dev"))
    assert (canny.repo, canny.task, canny.pipeline_class) == ("black-forest-labs/FLUX.1-Canny-dev", Task.CANNY_TO_IMAGE, "FluxControlPipeline")
    assert (canny.defaults.steps, canny.defaults.guidance) == (50, 30.0)
    assert (depth.repo, depth.task, depth.pipeline_class) == ("black-forest-labs/FLUX.1-Depth-dev", Task.DEPTH_TO_IMAGE, "FluxControlPipeline")
    assert redux.base == "flux1-dev" and redux.pipeline_class == "FluxPipeline"
    assert (redux.companion.repo, redux.companion.prior_pipeline_class) == ("black-forest-labs/FLUX.1-Redux-dev", "FluxPriorReduxPipeline")
    for task in (Task.CANNY_TO_IMAGE, Task.DEPTH_TO_IMAGE, Task.IMAGE_VARIATION):
        assert any(spec.demo and spec.task is task for spec in MODELS), f"a demo model for {task.value}"


@pytest.mark.parametrize("spec", SPEECH_MODELS, ids=lambda spec: spec.id)
def test_speech_entry_is_complete_and_consistent(spec):
    assert spec.family is Family.FISH_SPEECH and isinstance(spec.defaults, SpeechDefaults)
    assert spec.licence and spec.weight_bytes > 0 and spec.folder_marker == "codec.pth"
    assert set(spec.component_bytes) == {"dual_ar", "codec"}
    if not spec.demo:
        assert spec.repo == "fishaudio/openaudio-s1-mini"
        assert {"*.pth", "*.json", "*.tiktoken"} <= set(spec.allow_patterns)


@pytest.mark.parametrize("family", list(Family))
def test_every_family_has_a_demo_model(family):
    assert any(spec.demo and spec.family is family and not spec.base for spec in MODELS)


def test_hyper_sd_is_a_fast_preset_of_sd3_medium():
    hyper = MODELS_BY_ID["sd3-medium-hyper8"]
    assert hyper.base == "sd3-medium"
    assert hyper.lora.repo == "ByteDance/Hyper-SD" and hyper.lora.scale == 0.125
    assert hyper.defaults.steps == 8


def test_hyper_flux_is_an_8_step_fast_preset_of_flux_dev_with_a_demo_twin():
    hyper = MODELS_BY_ID["flux1-dev-hyper8"]
    assert hyper.base == "flux1-dev" and hyper.family is Family.FLUX
    assert (hyper.lora.repo, hyper.lora.filename, hyper.lora.scale) == ("ByteDance/Hyper-SD", "Hyper-FLUX.1-dev-8steps-lora.safetensors", 0.125)
    assert (hyper.defaults.steps, hyper.defaults.guidance) == (8, 3.5)
    twin = MODELS_BY_ID["demo-flux-hyper8"]
    assert twin.demo and twin.base == "demo-flux" and twin.lora.scale == 0.125 and twin.defaults.steps == 8


def test_real_models_are_sized_like_the_published_checkpoints():
    # FLUX's transformer alone is ~23.8 GB in bf16; SD3 Medium's ~4.2 GB.
    assert MODELS_BY_ID["flux1-dev"].component_bytes["transformer"] > 20e9
    assert 3e9 < MODELS_BY_ID["sd3-medium"].component_bytes["transformer"] < 5e9


def test_demo_models_are_labelled_as_demo():
    for spec in MODELS:
        assert ("demo" in spec.label.lower()) == spec.demo


def test_schedulers_name_real_diffusers_classes():
    for family in FAMILIES.values():
        for choice in family.schedulers:
            assert hasattr(importlib.import_module("diffusers"), choice.class_name)


MUSIC_MODELS = [spec for spec in MODELS if spec.task is Task.TEXT_TO_MUSIC]


@pytest.mark.parametrize("spec", MUSIC_MODELS, ids=lambda spec: spec.id)
def test_music_entry_is_complete_and_its_defaults_are_accepted(spec, demo_models_dir):
    import json

    from pipelines.audio.music_runner import LIMITS

    assert hasattr(diffusers, spec.pipeline_class) and spec.licence and spec.weight_bytes > 0
    for name in ("steps", "guidance", "duration", "shift"):
        low, high = LIMITS[name]
        assert low <= getattr(spec.defaults, name) <= high, name
    # Every component of the real folder layout has a role, so presets place each one.
    index = json.loads((demo_models_dir / "demo" / "demo-ace-step" / "model_index.json").read_text())
    models = {name for name in index if not name.startswith("_")} - {"tokenizer", "scheduler"}
    assert models == set(FAMILIES[spec.family].component_roles)


VIDEO_MODELS = [spec for spec in MODELS if spec.task in (Task.TEXT_TO_VIDEO, Task.IMAGE_TO_VIDEO)]


def test_required_video_models_are_in_the_catalog():
    repos = {spec.repo for spec in VIDEO_MODELS}
    assert {
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "Wan-AI/Wan2.1-VACE-14B-diffusers",
    } <= repos
    assert any(spec.family is Family.LTX and "distilled" in spec.repo for spec in VIDEO_MODELS if spec.repo)


@pytest.mark.parametrize("spec", VIDEO_MODELS, ids=lambda spec: spec.id)
def test_video_entry_is_complete_and_consistent(spec):
    family = FAMILIES[spec.family]
    rules, defaults = family.video, spec.defaults
    assert hasattr(diffusers, spec.pipeline_class) and spec.licence and spec.weight_bytes > 0
    assert rules.nearest_frames(defaults.frames) == defaults.frames and rules.min_frames <= defaults.frames <= rules.max_frames
    for size in (defaults.width, defaults.height):
        assert family.min_size <= size <= family.max_size and size % family.size_multiple == 0
    assert set(spec.component_bytes) <= set(family.component_roles)
    # Every image-to-video model encodes its picture (Wan I2V: CLIP; FramePack: SigLIP), with an encoder of its own
    # except HunyuanVideo I2V, whose Llava text encoder reads the picture beside the prompt.
    own_encoder = spec.task is Task.IMAGE_TO_VIDEO and spec.family is not Family.HUNYUANVIDEO
    assert ("image_encoder" in spec.component_bytes) == own_encoder
    if rules.image_to_video_pipeline_class:
        assert hasattr(diffusers, rules.image_to_video_pipeline_class)
    if not spec.demo:
        assert spec.repo and "/" in spec.repo


@pytest.mark.parametrize(
    "family, asked, made", [(Family.WAN, 10, 9), (Family.WAN, 11, 13), (Family.WAN, 2, 5), (Family.LTX, 20, 17), (Family.LTX, 21, 25)]
)
def test_frames_round_to_the_nearest_count_the_family_makes(family, asked, made):
    assert FAMILIES[family].video.nearest_frames(asked) == made


@pytest.mark.parametrize("asked, window, made", [(150, 9, 145), (10, 9, 37), (5000, 9, 1801), (150, 5, 141), (17, 2, 17)])
def test_framepack_lengths_are_whole_sections_of_the_window(asked, window, made):
    # A section of `window` latent frames is 4·window video frames; at least one, at most 60 s at 30 fps.
    assert FAMILIES[Family.FRAMEPACK].video.nearest_frames(asked, window=window) == made


def test_framepack_entries_assemble_their_pipeline_from_three_repos():
    for model_id, sampling in (("framepack-i2v-hy", "inverted_anti_drifting"), ("framepack-f1-i2v-hy", "vanilla")):
        spec = MODELS_BY_ID[model_id]
        assert [source.repo for source in spec.component_repos] == ["hunyuanvideo-community/HunyuanVideo", "lllyasviel/flux_redux_bfl"]
        assert dict(spec.defaults.call_kwargs)["sampling_type"] == sampling and spec.defaults.fps == 30
        named = {name for source in spec.component_repos for name in source.components}
        assert set(spec.component_bytes) - named == {"transformer"}, "every component but the transformer comes from a component repo"
    assert MODELS_BY_ID["demo-framepack"].component_repos[0].components == MODELS_BY_ID["framepack-i2v-hy"].component_repos[0].components


def test_video_workloads_count_the_tokens_the_transformer_sees():
    # Wan2.1 at 832×480×81: 21 latent frames of 52×30 patches, the figure the memory planner was measured at.
    assert FAMILIES[Family.WAN].video.denoiser_tokens(832, 480, 81) == 32_760
    # LTX-Video at 768×512×161: 21 latent frames of 24×16 latents (patch 1).
    assert FAMILIES[Family.LTX].video.denoiser_tokens(768, 512, 161) == 8_064


def test_defaults_sizes_and_licences_are_the_authors():
    """Each value is the one its authors publish (the catalog comments cite the source)."""
    from pipelines.catalog import MODELS_BY_ID

    def video(model_id):
        defaults = MODELS_BY_ID[model_id].defaults
        return defaults.steps, defaults.guidance, defaults.flow_shift

    # Wan2.1 README: T2V-1.3B at guidance 6, shift 8-12; generate.py: 40 steps for I2V, shift 16 for VACE.
    assert video("wan21-t2v-1.3b") == (50, 6.0, 8.0)
    assert video("wan21-i2v-14b-480p")[0] == video("wan21-i2v-14b-720p")[0] == 40
    assert video("wan21-vace-1.3b")[2] == video("wan21-vace-14b")[2] == 16.0
    # diffusers' LTX-Video docs for 0.9.7 distilled: guidance 1 with guidance_rescale 0.7.
    assert dict(MODELS_BY_ID["ltx-video-0.9.7-distilled"].defaults.call_kwargs)["guidance_rescale"] == 0.7
    # SkyReels V2's README: long videos with addnoise_condition 20.
    for model_id in ("skyreels-v2-df-1.3b-540p", "skyreels-v2-df-14b-540p", "skyreels-v2-df-14b-720p"):
        assert dict(MODELS_BY_ID[model_id].defaults.call_kwargs)["addnoise_condition"] == 20
    assert MODELS_BY_ID["ace-step-15-xl-turbo"].licence.startswith("MIT")
    assert 15.5e9 < MODELS_BY_ID["omnigen-v1"].weight_bytes < 16e9
    assert MODELS_BY_ID["ltx-video-0.9.6-distilled"].defaults.steps == 8
