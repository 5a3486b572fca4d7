"""The original key layouts of single files, read tensor by tensor under diffusers' names.

The files people download (Black Forest Labs' `flux1-dev.safetensors`, ComfyUI's and Kijai's fp8 files of FLUX.1 and
Wan2.1) keep the authors' own key names: `double_blocks.N.img_attn.qkv.weight` for FLUX, `blocks.N.self_attn.q.weight`
for Wan. diffusers converts such a file as a whole state dict; here each diffusers tensor is told where its rows lie in
the file (`Segment`s), so it is read on its own, straight into its place, whatever the file's dtype:
- a renamed tensor is one segment, all its rows;
- a part of a fused tensor (FLUX's `qkv`, the single blocks' `linear1` = q, k, v and the MLP input) is the rows of that
  part: the parts are stacked along the output rows, in the order the table gives;
- FLUX's final modulation keeps shift before scale, diffusers scale before shift: two segments, the halves swapped.

A scaled fp8 file's `scale_weight` is one number per layer: every part split from the layer takes it whole. A scale
per row is split with the rows (the same segments, 4 bytes a row).

One table per layout serves both directions: reading a file (`LayoutWeights`) and writing one from a diffusers model
(`original_tensors`, for the tiny test files). A layout is chosen by checking that every tensor of the model finds its
rows in the file and that every row of every file tensor it uses is used: a file of another layout, or of another
size than the base's config, matches none and is left to diffusers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import torch

from pipelines.memory.weights_file import TensorLocation, WeightsFile

log = logging.getLogger(__name__)

# ComfyUI's scaled fp8 files carry this empty tensor as a marker, a `<layer>.scale_weight` per fp8 weight, and sometimes
# a `<layer>.scale_input` (the activation scale of fp8 matrix products; weights turned back into bf16 do not use it).
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_SUFFIX = "scale_weight"
IGNORED_SUFFIXES = ("scale_input",)
# Checkpoints saved whole by ComfyUI put the denoiser under this prefix (beside the VAE and text encoders).
PREFIXES = ("", "model.diffusion_model.")


def scale_name(name: str) -> str:
    """The key of a weight's scale in a scaled fp8 file (`x.weight` -> `x.scale_weight`)."""
    return f"{name.removesuffix('weight')}{SCALE_SUFFIX}"


@dataclass(frozen=True)
class Rename:
    """One module (or one parameter, when the names end in one) under two names."""

    diffusers: str
    original: str


@dataclass(frozen=True)
class Fused:
    """Several diffusers modules stacked along the output rows of one original module, in this order."""

    parts: tuple[str, ...]
    original: str


@dataclass(frozen=True)
class Swapped:
    """One module whose two halves of rows come in the other order in the original (shift, scale)."""

    diffusers: str
    original: str


Rule = Rename | Fused | Swapped


@dataclass(frozen=True)
class BlockList:
    """A list of blocks (`transformer_blocks.N.` here, `double_blocks.N.` there) and the rules inside each block."""

    diffusers: str
    original: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Layout:
    name: str
    rules: tuple[Rule, ...] = ()
    blocks: tuple[BlockList, ...] = ()
    identity: bool = False  # diffusers' own names


@dataclass(frozen=True)
class Segment:
    """Rows [start, start + rows) of the file's tensor `key`."""

    key: str
    start: int
    rows: int


DIFFUSERS = Layout("diffusers", identity=True)

# -- FLUX.1, Black Forest Labs' layout (learned from diffusers' `convert_flux_transformer_checkpoint_to_diffusers`) ----


def _renames(pairs: Mapping[str, str]) -> tuple[Rename, ...]:
    return tuple(Rename(new, old) for new, old in pairs.items())


_FLUX_DOUBLE = (
    *_renames({
        "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
        "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj",
        "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2", "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
        # RMS norms: diffusers' `weight` is the original's `scale`.
        "attn.norm_q.weight": "img_attn.norm.query_norm.scale", "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
        "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale", "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    }),
    Fused(("attn.to_q", "attn.to_k", "attn.to_v"), "img_attn.qkv"),
    Fused(("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"), "txt_attn.qkv"),
)
_FLUX_SINGLE = (
    *_renames({
        "norm.linear": "modulation.lin", "proj_out": "linear2",
        "attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale",
    }),
    Fused(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear1"),
)
FLUX_BFL = Layout(
    "FLUX (Black Forest Labs)",
    rules=(
        *_renames({
            "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
            "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
            "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
            "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
            "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
            "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
            "context_embedder": "txt_in", "x_embedder": "img_in", "proj_out": "final_layer.linear",
        }),
        Swapped("norm_out.linear", "final_layer.adaLN_modulation.1"),
    ),
    blocks=(BlockList("transformer_blocks", "double_blocks", _FLUX_DOUBLE), BlockList("single_transformer_blocks", "single_blocks", _FLUX_SINGLE)),
)

# -- Wan2.1, Alibaba's layout (learned from diffusers' `convert_wan_transformer_to_diffusers`) ------------------------

_WAN_ATTENTION = {
    "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o", "norm_q": "norm_q", "norm_k": "norm_k",
    "add_k_proj": "k_img", "add_v_proj": "v_img", "norm_added_k": "norm_k_img",  # the image branch of I2V
}
_WAN_BLOCK = _renames({
    **{f"{attention}.{new}": f"{old_attention}.{old}" for attention, old_attention in (("attn1", "self_attn"), ("attn2", "cross_attn"))
       for new, old in _WAN_ATTENTION.items()},
    # diffusers' norm2 is the cross-attention norm, the original's norm3.
    "norm2": "norm3", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2", "scale_shift_table": "modulation",
    "proj_in": "before_proj", "proj_out": "after_proj",  # VACE's control blocks
})
WAN_ORIGINAL = Layout(
    "Wan (Alibaba)",
    rules=_renames({
        "patch_embedding": "patch_embedding", "vace_patch_embedding": "vace_patch_embedding",
        "condition_embedder.time_embedder.linear_1": "time_embedding.0",
        "condition_embedder.time_embedder.linear_2": "time_embedding.2",
        "condition_embedder.text_embedder.linear_1": "text_embedding.0",
        "condition_embedder.text_embedder.linear_2": "text_embedding.2",
        "condition_embedder.time_proj": "time_projection.1",
        "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
        "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
        "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
        "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
        "proj_out": "head.head", "scale_shift_table": "head.modulation",
    }),
    blocks=(BlockList("blocks", "blocks", _WAN_BLOCK), BlockList("vace_blocks", "vace_blocks", _WAN_BLOCK)),
)

# The layouts a denoiser's file may be in, by the denoiser's class; diffusers' own first.
LAYOUTS: Mapping[str, tuple[Layout, ...]] = {
    "FluxTransformer2DModel": (DIFFUSERS, FLUX_BFL),
    "WanTransformer3DModel": (DIFFUSERS, WAN_ORIGINAL),
    "WanVACETransformer3DModel": (DIFFUSERS, WAN_ORIGINAL),
}


# -- the mapping ------------------------------------------------------------------------------------


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def _matches(rule_name: str, name: str) -> str | None:
    """What follows `rule_name` in `name` (".weight", or "" for an exact match), None when it does not match."""
    if name == rule_name:
        return ""
    return name[len(rule_name):] if name.startswith(rule_name + ".") else None


def _segments(layout: Layout, name: str, shapes: Mapping[str, tuple[int, ...]], prefix: str) -> tuple[Segment, ...] | None:
    """Where diffusers' tensor `name` lies in a file of `layout` (keys under `prefix`); None where no rule names it."""
    rows = _rows(shapes[name])
    if layout.identity:
        return (Segment(prefix + name, 0, rows),)
    rules, ours, theirs = layout.rules, "", ""
    for blocks in layout.blocks:
        head, _, rest = name.partition(".")
        if head == blocks.diffusers and rest.split(".", 1)[0].isdigit():
            index, _, name_in_block = rest.partition(".")
            rules, ours, theirs, name = blocks.rules, f"{head}.{index}.", f"{blocks.original}.{index}.", name_in_block
            break
    best: tuple[int, tuple[Segment, ...]] | None = None
    for rule in rules:
        for position, part in enumerate(rule.parts if isinstance(rule, Fused) else (rule.diffusers,)):
            rest = _matches(part, name)
            if rest is None or (best is not None and best[0] >= len(part)):
                continue
            key = prefix + theirs + rule.original + rest
            if isinstance(rule, Fused):
                start = sum(_rows(shapes[ours + before + rest]) for before in rule.parts[:position])
                found = (Segment(key, start, rows),)
            elif isinstance(rule, Swapped):
                half = rows // 2
                found = (Segment(key, half, rows - half), Segment(key, 0, half))
            else:
                found = (Segment(key, 0, rows),)
            best = (len(part), found)
    return None if best is None else best[1]


def layout_segments(layout: Layout, shapes: Mapping[str, tuple[int, ...]], prefix: str = "") -> dict[str, tuple[Segment, ...]] | None:
    """Every tensor of `shapes` (diffusers' names) as segments of a file in `layout`; None if a tensor has no rule."""
    found = {}
    for name in shapes:
        segments = _segments(layout, name, shapes, prefix)
        if segments is None:
            return None
        found[name] = segments
    return found


def original_shapes(segments: Mapping[str, tuple[Segment, ...]], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The shape of each file tensor the segments name: the rows of all its parts, the parts' other sides."""
    rows: dict[str, int] = {}
    sides: dict[str, tuple[int, ...]] = {}
    for name, parts in segments.items():
        for segment in parts:
            rows[segment.key] = max(rows.get(segment.key, 0), segment.start + segment.rows)
            sides[segment.key] = tuple(shapes[name][1:])
    return {key: (rows[key], *sides[key]) for key in rows}


def original_tensors(
    layout: Layout, shapes: Mapping[str, tuple[int, ...]], read: Callable[[str], torch.Tensor],
) -> dict[str, tuple[tuple[int, ...], Callable[[], torch.Tensor]]]:
    """The file tensors of `layout` for a model of `shapes` (diffusers' names) whose tensors `read` gives: key ->
    (shape, a function making the tensor). The inverse of reading: each part is written into its rows."""
    segments = layout_segments(layout, shapes)
    if segments is None:
        raise ValueError(f"the {layout.name} layout has no rule for some of these tensors")
    by_key: dict[str, list[tuple[str, tuple[Segment, ...]]]] = {}
    for name, parts in segments.items():
        by_key.setdefault(parts[0].key, []).append((name, parts))
    made = {}
    for key, shape in original_shapes(segments, shapes).items():
        def make(key=key, shape=shape):
            first = read(by_key[key][0][0])
            tensor = torch.empty(shape, dtype=first.dtype)
            for name, parts in by_key[key]:
                value, done = read(name).reshape((_rows(shapes[name]), *shapes[name][1:])), 0
                for segment in parts:
                    tensor[segment.start : segment.start + segment.rows] = value[done : done + segment.rows]
                    done += segment.rows
            return tensor
        made[key] = (shape, make)
    return made


# -- reading a file ---------------------------------------------------------------------------------


class LayoutWeights:
    """One safetensors file read under diffusers' names: what `WeightsFile` offers (`locations`, `read_into`, `read`,
    `in`), each tensor gathered from its segments. `locations[name]` gives the file's dtype and diffusers' shape;
    a scaled file's scale of a weight is there as `scale_name(name)`, split with the rows when it is per row."""

    def __init__(self, file: WeightsFile, layout: Layout, segments: dict[str, tuple[Segment, ...]], shapes: Mapping[str, tuple[int, ...]]):
        self.file, self.layout = file, layout
        self._segments = dict(segments)
        self.locations: dict[str, TensorLocation] = {}
        for name, parts in segments.items():
            source = file.locations[parts[0].key]
            self.locations[name] = replace(source, shape=tuple(shapes[name]), nbytes=sum(s.rows for s in parts) * _row_bytes(source))
            scale = scale_name(parts[0].key)
            if name.endswith("weight") and scale in file:
                scale_location = file.locations[scale]
                per_row = torch.Size(scale_location.shape).numel() == _rows(source.shape) > 1
                self._segments[scale_name(name)] = tuple(replace(s, key=scale) for s in parts) if per_row else (Segment(scale, 0, _rows(scale_location.shape)),)
                rows = sum(s.rows for s in parts) if per_row else _rows(scale_location.shape)
                shape = (rows,) if per_row else scale_location.shape
                self.locations[scale_name(name)] = replace(scale_location, shape=shape, nbytes=rows * _row_bytes(scale_location))

    @property
    def scaled(self) -> bool:
        return any(name.endswith(SCALE_SUFFIX) for name in self.locations)

    def __contains__(self, name: str) -> bool:
        return name in self.locations

    def read_into(self, name: str, destination: torch.Tensor) -> None:
        location = self.locations[name]
        if destination.dtype != location.dtype or tuple(destination.shape) != location.shape:
            raise ValueError(f"{name}: file has {location.dtype} {location.shape}, destination {destination.dtype} {tuple(destination.shape)}")
        flat, done = destination.reshape(-1).view(torch.uint8), 0
        for segment in self._segments[name]:
            source = self.file.locations[segment.key]
            size = segment.rows * _row_bytes(source)
            part = replace(source, offset=source.offset + segment.start * _row_bytes(source), nbytes=size)
            self.file.read_part(part, flat[done : done + size], f"{name} (from {segment.key})")
            done += size

    def read(self, name: str) -> torch.Tensor:
        location = self.locations[name]
        tensor = torch.empty(location.shape, dtype=location.dtype)
        self.read_into(name, tensor)
        return tensor

    def close(self) -> None:
        self.file.close()


def _row_bytes(location: TensorLocation) -> int:
    return location.nbytes // max(_rows(location.shape), 1)


class UnknownScales(ValueError):
    """A file holding quantization scales the reader does not know: read without them, its pictures would be wrong."""


def _fits(file: WeightsFile, segments: dict[str, tuple[Segment, ...]], shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why `segments` do not describe `file` (None when they do): a missing key, other sides, or rows left over."""
    used: dict[str, int] = {}
    for name, parts in segments.items():
        for segment in parts:
            if segment.key not in file:
                return f"{segment.key} is missing"
            source = file.locations[segment.key]
            if tuple(source.shape[1:]) != tuple(shapes[name][1:]) or segment.start + segment.rows > _rows(source.shape):
                return f"{segment.key} is {source.shape}, the model's {name} {shapes[name]}"
            used[segment.key] = used.get(segment.key, 0) + segment.rows
    for key, rows in used.items():
        if rows != _rows(file.locations[key].shape):
            return f"{key} has {_rows(file.locations[key].shape)} rows, the model uses {rows}"
    return None


def open_layout(path: Path, class_name: str, shapes: Mapping[str, tuple[int, ...]]) -> LayoutWeights | None:
    """The safetensors file at `path` read under diffusers' names, in the first layout of the denoiser class that
    describes every tensor of `shapes` (the model's state dict, diffusers' names); None when none does.
    UnknownScales when the file holds scales other than `scale_weight` (they would be dropped)."""
    path = Path(path)
    file = WeightsFile(path.parent, stem=path.name.removesuffix(".safetensors"))
    reasons = []
    for layout in LAYOUTS.get(class_name, (DIFFUSERS,)):
        for prefix in PREFIXES:
            segments = layout_segments(layout, shapes, prefix)
            why = "a tensor has no rule" if segments is None else _fits(file, segments, shapes)
            if why is None:
                _check_left_over(file, segments, path.name, prefix)
                log.info("%s: read tensor by tensor in the %s layout", path.name, layout.name)
                return LayoutWeights(file, layout, segments, shapes)
            reasons.append(f"{layout.name}{' under ' + prefix if prefix else ''}: {why}")
    file.close()
    log.info("%s: no layout Atelier reads tensor by tensor fits (%s)", path.name, "; ".join(reasons))
    return None


def _check_left_over(file: WeightsFile, segments: dict[str, tuple[Segment, ...]], file_name: str, prefix: str) -> None:
    used = {segment.key for parts in segments.values() for segment in parts}
    known = used | {scale_name(key) for key in used} | {SCALED_FP8_MARKER}
    left = [key for key in file.locations if key not in known and key.startswith(prefix) and not key.endswith(IGNORED_SUFFIXES)]
    scales = [key for key in left if "scale" in key.rsplit(".", 1)[-1] or "quant" in key]
    if scales:
        raise UnknownScales(
            f"{file_name} holds quantization scales Atelier does not read ({', '.join(scales[:3])}…); read without them "
            "its weights would be wrong. Use the file's bf16 or plain fp8 release, or a GGUF file."
        )
    if left:
        log.warning("%s: %d tensors the model does not use are left out (%s…)", file_name, len(left), ", ".join(left[:3]))


def scaled_keys(keys) -> bool:
    """Whether a file with these tensor names is a scaled fp8 file (a `scale_weight` per layer)."""
    return any(key.endswith(SCALE_SUFFIX) for key in keys)
