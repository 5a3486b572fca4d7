"""The TTS tab: Fish Speech text to speech, with voice cloning from reference clips. Endpoint: /speak."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from pipelines.catalog import Task
from pipelines.errors import InvalidRequest
from pipelines.audio.speech_runner import LIMITS, PRECISIONS, Reference, SpeechRequest, SpeechResult, speak
from tabs.context import GPU_QUEUE, AppContext, model_choices, stop_handler
from tabs.errors import shown_to_user
from tabs.fields import Field, FieldTable, TabQueue, never
from tabs.kept_inputs import KeptInputs

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


def _first_transcript(used: dict) -> str:
    references = used.get("references") or []
    return references[0].get("transcript", "") if references else ""


@dataclass
class TtsTab:
    """What other parts of the UI need from this tab: its remembered controls, to fill them from saved parameters."""

    context: AppContext
    fields: FieldTable
    # The voice clips and the further clips' transcripts, which "Reuse settings" fills from the kept copies.
    input_components: list = field(default_factory=list)

    @property
    def settings_components(self) -> list:
        return self.fields.remembered_components

    def inputs_from(self, used: dict, kept: KeptInputs) -> tuple:
        references = used.get("references") or []
        first, more = (references[0] if references else None), references[1:]
        return kept.path(first), kept.paths(more), "\n".join(str(reference.get("transcript", "")) for reference in more)

    def last_values(self, in_browser, request: gr.Request) -> list:
        offered = [model_id for _, model_id in model_choices(self.context, Task.TEXT_TO_SPEECH)[0]]
        return self.fields.last_values(in_browser, request, offered)

    def values_from(self, used: dict, source: str) -> tuple:
        if used.get("model") not in self.context.store.catalog.for_task(Task.TEXT_TO_SPEECH):
            raise gr.Error(f"{source} was made with a model this app does not know ({used.get('model')!r}).")
        return self.fields.values_from_record(used)


def build(context: AppContext) -> TtsTab:
    choices, default_model = model_choices(context, Task.TEXT_TO_SPEECH)
    defaults = context.store.catalog.spec(default_model).defaults

    with gr.Row():
        with gr.Column(scale=3):
            model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="tts-model", allow_custom_value=True)
            text = gr.Textbox(
                label="Text", lines=6, elem_id="tts-text",
                placeholder="Type what should be said. Long texts are split at sentence ends and read chunk by chunk.",
            )
            # Under the text, where the eye is: the voice and options below run past the fold.
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="tts-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="tts-stop")
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
        with gr.Column(scale=2):
            audio = gr.Audio(label="Speech", type="filepath", interactive=False, elem_id="tts-audio")
            summary = gr.Markdown(label="Summary", elem_id="tts-result")
            with gr.Accordion("Parameters used", open=False):
                parameters = gr.JSON(label="Parameters", elem_id="tts-parameters")

    # The API's parameters in order; the clips are optional for gradio_client, the other fields default to the
    # model's values. The remembered ones come back at the next start and through Reuse settings.
    fields = FieldTable(
        [
            Field("text", text, remembered=True),
            Field("reference_audio", reference_audio, default=None),
            # Its clip cannot come back with a reloaded page, and a transcript without its clip cannot run.
            Field("reference_text", reference_text, default=None, remembered=True, from_record=_first_transcript, restore_if=never),
            Field("temperature", temperature, default=None, remembered=True),
            Field("top_p", top_p, default=None, remembered=True),
            Field("repetition_penalty", repetition_penalty, default=None, remembered=True),
            Field("max_new_tokens", max_new_tokens, default=None, remembered=True),
            Field("seed", seed, default=-1, remembered=True, from_record=lambda used: used.get("seed", -1)),
            Field("model", model, default=None, remembered=True),
            Field("chunk_length", chunk_length, default=None, remembered=True),
            Field("extra_reference_audio", extra_audio, default=None),
            Field("extra_reference_text", extra_text, default=None),
            Field("compile", compile_step, default=False),
            Field("precision", precision, default="auto"),
        ],
        remembered_order=(
            "model", "text", "reference_text", "temperature", "top_p", "repetition_penalty", "max_new_tokens", "seed", "chunk_length",
        ),
    )
    queue = TabQueue(context, "tts", "TTS", fields)

    def speak_handler(values: dict, session, progress):
        references = references_from(
            values["reference_audio"], values["reference_text"], values["extra_reference_audio"], values["extra_reference_text"]
        )
        job = SpeechRequest(
            text=values["text"], model=values["model"], references=references, temperature=values["temperature"],
            top_p=values["top_p"], repetition_penalty=values["repetition_penalty"], max_new_tokens=values["max_new_tokens"],
            seed=values["seed"], chunk_length=values["chunk_length"], compile=values["compile"], precision=values["precision"],
        ).check(context.store.catalog)
        summary = f"{job.spec.name} · {len(job.request.text)} characters · {len(job.request.references)} reference clip(s)"
        result = queue.run(
            summary, lambda queued: speak(job, context.manager, context.outputs_for(session), queued),
            lambda: SpeechResult(None, stopped=True), session, progress,
        )
        return _shown(result, job.spec.demo)

    generate.click(
        shown_to_user(fields.handler(speak_handler), fields), inputs=fields.inputs, outputs=[audio, parameters, summary], api_name="speak",
        **GPU_QUEUE,
    )
    queue.remember_on(generate.click)

    stop.click(stop_handler(context, "the current frame"), outputs=[summary], api_visibility="private")
    return TtsTab(context, fields, [reference_audio, extra_audio, extra_text])


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
