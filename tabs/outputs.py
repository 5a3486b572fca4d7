"""The Outputs tab: past results with their parameters, filtered by tab and model; "reuse settings" sends a
result's settings back to the tab that made it, also for a PNG / MP4 / WAV / FLAC / MP3 / JSON dropped here; Upscale makes
the selected picture or video (or any dropped one) bigger with an upscaler. Endpoints: /outputs, /upscale."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr

from pipelines.outputs import SavedOutput
from pipelines.image.upscale import UPSCALED_KIND, offered_upscalers
from tabs.context import GPU_QUEUE, AppContext, named_api
from tabs.errors import shown_to_user
from tabs.fields import TabQueue
from tabs.kept_inputs import KeptInputs
from tabs.upscale import build_controls, described as upscale_summary, run_upscale, upscale_fields
from tabs.uploads import parameters_from_file

# Each kind of result (its folder under outputs/) and the tab that makes it.
KIND_LABELS = {"images": "Image", "edit": "Edit", "speech": "TTS", "videos": "Video", "music": "Music", UPSCALED_KIND: "Upscale"}
# Files whose parameters do not say their kind.
KIND_BY_SUFFIX = {".png": "images", ".wav": "speech", ".mp4": "videos", ".webm": "videos", ".gif": "videos"}
SHOWN_AT_MOST = 200
THUMBNAIL_SUFFIXES = (".png", ".jpg", ".webp", ".gif", ".mp4", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3")


@dataclass(frozen=True)
class ReuseTarget:
    """A tab that takes settings back: where it is, its controls, and how parameters map onto them."""

    tab_id: str
    components: list
    values_from: Callable[[dict, str], tuple]
    # Its input file controls, filled from the copies kept with the result.
    input_components: list = field(default_factory=list)
    inputs_from: Callable[[dict, KeptInputs], tuple] | None = None


@dataclass(frozen=True)
class ImageDestination:
    """A tab that takes a result image as its input (the Edit tab's first image slot)."""

    tab_id: str
    component: gr.Image


def output_record(output: SavedOutput) -> dict:
    # Not "path": gradio_client would take a dict with a "path" for a file to download.
    return {**output.parameters, "saved_path": str(output.path)}


def described(parameters: dict) -> str:
    """What a result was asked for: the image prompt, the spoken text or the music's style; for an upscaled one, the
    scale and the file it was made from."""
    if parameters.get("kind") == UPSCALED_KIND:
        source = parameters.get("source") if isinstance(parameters.get("source"), dict) else {}
        return f"×{parameters.get('scale', '?')} of {source.get('file', '?')}"
    return str(parameters.get("prompt") or parameters.get("text") or parameters.get("tags") or "")


def caption(output: SavedOutput) -> str:
    parameters = output.parameters
    prompt = described(parameters)
    if parameters.get("kind") == UPSCALED_KIND:
        return f"{parameters.get('model', '?')} · {prompt[:40]}"
    return f"{parameters.get('model', '?')} · seed {parameters.get('seed', '?')} · {prompt[:40]}"


TABLE_HEADERS = ["created", "tab", "model", "prompt / text / style", "seed", "file"]


def table_row(output: SavedOutput) -> list:
    parameters = output.parameters
    prompt = described(parameters)
    tab = KIND_LABELS.get(str(parameters.get("kind")), str(parameters.get("kind", "")))
    return [str(parameters.get("created", ""))[:19], tab, parameters.get("model", ""), prompt[:60], parameters.get("seed", ""), output.path.name]


def build(
    context: AppContext, tabs: gr.Tabs, this_tab: gr.Tab, targets: dict[str, ReuseTarget], send_to: ImageDestination,
) -> None:
    with gr.Row():
        kind = gr.Dropdown(
            choices=[("All tabs", "")] + [(label, folder) for folder, label in KIND_LABELS.items()], value="",
            label="Tab", elem_id="outputs-kind", scale=1,
        )
        model = gr.Dropdown(choices=[("All models", "")], value="", label="Model", elem_id="outputs-model", scale=1)
        refresh = gr.Button("Refresh", size="sm", scale=0)
    gallery = gr.Gallery(label="Images and videos", columns=6, height=420, elem_id="outputs-gallery", allow_preview=True)
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Every result (select a row)", interactive=False, max_height=300, elem_id="outputs-table")
    with gr.Row():
        with gr.Column(scale=2):
            details = gr.JSON(label="Parameters of the selected result", elem_id="outputs-parameters")
        with gr.Column(scale=1):
            preview = gr.Audio(label="Selected audio", type="filepath", interactive=False, elem_id="outputs-audio")
            reuse = gr.Button("Reuse settings in its tab", variant="primary", elem_id="outputs-reuse")
            send = gr.Button("Send the image to Edit", elem_id="outputs-send-to-edit")
            dropped = gr.File(
                label="…or drop a PNG, video, WAV, FLAC, MP3 or JSON made by Atelier",
                file_types=[".png", ".json", ".mp4", ".webm", ".gif", ".webp", *AUDIO_SUFFIXES],
                height=130, elem_id="outputs-drop",
            )
    with gr.Accordion("Upscale the selected picture or video", open=False, elem_id="outputs-upscale-panel"):
        with gr.Row():
            with gr.Column(scale=1):
                upscale_source = gr.File(
                    # No file_types: Gradio's own refusal would not name the field; the request check does.
                    label="Picture or video to upscale (the selected result, or drop one)", height=130, elem_id="outputs-upscale-file",
                )
                upscale_controls = build_controls(context, "outputs")
            with gr.Column(scale=1):
                upscaled = gr.File(label="Upscaled", interactive=False, elem_id="outputs-upscaled")
                upscale_note = gr.Markdown(label="Summary", elem_id="outputs-upscale-note")
    shown = gr.State([])
    listed = gr.State([])
    selected = gr.State(None)

    def list_outputs(kind: str = "", model: str = "", limit: int = SHOWN_AT_MOST, request: gr.Request = None) -> list[dict]:
        """Your saved results, newest first: their parameters and `saved_path`; optionally of one kind (images, ...) and
        one model. With logins, only the results of the login asking."""
        limit = max(1, min(int(limit or SHOWN_AT_MOST), 10_000))
        return [output_record(o) for o in context.outputs_for(request).list_outputs(kind or None, model or None, limit)]

    def show(kind_filter: str, model_filter: str, request: gr.Request):
        store = context.outputs_for(request)
        outputs = store.list_outputs(kind_filter or None, model_filter or None, SHOWN_AT_MOST)
        visible = [o for o in outputs if o.path.suffix.lower() in THUMBNAIL_SUFFIXES]
        models = sorted({str(o.parameters.get("model")) for o in store.list_outputs(kind_filter or None, None, 2000)})
        model_update = gr.update(choices=[("All models", "")] + [(m, m) for m in models])
        return (
            [(str(o.path), caption(o)) for o in visible], [str(o.path) for o in visible],
            [table_row(o) for o in outputs], [str(o.path) for o in outputs], model_update, None, None, None,
        )

    listing = [gallery, shown, table, listed, model, details, selected, preview]
    refresh.click(show, inputs=[kind, model], outputs=listing, api_visibility="private")
    kind.change(show, inputs=[kind, model], outputs=listing, api_visibility="private")
    model.input(show, inputs=[kind, model], outputs=listing, api_visibility="private")
    this_tab.select(show, inputs=[kind, model], outputs=listing, api_visibility="private")

    # For scripts: the same listing as data. Not a GPU event: it only reads the outputs folder.
    named_api(list_outputs, api_name="outputs", returns="Outputs", concurrency_limit=None)

    def on_select(paths: list[str], event: gr.SelectData):
        if event.index is None or not 0 <= event.index < len(paths):
            return None, None, gr.skip()
        path = paths[event.index]
        return path, parameters_from_file(Path(path)), path

    gallery.select(on_select, inputs=[shown], outputs=[selected, details, upscale_source], api_visibility="private")

    def on_row_select(paths: list[str], event: gr.SelectData):
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if row is None or not 0 <= row < len(paths):
            return None, None, None, gr.skip()
        path = paths[row]
        audio = path if Path(path).suffix.lower() in AUDIO_SUFFIXES else None
        return path, parameters_from_file(Path(path)), audio, path if audio is None else gr.skip()

    table.select(on_row_select, inputs=[listed], outputs=[selected, details, preview, upscale_source], api_visibility="private")

    # Upscale: the one endpoint for scripts, /upscale(file, model, scale, tile); Reuse settings of an upscaled result
    # fills these controls and the source kept with it.
    offered = list(offered_upscalers(context.store, context.demo_mode))
    upscale_table = upscale_fields(upscale_source, upscale_controls, offered[0] if offered else None)
    upscale_queue = TabQueue(context, "upscale", "Upscale", upscale_table)

    def upscale_body(values: dict, session, progress):
        result = run_upscale(context, upscale_queue, values["file"], values["model"], values["scale"], values["tile"], session, progress)
        if result.output is None:
            return None, {"file": None, "stopped": True, "parameters": None}, upscale_summary(result)
        used = {"file": str(result.output.path), "stopped": False, "parameters": result.output.parameters}
        return str(result.output.path), used, upscale_summary(result)

    upscale_controls.button.click(
        shown_to_user(upscale_table.handler(upscale_body), upscale_table), inputs=upscale_table.inputs,
        outputs=[upscaled, details, upscale_note], api_name="upscale", **GPU_QUEUE,
    )
    targets = {
        **targets,
        UPSCALED_KIND: ReuseTarget(
            "outputs", upscale_table.remembered_components,
            lambda used, source: upscale_table.values_from_record(used), [upscale_source],
            lambda used, kept: (kept.path(used.get("source")),),
        ),
    }

    every_component = [
        component for target in targets.values() for component in (*target.components, *target.input_components)
    ]

    @shown_to_user
    def reuse_settings(path: str | None, request: gr.Request):
        if not path:
            raise gr.Error("Select a result first, or drop a file made by Atelier.")
        path = Path(path)
        used = parameters_from_file(path)
        result_kind = used.get("kind") or KIND_BY_SUFFIX.get(path.suffix.lower())
        target = targets.get(result_kind)
        if target is None:
            raise gr.Error(f"{path.name} was made by a tab this app does not have ({result_kind or 'unknown'}).")
        values = dict(zip(map(id, target.components), target.values_from(used, path.name)))
        if target.inputs_from is not None:
            kept = KeptInputs(context.outputs_for(request))
            values.update(zip(map(id, target.input_components), target.inputs_from(used, kept)))
            kept.warn_missing()
        return [gr.Tabs(selected=target.tab_id)] + [values.get(id(component), gr.skip()) for component in every_component]

    reuse.click(reuse_settings, inputs=[selected], outputs=[tabs, *every_component], api_visibility="private")

    def send_image(path: str | None):
        if not path or Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            raise gr.Error("Select an image result first (a PNG), then send it to Edit.")
        return gr.Tabs(selected=send_to.tab_id), path

    send.click(send_image, inputs=[selected], outputs=[tabs, send_to.component], api_visibility="private")
    dropped.upload(reuse_settings, inputs=[dropped], outputs=[tabs, *every_component], api_visibility="private")
