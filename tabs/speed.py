"""The Speed control shared by the Image and Video tabs: a level, and an advanced override of method and threshold."""

from __future__ import annotations

import gradio as gr

from pipelines.catalog import SPEED_LEVELS
from pipelines.step_cache import CACHE_METHODS

# The method choice that leaves it to the Speed level (the model family's entry in the catalog).
AUTO_METHOD = "auto"


def build_speed_controls(prefix: str):
    """Speed radio plus an accordion with method and threshold; returns the three components."""
    speed = gr.Radio(
        list(SPEED_LEVELS), value="off", label="Speed", elem_id=f"{prefix}-speed",
        info="Skips denoising steps whose input barely changed (TeaCache): faster, slightly different results",
    )
    with gr.Accordion("Speed: method and threshold", open=False):
        with gr.Row():
            cache_method = gr.Dropdown(
                [AUTO_METHOD, *CACHE_METHODS], value=AUTO_METHOD, label="Cache method", elem_id=f"{prefix}-cache-method",
                info="auto: the Speed level's choice for this model",
            )
            cache_threshold = gr.Number(
                value=None, label="Threshold (empty: the level's; 0 never skips)", elem_id=f"{prefix}-cache-threshold",
            )
    return speed, cache_method, cache_threshold
