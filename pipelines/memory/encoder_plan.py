"""What the RAM plan needs to know about the text encoders the memory engine holds, from the catalog's bytes alone
(pure functions: the plan answers for models that are not on disk).

- Stored int8/fp8 (`encoder_storage.py`): the Linear weights inside the blocks take one byte a value (plus one float32
  scale a row: under 0.1% for these widths); the trunk — embeddings, an output head, norms — stays as shipped.
- Read from disk as used (`mapped_weights.py`): no RAM of the process's own; each job reads the encoder's file once.
"""

from __future__ import annotations

# The share of an encoder's shipped bytes outside its blocks, from the published configs (vocabulary × width against
# all parameters).
TRUNK_SHARE = {
    "T5EncoderModel": 0.028,  # T5-XXL: 32,128 × 4,096 of 4.76 B parameters
    "UMT5EncoderModel": 0.185,  # UMT5-XXL: 256,384 × 4,096 of 5.68 B
    "LlamaForCausalLM": 0.131,  # Llama 3.1 8B: embeddings and output head, 2 × 128,256 × 4,096 of 8.03 B
    "LlamaModel": 0.070,  # HunyuanVideo's LLaVA-Llama-3-8B text model: embeddings only, 128,256 × 4,096 of 7.5 B
    "GlmModel": 0.070,  # GLM-4-9B: 151,552 × 4,096 of 8.9 B
}
DEFAULT_TRUNK_SHARE = 0.1
QUANTIZED = ("int8", "fp8")


def stored_encoder_bytes(shipped_bytes: int, stored: str, trunk_share: float = DEFAULT_TRUNK_SHARE) -> int:
    """RAM an encoder of `shipped_bytes` (16-bit, as the catalog counts it) takes stored as `stored` ("as shipped",
    "int8", "fp8"): int8 T5-XXL 4.9 GB of 9.5, UMT5-XXL 6.7 of 11.4, Llama 3.1 8B 9.1 of 16."""
    if stored not in QUANTIZED:
        return shipped_bytes
    trunk = int(shipped_bytes * trunk_share)
    return trunk + (shipped_bytes - trunk) // 2


def disk_read_bytes(component_bytes: int, uses_per_job: int = 1) -> int:
    """Bytes a job reads from disk for a component in the disk tier: its whole file once per use. A text encoder is
    one use per job: a pipeline that encodes the negative prompt right after the prompt finds the pages just read still
    in the page cache, unless the RAM cannot hold the encoder at all (count 2 uses then). An upper bound otherwise:
    whatever the page cache kept since the last job comes from RAM."""
    return component_bytes * uses_per_job


def disk_ram_bytes(component_bytes: int) -> int:
    """RAM of the process's own a component in the disk tier takes: none (its pages are the file's, taken back by the
    system when it needs them)."""
    return 0
