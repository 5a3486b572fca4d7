"""The Video tab: text and image to video with Wan2.1, LTX-Video and FramePack, VACE's references and video editing
with a mask, Video Combine export and frame interpolation. Endpoint: /generate_video."""

from __future__ import annotations

import contextvars
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import gradio as gr

from pipelines.video import vace
from pipelines.catalog import Catalog, Task, family_spec
from pipelines.video.context_windows import BLENDS
from pipelines.video.enhance import MAX_ENHANCE_WEIGHT
from pipelines.errors import InvalidRequest
from pipelines.video.interpolation import CHOICES as INTERPOLATIONS
from pipelines.video.interpolation import offered as offered_interpolations
from pipelines.video.video_export import FORMATS, ExportSettings
from pipelines.video.video_request import VideoRequest, checked_fps, checked_window, fitted_start_size, long_video_note, sections_note
from pipelines.video.video_runner import VideoResult, generate_video
from tabs.context import GPU_QUEUE, AppContext, model_choices, stop_handler
from tabs.errors import shown_to_user
from tabs.upscale import build_controls as build_upscale_controls, described as upscale_summary, wire_result_button
from tabs.uploads import checked_image
from tabs.fields import Field, FieldTable, TabQueue
from tabs.kept_inputs import KeptInputs
from tabs.speed import (
    AUTO_METHOD, PRESET_ATTENTION, build_speed_controls, compile_and_attention_values, speed_info, speed_values,
)

DEMO_NOTE = "⚠️ **Demo model with random weights**: the result is noise, not what a real model would make."
PLAYABLE_SUFFIXES = (".mp4", ".webm")


def _offered_video_models(context: AppContext) -> tuple[list[tuple[str, str]], str]:
    """Text-to-video and image-to-video models in one list, the text-to-video default first."""
    text_choices, default = model_choices(context, Task.TEXT_TO_VIDEO)
    image_choices, _ = model_choices(context, Task.IMAGE_TO_VIDEO)
    return text_choices + image_choices, default


def describe_length(
    catalog: Catalog, model_id, frames, fps, interpolation, pingpong=False, loop_count=0, video_format="mp4", context_frames=None,
    latent_window_size=None,
) -> str:
    """What the settings will make, in frames and seconds, before anything runs (longer in context windows)."""
    spec = catalog.video_models().get(model_id)
    choice = INTERPOLATIONS.get(interpolation or "none")
    if spec is None or choice is None or not frames or not fps or frames < 1 or fps < 1:
        return ""
    rules = family_spec(spec.family).video
    most = rules.max_long_frames if context_frames and rules.long_video else rules.max_frames
    window = _window_or_default(latent_window_size, spec, rules)
    made = rules.nearest_frames(min(int(frames), most), most, window)
    lines = [f"**{made} frames at {int(fps)} fps = {made / fps:.2f} s**"]
    if window is not None:
        lines.append(f"in {(made - 1) // rules.frame_step(window)} sections of {rules.frame_step(window)} frames")
    if made != int(frames):
        lines.append(f"({int(frames)} asked; {spec.name} makes {rules.frame_rule(window)} frames)")
    if choice.factor > 1:
        more = (made - 1) * choice.factor + 1
        lines.append(f"· after {choice.label}: {more} frames at {int(fps) * choice.factor} fps = {more / (fps * choice.factor):.2f} s")
    if pingpong:
        lines.append("· pingpong plays it forward then back (about twice as long)")
    stores_loop_count = FORMATS.get(video_format, FORMATS["mp4"]).stores_loop_count
    if loop_count:
        how = "loop count in the file" if stores_loop_count else "frames repeated in the file"
        lines.append(f"· plays {int(loop_count) + 1} times ({how})")
    elif stores_loop_count:
        lines.append("· loops forever")
    return " ".join(lines)


def _window_or_default(value, spec, rules):
    """The latent window of a model made in sections as given, or its default when the value is not one it takes."""
    try:
        return checked_window(value, spec.name, rules)
    except InvalidRequest:
        return checked_window(None, spec.name, rules)


def describe_long_video(
    catalog: Catalog, model_id, frames, fps, steps, guidance, context_frames, context_overlap, context_stride, blend,
    ar_step=0, causal_block_size=None, latent_window_size=None,
):
    """The length context windows, chunks, sections or asynchronous blocks make and the transformer passes they take,
    or what is wrong with the settings."""
    spec = catalog.video_models().get(model_id)
    rules = family_spec(spec.family).video if spec else None
    if rules is not None and rules.sections is not None:
        try:
            window = checked_window(latent_window_size, spec.name, rules)
        except InvalidRequest as error:
            return f"⚠️ {error}"
        if not frames or not fps or not steps or frames < 1 or fps < 1 or steps < 1:
            return ""
        made = rules.nearest_frames(min(int(frames), rules.max_frames), window=window)
        return sections_note(spec, rules, made, int(fps), int(steps), window)
    if (not context_frames and not ar_step) or spec is None:
        return "Empty window length: the whole video at once."
    request = VideoRequest(
        prompt="", model=model_id, frames=frames, fps=fps, steps=steps, guidance=guidance, context_frames=context_frames,
        context_overlap=context_overlap, context_stride=context_stride, context_blend=blend or "linear",
        ar_step=ar_step or 0, causal_block_size=causal_block_size,
    )
    try:
        return long_video_note(catalog, request)
    except InvalidRequest as error:
        return f"⚠️ {error}"


def takes_vace_inputs(catalog: Catalog, model_id: str) -> bool:
    spec = catalog.video_models().get(model_id)
    return spec is not None and family_spec(spec.family).video.vace_inputs


def model_info(catalog: Catalog, model_id: str) -> str:
    spec = catalog.video_models().get(model_id)
    if spec is None:
        return ""
    rules = family_spec(spec.family).video
    needs = " · needs an input image" if spec.task is Task.IMAGE_TO_VIDEO else (
        " · optional input image" if rules.image_to_video_pipeline_class else ""
    )
    if rules.vace_inputs:
        needs = " · optional reference images, input video and mask (VACE), or an input image as the first frame"
    if rules.sections is not None:
        needs += " · made in sections (section length under Long video)"
    head = DEMO_NOTE if spec.demo else f"**{spec.name}** · {spec.weight_bytes / 1e9:.1f} GB · {spec.licence}"
    return f"{head}\n\nSizes: multiples of {family_spec(spec.family).size_multiple}; frames: {rules.frame_rule()}{needs}"


def _exported(name: str, default):
    return lambda used: (used.get("export") or {}).get(name, default)


def _given(name: str, default):
    return lambda used: used.get(name, default)


def video_fields(context: AppContext, controls: Mapping[str, Any]) -> FieldTable:
    """The Video tab's inputs: /generate_video's parameters in order, `controls` giving each its control by name.
    Defaults of None let gradio_client leave out anything but the prompt (Gradio makes only None defaults optional);
    they mean the model's defaults, or the export's. The remembered ones come back at the next start and through
    Reuse settings, in the order of /reuse_settings' outputs."""

    def speed(index: int):
        return lambda used: speed_values(used, context.store.catalog.spec(used["model"]).family)[index]

    def compile_or_attention(index: int):
        return lambda used: compile_and_attention_values(used, context.manager.preset.attention)[index]

    control = controls.get
    return FieldTable(
        [
            Field("prompt", control("prompt"), remembered=True, from_record=_given("prompt", "")),
            Field("negative_prompt", control("negative_prompt"), default=None, remembered=True, from_record=_given("negative_prompt", "")),
            Field("image", control("image"), default=None),
            Field("width", control("width"), default=None, remembered=True),
            Field("height", control("height"), default=None, remembered=True),
            Field("frames", control("frames"), default=None, remembered=True),
            Field("fps", control("fps"), default=None, remembered=True),
            Field("steps", control("steps"), default=None, remembered=True),
            Field("guidance", control("guidance"), default=None, remembered=True),
            Field("flow_shift", control("flow_shift"), default=None, remembered=True),
            Field("seed", control("seed"), default=-1, remembered=True, from_record=_given("seed", -1)),
            Field("model", control("model"), default=None, remembered=True),
            Field("format", control("format"), default=None, remembered=True, from_record=_exported("format", "mp4")),
            Field("loop_count", control("loop_count"), default=None, remembered=True, from_record=_exported("loop_count", 0)),
            Field("pingpong", control("pingpong"), default=None, remembered=True, from_record=_exported("pingpong", False)),
            Field("filename_prefix", control("filename_prefix"), default=None, remembered=True, from_record=_exported("filename_prefix", "")),
            Field("save_output", control("save_output"), default=None, remembered=True, from_record=_exported("save_output", True)),
            Field("interpolation", control("interpolation"), default=None, remembered=True, from_record=_given("interpolation", "none")),
            Field("frame_rate", control("frame_rate"), default=None),
            Field("context_frames", control("context_frames"), default=None, remembered=True),
            Field("context_overlap", control("context_overlap"), default=None, remembered=True),
            Field("context_stride", control("context_stride"), default=None, remembered=True),
            Field("context_blend", control("context_blend"), default=None, remembered=True, from_record=lambda used: used.get("context_blend") or "linear"),
            Field("speed", control("speed"), default=None, remembered=True, from_record=speed(0)),
            Field("cache_method", control("cache_method"), default=None, remembered=True, from_record=speed(1)),
            Field("cache_threshold", control("cache_threshold"), default=None, remembered=True, from_record=speed(2)),
            Field("ar_step", control("ar_step"), default=None, remembered=True, from_record=lambda used: used.get("ar_step") or 0),
            Field("causal_block_size", control("causal_block_size"), default=None, remembered=True),
            Field("compile", control("compile"), default=None, remembered=True, from_record=compile_or_attention(0)),
            Field("attention", control("attention"), default=None, remembered=True, from_record=compile_or_attention(1)),
            Field("reference_images", control("reference_images"), default=None),
            Field("video", control("video"), default=None),
            Field("mask", control("mask"), default=None),
            Field("keep_unmasked", control("keep_unmasked"), default=None, remembered=True, from_record=lambda used: bool(used.get("keep_unmasked"))),
            Field("latent_window_size", control("latent_window_size"), default=None, remembered=True),
            Field(
                "vace_strength", control("vace_strength"), default=None, remembered=True,
                from_record=lambda used: vace.DEFAULT_STRENGTH if used.get("vace_strength") is None else used["vace_strength"],
            ),
            # Appended last (API order is public); records from before it existed ran without it.
            Field("enhance_weight", control("enhance_weight"), default=None, remembered=True, from_record=lambda used: used.get("enhance_weight") or 0.0),
        ],
        remembered_order=(
            "model", "prompt", "negative_prompt", "width", "height", "frames", "fps", "steps", "guidance", "flow_shift", "seed",
            "format", "loop_count", "pingpong", "filename_prefix", "save_output", "interpolation",
            "context_frames", "context_overlap", "context_stride", "context_blend", "ar_step", "causal_block_size",
            "latent_window_size", "speed", "cache_method", "cache_threshold", "compile", "attention", "keep_unmasked", "vace_strength",
            "enhance_weight",
        ),
    )


def request_from(values: dict, default_model: str) -> VideoRequest:
    """The request a handler's values make (empty values mean the model's or the export's defaults)."""
    export = ExportSettings(
        frame_rate=values["frame_rate"], loop_count=values["loop_count"], format=values["format"] or "mp4",
        pingpong=bool(values["pingpong"]), filename_prefix=values["filename_prefix"] or "",
        save_output=True if values["save_output"] is None else values["save_output"],
    )
    cache_method, attention = values["cache_method"], values["attention"]
    passed = ("prompt", "negative_prompt", "image", "width", "height", "frames", "fps", "steps", "guidance", "flow_shift", "seed")
    return VideoRequest(
        **{name: values[name] for name in passed}, model=values["model"] or default_model,
        interpolation=values["interpolation"] or "none", export=export, context_frames=values["context_frames"],
        context_overlap=values["context_overlap"], context_stride=values["context_stride"],
        context_blend=values["context_blend"] or "linear", speed=values["speed"] or "off",
        cache_method=None if cache_method in (None, AUTO_METHOD) else cache_method, cache_threshold=values["cache_threshold"],
        ar_step=values["ar_step"] or 0, causal_block_size=values["causal_block_size"], compile=values["compile"] or "off",
        attention=None if attention in (None, PRESET_ATTENTION) else attention,
        reference_images=tuple(values["reference_images"] or ()), video=values["video"], mask=values["mask"],
        keep_unmasked=bool(values["keep_unmasked"]), latent_window_size=values["latent_window_size"],
        vace_strength=values["vace_strength"], enhance_weight=values["enhance_weight"],
    )


@dataclass
class VideoTab:
    """What other parts of the UI need from this tab: its remembered controls, to fill them from saved parameters."""

    context: AppContext
    fields: FieldTable
    # The input image and VACE's references, video and mask, which "Reuse settings" fills from the kept copies.
    input_components: list = field(default_factory=list)

    @property
    def settings_components(self) -> list:
        return self.fields.remembered_components

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        return (
            kept.path(used.get("image")), kept.paths(used.get("reference_images")), kept.path(used.get("video")),
            kept.path(used.get("mask")),
        )

    def last_values(self, in_browser, request: gr.Request) -> list:
        offered = [model_id for _, model_id in _offered_video_models(self.context)[0]]
        return self.fields.last_values(in_browser, request, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        if used.get("model") not in self.context.store.catalog.video_models():
            raise gr.Error(f"{source} was made with a model this app does not know ({used.get('model')!r}).")
        return self.fields.values_from_record(used)


def build(context: AppContext) -> VideoTab:
    catalog = context.store.catalog
    choices, default_model = _offered_video_models(context)
    spec = catalog.spec(default_model)
    defaults = spec.defaults
    family = family_spec(spec.family)

    with gr.Row():
        with gr.Column(scale=2):
            model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="video-model", allow_custom_value=True)
            info = gr.Markdown(model_info(catalog, default_model), elem_id="video-model-info")
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="A red fox trotting through snow at dawn", elem_id="video-prompt")
            # Under the prompt, where the eye is: the options below run past the fold.
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="video-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="video-stop")
            negative_prompt = gr.Textbox(label="Negative prompt", lines=2, elem_id="video-negative")
            image = checked_image(gr.Image(label="Input image (image to video)", type="filepath", height=200, elem_id="video-image"))
            with gr.Row():
                width = gr.Number(label="Width", value=defaults.width, precision=0, step=family.size_multiple, elem_id="video-width")
                height = gr.Number(label="Height", value=defaults.height, precision=0, step=family.size_multiple, elem_id="video-height")
            with gr.Row():
                frames = gr.Number(label="Frames", value=defaults.frames, precision=0, elem_id="video-frames")
                duration = gr.Number(label="…or duration (s)", value=round(defaults.frames / defaults.fps, 2), elem_id="video-duration")
                fps = gr.Number(label="fps", value=defaults.fps, precision=0, elem_id="video-fps")
            length = gr.Markdown(describe_length(catalog, default_model, defaults.frames, defaults.fps, "none"), elem_id="video-length")
            with gr.Row():
                steps = gr.Number(label="Steps", value=defaults.steps, precision=0, elem_id="video-steps")
                guidance = gr.Number(label="Guidance", value=defaults.guidance, step=0.5, elem_id="video-guidance")
                flow_shift = gr.Number(
                    label="Flow shift (empty = the model's own)", value=defaults.flow_shift, step=0.5, elem_id="video-flow-shift",
                )
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="video-seed")
            interpolation = gr.Dropdown(
                label="Frame interpolation", value="none",
                choices=[(c.label, name) for name, c in offered_interpolations(context.store.models_dir).items()],
                # A choice not offered here (RIFE without its weights) reaches the request, which says what is missing.
                allow_custom_value=True, elem_id="video-interpolation",
            )
            speed, cache_method, cache_threshold, compile_blocks, attention = build_speed_controls(
                "video", context.manager.execution_device(), spec.family
            )
            enhance_weight = gr.Slider(
                0.0, MAX_ENHANCE_WEIGHT, value=0.0, step=0.1, label="Enhance-A-Video weight (0 = off)", elem_id="video-enhance-weight",
                info="Wan2.1, HunyuanVideo and LTX-Video: lifts how strongly frames attend to each other (sharper, steadier); try 1–4",
            )
            with gr.Accordion("VACE: reference images, video editing with a mask", open=True, visible=family.video.vace_inputs) as vace_panel:
                gr.Markdown(
                    "**Reference images** (up to 3): a character, an object or a style to put in the video. **Input video** "
                    "(any file ffmpeg reads): sampled at the fps above, its first frames used, scaled and cropped to the size "
                    "above. **Mask** (a video, or one picture for every frame): white is regenerated, black kept; without a "
                    "mask the whole video is redrawn, following its layout and motion. An input image above becomes the first "
                    "frame instead, the rest generated."
                )
                with gr.Row():
                    reference_images = gr.File(
                        label="Reference images (up to 3)", file_count="multiple", file_types=["image"], elem_id="video-references",
                    )
                    reference_gallery = gr.Gallery(label="References", height=140, columns=3, interactive=False, elem_id="video-reference-gallery")
                with gr.Row():
                    vace_video = gr.File(label="Input video", file_types=["video", ".gif", ".webp"], elem_id="video-vace-video")
                    vace_mask = gr.File(label="Mask (video or picture)", file_types=["video", "image"], elem_id="video-vace-mask")
                with gr.Row():
                    keep_unmasked = gr.Checkbox(
                        label="Keep unmasked pixels exactly (paste the input back where the mask is black, frame by frame)",
                        value=False, elem_id="video-keep-unmasked",
                    )
                    vace_strength = gr.Slider(
                        *vace.STRENGTH_LIMITS, value=vace.DEFAULT_STRENGTH, step=0.05, elem_id="video-vace-strength",
                        label="Strength of the references, video and mask (1 as trained; 0 ignores them)",
                    )
            with gr.Accordion("Long video", open=False):
                gr.Markdown(
                    "Up to 4× the model's length. Wan: overlapping windows denoised at every step and blended where they "
                    "overlap (stride 2 also lets every other frame share a window). SkyReels V2: chunks made one after "
                    "the other, each continuing from the last frames of the one before. Lengths in video frames. "
                    "FramePack always works in sections (up to 60 s): set the section length in latent frames "
                    "(4 video frames each); the video so far plays after every section."
                )
                with gr.Row():
                    context_frames = gr.Number(
                        label="Window / chunk length, frames (context_frames; empty = off)", value=None, precision=0,
                        elem_id="video-context-frames",
                    )
                    context_overlap = gr.Number(
                        label="Overlap, frames (context_overlap; empty = a quarter)", value=None, precision=0,
                        elem_id="video-context-overlap",
                    )
                    context_stride = gr.Number(label="Stride (context_stride; Wan windows)", value=1, precision=0, elem_id="video-context-stride")
                    context_blend = gr.Dropdown(label="Blend (Wan windows)", choices=list(BLENDS), value="linear", elem_id="video-context-blend")
                gr.Markdown(
                    "SkyReels V2 asynchronous mode: the latent frames of each chunk in causal blocks, each block starting "
                    "ar_step steps after the one before (the model card suggests 5 and 5): more consistent, slower."
                )
                with gr.Row():
                    ar_step = gr.Number(label="ar_step (0 = synchronous; SkyReels V2)", value=0, precision=0, elem_id="video-ar-step")
                    causal_block_size = gr.Number(
                        label="Causal block size, latent frames (empty = the largest that fits, up to 5)", value=None, precision=0,
                        elem_id="video-causal-block-size",
                    )
                latent_window_size = gr.Number(
                    label="Section length, latent frames (FramePack latent_window_size; empty = 9, i.e. 36 frames)",
                    value=None, precision=0, elem_id="video-latent-window",
                )
                long_note = gr.Markdown(elem_id="video-long-note")
            with gr.Accordion("Video Combine (export)", open=False):
                with gr.Row():
                    video_format = gr.Dropdown(
                        label="Format", choices=[(f.label, name) for name, f in FORMATS.items()], value="mp4", elem_id="video-format",
                    )
                    frame_rate = gr.Number(label="File frame rate (empty = fps × interpolation)", value=None, elem_id="video-frame-rate")
                    loop_count = gr.Number(
                        label="Loop count (repeats after the first play; 0 = forever for GIF/WebP)", value=0, precision=0,
                        elem_id="video-loop-count",
                    )
                with gr.Row():
                    pingpong = gr.Checkbox(label="Pingpong (forward then back)", value=False, elem_id="video-pingpong")
                    filename_prefix = gr.Textbox(label="File name prefix", value="", elem_id="video-prefix")
                    save_output = gr.Checkbox(label="Save under outputs/ (else only return the file)", value=True, elem_id="video-save")
        with gr.Column(scale=3):
            # FramePack shows the video so far here after each section; the final video replaces it.
            player = gr.Video(label="Video", interactive=False, elem_id="video-player")
            preview = gr.Image(label="Preview of the latents while denoising", interactive=False, height=240, elem_id="video-preview")
            result_file = gr.File(label="File", interactive=False, elem_id="video-file")
            summary = gr.Markdown(label="Summary", elem_id="video-result")
            with gr.Accordion("Upscale this video", open=False):
                upscale_controls = build_upscale_controls(context, "video")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="video-parameters")

    outputs = [result_file, parameters, summary, player, preview]
    fields = video_fields(context, dict(
        prompt=prompt, negative_prompt=negative_prompt, image=image, width=width, height=height, frames=frames, fps=fps,
        steps=steps, guidance=guidance, flow_shift=flow_shift, seed=seed, model=model, format=video_format,
        loop_count=loop_count, pingpong=pingpong, filename_prefix=filename_prefix, save_output=save_output,
        interpolation=interpolation, frame_rate=frame_rate, context_frames=context_frames, context_overlap=context_overlap,
        context_stride=context_stride, context_blend=context_blend, speed=speed, cache_method=cache_method,
        cache_threshold=cache_threshold, ar_step=ar_step, causal_block_size=causal_block_size, compile=compile_blocks,
        attention=attention, reference_images=reference_images, video=vace_video, mask=vace_mask,
        keep_unmasked=keep_unmasked, latent_window_size=latent_window_size, vace_strength=vace_strength,
        enhance_weight=enhance_weight,
    ))
    tab_queue = TabQueue(context, "video", "Video", fields)

    def generate_video_body(values: dict, session, progress):
        job = request_from(values, default_model).check(catalog, context.store.models_dir)
        request = job.request
        summary_text = f"{job.spec.name} · {request.width}×{request.height} · {request.frames} frames · {request.prompt[:60]}"
        # (component, value) pairs for the page while the job runs: latent previews, and the video so far.
        shown: queue.Queue = queue.Queue()
        outcome: dict = {}

        def work(queued):
            return generate_video(
                job, context.manager, context.outputs_for(session), queued,
                on_preview=lambda picture, text: shown.put((preview, picture)),
                on_partial=lambda path, text: shown.put((player, str(path))),
            )

        def run():
            try:
                outcome["result"] = tab_queue.run(
                    summary_text, work, lambda: VideoResult(None, stopped=True, frames_note=job.frames_note()),
                    session, progress,
                )
            except BaseException as error:  # handed to the request's thread, where shown_to_user reports it
                outcome["error"] = error
            finally:
                shown.put(None)

        # The job runs beside this generator so previews reach the page while it denoises; the copied context
        # carries Gradio's progress tracking into the thread.
        worker = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
        worker.start()
        last_preview = None
        while (item := shown.get()) is not None:
            target, value = item
            if target is preview:
                last_preview = value
            yield tuple(value if component is target else gr.skip() for component in outputs)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        # The last preview stays on the page, and is a value (not "unchanged") in what a script gets.
        yield (*_shown(outcome["result"], job.spec.demo), last_preview)

    generate.click(
        shown_to_user(fields.handler(generate_video_body), fields), inputs=fields.inputs, outputs=outputs,
        api_name="generate_video", **GPU_QUEUE,
    )
    tab_queue.remember_on(generate.click)

    stop.click(stop_handler(context), outputs=[summary], api_visibility="private")

    def show_upscaled(outcome):
        if outcome.output is None:
            return gr.skip(), gr.skip(), upscale_summary(outcome), gr.skip()
        path = outcome.output.path
        used = {"video": str(path), "stopped": False, "saved": True, "parameters": outcome.output.parameters}
        return str(path), used, upscale_summary(outcome), str(path) if path.suffix in PLAYABLE_SUFFIXES else None

    wire_result_button(context, upscale_controls, "Video", [result_file], [result_file, parameters, summary, player], show_upscaled)

    length_inputs = [model, frames, fps, interpolation, pingpong, loop_count, video_format, context_frames, latent_window_size]

    def length_text(*values):
        return describe_length(catalog, *values)

    for control in length_inputs:
        control.change(length_text, inputs=length_inputs, outputs=[length], api_visibility="private")

    def long_video_note(*values):
        return describe_long_video(catalog, *values)

    long_inputs = [
        model, frames, fps, steps, guidance, context_frames, context_overlap, context_stride, context_blend, ar_step, causal_block_size,
        latent_window_size,
    ]
    for control in long_inputs:
        control.change(long_video_note, inputs=long_inputs, outputs=[long_note], api_visibility="private")

    def frames_for(model_id, seconds, rate, windows, window):
        """Seconds to frames on the model's rule: FramePack's whole sections, Wan's 4k+1… (None: no such model)."""
        chosen = catalog.video_models().get(model_id)
        if chosen is None or not seconds or not rate or seconds <= 0 or rate <= 0:
            return None
        rules = family_spec(chosen.family).video
        most = rules.max_long_frames if windows and rules.long_video else rules.max_frames
        return rules.nearest_frames(min(round(seconds * rate) + 1, most), most, _window_or_default(window, chosen, rules))

    def frames_from_duration(model_id, seconds, rate, windows, window):
        made = frames_for(model_id, seconds, rate, windows, window)
        return gr.skip() if made is None else made

    def duration_from_frames(model_id, seconds, rate, windows, window, frame_count):
        """The length the frames make (frames ÷ fps, as the summary says), unless the box already holds a duration that
        makes these frames: the one being typed, which must not be overwritten under the cursor."""
        if not frame_count or not rate or frame_count <= 0 or rate <= 0:
            return gr.skip()
        if frames_for(model_id, seconds, rate, windows, window) == frame_count:
            return gr.skip()
        return round(frame_count / rate, 2)

    length_controls = [model, duration, fps, context_frames, latent_window_size]
    duration.input(frames_from_duration, inputs=length_controls, outputs=[frames], api_visibility="private")
    for control in (frames, fps):
        control.change(duration_from_frames, inputs=[*length_controls, frames], outputs=[duration], api_visibility="private")
    model.change(lambda model_id: model_info(catalog, model_id), inputs=[model], outputs=[info], api_visibility="private")

    def show_speed(model_id):
        chosen = catalog.video_models().get(model_id)
        return gr.update(info=speed_info(chosen.family)) if chosen else gr.skip()

    model.change(show_speed, inputs=[model], outputs=[speed], api_visibility="private")

    def show_vace_inputs(model_id):
        """The VACE panel for VACE models; for others it hides, emptied, so no hidden file reaches the request."""
        if takes_vace_inputs(catalog, model_id):
            return gr.update(visible=True), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return gr.update(visible=False), None, None, None, False, vace.DEFAULT_STRENGTH

    model.change(
        show_vace_inputs, inputs=[model], outputs=[vace_panel, reference_images, vace_video, vace_mask, keep_unmasked, vace_strength],
        api_visibility="private",
    )
    reference_images.change(lambda paths: list(paths or []), inputs=[reference_images], outputs=[reference_gallery], api_visibility="private")

    def apply_model_defaults(model_id):
        chosen = catalog.video_models().get(model_id)
        if chosen is None:
            return [gr.skip()] * 7
        d = chosen.defaults
        return d.width, d.height, d.frames, d.fps, d.steps, d.guidance, d.flow_shift

    model.input(
        apply_model_defaults, inputs=[model], outputs=[width, height, frames, fps, steps, guidance, flow_shift],
        api_visibility="private",
    )

    @shown_to_user
    def size_from_image(path, model_id):
        """The picture's aspect at the model's default pixel count, on its size grid, in the width and height fields."""
        models = catalog.video_models()
        if not path or model_id not in models:
            return gr.skip(), gr.skip()
        return fitted_start_size(models[model_id], models, path)

    image.upload(size_from_image, inputs=[image, model], outputs=[width, height], api_visibility="private")

    @shown_to_user
    def fit_to_video(path, model_id, fps_value):
        """The clip's aspect at the model's default pixel count, and its length when shorter than the model's default."""
        if not path or not takes_vace_inputs(catalog, model_id):
            return gr.skip(), gr.skip(), gr.skip()
        chosen = catalog.spec(model_id)
        return vace.fitted_clip(path, family_spec(chosen.family), chosen.defaults, checked_fps(fps_value, chosen.defaults.fps))

    vace_video.upload(fit_to_video, inputs=[vace_video, model, fps], outputs=[width, height, frames], api_visibility="private")

    return VideoTab(context, fields, [image, reference_images, vace_video, vace_mask])


def _shown(result: VideoResult, demo: bool) -> tuple:
    if result.video is None:
        note = f" {result.frames_note}" if result.frames_note else ""
        return None, {"video": None, "stopped": result.stopped, "parameters": None}, f"Stopped; nothing was saved.{note}", None
    video = result.video
    path = str(video.path)
    summary = (
        f"{video.frame_count} frames at {video.frame_rate:g} fps = {video.duration_s:.2f} s in {result.seconds:.1f} s · "
        f"seed {result.seed}" + ("" if video.saved else " · not saved (temporary file)")
    )
    for note in (result.frames_note, result.length_note, result.compile_note, result.input_note):
        if note:
            summary += f"\n\n{note}"
    if demo:
        summary += "\n\n" + DEMO_NOTE
    playable = path if video.path.suffix in PLAYABLE_SUFFIXES else None
    used = {"video": path, "stopped": False, "saved": video.saved is not None, "parameters": video.parameters}
    return path, used, summary, playable
