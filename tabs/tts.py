"""The TTS tab: Fish Speech text to speech, with voice cloning from reference clips. Endpoint: /speak."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from pipelines.catalog import MODELS_BY_ID, Task
from pipelines.errors import InvalidRequest, JobStopped
from pipelines.speech_runner import LIMITS, PRECISIONS, SPEECH_MODELS, Reference, SpeechRequest, SpeechResult, speak
from tabs.context import GPU_QUEUE, AppContext, model_choices, owner_of, stop_handler
from tabs.errors import shown_to_user
from tabs.kept_inputs import KeptInputs
from tabs.saved_settings import restored_values

# The controls remembered between starts and restored by "reuse settings", in this order.
SETTINGS_FIELDS = ("model", "text", "reference_text", "temperature", "top_p", "repetition_penalty", "max_new_tokens", "seed", "chunk_length")
DEMO_NOTE = "⚠️ **Demo model with random weights**: the result is noise, not speech."


def references_from(reference_audio, reference_text, extra_audio, extra_text) -> tuple[Reference, ...]:
    """The main clip and transcript, then any extra clips with one transcript line each, in order."""
    references = []
    if reference_audio or (reference_text or "").strip():
        references.append(Reference(reference_audio or "", reference_text or ""))
    extra_files = [getattr(item, "name", item) for item in (extra_audio or [])]
    transcripts = [line for line in (extra_text or "").splitlines() if line.strip()]
    if len(transcripts) != len(extra_files):
        raise InvalidRequest(
            "extra_reference_text", f"{len(extra_files)} extra clip(s) but {len(transcripts)} transcript line(s); give one line per clip"
        )
    references.extend(Reference(str(path), text) for path, text in zip(extra_files, transcripts))
    return tuple(references)


@dataclass
class TtsTab:
    """What other parts of the UI need from this tab: its settings controls, to fill them from saved parameters."""

    context: AppContext
    settings_components: list
    # The voice clips and the further clips' transcripts, which "Reuse settings" fills from the kept copies.
    input_components: list = field(default_factory=list)

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        references = used.get("references") or []
        first, more = (references[0] if references else None), references[1:]
        return kept.path(first), kept.paths(more), "\n".join(str(reference.get("transcript", "")) for reference in more)

    def last_values(self) -> list:
        offered = [model_id for _, model_id in model_choices(self.context, Task.TEXT_TO_SPEECH)[0]]
        return restored_values(self.context.settings, "tts", SETTINGS_FIELDS, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        if used.get("model") not in SPEECH_MODELS:
            raise gr.Error(f"{source} was made with a model this app does not know ({used.get('model')!r}).")
        transcripts = [reference.get("transcript", "") for reference in used.get("references") or []]
        return (
            used["model"], used.get("text", ""), transcripts[0] if transcripts else "", used.get("temperature"),
            used.get("top_p"), used.get("repetition_penalty"), used.get("max_new_tokens"), used.get("seed", -1),
            used.get("chunk_length"),
        )


def build(context: AppContext) -> TtsTab:
    choices, default_model = model_choices(context, Task.TEXT_TO_SPEECH)
    defaults = MODELS_BY_ID[default_model].defaults

    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="tts-model", allow_custom_value=True)
            text = gr.Textbox(
                label="Text", lines=6, elem_id="tts-text",
                placeholder="Type what should be said. Long texts are split at sentence ends and read chunk by chunk.",
            )
            with gr.Row():
                reference_audio = gr.Audio(label="Voice to clone (10–30 s, optional)", type="filepath", sources=["upload", "microphone"], elem_id="tts-reference")
                reference_text = gr.Textbox(label="What is said in that clip", lines=4, elem_id="tts-reference-text")
            with gr.Accordion("More clips of the same voice", open=False):
                extra_audio = gr.File(label="Clips", file_count="multiple", file_types=["audio"], elem_id="tts-extra")
                extra_text = gr.Textbox(label="Their transcripts, one line per clip, in the same order", lines=3, elem_id="tts-extra-text")
            with gr.Row():
                temperature = gr.Slider(*LIMITS["temperature"], value=defaults.temperature, step=0.01, label="Temperature", elem_id="tts-temperature")
                top_p = gr.Slider(*LIMITS["top_p"], value=defaults.top_p, step=0.01, label="Top-p", elem_id="tts-top-p")
                repetition_penalty = gr.Slider(*LIMITS["repetition_penalty"], value=defaults.repetition_penalty, step=0.01, label="Repetition penalty", elem_id="tts-repetition")
            with gr.Row():
                max_new_tokens = gr.Number(label="Max frames per chunk (≈21.5 per second)", value=defaults.max_new_tokens, precision=0, elem_id="tts-max-tokens")
                chunk_length = gr.Number(label="Characters per chunk", value=defaults.chunk_length, precision=0, elem_id="tts-chunk-length")
                seed = gr.Number(label="Seed (-1 = random)", value=-1, precision=0, elem_id="tts-seed")
            with gr.Row():
                precision = gr.Dropdown(
                    label="Precision", choices=list(PRECISIONS), value="auto", elem_id="tts-precision",
                    info="auto follows the hardware preset (bfloat16 or float16 on a GPU, float32 on the CPU)",
                )
                compile_step = gr.Checkbox(
                    label="Compile the decode step (torch.compile; the first run takes longer, later runs are faster — for GPUs)",
                    value=False, elem_id="tts-compile",
                )
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="tts-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="tts-stop")
        with gr.Column(scale=2):
            audio = gr.Audio(label="Speech", type="filepath", interactive=False, elem_id="tts-audio")
            summary = gr.Markdown(elem_id="tts-result")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="tts-parameters")

    @shown_to_user
    # Defaults of None make the clips optional for gradio_client; the other fields default to the controls' values.
    def speak_handler(
        text, reference_audio=None, reference_text=None, temperature=None, top_p=None, repetition_penalty=None,
        max_new_tokens=None, seed=-1, model=None, chunk_length=None, extra_reference_audio=None, extra_reference_text=None,
        compile=False, precision="auto", request: gr.Request = None, progress=gr.Progress(),
    ):
        checked = SpeechRequest(
            text=text, model=model, references=references_from(reference_audio, reference_text, extra_reference_audio, extra_reference_text),
            temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
            seed=seed, chunk_length=chunk_length, compile=compile, precision=precision,
        ).check()
        values = (model, text, reference_text, temperature, top_p, repetition_penalty, max_new_tokens, seed, chunk_length)
        context.settings.update("tts", dict(zip(SETTINGS_FIELDS, values)))
        spec = SPEECH_MODELS[checked.model]
        job_summary = f"{spec.name} · {len(checked.text)} characters · {len(checked.references)} reference clip(s)"
        try:
            with context.queue.run(owner_of(request), "TTS", job_summary, lambda fraction, desc: progress(fraction, desc=desc)) as job:
                result = speak(checked, context.manager, context.outputs, job)
        except JobStopped:
            result = SpeechResult(None, stopped=True)
        return _shown(result, spec.demo)

    inputs = [
        text, reference_audio, reference_text, temperature, top_p, repetition_penalty, max_new_tokens, seed, model,
        chunk_length, extra_audio, extra_text, compile_step, precision,
    ]
    generate.click(speak_handler, inputs=inputs, outputs=[audio, parameters, summary], api_name="speak", **GPU_QUEUE)

    stop.click(stop_handler(context, "the current frame"), outputs=[summary], api_visibility="private")
    return TtsTab(
        context, [model, text, reference_text, temperature, top_p, repetition_penalty, max_new_tokens, seed, chunk_length],
        [reference_audio, extra_audio, extra_text],
    )


def _shown(result: SpeechResult, demo: bool):
    if result.output is None:
        return None, {"audio": None, "stopped": result.stopped, "parameters": None}, "Stopped before any speech was made."
    used = result.output.parameters
    summary = (
        f"{result.audio_seconds:.1f} s of speech in {result.seconds:.1f} s "
        f"({result.audio_seconds / max(result.seconds, 1e-6):.2f}× real time) · {used['chunks']} chunk(s) · seed {used['seed']}"
    )
    if result.stopped:
        summary = f"Stopped; the finished chunks are kept. {summary}"
    if demo:
        summary += "\n\n" + DEMO_NOTE
    return str(result.output.path), {"audio": str(result.output.path), "stopped": result.stopped, "parameters": used}, summary
