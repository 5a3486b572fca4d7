"""How the big weights are stored in memory: as shipped, or quantized on the fly to fp8 / int8 (torchao,
weight-only: half the bytes of bf16, computed in the compute dtype) or NF4 (bitsandbytes, a quarter; CUDA only).
"fp8 compute" also computes the denoiser's linear layers in fp8 (torchao: activations quantized per row at run
time, fp8 matmuls on the tensor cores; GPUs with compute capability 8.9+ only); the text encoders are stored in fp8.

Which components: the family's `quantizable` ones (the denoiser and the big text encoders). A GGUF transformer
is quantized already and stays as its file says.
"""

from __future__ import annotations

import logging
from enum import Enum

import torch

from pipelines.errors import InvalidRequest
from pipelines.hardware import fp8_compute_problem

log = logging.getLogger(__name__)


class WeightFormat(str, Enum):
    SHIPPED = "as shipped"
    FP8 = "fp8"
    INT8 = "int8"
    NF4 = "nf4"
    FP8_COMPUTE = "fp8 compute"


WEIGHT_FORMATS = tuple(choice.value for choice in WeightFormat)


def weight_format(value: str, device: str, capability: tuple[int, int] | None = None) -> WeightFormat:
    """The format named `value`, if this machine can use it; InvalidRequest naming what is possible otherwise."""
    try:
        chosen = WeightFormat(value)
    except ValueError:
        raise InvalidRequest("weights", f"{value!r} is not a weight format; choose one of {', '.join(WEIGHT_FORMATS)}") from None
    if chosen is WeightFormat.NF4:
        if device != "cuda":
            raise InvalidRequest("weights", "NF4 (bitsandbytes) needs an NVIDIA GPU; on this device choose fp8 or int8 instead")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise InvalidRequest("weights", "NF4 needs the bitsandbytes package (pip install bitsandbytes); or choose fp8 or int8") from None
    if chosen is WeightFormat.FP8_COMPUTE:
        problem = fp8_compute_problem(device, capability)
        if problem:
            raise InvalidRequest("weights", f"{problem}; choose fp8 to store the weights in fp8 and compute in bf16")
    return chosen


def nf4_pipeline_config(dtype: torch.dtype, names: list[str]):
    """The config a pipeline is loaded with to hold `names` in NF4 (bitsandbytes quantizes while reading, not after)."""
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(quant_backend="bitsandbytes_4bit", quant_kwargs=_nf4_kwargs(dtype), components_to_quantize=names)


def nf4_model_config(dtype: torch.dtype):
    """The same for one diffusers model loaded on its own (a transformer from a checkpoint file)."""
    from diffusers import BitsAndBytesConfig

    return BitsAndBytesConfig(**_nf4_kwargs(dtype))


def _nf4_kwargs(dtype: torch.dtype) -> dict:
    return dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def quantize_loaded(pipe, names: list[str], chosen: WeightFormat, denoiser: str = "transformer") -> list[str]:
    """Quantize the named components of a loaded pipeline to fp8 or int8 in place; the names it quantized."""
    if chosen not in (WeightFormat.FP8, WeightFormat.INT8, WeightFormat.FP8_COMPUTE):
        return []
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig, Int8WeightOnlyConfig, PerRow, quantize_,
    )

    config = Int8WeightOnlyConfig() if chosen is WeightFormat.INT8 else Float8WeightOnlyConfig()
    done = []
    for name in names:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        # The denoiser is where the compute is: its linear layers run fp8 matmuls.
        if chosen is WeightFormat.FP8_COMPUTE and name == denoiser:
            quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
        else:
            quantize_(module, config)
        done.append(name)
    log.info("stored %s in %s", ", ".join(done), chosen.value)
    return done
