"""Tiny ControlNets and IP-Adapters for the demo models, saved in the real repos' layouts.

ControlNets: a diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors`), built from the tiny
base's own denoiser so every width matches (`ControlNetModel` / `ControlNetUnionModel.from_unet`,
`SD3ControlNetModel` / `FluxControlNetModel.from_transformer`). diffusers starts a ControlNet's output layers at zero
(a fresh ControlNet changes nothing); ours get random values there, so that a control visibly changes a demo image
and a test can tell strength 0 from strength 1.

IP-Adapters: h94/IP-Adapter's layout: the adapter file in `models/` with its `image_proj` and `ip_adapter` keys,
and a CLIP vision encoder in `models/image_encoder/`. For FLUX.1, XLabs-AI/flux-ip-adapter's: one `ip_adapter.safetensors`
at the root with XLabs' own key names (`ip_adapter_proj_model.*`, `double_blocks.<n>.processor.ip_adapter_double_stream_k/v_proj.*`),
which diffusers' `FluxPipeline.load_ip_adapter` renames as it reads them, and the image encoder in a repo of its own
in openai/clip-vit-large-patch14's layout (a whole CLIP model, text tower included, of which the vision tower is read).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    ControlNetModel, ControlNetUnionModel, FluxControlNetModel, FluxTransformer2DModel, SD3ControlNetModel, SD3Transformer2DModel,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

# Modes of the union ControlNets as their authors number them: xinsir's SDXL union (6 types; ProMax adds tile 6 and
# inpaint 7) and InstantX's / Shakker-Labs' FLUX.1 union (7 types).
SDXL_UNION_MODES = 6
FLUX_UNION_MODES = 10
# The CLIP vision encoder's projection width: the input of the adapter's image projection.
IMAGE_EMBED_DIM = 32
# h94's plain adapters turn one image embedding into 4 context tokens.
IP_TOKENS = 4


def _randomize_zeroed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values where diffusers initialises a ControlNet at zero (its zero convolutions and output blocks)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def _denoiser(base_folder: Path, name: str, model_class):
    return model_class.from_pretrained(Path(base_folder) / name)


def build_sd15(folder: Path, base_folder: Path, seed: int) -> None:
    """A single-purpose SD1.5 ControlNet (lllyasviel/control_v11p_sd15_*'s layout)."""
    torch.manual_seed(seed)
    unet = _denoiser(base_folder, "unet", UNet2DConditionModel)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 16), load_weights_from_unet=False)
    _randomize_zeroed(model, seed).save_pretrained(folder)


def build_sdxl_union(folder: Path, base_folder: Path, seed: int) -> None:
    """An SDXL union ControlNet (xinsir/controlnet-union-sdxl-1.0's layout): one model, a mode per control image."""
    torch.manual_seed(seed)
    unet = _denoiser(base_folder, "unet", UNet2DConditionModel)
    shaped = ControlNetUnionModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 16), load_weights_from_unet=False)
    # The mode transformer works at the width of the first block (320 in the real model).
    width = unet.config.block_out_channels[0]
    settings = {name: value for name, value in shaped.config.items() if not name.startswith("_")}
    model = ControlNetUnionModel(
        **{**settings, "num_trans_channel": width, "num_proj_channel": width, "num_trans_head": 2, "num_control_type": SDXL_UNION_MODES}
    )
    _randomize_zeroed(model, seed).save_pretrained(folder)


def build_sd3(folder: Path, base_folder: Path, seed: int) -> None:
    """An SD3 ControlNet (InstantX/SD3-Controlnet-*'s layout: no extra conditioning channels)."""
    torch.manual_seed(seed)
    transformer = _denoiser(base_folder, "transformer", SD3Transformer2DModel)
    model = SD3ControlNetModel.from_transformer(transformer, num_layers=1, num_extra_conditioning_channels=0, load_weights_from_transformer=False)
    _randomize_zeroed(model, seed).save_pretrained(folder)


def build_flux_union(folder: Path, base_folder: Path, seed: int) -> None:
    """A FLUX.1 union ControlNet (InstantX/FLUX.1-dev-Controlnet-Union's layout: `num_mode` set)."""
    torch.manual_seed(seed)
    transformer = _denoiser(base_folder, "transformer", FluxTransformer2DModel)
    config = dict(transformer.config)
    model = FluxControlNetModel(
        patch_size=config["patch_size"], in_channels=config["in_channels"], num_layers=1, num_single_layers=1,
        attention_head_dim=config["attention_head_dim"], num_attention_heads=config["num_attention_heads"],
        joint_attention_dim=config["joint_attention_dim"], pooled_projection_dim=config["pooled_projection_dim"],
        guidance_embeds=config["guidance_embeds"], axes_dims_rope=config["axes_dims_rope"], num_mode=FLUX_UNION_MODES,
    )
    _randomize_zeroed(model, seed).save_pretrained(folder)


def build_image_encoder(folder: Path, seed: int) -> None:
    """A tiny CLIP vision encoder with its projection and image processor (h94's `models/image_encoder/`)."""
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, projection_dim=IMAGE_EMBED_DIM, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=4, num_channels=3,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    CLIPImageProcessor(crop_size=32, size=32).save_pretrained(folder)


def _ip_adapter_state(unet: UNet2DConditionModel, seed: int) -> dict[str, torch.Tensor]:
    """h94's keys: `image_proj.*` (a linear map of the image embedding to IP_TOKENS context tokens, then a norm) and
    `ip_adapter.<n>.to_k_ip/to_v_ip.weight` for the n-th attention processor, counting self- and cross-attention alike
    (so the cross-attention ones are 1, 3, 5…)."""
    generator = torch.Generator().manual_seed(seed)
    context = unet.config.cross_attention_dim
    state = {
        "image_proj.proj.weight": torch.randn(context * IP_TOKENS, IMAGE_EMBED_DIM, generator=generator) * 0.1,
        "image_proj.proj.bias": torch.zeros(context * IP_TOKENS),
        "image_proj.norm.weight": torch.ones(context),
        "image_proj.norm.bias": torch.zeros(context),
    }
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            attention = unet.get_submodule(name.removesuffix(".processor"))
            for key in ("to_k", "to_v"):
                shape = getattr(attention, key).weight.shape
                state[f"ip_adapter.{index}.{key}_ip.weight"] = torch.randn(shape, generator=generator) * 0.1
    return state


def build_ip_adapter(folder: Path, base_folder: Path, seed: int, subfolder: str = "models", file_name: str = "ip-adapter.safetensors") -> None:
    """An SD1.5 or SDXL IP-Adapter for the tiny base in `base_folder`, with its image encoder, as h94 lays them out."""
    unet = _denoiser(base_folder, "unet", UNet2DConditionModel)
    target = Path(folder) / subfolder
    target.mkdir(parents=True)
    save_file(_ip_adapter_state(unet, seed), str(target / file_name))
    build_image_encoder(target / "image_encoder", seed + 1)


def _xlabs_ip_adapter_state(transformer: FluxTransformer2DModel, seed: int) -> dict[str, torch.Tensor]:
    """XLabs' keys: `ip_adapter_proj_model.*` (the image embedding to IP_TOKENS tokens of the text width, then a norm)
    and, for each double-stream block n, `double_blocks.<n>.processor.ip_adapter_double_stream_k_proj/v_proj.weight/bias`
    (text width -> the transformer's width). The single-stream blocks take no image tokens."""
    generator = torch.Generator().manual_seed(seed)
    context, width = transformer.config.joint_attention_dim, transformer.inner_dim
    state = {
        "ip_adapter_proj_model.proj.weight": torch.randn(context * IP_TOKENS, IMAGE_EMBED_DIM, generator=generator) * 0.1,
        "ip_adapter_proj_model.proj.bias": torch.zeros(context * IP_TOKENS),
        "ip_adapter_proj_model.norm.weight": torch.ones(context),
        "ip_adapter_proj_model.norm.bias": torch.zeros(context),
    }
    for block in range(len(transformer.transformer_blocks)):
        for key in ("k", "v"):
            prefix = f"double_blocks.{block}.processor.ip_adapter_double_stream_{key}_proj"
            state[f"{prefix}.weight"] = torch.randn(width, context, generator=generator) * 0.5
            state[f"{prefix}.bias"] = torch.randn(width, generator=generator) * 0.5
    return state


def build_flux_ip_adapter(folder: Path, base_folder: Path, seed: int) -> None:
    """A FLUX.1 IP-Adapter for the tiny FLUX in `base_folder`, as XLabs-AI/flux-ip-adapter ships it (the image encoder
    is another repo: `build_clip_vision_repo`)."""
    transformer = _denoiser(base_folder, "transformer", FluxTransformer2DModel)
    Path(folder).mkdir(parents=True)
    save_file(_xlabs_ip_adapter_state(transformer, seed), str(Path(folder) / "ip_adapter.safetensors"))


def build_clip_vision_repo(folder: Path, base_folder: Path, seed: int) -> None:
    """A tiny CLIP in openai/clip-vit-large-patch14's layout: the whole model (`CLIPModel`: text and vision towers,
    both projections) with its image processor; `CLIPVisionModelWithProjection.from_pretrained` reads its vision half.
    The vision config repeats the projection width, as the real one does."""
    torch.manual_seed(seed)
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=IMAGE_EMBED_DIM)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=1000, max_position_embeddings=77),
        vision_config=dict(tower, image_size=32, patch_size=4), projection_dim=IMAGE_EMBED_DIM,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(crop_size=32, size=32).save_pretrained(folder)


# The demo ControlNets and IP-Adapters (see `pipelines/catalog/controls.py`) by id, each with its seed.
_BUILDERS = {
    "demo-sd15-controlnet-canny": (build_sd15, 11),
    "demo-sd15-controlnet-depth": (build_sd15, 12),
    "demo-sd15-controlnet-pose": (build_sd15, 13),
    "demo-sdxl-controlnet-union": (build_sdxl_union, 14),
    "demo-sd3-controlnet-canny": (build_sd3, 15),
    "demo-flux-controlnet-union": (build_flux_union, 16),
    "demo-ip-adapter-sd15": (build_ip_adapter, 17),
    "demo-ip-adapter-sdxl": (build_ip_adapter, 18),
    "demo-ip-adapter-flux": (build_flux_ip_adapter, 19),
    "demo-clip-vit-large-patch14": (build_clip_vision_repo, 20),
}


def build_tiny_attached(repo_id: str, folder: Path, base_folder: Path) -> None:
    """Write the demo ControlNet or IP-Adapter `repo_id`, shaped for the tiny base model in `base_folder`."""
    builder, seed = _BUILDERS[repo_id]
    builder(Path(folder), Path(base_folder), seed)
