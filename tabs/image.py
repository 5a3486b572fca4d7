"""The Image tab: text to image with SD3, FLUX, HiDream-I1, CogView4, SDXL and SD1.5, and checkpoint files from the
models folder. Endpoint: /generate_image."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from pipelines.catalog import ModelSpec, Task, family_spec
from pipelines.catalog.controls import CONTROLNETS, IP_ADAPTERS
from pipelines.image.controlnets import IP_SCALE_LIMITS
from pipelines.image.image_runner import (
    DEFAULT_HIRES_STRENGTH, DEFAULT_STRENGTH, MAX_HIRES_SCALE, ImageRequest, ImageResult, generate_image, start_image_size,
)
from pipelines.loading.weight_formats import WEIGHT_FORMATS
from tabs.context import GPU_QUEUE, AppContext, model_choices, named_api, stop_handler
from tabs.errors import shown_to_user
from tabs.fields import Field, FieldTable, TabQueue
from tabs.kept_inputs import KeptInputs
from tabs.lora_picker import build_lora_picker, fitting_lora_text, lora_names, recorded_lora_text
from tabs.speed import (
    AUTO_METHOD, PRESET_ATTENTION, build_speed_controls, compile_and_attention_values, speed_info, speed_values,
)
from tabs.upscale import build_controls as build_upscale_controls, described as upscale_summary, wire_result_button
from tabs.uploads import checked_image, parameters_from_file, upload_problem

# The Weights choice that leaves the format to the hardware preset.
PRESET_WEIGHTS = "preset"
# The order of the remembered controls: the order of /reuse_settings' outputs, which scripts rely on.
REMEMBERED_ORDER = (
    "model", "prompt", "negative_prompt", "width", "height", "steps", "guidance", "seed", "batch", "scheduler", "strength", "loras",
    "weights", "speed", "cache_method", "cache_threshold", "compile", "attention", "control_types", "control_strengths",
    "control_starts", "control_ends", "ip_adapter_scale", "ip_adapter", "hires_scale", "hires_strength",
)
# Every control type some ControlNet serves; the request says which ones the chosen model takes.
CONTROL_TYPES = tuple(dict.fromkeys(kind for controlnet in CONTROLNETS for kind in controlnet.types))
# The IP-Adapter choice that leaves it to the model (its first).
MODEL_IP_ADAPTER = "auto"

DEMO_NOTE = "⚠️ **Demo model with random weights**: the result is noise, not what a real model would make."


def model_info(spec: ModelSpec | None) -> str:
    if spec is None:
        return ""
    area = family_spec(spec.family).fixed_pixel_area
    size_note = f"\n\nRenders the pixel area of {math.isqrt(area)}² at the aspect ratio of the width and height you give." if area else ""
    if spec.demo:
        return DEMO_NOTE + size_note
    if spec.checkpoint:
        return (
            f"**{spec.checkpoint.file_name}** · {spec.checkpoint.size_bytes / 1e9:.1f} GB file · base: {spec.base} · {spec.licence}"
            + size_note
        )
    return f"**{spec.name}** · {spec.weight_bytes / 1e9:.1f} GB · {spec.licence}" + size_note


@dataclass
class ImageTab:
    """What other parts of the UI need from this tab: its remembered controls, to fill them from saved parameters."""

    context: AppContext
    fields: FieldTable
    # The start image, which "Reuse settings" fills from the copy kept with a result.
    input_components: list = field(default_factory=list)

    @property
    def settings_components(self) -> list:
        return self.fields.remembered_components

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        return kept.path(used.get("init_image")), kept.paths(used.get("control_images")), kept.paths(used.get("ip_adapter_images"))

    def last_values(self, in_browser, request: gr.Request) -> list:
        """The values this browser (or user) last used in this tab; unchanged controls where none were remembered."""
        offered = [model_id for _, model_id in model_choices(self.context, Task.TEXT_TO_IMAGE)[0]]
        return self.fields.last_values(in_browser, request, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        spec = self.context.store.catalog.image_models().get(used.get("model"))
        if spec is None:
            raise gr.Error(f"{source} was made with a model this app does not know ({used.get('model')!r}).")
        values = dict(zip(self.fields.remembered_names, self.fields.values_from_record(used)))
        values["speed"], values["cache_method"], values["cache_threshold"] = speed_values(used, spec.family)
        values["compile"], values["attention"] = compile_and_attention_values(used, self.context.manager.preset.attention)
        return tuple(values.values())


def _field_table(controls: dict) -> FieldTable:
    """/generate_image's parameters in order (the first ten required, as scripts have always sent them), and how a
    result's record gives each remembered control back."""
    strength = lambda used: used.get("strength") if used.get("strength") is not None else DEFAULT_STRENGTH
    numbers = lambda name: lambda used: ", ".join(f"{value:g}" for value in used.get(name) or ())
    return FieldTable(
        [
            Field("prompt", controls["prompt"], remembered=True, from_record=lambda used: used.get("prompt", "")),
            Field("negative_prompt", controls["negative_prompt"], remembered=True, from_record=lambda used: used.get("negative_prompt", "")),
            Field("model", controls["model"], remembered=True),
            Field("width", controls["width"], remembered=True),
            Field("height", controls["height"], remembered=True),
            Field("steps", controls["steps"], remembered=True),
            Field("guidance", controls["guidance"], remembered=True),
            Field("seed", controls["seed"], remembered=True, from_record=lambda used: used.get("seed", -1)),
            # A result is one image of its batch: Reuse makes one again.
            Field("batch", controls["batch"], remembered=True, from_record=lambda used: 1),
            Field("scheduler", controls["scheduler"], remembered=True),
            Field("init_image", controls["init_image"], default=None),
            Field("strength", controls["strength"], default=DEFAULT_STRENGTH, remembered=True, from_record=strength),
            Field("loras", controls["loras"], default="", remembered=True, from_record=recorded_lora_text),
            Field("weights", controls["weights"], default=PRESET_WEIGHTS, remembered=True, from_record=lambda used: used.get("weights") or PRESET_WEIGHTS),
            # Speed, compile and attention are read back with the model's family and the preset (ImageTab.values_from).
            Field("speed", controls["speed"], default="off", remembered=True),
            Field("cache_method", controls["cache_method"], default=AUTO_METHOD, remembered=True),
            Field("cache_threshold", controls["cache_threshold"], default=None, remembered=True),
            Field("compile", controls["compile"], default="off", remembered=True),
            Field("attention", controls["attention"], default=PRESET_ATTENTION, remembered=True),
            # ControlNets: one picture per control, lists (or one value for all) of types, strengths, starts and ends.
            Field("control_images", controls["control_images"], default=None),
            Field("control_types", controls["control_types"], default=(), remembered=True,
                  from_record=lambda used: list(used.get("control_types") or [])),
            Field("control_strengths", controls["control_strengths"], default="", remembered=True, from_record=numbers("control_strengths")),
            Field("control_starts", controls["control_starts"], default="", remembered=True, from_record=numbers("control_starts")),
            Field("control_ends", controls["control_ends"], default="", remembered=True, from_record=numbers("control_ends")),
            # IP-Adapter: reference pictures and their scale (0: off).
            Field("ip_adapter_images", controls["ip_adapter_images"], default=None),
            Field("ip_adapter_scale", controls["ip_adapter_scale"], default=0.0, remembered=True,
                  from_record=lambda used: used.get("ip_adapter_scale") or 0.0),
            Field("ip_adapter", controls["ip_adapter"], default=MODEL_IP_ADAPTER, remembered=True,
                  from_record=lambda used: used.get("ip_adapter") or MODEL_IP_ADAPTER),
            # Hires fix: results made before it existed had none (1 = off).
            Field("hires_scale", controls["hires_scale"], default=1.0, remembered=True, from_record=lambda used: used.get("hires_scale") or 1.0),
            Field(
                "hires_strength", controls["hires_strength"], default=DEFAULT_HIRES_STRENGTH, remembered=True,
                from_record=lambda used: used.get("hires_strength", DEFAULT_HIRES_STRENGTH),
            ),
        ],
        remembered_order=REMEMBERED_ORDER,
    )


def build(context: AppContext) -> ImageTab:
    catalog = context.store.catalog
    choices, default_model = model_choices(context, Task.TEXT_TO_IMAGE)
    spec = catalog.spec(default_model)
    family = family_spec(spec.family)

    with gr.Row():
        with gr.Column(scale=2):
            model = gr.Dropdown(
                choices=choices, value=default_model, label="Model", elem_id="image-model",
                # Our request check names the accepted models; Gradio's own check would not.
                allow_custom_value=True,
            )
            info = gr.Markdown(model_info(spec), elem_id="image-model-info")
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="A lighthouse on a cliff at dusk, oil painting", elem_id="image-prompt")
            # Under the prompt, where the eye is: the options below run past the fold.
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="image-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="image-stop")
            negative_prompt = gr.Textbox(
                label="Negative prompt", value="", lines=2, interactive=family.supports_negative_prompt, elem_id="image-negative"
            )
            with gr.Row():
                width = gr.Number(label="Width", value=spec.defaults.width, precision=0, step=family.size_multiple, elem_id="image-width")
                height = gr.Number(label="Height", value=spec.defaults.height, precision=0, step=family.size_multiple, elem_id="image-height")
            with gr.Row():
                steps = gr.Number(label="Steps", value=spec.defaults.steps, precision=0, elem_id="image-steps")
                guidance = gr.Number(label="Guidance", value=spec.defaults.guidance, step=0.5, elem_id="image-guidance")
            with gr.Row():
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="image-seed")
                batch = gr.Number(label="Batch count", value=1, precision=0, elem_id="image-batch")
                scheduler = gr.Dropdown(
                    label="Sampler", choices=[c.name for c in family.schedulers], value=spec.defaults.scheduler, elem_id="image-sampler",
                    allow_custom_value=True,
                )
            lora_picker = build_lora_picker(context, model, default_model, "image")
            lora_files, loras = lora_picker.files, lora_picker.text
            weights = gr.Dropdown(
                label="Weights", choices=[(f"Preset's choice ({context.manager.preset.weights})", PRESET_WEIGHTS), *WEIGHT_FORMATS],
                value=PRESET_WEIGHTS, elem_id="image-weights",
                info="fp8/int8 halve the memory of the transformer and big text encoders; NF4 quarters it (NVIDIA GPUs only)",
            )
            speed, cache_method, cache_threshold, compile_blocks, attention = build_speed_controls(
                "image", context.manager.execution_device(), spec.family
            )
            with gr.Accordion("Start from an image (image to image)", open=False):
                init_image = checked_image(gr.Image(label="Start image (optional)", type="filepath", height=200, elem_id="image-init"))
                strength = gr.Slider(
                    0.0, 1.0, value=DEFAULT_STRENGTH, step=0.05, label="Strength: how much to repaint (0 keeps the image)",
                    elem_id="image-strength",
                )
            with gr.Accordion("ControlNet and IP-Adapter", open=False, elem_id="image-controls"):
                gr.Markdown(
                    "**ControlNet**: a picture per control and its type (canny: edges found here; depth: estimated by the "
                    "installed depth model, or the picture is a depth map; pose, tile and the others: the picture as "
                    "given). Strength 0–2, start and end (0–1) of the steps it acts on: one value for all, or one per "
                    "picture, separated by commas. **IP-Adapter**: reference pictures that steer the image like a prompt."
                )
                with gr.Row():
                    control_images = gr.File(label="Control images", file_count="multiple", file_types=["image"], elem_id="image-control-images")
                    control_gallery = gr.Gallery(
                        label="Controls as the ControlNets saw them", height=140, columns=3, interactive=False, elem_id="image-control-gallery",
                    )
                control_types = gr.Dropdown(
                    label="Control types (one per picture, in order)", choices=list(CONTROL_TYPES), multiselect=True,
                    allow_custom_value=True, elem_id="image-control-types",
                )
                with gr.Row():
                    control_strengths = gr.Textbox(label="Strengths (0–2)", value="", placeholder="1.0", elem_id="image-control-strengths")
                    control_starts = gr.Textbox(label="Starts (0–1)", value="", placeholder="0", elem_id="image-control-starts")
                    control_ends = gr.Textbox(label="Ends (0–1)", value="", placeholder="1", elem_id="image-control-ends")
                with gr.Row():
                    ip_adapter_images = gr.File(
                        label="IP-Adapter reference images", file_count="multiple", file_types=["image"], elem_id="image-ip-images",
                    )
                    with gr.Column():
                        ip_adapter_scale = gr.Slider(
                            *IP_SCALE_LIMITS, value=0.0, step=0.05, label="IP-Adapter scale (0 = off)", elem_id="image-ip-scale",
                        )
                        ip_adapter = gr.Dropdown(
                            label="IP-Adapter", choices=[("The model's first", MODEL_IP_ADAPTER), *[(a.name, a.id) for a in IP_ADAPTERS]],
                            value=MODEL_IP_ADAPTER, allow_custom_value=True, elem_id="image-ip-adapter",
                        )
            with gr.Accordion("Hires fix (enlarge, then repaint at a low strength)", open=False):
                hires_scale = gr.Slider(
                    1.0, MAX_HIRES_SCALE, value=1.0, step=0.25, label="Hires scale (1 = off)", elem_id="image-hires-scale",
                )
                hires_strength = gr.Slider(
                    0.0, 1.0, value=DEFAULT_HIRES_STRENGTH, step=0.05, label="Hires strength: how much the enlarged image is repainted",
                    elem_id="image-hires-strength",
                )
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Results", columns=2, height=560, elem_id="image-gallery", format="png")
            result = gr.Markdown(label="Summary", elem_id="image-result")
            with gr.Row():
                reuse = gr.Button("Reuse settings of the selected image", size="sm", elem_id="image-reuse")
                settings_file = gr.File(label="…or drop an Atelier PNG / JSON here", file_types=[".png", ".json"], height=80)
            with gr.Accordion("Upscale the selected image (or the first)", open=False):
                upscale_controls = build_upscale_controls(context, "image")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="image-parameters")
    selected = gr.State(None)

    fields = _field_table(dict(
        prompt=prompt, negative_prompt=negative_prompt, model=model, width=width, height=height, steps=steps, guidance=guidance,
        seed=seed, batch=batch, scheduler=scheduler, init_image=init_image, strength=strength, loras=loras, weights=weights,
        speed=speed, cache_method=cache_method, cache_threshold=cache_threshold, compile=compile_blocks, attention=attention,
        control_images=control_images, control_types=control_types, control_strengths=control_strengths, control_starts=control_starts,
        control_ends=control_ends, ip_adapter_images=ip_adapter_images, ip_adapter_scale=ip_adapter_scale, ip_adapter=ip_adapter,
        hires_scale=hires_scale, hires_strength=hires_strength,
    ))
    queue = TabQueue(context, "image", "Image", fields)

    def generate_image_handler(values: dict, session, progress):
        job = ImageRequest(
            prompt=values["prompt"], model=values["model"], negative_prompt=values["negative_prompt"], width=values["width"],
            height=values["height"], steps=values["steps"], guidance=values["guidance"], seed=values["seed"], batch=values["batch"],
            scheduler=values["scheduler"], init_image=values["init_image"], strength=values["strength"], loras=values["loras"],
            weights=None if values["weights"] == PRESET_WEIGHTS else values["weights"], speed=values["speed"],
            cache_method=None if values["cache_method"] == AUTO_METHOD else values["cache_method"],
            cache_threshold=values["cache_threshold"], compile=values["compile"],
            attention=None if values["attention"] == PRESET_ATTENTION else values["attention"],
            control_images=tuple(values["control_images"] or ()), control_types=values["control_types"] or (),
            control_strengths=values["control_strengths"], control_starts=values["control_starts"], control_ends=values["control_ends"],
            ip_adapter_images=tuple(values["ip_adapter_images"] or ()), ip_adapter_scale=values["ip_adapter_scale"],
            ip_adapter=None if values["ip_adapter"] in (MODEL_IP_ADAPTER, "") else values["ip_adapter"],
            hires_scale=values["hires_scale"], hires_strength=values["hires_strength"],
        ).check(catalog)
        checked = job.request
        lora_note = f" · LoRAs: {', '.join(choice.as_text() for choice in checked.loras)}" if checked.loras else ""
        summary = f"{job.spec.name} · {checked.width}×{checked.height} · {checked.batch} image(s) · {checked.prompt[:60]}{lora_note}"
        outcome = queue.run(
            summary, lambda queued: generate_image(job, context.manager, context.outputs_for(session), queued),
            lambda: ImageResult([], stopped=True), session, progress,
        )
        return _shown(outcome, job.spec.demo, lora_note)

    handler = shown_to_user(fields.handler(generate_image_handler), fields)
    generate.click(handler, inputs=fields.inputs, outputs=[gallery, parameters, result], api_name="generate_image", **GPU_QUEUE)
    prompt.submit(handler, inputs=fields.inputs, outputs=[gallery, parameters, result], api_visibility="private", **GPU_QUEUE)
    queue.remember_on(generate.click, prompt.submit)
    # The prepared control pictures of the last result, beside the control inputs.
    parameters.change(
        lambda used: (used or {}).get("prepared_controls") or None, inputs=[parameters], outputs=[control_gallery], api_visibility="private",
    )

    stop.click(stop_handler(context), outputs=[result], api_name="stop")

    def show_model_controls(model_id):
        chosen = catalog.image_models().get(model_id)
        if chosen is None:
            return [gr.skip()] * 7
        chosen_family = family_spec(chosen.family)
        negative_update = gr.update(interactive=chosen_family.supports_negative_prompt)
        if not chosen_family.supports_negative_prompt:
            negative_update = gr.update(interactive=False, value="")
        scheduler_update = gr.update(choices=[c.name for c in chosen_family.schedulers])
        size_step = gr.update(step=chosen_family.size_multiple)
        lora_update = gr.update(choices=lora_names(context, model_id))
        speed_update = gr.update(info=speed_info(chosen.family))
        return model_info(chosen), negative_update, scheduler_update, size_step, size_step, lora_update, speed_update

    # Any change of model (a click, or "reuse settings") adapts the controls; only a click resets the values.
    model.change(
        show_model_controls, inputs=[model], outputs=[info, negative_prompt, scheduler, width, height, lora_files, speed],
        api_visibility="private",
    )

    def apply_model_defaults(model_id, lora_list):
        chosen = catalog.image_models().get(model_id)
        if chosen is None:
            return [gr.skip()] * 6
        defaults = chosen.defaults
        # LoRAs made for another family would only be refused: keep those that fit the new model.
        kept = fitting_lora_text(context, model_id, lora_list)
        return defaults.width, defaults.height, defaults.steps, defaults.guidance, defaults.scheduler, kept

    model.input(
        apply_model_defaults, inputs=[model, loras], outputs=[width, height, steps, guidance, scheduler, loras],
        api_visibility="private",
    )

    def list_loras(model: str = "") -> list[dict]:
        """The LoRA library: each file's name (as /generate_image takes it) and the family it was made for; with a
        model id, only the LoRAs that fit it."""
        if model and catalog.get(model) is None:
            raise gr.Error(f"model: unknown model {model!r}; /models lists them")
        if model:
            return [{"name": name, "family": catalog.spec(model).family.value} for name in lora_names(context, model)]
        return [{"name": lora.name, "family": lora.family.value if lora.family else None} for lora in context.store.loras.scan()]

    # For scripts. Not a GPU event: it only reads the LoRA folder.
    named_api(list_loras, api_name="loras", returns="LoRAs", concurrency_limit=None)

    def on_select(event: gr.SelectData):
        value = event.value or {}
        image = value.get("image") if isinstance(value, dict) else None
        return image.get("path") if isinstance(image, dict) else None

    gallery.select(on_select, outputs=[selected], api_visibility="private")

    def show_upscaled(outcome):
        if outcome.output is None:
            return gr.skip(), gr.skip(), upscale_summary(outcome)
        path = str(outcome.output.path)
        return [(path, "upscaled")], {"images": [path], "stopped": False, "parameters": [outcome.output.parameters]}, upscale_summary(outcome)

    wire_result_button(context, upscale_controls, "Image", [selected, gallery], [gallery, parameters, result], show_upscaled)

    @shown_to_user
    def size_from_start_image(upload, model_id):
        """The start image's size, to the nearest size the model takes, in the width and height fields. The upload
        comes unprocessed and is checked here: a refused file is a warning that leaves the fields as they were (an
        error would mark them "Error"); Generate refuses it again, naming it."""
        chosen = catalog.image_models().get(model_id)
        if not upload or chosen is None:
            return gr.skip(), gr.skip()
        refused = upload_problem(init_image, upload)
        if refused:
            gr.Warning(refused)
            return gr.skip(), gr.skip()
        return start_image_size(upload["path"], chosen, family_spec(chosen.family))

    init_image.upload(
        size_from_start_image, inputs=[init_image, model], outputs=[width, height], api_visibility="private", preprocess=False,
    )
    tab = ImageTab(context, fields, [init_image, control_images, ip_adapter_images])
    settings_components = tab.settings_components

    @shown_to_user
    def reuse_settings(path):
        if not path:
            raise gr.Error("Select an image in the results first, or drop an Atelier PNG or JSON.")
        return tab.values_from(parameters_from_file(Path(path)), source=Path(path).name)

    @shown_to_user
    def reuse_selected(path, request: gr.Request):
        """A result of this tab's gallery: its settings, and its start image from the copy kept with it."""
        values = reuse_settings(path)
        kept = KeptInputs(context.outputs_for(request))
        inputs = tab.inputs_from(parameters_from_file(Path(path)), kept)
        kept.warn_missing()
        return (*values, *inputs)

    reuse.click(
        reuse_selected, inputs=[selected], outputs=[*settings_components, init_image, control_images, ip_adapter_images], api_name="reuse_selected", api_visibility="private",
    )
    settings_file.upload(reuse_settings, inputs=[settings_file], outputs=settings_components, api_name="reuse_settings")

    return tab


def _shown(outcome: ImageResult, demo: bool, lora_note: str):
    images = [(str(o.path), f"seed {o.parameters['seed']}" + (" · demo" if demo else "")) for o in outcome.outputs]
    summary = f"{len(outcome.outputs)} image(s) in {outcome.seconds:.1f} s · seeds: {', '.join(map(str, outcome.seeds)) or '—'}{lora_note}"
    if outcome.stopped:
        summary = f"Stopped. {summary}"
    for note in (outcome.size_note, outcome.compile_note, outcome.control_note):
        if note:
            summary += f"\n\n{note}"
    if demo:
        summary += "\n\n" + DEMO_NOTE
    used = {
        "images": [str(o.path) for o in outcome.outputs], "stopped": outcome.stopped, "parameters": [o.parameters for o in outcome.outputs],
        # The control pictures as the ControlNets saw them (kept copies).
        "prepared_controls": outcome.prepared_controls,
    }
    return images, used, summary
