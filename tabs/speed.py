"""The Speed control shared by the tabs that run a denoiser: a level, and an advanced section with the step cache's
method and threshold (and, in the Image and Video tabs, compiled blocks and the attention backend); what a model
offers; and the values to restore from a result's parameters."""

from __future__ import annotations

import gradio as gr

from pipelines.speed.attention import ATTENTION_BACKENDS, usable_attention
from pipelines.catalog import SPEED_LEVELS, Family, family_spec
from pipelines.speed.compiled_blocks import COMPILE_CHOICES
from pipelines.speed.step_cache import CACHE_METHODS, methods_for

# The method choice that leaves it to the Speed level (the model family's entry in the catalog).
AUTO_METHOD = "auto"
# The attention choice that leaves it to the hardware preset.
PRESET_ATTENTION = "preset"
SPEED_INFO = "Skips denoising steps whose input barely changed (TeaCache): faster, slightly different results"
NOT_AVAILABLE = "Not available for this model: it runs uncached at every level"


def speed_info(family: Family) -> str:
    """The Speed control's line for a model family: what it does, or that no step cache works for it."""
    return SPEED_INFO if len(methods_for(family)) > 1 else NOT_AVAILABLE


def _speed_radio(prefix: str, family: Family):
    return gr.Radio(list(SPEED_LEVELS), value="off", label="Speed", elem_id=f"{prefix}-speed", info=speed_info(family))


def _method_and_threshold(prefix: str):
    cache_method = gr.Dropdown(
        [AUTO_METHOD, *CACHE_METHODS], value=AUTO_METHOD, label="Cache method", elem_id=f"{prefix}-cache-method",
        info="auto: the Speed level's choice for this model",
    )
    cache_threshold = gr.Number(
        value=None, label="Threshold (empty: the level's; 0 never skips)", elem_id=f"{prefix}-cache-threshold",
    )
    return cache_method, cache_threshold


def build_speed_controls(prefix: str, device: str, family: Family):
    """Speed radio plus an accordion with method, threshold, compile and attention; returns the five components.
    `device` ("cuda" or "cpu") decides which attention backends are offered: those this machine can run. The radio's
    line says when `family` (the tab's first model's) has no step cache."""
    speed = _speed_radio(prefix, family)
    with gr.Accordion("Speed: method, threshold, compile, attention", open=False):
        with gr.Row():
            cache_method, cache_threshold = _method_and_threshold(prefix)
        with gr.Row():
            compile_blocks = gr.Radio(
                list(COMPILE_CHOICES), value="off", label="Compile the transformer blocks", elem_id=f"{prefix}-compile",
                info="Faster steps on a GPU. The first run is slower: it compiles (tens of seconds; minutes on a CPU); "
                "later runs of the same size reuse it, also after a restart. Not with a step cache.",
            )
            attention = gr.Dropdown(
                [("Preset's choice", PRESET_ATTENTION)]
                + [(f"{name}: {ATTENTION_BACKENDS[name].label}", name) for name in usable_attention(device)],
                value=PRESET_ATTENTION, label="Attention", elem_id=f"{prefix}-attention",
                # Our check says what a backend missing here needs (a GPU, a package); Gradio's own would not.
                allow_custom_value=True,
                info="SageAttention and FlashAttention appear when installed (NVIDIA GPUs)",
            )
    return speed, cache_method, cache_threshold, compile_blocks, attention


def build_cache_controls(prefix: str, family: Family):
    """Speed radio plus an accordion with the step cache's method and threshold; returns the three components. The
    radio's line says when `family` (the tab's first model's) has no step cache."""
    speed = _speed_radio(prefix, family)
    with gr.Accordion("Speed: method and threshold", open=False):
        with gr.Row():
            cache_method, cache_threshold = _method_and_threshold(prefix)
    return speed, cache_method, cache_threshold


def speed_values(used: dict, family: Family) -> tuple:
    """Speed, method and threshold to restore from a result's parameters: the level alone (method auto, threshold
    empty) when the cache that ran is the level's own for this family, else the method and threshold that ran."""
    level = used.get("speed") or "off"
    ran = used.get("step_cache") or {}
    if level not in SPEED_LEVELS or not ran:
        return "off", AUTO_METHOD, None
    setting = family_spec(family).speed[level]
    if (ran.get("method"), ran.get("threshold")) == (setting.method, setting.threshold):
        return level, AUTO_METHOD, None
    return level, ran.get("method") or AUTO_METHOD, ran.get("threshold")


def compile_and_attention_values(used: dict, preset_attention: str) -> tuple:
    """Compile and attention to restore: the backend that ran, or the preset's choice when it was the preset's."""
    compiled = (used.get("compiled_blocks") or {}).get("compile") or "off"
    attention = used.get("attention")
    return compiled, PRESET_ATTENTION if attention in (None, preset_attention) else attention


def cache_note(used: dict) -> str:
    """A line for the result's summary saying what the step cache skipped; empty when none ran."""
    ran = used.get("step_cache") or {}
    if ran.get("method", "none") == "none":
        return ""
    return (
        f"Speed: {ran['method']} at threshold {ran['threshold']:g} skipped {ran['calls_skipped']} of "
        f"{ran['denoiser_calls']} denoiser calls."
    )
