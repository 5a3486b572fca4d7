"""A GGUF encoder file written from a T5/UMT5 encoder folder, in the layout of the community's
`t5-v1_1-xxl-encoder-*.gguf` / `umt5-xxl-encoder-*.gguf` files: architecture `t5encoder`, llama.cpp's tensor names,
2-D weights in Q8_0 (or F16), norms and the tensors whose rows are not a multiple of 32 in F32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipelines.memory.encoder_storage import encoder_class
from pipelines.memory.gguf_encoder import GGUF_ARCHITECTURE, gguf_names

QUANT_BLOCK = 32  # Q8_0 quantizes rows in blocks of 32 values


def write_gguf_encoder(folder: Path, path: Path, quant: str = "Q8_0", name: str = "t5-v1_1-xxl-encoder") -> Path:
    """Write the encoder of `folder` to `path` with its 2-D weights in `quant` ("Q8_0" or "F16")."""
    import gguf

    model = encoder_class(folder).from_pretrained(folder, dtype=torch.float32)
    config = model.config
    writer = gguf.GGUFWriter(str(path), GGUF_ARCHITECTURE)
    writer.add_name(name)
    writer.add_context_length(512)
    writer.add_embedding_length(config.d_model)
    writer.add_feed_forward_length(config.d_ff)
    writer.add_block_count(config.num_layers)
    writer.add_head_count(config.num_heads)
    writer.add_key_length(config.d_kv)
    writer.add_value_length(config.d_kv)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_relative_attn_buckets_count(config.relative_attention_num_buckets)
    writer.add_decoder_start_token_id(config.decoder_start_token_id or 0)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "Q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    tensors = dict(model.named_parameters())
    written = set()
    for ours, theirs in gguf_names(model).items():
        if theirs in written or ours not in tensors:
            continue
        written.add(theirs)
        values = tensors[ours].detach().numpy().astype(np.float32)
        if values.ndim == 2 and values.shape[1] % QUANT_BLOCK == 0:
            if quant == "Q8_0":
                kind = gguf.GGMLQuantizationType.Q8_0
                writer.add_tensor(theirs, gguf.quants.quantize(values, kind), raw_dtype=kind)
            else:
                writer.add_tensor(theirs, values.astype(np.float16))
        else:
            writer.add_tensor(theirs, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
