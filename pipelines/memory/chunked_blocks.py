"""The lean forward of the big video transformers' blocks: the same block, run over chunks of tokens.

A block's forward at a video's size holds several tensors as wide as its widest layer for every token (the
feed-forward's 13,824-wide intermediate in Wan2.1 14B). Only the self-attention needs all tokens at once, and only its
keys and values: everything else — the norms and their modulation, the queries and the attention's output projection,
the cross-attention's queries against the short text keys, the feed-forward — works token by token. The lean forward
computes the keys and values for all tokens chunk by chunk into two buffers, then runs the rest of the block one chunk
of tokens at a time. While it runs, a block holds (in hidden-width tensors per token, counted in the functions below):

- Wan2.1 / SkyReels V2 block: its input (the caller keeps it), its output, K and V: 4.
- Wan VACE control block: the main stream's hidden states (read), the control stream (updated in place: nothing else
  holds it), K and V: 4. Its hint (`proj_out`, added to a main block later) goes to host RAM when `hints_on_host`:
  a VACE forward otherwise keeps one hint per control layer on the device.
- HunyuanVideo double-stream block: its input, its output, K and V (video + text tokens): 4.
- HunyuanVideo single-stream block: its input, the video + text tokens it concatenates (updated in place), K and V: 4.

plus one chunk's working set (`chunk_tokens` tokens through the feed-forward and the attention), instead of about six
widest-layer tensors per token. Outputs equal the normal forward's up to float rounding (the matmuls see other shapes).

The attention core goes through diffusers' attention dispatch with the processor's own backend, so attention backends
still apply. A block whose processor is not the stock one (wrapped by Enhance-A-Video, or fused projections) runs its
normal forward: a wrapper sees whole tensors, and a chunked call would change what it computes. Blocks are never changed
for good: `lean_blocks` swaps the forward of each block for one job and puts the previous one back.

SkyReels V2's whole model has a lean forward too (`skyreels_model_forward`): its diffusion forcing gives every latent
frame its own timestep, and its own forward expands that frame's time embedding and modulation to every token of the
frame (7 hidden widths per token, held through all blocks, and a transient copy before them). The lean model forward
keeps them per frame (`PerFrame`) and each chunk expands only its own rows; the output head runs per chunk too, and the
causal mask of its asynchronous mode is made per chunk of queries (`CausalFrames`) instead of tokens × tokens.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.utils import apply_lora_scale

# Hidden-width tensors per token a lean block holds (counted above); planner.LEAN_HELD_WIDTHS adds the rotary tables.
HELD_HIDDEN_WIDTHS = 4


@dataclass(frozen=True)
class LeanSettings:
    """How the lean forward runs for one job: tokens per chunk, and whether VACE's hints wait in host RAM."""

    chunk_tokens: int
    hints_on_host: bool = False


def _chunks(start: int, stop: int, size: int) -> Iterator[slice]:
    for first in range(start, stop, size):
        yield slice(first, min(first + size, stop))


def _attend(attn, query, key, value, mask=None):
    """The processor's own attention call: its backend and parallel settings, nothing else of it."""
    processor = attn.processor
    return dispatch_attention_fn(
        query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False,
        backend=getattr(processor, "_attention_backend", None), parallel_config=getattr(processor, "_parallel_config", None),
    )


@dataclass(frozen=True)
class PerFrame:
    """A modulation given per latent frame, not per token: `values` is (batch, frames, parts, width); the tokens of a
    frame are `tokens_per_frame` consecutive tokens (frame-major, as the patch embedding flattens them)."""

    values: torch.Tensor
    tokens_per_frame: int

    def frames(self, rows: slice) -> tuple[slice, torch.Tensor]:
        """The frames these tokens lie in, and each token's frame counted from the first of them."""
        first, last = rows.start // self.tokens_per_frame, (rows.stop - 1) // self.tokens_per_frame
        tokens = torch.arange(rows.start, rows.stop, device=self.values.device)
        return slice(first, last + 1), tokens // self.tokens_per_frame - first

    def rows(self, table: torch.Tensor, rows: slice) -> torch.Tensor:
        """`table` (1, parts, width) plus the modulation of these tokens' frames, float32, expanded to the tokens:
        (batch, tokens, parts, width). The sums are the ones the model's own forward makes token by token."""
        frames, index = self.frames(rows)
        return (table + self.values[:, frames].float()).index_select(1, index)


@dataclass(frozen=True)
class CausalFrames:
    """SkyReels V2's asynchronous attention mask, made per chunk of queries: a token attends to every token whose causal
    block (`frames_per_block` latent frames) is not after its own. The model's own forward builds it tokens × tokens."""

    tokens: int
    tokens_per_frame: int
    frames_per_block: int
    device: torch.device

    def rows(self, rows: slice) -> torch.Tensor:
        block = torch.arange(self.tokens, device=self.device) // self.tokens_per_frame // self.frames_per_block
        return (block.unsqueeze(0) <= block[rows].unsqueeze(1)).view(1, 1, rows.stop - rows.start, self.tokens)


def _mask_rows(mask, rows: slice):
    """The attention mask for a chunk of queries: a key mask ([B, 1, 1, N]) is the same for all of them."""
    if isinstance(mask, CausalFrames):
        return mask.rows(rows)
    if mask is None or mask.dim() < 2 or mask.shape[-2] == 1:
        return mask
    return mask[..., rows, :]


# -- Wan2.1, SkyReels V2 and VACE ------------------------------------------------------------------------------------


def _wan_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on (batch, tokens, heads, head size), as its attention processor applies it."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def _wan_modulation(block, temb, rows: slice) -> list[torch.Tensor]:
    """shift, scale, gate of the self-attention and of the feed-forward for these tokens: one per sample (a 3-d temb),
    one per token (Wan2.2's (batch, tokens, 6, dim), SkyReels V2's diffusion forcing (batch, 6, tokens, dim)), or one per
    frame (`PerFrame`, from SkyReels V2's lean model forward: expanded here to these tokens only)."""
    table = block.scale_shift_table
    if isinstance(temb, PerFrame):
        return [part.squeeze(2) for part in temb.rows(table, rows).chunk(6, dim=2)]
    if temb.dim() == 3:
        return list((table + temb.float()).chunk(6, dim=1))
    if type(block).__name__.startswith("SkyReels"):
        return [part.squeeze(1) for part in (table.unsqueeze(2) + temb[:, :, rows].float()).chunk(6, dim=1)]
    return [part.squeeze(2) for part in (table.unsqueeze(0) + temb[:, rows].float()).chunk(6, dim=2)]


def _wan_normed(block, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (block.norm1(x.float()) * (1 + scale) + shift).type_as(x)


def _wan_keys_values(block, stream: torch.Tensor, temb, rotary, chunk_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The self-attention's keys and values for every token, computed chunk by chunk into two buffers."""
    attn = block.attn1
    batch, tokens, _ = stream.shape
    key = stream.new_empty(batch, tokens, attn.heads, attn.inner_dim // attn.heads)
    value = torch.empty_like(key)
    for rows in _chunks(0, tokens, chunk_tokens):
        shift, scale = _wan_modulation(block, temb, rows)[:2]
        normed = _wan_normed(block, stream[:, rows], shift, scale)
        k = attn.norm_k(attn.to_k(normed)).unflatten(2, (attn.heads, -1))
        if rotary is not None:
            k = _wan_rotate(k, rotary[0][:, rows], rotary[1][:, rows])
        key[:, rows] = k
        value[:, rows] = attn.to_v(normed).unflatten(2, (attn.heads, -1))
    return key, value


def _wan_chunk(block, x, encoder_hidden_states, temb, rotary, key, value, mask, rows: slice) -> torch.Tensor:
    """The rest of the block for one chunk of tokens, in the order the block's own forward computes it."""
    shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = _wan_modulation(block, temb, rows)
    attn = block.attn1
    normed = _wan_normed(block, x, shift_msa, scale_msa)
    query = attn.norm_q(attn.to_q(normed)).unflatten(2, (attn.heads, -1))
    if rotary is not None:
        query = _wan_rotate(query, rotary[0][:, rows], rotary[1][:, rows])
    attended = _attend(attn, query, key, value, _mask_rows(mask, rows)).flatten(2, 3).type_as(query)
    attn_output = attn.to_out[1](attn.to_out[0](attended))
    x = (x.float() + attn_output * gate_msa).type_as(x)
    # The cross-attention is per token on the query side: the processor itself runs it on the chunk.
    normed = block.norm2(x.float()).type_as(x)
    x = x + block.attn2(normed, encoder_hidden_states, None, None)
    normed = (block.norm3(x.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(x)
    return (x.float() + block.ffn(normed).float() * c_gate_msa).type_as(x)


def wan_block_forward(block, hidden_states, encoder_hidden_states, temb, rotary_emb, attention_mask=None, *,
                      settings: LeanSettings) -> torch.Tensor:
    """`WanTransformerBlock.forward` / `SkyReelsV2TransformerBlock.forward` over chunks. Held: the input (the caller's),
    the output, K and V — 4 hidden-width tensors per token."""
    key, value = _wan_keys_values(block, hidden_states, temb, rotary_emb, settings.chunk_tokens)
    out = torch.empty_like(hidden_states)
    for rows in _chunks(0, hidden_states.shape[1], settings.chunk_tokens):
        out[:, rows] = _wan_chunk(block, hidden_states[:, rows], encoder_hidden_states, temb, rotary_emb, key, value,
                                  attention_mask, rows)
    return out


def vace_block_forward(block, hidden_states, encoder_hidden_states, control_hidden_states, temb, rotary_emb, *,
                       settings: LeanSettings) -> tuple[torch.Tensor | None, torch.Tensor]:
    """`WanVACETransformerBlock.forward` over chunks. Held: the main stream (read), the control stream (updated in place:
    the first block projects a new one; later ones get the one the last returned, which nothing else holds), K and V —
    4 per token; the hint goes to host RAM as it is made when `settings.hints_on_host`."""
    chunk = settings.chunk_tokens
    control = control_hidden_states
    if block.proj_in is not None:
        control = torch.empty_like(hidden_states)
        for rows in _chunks(0, control.shape[1], chunk):
            control[:, rows] = block.proj_in(control_hidden_states[:, rows]) + hidden_states[:, rows]
    key, value = _wan_keys_values(block, control, temb, rotary_emb, chunk)
    hint = None
    if block.proj_out is not None:
        on_host = settings.hints_on_host and control.device.type != "cpu"
        hint = torch.empty(control.shape, dtype=control.dtype, device="cpu" if on_host else control.device,
                           pin_memory=on_host and torch.cuda.is_available())
    for rows in _chunks(0, control.shape[1], chunk):
        control[:, rows] = _wan_chunk(block, control[:, rows], encoder_hidden_states, temb, rotary_emb, key, value, None, rows)
        if hint is not None:
            # The VACE model moves each hint to the main stream's device when it adds it.
            hint[:, rows] = block.proj_out(control[:, rows])
    return hint, control


def _skyreels_forward(model, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image=None,
                      enable_diffusion_forcing=False, fps=None, return_dict=True, attention_kwargs=None, *,
                      settings: LeanSettings):
    """`SkyReelsV2Transformer3DModel.forward`, its blocks lean, keeping diffusion forcing's modulation per frame.

    Held through the blocks besides each block's own 4 widths per token (its input is the patch embedding's output, then
    the last block's): the rotary tables (as the model's own forward), and per latent frame the time embedding (1 width)
    and the blocks' modulation (6 widths) — `planner.SKYREELS_LEAN_FRAME_WIDTHS`, no hidden width per token. The output
    head (norm, modulation, projection) runs per chunk into the output, `out_channels × patch` wide per token."""
    config = model.config
    batch, _, frames, height, width = hidden_states.shape
    p_t, p_h, p_w = config.patch_size
    post_frames, post_height, post_width = frames // p_t, height // p_h, width // p_w
    tokens_per_frame = post_height * post_width

    rotary_emb = model.rope(hidden_states)
    hidden_states = model.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
    tokens = hidden_states.shape[1]

    causal_mask = None
    if config.num_frame_per_block > 1:
        causal_mask = CausalFrames(tokens, tokens_per_frame, config.num_frame_per_block, hidden_states.device)

    temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = model.condition_embedder(
        timestep, encoder_hidden_states, encoder_hidden_states_image
    )
    timestep_proj = timestep_proj.unflatten(-1, (6, -1))
    if encoder_hidden_states_image is not None:
        encoder_hidden_states = torch.concat([encoder_hidden_states_image, encoder_hidden_states], dim=1)
    if config.inject_sample_info:
        fps_emb = model.fps_embedding(torch.tensor(fps, dtype=torch.long, device=hidden_states.device))
        fps_proj = model.fps_projection(fps_emb).unflatten(1, (6, -1))
        timestep_proj = timestep_proj + (fps_proj.repeat(timestep.shape[1], 1, 1) if enable_diffusion_forcing else fps_proj)

    if enable_diffusion_forcing:
        # (batch, frames, 6, width) and (batch, frames, width): the model's own forward repeats both for every token.
        modulation = PerFrame(timestep_proj, tokens_per_frame)
        head = PerFrame(temb.unsqueeze(2), tokens_per_frame)
    else:
        modulation, head = timestep_proj, None

    for block in model.blocks:
        hidden_states = block(hidden_states, encoder_hidden_states, modulation, rotary_emb, causal_mask)

    table = model.scale_shift_table
    if head is None:
        shift, scale = (table + temb.unsqueeze(1)).chunk(2, dim=1)
    out = hidden_states.new_empty(batch, tokens, model.proj_out.out_features)
    for rows in _chunks(0, tokens, settings.chunk_tokens):
        if head is not None:
            shift, scale = (part.squeeze(2) for part in head.rows(table, rows).chunk(2, dim=2))
        x = hidden_states[:, rows]
        x = (model.norm_out(x.float()) * (1 + scale.to(x.device)) + shift.to(x.device)).type_as(x)
        out[:, rows] = model.proj_out(x)
    del hidden_states

    out = out.reshape(batch, post_frames, post_height, post_width, p_t, p_h, p_w, -1)
    output = out.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
    if not return_dict:
        return (output,)
    return Transformer2DModelOutput(sample=output)


# The LoRA scale in `attention_kwargs` applies as in the model's own forward.
skyreels_model_forward = apply_lora_scale("attention_kwargs")(_skyreels_forward)


# -- HunyuanVideo (and FramePack, which reuses its blocks) ------------------------------------------------------------


def _heads(attn, x: torch.Tensor) -> torch.Tensor:
    return x.unflatten(2, (attn.heads, -1))


def _norm(module, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else module(x)


def _rotated(x: torch.Tensor, rotary, rows: slice) -> torch.Tensor:
    if rotary is None:
        return x
    return apply_rotary_emb(x, (rotary[0][rows], rotary[1][rows]), sequence_dim=1)


def _hunyuan_video_qkv(attn, normed, rotary, rows: slice, norm_q=True):
    key = _rotated(_norm(attn.norm_k, _heads(attn, attn.to_k(normed))), rotary, rows)
    value = _heads(attn, attn.to_v(normed))
    query = _rotated(_norm(attn.norm_q, _heads(attn, attn.to_q(normed))), rotary, rows) if norm_q else None
    return query, key, value


def hunyuan_double_block_forward(block, hidden_states, encoder_hidden_states, temb, attention_mask=None, freqs_cis=None,
                                 *args, settings: LeanSettings, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """`HunyuanVideoTransformerBlock.forward` over chunks of video tokens (the text tokens, a few hundred, are one).
    Held: the input (the caller's), the output, K and V of video and text tokens — 4 per token."""
    attn, chunk = block.attn, settings.chunk_tokens
    batch, video_tokens, _ = hidden_states.shape
    text_tokens = encoder_hidden_states.shape[1]
    head_size = attn.inner_dim // attn.heads
    key = hidden_states.new_empty(batch, video_tokens + text_tokens, attn.heads, head_size)
    value = torch.empty_like(key)
    for rows in _chunks(0, video_tokens, chunk):
        normed = block.norm1(hidden_states[:, rows], emb=temb)[0]
        _, key[:, rows], value[:, rows] = _hunyuan_video_qkv(attn, normed, freqs_cis, rows, norm_q=False)
    normed_text, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = block.norm1_context(encoder_hidden_states, emb=temb)
    text_query = _norm(attn.norm_added_q, _heads(attn, attn.add_q_proj(normed_text)))
    key[:, video_tokens:] = _norm(attn.norm_added_k, _heads(attn, attn.add_k_proj(normed_text)))
    value[:, video_tokens:] = _heads(attn, attn.add_v_proj(normed_text))

    out = torch.empty_like(hidden_states)
    for rows in _chunks(0, video_tokens, chunk):
        x = hidden_states[:, rows]
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.norm1(x, emb=temb)
        query = _rotated(_norm(attn.norm_q, _heads(attn, attn.to_q(normed))), freqs_cis, rows)
        attended = _attend(attn, query, key, value, _mask_rows(attention_mask, rows)).flatten(2, 3).to(query.dtype)
        x = x + attn.to_out[1](attn.to_out[0](attended)) * gate_msa.unsqueeze(1)
        normed = block.norm2(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        out[:, rows] = x + gate_mlp.unsqueeze(1) * block.ff(normed)
    text_rows = slice(video_tokens, video_tokens + text_tokens)
    attended = _attend(attn, text_query, key, value, _mask_rows(attention_mask, text_rows)).flatten(2, 3).to(text_query.dtype)
    text = encoder_hidden_states + attn.to_add_out(attended) * c_gate_msa.unsqueeze(1)
    normed = block.norm2_context(text) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
    text = text + c_gate_mlp.unsqueeze(1) * block.ff_context(normed)
    return out, text


def hunyuan_single_block_forward(block, hidden_states, encoder_hidden_states, temb, attention_mask=None,
                                 image_rotary_emb=None, *args, settings: LeanSettings, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """`HunyuanVideoSingleTransformerBlock.forward` over chunks (the video tokens, then the text tokens, never mixed: the
    rotary embedding is the video's alone). Held: the input (the caller's), the concatenated tokens (ours, updated in
    place), K and V — 4 per token."""
    attn, chunk = block.attn, settings.chunk_tokens
    video_tokens = hidden_states.shape[1]
    tokens = torch.cat([hidden_states, encoder_hidden_states], dim=1)
    total = tokens.shape[1]
    spans = [*_chunks(0, video_tokens, chunk), *_chunks(video_tokens, total, chunk)]
    key = tokens.new_empty(tokens.shape[0], total, attn.heads, attn.inner_dim // attn.heads)
    value = torch.empty_like(key)
    for rows in spans:
        rotary = image_rotary_emb if rows.start < video_tokens else None
        normed = block.norm(tokens[:, rows], emb=temb)[0]
        _, key[:, rows], value[:, rows] = _hunyuan_video_qkv(attn, normed, rotary, rows, norm_q=False)
    for rows in spans:
        rotary = image_rotary_emb if rows.start < video_tokens else None
        x = tokens[:, rows]
        normed, gate = block.norm(x, emb=temb)
        mlp = block.act_mlp(block.proj_mlp(normed))
        query = _rotated(_norm(attn.norm_q, _heads(attn, attn.to_q(normed))), rotary, rows)
        attended = _attend(attn, query, key, value, _mask_rows(attention_mask, rows)).flatten(2, 3).to(query.dtype)
        tokens[:, rows] = gate.unsqueeze(1) * block.proj_out(torch.cat([attended, mlp], dim=2)) + x
    return tokens[:, :video_tokens], tokens[:, video_tokens:]


# -- which blocks, and installing for one job -------------------------------------------------------------------------

# Block class -> (its lean forward, the attention modules whose processor must be the stock one, that processor's class).
_LEAN: dict[str, tuple[Callable, tuple[str, ...], tuple[str, ...]]] = {
    "WanTransformerBlock": (wan_block_forward, ("attn1", "attn2"), ("WanAttnProcessor",)),
    "SkyReelsV2TransformerBlock": (wan_block_forward, ("attn1", "attn2"), ("SkyReelsV2AttnProcessor",)),
    "WanVACETransformerBlock": (vace_block_forward, ("attn1", "attn2"), ("WanAttnProcessor",)),
    "HunyuanVideoTransformerBlock": (hunyuan_double_block_forward, ("attn",), ("HunyuanVideoAttnProcessor2_0",)),
    "HunyuanVideoSingleTransformerBlock": (hunyuan_single_block_forward, ("attn",), ("HunyuanVideoAttnProcessor2_0",)),
}


def has_lean_forward(block: torch.nn.Module) -> bool:
    """Whether this block has a lean forward now: a block class above whose attention runs its stock processor."""
    entry = _LEAN.get(type(block).__name__)
    if entry is None:
        return False
    _, attentions, processors = entry
    return all(
        type(getattr(block, name).processor).__name__ in processors and not getattr(getattr(block, name), "fused_projections", False)
        for name in attentions
    )


def has_lean_model_forward(model: torch.nn.Module) -> bool:
    """Whether the whole model has a lean forward now: SkyReels V2 with every block lean (a block running its own forward
    needs the per-token modulation) and no forward set on the instance already (a wrapper ours would bypass; context
    windows, set later, call ours for each window)."""
    from pipelines.memory.block_streamer import find_blocks

    return (type(model).__name__ == "SkyReelsV2Transformer3DModel" and "forward" not in vars(model)
            and all(has_lean_forward(block) for _, block in find_blocks(model)))


def lean_capable(model: torch.nn.Module) -> bool:
    """Whether the model's repeated blocks all have a lean forward (the planner's `DenoiserShape.lean`)."""
    from pipelines.memory.block_streamer import find_blocks

    blocks = find_blocks(model)
    return bool(blocks) and all(type(block).__name__ in _LEAN for _, block in blocks)


@contextmanager
def lean_blocks(model: torch.nn.Module, settings: LeanSettings) -> Iterator[int]:
    """Run `model`'s blocks with their lean forward while inside, and the whole model's where it has one (SkyReels V2);
    yields how many blocks got it. The forward a block had (the block streamer's, which tells the streamer the block
    computes) comes back afterwards, and the model's own."""
    from pipelines.memory.block_streamer import find_blocks

    undo = []
    try:
        whole_model = has_lean_model_forward(model)
        for _, block in find_blocks(model):
            if has_lean_forward(block):
                undo.append(_install(block, settings))
        blocks = len(undo)
        if whole_model:
            undo.append(_install_model(model, settings))
        yield blocks
    finally:
        for step in reversed(undo):
            step()


def _install_model(model: torch.nn.Module, settings: LeanSettings) -> Callable[[], None]:
    forward = functools.partial(skyreels_model_forward, model, settings=settings)
    model.forward = forward

    def undo():
        if vars(model).get("forward") is forward:
            del model.forward

    return undo


def _install(block: torch.nn.Module, settings: LeanSettings) -> Callable[[], None]:
    lean = _LEAN[type(block).__name__][0]
    previous = vars(block).get("forward")
    # The block streamer's forward says when a block computes (a step cache may skip it); ours says so too.
    computing = getattr(previous, "computing", None)

    def forward(*args, **kwargs):
        if computing is not None:
            computing()
        return lean(block, *args, settings=settings, **kwargs)

    block.forward = forward

    def undo():
        if previous is None:
            vars(block).pop("forward", None)
        else:
            block.forward = previous

    return undo
