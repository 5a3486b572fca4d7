"""Upscale: a picture or a video made bigger with a learned upscaler from `models/upscalers/`
(`pipelines/image/upscale.py`). The endpoint /upscale(file, model, scale, tile) lives in the Outputs tab; the Image and
Video tabs have an Upscale button under their results that runs the same job on the result shown. Each place builds
its controls here and takes the one job path (`TabQueue`)."""

from __future__ import annotations

from dataclasses import dataclass
import gradio as gr

from pipelines.image.upscale import UpscaleRequest, UpscaleResult, offered_upscalers, upscale
from tabs.context import GPU_QUEUE, AppContext
from tabs.errors import shown_to_user
from tabs.fields import Field, FieldTable, TabQueue

SCALE_INFO = "0 = the upscaler's own (×2, ×4…); another scale resizes its result"
TILE_INFO = "input pixels a side; 0 = chosen from the free GPU memory"


@dataclass(frozen=True)
class UpscaleControls:
    model: gr.Dropdown
    scale: gr.Number
    tile: gr.Number
    button: gr.Button


def build_controls(context: AppContext, prefix: str) -> UpscaleControls:
    """The upscaler, scale and tile controls and the Upscale button, with `prefix`-named element ids."""
    offered = list(offered_upscalers(context.store, context.demo_mode))
    with gr.Row():
        model = gr.Dropdown(
            choices=offered, value=offered[0] if offered else None, label="Upscaler", elem_id=f"{prefix}-upscaler",
            # Our request check names the upscalers on offer; Gradio's own check would not.
            allow_custom_value=True, scale=2,
            info="files in models/upscalers/ (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT…)",
        )
        scale = gr.Number(label="Scale", value=0, minimum=0, step=0.5, info=SCALE_INFO, elem_id=f"{prefix}-upscale-scale", scale=1)
        tile = gr.Number(label="Tile", value=0, precision=0, minimum=0, info=TILE_INFO, elem_id=f"{prefix}-upscale-tile", scale=1)
    button = gr.Button("Upscale", elem_id=f"{prefix}-upscale")
    return UpscaleControls(model, scale, tile, button)


def upscale_fields(file, controls: UpscaleControls, default_model: str | None) -> FieldTable:
    """/upscale's parameters in order; the model, scale and tile are what Reuse settings gives back from a result."""
    return FieldTable([
        Field("file", file),
        Field("model", controls.model, default=default_model, remembered=True),
        Field("scale", controls.scale, default=0, remembered=True, from_record=lambda used: used.get("scale") or 0),
        Field("tile", controls.tile, default=0, remembered=True, from_record=lambda used: used.get("tile") or 0),
    ])


def run_upscale(context: AppContext, queue: TabQueue, file, model, scale, tile, session, progress) -> UpscaleResult:
    """Check the request, then run it in the queue like every GPU job."""
    job = UpscaleRequest(file, model, scale, tile).check(context.store, context.demo_mode)
    summary = f"Upscale {job.source.name} ×{job.request.scale:g} with {model}"
    return queue.run(
        summary, lambda queued: upscale(job, context.manager, context.outputs_for(session), queued),
        lambda: UpscaleResult(None, stopped=True), session, progress,
    )


def described(result: UpscaleResult) -> str:
    if result.output is None:
        return "Stopped; nothing was saved."
    used = result.output.parameters
    what = f"{used['width']}×{used['height']}"
    if used.get("frames"):
        what += f", {used['frames']} frames at {used['fps']:g} fps"
    tiles = f"tiles of {result.tile} px" if result.tile else "one pass"
    return f"Upscaled ×{used['scale']:g} with {used['model']} to {what} ({tiles}) in {result.seconds:.1f} s · saved as {result.output.path.name}"


def wire_result_button(context: AppContext, controls: UpscaleControls, title: str, sources: list, outputs: list, shown) -> None:
    """The Upscale button under a tab's results. `sources` are the tab's selected result and the results it shows
    (a gallery, or None); the selected one is upscaled, else the first shown; `shown(result)` gives the values of
    `outputs`. A page event only (scripts call /upscale)."""
    selected, showing = sources[0], sources[1] if len(sources) > 1 and sources[1] is not None else gr.State(None)
    queue = TabQueue(context, "upscale", title, upscale_fields(gr.State(None), controls, None))

    @shown_to_user
    def upscale_result(chosen, results, model, scale, tile, request: gr.Request, progress=gr.Progress()):
        path = result_path(chosen) or next(filter(None, map(result_path, results or ())), None)
        if not path:
            raise gr.Error("Make or select a result first, then upscale it.")
        return shown(run_upscale(context, queue, path, model, scale, tile, request, progress))

    controls.button.click(
        upscale_result, inputs=[selected, showing, controls.model, controls.scale, controls.tile], outputs=outputs,
        api_visibility="private", **GPU_QUEUE,
    )


def result_path(value) -> str | None:
    """The file of a result as a component gives it: a path, a file's dict, or a gallery item ((path, caption) or
    {"image": {"path": …}})."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("image", value)
        value = value.get("path") if isinstance(value, dict) else value
    value = getattr(value, "path", value)
    return str(value) if value else None
