"""The Music tab: ACE-Step text to music with lyrics, and repaint / extend / cover of an input clip.
Endpoint: /generate_music."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from pipelines.catalog import Catalog, Task
from pipelines.media import AUDIO_FORMATS
from pipelines.audio.music_runner import BPM_RANGE, LIMITS, TASK_ALIASES, TASKS, TIME_SIGNATURES, MusicRequest, MusicResult, generate_music
from tabs.context import GPU_QUEUE, AppContext, model_choices, stop_handler
from tabs.errors import shown_to_user
from tabs.fields import Field, FieldTable, TabQueue
from tabs.kept_inputs import KeptInputs
from tabs.lora_picker import build_lora_picker, recorded_lora_text
from tabs.speed import AUTO_METHOD, build_cache_controls, cache_note, speed_values

# The controls remembered between starts and restored by "reuse settings", in this order (the order of
# /reuse_settings' outputs, which scripts rely on).
SETTINGS_FIELDS = (
    "model", "task", "tags", "lyrics", "duration", "steps", "guidance", "shift", "seed", "bpm", "key", "time_signature",
    "language", "start", "end", "cover_strength", "audio_format", "loras", "speed", "cache_method", "cache_threshold",
)
DEMO_NOTE = "⚠️ **Demo model with random weights**: the result is noise, not music."
LYRICS_PLACEHOLDER = "[verse]\nCity lights are fading slow\n[chorus]\nCarry me where the rivers go\n[bridge]\n…\n\nLeave empty for an instrumental."
LANGUAGES = [("English", "en"), ("Chinese", "zh"), ("Japanese", "ja"), ("Korean", "ko"), ("Spanish", "es"), ("French", "fr"),
             ("German", "de"), ("Italian", "it"), ("Portuguese", "pt"), ("Russian", "ru"), ("Other / unknown", "unknown")]
# The tasks, and "complete", the name ACE-Step's own scripts give Extend (the docs list both).
TASK_CHOICES = [(t.label, t.name) for t in TASKS.values()] + [("Complete (= Extend)", "complete")]
KEYS = ["auto"] + [f"{note} {mode}" for mode in ("major", "minor") for note in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")]


def _as_recorded(name: str):
    """A result's value as it was recorded; one it lacks leaves its control as it is."""
    return lambda used: gr.skip() if used.get(name) is None else used[name]


def _time_signature(used: dict) -> str:
    return f"{used['time_signature']}/4" if used.get("time_signature") else "auto"


def _speed_value(catalog: Catalog, index: int):
    """The Speed level (0), cache method (1) or threshold (2) to restore for the result's model: an empty threshold
    is a value here (the level's own), not a field the result lacks."""
    return lambda used: speed_values(used, catalog.spec(used["model"]).family)[index]


def _runs_without_clip(task_name) -> bool:
    return task_name in TASKS and not TASKS[task_name].needs_audio


def task_controls(task_name: str) -> tuple:
    """Which controls a task shows: the input clip, the range, the cover strength; and what duration means."""
    task = TASKS.get(TASK_ALIASES.get(task_name, task_name), TASKS["text2music"])
    duration_label = {"length": "Duration (seconds)", "added": "Seconds to add after the clip", "": "Duration"}
    return (
        gr.update(visible=task.needs_audio),
        gr.update(visible=task.uses_range),
        gr.update(visible=task.uses_range),
        gr.update(visible=task.name == "cover"),
        # Repaint and cover keep the clip's length.
        gr.update(label=duration_label[task.duration_meaning], visible=bool(task.duration_meaning)),
    )


@dataclass
class MusicTab:
    """What other parts of the UI need from this tab: its remembered controls, to fill them from saved parameters."""

    context: AppContext
    fields: FieldTable
    # The input clip (repaint, extend, cover), which "Reuse settings" fills from the kept copy.
    input_components: list = field(default_factory=list)

    @property
    def settings_components(self) -> list:
        return self.fields.remembered_components

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        return (kept.path(used.get("input_audio")),)

    def last_values(self, in_browser, request: gr.Request) -> list:
        offered = [model_id for _, model_id in model_choices(self.context, Task.TEXT_TO_MUSIC)[0]]
        return self.fields.last_values(in_browser, request, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        if used.get("model") not in self.context.store.catalog.for_task(Task.TEXT_TO_MUSIC):
            raise gr.Error(f"{source} was made with a model this app does not know ({used.get('model')!r}).")
        return self.fields.values_from_record(used)


def build(context: AppContext) -> MusicTab:
    catalog = context.store.catalog
    choices, default_model = model_choices(context, Task.TEXT_TO_MUSIC)
    defaults = catalog.spec(default_model).defaults

    with gr.Row():
        with gr.Column(scale=3):
            # A row of its own: wide enough for the whole name ("ACE-Step 1.5 XL Turbo — downloads 9.9 GB on first use").
            model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="music-model", allow_custom_value=True)
            # A dropdown that takes other values, so a wrong name gets our message, which lists the tasks.
            task = gr.Dropdown(choices=TASK_CHOICES, value="text2music", label="Task", elem_id="music-task", allow_custom_value=True)
            tags = gr.Textbox(
                label="Style (caption / tags)", lines=2, elem_id="music-tags",
                placeholder="e.g. dreamy synth-pop, female vocals, 80s drum machine, warm analog bass",
            )
            lyrics = gr.Textbox(label="Lyrics, with [verse], [chorus], [bridge]… tags", lines=8, elem_id="music-lyrics", placeholder=LYRICS_PLACEHOLDER)
            # Under the words, where the eye is: the clip, length and options below run past the fold.
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="music-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="music-stop")
            input_audio = gr.Audio(label="Input clip", type="filepath", sources=["upload", "microphone"], visible=False, elem_id="music-input")
            with gr.Row():
                start = gr.Number(label="Repaint from (s)", value=0, visible=False, elem_id="music-start")
                end = gr.Number(label="Repaint to (s, -1 = end of clip)", value=-1, visible=False, elem_id="music-end")
                cover_strength = gr.Slider(
                    *LIMITS["cover_strength"], value=1.0, step=0.05, label="Cover strength (lower: further from the clip)",
                    visible=False, elem_id="music-cover-strength",
                )
            duration = gr.Slider(*LIMITS["duration"], value=defaults.duration, step=0.5, label="Duration (seconds)", elem_id="music-duration")
            with gr.Row():
                bpm = gr.Number(label=f"BPM ({BPM_RANGE[0]}–{BPM_RANGE[1]}, 0 = auto)", value=None, precision=0, elem_id="music-bpm")
                key = gr.Dropdown(choices=KEYS, value="auto", label="Key", allow_custom_value=True, elem_id="music-key")
                time_signature = gr.Dropdown(
                    choices=["auto"] + [f"{beats}/4" for beats in TIME_SIGNATURES], value="auto", label="Time signature",
                    elem_id="music-time-signature", allow_custom_value=True,
                )
                language = gr.Dropdown(choices=LANGUAGES, value="en", label="Language of the lyrics", elem_id="music-language", allow_custom_value=True)
            with gr.Row():
                steps = gr.Slider(*LIMITS["steps"], value=defaults.steps, step=1, label="Steps", elem_id="music-steps")
                guidance = gr.Slider(
                    *LIMITS["guidance"], value=defaults.guidance, step=0.1, label="Guidance (turbo models ignore it)", elem_id="music-guidance",
                )
                shift = gr.Slider(*LIMITS["shift"], value=defaults.shift, step=0.1, label="Shift", elem_id="music-shift")
            with gr.Row():
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="music-seed")
                audio_format = gr.Dropdown(choices=list(AUDIO_FORMATS), value="wav", label="File format", elem_id="music-format", allow_custom_value=True)
            loras = build_lora_picker(context, model, default_model, "music").text
            speed, cache_method, cache_threshold = build_cache_controls("music", catalog.spec(default_model).family)
        with gr.Column(scale=2):
            audio = gr.Audio(label="Music", type="filepath", interactive=False, elem_id="music-audio")
            summary = gr.Markdown(label="Summary", elem_id="music-result")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="music-parameters")

    def apply_model_defaults(model_id):
        """A model chosen by hand brings its own steps, guidance and shift (turbo 8 steps, base 32 with guidance)."""
        chosen = catalog.for_task(Task.TEXT_TO_MUSIC).get(model_id)
        if chosen is None:
            return [gr.skip()] * 3
        return chosen.defaults.steps, chosen.defaults.guidance, chosen.defaults.shift

    model.input(apply_model_defaults, inputs=[model], outputs=[steps, guidance, shift], api_visibility="private")
    task.change(task_controls, inputs=[task], outputs=[input_audio, start, end, cover_strength, duration], api_visibility="private")

    # The API's parameters in order; everything but the tags is optional for gradio_client, and None means the
    # model's default. All but the input clip come back at the next start and through Reuse settings.
    fields = FieldTable(
        [
            Field("tags", tags, remembered=True, from_record=_as_recorded("tags")),
            Field("lyrics", lyrics, default=None, remembered=True, from_record=_as_recorded("lyrics")),
            Field("duration", duration, default=None, remembered=True, from_record=lambda used: used.get("duration") or gr.skip()),
            Field("steps", steps, default=None, remembered=True, from_record=_as_recorded("steps")),
            Field("guidance", guidance, default=None, remembered=True, from_record=_as_recorded("guidance")),
            Field("seed", seed, default=-1, remembered=True, from_record=_as_recorded("seed")),
            # A task that works on a clip comes back only through Reuse settings, which brings the clip too.
            Field("task", task, default="text2music", remembered=True, from_record=_as_recorded("task"), restore_if=_runs_without_clip),
            Field("audio", input_audio, default=None),
            Field("start", start, default=None, remembered=True, from_record=lambda used: used.get("start") or 0),
            Field("end", end, default=None, remembered=True, from_record=lambda used: -1 if used.get("end") is None else used["end"]),
            Field("model", model, default=None, remembered=True, from_record=_as_recorded("model")),
            Field("bpm", bpm, default=None, remembered=True, from_record=_as_recorded("bpm")),
            Field("key", key, default=None, remembered=True, from_record=lambda used: used.get("key") or "auto"),
            Field("time_signature", time_signature, default=None, remembered=True, from_record=_time_signature),
            Field("language", language, default="en", remembered=True, from_record=_as_recorded("language")),
            Field("shift", shift, default=None, remembered=True, from_record=_as_recorded("shift")),
            Field(
                "cover_strength", cover_strength, default=None, remembered=True,
                from_record=lambda used: 1.0 if used.get("cover_strength") is None else used["cover_strength"],
            ),
            Field("audio_format", audio_format, default="wav", remembered=True, from_record=_as_recorded("audio_format")),
            Field("loras", loras, default=None, remembered=True, from_record=recorded_lora_text),
            Field("speed", speed, default=None, remembered=True, from_record=_speed_value(catalog, 0)),
            Field("cache_method", cache_method, default=None, remembered=True, from_record=_speed_value(catalog, 1)),
            Field("cache_threshold", cache_threshold, default=None, remembered=True, from_record=_speed_value(catalog, 2)),
        ],
        remembered_order=SETTINGS_FIELDS,
    )
    queue = TabQueue(context, "music", "Music", fields)

    def music_handler(values: dict, session, progress):
        job = MusicRequest(
            tags=values["tags"], lyrics=values["lyrics"], model=values["model"] or default_model, task=values["task"],
            duration=values["duration"], steps=values["steps"], guidance=values["guidance"], shift=values["shift"],
            seed=values["seed"], audio=values["audio"], start=values["start"], end=values["end"],
            cover_strength=values["cover_strength"], bpm=values["bpm"], key=values["key"], time_signature=values["time_signature"],
            language=values["language"], audio_format=values["audio_format"], loras=values["loras"], speed=values["speed"] or "off",
            cache_method=None if values["cache_method"] in (None, AUTO_METHOD) else values["cache_method"],
            cache_threshold=values["cache_threshold"],
        ).check(catalog)
        result = queue.run(
            f"{job.spec.name} · {job.task.label}", lambda queued: generate_music(job, context.manager, context.outputs_for(session), queued),
            lambda: MusicResult(None, stopped=True), session, progress,
        )
        return _shown(result, job.spec.demo)

    generate.click(
        shown_to_user(fields.handler(music_handler), fields), inputs=fields.inputs, outputs=[audio, parameters, summary],
        api_name="generate_music", **GPU_QUEUE,
    )
    queue.remember_on(generate.click)

    stop.click(stop_handler(context), outputs=[summary], api_visibility="private")
    return MusicTab(context, fields, [input_audio])


def _shown(result: MusicResult, demo: bool):
    if result.output is None:
        return None, {"audio": None, "stopped": result.stopped, "parameters": None}, "Stopped before any music was made."
    used = result.output.parameters
    summary = (
        f"{result.audio_seconds:.1f} s of music in {result.seconds:.1f} s · {TASKS[used['task']].label} · "
        f"seed {used['seed']} · {used['audio_format'].upper()}"
    )
    if used.get("loras"):
        summary += " · LoRAs: " + ", ".join(f"{lora['file']}:{lora['weight']:g}" for lora in used["loras"])
    for note in (*result.notes, cache_note(used)):
        if note:
            summary += "\n\n" + note
    if demo:
        summary += "\n\n" + DEMO_NOTE
    return str(result.output.path), {"audio": str(result.output.path), "stopped": result.stopped, "parameters": used}, summary
