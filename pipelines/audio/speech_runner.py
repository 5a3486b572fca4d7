"""Text to speech with Fish Speech: one request in, one saved WAV out.

    1. the checked job (`SpeechRequest.check` makes it once)   2. read the reference clips   3. load (manager.use)
    4. encode the references to codes   5. for each chunk of the text: generate its codes (Stop and progress
    per frame), the previous chunk kept in the prompt so the voice stays the same   6. decode   7. save
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from pipelines.catalog import Catalog, ModelSpec, SpeechDefaults, Task
from pipelines.errors import InvalidRequest, JobStopped, UnknownModel
from pipelines.networks.fish_speech.generation import SamplingSettings, build_prompt, codes_from, generate
from pipelines.networks.fish_speech.model import FishSpeech
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.media import MediaError, audio_duration, read_audio, unreadable_audio
from pipelines.outputs import OutputStore, SavedOutput
from pipelines.request_values import checked_prompt, checked_seed, checked_text, in_range, resolved_seed

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 20_000
MAX_TRANSCRIPT_CHARS = 2_000
MAX_REFERENCES = 4
# Fish Speech clones a voice from 10–30 s; longer clips only lengthen every prompt.
MIN_REFERENCE_SECONDS = 0.5
MAX_REFERENCE_SECONDS = 90.0
PRECISIONS = ("auto", "bfloat16", "float16", "float32")
LIMITS = {
    "temperature": (0.01, 2.0),
    "top_p": (0.01, 1.0),
    "repetition_penalty": (0.5, 2.0),
    "max_new_tokens": (16, 8192),
    "chunk_length": (20, 2000),
}
# Where a sentence ends, in the scripts Fish Speech reads; the split keeps the mark with its sentence.
SENTENCE_END = re.compile(r"(?<=[.!?…。！？；;])\s+|(?<=[。！？])|\n+")
CLAUSE_END = re.compile(r"(?<=[,，、:：])\s*|\s+")


@dataclass(frozen=True)
class Reference:
    """A clip of the voice to clone and what is said in it."""

    audio: str
    transcript: str


@dataclass(frozen=True)
class SpeechRequest:
    """Inputs as a person or a script gave them; `None` means the model's default."""

    text: str
    model: str
    references: tuple[Reference, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    seed: int = -1
    chunk_length: int | None = None
    # torch.compile the per-frame decode step: compiled once per process and kept for later jobs.
    compile: bool = False
    # "auto" follows the hardware preset; otherwise the model runs (is reloaded) in this dtype.
    precision: str = "auto"

    def check(self, catalog: Catalog) -> "SpeechJob":
        """The job this request asks for, every value filled in and in range; InvalidRequest names the first bad field."""
        models = catalog.for_task(Task.TEXT_TO_SPEECH)
        spec = models.get(self.model)
        if spec is None:
            raise UnknownModel(self.model, "a speech model", models)
        text = checked_prompt(self.text, "text", "type what should be said", MAX_TEXT_CHARS)
        if len(self.references) > MAX_REFERENCES:
            raise InvalidRequest("reference_audio", f"{len(self.references)} clips given; at most {MAX_REFERENCES} are used")
        references = tuple(_checked_reference(reference) for reference in self.references)
        defaults: SpeechDefaults = spec.defaults
        values = {name: in_range(name, getattr(self, name), getattr(defaults, name), LIMITS[name]) for name in LIMITS}
        seed = checked_seed(self.seed)
        precision = self.precision or "auto"
        if precision not in PRECISIONS:
            raise InvalidRequest("precision", f"{precision!r} is not offered; choose one of {', '.join(PRECISIONS)}")
        request = replace(self, text=text, references=references, seed=seed, compile=bool(self.compile), precision=precision, **values)
        return SpeechJob(request, spec, resolved_seed(seed), tuple(split_text(text, request.chunk_length)))


@dataclass(frozen=True)
class SpeechJob:
    """A checked request: its values as they will run, the model's entry, the seed drawn for -1 and the text's chunks."""

    request: SpeechRequest
    spec: ModelSpec
    seed: int
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class SpeechResult:
    output: SavedOutput | None
    stopped: bool = False
    seconds: float = 0.0
    audio_seconds: float = 0.0
    chunks: list[str] = field(default_factory=list)


def _checked_reference(reference: Reference) -> Reference:
    transcript = checked_text("reference_text", reference.transcript, MAX_TRANSCRIPT_CHARS)
    if not reference.audio:
        raise InvalidRequest("reference_audio", "a transcript was given without its audio clip")
    if not transcript:
        raise InvalidRequest(
            "reference_text", f"the reference clip {Path(reference.audio).name} needs its transcript (what is said in it)"
        )
    _check_stated_length(Path(reference.audio))
    return Reference(str(reference.audio), transcript)


def _check_stated_length(path: Path) -> None:
    """A clip is refused from its header when it cannot be opened or states more than MAX_REFERENCE_SECONDS, before
    the job waits in the queue (it is decoded when the job runs)."""
    try:
        stated = audio_duration(path)
    except (MediaError, OSError) as error:
        raise InvalidRequest("reference_audio", unreadable_audio(path.name, error)) from None
    if stated is not None and stated > MAX_REFERENCE_SECONDS + 0.5:
        raise InvalidRequest("reference_audio", f"{path.name} is longer than {MAX_REFERENCE_SECONDS:g} s; use a clip of 10 to 30 s")


def split_text(text: str, chunk_length: int) -> list[str]:
    """Chunks of at most about `chunk_length` characters that end where sentences end; a sentence longer
    than that is cut at clause marks or spaces, never inside a word unless the word alone is too long."""
    sentences = [piece.strip() for piece in SENTENCE_END.split(text) if piece and piece.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        pieces.extend(_cut(sentence, chunk_length) if len(sentence) > chunk_length else [sentence])
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= chunk_length:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks


def _cut(sentence: str, chunk_length: int) -> list[str]:
    parts: list[str] = []
    for word in (w for w in CLAUSE_END.split(sentence) if w):
        if parts and len(parts[-1]) + 1 + len(word) <= chunk_length:
            parts[-1] += " " + word
        else:
            parts.extend(word[i : i + chunk_length] for i in range(0, len(word), chunk_length))
    return parts


def _reference_codes(model: FishSpeech, clips: list[tuple[Reference, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    encoded = []
    for reference, samples in clips:
        audio = samples.to(model.device, model.dtype)[None, None]
        codes, lengths = model.codec.encode(audio, torch.tensor([audio.shape[-1]], device=model.device))
        encoded.append((reference.transcript, codes[0, :, : int(lengths[0])].cpu()))
    return encoded


def _read_reference(reference: Reference, sample_rate: int) -> torch.Tensor:
    name = Path(reference.audio).name
    try:
        samples = read_audio(Path(reference.audio), sample_rate, MAX_REFERENCE_SECONDS)
    except (MediaError, OSError) as error:  # OSError: the upload vanished or cannot be opened
        raise InvalidRequest("reference_audio", unreadable_audio(name, error)) from None
    seconds = len(samples) / sample_rate
    if seconds > MAX_REFERENCE_SECONDS:
        raise InvalidRequest("reference_audio", f"{name} is longer than {MAX_REFERENCE_SECONDS:g} s; use a clip of 10 to 30 s")
    if seconds < MIN_REFERENCE_SECONDS:
        raise InvalidRequest("reference_audio", f"{name} is {seconds:.2f} s long; use a clip of 10 to 30 s")
    return torch.from_numpy(samples)


def speak(job: SpeechJob, manager: ModelManager, outputs: OutputStore, queued: QueuedJob) -> SpeechResult:
    # 1. The job was checked when it was made.
    request, spec, seed, chunks = job.request, job.spec, job.seed, list(job.chunks)
    settings = SamplingSettings(request.temperature, request.top_p, request.repetition_penalty)
    started = time.monotonic()
    queued.report(0.0, f"Loading {spec.name}")

    dtype = None if request.precision == "auto" else request.precision
    with manager.use(spec.id, on_progress=queued.report, dtype=dtype) as model:
        # 2-4. References: decoded at the codec's rate, encoded to the codes the prompt carries.
        clips = [(reference, _read_reference(reference, model.sample_rate)) for reference in request.references]
        references = _reference_codes(model, clips)

        # 5. One chunk at a time; the last chunk rides along as an extra reference so the voice holds.
        generator = torch.Generator(model.device).manual_seed(seed)
        chunk_codes: list[torch.Tensor] = []
        stopped = False
        for index, chunk in enumerate(chunks):
            previous = [(chunks[index - 1], chunk_codes[-1])] if chunk_codes else []
            prompt = build_prompt(model.tokenizer, chunk, references + previous, model.dual_ar.config.num_codebooks)

            def on_token(frames: int, _index=index) -> None:
                queued.check_stop()
                if frames % 8 == 0:
                    fraction = (_index + min(frames / request.max_new_tokens, 1.0)) / len(chunks)
                    queued.report(fraction, f"Chunk {_index + 1}/{len(chunks)} · {frames / model.frames_per_second:.1f} s of speech")

            try:
                sequence = generate(
                    model.dual_ar, prompt.to(model.device), request.max_new_tokens, settings,
                    model.tokenizer.im_end_id, generator=generator, on_token=on_token, compile=request.compile,
                )
            except JobStopped:
                stopped = True
                break
            chunk_codes.append(codes_from(sequence, prompt.shape[1]).cpu())

        if not chunk_codes:
            return SpeechResult(None, stopped=stopped, seconds=time.monotonic() - started)
        # 6. Decode all chunks in one pass, so their joins are as smooth as within a chunk.
        queued.report(0.99, "Decoding audio")
        codes = torch.cat(chunk_codes, dim=1)
        waveform, lengths = model.codec.decode(codes[None].to(model.device), torch.tensor([codes.shape[1]], device=model.device))
        samples = waveform[0, 0, : int(lengths[0])].float().cpu().numpy()
        sample_rate, device, dtype_used = model.sample_rate, str(model.device), str(model.dtype).removeprefix("torch.")

    # 7. Save with everything needed to reproduce it.
    audio_seconds = len(samples) / sample_rate
    seconds = time.monotonic() - started
    parameters = {
        "model": spec.id,
        "model_name": spec.name,
        "repo": spec.repo,
        "demo": spec.demo,
        "text": request.text,
        "spoken_text": " ".join(chunks[: len(chunk_codes)]),
        "references": [
            {**outputs.keep_input(r.audio), "transcript": r.transcript} for r in request.references
        ],
        **{name: getattr(request, name) for name in LIMITS},
        "seed": seed,
        "compile": request.compile,
        "chunks": len(chunk_codes),
        "stopped": stopped,
        "sample_rate": sample_rate,
        "audio_seconds": round(audio_seconds, 3),
        "preset": manager.preset.id,
        "device": device,
        "precision": request.precision,
        "dtype": dtype_used,
        "seconds": round(seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    output = outputs.save_audio(samples, sample_rate, parameters)
    queued.report(1.0, "Done")
    return SpeechResult(output, stopped=stopped, seconds=seconds, audio_seconds=audio_seconds, chunks=chunks[: len(chunk_codes)])

