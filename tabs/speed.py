"""The Speed control shared by the Image and Video tabs: a level, and an advanced section with the step cache's method
and threshold, compiled blocks and the attention backend."""

from __future__ import annotations

import gradio as gr

from pipelines.attention import ATTENTION_BACKENDS, usable_attention
from pipelines.catalog import SPEED_LEVELS
from pipelines.compiled_blocks import COMPILE_CHOICES
from pipelines.step_cache import CACHE_METHODS

# The method choice that leaves it to the Speed level (the model family's entry in the catalog).
AUTO_METHOD = "auto"
# The attention choice that leaves it to the hardware preset.
PRESET_ATTENTION = "preset"


def build_speed_controls(prefix: str, device: str):
    """Speed radio plus an accordion with method, threshold, compile and attention; returns the five components.
    `device` ("cuda" or "cpu") decides which attention backends are offered: those this machine can run."""
    speed = gr.Radio(
        list(SPEED_LEVELS), value="off", label="Speed", elem_id=f"{prefix}-speed",
        info="Skips denoising steps whose input barely changed (TeaCache): faster, slightly different results",
    )
    with gr.Accordion("Speed: method, threshold, compile, attention", open=False):
        with gr.Row():
            cache_method = gr.Dropdown(
                [AUTO_METHOD, *CACHE_METHODS], value=AUTO_METHOD, label="Cache method", elem_id=f"{prefix}-cache-method",
                info="auto: the Speed level's choice for this model",
            )
            cache_threshold = gr.Number(
                value=None, label="Threshold (empty: the level's; 0 never skips)", elem_id=f"{prefix}-cache-threshold",
            )
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
