"""T5 and UMT5 encoders from the GGUF files the community publishes (`t5-v1_1-xxl-encoder-Q8_0.gguf`,
`umt5-xxl-encoder-Q8_0.gguf`…), read tensor by tensor like a safetensors encoder (`encoder_storage.py`).

Those files use llama.cpp's names for the T5 encoder (`token_embd`, `enc.blk.0.attn_q`, `enc.blk.0.ffn_gate`,
`enc.output_norm`…, architecture `t5encoder`), which `gguf`'s own name map turns into transformers' names, as
transformers does when it reads them (`from_pretrained(..., gguf_file=...)`). The model is built from the
pipeline's own encoder config (nothing is guessed from the file), each tensor is dequantized from its GGUF type
into float32 on its own and stored as the plan says: in the compute dtype, or int8/fp8 again.
"""

from __future__ import annotations

import warnings
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


# Rows dequantized at a time: float32 work space of a few tens of MB, where UMT5-XXL's 256k-token embedding in one go
# would take 4.2 GB for a moment.
ROWS_AT_ONCE = 4096


class GGUFSource:
    """The tensors of a GGUF encoder file by their transformers names, each dequantized when read, row chunk by row
    chunk, into `dtype`."""

    def __init__(self, path: Path, names: dict[str, str], dtype: torch.dtype = torch.float32):
        import gguf

        self.dtype = dtype
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
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions innermost first
        out = torch.empty(shape, dtype=self.dtype)
        data = tensor.data  # a view on the memory-mapped file: one row of blocks per row of the weight
        rows = out.reshape(-1, shape[-1]) if len(shape) > 1 else out.reshape(1, -1)
        with warnings.catch_warnings():
            # An unquantized tensor comes back as the read-only mapping itself; it is only copied from.
            warnings.simplefilter("ignore", UserWarning)
            if data.ndim < 2 or data.shape[0] != rows.shape[0]:
                rows.copy_(torch.from_numpy(dequantize(data, tensor.tensor_type).astype("float32")).reshape(rows.shape))
                return out
            for start in range(0, rows.shape[0], ROWS_AT_ONCE):
                chunk = dequantize(data[start : start + ROWS_AT_ONCE], tensor.tensor_type).astype("float32", copy=False)
                rows[start : start + ROWS_AT_ONCE].copy_(torch.from_numpy(chunk).reshape(-1, rows.shape[1]))
        return out


@torch.inference_mode(False)
def read_gguf_encoder(path: Path, folder: Path, dtype: torch.dtype, stored: StoredAs, class_name: str | None = None) -> torch.nn.Module:
    """The encoder of `folder` (its config, its class) with its weights from the GGUF file at `path`."""
    model = build_empty(encoder_class(folder, class_name), folder)
    # Dequantized straight into the compute dtype (float32 where transformers keeps float16 models' layers in it).
    source = GGUFSource(path, gguf_names(model), torch.float32 if dtype == torch.float16 else dtype)
    return read_encoder(model, source, dtype, stored)
