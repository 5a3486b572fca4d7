"""T5 and UMT5 encoders from the GGUF files the community publishes (`t5-v1_1-xxl-encoder-Q8_0.gguf`,
`umt5-xxl-encoder-Q8_0.gguf`…), read tensor by tensor like a safetensors encoder (`encoder_storage.py`).

Those files use llama.cpp's names for the T5 encoder (`token_embd`, `enc.blk.0.attn_q`, `enc.blk.0.ffn_gate`,
`enc.output_norm`…, architecture `t5encoder`), which `gguf`'s own name map turns into transformers' names, as
transformers does when it reads them (`from_pretrained(..., gguf_file=...)`). The model is built from the
pipeline's own encoder config (nothing is guessed from the file), each tensor is dequantized from its GGUF type
into float32 on its own and stored as the plan says: in the compute dtype, or int8/fp8 again.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.memory.encoder_storage import build_empty, encoder_class, read_encoder
from pipelines.memory.stored_weights import StoredAs

GGUF_ARCHITECTURE = "t5encoder"
_SUFFIXES = (".weight", ".bias")


def gguf_names(model: torch.nn.Module) -> dict[str, str]:
    """transformers name -> GGUF name for every tensor of a T5/UMT5 encoder (tied names included)."""
    import gguf

    blocks = model.config.num_layers
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, blocks)
    names = {}
    for name, _ in [*model.named_parameters(remove_duplicate=False), *model.named_buffers()]:
        stem, suffix = name, ""
        if name.endswith(_SUFFIXES):
            stem, _, suffix = name.rpartition(".")
            suffix = "." + suffix
        mapped = name_map.get_name(stem)
        if mapped is not None:
            names[name] = mapped + suffix
    return names


def gguf_metadata(path: Path) -> dict[str, object]:
    """The few header fields that say which encoder a file holds: architecture, name, blocks and width."""
    import gguf

    reader = gguf.GGUFReader(path)

    def field(key: str):
        found = reader.fields.get(key)
        if found is None:
            return None
        value = found.contents()
        return value

    architecture = field("general.architecture")
    return {
        "architecture": architecture,
        "name": field("general.name") or "",
        "blocks": field(f"{architecture}.block_count"),
        "width": field(f"{architecture}.embedding_length"),
    }


class GGUFSource:
    """The tensors of a GGUF encoder file by their transformers names, each dequantized when read."""

    def __init__(self, path: Path, names: dict[str, str]):
        import gguf

        self._reader = gguf.GGUFReader(path)
        if self._reader.fields.get("general.architecture").contents() != GGUF_ARCHITECTURE:
            raise ValueError(f"{Path(path).name} is not a T5 encoder GGUF file (architecture {GGUF_ARCHITECTURE!r})")
        self._tensors = {tensor.name: tensor for tensor in self._reader.tensors}
        self._names = {ours: theirs for ours, theirs in names.items() if theirs in self._tensors}

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def read(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        tensor = self._tensors[self._names[name]]
        values = dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions innermost first
        return torch.from_numpy(values.astype("float32", copy=False).reshape(shape).copy())


@torch.inference_mode(False)
def read_gguf_encoder(path: Path, folder: Path, dtype: torch.dtype, stored: StoredAs, class_name: str | None = None) -> torch.nn.Module:
    """The encoder of `folder` (its config, its class) with its weights from the GGUF file at `path`."""
    model = build_empty(encoder_class(folder, class_name), folder)
    return read_encoder(model, GGUFSource(path, gguf_names(model)), dtype, stored)
