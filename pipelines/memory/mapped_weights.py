"""The disk tier: a component whose weights stay in their memory-mapped safetensors file and are read as used.

Every parameter is a view on the file's mapping, so the process holds no copy of its own: a page is read from disk
the first time a layer touches it, and the page cache keeps what the machine's free RAM allows (it counts in the
process as file-backed memory, `RssFile`, which the OS takes back under pressure, never as `RssAnon`). On the GPU the
encoder visits block by block (`encoder_streaming.py`), each block copied from the mapping just before it runs.

What it costs: a job reads the component's file once per use (`encoder_plan.disk_read_bytes`) — from disk when the
page cache dropped it, from RAM when it kept it. Text encoders come first: they run once per job.

A tensor whose file dtype differs from the compute dtype cannot be a view: it is converted into RAM (a bf16 file
read for float32 compute on the CPU is all converted; the plan then should not choose this tier).
"""

from __future__ import annotations

import logging
import mmap
import warnings
from pathlib import Path

import torch

from pipelines.memory.block_streamer import replace_parameter, set_buffer
from pipelines.memory.encoder_storage import build_empty, dtype_rule, encoder_class, weights_stem
from pipelines.memory.weights_file import WeightsFile

log = logging.getLogger(__name__)


class MappedWeights:
    """The tensors of a safetensors folder as views on the files' mappings (read-only; the mapping stays open while
    any view lives)."""

    def __init__(self, folder: Path, stem: str = "model"):
        self.locations = WeightsFile(folder, stem=stem).locations
        self._maps: dict[Path, mmap.mmap] = {}
        for location in self.locations.values():
            if location.path not in self._maps:
                with open(location.path, "rb") as handle:
                    self._maps[location.path] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def __contains__(self, name: str) -> bool:
        return name in self.locations

    @property
    def file_bytes(self) -> int:
        return sum(len(mapping) for mapping in self._maps.values())

    def holds(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor`'s bytes lie in one of the mappings (a view on the file, not a copy in RAM)."""
        start = tensor.data_ptr()
        for mapping in self._maps.values():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                base = torch.frombuffer(mapping, dtype=torch.uint8, count=1).data_ptr()
            if base <= start and start + tensor.nbytes <= base + len(mapping):
                return True
        return False

    def read(self, name: str) -> torch.Tensor:
        """Tensor `name` as a view on the mapping: no byte is read before it is used."""
        location = self.locations[name]
        if location.nbytes == 0:
            return torch.empty(location.shape, dtype=location.dtype)
        with warnings.catch_warnings():
            # The mapping is read-only; torch warns that it cannot be written through, which is what we want.
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(self._maps[location.path], dtype=torch.uint8, count=location.nbytes, offset=location.offset)
        return flat.view(location.dtype).view(location.shape)


@torch.inference_mode(False)
def map_encoder(folder: Path, dtype: torch.dtype, class_name: str | None = None, variant: str | None = None) -> torch.nn.Module:
    """An encoder of a transformers folder whose weights are views on its mapped files (converted where the file's
    dtype is not the compute dtype)."""
    folder = Path(folder)
    model = build_empty(encoder_class(folder, class_name), folder)
    weights = MappedWeights(folder, stem=weights_stem(folder, variant))
    dtype_for = dtype_rule(model, dtype)
    converted = 0
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    for aliases in names.values():
        present = [name for name in aliases if name in weights]
        if not present:
            raise KeyError(f"{aliases[0]} is missing from {folder}")
        value = weights.read(present[0])
        target = dtype_for(aliases[0]) if value.is_floating_point() else value.dtype
        if value.dtype != target:
            value = value.to(target)
            converted += value.nbytes
        new = torch.nn.Parameter(value, requires_grad=False)
        for name in aliases:
            replace_parameter(model, name, new)
    for name, buffer in list(model.named_buffers()):
        if name in weights:
            set_buffer(model, name, weights.read(name).to(buffer.dtype))
    if converted:
        log.warning("%s: %.2f GB of weights converted into RAM (file dtype is not %s)", folder.name, converted / 1e9, dtype)
    model._mapped_weights = weights  # the mappings live as long as the model
    return model

