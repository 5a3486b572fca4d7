import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.catalog import Catalog, Family
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.lora_library import LoraChoice, LoraLibrary, family_of_keys, parse_lora_list
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import read_parameters
from pipelines.tiny import build_tiny_lora


@pytest.fixture
def loras_dir(demo_loras_dir, tmp_path):
    """A private copy of the test LoRA library that a test may change."""
    folder = tmp_path / "loras"
    shutil.copytree(demo_loras_dir, folder)
    return folder


@pytest.fixture
def manager(demo_models_dir, loras_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True, loras_dir=loras_dir), presets["cpu"])


def make(manager, outputs, model="demo-sd3", loras="", seed=4):
    request = ImageRequest(prompt="a fox", model=model, steps=2, seed=seed, width=256, height=256, loras=loras)
    return generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]


def pixels(saved) -> np.ndarray:
    return np.asarray(Image.open(saved.path))


def test_the_scan_offers_each_lora_only_for_its_family(loras_dir):
    library = LoraLibrary(loras_dir)
    assert [lora.name for lora in library.for_family(Family.SD3)] == ["detail.safetensors", "style.safetensors"]
    assert [lora.name for lora in library.for_family(Family.FLUX)] == ["flux/glow.safetensors"]
    assert {lora.name: lora.family for lora in library.scan()}["notes.safetensors"] is None, "not a LoRA: offered nowhere"


def test_a_rescan_sees_files_added_after_start(loras_dir):
    library = LoraLibrary(loras_dir)
    build_tiny_lora(Family.FLUX, loras_dir / "added.safetensors", seed=9)
    assert "added.safetensors" in [lora.name for lora in library.for_family(Family.FLUX)]


@pytest.mark.parametrize(
    "key, family",
    [
        ("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", Family.SD3),  # diffusers / peft, SD3
        ("lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight", Family.SD3),  # kohya, SD3
        ("transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight", Family.FLUX),  # diffusers / peft, FLUX
        ("lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", Family.FLUX),  # kohya, FLUX
        ("diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight", Family.FLUX),  # BFL / ComfyUI, FLUX
        ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", None),  # SDXL: no family of ours
    ],
)
def test_the_family_is_read_from_key_names_in_every_layout(key, family):
    # A FLUX LoRA carries SD3-like double-block names beside its single-block ones.
    keys = [key, "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"] if family is Family.FLUX else [key]
    assert family_of_keys(keys) is family


def test_two_loras_with_weights_change_the_output_and_leaving_them_out_restores_it_exactly(manager, outputs):
    base = pixels(make(manager, outputs))
    both = pixels(make(manager, outputs, loras="detail.safetensors:1, style.safetensors:0.7"))
    reweighted = pixels(make(manager, outputs, loras="detail.safetensors:0.4\nstyle.safetensors:0.7"))
    one = pixels(make(manager, outputs, loras="detail.safetensors:1"))
    assert not np.array_equal(both, base) and not np.array_equal(reweighted, both) and not np.array_equal(one, both)
    assert np.array_equal(pixels(make(manager, outputs)), base), "a job without LoRAs gives the base output bit for bit"
    assert np.array_equal(pixels(make(manager, outputs, loras="detail.safetensors:1, style.safetensors:0.7")), both)


def test_a_flux_lora_changes_flux_and_leaves_no_trace(manager, outputs):
    base = pixels(make(manager, outputs, model="demo-flux"))
    assert not np.array_equal(pixels(make(manager, outputs, model="demo-flux", loras="flux/glow.safetensors:1")), base)
    assert np.array_equal(pixels(make(manager, outputs, model="demo-flux")), base)


def test_loaded_adapters_stay_on_the_loaded_model_between_jobs(manager, outputs):
    make(manager, outputs, loras="detail.safetensors:1")
    with manager.use("demo-sd3") as pipe:
        first = pipe.transformer
        assert len(pipe.get_list_adapters()["transformer"]) == 1
    make(manager, outputs, loras="detail.safetensors:0.5, style.safetensors:1")
    with manager.use("demo-sd3") as pipe:
        assert pipe.transformer is first and len(pipe.get_list_adapters()["transformer"]) == 2


def test_metadata_lists_each_lora_with_its_weight_and_hash(manager, outputs, loras_dir):
    from pipelines.media import file_digest

    saved = make(manager, outputs, loras="detail.safetensors:0.8, flux/../style.safetensors:-0.5")
    for record in (saved.parameters, read_parameters(saved.path), read_parameters(saved.path.with_suffix(".json"))):
        assert record["loras"] == [
            {"file": "detail.safetensors", "weight": 0.8, "sha256": file_digest(loras_dir / "detail.safetensors")},
            {"file": "style.safetensors", "weight": -0.5, "sha256": file_digest(loras_dir / "style.safetensors")},
        ]
    assert make(manager, outputs).parameters["loras"] == []


@pytest.mark.parametrize("model", ["demo-sd3-hyper8", "demo-flux-hyper8"])
def test_the_checkpoint_is_identified_by_model_and_the_hash_of_its_fused_lora(manager, outputs, demo_models_dir, model):
    from pipelines.media import file_digest

    saved = make(manager, outputs, model=model)
    fused = demo_models_dir / "demo" / model / "demo-lora.safetensors"
    assert saved.parameters["model"] == model
    assert saved.parameters["lora"] == {"repo": None, "filename": "demo-lora.safetensors", "scale": 0.125, "sha256": file_digest(fused)}
    assert make(manager, outputs, model="demo-sd3").parameters["lora"] is None


def test_a_lora_changed_on_disk_is_loaded_again(manager, outputs, loras_dir):
    before = make(manager, outputs, loras="detail.safetensors:1")
    target = loras_dir / "detail.safetensors"
    target.unlink()
    build_tiny_lora(Family.SD3, target, seed=7)
    after = make(manager, outputs, loras="detail.safetensors:1")
    assert after.parameters["loras"][0]["sha256"] != before.parameters["loras"][0]["sha256"]
    assert not np.array_equal(pixels(after), pixels(before))
    with manager.use("demo-sd3") as pipe:
        assert len(pipe.get_list_adapters()["transformer"]) == 1, "the adapter of the old content is dropped"


def _lora_for_a_bigger_flux(path):
    """A FLUX LoRA (its keys say so) made for a model with more single blocks than the tiny FLUX has."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=4, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 4, 8),
    )
    _save_lora(FluxPipeline, transformer, path)


def _lora_for_a_wider_sd3(path):
    """An SD3 LoRA with the tiny SD3's layer names but twice its width."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64, pos_embed_max_size=96,
    )
    _save_lora(StableDiffusion3Pipeline, transformer, path)


def _save_lora(pipeline_class, transformer, path):
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k"], init_lora_weights=False)
    layers = get_peft_model_state_dict(inject_adapter_in_model(config, transformer))
    pipeline_class.save_lora_weights(path.parent, transformer_lora_layers=layers, weight_name=path.name)


@pytest.mark.parametrize(
    "model, fitting, build, reason",
    [
        ("demo-flux", "flux/glow.safetensors", _lora_for_a_bigger_flux, "the model lacks, e.g. transformer.single_transformer_blocks.2"),
        ("demo-sd3", "detail.safetensors", _lora_for_a_wider_sd3, "size mismatch"),
    ],
)
def test_a_lora_that_does_not_fit_the_model_is_refused_by_name_and_the_next_job_works(manager, outputs, loras_dir, model, fitting, build, reason):
    build(loras_dir / "misfit.safetensors")
    base = pixels(make(manager, outputs, model=model))
    with pytest.raises(InvalidRequest, match=rf"(?s)misfit.safetensors does not fit .*{re.escape(reason)}"):
        make(manager, outputs, model=model, loras=f"{fitting}:1, misfit.safetensors:1")
    assert np.array_equal(pixels(make(manager, outputs, model=model)), base)
    assert len(list(outputs.root.rglob("*.png"))) == 2, "the refused job saved nothing"


@pytest.mark.parametrize(
    "loras, message",
    [
        ("missing.safetensors:1", "no LoRA called 'missing.safetensors'"),
        ("../outside.safetensors", "no LoRA called '../outside.safetensors'"),
        ("flux/glow.safetensors:1", "flux/glow.safetensors is made for FLUX; SD3 (tiny) takes SD3 LoRAs"),
        ("notes.safetensors", "notes.safetensors is not made for any model family"),
        ("detail.safetensors:1, copy-of-detail.safetensors:0.5", "copy-of-detail.safetensors is the same file as detail.safetensors"),
    ],
)
def test_a_lora_missing_or_for_another_family_is_refused_before_anything_loads(manager, outputs, loras_dir, loras, message):
    shutil.copy(loras_dir / "detail.safetensors", loras_dir / "copy-of-detail.safetensors")
    manager.unload()
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        make(manager, outputs, loras=loras)
    assert manager.status().model_id is None


@pytest.mark.parametrize(
    "value, message",
    [
        ("a.safetensors:strong", "write it as name:weight"),
        ("a.safetensors:9", "from -4 to 4"),
        ("a.safetensors:nan", "from -4 to 4"),
        ("a.safetensors:1, a.safetensors:0.5", "listed twice"),
        (",".join(f"l{i}.safetensors" for i in range(9)), "at most 8"),
    ],
)
def test_a_bad_lora_list_names_what_is_wrong(value, message):
    with pytest.raises(InvalidRequest, match=message) as error:
        ImageRequest(prompt="a fox", model="demo-sd3", loras=value).check(Catalog())
    assert error.value.field == "loras"


def test_a_lora_list_reads_as_text_or_as_a_list():
    expected = (LoraChoice("a.safetensors", 0.5), LoraChoice("sub/b.safetensors", 1.0))
    assert parse_lora_list("a.safetensors:0.5,\n sub/b.safetensors") == expected
    assert parse_lora_list(["a.safetensors:0.5", "sub/b.safetensors:1"]) == expected
    assert replace(ImageRequest(prompt="a fox", model="demo-sd3"), loras=None).check(Catalog()).request.loras == ()


def test_loras_on_a_streamed_denoiser_give_the_resident_output(demo_models_dir, loras_dir, presets, outputs):
    """On a GPU preset the memory engine streams the base weights and components visit the device in turn (accelerate
    hooks, which diffusers' LoRA loading would otherwise replace by its own offload); the adapters must act the same."""
    results = {}
    for preset_id in ("cpu", "8gb-laptop"):
        manager = ModelManager(ModelStore(demo_models_dir, offline=True, loras_dir=loras_dir), presets[preset_id])
        with_loras = pixels(make(manager, outputs, loras="detail.safetensors:1, style.safetensors:0.5"))
        results[preset_id] = with_loras, pixels(make(manager, outputs))
        assert (manager.status().block_plan is not None) == (preset_id != "cpu"), "the 8 GB preset streams the denoiser"
        manager.unload()
    assert np.array_equal(results["8gb-laptop"][0], results["cpu"][0])
    assert np.array_equal(results["8gb-laptop"][1], results["cpu"][1])
    assert not np.array_equal(results["cpu"][0], results["cpu"][1])
