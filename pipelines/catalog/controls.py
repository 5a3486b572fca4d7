"""The models that attach to an image model for one job: ControlNets (a control image steers the layout) and
IP-Adapters (a reference image acts as a prompt), as data.

Each is published in a repo of its own (`AttachedRepo`), stored once in `<models_dir>/<id>/` (demo ones, built by our
code, in `<models_dir>/demo/<id>/`) and read beside the base model's pipeline, whose components it joins (see
`pipelines/loading/loaders.py`). A ControlNet serves control types; a union ControlNet serves several, each a mode
number its authors chose. For a model, each type is served by the first ControlNet below that fits its family and
base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from pipelines.catalog.families import DEMO_LICENCE
from pipelines.catalog.schema import Family, frozen

# What the app makes of a picture given for a control type before the ControlNet sees it: edges by OpenCV (canny),
# a depth map by the installed depth model unless the picture is one (depth), or the picture as given (pose
# skeletons, tiles, blur and the other union modes: no maintained detector package is used for them).
PREPARATIONS: Mapping[str, str] = frozen({"canny": "canny", "depth": "depth"})
PREPARED_AS_GIVEN = "none"


@dataclass(frozen=True)
class AttachedRepo:
    """A repo an attached model is read from: what to download of it and the file that says it is complete."""

    id: str
    name: str
    # None for a demo model, which our own code builds.
    repo: str | None
    allow_patterns: tuple[str, ...]
    folder_marker: str
    size_bytes: int
    licence: str

    @property
    def demo(self) -> bool:
        return self.repo is None


@dataclass(frozen=True)
class ControlNetSpec:
    """One ControlNet: its repo, its diffusers class and the control types it serves (type -> union mode, None for a
    single-purpose ControlNet)."""

    source: AttachedRepo
    family: Family
    model_class: str
    types: Mapping[str, int | None]
    # The model ids (their weights' ids) it was trained for; empty: every model of the family.
    bases: tuple[str, ...] = ()
    # The weight files' precision where the repo ships several (lllyasviel's fp16 copies beside fp32).
    variant: str | None = None

    @property
    def id(self) -> str:
        return self.source.id

    @property
    def union(self) -> bool:
        return any(mode is not None for mode in self.types.values())


@dataclass(frozen=True)
class IPAdapterSpec:
    """One IP-Adapter: its weight file in its repo and the CLIP vision encoder that turns reference images into its
    input (a folder of the same repo, as h94 ships them, or a repo of its own for XLabs' FLUX.1 adapter)."""

    id: str
    name: str
    family: Family
    source: AttachedRepo
    subfolder: str
    weight_name: str
    # The encoder's folder inside `source`, or "" when it comes from `encoder`.
    encoder_subfolder: str = ""
    encoder: AttachedRepo | None = None
    bases: tuple[str, ...] = ()
    # Whether several reference images may be given at once (their embeddings are averaged).
    several_images: bool = True


@dataclass(frozen=True)
class ControlPipeline:
    """How a family runs ControlNets: diffusers' pipeline class (built from the loaded pipeline with `from_pipe`), the
    one for union ControlNets where it differs, the keyword its control images go by, and whether the pipeline draws
    from the job's generator before the noise (FLUX encodes the control images with it), so the noise is drawn first."""

    pipeline_class: str
    image_keyword: str = "control_image"
    union_pipeline_class: str = ""
    # The union pipeline's keyword for the control images.
    union_image_keyword: str = "control_image"
    noise_first: bool = False


CONTROL_PIPELINES: Mapping[Family, ControlPipeline] = frozen({
    Family.SD15: ControlPipeline("StableDiffusionControlNetPipeline", image_keyword="image"),
    Family.SDXL: ControlPipeline(
        "StableDiffusionXLControlNetPipeline", image_keyword="image", union_pipeline_class="StableDiffusionXLControlNetUnionPipeline",
    ),
    Family.SD3: ControlPipeline("StableDiffusion3ControlNetPipeline"),
    Family.FLUX: ControlPipeline("FluxControlNetPipeline", noise_first=True),
})

_OPENRAIL = "CreativeML OpenRAIL-M (as Stable Diffusion 1.5)."
_DIFFUSERS_MODEL = ("config.json", "diffusion_pytorch_model.safetensors")
_FLUX_DEV_LICENCE = "FLUX.1 [dev] Non-Commercial License (derived from FLUX.1 [dev])."


def _sd15(name: str, repo_name: str, control: str, size_bytes: int = 723_000_000) -> ControlNetSpec:
    # lllyasviel's v1.1 repos hold fp32 and fp16 safetensors, .bin copies and the original .pth; the fp16 one is read.
    source = AttachedRepo(
        id=repo_name.replace("_", "-"), name=name, repo=f"lllyasviel/{repo_name}",
        allow_patterns=("config.json", "diffusion_pytorch_model.fp16.safetensors"), folder_marker="config.json",
        size_bytes=size_bytes, licence=_OPENRAIL,
    )
    return ControlNetSpec(source, Family.SD15, "ControlNetModel", frozen({control: None}), variant="fp16")


def _demo_repo(id: str, name: str) -> AttachedRepo:
    return AttachedRepo(id=id, name=name, repo=None, allow_patterns=(), folder_marker="config.json", size_bytes=1_000_000, licence=DEMO_LICENCE)


# xinsir's union numbering: 0 openpose, 1 depth, 2 hed/pidi/scribble/ted, 3 canny/lineart/anime lineart/mlsd, 4 normal,
# 5 segment (ProMax adds 6 tile, 7 repaint).
_SDXL_UNION_MODES = frozen({"pose": 0, "depth": 1, "softedge": 2, "canny": 3, "lineart": 3, "normal": 4, "segment": 5})
# InstantX's and Shakker-Labs' FLUX.1 union numbering.
_FLUX_UNION_MODES = frozen({"canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5, "low quality": 6})

CONTROLNETS: tuple[ControlNetSpec, ...] = (
    _sd15("ControlNet 1.1 Canny (SD1.5)", "control_v11p_sd15_canny", "canny"),
    _sd15("ControlNet 1.1 Depth (SD1.5)", "control_v11f1p_sd15_depth", "depth"),
    _sd15("ControlNet 1.1 OpenPose (SD1.5)", "control_v11p_sd15_openpose", "pose"),
    _sd15("ControlNet 1.1 Tile (SD1.5)", "control_v11f1e_sd15_tile", "tile"),
    ControlNetSpec(
        AttachedRepo(
            id="controlnet-union-sdxl-1.0", name="ControlNet Union SDXL 1.0 (xinsir)", repo="xinsir/controlnet-union-sdxl-1.0",
            # The repo also holds the ProMax model (`*_promax.*`), which diffusers loads from its own config.
            allow_patterns=_DIFFUSERS_MODEL, folder_marker="config.json", size_bytes=2_510_000_000, licence="Apache-2.0.",
        ),
        Family.SDXL, "ControlNetUnionModel", _SDXL_UNION_MODES,
    ),
    # SD3 Medium's ControlNets (2B transformer); SD3.5 Large's are Stability's own and fit only that model.
    *(
        ControlNetSpec(
            AttachedRepo(
                id=f"sd3-controlnet-{kind}", name=f"SD3 ControlNet {kind.title()} (InstantX)", repo=f"InstantX/SD3-Controlnet-{kind.title()}",
                allow_patterns=_DIFFUSERS_MODEL, folder_marker="config.json", size_bytes=1_190_000_000,
                licence="Stability AI Community License (derived from SD3 Medium).",
            ),
            Family.SD3, "SD3ControlNetModel", frozen({kind: None}), bases=("sd3-medium",),
        )
        for kind in ("canny", "pose", "tile")
    ),
    *(
        ControlNetSpec(
            AttachedRepo(
                id=f"sd35-large-controlnet-{kind}", name=f"SD3.5 Large ControlNet {kind.title()}",
                repo=f"stabilityai/stable-diffusion-3.5-large-controlnet-{kind}",
                allow_patterns=_DIFFUSERS_MODEL, folder_marker="config.json", size_bytes=8_610_000_000,
                licence="Stability AI Community License; gated on the Hub (accept the licence first).",
            ),
            Family.SD3, "SD3ControlNetModel", frozen({"tile" if kind == "blur" else kind: None}), bases=("sd35-large",),
        )
        for kind in ("canny", "depth", "blur")
    ),
    ControlNetSpec(
        AttachedRepo(
            id="flux1-dev-controlnet-union-pro", name="FLUX.1 [dev] ControlNet Union Pro (Shakker-Labs)",
            repo="Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro", allow_patterns=_DIFFUSERS_MODEL, folder_marker="config.json",
            size_bytes=6_600_000_000, licence=_FLUX_DEV_LICENCE,
        ),
        Family.FLUX, "FluxControlNetModel", _FLUX_UNION_MODES,
    ),
    ControlNetSpec(
        AttachedRepo(
            id="flux1-dev-controlnet-union", name="FLUX.1 [dev] ControlNet Union (InstantX)",
            repo="InstantX/FLUX.1-dev-Controlnet-Union", allow_patterns=_DIFFUSERS_MODEL, folder_marker="config.json",
            size_bytes=6_600_000_000, licence=_FLUX_DEV_LICENCE,
        ),
        Family.FLUX, "FluxControlNetModel", _FLUX_UNION_MODES,
    ),
    # The demo models' ControlNets: tiny, random, built for the demo bases (pipelines/tiny/controlnets.py).
    ControlNetSpec(_demo_repo("demo-sd15-controlnet-canny", "ControlNet Canny (tiny)"), Family.SD15, "ControlNetModel",
                   frozen({"canny": None}), bases=("demo-sd15",)),
    ControlNetSpec(_demo_repo("demo-sd15-controlnet-depth", "ControlNet Depth (tiny)"), Family.SD15, "ControlNetModel",
                   frozen({"depth": None}), bases=("demo-sd15",)),
    ControlNetSpec(_demo_repo("demo-sd15-controlnet-pose", "ControlNet Pose (tiny)"), Family.SD15, "ControlNetModel",
                   frozen({"pose": None}), bases=("demo-sd15",)),
    ControlNetSpec(_demo_repo("demo-sdxl-controlnet-union", "ControlNet Union SDXL (tiny)"), Family.SDXL, "ControlNetUnionModel",
                   _SDXL_UNION_MODES, bases=("demo-sdxl",)),
    ControlNetSpec(_demo_repo("demo-sd3-controlnet-canny", "SD3 ControlNet Canny (tiny)"), Family.SD3, "SD3ControlNetModel",
                   frozen({"canny": None}), bases=("demo-sd3",)),
    ControlNetSpec(_demo_repo("demo-flux-controlnet-union", "FLUX.1 ControlNet Union (tiny)"), Family.FLUX, "FluxControlNetModel",
                   _FLUX_UNION_MODES, bases=("demo-flux",)),
)

_H94 = "h94/IP-Adapter"
_H94_LICENCE = "Apache-2.0 (the image encoders: OpenCLIP's MIT)."


def _h94(id: str, name: str, family: Family, subfolder: str, weight_name: str, encoder_subfolder: str, size_bytes: int) -> IPAdapterSpec:
    # Each adapter in a folder of its own with the image encoder it needs (ViT-H: 2.5 GB, ViT-bigG: 3.7 GB, fp32).
    source = AttachedRepo(
        id=id, name=name, repo=_H94, allow_patterns=(f"{subfolder}/{weight_name}", f"{encoder_subfolder}/config.json",
                                                      f"{encoder_subfolder}/model.safetensors"),
        folder_marker=f"{subfolder}/{weight_name}", size_bytes=size_bytes, licence=_H94_LICENCE,
    )
    return IPAdapterSpec(id, name, family, source, subfolder, weight_name, encoder_subfolder=encoder_subfolder)


IP_ADAPTERS: tuple[IPAdapterSpec, ...] = (
    _h94("ip-adapter-sd15", "IP-Adapter (SD1.5)", Family.SD15, "models", "ip-adapter_sd15.safetensors", "models/image_encoder", 2_574_000_000),
    _h94("ip-adapter-plus-sd15", "IP-Adapter Plus (SD1.5)", Family.SD15, "models", "ip-adapter-plus_sd15.safetensors",
         "models/image_encoder", 2_627_000_000),
    _h94("ip-adapter-plus-face-sd15", "IP-Adapter Plus Face (SD1.5)", Family.SD15, "models", "ip-adapter-plus-face_sd15.safetensors",
         "models/image_encoder", 2_627_000_000),
    _h94("ip-adapter-sdxl", "IP-Adapter (SDXL)", Family.SDXL, "sdxl_models", "ip-adapter_sdxl.safetensors", "sdxl_models/image_encoder",
         4_393_000_000),
    _h94("ip-adapter-plus-sdxl-vit-h", "IP-Adapter Plus ViT-H (SDXL)", Family.SDXL, "sdxl_models", "ip-adapter-plus_sdxl_vit-h.safetensors",
         "models/image_encoder", 3_377_000_000),
    _h94("ip-adapter-plus-face-sdxl-vit-h", "IP-Adapter Plus Face ViT-H (SDXL)", Family.SDXL, "sdxl_models",
         "ip-adapter-plus-face_sdxl_vit-h.safetensors", "models/image_encoder", 3_377_000_000),
    IPAdapterSpec(
        "flux-ip-adapter", "IP-Adapter (FLUX.1, XLabs)", Family.FLUX,
        AttachedRepo(
            id="flux-ip-adapter", name="XLabs FLUX.1 IP-Adapter", repo="XLabs-AI/flux-ip-adapter", allow_patterns=("ip_adapter.safetensors",),
            folder_marker="ip_adapter.safetensors", size_bytes=982_000_000, licence=_FLUX_DEV_LICENCE,
        ),
        subfolder="", weight_name="ip_adapter.safetensors",
        encoder=AttachedRepo(
            id="clip-vit-large-patch14", name="CLIP ViT-L/14 image encoder (OpenAI)", repo="openai/clip-vit-large-patch14",
            # diffusers builds the image processor from the encoder's image size: preprocessor_config.json is not read.
            allow_patterns=("config.json", "model.safetensors"), folder_marker="config.json",
            size_bytes=1_710_000_000, licence="MIT.",
        ),
        # XLabs' adapter takes one image embedding.
        several_images=False,
    ),
    IPAdapterSpec(
        "demo-ip-adapter-sd15", "IP-Adapter (tiny)", Family.SD15,
        AttachedRepo(id="demo-ip-adapter-sd15", name="IP-Adapter (tiny)", repo=None, allow_patterns=(),
                     folder_marker="models/ip-adapter.safetensors", size_bytes=100_000, licence=DEMO_LICENCE),
        subfolder="models", weight_name="ip-adapter.safetensors", encoder_subfolder="models/image_encoder", bases=("demo-sd15",),
    ),
    IPAdapterSpec(
        "demo-ip-adapter-sdxl", "IP-Adapter SDXL (tiny)", Family.SDXL,
        AttachedRepo(id="demo-ip-adapter-sdxl", name="IP-Adapter SDXL (tiny)", repo=None, allow_patterns=(),
                     folder_marker="models/ip-adapter.safetensors", size_bytes=100_000, licence=DEMO_LICENCE),
        subfolder="models", weight_name="ip-adapter.safetensors", encoder_subfolder="models/image_encoder", bases=("demo-sdxl",),
    ),
    IPAdapterSpec(
        "demo-ip-adapter-flux", "IP-Adapter FLUX.1 (tiny)", Family.FLUX,
        AttachedRepo(id="demo-ip-adapter-flux", name="IP-Adapter FLUX.1 (tiny)", repo=None, allow_patterns=(),
                     folder_marker="ip_adapter.safetensors", size_bytes=100_000, licence=DEMO_LICENCE),
        subfolder="", weight_name="ip_adapter.safetensors",
        encoder=AttachedRepo(id="demo-clip-vit-large-patch14", name="CLIP image encoder (tiny)", repo=None, allow_patterns=(),
                             folder_marker="config.json", size_bytes=100_000, licence=DEMO_LICENCE),
        bases=("demo-flux",), several_images=False,
    ),
)


def _fits(family: Family, bases: tuple[str, ...], demo: bool, model_family: Family, weights_id: str, weights_demo: bool) -> bool:
    return family == model_family and demo == weights_demo and (not bases or weights_id in bases)


def control_types(model_family: Family, weights_id: str, weights_demo: bool) -> dict[str, ControlNetSpec]:
    """The control types a model takes, each with the ControlNet that serves it (the first that fits)."""
    found: dict[str, ControlNetSpec] = {}
    for controlnet in CONTROLNETS:
        if _fits(controlnet.family, controlnet.bases, controlnet.source.demo, model_family, weights_id, weights_demo):
            for kind in controlnet.types:
                found.setdefault(kind, controlnet)
    return found


def ip_adapters(model_family: Family, weights_id: str, weights_demo: bool) -> dict[str, IPAdapterSpec]:
    """The IP-Adapters a model takes, by id, the default first."""
    return {
        adapter.id: adapter for adapter in IP_ADAPTERS
        if _fits(adapter.family, adapter.bases, adapter.source.demo, model_family, weights_id, weights_demo)
    }


# The components a job's attachments add to the memory plan (`memory/job_plan.plan_job`): the ControlNets run beside
# the denoiser at every step; the IP-Adapter (its layers, which join the denoiser's attention, with its image encoder,
# which runs once like a text encoder) is counted as the image encoder.
CONTROLNET_COMPONENT = "controlnet"
IMAGE_ENCODER_COMPONENT = "image_encoder"


def attached_bytes(controlnets: tuple[ControlNetSpec, ...], ip_adapter: IPAdapterSpec | None) -> dict[str, int]:
    """The bytes a job's ControlNets (each read once, a union net however many modes it serves) and IP-Adapter (with its
    image encoder) add, by plan component, as the catalog sizes their downloads."""
    found: dict[str, int] = {}
    controlnet_bytes = sum({controlnet.id: controlnet.source.size_bytes for controlnet in controlnets}.values())
    if controlnet_bytes:
        found[CONTROLNET_COMPONENT] = controlnet_bytes
    if ip_adapter is not None:
        found[IMAGE_ENCODER_COMPONENT] = ip_adapter.source.size_bytes + (ip_adapter.encoder.size_bytes if ip_adapter.encoder else 0)
    return found


def attached_names(controlnets: tuple[ControlNetSpec, ...], ip_adapter: IPAdapterSpec | None) -> list[str]:
    """The attached models' names, each once, for messages."""
    names = [controlnet.source.name for controlnet in controlnets] + ([ip_adapter.name] if ip_adapter is not None else [])
    return list(dict.fromkeys(names))


def preparation(kind: str) -> str:
    return PREPARATIONS.get(kind, PREPARED_AS_GIVEN)
