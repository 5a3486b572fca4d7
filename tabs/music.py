"""The Music tab: ACE-Step text to music with lyrics, and repaint / extend / cover of an input clip.
Endpoint: /generate_music."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from pipelines.catalog import MODELS_BY_ID, Task
from pipelines.errors import JobStopped
from pipelines.media import AUDIO_FORMATS
from pipelines.music_runner import (
    BPM_RANGE, LIMITS, MUSIC_MODELS, TASKS, TIME_SIGNATURES, MusicRequest, MusicResult, generate_music,
)
from tabs.context import GPU_QUEUE, AppContext, model_choices, owner_of, stop_handler
from tabs.errors import shown_to_user
from tabs.kept_inputs import KeptInputs
from tabs.lora_picker import build_lora_picker, recorded_lora_text
from tabs.saved_settings import restored_values
from tabs.speed import AUTO_METHOD, build_cache_controls, cache_note, speed_values

# The controls remembered between starts and restored by "reuse settings", in this order.
SETTINGS_FIELDS = (
    "model", "task", "tags", "lyrics", "duration", "steps", "guidance", "shift", "seed", "bpm", "key", "time_signature",
    "language", "start", "end", "cover_strength", "audio_format", "loras", "speed", "cache_method", "cache_threshold",
)
DEMO_NOTE = "⚠️ **Demo model with random weights**: the result is noise, not music."
LYRICS_PLACEHOLDER = "[verse]\nCity lights are fading slow\n[chorus]\nCarry me where the rivers go\n[bridge]\n…\n\nLeave empty for an instrumental."
LANGUAGES = [("English", "en"), ("Chinese", "zh"), ("Japanese", "ja"), ("Korean", "ko"), ("Spanish", "es"), ("French", "fr"),
             ("German", "de"), ("Italian", "it"), ("Portuguese", "pt"), ("Russian", "ru"), ("Other / unknown", "unknown")]
KEYS = ["auto"] + [f"{note} {mode}" for mode in ("major", "minor") for note in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")]


def task_controls(task_name: str) -> tuple:
    """Which controls a task shows: the input clip, the range, the cover strength; and what duration means."""
    task = TASKS.get(task_name, TASKS["text2music"])
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
    """What other parts of the UI need from this tab: its settings controls, to fill them from saved parameters."""

    context: AppContext
    settings_components: list
    # The input clip (repaint, extend, cover), which "Reuse settings" fills from the kept copy.
    input_components: list = field(default_factory=list)

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        return (kept.path(used.get("input_audio")),)

    def last_values(self) -> list:
        offered = [model_id for _, model_id in model_choices(self.context, Task.TEXT_TO_MUSIC)[0]]
        return restored_values(self.context.settings, "music", SETTINGS_FIELDS, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        if used.get("model") not in MUSIC_MODELS:
            raise gr.Error(f"{source} was made with a model this app does not know ({used.get('model')!r}).")
        values = {name: used.get(name) for name in SETTINGS_FIELDS}
        values["key"] = values["key"] or "auto"
        values["time_signature"] = f"{values['time_signature']}/4" if values["time_signature"] else "auto"
        values["duration"] = values["duration"] or gr.skip()
        values["end"] = -1 if values["end"] is None else values["end"]
        values["start"] = values["start"] or 0
        values["cover_strength"] = values["cover_strength"] if values["cover_strength"] is not None else 1.0
        values["loras"] = recorded_lora_text(used)
        restored = {name: gr.skip() if value is None else value for name, value in values.items()}
        # An empty threshold is a value here (the level's own), not a field the result lacks.
        restored["speed"], restored["cache_method"], restored["cache_threshold"] = speed_values(used, MUSIC_MODELS[used["model"]].family)
        return tuple(restored.values())


def build(context: AppContext) -> MusicTab:
    choices, default_model = model_choices(context, Task.TEXT_TO_MUSIC)
    defaults = MODELS_BY_ID[default_model].defaults

    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="music-model", allow_custom_value=True)
                # A dropdown that takes other values, so scripts may also say "complete" (= extend) and a wrong name
                # gets our message, which lists the tasks.
                task = gr.Dropdown(
                    choices=[(t.label, t.name) for t in TASKS.values()], value="text2music", label="Task", elem_id="music-task",
                    allow_custom_value=True,
                )
            tags = gr.Textbox(
                label="Style (caption / tags)", lines=2, elem_id="music-tags",
                placeholder="e.g. dreamy synth-pop, female vocals, 80s drum machine, warm analog bass",
            )
            lyrics = gr.Textbox(label="Lyrics, with [verse], [chorus], [bridge]… tags", lines=8, elem_id="music-lyrics", placeholder=LYRICS_PLACEHOLDER)
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
            speed, cache_method, cache_threshold = build_cache_controls("music", MUSIC_MODELS[default_model].family)
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="music-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="music-stop")
        with gr.Column(scale=2):
            audio = gr.Audio(label="Music", type="filepath", interactive=False, elem_id="music-audio")
            summary = gr.Markdown(elem_id="music-result")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="music-parameters")

    def apply_model_defaults(model_id):
        """A model chosen by hand brings its own steps, guidance and shift (turbo 8 steps, base 32 with guidance)."""
        if model_id not in MUSIC_MODELS:
            return [gr.skip()] * 3
        chosen = MUSIC_MODELS[model_id].defaults
        return chosen.steps, chosen.guidance, chosen.shift

    model.input(apply_model_defaults, inputs=[model], outputs=[steps, guidance, shift], api_visibility="private")
    task.change(task_controls, inputs=[task], outputs=[input_audio, start, end, cover_strength, duration], api_visibility="private")

    @shown_to_user
    # Defaults of None make everything but the tags optional for gradio_client; None means the model's default.
    def music_handler(
        tags, lyrics=None, duration=None, steps=None, guidance=None, seed=-1, task="text2music", audio=None, start=None, end=None,
        model=None, bpm=None, key=None, time_signature=None, language="en", shift=None, cover_strength=None, audio_format="wav",
        loras=None, speed=None, cache_method=None, cache_threshold=None, request: gr.Request = None, progress=gr.Progress(),
    ):
        checked = MusicRequest(
            tags=tags, lyrics=lyrics, model=model or default_model, task=task, duration=duration, steps=steps, guidance=guidance,
            shift=shift, seed=seed, audio=audio, start=start, end=end, cover_strength=cover_strength, bpm=bpm, key=key,
            time_signature=time_signature, language=language, audio_format=audio_format, loras=loras, speed=speed or "off",
            cache_method=None if cache_method in (None, AUTO_METHOD) else cache_method, cache_threshold=cache_threshold,
        ).check(context.store.catalog)
        values = (model, task, tags, lyrics, duration, steps, guidance, shift, seed, bpm, key, time_signature, language, start, end,
                  cover_strength, audio_format, loras, checked.request.speed, cache_method or AUTO_METHOD, cache_threshold)
        context.settings.update("music", dict(zip(SETTINGS_FIELDS, values)))
        spec = checked.spec
        job_summary = f"{spec.name} · {checked.task.label}"
        try:
            with context.queue.run(owner_of(request), "Music", job_summary, lambda fraction, desc: progress(fraction, desc=desc)) as job:
                result = generate_music(checked, context.manager, context.outputs, job)
        except JobStopped:
            result = MusicResult(None, stopped=True)
        return _shown(result, spec.demo)

    inputs = [
        tags, lyrics, duration, steps, guidance, seed, task, input_audio, start, end, model, bpm, key, time_signature, language,
        shift, cover_strength, audio_format, loras, speed, cache_method, cache_threshold,
    ]
    generate.click(music_handler, inputs=inputs, outputs=[audio, parameters, summary], api_name="generate_music", **GPU_QUEUE)

    stop.click(stop_handler(context), outputs=[summary], api_visibility="private")
    settings = [model, task, tags, lyrics, duration, steps, guidance, shift, seed, bpm, key, time_signature, language, start, end,
                cover_strength, audio_format, loras, speed, cache_method, cache_threshold]
    return MusicTab(context, settings, [input_audio])


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
