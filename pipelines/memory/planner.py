"""How many transformer blocks stay resident, given the budget and the request; and whether a job fits.

The device must hold, while the denoiser runs: the trunk (embeddings, norms), the resident blocks, the ring
of streaming slots, and the activations of one block at this request's size. Everything else streams.
Activations scale with tokens × the widest layer; the factor was measured on an H100 with full-size
random-weight models (bench/bench_memory.py: peak minus weights, FLUX 1024² and Wan2.1-14B 832×480×81 both
came out at 4.3–4.7 widest-layer tensors) and is rounded up for headroom.

When those activations do not fit even with every block streamed, a denoiser whose blocks have a lean forward
(`chunked_blocks.py`: Wan2.1, SkyReels V2, VACE, HunyuanVideo, FramePack) runs its blocks over chunks of tokens. Its
activations are then `LEAN_HELD_WIDTHS` hidden-width tensors per token (counted in chunked_blocks.py: the block's input,
its output or the stream it updates in place, the self-attention's K and V — 4 — plus half a width for the rotary tables,
float32, head size × 2 per token: at most a fifth of a width for these models) and one chunk's working set,
`ACTIVATION_FACTOR` widest-layer tensors per chunk token (the whole-block factor, kept for headroom). The chunk is the
largest of `LEAN_CHUNK_TOKENS` that fits. SkyReels V2 then runs its whole model lean too: what it holds outside its blocks
is per latent frame, not per token (`lean_model_held`). VACE's hints then wait in host RAM (`BlockPlan.host_bytes`). These figures are
counted from the code, not measured on a GPU; on the CPU the held memory of one block fell as counted
(tests/pipelines/test_chunked_blocks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024**3
ACTIVATION_FACTOR = 6.0
# Fixed device memory a forward takes whatever its size (cuBLAS and attention workspaces); measured at
# 20–25 MB on an H100 with a 12-block test transformer, rounded up.
WORKSPACE_BYTES = 64 * 1024**2
MIN_RING_SLOTS = 2
# Device memory above the plan's allocated bytes at the peak: PyTorch's caching allocator reserves in segments and
# keeps freed blocks for reuse. Measured on an H100 (bench/bench_memory.py, reserved peak minus the plan): 0.40 GiB
# for FLUX at 1024², 1.05 GiB for Wan2.1-14B at 832×480×81; rounded up.
ALLOCATOR_MARGIN_BYTES = int(1.1 * GIB)
LEAN_HELD_WIDTHS = 4.5
# Chunk sizes tried, largest first: big enough that a chunk's matmuls keep a GPU busy.
LEAN_CHUNK_TOKENS = (8192, 4096, 2048, 1024)
# The arithmetic a lean block adds: the cross-attention's text keys and values (512 tokens) are projected once per chunk.
# For Wan2.1 14B at 8,192 tokens a chunk that is 512 × 2 × 5120² against 8,192 × (6 × 5120² + 2 × 5120 × 13,824)
# multiply-adds: about 1%. Counted, not measured on a GPU.
LEAN_SLOWDOWN_NOTE = ("blocks run in token chunks of {chunk} tokens ({lean:.2f} GiB of activations instead of {normal:.2f}): "
                      "about 1% more arithmetic (the text keys are projected once per chunk); not measured on a GPU")


@dataclass(frozen=True)
class DenoiserShape:
    """What the planner needs to know of a denoiser: its block sizes and widths (from the loaded model)."""

    block_bytes: tuple[int, ...]
    trunk_bytes: int
    hidden_size: int
    widest_layer: int
    bytes_per_activation: int = 2
    # Activations per token held through the whole forward beside one block's working set: VACE's control blocks run
    # first and keep one hint (hidden-size wide) per control layer until the main block it is added to.
    held_width: int = 0
    # Blocks stored quantized (int8, fp8) are expanded into one block of the compute dtype on the device before they
    # run: this scratch is held for the whole forward (0 for blocks stored as shipped).
    scratch_bytes: int = 0
    # Whether the blocks have a lean forward (run over chunks of tokens when the activations would not fit otherwise).
    lean: bool = False
    # Activations per token the model's own forward holds through its blocks: SkyReels V2's diffusion forcing expands
    # its modulation to every token (six hidden-width tensors and the time embedding: 7 widths).
    model_held_width: int = 0
    # Activations the model holds through its blocks when they run lean, whatever the tokens: SkyReels V2's lean model
    # forward keeps its modulation and time embedding per latent frame (`skyreels_lean_held`).
    lean_model_held: int = 0


@dataclass(frozen=True)
class Workload:
    """One forward of the denoiser at the request's size: tokens per sample and samples per forward."""

    tokens: int
    batch: int = 1


@dataclass(frozen=True)
class BlockPlan:
    resident: frozenset[int]
    ring_slots: int
    activation_bytes: int
    resident_bytes: int
    streamed_bytes: int
    ring_bytes: int
    trunk_bytes: int
    usable_bytes: int
    fits: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    scratch_bytes: int = 0
    # Tokens per chunk when the blocks run lean (0: their own forward), and the host RAM VACE's hints then wait in.
    chunk_tokens: int = 0
    host_bytes: int = 0

    @property
    def device_bytes(self) -> int:
        return self.trunk_bytes + self.resident_bytes + self.ring_bytes + self.activation_bytes + self.scratch_bytes

    def describe(self) -> str:
        return (
            f"{self.resident_bytes / GIB:.2f} GiB of blocks resident ({len(self.resident)} blocks), "
            f"{self.streamed_bytes / GIB:.2f} GiB streamed per step through {self.ring_slots} slots, "
            f"{self.activation_bytes / GIB:.2f} GiB reserved for activations"
        )


def denoiser_shape(model, block_bytes: list[int], dtype_bytes: int = 2, scratch_bytes: int = 0, lean: bool = False,
                   trunk_bytes: int | None = None) -> DenoiserShape:
    """The planner's view of a loaded diffusers transformer (SD3, FLUX and Wan describe their width as heads ×
    head size, ACE-Step as `hidden_size`; the feed-forward is 4× wide unless the config says otherwise).
    `block_bytes` are the blocks as stored; `scratch_bytes`, for quantized blocks, the largest block in the compute
    dtype (the device scratch they are expanded into); `lean`, whether its blocks have a lean forward; `trunk_bytes`,
    the bytes outside the blocks as held (a quantized model's parameters report their compute dtype's size)."""
    config = model.config
    hidden = getattr(config, "hidden_size", None) or config.num_attention_heads * config.attention_head_dim
    widest = getattr(config, "ffn_dim", None) or getattr(config, "intermediate_size", None) or 4 * hidden
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    held = len(getattr(config, "vace_layers", None) or ()) * hidden
    skyreels = type(model).__name__.startswith("SkyReelsV2")
    model_held = SKYREELS_HELD_WIDTHS * hidden if skyreels else 0
    trunk = max(total - sum(block_bytes), 0) if trunk_bytes is None else trunk_bytes
    return DenoiserShape(tuple(block_bytes), trunk, hidden, widest, dtype_bytes, held, scratch_bytes,
                         lean, model_held, skyreels_lean_held(hidden) if skyreels else 0)


# SkyReels V2 (diffusion forcing), its own forward: its per-token modulation, 6 widths, and time embedding, 1
# (transformer_skyreels_v2.py).
SKYREELS_HELD_WIDTHS = 7
# Its lean model forward (chunked_blocks.skyreels_model_forward): the same 7 widths per latent frame instead, for the most
# latent frames one forward sees: 25 (the family's 97 frames; longer videos come in chunks of at most that).
SKYREELS_LEAN_FRAME_WIDTHS = 7
SKYREELS_MAX_LATENT_FRAMES = 25


def skyreels_lean_held(hidden_size: int) -> int:
    """Activations SkyReels V2's lean model forward holds through its blocks: 7 widths per latent frame (1.8 MB for the
    14B model in bfloat16)."""
    return SKYREELS_LEAN_FRAME_WIDTHS * hidden_size * SKYREELS_MAX_LATENT_FRAMES


def activation_bytes(shape: DenoiserShape, workload: Workload) -> int:
    widest = max(shape.hidden_size, shape.widest_layer)
    per_token = ACTIVATION_FACTOR * widest + shape.held_width + shape.model_held_width
    return int(per_token * workload.tokens * shape.bytes_per_activation * workload.batch) + WORKSPACE_BYTES


def lean_activation_bytes(shape: DenoiserShape, workload: Workload, chunk_tokens: int) -> int:
    """One lean block's activations: `LEAN_HELD_WIDTHS` hidden widths per token (VACE's hints wait in host RAM), what the
    model itself holds when lean (per frame, not per token), and one chunk's working set."""
    widest = max(shape.hidden_size, shape.widest_layer)
    held = LEAN_HELD_WIDTHS * shape.hidden_size * workload.tokens + shape.lean_model_held
    chunk = ACTIVATION_FACTOR * widest * min(chunk_tokens, workload.tokens)
    return int((held + chunk) * shape.bytes_per_activation * workload.batch) + WORKSPACE_BYTES


def hint_host_bytes(shape: DenoiserShape, workload: Workload) -> int:
    """Host RAM VACE's hints take when its blocks run lean."""
    return int(shape.held_width * workload.tokens * shape.bytes_per_activation * workload.batch)


def spread(count: int, total: int) -> list[int]:
    """`count` indices spread evenly over `total` positions: resident blocks interleaved with streamed
    ones keep the copy engine busy all through the forward instead of idling during a resident run."""
    if count <= 0:
        return []
    if count >= total:
        return list(range(total))
    return sorted({int(i * total / count) for i in range(count)})


def plan_blocks(shape: DenoiserShape, workload: Workload, usable_bytes: int, ring_slots: int = MIN_RING_SLOTS,
                demote: int = 0) -> BlockPlan:
    """The most resident blocks that fit. `demote` keeps that many fewer (the step down after an OOM). When the
    activations do not fit even with every block streamed and the blocks have a lean forward, they run lean: in the
    largest chunk of tokens that fits."""
    blocks = shape.block_bytes
    activations = activation_bytes(shape, workload)
    best = _most_resident(shape, activations, usable_bytes, ring_slots)
    chunk, host, lean_notes = 0, 0, ()
    if best is None and shape.lean:
        for tokens in LEAN_CHUNK_TOKENS:
            lean = lean_activation_bytes(shape, workload, tokens)
            best = _most_resident(shape, lean, usable_bytes, ring_slots)
            if best is not None:
                chunk, host = min(tokens, workload.tokens), hint_host_bytes(shape, workload)
                lean_notes = (LEAN_SLOWDOWN_NOTE.format(chunk=chunk, lean=lean / GIB, normal=activations / GIB),)
                if host:
                    lean_notes += (f"VACE's hints wait in host RAM ({host / 1e9:.1f} GB), {2 * host / 1e9:.1f} GB more over "
                                   "the host link per forward (not measured on a GPU)",)
                activations = lean
                break
        else:
            activations = lean_activation_bytes(shape, workload, LEAN_CHUNK_TOKENS[-1])
    total = len(blocks)
    fits = best is not None
    count = max((best or 0) - demote, 0)
    resident = frozenset(spread(count, total))
    streamed = [blocks[i] for i in range(total) if i not in resident]
    ring = ring_slots * max(streamed, default=0) if streamed else 0
    notes = lean_notes
    if not fits:
        least = shape.trunk_bytes + ring_slots * max(blocks) + shape.scratch_bytes + activations
        how = " and run in token chunks" if shape.lean else ""
        notes = (f"needs {least / GIB:.2f} GiB on the device even with every block streamed{how}",)
    return BlockPlan(
        resident=resident,
        ring_slots=ring_slots if streamed else 0,
        activation_bytes=activations,
        resident_bytes=sum(blocks[i] for i in resident),
        streamed_bytes=sum(streamed),
        ring_bytes=ring,
        trunk_bytes=shape.trunk_bytes,
        usable_bytes=usable_bytes,
        fits=fits,
        notes=notes,
        scratch_bytes=shape.scratch_bytes,
        chunk_tokens=chunk,
        host_bytes=host,
    )


def _most_resident(shape: DenoiserShape, activations: int, usable_bytes: int, ring_slots: int) -> int | None:
    """How many blocks can stay resident beside these activations (None: not even with every block streamed)."""
    blocks, total = shape.block_bytes, len(shape.block_bytes)
    for count in range(total, -1, -1):
        resident = set(spread(count, total))
        streamed = [blocks[i] for i in range(total) if i not in resident]
        ring = ring_slots * max(streamed, default=0)
        resident_bytes = sum(blocks[i] for i in resident)
        if shape.trunk_bytes + resident_bytes + ring + shape.scratch_bytes + activations <= usable_bytes:
            return count
    return None
