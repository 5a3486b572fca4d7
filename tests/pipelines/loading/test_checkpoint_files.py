"""Checkpoint files in the models folder: listed with their family and base, loaded against the base's local
configs through `from_single_file`, GGUF-quantized transformers, and the file's hash in every result."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
from PIL import Image
from safetensors.torch import save_file

from pipelines.catalog import Catalog, Family, Task
from pipelines.loading.checkpoint_files import scan_checkpoint_files
from pipelines.errors import InvalidRequest, ModelNotAvailable
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore, list_models
from pipelines.outputs import read_parameters


def sd3_original_layout(diffusers_state: dict) -> dict:
    """The SD3 transformer state dict in Stability's original key layout (fused qkv, `joint_blocks.*`, shift before
    scale in the final norms): the inverse of diffusers' `convert_sd3_transformer_checkpoint_to_diffusers`."""
    state = dict(diffusers_state)
    swap = lambda weight: torch.cat(weight.chunk(2, dim=0)[::-1], dim=0)
    original = {
        "pos_embed": state.pop("pos_embed.pos_embed"),
        "x_embedder.proj.weight": state.pop("pos_embed.proj.weight"),
        "x_embedder.proj.bias": state.pop("pos_embed.proj.bias"),
        "final_layer.linear.weight": state.pop("proj_out.weight"),
        "final_layer.linear.bias": state.pop("proj_out.bias"),
        "final_layer.adaLN_modulation.1.weight": swap(state.pop("norm_out.linear.weight")),
        "final_layer.adaLN_modulation.1.bias": swap(state.pop("norm_out.linear.bias")),
    }
    renames = {
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder",
    }
    for new, old in renames.items():
        for part in ("weight", "bias"):
            original[f"{old}.{part}"] = state.pop(f"{new}.{part}")
    layers = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("transformer_blocks."))
    for i in range(layers):
        new, old = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        last = i == layers - 1
        for part in ("weight", "bias"):
            original[f"{old}x_block.attn.qkv.{part}"] = torch.cat([state.pop(f"{new}attn.to_{x}.{part}") for x in "qkv"])
            original[f"{old}context_block.attn.qkv.{part}"] = torch.cat([state.pop(f"{new}attn.add_{x}_proj.{part}") for x in "qkv"])
            original[f"{old}x_block.attn.proj.{part}"] = state.pop(f"{new}attn.to_out.0.{part}")
            original[f"{old}x_block.adaLN_modulation.1.{part}"] = state.pop(f"{new}norm1.linear.{part}")
            context_norm = state.pop(f"{new}norm1_context.linear.{part}")
            original[f"{old}context_block.adaLN_modulation.1.{part}"] = swap(context_norm) if last else context_norm
            original[f"{old}x_block.mlp.fc1.{part}"] = state.pop(f"{new}ff.net.0.proj.{part}")
            original[f"{old}x_block.mlp.fc2.{part}"] = state.pop(f"{new}ff.net.2.{part}")
            if not last:
                original[f"{old}context_block.attn.proj.{part}"] = state.pop(f"{new}attn.to_add_out.{part}")
                original[f"{old}context_block.mlp.fc1.{part}"] = state.pop(f"{new}ff_context.net.0.proj.{part}")
                original[f"{old}context_block.mlp.fc2.{part}"] = state.pop(f"{new}ff_context.net.2.{part}")
    assert not state, f"keys the tiny model has and the original layout was not given: {sorted(state)}"
    return original


def flux_original_layout(diffusers_state: dict) -> dict:
    """The FLUX transformer state dict in Black Forest Labs' original key layout (`double_blocks.*`/`single_blocks.*`,
    fused qkv, the single blocks' qkv and MLP input in one `linear1`, shift before scale in the final norm): the inverse
    of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`."""
    state = dict(diffusers_state)
    swap = lambda weight: torch.cat(weight.chunk(2, dim=0)[::-1], dim=0)
    renames = {
        "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
        "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
        "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
        "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
        "context_embedder": "txt_in",
        "x_embedder": "img_in",
        "proj_out": "final_layer.linear",
    }
    double_renames = {
        "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin", "attn.to_out.0": "img_attn.proj",
        "attn.to_add_out": "txt_attn.proj", "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
        "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
    }
    double_norms = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
                    "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm"}
    blocks = lambda prefix: 1 + max((int(key.split(".")[1]) for key in state if key.startswith(prefix)), default=-1)
    original = {}
    for part in ("weight", "bias"):
        original[f"final_layer.adaLN_modulation.1.{part}"] = swap(state.pop(f"norm_out.linear.{part}"))
        for new, old in renames.items():
            original[f"{old}.{part}"] = state.pop(f"{new}.{part}")
    for i in range(blocks("transformer_blocks.")):
        new, old = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for part in ("weight", "bias"):
            original[f"{old}img_attn.qkv.{part}"] = torch.cat([state.pop(f"{new}attn.to_{x}.{part}") for x in "qkv"])
            original[f"{old}txt_attn.qkv.{part}"] = torch.cat([state.pop(f"{new}attn.add_{x}_proj.{part}") for x in "qkv"])
            for new_name, old_name in double_renames.items():
                original[f"{old}{old_name}.{part}"] = state.pop(f"{new}{new_name}.{part}")
        for new_name, old_name in double_norms.items():
            original[f"{old}{old_name}.scale"] = state.pop(f"{new}{new_name}.weight")
    for i in range(blocks("single_transformer_blocks.")):
        new, old = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for part in ("weight", "bias"):
            fused = [state.pop(f"{new}{name}.{part}") for name in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")]
            original[f"{old}linear1.{part}"] = torch.cat(fused)
            original[f"{old}linear2.{part}"] = state.pop(f"{new}proj_out.{part}")
            original[f"{old}modulation.lin.{part}"] = state.pop(f"{new}norm.linear.{part}")
        original[f"{old}norm.query_norm.scale"] = state.pop(f"{new}attn.norm_q.weight")
        original[f"{old}norm.key_norm.scale"] = state.pop(f"{new}attn.norm_k.weight")
    assert not state, f"keys the tiny model has and the original layout was not given: {sorted(state)}"
    return original


# Diffusers' Wan names and Alibaba's, in the order they are rewritten: the inverse of the renames in diffusers'
# `convert_wan_transformer_to_diffusers` (where `norm2` and `norm3` swap: the cross-attention norm is `norm3` there).
WAN_ORIGINAL_NAMES = (
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".norm2.", ".norm3."),
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
    (".scale_shift_table", ".modulation"),
)


def wan_original_layout(diffusers_state: dict) -> dict:
    """The Wan transformer state dict in Alibaba's original key layout, as community GGUF files keep it."""
    original = {}
    for name, tensor in diffusers_state.items():
        if name == "scale_shift_table":
            name = "head.modulation"
        elif name.startswith("proj_out."):
            name = name.replace("proj_out.", "head.head.", 1)
        for new, old in WAN_ORIGINAL_NAMES:
            name = name.replace(new, old)
        original[name] = tensor
    return original


def wan_vace_original_layout(diffusers_state: dict) -> dict:
    """A Wan VACE transformer in the original layout: Wan's keys, and each control block's in/out projections named
    `before_proj`/`after_proj`."""
    renamed = {
        name.replace(".proj_in.", ".before_proj.").replace(".proj_out.", ".after_proj.") if name.startswith("vace_blocks.") else name: tensor
        for name, tensor in diffusers_state.items()
    }
    return wan_original_layout(renamed)


def sd15_original_layout(folder) -> dict:
    """A tiny SD1.5 pipeline as one file in the original (CompVis/LDM) layout community checkpoints use: the inverse of
    what diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and `convert_ldm_clip_checkpoint` read."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    layers = unet.config.layers_per_block
    blocks = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
              "conv_norm_out.": "out.0.", "conv_out.": "out.2.", "mid_block.resnets.0.": "middle_block.0.",
              "mid_block.attentions.0.": "middle_block.1.", "mid_block.resnets.1.": "middle_block.2.",
              # SDXL's size/crop conditioning.
              "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2."}
    for i, block in enumerate(unet.down_blocks):
        for j in range(layers):
            blocks[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{1 + i * (layers + 1) + j}.0."
            blocks[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{1 + i * (layers + 1) + j}.1."
        blocks[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(i + 1) * (layers + 1)}.0.op."
    for i, block in enumerate(unet.up_blocks):
        for j in range(layers + 1):
            blocks[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{i * (layers + 1) + j}.0."
            blocks[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{i * (layers + 1) + j}.1."
        has_attention = getattr(block, "attentions", None) is not None
        blocks[f"up_blocks.{i}.upsamplers.0.conv."] = f"output_blocks.{i * (layers + 1) + layers}.{2 if has_attention else 1}.conv."
    resnet_parts = {"norm1.": "in_layers.0.", "conv1.": "in_layers.2.", "time_emb_proj.": "emb_layers.1.", "norm2.": "out_layers.0.",
                    "conv2.": "out_layers.3.", "conv_shortcut.": "skip_connection."}
    original = {}
    for name, tensor in unet.state_dict().items():
        prefix = max((p for p in blocks if name.startswith(p)), key=len)
        rest = name[len(prefix):]
        if ".resnets." in prefix:
            rest = next((new + rest[len(old):] for old, new in resnet_parts.items() if rest.startswith(old)), rest)
        original["model.diffusion_model." + blocks[prefix] + rest] = tensor

    vae = AutoencoderKL.from_pretrained(folder / "vae")
    count = len(vae.config.block_out_channels)
    vae_blocks = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out.",
                  "encoder.mid_block.resnets.0.": "encoder.mid.block_1.", "encoder.mid_block.resnets.1.": "encoder.mid.block_2.",
                  "decoder.mid_block.resnets.0.": "decoder.mid.block_1.", "decoder.mid_block.resnets.1.": "decoder.mid.block_2.",
                  "encoder.mid_block.attentions.0.": "encoder.mid.attn_1.", "decoder.mid_block.attentions.0.": "decoder.mid.attn_1."}
    for i in range(count):
        up = count - 1 - i
        for j in range(vae.config.layers_per_block + 1):
            vae_blocks[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
            vae_blocks[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{up}.block.{j}."
        vae_blocks[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
        vae_blocks[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{up}.upsample.conv."
    attention_parts = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
    for name, tensor in vae.state_dict().items():
        prefix = max((p for p in vae_blocks if name.startswith(p)), key=len, default="")
        rest = name[len(prefix):]
        if ".attentions." in prefix:
            rest = next(new + rest[len(old):] for old, new in attention_parts.items() if rest.startswith(old))
            if tensor.ndim == 2:  # the original attention is 1×1 convolutions
                tensor = tensor[:, :, None, None]
        rest = rest.replace("conv_shortcut.", "nin_shortcut.")
        original["first_stage_model." + vae_blocks.get(prefix, prefix) + rest] = tensor

    clip = CLIPTextModel.from_pretrained(folder / "text_encoder")
    for name, tensor in clip.state_dict().items():
        # transformers 5.6+ dropped CLIPTextModel's `text_model.` level; checkpoints still have it.
        original["cond_stage_model.transformer." + ("" if name.startswith("text_model.") else "text_model.") + name] = tensor
    return {name: tensor.contiguous() for name, tensor in original.items()}


def sdxl_original_layout(folder) -> dict:
    """A tiny SDXL pipeline as one file in Stability's original layout: the UNet, VAE and CLIP-L as for SD1.5 (CLIP-L
    under `conditioner.embedders.0`), the OpenCLIP encoder (fused qkv, transposed projection) under `conditioner.embedders.1`."""
    from transformers import CLIPTextModelWithProjection

    original = {}
    for name, tensor in sd15_original_layout(folder).items():
        if name.startswith("cond_stage_model.transformer."):
            name = name.replace("cond_stage_model.transformer.", "conditioner.embedders.0.transformer.", 1)
        original[name] = tensor
    encoder = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2").state_dict()
    prefix = "conditioner.embedders.1.model."
    original[prefix + "positional_embedding"] = encoder.pop("text_model.embeddings.position_embedding.weight")
    original[prefix + "token_embedding.weight"] = encoder.pop("text_model.embeddings.token_embedding.weight")
    original[prefix + "text_projection"] = encoder.pop("text_projection.weight").T
    for part in ("weight", "bias"):
        original[f"{prefix}ln_final.{part}"] = encoder.pop(f"text_model.final_layer_norm.{part}")
    layer_parts = {"layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.", "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj.",
                   "self_attn.out_proj.": "attn.out_proj."}
    layers = 1 + max(int(key.split(".")[3]) for key in encoder if key.startswith("text_model.encoder.layers."))
    for i in range(layers):
        source, target = f"text_model.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            original[f"{target}attn.in_proj_{part}"] = torch.cat([encoder.pop(f"{source}self_attn.{x}_proj.{part}") for x in "qkv"])
            for old, new in layer_parts.items():
                original[target + new + part] = encoder.pop(source + old + part)
    assert not [key for key in encoder if "position_ids" not in key], sorted(encoder)
    return {name: tensor.contiguous() for name, tensor in original.items()}


def demo_transformer_state(models_dir, model_id: str, model_class) -> dict:
    transformer = model_class.from_pretrained(models_dir / "demo" / model_id / "transformer")
    return {name: tensor.contiguous() for name, tensor in transformer.state_dict().items()}


def with_base(path, base: str):
    path.with_suffix(".json").write_text(json.dumps({"base": base}))
    return path


def write_gguf_q8(path, state: dict) -> None:
    """A GGUF file as community quantizers write them: the linear layers' weight matrices in Q8_0 (rows split into
    32-value blocks), everything else (biases, norms, convolutions, the position table) in F32."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "sd3")
    for name, tensor in state.items():
        values = tensor.float().numpy()
        if values.ndim == 2 and name.endswith(".weight") and values.shape[-1] % 32 == 0:
            quantized = gguf.quantize(values, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_shape=quantized.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def run(manager, outputs, model, **change):
    request = ImageRequest(**{"prompt": "a fox", "model": model, "steps": 2, "seed": 4, "width": 256, "height": 256, **change})
    return generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]


def pixels(saved) -> np.ndarray:
    return np.asarray(Image.open(saved.path)).astype(int)


def test_an_sd3_fine_tune_in_the_original_layout_gives_the_image_of_the_folder_model(models_dir, presets, outputs):
    path = with_base(models_dir / "tiny-sd3-finetune.safetensors", "demo-sd3")
    save_file(sd3_original_layout(demo_transformer_state(models_dir, "demo-sd3", SD3Transformer2DModel)), path)
    store = ModelStore(models_dir, offline=True)
    listed = {listing.spec.id: listing for listing in list_models(store, demo_mode=True)}
    assert listed[path.name].offered and listed[path.name].spec.family is Family.SD3
    entry = listed[path.name].as_dict()
    assert (entry["base"], entry["checkpoint"]["variant"], entry["checkpoint"]["size_bytes"]) == ("demo-sd3", "fp32", path.stat().st_size)
    manager = ModelManager(store, presets["cpu"])
    from_file = run(manager, outputs, path.name)
    from_folder = run(manager, outputs, "demo-sd3")
    assert np.array_equal(pixels(from_file), pixels(from_folder))
    recorded = read_parameters(from_file.path)["checkpoint"]
    assert recorded["file"] == path.name and recorded["format"] == "safetensors" and recorded["variant"] == "fp32"
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_parameters(from_folder.path)["checkpoint"] is None


def test_a_flux_transformer_file_loads_against_the_local_config_and_matches_the_folder_model(models_dir, presets, outputs):
    path = with_base(models_dir / "tiny-flux-finetune.safetensors", "demo-flux")
    save_file(demo_transformer_state(models_dir, "demo-flux", FluxTransformer2DModel), path)
    manager = ModelManager(ModelStore(models_dir, offline=True), presets["cpu"])
    manager.store.scan_files()
    assert np.array_equal(pixels(run(manager, outputs, path.name)), pixels(run(manager, outputs, "demo-flux")))


def test_a_flux_file_in_the_original_bfl_layout_loads_with_the_local_config_and_gives_the_folder_models_image(
    models_dir, presets, outputs
):
    # diffusers' converter of the original layout fixes the width at FLUX.1's 3072 (24 heads of 128) and needs a block
    # of each kind: the smallest FLUX it reads has one double and one single block, 531 M parameters, 1 GB in bf16.
    folder = models_dir / "demo" / "demo-flux" / "transformer"
    config = {**FluxTransformer2DModel.load_config(folder), "num_layers": 1, "num_single_layers": 1,
              "num_attention_heads": 24, "attention_head_dim": 128, "axes_dims_rope": (16, 56, 56)}
    torch.manual_seed(0)
    wide = FluxTransformer2DModel.from_config(config).to(torch.bfloat16)
    shutil.rmtree(folder)
    wide.save_pretrained(folder)
    path = with_base(models_dir / "tiny-flux-bfl.safetensors", "demo-flux")
    original = flux_original_layout(wide.state_dict())
    del wide
    assert "double_blocks.0.img_attn.qkv.weight" in original and "single_blocks.0.linear1.weight" in original
    save_file(original, path)
    del original
    store = ModelStore(models_dir, offline=True)
    (spec,) = [spec for spec in store.scan_files() if spec.id == path.name]
    assert (spec.family, spec.base, spec.checkpoint.variant) == (Family.FLUX, "demo-flux", "bf16")
    manager = ModelManager(store, presets["cpu"])
    from_file = pixels(run(manager, outputs, path.name, steps=1))
    from_folder = pixels(run(manager, outputs, "demo-flux", steps=1))
    assert from_file.std() > 1, "an image, not a flat colour that any weights would give"
    # Both hold the same bf16 values, read into float32: the conversion only renames and splits, so the image is exact.
    assert np.array_equal(from_file, from_folder)


@pytest.mark.parametrize(
    "base, family, to_original_layout",
    [("demo-sd15", Family.SD15, sd15_original_layout), ("demo-sdxl", Family.SDXL, sdxl_original_layout)],
)
def test_a_whole_sd15_or_sdxl_checkpoint_in_the_original_layout_gives_the_image_of_the_folder_model(
    models_dir, presets, outputs, base, family, to_original_layout
):
    path = with_base(models_dir / f"tiny-{family.value}-finetune.safetensors", base)
    save_file(to_original_layout(models_dir / "demo" / base), path)
    store = ModelStore(models_dir, offline=True)
    (spec,) = [spec for spec in store.scan_files() if spec.id == path.name]
    assert spec.family is family and spec.component_bytes == {"unet": path.stat().st_size}
    manager = ModelManager(store, presets["cpu"])
    request = dict(negative_prompt="blurry", scheduler="DPM++ 2M")
    assert np.array_equal(pixels(run(manager, outputs, path.name, **request)), pixels(run(manager, outputs, base, **request)))


def test_a_gguf_q8_transformer_in_the_original_layout_loads_runs_and_stays_close(models_dir, presets, outputs):
    path = with_base(models_dir / "tiny-sd3-Q8_0.gguf", "demo-sd3")
    write_gguf_q8(path, sd3_original_layout(demo_transformer_state(models_dir, "demo-sd3", SD3Transformer2DModel)))
    store = ModelStore(models_dir, offline=True)
    (spec,) = [spec for spec in store.scan_files() if spec.id == path.name]
    assert spec.checkpoint.variant == "Q8_0" and spec.component_bytes["transformer"] == path.stat().st_size
    manager = ModelManager(store, presets["cpu"])
    quantized, plain = run(manager, outputs, path.name), run(manager, outputs, "demo-sd3")
    difference = np.abs(pixels(quantized) - pixels(plain))
    assert 0 < difference.max() and difference.mean() < 2.0, "Q8_0 rounds the weights: close to, not equal to, the original"
    assert read_parameters(quantized.path)["checkpoint"]["format"] == "gguf"


def test_the_scan_names_family_and_base_from_the_keys(tmp_path):
    small = lambda *shape: torch.zeros(shape)
    flux_dev = {
        "double_blocks.0.img_attn.norm.key_norm.scale": small(8),
        "img_in.weight": small(8, 64),
        "guidance_in.in_layer.bias": small(8),
    }
    save_file(flux_dev, tmp_path / "pixelwave.safetensors")
    save_file({key: value for key, value in flux_dev.items() if "guidance" not in key}, tmp_path / "schnell-tune.safetensors")
    save_file({"model.diffusion_model.input_blocks.0.0.weight": small(8, 4, 3, 3), "cond_stage_model.transformer.x": small(4)}, tmp_path / "absolute-reality.safetensors")
    save_file({"model.diffusion_model.input_blocks.0.0.weight": small(8, 4, 3, 3), "conditioner.embedders.1.model.ln_final.weight": small(4)}, tmp_path / "juggernaut-xl.safetensors")
    # Wan's size and task are in the patch embedding: 1536 wide for 1.3B, 5120 for 14B, 36 input channels for I2V.
    save_file({"head.modulation": small(1, 2, 8), "patch_embedding.weight": small(1536, 16, 1, 2, 2)}, tmp_path / "wan-1.3b-tune.safetensors")
    save_file({"head.modulation": small(1, 2, 8), "patch_embedding.weight": small(5120, 36, 1, 2, 2)}, tmp_path / "wan-i2v-Q8.safetensors")
    save_file({"condition_embedder.time_embedder.linear_1.weight": small(8, 4)}, tmp_path / "wan-diffusers.safetensors")
    save_file({"encoder.layers.0.weight": small(4)}, tmp_path / "some-vae.safetensors")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF but not really")
    specs, problems = scan_checkpoint_files(tmp_path)
    found = {spec.id: (spec.family, spec.base, spec.pipeline_class) for spec in specs}
    assert found == {
        "pixelwave.safetensors": (Family.FLUX, "flux1-dev", "FluxPipeline"),
        "schnell-tune.safetensors": (Family.FLUX, "flux1-schnell", "FluxPipeline"),
        "absolute-reality.safetensors": (Family.SD15, "sd15", "StableDiffusionPipeline"),
        "juggernaut-xl.safetensors": (Family.SDXL, "sdxl-base", "StableDiffusionXLPipeline"),
        "wan-1.3b-tune.safetensors": (Family.WAN, "wan21-t2v-1.3b", "WanPipeline"),
        "wan-i2v-Q8.safetensors": (Family.WAN, "wan21-i2v-14b-480p", "WanImageToVideoPipeline"),
        "wan-diffusers.safetensors": (Family.WAN, "wan21-t2v-1.3b", "WanPipeline"),
    }
    assert {spec.id: spec.task for spec in specs}["wan-i2v-Q8.safetensors"] is Task.IMAGE_TO_VIDEO
    assert any(p.startswith("some-vae.safetensors: the tensor names (encoder.layers.0.weight") and "families Atelier loads from one file (sd3, flux, wan, sdxl, sd15)" in p for p in problems)
    assert any(p.startswith("broken.gguf: not a readable checkpoint") for p in problems)


def test_a_sidecar_naming_a_base_of_another_family_is_refused(tmp_path):
    save_file({"joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(6, 2)}, with_base(tmp_path / "tune.safetensors", "flux1-dev"))
    specs, problems = scan_checkpoint_files(tmp_path)
    assert specs == [] and "not a sd3 model; choose one of sd3-medium" in problems[0]


def test_offline_without_the_base_configs_says_which_repo_and_how_to_get_them(tmp_path, presets):
    flux_dev = {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(4), "guidance_in.in_layer.bias": torch.zeros(4), "img_in.weight": torch.zeros(4, 64)}
    save_file(flux_dev, tmp_path / "pixelwave.safetensors")
    store = ModelStore(tmp_path, offline=True)
    store.scan_files()
    with pytest.raises(ModelNotAvailable) as error, ModelManager(store, presets["cpu"]).use("pixelwave.safetensors"):
        pass
    message = str(error.value)
    assert "black-forest-labs/FLUX.1-dev" in message and "text encoders and VAE" in message
    assert f"--local-dir {tmp_path / 'bases' / 'flux1-dev'}" in message


def test_a_checkpoint_file_is_a_request_model_once_scanned(models_dir):
    path = with_base(models_dir / "tune.safetensors", "demo-flux")
    save_file(demo_transformer_state(models_dir, "demo-flux", FluxTransformer2DModel), path)
    with pytest.raises(InvalidRequest):
        ImageRequest(prompt="a fox", model=path.name).check(Catalog())
    store = ModelStore(models_dir, offline=True)
    store.scan_files()
    assert path.name in store.catalog.image_models()
    assert ImageRequest(prompt="a fox", model=path.name).check(store.catalog).request.steps == 4, "the base model's defaults"


def test_online_a_checkpoint_fetches_only_its_bases_configs_once_and_then_runs(models_dir, presets, outputs, monkeypatch):
    from fnmatch import fnmatch
    from pathlib import Path

    from huggingface_hub.errors import LocalEntryNotFoundError

    fetched = []

    def fake_snapshot_download(repo_id, local_dir=None, allow_patterns=None, local_files_only=False, tqdm_class=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        source = models_dir / "demo" / "demo-sd15"
        for file in source.rglob("*"):
            relative = file.relative_to(source).as_posix()
            if file.is_file() and any(fnmatch(relative, pattern) for pattern in allow_patterns):
                fetched.append(relative)
                (Path(local_dir) / relative).parent.mkdir(parents=True, exist_ok=True)
                (Path(local_dir) / relative).write_bytes(file.read_bytes())
        return str(local_dir)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    path = models_dir / "absolute-reality.safetensors"
    save_file(sd15_original_layout(models_dir / "demo" / "demo-sd15"), path)
    store = ModelStore(models_dir, offline=False)
    (spec,) = [spec for spec in store.scan_files() if spec.id == path.name]
    assert (spec.base, spec.repo) == ("sd15", None)
    manager = ModelManager(store, presets["cpu"])
    from_file = run(manager, outputs, path.name, scheduler="Euler")
    assert "model_index.json" in fetched and "tokenizer/tokenizer_config.json" in fetched
    assert not [name for name in fetched if name.endswith(".safetensors")], "configs and tokenizers only: the file has the weights"
    assert (models_dir / "bases" / "sd15" / "model_index.json").is_file()
    assert np.array_equal(pixels(from_file), pixels(run(manager, outputs, "demo-sd15", scheduler="Euler")))
    assert read_parameters(from_file.path)["repo"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    fetched.clear()
    manager.unload()
    run(manager, outputs, path.name)
    assert fetched == [], "the base's configs are kept: never fetched at load time again"


def test_a_wan_gguf_in_the_original_layout_is_a_video_model_that_loads_runs_and_records_its_hash(models_dir, presets, outputs):
    from diffusers import WanTransformer3DModel

    from pipelines.media import read_video
    from pipelines.video.video_runner import VideoRequest, generate_video
    from tabs.context import AppContext
    from tabs.video import _offered_video_models

    # The demo's transformer is 24 wide, and Q8_0 blocks hold 32 values: at 32 wide every linear layer is quantized.
    folder = models_dir / "demo" / "demo-wan" / "transformer"
    torch.manual_seed(0)
    wider = WanTransformer3DModel.from_config({**WanTransformer3DModel.load_config(folder), "attention_head_dim": 16})
    shutil.rmtree(folder)
    wider.save_pretrained(folder)
    path = with_base(models_dir / "tiny-wan-Q8_0.gguf", "demo-wan")
    original = wan_original_layout({name: tensor.contiguous() for name, tensor in wider.state_dict().items()})
    assert {"head.modulation", "blocks.0.self_attn.q.weight", "blocks.0.norm3.weight", "blocks.1.modulation"} <= set(original)
    write_gguf_q8(path, original)
    store = ModelStore(models_dir, offline=True)
    manager = ModelManager(store, presets["cpu"])
    context = AppContext(manager=manager, store=store, outputs=outputs, presets=presets, demo_mode=True)
    choices, _ = _offered_video_models(context)
    assert path.name in [model_id for _, model_id in choices], "the Video tab offers the file"
    spec = store.catalog.spec(path.name)
    assert (spec.family, spec.task, spec.base, spec.pipeline_class) == (Family.WAN, Task.TEXT_TO_VIDEO, "demo-wan", "WanPipeline")
    assert spec.checkpoint.variant == "Q8_0" and spec.component_bytes["transformer"] == path.stat().st_size

    def video(model):
        request = VideoRequest(prompt="a fox in the snow", model=model, steps=2, seed=4, frames=5)
        return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob()).video

    quantized, plain = video(path.name), video("demo-wan")
    difference = np.abs(read_video(quantized.path).frames.astype(int) - read_video(plain.path).frames.astype(int))
    # The tiny random VAE damps what the transformer does: two unrelated random transformers make videos 0.70 apart on
    # average here, the Q8_0 file and its float original 0.19. Half-way tells rounded weights from other weights.
    assert 0 < difference.max() and difference.mean() < 0.45, "Q8_0 rounds the weights: close to, not equal to, the original"
    recorded = read_parameters(quantized.path)["checkpoint"]
    assert (recorded["file"], recorded["format"], recorded["variant"]) == (path.name, "gguf", "Q8_0")
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_parameters(plain.path)["checkpoint"] is None


def test_a_wan_vace_file_in_the_original_layout_is_a_vace_model_that_makes_the_folder_models_video(models_dir, presets, outputs, tmp_path):
    from diffusers import WanVACETransformer3DModel

    from pipelines.media import read_video
    from pipelines.video.video_runner import VideoRequest, generate_video

    path = with_base(models_dir / "tiny-wan-vace.safetensors", "demo-wan-vace")
    original = wan_vace_original_layout(demo_transformer_state(models_dir, "demo-wan-vace", WanVACETransformer3DModel))
    assert {"head.modulation", "vace_patch_embedding.weight", "vace_blocks.0.before_proj.weight", "vace_blocks.0.after_proj.weight"} <= set(original)
    save_file(original, path)
    manager = ModelManager(ModelStore(models_dir, offline=True), presets["cpu"])
    manager.store.scan_files()
    spec = manager.store.catalog.spec(path.name)
    assert (spec.family, spec.pipeline_class, spec.base) == (Family.WAN_VACE, "WanVACEPipeline", "demo-wan-vace")
    reference = tmp_path / "reference.png"
    Image.new("RGB", (40, 24), "orange").save(reference)

    def video(model):
        request = VideoRequest(prompt="a fox", model=model, steps=2, seed=4, frames=5, reference_images=(str(reference),))
        return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob()).video

    from_file, from_folder = video(path.name), video("demo-wan-vace")
    assert np.array_equal(read_video(from_file.path).frames, read_video(from_folder.path).frames)
    assert read_parameters(from_file.path)["checkpoint"]["file"] == path.name


def test_wan_vace_headers_of_either_size_get_their_vace_base():
    from pipelines.catalog import family_spec
    from pipelines.loading.checkpoint_files import _base

    for width, base in ((1536, "wan21-vace-1.3b"), (5120, "wan21-vace-14b")):
        header = {"head.modulation": (1, 2, width), "patch_embedding.weight": (width, 16, 1, 2, 2), "vace_blocks.0.after_proj.bias": (width,)}
        assert _base(Path("vace.gguf"), family_spec(Family.WAN), header, None).id == base
    plain = {"head.modulation": (1, 2, 5120), "patch_embedding.weight": (5120, 16, 1, 2, 2)}
    assert _base(Path("t2v.gguf"), family_spec(Family.WAN), plain, None).id == "wan21-t2v-14b"


def test_bitsandbytes_nf4_files_are_refused_at_scan_time_by_name_or_by_their_quantization_keys(tmp_path):
    """Forge's `flux1-dev-bnb-nf4*.safetensors` has FLUX's keys but packed 4-bit weights that only bitsandbytes on a
    GPU reads: listing it as FLUX would fail inside the loader. It is refused at scan time, with the reason."""
    flux_keys = {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(8), "guidance_in.in_layer.bias": torch.zeros(8)}
    save_file(flux_keys, tmp_path / "flux1-dev-bnb-nf4-v2.safetensors")
    packed = {
        **flux_keys,
        "model.diffusion_model.double_blocks.0.img_attn.proj.weight": torch.zeros(32, dtype=torch.uint8),
        "model.diffusion_model.double_blocks.0.img_attn.proj.weight.absmax": torch.zeros(2),
        "model.diffusion_model.double_blocks.0.img_attn.proj.weight.quant_map": torch.zeros(16),
        "model.diffusion_model.double_blocks.0.img_attn.proj.weight.quant_state.bitsandbytes__nf4": torch.zeros(8, dtype=torch.uint8),
    }
    save_file(packed, tmp_path / "my-flux-tune.safetensors")
    save_file(flux_keys, tmp_path / "pixelwave.safetensors")

    specs, problems = scan_checkpoint_files(tmp_path)

    assert [spec.id for spec in specs] == ["pixelwave.safetensors"]
    assert len(problems) == 2
    for name, problem in zip(["flux1-dev-bnb-nf4-v2.safetensors", "my-flux-tune.safetensors"], problems):
        assert problem.startswith(f"{name}: a bitsandbytes NF4/FP4 checkpoint") and "CUDA GPU" in problem and "GGUF" in problem
    store = ModelStore(tmp_path, offline=True)
    store.scan_files()
    assert len(store.file_problems) == 2 and store.catalog.get("flux1-dev-bnb-nf4-v2.safetensors") is None


def test_fp8_files_in_the_original_layout_are_labelled_and_a_scaled_one_draws_the_bf16_files_image_on_both_presets(models_dir, presets, outputs):
    from pipelines.memory.loader import state_shapes
    from pipelines.memory.original_layouts import FLUX_BFL
    from pipelines.memory.weights_file import WeightsFile
    from pipelines.tiny.checkpoint_files import PLAIN_FP8, SCALED_FP8, write_original_layout_file

    folder = models_dir / "demo" / "demo-flux" / "transformer"
    source = WeightsFile(folder)
    names = {None: "flux1-tune-bf16", PLAIN_FP8: "flux1-tune_fp8_e4m3fn", SCALED_FP8: "flux1-tune_fp8_e4m3fn_scaled"}
    for fp8, stem in names.items():
        path = with_base(models_dir / f"{stem}.safetensors", "demo-flux")
        write_original_layout_file(path, FLUX_BFL, state_shapes(FluxTransformer2DModel, folder), source.read, fp8=fp8)
    store = ModelStore(models_dir, offline=True)
    listed = {listing.spec.id: listing.as_dict() for listing in list_models(store, demo_mode=True)}
    variants = {stem: listed[f"{stem}.safetensors"]["checkpoint"]["variant"] for stem in names.values()}
    assert variants == {"flux1-tune-bf16": "bf16", "flux1-tune_fp8_e4m3fn": "fp8", "flux1-tune_fp8_e4m3fn_scaled": "fp8 scaled"}
    assert "(fp8 scaled," in listed["flux1-tune_fp8_e4m3fn_scaled.safetensors"]["name"]
    for preset in ("cpu", "8gb-laptop"):  # the whole model read on the CPU; the memory engine holding its blocks
        manager = ModelManager(store, presets[preset])
        bf16 = pixels(run(manager, outputs, "flux1-tune-bf16.safetensors", steps=1))
        scaled = run(manager, outputs, "flux1-tune_fp8_e4m3fn_scaled.safetensors", steps=1)
        assert (manager.status().block_plan is not None) == (preset != "cpu"), preset
        difference = np.abs(pixels(scaled) - bf16)
        assert bf16.std() > 1 and difference.mean() < 4.0, f"{preset}: the scaled file's image is {difference.mean():.1f} off"
        assert read_parameters(scaled.path)["checkpoint"]["variant"] == "fp8 scaled"
        manager.unload()
