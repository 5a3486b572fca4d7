"""The Edit tab: change an image by instruction (OmniGen, up to three input images), repaint a masked area (inpaint)
or grow the canvas and fill the new area (outpaint) with FLUX.1 Fill or SD3, follow the edges or the depth of a picture
(FLUX.1 Canny, Depth) or vary it (FLUX.1 Redux). Endpoint: /edit_image."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from pipelines.image import control_images
from pipelines.catalog import Catalog, EditDefaults, family_spec
from pipelines.image.edit_modes import EDIT_MODES, PLACEHOLDER, SIDES, EditMode, MaskSource, check_mode_inputs, edit_models
from pipelines.image.edit_runner import LIMITS, EditJob, EditRequest, EditResult, edit_image
from pipelines.image.flux_tools_runner import ToolJob, ToolRequest, ToolResult, preview_control, run_flux_tool
from tabs.context import GPU_QUEUE, AppContext, choices_among, stop_handler
from tabs.errors import shown_to_user
from tabs.uploads import checked_image
from tabs.fields import Field, FieldTable, TabQueue
from tabs.kept_inputs import KeptInputs
from tabs.speed import AUTO_METHOD, build_cache_controls, cache_note, speed_info, speed_values

# The controls remembered between starts, in the order of /reuse_settings' outputs (EditTab.settings_components).
REMEMBERED_ORDER = (
    "mode", "model", "instruction", "steps", "guidance", "image_guidance", "seed", "width", "height",
    "outpaint_left", "outpaint_right", "outpaint_top", "outpaint_bottom", "feather", "keep_unmasked", "canny_low", "canny_high",
    "speed", "cache_method", "cache_threshold", "strength",
)
INPUT_SLOTS = 3
DEMO_NOTE = "⚠️ **Demo model with random weights**: the result is noise, not what a real model would make."


def mode_choices(context: AppContext, mode_name: str) -> tuple[list[tuple[str, str]], str]:
    allowed = edit_models(mode_name, context.store.catalog)
    return choices_among(context, lambda spec: spec.id in allowed)


def _every_edit_model(context: AppContext) -> list[tuple[str, str]]:
    """The models of every mode, each once, in the modes' order."""
    every: dict[str, str] = {}
    for name in EDIT_MODES:
        for label, model_id in mode_choices(context, name)[0]:
            every.setdefault(model_id, label)
    return [(label, model_id) for model_id, label in every.items()]


def model_info(catalog: Catalog, model_id: str, mode_name: str) -> str:
    spec = edit_models(mode_name, catalog).get(model_id)
    if spec is None:
        return ""
    if spec.demo:
        return DEMO_NOTE
    return f"**{spec.name}** · {spec.weight_bytes / 1e9:.1f} GB · {spec.licence}"


def mode_controls(mode_name: str) -> list:
    """What a mode shows: input slots 2 and 3 with their insert buttons, the size, the mask painter and upload,
    the outpaint sides, the mask options (feather, keep, strength), and the FLUX.1 tools' control picture, Canny thresholds and depth map."""
    mode = EDIT_MODES.get(mode_name, EDIT_MODES["instruction"])
    slots = [gr.update(visible=index < mode.max_images) for index in range(1, INPUT_SLOTS)]
    masked = mode.mask is not MaskSource.NONE
    return [
        *slots, *slots,
        gr.update(visible=mode.takes_size), gr.update(visible=mode.takes_size),
        gr.update(visible=mode.mask is MaskSource.GIVEN), gr.update(visible=mode.mask is MaskSource.GIVEN),
        *[gr.update(visible=mode.mask is MaskSource.CANVAS)] * len(SIDES),
        gr.update(visible=masked), gr.update(visible=masked), gr.update(visible=masked),
        gr.update(visible=bool(mode.control)),
        *[gr.update(visible=mode.control == "canny")] * 2,
        gr.update(visible=mode.control == "depth"),
    ]


@dataclass
class EditTab:
    """What other parts of the UI need from this tab: its remembered controls (to fill them from saved parameters) and
    its first input slot (where the Outputs tab sends an image)."""

    context: AppContext
    fields: FieldTable
    first_image: gr.Image
    # Images 1–3, the uploaded mask and the depth map, which "Reuse settings" fills from the kept copies.
    input_components: list = field(default_factory=list)

    @property
    def settings_components(self) -> list:
        return self.fields.remembered_components

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        tool_inputs = used.get("inputs") or {}
        images = list(used.get("images") or [tool_inputs.get("image")])[:INPUT_SLOTS]
        images += [None] * (INPUT_SLOTS - len(images))
        return (*map(kept.path, images), kept.path(used.get("mask")), kept.path(tool_inputs.get("depth_map")))

    def last_values(self, in_browser, request: gr.Request) -> list:
        offered = [model_id for name in EDIT_MODES for _, model_id in mode_choices(self.context, name)[0]]
        return self.fields.last_values(in_browser, request, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        mode = used.get("mode")
        models = edit_models(mode, self.context.store.catalog) if mode in EDIT_MODES else {}
        if used.get("model") not in models:
            raise gr.Error(f"{source} was made with a mode or model this app does not know ({mode!r}, {used.get('model')!r}).")
        values = dict(zip(self.fields.remembered_names, self.fields.values_from_record(used)))
        # The size recorded is the one made; in fill modes it follows the image, so the fields go back to 0 (automatic).
        if not EDIT_MODES[mode].takes_size:
            values["width"] = values["height"] = 0
        values["speed"], values["cache_method"], values["cache_threshold"] = speed_values(used, models[used["model"]].family)
        if used.get("strength") is None:
            values["strength"] = gr.skip()
        return tuple(values.values())


def _kept_unless_recorded(name: str):
    """A field the result does not record (a FLUX.1 tool has no outpaint sides) keeps its control's value."""
    return lambda used: used.get(name, gr.skip())


# /edit_image's parameters after the instruction, with what a script that leaves one out gets (None: the model's default).
OPTIONAL_PARAMETERS = dict(
    images=None, mask=None, model=None, steps=None, guidance=None, seed=-1, mode="instruction", image_guidance=None,
    width=None, height=None, outpaint_left=0, outpaint_right=0, outpaint_top=0, outpaint_bottom=0, feather=0,
    keep_unmasked=True, canny_low=None, canny_high=None, depth_map=None, speed=None, cache_method=None, cache_threshold=None,
    strength=None,
)


def field_table(controls: dict) -> FieldTable:
    """/edit_image's parameters in order, the instruction the only one required. `controls` holds each field's control
    by name (the API's own file inputs for images and mask); a field without one is None."""
    instruction = Field("instruction", controls.get("instruction"), remembered=True, from_record=_kept_unless_recorded("instruction"))
    optional = [
        Field(name, controls.get(name), default=default, remembered=name in REMEMBERED_ORDER, from_record=_kept_unless_recorded(name))
        for name, default in OPTIONAL_PARAMETERS.items()
    ]
    return FieldTable([instruction, *optional], remembered_order=REMEMBERED_ORDER)


def _tool_job(mode: EditMode, model: str, values: dict, catalog: Catalog) -> ToolJob:
    """A FLUX.1 tool's job from /edit_image's values: what every mode takes, then the tool's own values (the
    instruction is its prompt, Image 1 its picture)."""
    sides = {side: values[f"outpaint_{side}"] for side in SIDES}
    inputs = check_mode_inputs(mode, model, catalog, values["images"], values["instruction"], values["mask"], sides)
    return ToolRequest(
        model=inputs.spec.id, image=inputs.images[0] if inputs.images else None, prompt=inputs.instruction,
        width=values["width"], height=values["height"], steps=values["steps"], guidance=values["guidance"], seed=values["seed"],
        canny_low=values["canny_low"], canny_high=values["canny_high"], depth_map=values["depth_map"] or None,
        speed=values["speed"], cache_method=values["cache_method"], cache_threshold=values["cache_threshold"],
    ).check(catalog)


def _edit_job(model: str, values: dict, catalog: Catalog, preset) -> EditJob:
    return EditRequest(
        instruction=values["instruction"], model=model, mode=values["mode"], images=tuple(values["images"] or ()),
        mask=values["mask"], steps=values["steps"], guidance=values["guidance"], image_guidance=values["image_guidance"],
        seed=values["seed"], width=values["width"], height=values["height"], outpaint_left=values["outpaint_left"],
        outpaint_right=values["outpaint_right"], outpaint_top=values["outpaint_top"], outpaint_bottom=values["outpaint_bottom"],
        feather=values["feather"], keep_unmasked=values["keep_unmasked"], canny_low=values["canny_low"],
        canny_high=values["canny_high"], depth_map=values["depth_map"], speed=values["speed"],
        cache_method=values["cache_method"], cache_threshold=values["cache_threshold"], strength=values["strength"],
    ).check(catalog, preset)


def build(context: AppContext) -> EditTab:
    catalog = context.store.catalog
    first_mode = "instruction"
    choices, default_model = mode_choices(context, first_mode)
    first_spec = edit_models(first_mode, catalog)[default_model]
    defaults = first_spec.defaults

    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                mode = gr.Radio(
                    choices=[(m.label, m.name) for m in EDIT_MODES.values()], value=first_mode, label="Mode", elem_id="edit-mode",
                )
                model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="edit-model", allow_custom_value=True)
            info = gr.Markdown(model_info(catalog, default_model, first_mode), elem_id="edit-model-info")
            instruction = gr.Textbox(
                label="Instruction", lines=3, elem_id="edit-instruction",
                placeholder="Make the sky stormy in <img><|image_1|></img>   ·   Put the person from <img><|image_1|></img> "
                "into <img><|image_2|></img>   ·   for Inpaint/Outpaint: what to paint (may stay empty)",
            )
            # Beside the instruction, where the eye is, above the inputs and options.
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="edit-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="edit-stop")
            with gr.Row():
                slots, inserts = [], []
                for number in range(1, INPUT_SLOTS + 1):
                    with gr.Column(min_width=160):
                        slots.append(checked_image(gr.Image(label=f"Image {number}", type="filepath", height=180, elem_id=f"edit-image-{number}")))
                        inserts.append(gr.Button(f"Insert image {number} in the instruction", size="sm", elem_id=f"edit-insert-{number}"))
                # The FLUX.1 tools: the depth map to follow, and the picture the model follows, beside Image 1.
                with gr.Column(min_width=160, visible=False) as depth_column:
                    depth_map = checked_image(gr.Image(
                        label="Depth map (near = bright; empty: estimated from Image 1 by an installed depth model)",
                        type="filepath", height=180, elem_id="edit-depth-map",
                    ))
                with gr.Column(min_width=160, visible=False) as preview_column:
                    control_preview = gr.Image(
                        label="What the model follows", type="pil", height=180, interactive=False, elem_id="edit-control-preview",
                    )
            painter = checked_image(gr.ImageEditor(
                label="Paint the area to repaint (the picture is Image 1)", type="filepath", layers=False, visible=False,
                sources=["upload"], brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"), elem_id="edit-painter",
            ))
            mask_file = checked_image(gr.Image(
                label="…or upload a mask (white = repaint, the image's size)", type="filepath", height=160, visible=False,
                elem_id="edit-mask",
            ), slot_name="Mask")
            with gr.Row():
                sides = {
                    side: gr.Number(label=f"Extend {side} (px)", value=0, precision=0, visible=False, elem_id=f"edit-outpaint-{side}")
                    for side in SIDES
                }
            with gr.Row():
                feather = gr.Slider(*LIMITS["feather"], value=0, step=1, label="Feather the mask edge (px)", visible=False, elem_id="edit-feather")
                keep = gr.Checkbox(value=True, label="Keep unmasked pixels exactly", visible=False, elem_id="edit-keep")
                strength = gr.Slider(
                    *LIMITS["strength"], value=1.0, step=0.05, visible=False, elem_id="edit-strength",
                    label="Strength (1: paint the area anew; lower keeps more of what is there)",
                )
            with gr.Row():
                canny_low = gr.Slider(
                    *control_images.CANNY_LIMITS, value=control_images.DEFAULT_CANNY_LOW, step=1, visible=False,
                    label="Canny low threshold (continues an edge)", elem_id="edit-canny-low",
                )
                canny_high = gr.Slider(
                    *control_images.CANNY_LIMITS, value=control_images.DEFAULT_CANNY_HIGH, step=1, visible=False,
                    label="Canny high threshold (starts an edge)", elem_id="edit-canny-high",
                )
            with gr.Row():
                width = gr.Number(label="Width (0: Image 1's)", value=0, precision=0, step=16, elem_id="edit-width")
                height = gr.Number(label="Height (0: Image 1's)", value=0, precision=0, step=16, elem_id="edit-height")
            with gr.Row():
                steps = gr.Number(label="Steps", value=defaults.steps, precision=0, elem_id="edit-steps")
                guidance = gr.Number(label="Guidance", value=defaults.guidance, step=0.5, elem_id="edit-guidance")
                image_guidance = gr.Number(label="Image guidance", value=defaults.image_guidance, step=0.1, elem_id="edit-image-guidance")
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="edit-seed")
            speed, cache_method, cache_threshold = build_cache_controls("edit", first_spec.family)
        with gr.Column(scale=2):
            result = gr.Image(label="Result", type="filepath", format="png", interactive=False, elem_id="edit-result")
            note = gr.Markdown(label="Note", elem_id="edit-note")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="edit-parameters")
    # For scripts: the input images as a list of files and the mask as a file (the page uses the slots and painter).
    api_images = gr.File(file_count="multiple", label="Images", visible=False)
    api_mask = gr.File(label="Mask", visible=False)
    # The page lists the models of the chosen mode; a script may name any edit model (empty: the mode's default).
    api_model = gr.Dropdown(choices=_every_edit_model(context), value=None, label="Model", visible=False, allow_custom_value=True)
    api_trigger = gr.Button(visible=False)

    for number, insert in enumerate(inserts, start=1):
        insert.click(
            lambda text, _number=number: f"{(text or '').rstrip()} {PLACEHOLDER.format(_number)}".lstrip(),
            inputs=[instruction], outputs=[instruction], api_visibility="private",
        )
    # The picture to paint on is Image 1.
    slots[0].change(
        lambda path: {"background": path, "layers": [], "composite": path} if path else None,
        inputs=[slots[0]], outputs=[painter], api_visibility="private",
    )

    fields = field_table(dict(
        instruction=instruction, images=api_images, mask=api_mask, model=model, steps=steps, guidance=guidance, seed=seed, mode=mode,
        image_guidance=image_guidance, width=width, height=height, **{f"outpaint_{side}": sides[side] for side in SIDES},
        feather=feather, keep_unmasked=keep, canny_low=canny_low, canny_high=canny_high, depth_map=depth_map, speed=speed,
        cache_method=cache_method, cache_threshold=cache_threshold, strength=strength,
    ))
    queue = TabQueue(context, "edit", "Edit", fields)

    def edit_image_body(values: dict, session, progress):
        """The FLUX.1 tools' modes go to their runner, the others to the edit runner; each job is checked once."""
        mode_name = values["mode"] or "instruction"
        model = values["model"]
        if model is None and mode_name in EDIT_MODES:
            model = mode_choices(context, mode_name)[1]
        # The page's number fields cannot be empty: 0 there, like None from a script, means "Image 1's size".
        given = {
            **values, "mode": mode_name, "width": values["width"] or None, "height": values["height"] or None,
            "speed": values["speed"] or "off",
            "cache_method": None if values["cache_method"] in (None, AUTO_METHOD) else values["cache_method"],
        }
        chosen = EDIT_MODES.get(mode_name)
        if chosen is not None and chosen.flux_tool:
            job = _tool_job(chosen, model, given, catalog)
            instruction_used, notes = job.request.prompt, (job.note,) if job.note else ()
            work = lambda queued: run_flux_tool(job, context.manager, context.outputs_for(session), queued)
            stopped = lambda: ToolResult(None, stopped=True)
        else:
            job = _edit_job(model, given, catalog, context.manager.preset)
            instruction_used, notes = job.request.instruction, None
            work = lambda queued: edit_image(job, context.manager, context.outputs_for(session), queued)
            stopped = lambda: EditResult(None, stopped=True)
        summary = f"{job.spec.name} · {EDIT_MODES[mode_name].label} · {instruction_used[:60]}"
        outcome = queue.run(summary, work, stopped, session, progress)
        return _shown(outcome.output, outcome.seconds, outcome.notes if notes is None else notes, job.spec.demo)

    edit_image_handler = shown_to_user(fields.handler(edit_image_body), fields, offered=tuple(_every_edit_model(context)))

    @shown_to_user
    def edit_from_page(
        mode, model, instruction, image_1, image_2, image_3, painted, uploaded_mask, steps, guidance, image_guidance, seed, width,
        height, outpaint_left, outpaint_right, outpaint_top, outpaint_bottom, feather, keep_unmasked, canny_low, canny_high,
        depth_map, speed, cache_method, cache_threshold, strength, request: gr.Request = None, progress=gr.Progress(),
    ):
        """The page's inputs as /edit_image takes them: the filled slots (Image 1 alone in the fill modes) and the mask
        uploaded or else painted."""
        chosen = EDIT_MODES.get(mode, EDIT_MODES["instruction"])
        images = [path for path in (image_1, image_2, image_3)[: chosen.max_images] if path]
        if chosen.mask is not MaskSource.NONE and not images and painted and painted.get("background"):
            images = [painted["background"]]
        mask = None
        if chosen.mask is MaskSource.GIVEN:
            layers = (painted or {}).get("layers") or []
            mask = uploaded_mask or (layers[0] if layers else None)
        if not chosen.takes_size:
            width = height = None
        return edit_image_handler(
            instruction, images, mask, model, steps, guidance, seed, mode, image_guidance, width, height, outpaint_left,
            outpaint_right, outpaint_top, outpaint_bottom, feather, keep_unmasked, canny_low, canny_high,
            depth_map if chosen.control == "depth" else None, speed, cache_method, cache_threshold,
            strength, request=request, progress=progress,
        )

    numbers = [steps, guidance, image_guidance, seed, width, height, *sides.values(), feather, keep, canny_low, canny_high]
    generate.click(
        edit_from_page,
        inputs=[mode, model, instruction, *slots, painter, mask_file, *numbers, depth_map, speed, cache_method, cache_threshold, strength],
        outputs=[result, parameters, note], api_visibility="private", **GPU_QUEUE,
    )
    api_inputs = [api_model if component is model else component for component in fields.inputs]
    api_trigger.click(edit_image_handler, inputs=api_inputs, outputs=[result, parameters, note], api_name="edit_image", **GPU_QUEUE)
    queue.remember_on(generate.click)
    stop.click(stop_handler(context), outputs=[note], api_visibility="private")

    def apply_model_defaults(model_id, mode_name):
        """A model chosen by hand brings its own steps and guidance (FLUX Fill's 30, OmniGen's 2.5 and 1.6)."""
        spec = edit_models(mode_name, catalog).get(model_id)
        if spec is None:
            return [gr.skip()] * 3
        chosen = spec.defaults
        return chosen.steps, chosen.guidance, chosen.image_guidance if isinstance(chosen, EditDefaults) else gr.skip()

    model.input(apply_model_defaults, inputs=[model, mode], outputs=[steps, guidance, image_guidance], api_visibility="private")

    def show_mode(mode_name, model_id):
        """The mode's controls and its models. The chosen model stays when the mode offers it (a restored pair stays);
        otherwise the mode's default model comes with its steps and guidance."""
        mode_models, mode_default = mode_choices(context, mode_name)
        if model_id in {value for _, value in mode_models}:
            return [gr.update(choices=mode_models), gr.skip(), gr.skip(), gr.skip(), *mode_controls(mode_name)]
        defaults = apply_model_defaults(mode_default, mode_name)
        return [gr.update(choices=mode_models, value=mode_default), *defaults, *mode_controls(mode_name)]

    mode.change(
        show_mode, inputs=[mode, model],
        outputs=[model, steps, guidance, image_guidance, *slots[1:], *inserts[1:], width, height, painter, mask_file,
                 *sides.values(), feather, keep, strength, preview_column, canny_low, canny_high, depth_column],
        api_visibility="private",
    )

    def show_control(mode_name, image, low, high, depth):
        """The edges (or the supplied depth map) beside the input, redrawn as the input or the thresholds change."""
        return preview_control(EDIT_MODES.get(mode_name, EDIT_MODES["instruction"]).control, image, low, high, depth)

    for trigger in (mode.change, slots[0].change, canny_low.release, canny_high.release, depth_map.change):
        trigger(show_control, inputs=[mode, slots[0], canny_low, canny_high, depth_map], outputs=[control_preview], api_visibility="private")

    def show_model(model_id, mode_name):
        spec = edit_models(mode_name, catalog).get(model_id)
        if spec is None:
            return gr.skip(), gr.skip(), gr.skip()
        return (
            model_info(catalog, model_id, mode_name), gr.update(visible=family_spec(spec.family).instruction is not None),
            gr.update(info=speed_info(spec.family)),
        )

    model.change(show_model, inputs=[model, mode], outputs=[info, image_guidance, speed], api_visibility="private")

    return EditTab(context, fields, slots[0], [*slots, mask_file, depth_map])


def _shown(output, seconds: float, notes, demo: bool):
    """What either runner made (the saved output, or None after a Stop), with the notes of its job."""
    if output is None:
        return None, {"image": None, "stopped": True, "parameters": None}, "Stopped before the image was finished."
    used = output.parameters
    summary = f"{used['width']}×{used['height']} in {seconds:.1f} s · seed {used['seed']}"
    for line in (*notes, cache_note(used)):
        if line:
            summary += "\n\n" + line
    if demo:
        summary += "\n\n" + DEMO_NOTE
    return str(output.path), {"image": str(output.path), "stopped": False, "parameters": used}, summary
