"""Step caching: skip the denoiser's block stack on steps whose input barely changed, reusing the last residual.

Two methods, both installed for one job by `step_cache(pipe, family, method, threshold)` and removed afterwards:
- "teacache" (ours): at each denoiser call, the relative L1 change of the first block's timestep-modulated input,
  rescaled by the polynomial TeaCache's authors fitted per model, is accumulated; while the sum stays below the
  threshold, every block is bypassed and the cached residual (blocks' output − blocks' input) is added instead.
- "first_block": diffusers' FirstBlockCache (`transformer.enable_cache`), for the families where it works (NOTES).

Both report how many denoiser calls skipped their blocks: calls of the denoiser minus real attention calls of its
last block, counted with forward hooks, so a cache that silently does nothing shows 0.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from diffusers import FirstBlockCacheConfig

from pipelines.catalog import SPEED_LEVELS, Family, family_spec
from pipelines.errors import InvalidRequest

CACHE_METHODS = ("none", "teacache", "first_block")


@dataclass(frozen=True)
class TeaCacheRule:
    """Where a family's transformer keeps its blocks and what TeaCache compares between steps."""

    # Attributes of the transformer holding its blocks, run one after another on `hidden_states`.
    block_lists: tuple[str, ...]
    # "norm1": the first block's norm1(hidden_states, emb=temb)[0] (FLUX); "norm1_modulation": the same value computed
    # from norm1's layers, for blocks whose norm1 takes more inputs (HunyuanVideo I2V's token replace); "temb": the timestep projection the
    # blocks receive (Wan's "ret_steps" mode, LTX, ACE-Step); "t_embedder": the output of the transformer's `t_embedder`, the
    # timestep embedding before the pooled text is added to it (HiDream).
    probe: str
    # Rescaling polynomial, highest power first. Fitted by TeaCache's authors (github.com/ali-vilab/TeaCache):
    # FLUX from TeaCache4FLUX/teacache_flux.py; Wan2.1 T2V 1.3B (ret_steps mode) from TeaCache4Wan2.1/teacache_generate.py;
    # LTX-Video from TeaCache4LTX-Video/teacache_ltx.py; HiDream-I1 Full from TeaCache4HiDream-I1/teacache_hidream_i1.py;
    # HunyuanVideo (FramePack's base, whose own TeaCache uses the same) from TeaCache4HunyuanVideo/teacache_sample_video.py.
    coefficients: tuple[float, ...]
    # Index of hidden_states in a block's tuple output (FLUX returns (encoder_hidden_states, hidden_states),
    # HunyuanVideo (hidden_states, encoder_hidden_states));
    # None when a block returns hidden_states alone. A tuple gives one per entry of `block_lists` (HiDream's double
    # blocks return (hidden_states, encoder_hidden_states), its single blocks hidden_states alone).
    output_index: int | None | tuple[int | None, ...] = None
    # The keyword the transformer takes the timestep under (HiDream's is "timesteps").
    timestep_argument: str = "timestep"

    def output_index_of(self, list_index: int) -> int | None:
        return self.output_index[list_index] if isinstance(self.output_index, tuple) else self.output_index


TEACACHE_RULES: dict[Family, TeaCacheRule] = {
    Family.FLUX: TeaCacheRule(
        ("transformer_blocks", "single_transformer_blocks"), "norm1",
        (4.98651651e02, -2.83781631e02, 5.58554382e01, -3.82021401e00, 2.64230861e-01), output_index=1,
    ),
    Family.WAN: TeaCacheRule(
        ("blocks",), "temb", (-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02),
    ),
    Family.LTX: TeaCacheRule(
        ("transformer_blocks",), "temb", (2.14700694e01, -1.28016453e01, 2.31279151e00, 7.92487521e-01, 9.69274326e-03),
    ),
    # Fitted on HiDream-I1 Full; Dev and Fast (distilled, fewer steps) use it too, as no other was published.
    Family.HIDREAM: TeaCacheRule(
        ("double_stream_blocks", "single_stream_blocks"), "t_embedder",
        (-3.13605009e04, -7.12425503e02, 4.91363285e01, 8.26515490e00, 1.08053901e-01),
        output_index=(0, None), timestep_argument="timesteps",
    ),
    # The first dual-stream block's modulated input, over the section's tokens and its packed history.
    Family.FRAMEPACK: TeaCacheRule(
        ("transformer_blocks", "single_transformer_blocks"), "norm1",
        (7.33226126e02, -4.01131952e02, 6.75869174e01, -3.14987800e00, 9.61237896e-02), output_index=0,
    ),
    # HunyuanVideo's own text-to-video transformer: the same blocks, probe and polynomial (TeaCache4HunyuanVideo). Its
    # image-to-video transformer is the same network fine-tuned, its blocks' norm1 taking the start picture's frame
    # apart ("token replace"); the probe is the modulation the text-to-video blocks apply, computed from norm1's own
    # weights over all tokens, so both kinds compare the same thing. The polynomial was fitted on text to video and
    # not refitted for I2V (none was published): the thresholds' speed-ups are the T2V ones, approximately.
    Family.HUNYUANVIDEO: TeaCacheRule(
        ("transformer_blocks", "single_transformer_blocks"), "norm1_modulation",
        (7.33226126e02, -4.01131952e02, 6.75869174e01, -3.14987800e00, 9.61237896e-02), output_index=0,
    ),
    # No polynomial was published for ACE-Step: the identity, i.e. the plain relative change of the timestep projection
    # the blocks get. The first block's input would follow the content, but on the tiny random model it barely moves
    # (0.05 skipped 18 of 30 steps), so no threshold could be picked from it; the projection's change follows the
    # schedule alone. Thresholds (catalog) were picked on the tiny model, not on real weights.
    Family.ACE_STEP: TeaCacheRule(("layers",), "temb", (1.0, 0.0)),
}

# diffusers' FirstBlockCache works on these (NOTES: it fails on SD3; HiDream's blocks take other arguments).
FIRST_BLOCK_FAMILIES = frozenset({Family.FLUX, Family.WAN, Family.LTX, Family.FRAMEPACK, Family.HUNYUANVIDEO})


def methods_for(family: Family) -> tuple[str, ...]:
    """The cache methods offered for a family, "none" first."""
    return ("none",) + (("teacache",) if family in TEACACHE_RULES else ()) + (
        ("first_block",) if family in FIRST_BLOCK_FAMILIES else ()
    )


def check_speed(family: Family, speed: str | None, method: str | None, threshold) -> tuple[str, float]:
    """The (method, threshold) a request asks for: its Speed level's from the catalog, overridden by explicit values."""
    level = speed or "off"
    if level not in SPEED_LEVELS:
        raise InvalidRequest("speed", f"{level!r} is not a speed; choose one of {', '.join(SPEED_LEVELS)}")
    setting = family_spec(family).speed[level]
    method = method or setting.method
    if method not in methods_for(family):
        raise InvalidRequest("cache_method", f"{method!r} is not available for this model; choose one of {', '.join(methods_for(family))}")
    if threshold is None or threshold == "":
        threshold = setting.threshold if method == setting.method else _default_threshold(family, method)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise InvalidRequest("cache_threshold", f"{threshold!r} is not a number") from None
    if not 0.0 <= threshold <= 10.0:
        raise InvalidRequest("cache_threshold", f"{threshold} is out of range; use 0 (never skip) to 10")
    return method, threshold


def _default_threshold(family: Family, method: str) -> float:
    """A method chosen without a threshold: the family's balanced TeaCache one, or diffusers' FirstBlockCache default."""
    if method == "teacache":
        balanced = family_spec(family).speed["balanced"]
        return balanced.threshold if balanced.method == "teacache" else 0.0
    if method == "first_block":
        return FirstBlockCacheConfig().threshold
    return 0.0


@dataclass
class CacheReport:
    """What the cache did during one job; `skipped` is the number of denoiser calls whose blocks did not run."""

    method: str
    threshold: float
    calls: int = 0
    computed: int = 0

    @property
    def skipped(self) -> int:
        return self.calls - self.computed

    def record(self) -> dict:
        return {"method": self.method, "threshold": self.threshold, "denoiser_calls": self.calls, "calls_skipped": self.skipped}


def _blocks(transformer, rule: TeaCacheRule) -> list[torch.nn.Module]:
    return [block for name in rule.block_lists for block in getattr(transformer, name)]


def _blocks_with_output_index(transformer, rule: TeaCacheRule) -> list[tuple[torch.nn.Module, int | None]]:
    return [
        (block, rule.output_index_of(list_index))
        for list_index, name in enumerate(rule.block_lists) for block in getattr(transformer, name)
    ]


def _last_attention(transformer, family: Family) -> torch.nn.Module:
    block = _blocks(transformer, TEACACHE_RULES[family])[-1]
    return next(module for module in block.modules() if type(module).__name__.endswith("Attention"))


@dataclass
class _Slot:
    """TeaCache state for one kind of call in a step (conditional, unconditional): each has its own history."""

    previous_probe: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    accumulated: float = 0.0


@dataclass
class _TeaCache:
    rule: TeaCacheRule
    threshold: float
    slots: dict[int, _Slot] = field(default_factory=dict)
    slot: _Slot | None = None
    last_timestep: torch.Tensor | None = None
    call_in_step: int = 0
    skip: bool = False
    blocks_input: torch.Tensor | None = None
    # The transformer's timestep embedding of this call, for the "t_embedder" probe.
    timestep_embedding: torch.Tensor | None = None

    def on_denoiser_call(self, timestep: torch.Tensor) -> None:
        # A timestep above the last one starts a new denoising pass (FramePack's next section): nothing of the last
        # pass may stand in for this one's first step.
        if self.last_timestep is not None and bool((timestep > self.last_timestep).any()):
            self.slots.clear()
        # Calls with the same timestep are the conditional/unconditional passes of one step.
        same_step = self.last_timestep is not None and torch.equal(timestep, self.last_timestep)
        self.call_in_step = self.call_in_step + 1 if same_step else 0
        self.last_timestep = timestep.clone()
        self.slot = self.slots.setdefault(self.call_in_step, _Slot())

    def decide(self, block, hidden_states: torch.Tensor, temb: torch.Tensor) -> None:
        probe = _PROBES[self.rule.probe](self, block, hidden_states, temb)
        slot = self.slot
        if slot.previous_probe is None or slot.residual is None:
            self.skip = False
        else:
            change = ((probe - slot.previous_probe).abs().mean() / slot.previous_probe.abs().mean()).item()
            rescaled = sum(c * change**power for power, c in enumerate(reversed(self.rule.coefficients)))
            slot.accumulated += rescaled
            # The polynomial can dip below 0 for tiny changes: a threshold of 0 must still never skip.
            self.skip = self.threshold > 0 and slot.accumulated < self.threshold
            if not self.skip:
                slot.accumulated = 0.0
        slot.previous_probe = probe.detach().clone()
        self.blocks_input = hidden_states


# What TeaCache compares between steps, by TeaCacheRule.probe: (state, first block, its hidden_states, its temb) -> tensor.
def _norm1_modulation(block, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """What an AdaLayerNormZero norm1 returns first (its attention input), from its own layers: the token-replace
    variant's forward wants the first frame's embedding and size too, but has the same layers."""
    norm = block.norm1
    shift, scale = norm.linear(norm.silu(temb)).chunk(6, dim=1)[:2]
    return norm.norm(hidden_states) * (1 + scale[:, None]) + shift[:, None]


_PROBES = {
    "norm1": lambda state, block, hidden_states, temb: block.norm1(hidden_states, emb=temb)[0],
    "norm1_modulation": lambda state, block, hidden_states, temb: _norm1_modulation(block, hidden_states, temb),
    "temb": lambda state, block, hidden_states, temb: temb,
    "t_embedder": lambda state, block, hidden_states, temb: state.timestep_embedding,
}


def _hidden(args, kwargs) -> torch.Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _temb(args, kwargs) -> torch.Tensor:
    return kwargs["temb"] if "temb" in kwargs else args[2]


def _passthrough(output_index: int | None, args, kwargs, hidden_states):
    """What a bypassed block returns: its hidden_states, beside its encoder_hidden_states when it returns a pair."""
    if output_index is None:
        return hidden_states
    encoder = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]
    return (encoder, hidden_states) if output_index == 1 else (hidden_states, encoder)


def _install_teacache(transformer, family: Family, threshold: float) -> list:
    """Wraps every block's forward; returns what undoes it."""
    rule = TEACACHE_RULES[family]
    state = _TeaCache(rule, threshold)
    blocks = _blocks_with_output_index(transformer, rule)
    first, last = blocks[0][0], blocks[-1][0]

    def wrap(block, output_index):
        original = block.forward

        def forward(*args, **kwargs):
            hidden_states = _hidden(args, kwargs)
            if block is first:
                state.decide(block, hidden_states, _temb(args, kwargs))
                if state.skip:
                    return _passthrough(output_index, args, kwargs, hidden_states + state.slot.residual)
            elif state.skip:
                return _passthrough(output_index, args, kwargs, hidden_states)
            output = original(*args, **kwargs)
            if block is last:
                out_hidden = output if output_index is None else output[output_index]
                # HiDream's last blocks carry text tokens after the image tokens the first block got: keep those.
                image_tokens = state.blocks_input.shape[1]
                state.slot.residual = (out_hidden[:, :image_tokens] - state.blocks_input).detach()
            return output

        block.forward = forward

    # A forward set on the instance before ours (compiled blocks: pipelines/speed/compiled_blocks.py) comes back afterwards.
    own_forwards = {block: vars(block).get("forward") for block, _ in blocks}
    for block, output_index in blocks:
        wrap(block, output_index)
    hooks = [transformer.register_forward_pre_hook(
        lambda module, args, kwargs: state.on_denoiser_call(kwargs[rule.timestep_argument]), with_kwargs=True
    )]
    if rule.probe == "t_embedder":
        hooks.append(transformer.t_embedder.register_forward_hook(
            lambda module, args, output: setattr(state, "timestep_embedding", output)
        ))

    def undo():
        for hook in hooks:
            hook.remove()
        for block, _ in blocks:
            if own_forwards[block] is None:
                del block.forward  # the instance attribute goes; the class's forward is back
            else:
                block.forward = own_forwards[block]

    return [undo]


@contextmanager
def step_cache(pipe, family: Family, method: str, threshold: float):
    """Caches denoiser steps for the duration of one job; yields a CacheReport. Threshold 0 never skips."""
    report = CacheReport(method, threshold)
    if method == "none":
        yield report
        return
    if method not in methods_for(family):
        raise InvalidRequest("cache_method", f"{method!r} is not available for this model; choose one of {', '.join(methods_for(family))}")
    transformer = pipe.transformer
    undo = []
    if method == "teacache":
        undo += _install_teacache(transformer, family, threshold)
    else:
        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        undo.append(transformer.disable_cache)
    counters = [
        transformer.register_forward_pre_hook(lambda *_: setattr(report, "calls", report.calls + 1)),
        _last_attention(transformer, family).register_forward_pre_hook(
            lambda *_: setattr(report, "computed", report.computed + 1)
        ),
    ]
    # FirstBlockCache needs a cache context; pipelines that open none themselves (FLUX image-to-image) get this
    # one. Those that do open theirs per call, which takes over.
    context = transformer.cache_context("step_cache") if method == "first_block" else nullcontext()
    try:
        with context:
            yield report
    finally:
        for counter in counters:
            counter.remove()
        for step in reversed(undo):
            step()

