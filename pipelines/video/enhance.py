"""Enhance-A-Video: a training-free lift of a video model's temporal coherence and detail (Luo et al., "Enhance-A-Video:
Better Generated Video for Free", 2025), as our own wrapper around diffusers' attention processors.

In each self-attention over the video's tokens, the method looks at how much every frame attends to the other frames:
for each spatial position and head, the softmax of the query·key products among the latent frames at that position
(a frames × frames map); the mean of its off-diagonal entries over positions, heads and the batch is the cross-frame
intensity. The attention's output (after its output projection, video tokens only) is multiplied by
max(1, (frames + weight) × intensity). A weight of 0 means off: nothing is installed and the model runs untouched.

`enhanced_attention(transformer, family, weight)` installs it for one job and puts the model's own processors back
afterwards. The frame grid (latent frames, tokens per frame) is read at every denoiser call from what the transformer is
given, so context windows, chunks and a second pass at another size get their own. The query and key are the ones the
processor hands to diffusers' attention dispatch (after the q/k norm and the rotary embedding), caught while the wrapped
processor runs; the processor itself is not copied. The wrappers touch attention only: step caches wrap blocks, the
memory engine streams weights into blocks, neither sees a difference.
"""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from pipelines.catalog import Family

# The weight's range offered to users (0 = off); the community's Wan node offers 0 to 10, default 2.
MAX_ENHANCE_WEIGHT = 10.0
# The frames × frames maps are computed in slices of about this many entries, so a 720p HunyuanVideo job (3,600 tokens
# per frame, 24 heads, 33 latent frames: 94M entries in float32) needs a few MB at a time, not 376 MB.
_SLICE_ENTRIES = 1 << 22


@dataclass(frozen=True)
class EnhanceRule:
    """Where a family's transformer keeps the self-attention over the video's tokens."""

    # Attributes of the transformer holding its blocks, and the attribute of each block that is its self-attention.
    block_lists: tuple[str, ...]
    attention: str


ENHANCE_RULES: dict[Family, EnhanceRule] = {
    # Every block's first attention is the self-attention (the second is the cross-attention to the text).
    Family.WAN: EnhanceRule(("blocks",), "attn1"),
    Family.LTX: EnhanceRule(("transformer_blocks",), "attn1"),
    # Dual-stream blocks attend over video and text tokens jointly, single-stream ones over both concatenated; the video
    # tokens come first in both. The text refiner's attention is left alone.
    Family.HUNYUANVIDEO: EnhanceRule(("transformer_blocks", "single_transformer_blocks"), "attn"),
}


def supports_enhance(family: Family) -> bool:
    return family in ENHANCE_RULES


def cross_frame_intensity(query: torch.Tensor, key: torch.Tensor, frames: int) -> torch.Tensor:
    """The mean off-diagonal entry of the frames × frames attention maps. `query` and `key` are (batch, frames ×
    tokens per frame, heads, head size), frame-major as the video's tokens are laid out; one map per batch entry,
    spatial token and head, the softmax taken over the key's frames in float32. A 0-d float32 tensor; 0 for one frame."""
    batch, tokens, heads, head_size = query.shape
    if frames < 2:
        return torch.zeros((), dtype=torch.float32, device=query.device)
    per_frame = tokens // frames
    # (batch, tokens per frame, heads, frames, head size): one row of frames per spatial token and head.
    q = query.reshape(batch, frames, per_frame, heads, head_size).permute(0, 2, 3, 1, 4)
    k = key.reshape(batch, frames, per_frame, heads, head_size).permute(0, 2, 3, 1, 4)
    scale = head_size**-0.5
    step = max(1, _SLICE_ENTRIES // max(1, batch * heads * frames * frames))
    diagonal_sum = torch.zeros((), dtype=torch.float32, device=query.device)
    for start in range(0, per_frame, step):
        scores = (q[:, start:start + step].float() * scale) @ k[:, start:start + step].float().transpose(-2, -1)
        diagonal_sum += scores.softmax(dim=-1).diagonal(dim1=-2, dim2=-1).sum()
    maps = batch * per_frame * heads
    # Each row of a softmax sums to 1, so a map's entries sum to `frames`: the off-diagonal ones to frames − diagonal.
    return (maps * frames - diagonal_sum) / (maps * frames * (frames - 1))


def enhance_factor(intensity: torch.Tensor, frames: int, weight: float) -> torch.Tensor:
    """What the attention's output is multiplied by: (frames + weight) × intensity, never below 1."""
    return (intensity * (frames + weight)).clamp(min=1.0)


@dataclass
class _Grid:
    """The latent frames and tokens per frame of the denoiser call in progress, and what the wrappers did."""

    frames: int = 0
    tokens_per_frame: int = 0
    applications: int = 0
    # The factors applied, summed on the device (read once, when the job is recorded: no sync per attention call).
    factor_sum: torch.Tensor | None = None


class _FrameEnhancer:
    """Wraps one attention module's own processor; see the module's docstring."""

    def __init__(self, inner, weight: float, grid: _Grid):
        self.inner = inner
        self.weight = weight
        self.grid = grid
        self._module = sys.modules[type(inner).__module__]
        if not callable(getattr(self._module, "dispatch_attention_fn", None)):
            raise RuntimeError(f"{type(inner).__name__} does not attend through diffusers' dispatch; Enhance-A-Video cannot wrap it")

    def __getattr__(self, name):
        # The backend, parallel config and whatever else diffusers reads from a processor are the wrapped one's.
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def enhanced_call(self, attn, hidden_states, *args, **kwargs):
        caught = {}
        dispatch = self._module.dispatch_attention_fn

        def catching(query, key, value, *rest, **options):
            caught.setdefault("query_key", (query, key))
            return dispatch(query, key, value, *rest, **options)

        self._module.dispatch_attention_fn = catching
        try:
            output = self.inner(attn, hidden_states, *args, **kwargs)
        finally:
            self._module.dispatch_attention_fn = dispatch
        grid = self.grid
        video_tokens = grid.frames * grid.tokens_per_frame
        if "query_key" not in caught or grid.frames < 2 or video_tokens == 0:
            return output
        query, key = (tensor[:, :video_tokens] for tensor in caught["query_key"])
        factor = enhance_factor(cross_frame_intensity(query, key, grid.frames), grid.frames, self.weight)
        grid.applications += 1
        grid.factor_sum = factor.detach() if grid.factor_sum is None else grid.factor_sum + factor.detach()
        if isinstance(output, tuple):  # (video tokens, text tokens): only the video's are enhanced
            return (output[0] * factor.to(output[0].dtype), *output[1:])
        return output * factor.to(output.dtype)


@functools.cache
def _wrapper_class(inner_class: type) -> type:
    """A wrapper class whose `__call__` shows the wrapped processor's signature: diffusers' older `Attention` passes
    only the keyword arguments a processor's signature names (HunyuanVideo's `image_rotary_emb`)."""

    @functools.wraps(inner_class.__call__)
    def __call__(self, attn, hidden_states, *args, **kwargs):
        return self.enhanced_call(attn, hidden_states, *args, **kwargs)

    return type(f"FrameEnhanced{inner_class.__name__}", (_FrameEnhancer,), {"__call__": __call__})


def _frame_grid(transformer, args, kwargs) -> tuple[int, int]:
    """(latent frames, tokens per frame) of this call, from the latents the transformer is given: a (batch, channels,
    frames, height, width) tensor (Wan, HunyuanVideo), or LTX's token sequence with its grid given beside it (or, from
    the condition pipeline, each token's coordinates, frame first)."""
    hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    config = transformer.config
    if hidden_states.dim() == 5:
        patch = config.patch_size
        patch_t, patch_h, patch_w = (patch if isinstance(patch, (tuple, list)) else (config.patch_size_t, patch, patch))
        _, _, frames, height, width = hidden_states.shape
        return frames // patch_t, (height // patch_h) * (width // patch_w)
    if kwargs.get("num_frames") is not None:
        return int(kwargs["num_frames"]), int(kwargs["height"]) * int(kwargs["width"])
    coords = kwargs.get("video_coords")
    if coords is None:
        return 0, 0
    frame_of_token = coords[0, 0]
    per_frame = int((frame_of_token == frame_of_token[0]).sum())
    return hidden_states.shape[1] // per_frame, per_frame


@dataclass
class EnhanceReport:
    weight: float
    layers: int = 0
    grid: _Grid = field(default_factory=_Grid)

    def record(self) -> dict:
        """What the job's record says: the weight, the attention layers wrapped, how often the output was scaled and
        the mean factor it was scaled by (1.0 where the intensity stayed low)."""
        grid = self.grid
        mean = round(float(grid.factor_sum) / grid.applications, 6) if grid.applications else None
        return {"weight": self.weight, "attention_layers": self.layers, "applications": grid.applications, "mean_factor": mean}


@contextmanager
def enhanced_attention(transformer, family: Family, weight: float):
    """Enhance-A-Video on `transformer`'s self-attention for one job; yields an EnhanceReport. Weight 0: nothing is
    touched. The model's own processors come back afterwards, whatever happened."""
    report = EnhanceReport(weight)
    if not weight:
        yield report
        return
    rule = ENHANCE_RULES[family]
    modules = [getattr(block, rule.attention) for name in rule.block_lists for block in getattr(transformer, name)]
    originals = [module.processor for module in modules]
    hook = transformer.register_forward_pre_hook(
        lambda module, args, kwargs: _set_grid(report.grid, _frame_grid(module, args, kwargs)), with_kwargs=True,
    )
    try:
        for module, original in zip(modules, originals):
            module.processor = _wrapper_class(type(original))(original, weight, report.grid)
        report.layers = len(modules)
        yield report
    finally:
        hook.remove()
        for module, original in zip(modules, originals):
            module.processor = original


def _set_grid(grid: _Grid, frames_and_tokens: tuple[int, int]) -> None:
    grid.frames, grid.tokens_per_frame = frames_and_tokens
