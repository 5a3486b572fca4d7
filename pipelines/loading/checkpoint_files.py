"""Single checkpoint files dropped in the models folder, listed as catalog entries.

A `.safetensors` file is a community fine-tune: the whole pipeline for SD1.5/SDXL, the transformer alone for
FLUX/SD3 (PixelWave and most others) and Wan. A `.gguf` file is a quantized transformer (Q8_0 … Q4_K_S). The variant
names what the weights are stored in: bf16, fp16, "fp8" (`*_fp8_e4m3fn`), "fp8 scaled" (fp8 with a `scale_weight`
per layer, ComfyUI's and Kijai's "scaled" files), or the GGUF type. Only the
file's header is read: its key names say the family, diffusers' own `infer_diffusers_model_type` says which
base model's configs it loads against (FLUX.1 dev or schnell, SD3 Medium or 3.5 Large, Wan T2V 1.3B or I2V 14B…),
and the base says the file's task (a Wan I2V file makes videos from a picture). A sidecar
`<file>.json` holding `{"base": "<catalog id>"}` overrides that guess (a fine-tune of another base).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import torch

from pipelines.catalog import FAMILIES, MODELS_BY_ID, CheckpointFile, FamilySpec, ModelSpec
from pipelines.media import file_sha256
from pipelines.memory.original_layouts import scaled_keys

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".gguf")
_FLOAT_TYPES = ("F32", "F16", "BF16", "fp32", "fp16", "bf16")
_SAFETENSORS_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F8_E4M3": "fp8", "F8_E5M2": "fp8 e5m2"}


class UnknownCheckpoint(ValueError):
    """A file in the models folder that is not a checkpoint of a family Atelier runs; the message says why."""


def scan_checkpoint_files(models_dir: Path) -> tuple[list[ModelSpec], list[str]]:
    """One catalog entry per checkpoint file directly in `models_dir`, and a message per file that is not one."""
    specs, problems = [], []
    for path in sorted(Path(models_dir).glob("*")):
        if path.suffix not in CHECKPOINT_SUFFIXES or not path.is_file():
            continue
        try:
            specs.append(checkpoint_spec(path))
        except UnknownCheckpoint as error:
            log.warning("%s", error)
            problems.append(str(error))
    return specs, problems


def checkpoint_spec(path: Path) -> ModelSpec:
    """The catalog entry for one checkpoint file; UnknownCheckpoint when its layout is not one we know."""
    stat = path.stat()
    return _checkpoint_spec(path.resolve(), stat.st_size, stat.st_mtime_ns, _sidecar_base(path))


# bitsandbytes' 4-bit files (Forge's `flux1-dev-bnb-nf4*.safetensors`): by name, or by the quantization state
# bitsandbytes stores beside each packed weight (`<weight>.quant_state.bitsandbytes__nf4`, `.absmax`, `.quant_map`).
_BNB_NAME_MARKERS = ("nf4", "bnb", "fp4")
_BNB_KEY_MARKERS = ("quant_state.bitsandbytes__", ".quant_map")


def _refuse_bitsandbytes(path: Path) -> None:
    raise UnknownCheckpoint(
        f"{path.name}: a bitsandbytes NF4/FP4 checkpoint (Forge's format). Its packed 4-bit weights need a CUDA GPU and "
        "bitsandbytes' own loader, which Atelier does not use for single files. Use the model's folder with the NF4 "
        "weight format instead (quantized while loading), or a GGUF file (Q4_K_S is about the same size)."
    )


@lru_cache(maxsize=256)
def _checkpoint_spec(path: Path, size_bytes: int, mtime_ns: int, chosen_base: str | None) -> ModelSpec:
    if any(marker in part for part in path.stem.lower().replace("_", "-").split("-") for marker in _BNB_NAME_MARKERS):
        _refuse_bitsandbytes(path)
    try:
        shapes, bytes_by_type = _read_header(path)
    except Exception as error:  # safetensors and gguf raise their own types for a damaged or foreign file
        raise UnknownCheckpoint(f"{path.name}: not a readable checkpoint ({type(error).__name__}: {error}).") from None
    if any(marker in name for name in shapes for marker in _BNB_KEY_MARKERS):
        _refuse_bitsandbytes(path)
    family = _family(shapes)
    if family is None:
        sample = ", ".join(sorted(shapes)[:3])
        known = ", ".join(spec.family.value for spec in FAMILIES.values() if spec.file_markers)
        raise UnknownCheckpoint(
            f"{path.name}: the tensor names ({sample}, …) are not those of a checkpoint of the families Atelier loads "
            f"from one file ({known}); other models go in their own diffusers folder."
        )
    base = _base(path, family, shapes, chosen_base)
    file_format = path.suffix.lstrip(".")
    # A quantized file keeps norms, biases and tables in float; its quantized type is what names the variant.
    quantized = Counter({name: size for name, size in bytes_by_type.items() if name not in _FLOAT_TYPES})
    variant = (quantized or bytes_by_type).most_common(1)[0][0] if bytes_by_type else "unknown"
    if variant.startswith("fp8") and scaled_keys(shapes):
        variant = "fp8 scaled"  # a `scale_weight` per layer: its fp8 values are not the weights until scaled
    if family.file_holds_pipeline:
        component_bytes = {family.denoiser: size_bytes}
    else:
        component_bytes = {**base.component_bytes, family.denoiser: size_bytes}
    return replace(
        base,
        id=path.name,
        name=f"{path.stem} ({variant}, {base.name} base)",
        repo=None,
        base=base.id,
        demo=False,
        component_bytes=component_bytes,
        licence=f"The licence given by the file's author (for fine-tunes, usually the base model's: {base.licence})",
        checkpoint=CheckpointFile(path=str(path), format=file_format, variant=variant, size_bytes=size_bytes),
    )


def _read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], Counter]:
    """Tensor shapes by name, and the bytes stored in each type (Q8_0, bf16…), read without loading any weights."""
    shapes, bytes_by_type = {}, Counter()
    if path.suffix == ".gguf":
        import gguf

        for tensor in gguf.GGUFReader(path).tensors:
            # GGUF lists dimensions innermost first.
            shapes[tensor.name] = tuple(int(side) for side in reversed(tensor.shape.tolist()))
            bytes_by_type[tensor.tensor_type.name] += int(tensor.n_bytes)
    else:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as opened:
            for name in opened.keys():
                tensor = opened.get_slice(name)
                shapes[name] = tuple(tensor.get_shape())
                dtype = tensor.get_dtype()
                bytes_by_type[_SAFETENSORS_DTYPES.get(dtype, dtype.lower())] += torch.Size(shapes[name]).numel()
    return shapes, bytes_by_type


def _family(shapes: dict[str, tuple[int, ...]]) -> FamilySpec | None:
    names = list(shapes)
    for family in FAMILIES.values():
        if family.file_markers and any(marker in name for marker in family.file_markers for name in names):
            return family
    return None


def _base(path: Path, family: FamilySpec, shapes: dict[str, tuple[int, ...]], chosen_base: str | None) -> ModelSpec:
    if chosen_base is not None:
        base = MODELS_BY_ID.get(chosen_base)
        # The families files of this layout can be: the family's own, and those of the bases it maps files to
        # (a Wan file with control blocks is a Wan VACE model).
        families = {family.family, *(MODELS_BY_ID[base_id].family for base_id in family.file_bases.values())}
        if base is None or base.family not in families or base.base:
            bases = [spec.id for spec in MODELS_BY_ID.values() if spec.family in families and not spec.base]
            raise UnknownCheckpoint(
                f"{path.name}: its sidecar names the base {chosen_base!r}, which is not a {family.family.value} model; "
                f"choose one of {', '.join(bases)}."
            )
        return base
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    # diffusers' guess reads key names and a few shapes; meta tensors give it the shapes without the weights.
    checkpoint = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    try:
        model_type = infer_diffusers_model_type(checkpoint)
    except (KeyError, IndexError):  # a key its rules expect beside another is missing: not a type it knows
        model_type = None
    base_id = family.file_bases.get(model_type, next(iter(family.file_bases.values())))
    return MODELS_BY_ID[base_id]


def _sidecar_base(path: Path) -> str | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        return str(json.loads(sidecar.read_text())["base"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UnknownCheckpoint(f"{sidecar.name}: expected {{\"base\": \"<model id>\"}} ({type(error).__name__}: {error}).") from None


def checkpoint_record(checkpoint: CheckpointFile | None) -> dict | None:
    """What a result records of the checkpoint file it came from: the full SHA-256, as model sites list it, so the
    result names the exact file. None for a model loaded from its folder."""
    if checkpoint is None:
        return None
    return {
        "file": checkpoint.file_name, "sha256": file_sha256(checkpoint.path), "format": checkpoint.format,
        "variant": checkpoint.variant,
    }


# -- GGUF text encoder files ------------------------------------------------------------------------
# The community's T5 encoders in GGUF (`t5-v1_1-xxl-encoder-Q8_0.gguf`, `umt5-xxl-encoder-Q5_K_M.gguf`…), put in
# `<models_dir>/text_encoders/`, replace the repo's encoder of the families that use that encoder. A file is used
# only where its blocks and width are those of the pipeline's encoder config (a demo model's tiny T5 is not XXL).

ENCODER_FILES_FOLDER = "text_encoders"
# File name prefix -> the kind of encoder it holds.
ENCODER_FILE_KINDS = {"t5-v1_1-xxl-encoder": "t5", "umt5-xxl-encoder": "umt5"}
# Family -> (component, kind of encoder it uses).
ENCODER_FILE_USERS = {
    "flux": ("text_encoder_2", "t5"), "sd3": ("text_encoder_3", "t5"),
    "wan": ("text_encoder", "umt5"), "wan_vace": ("text_encoder", "umt5"), "skyreels_v2": ("text_encoder", "umt5"),
}


def encoder_file_kind(path: Path) -> str | None:
    """The kind of encoder a GGUF file's name says it holds ("t5", "umt5"), None for another file."""
    if path.suffix != ".gguf":
        return None
    return next((kind for prefix, kind in ENCODER_FILE_KINDS.items() if path.name.lower().startswith(prefix)), None)


def encoder_files_for(models_dir: Path, family: str, folder: Path) -> dict[str, Path]:
    """Component name -> the GGUF encoder file in the models folder that replaces it for a model of `family` read
    from `folder`; empty when there is none, or none of the encoder's size."""
    use = ENCODER_FILE_USERS.get(family)
    encoders = Path(models_dir) / ENCODER_FILES_FOLDER
    if use is None or not encoders.is_dir():
        return {}
    component, kind = use
    config_path = Path(folder) / component / "config.json"
    if not config_path.is_file():
        return {}
    config = json.loads(config_path.read_text())
    from pipelines.memory.gguf_encoder import gguf_metadata

    for path in sorted(encoders.glob("*.gguf")):
        if encoder_file_kind(path) != kind:
            continue
        try:
            header = gguf_metadata(path)
        except (OSError, ValueError) as error:
            log.warning("%s is not a readable GGUF file: %s", path.name, error)
            continue
        if (header["blocks"], header["width"]) == (config.get("num_layers"), config.get("d_model")):
            return {component: path}
        log.info("%s does not fit %s (%s blocks × %s wide, the model's encoder %s × %s)", path.name, folder.name,
                 header["blocks"], header["width"], config.get("num_layers"), config.get("d_model"))
    return {}
