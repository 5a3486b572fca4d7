"""Music with ACE-Step: one checked job in, one saved audio file out.

    1. the checked job (`MusicRequest.check` makes it once: the input clip of repaint, extend and cover is read
       and the time range checked against it there, before anything loads)   2. load (manager.use)
    3. denoise from our own starting noise, with Stop and progress per step
    4. splice: outside a repainted range, and before an extension, the input clip itself comes back
    5. save (WAV, FLAC or MP3) with the parameters

The pipeline is asked for whole latent frames (1920 samples at 48 kHz) and the result is trimmed to the
length asked for: the input clip's length for repaint and cover, the clip plus the extension for extend.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from pipelines.catalog import Catalog, ModelSpec, MusicDefaults, Task
from pipelines.errors import InvalidRequest, JobStopped, UnknownModel
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.lora_library import parse_lora_list
from pipelines.manager import ModelManager
from pipelines.media import AUDIO_FORMATS, MediaError, audio_duration, read_audio, unreadable_audio
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, SavedOutput, run_record
from pipelines.request_values import (
    MAX_GUIDANCE, MAX_STEPS, checked_guidance, checked_prompt, checked_seed, checked_text, checked_steps, in_range, number, resolved_seed,
    whole_number,
)
from pipelines.speed.step_cache import check_speed, step_cache

# Every ACE-Step 1.5 VAE works at 48 kHz stereo; an input clip is read at this rate when the request is checked,
# so a bad range is refused without loading anything.
SAMPLE_RATE = 48_000
CHANNELS = 2
SAMPLES_PER_FRAME = 1920  # the VAE's hop: 25 latent frames per second
MAX_TAGS_CHARS = 2_000
# The pipeline reads at most 2048 lyric tokens; about 3 characters per token in English.
MAX_LYRICS_CHARS = 6_000
# ACE-Step 1.5 makes up to 10 minutes in one pass.
MAX_SECONDS = 600.0
MIN_SECONDS = 1.0
MIN_RANGE_SECONDS = 0.5
# Where a repainted range meets the untouched clip, the two are crossfaded inside the range.
CROSSFADE_SECONDS = 0.05
LIMITS = {
    "duration": (MIN_SECONDS, MAX_SECONDS),
    "steps": (1, MAX_STEPS),
    "guidance": (0.0, MAX_GUIDANCE),
    "shift": (1.0, 5.0),
    "cover_strength": (0.0, 1.0),
}
BPM_RANGE = (30, 300)
TIME_SIGNATURES = ("2", "3", "4", "6")
KEY = re.compile(r"^([A-G])([#b♯♭]?)\s*(major|minor)$", re.IGNORECASE)
LANGUAGE = re.compile(r"^[a-z]{2,3}$|^unknown$")


@dataclass(frozen=True)
class MusicTask:
    """What a task needs from the person and what the pipeline is asked to do."""

    name: str
    label: str
    needs_audio: bool
    uses_range: bool
    # What `duration` means for the task: the length made, the length added, or nothing (the clip's length).
    duration_meaning: str


TASKS = {
    "text2music": MusicTask("text2music", "Text to music", needs_audio=False, uses_range=False, duration_meaning="length"),
    "repaint": MusicTask("repaint", "Repaint a time range", needs_audio=True, uses_range=True, duration_meaning=""),
    "extend": MusicTask("extend", "Extend (continue the clip)", needs_audio=True, uses_range=False, duration_meaning="added"),
    "cover": MusicTask("cover", "Cover (restyle the clip)", needs_audio=True, uses_range=False, duration_meaning=""),
}
# Names people and scripts also use for the same tasks.
TASK_ALIASES = {"text_to_music": "text2music", "text-to-music": "text2music", "complete": "extend", "continue": "extend"}


@dataclass(frozen=True)
class MusicRequest:
    """Inputs as a person or a script gave them; `None` means the model's default."""

    tags: str
    model: str
    lyrics: str = ""
    task: str = "text2music"
    duration: float | None = None
    steps: int | None = None
    guidance: float | None = None
    shift: float | None = None
    seed: int = -1
    # The input clip (repaint, extend, cover) and the repainted range in seconds; end None or -1: to the end.
    audio: str | None = None
    start: float | None = None
    end: float | None = None
    cover_strength: float | None = None
    bpm: int | None = None
    key: str | None = None
    time_signature: str | None = None
    language: str = "en"
    audio_format: str = "wav"
    # LoRAs from the library with their weights: "name:weight" entries (a string or a list), or LoraChoices.
    loras: str | tuple = ()
    # Speed: "off", "balanced" or "fast" (the step cache from the catalog); `cache_method` and `cache_threshold`
    # override the level's choice.
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None

    def check(self, catalog: Catalog) -> "MusicJob":
        """The job this request asks for: every value filled in and in range, the input clip read (once, here) and
        the repainted range checked against it; InvalidRequest names the first bad field."""
        request, spec = self._normalised(catalog)
        task = TASKS[request.task]
        clip = read_clip(request.audio) if task.needs_audio else None
        start = end = None
        notes = []
        if task.uses_range:
            start, end = check_range(request.start, request.end, clip)
            if request.end == -1:
                notes.append(f"Repainted from {start:g} s to the end of the clip ({end:.2f} s).")
        length = _length(task, request.duration, clip)
        return MusicJob(request, spec, task, resolved_seed(request.seed), clip, start, end, length, tuple(notes))

    def _normalised(self, catalog: Catalog) -> tuple["MusicRequest", ModelSpec]:
        """A copy with defaults filled in, and the model's entry; the range waits for the clip (`check_range`)."""
        models = catalog.for_task(Task.TEXT_TO_MUSIC)
        spec = models.get(self.model)
        if spec is None:
            raise UnknownModel(self.model, "a music model", models)
        defaults: MusicDefaults = spec.defaults
        tags = checked_prompt(self.tags, "tags", "describe the music: genre, instruments, mood, voice", MAX_TAGS_CHARS)
        lyrics = checked_text("lyrics", self.lyrics, MAX_LYRICS_CHARS)
        task_name = TASK_ALIASES.get(str(self.task or "text2music").strip().lower(), str(self.task or "text2music").strip().lower())
        task = TASKS.get(task_name)
        if task is None:
            raise InvalidRequest("task", f"{self.task!r} is not offered; choose one of {', '.join(TASKS)}")
        if task.needs_audio and not self.audio:
            raise InvalidRequest("audio", f"the {task_name} task needs an input clip; upload the audio to {task_name}")
        duration = in_range("duration", self.duration, defaults.duration, LIMITS["duration"]) if task.duration_meaning else None
        steps = checked_steps(self.steps, defaults.steps)
        guidance = checked_guidance(self.guidance, defaults.guidance)
        shift = in_range("shift", self.shift, defaults.shift, LIMITS["shift"])
        cover_strength = in_range("cover_strength", self.cover_strength, 1.0, LIMITS["cover_strength"])
        seed = checked_seed(self.seed)
        start = number("start", self.start, 0.0) if task.uses_range else None
        end = number("end", self.end, -1.0) if task.uses_range else None
        if start is not None and start < 0:
            raise InvalidRequest("start", f"{start:g} s is before the clip starts; use 0 or more")
        audio_format = (self.audio_format or "wav").strip().lower().lstrip(".")
        if audio_format not in AUDIO_FORMATS:
            raise InvalidRequest("audio_format", f"{self.audio_format!r} is not offered; choose one of {', '.join(AUDIO_FORMATS)}")
        cache_method, cache_threshold = check_speed(spec.family, self.speed, self.cache_method, self.cache_threshold)
        request = replace(
            self, tags=tags, lyrics=lyrics, task=task_name, duration=duration, steps=steps, guidance=guidance, shift=shift,
            cover_strength=cover_strength, seed=seed, start=start, end=end, audio=str(self.audio) if task.needs_audio else None,
            bpm=_bpm(self.bpm), key=_key(self.key), time_signature=_time_signature(self.time_signature),
            language=_language(self.language), audio_format=audio_format, loras=parse_lora_list(self.loras),
            speed=self.speed or "off", cache_method=cache_method, cache_threshold=cache_threshold,
        )
        return request, spec


@dataclass(frozen=True)
class InputClip:
    samples: np.ndarray  # (samples, channels) float32 at SAMPLE_RATE, read-only

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class MusicJob:
    """A checked request: its values as they will run, the model's entry, the task, the seed drawn for -1, the input
    clip as read (repaint, extend, cover), the repainted range with its end resolved against the clip, the length to
    make and the notes for the summary."""

    request: MusicRequest
    spec: ModelSpec
    task: MusicTask
    seed: int
    clip: InputClip | None
    # The repainted range in seconds (repaint only).
    start: float | None
    end: float | None
    # Samples at SAMPLE_RATE: the new music, the clip plus its extension, or the clip's length.
    length: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MusicResult:
    output: SavedOutput | None
    stopped: bool = False
    seconds: float = 0.0
    audio_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _bpm(value) -> int | None:
    if value in (None, "", 0):
        return None  # the model picks the tempo
    bpm = whole_number("bpm", value, 0)
    if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
        raise InvalidRequest("bpm", f"{bpm} is out of range; use {BPM_RANGE[0]} to {BPM_RANGE[1]}, or 0 to let the model choose")
    return bpm


def _key(value) -> str | None:
    text = str(value or "").strip()
    if not text or text.lower() == "auto":
        return None
    match = KEY.match(text)
    if match is None:
        raise InvalidRequest("key", f"{text!r} is not a key; write it like 'C major', 'F# minor' or 'Bb major'")
    note, accidental, mode = match.groups()
    accidental = {"♯": "#", "♭": "b"}.get(accidental, accidental)
    return f"{note.upper()}{accidental} {mode.lower()}"


def _time_signature(value) -> str | None:
    text = str(value or "").strip()
    if not text or text.lower() == "auto":
        return None
    beats = text.split("/")[0].strip()
    if beats not in TIME_SIGNATURES:
        raise InvalidRequest("time_signature", f"{text!r} is not offered; choose beats per bar: {', '.join(t + '/4' for t in TIME_SIGNATURES)}")
    return beats


def _language(value) -> str:
    text = str(value or "en").strip().lower()
    if not LANGUAGE.match(text):
        raise InvalidRequest("language", f"{value!r} is not a language code; use one like 'en', 'zh', 'ja' or 'es'")
    return text


def read_clip(path: str) -> InputClip:
    """The clip at SAMPLE_RATE; its length is read from the header first, so an hour-long file is refused before
    ten minutes of it are decoded (230 MB of samples, twice that while they are copied)."""
    name = Path(path).name
    try:
        stated = audio_duration(Path(path))
        if stated is not None and stated > MAX_SECONDS + 0.5:
            raise InvalidRequest("audio", f"{name} is {stated / 60:.1f} minutes long; at most {MAX_SECONDS / 60:g} minutes are read; trim it first")
        samples = read_audio(Path(path), SAMPLE_RATE, MAX_SECONDS, channels=CHANNELS)
    except (MediaError, OSError) as error:  # OSError: the upload vanished or cannot be opened
        raise InvalidRequest("audio", unreadable_audio(name, error)) from None
    seconds = len(samples) / SAMPLE_RATE
    if seconds > MAX_SECONDS:
        raise InvalidRequest("audio", f"{name} is longer than {MAX_SECONDS:g} s; trim it first")
    if seconds < MIN_SECONDS:
        raise InvalidRequest("audio", f"{name} is {seconds:.2f} s long; give at least {MIN_SECONDS:g} s of audio")
    # The job that carries the clip is frozen; so are its samples.
    samples.setflags(write=False)
    return InputClip(samples)


def check_range(start: float, end: float, clip: InputClip) -> tuple[float, float]:
    """The repainted range in seconds; `end` -1 means the end of the clip."""
    length = clip.seconds
    end = length if end == -1 else end
    if start >= length:
        raise InvalidRequest("start", f"{start:g} s is past the end of the clip ({length:.2f} s)")
    if end > length + 1 / SAMPLE_RATE:
        raise InvalidRequest("end", f"{end:g} s is past the end of the clip ({length:.2f} s); use at most {length:.2f}, or -1 for the end")
    if end - start < MIN_RANGE_SECONDS:
        raise InvalidRequest("end", f"the range {start:g}–{end:g} s is too short; repaint at least {MIN_RANGE_SECONDS:g} s, with end after start")
    return start, min(end, length)


def _length(task: MusicTask, duration: float | None, clip: InputClip | None) -> int:
    """The samples to make: `duration` of new music, the clip and `duration` more (extend), or the clip's length."""
    if clip is None:
        return round(duration * SAMPLE_RATE)
    if task.name != "extend":
        return len(clip.samples)
    length = len(clip.samples) + round(duration * SAMPLE_RATE)
    if length > MAX_SECONDS * SAMPLE_RATE:
        raise InvalidRequest("duration", f"the clip ({clip.seconds:.1f} s) plus {duration:g} s is longer than {MAX_SECONDS:g} s")
    return length


def music_workload(frames: int, guidance: float) -> Workload:
    """The DiT sees one token per two latent frames (its patch size); guidance runs a batch of two."""
    return Workload(tokens=math.ceil(frames / 2), batch=2 if guidance > 1.0 else 1)


def _padded(samples: np.ndarray, length: int) -> torch.Tensor:
    """[channels, length] for the pipeline: the clip followed by silence."""
    padded = np.zeros((length, CHANNELS), dtype=np.float32)
    padded[: len(samples)] = samples
    return torch.from_numpy(padded.T.copy())


def _matched_gain(generated: np.ndarray, original: np.ndarray, keep: np.ndarray) -> float:
    """The pipeline normalises its whole output to -1 dBFS; the gain that brings its rendering of the kept part
    back to the clip's level, so a repainted range sits at the loudness of what surrounds it."""
    if not keep.any():
        return 1.0
    generated_rms = float(np.sqrt(np.mean(generated[keep] ** 2)))
    original_rms = float(np.sqrt(np.mean(original[keep] ** 2)))
    if generated_rms < 1e-6 or original_rms < 1e-6:
        return 1.0
    return float(np.clip(original_rms / generated_rms, 0.1, 10.0))


def splice(original: np.ndarray, generated: np.ndarray, start: int, end: int) -> np.ndarray:
    """`original` with [start, end) taken from `generated` (same length), crossfaded over the range's first and
    last CROSSFADE_SECONDS — inside the range, so every sample outside it is the original's."""
    keep = np.ones(len(original), dtype=bool)
    keep[start:end] = False
    gain = _matched_gain(generated, original, keep)
    result = original.copy()
    fade = min(int(CROSSFADE_SECONDS * SAMPLE_RATE), (end - start) // 2)
    weight = np.ones(end - start, dtype=np.float32)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade + 2, dtype=np.float32)[1:-1]
        weight[:fade] = ramp
        # A range that runs to the end of the clip has nothing to fade back into.
        if end < len(original):
            weight[-fade:] = ramp[::-1]
    weight = weight[:, None]
    result[start:end] = (1 - weight) * original[start:end] + weight * gain * generated[start:end]
    return np.clip(result, -1.0, 1.0)


def _render(pipe, job: MusicJob, queued: QueuedJob) -> np.ndarray:
    """The pipeline's music for the job, (samples, channels) at SAMPLE_RATE, trimmed to the job's length."""
    request, task, clip = job.request, job.task, job.clip
    # Whole latent frames covering the length, and our own noise of that many frames: diffusers 0.42.1 sizes its
    # noise as ceil(duration × 25), which float error bumps one frame too far for some lengths (2.2 s → 56), and
    # the DiT then refuses. Half a frame short of `frames` rounds up to exactly `frames`.
    if pipe.sample_rate != SAMPLE_RATE:
        raise InvalidRequest("model", f"{job.spec.name} works at {pipe.sample_rate} Hz; Atelier's music tab expects {SAMPLE_RATE} Hz")
    samples_per_frame = round(pipe.sample_rate / pipe.latents_per_second)
    frames = math.ceil(job.length / samples_per_frame)
    noise = randn_tensor(
        (1, frames, pipe.transformer.config.audio_acoustic_hidden_dim),
        generator=torch.Generator("cpu").manual_seed(job.seed), dtype=pipe.transformer.dtype,
    )

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        queued.check_stop()
        queued.report((step + 1) / request.steps, f"{task.label} · step {step + 1}/{request.steps}")
        return callback_kwargs

    kwargs = dict(
        prompt=request.tags, lyrics=request.lyrics, audio_duration=(frames - 0.5) / pipe.latents_per_second,
        vocal_language=request.language, num_inference_steps=request.steps, guidance_scale=request.guidance,
        shift=request.shift, latents=noise, bpm=request.bpm, keyscale=request.key, timesignature=request.time_signature,
        callback_on_step_end=on_step_end,
    )
    if clip is not None:
        kwargs["src_audio"] = _padded(clip.samples, frames * samples_per_frame)
    if task.name == "repaint":
        kwargs.update(task_type="repaint", repainting_start=job.start, repainting_end=job.end)
    elif task.name == "extend":
        kwargs.update(task_type="repaint", repainting_start=clip.seconds, repainting_end=-1)
    elif task.name == "cover":
        kwargs.update(task_type="cover", audio_cover_strength=request.cover_strength)
    # The VAE samples the input clip's latents from the global generator.
    torch.manual_seed(job.seed)
    audio = pipe(**kwargs).audios[0]
    return audio.float().cpu().numpy().T[: job.length]


def _spliced(job: MusicJob, generated: np.ndarray) -> np.ndarray:
    """The music to save: outside a repainted range, and before an extension, the input clip as it was."""
    clip = job.clip
    if job.task.name == "repaint":
        return splice(clip.samples, generated, round(job.start * SAMPLE_RATE), round(job.end * SAMPLE_RATE))
    if job.task.name == "extend":
        extended = np.concatenate([clip.samples, np.zeros((job.length - len(clip.samples), CHANNELS), np.float32)])
        return splice(extended, generated, len(clip.samples), job.length)
    return generated


def generate_music(job: MusicJob, manager: ModelManager, outputs: OutputStore, queued: QueuedJob) -> MusicResult:
    # 1. The job was checked, and its input clip read, when it was made.
    request, spec = job.request, job.spec
    loras = manager.store.loras.resolve(request.loras, spec)
    started = time.monotonic()
    queued.report(0.0, f"Loading {spec.name}")
    workload = music_workload(math.ceil(job.length / SAMPLES_PER_FRAME), request.guidance)

    # 2-3. Load, then denoise from our own noise.
    def use_and_render() -> tuple[np.ndarray, dict]:
        with (
            manager.use(spec.id, workload, on_progress=queued.report, loras=loras) as pipe,
            step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache,
        ):
            queued.check_stop()
            return _render(pipe, job, queued), cache.record()

    try:
        generated, cache_record = with_one_retry(queued, use_and_render)
    except JobStopped:
        return MusicResult(None, stopped=True, seconds=time.monotonic() - started)

    # 4. Untouched parts of the input come back as they were.
    samples = _spliced(job, generated)

    # 5. Save with everything needed to reproduce it.
    audio_seconds = len(samples) / SAMPLE_RATE
    seconds = time.monotonic() - started
    clip = job.clip
    parameters = {
        "model": spec.id,
        "model_name": spec.name,
        "repo": spec.repo,
        "demo": spec.demo,
        "task": job.task.name,
        "tags": request.tags,
        "lyrics": request.lyrics,
        "duration": request.duration,
        "input_audio": {**outputs.keep_input(request.audio), "seconds": round(clip.seconds, 3)} if clip else None,
        "start": job.start,
        "end": job.end,
        "cover_strength": request.cover_strength if job.task.name == "cover" else None,
        "steps": request.steps,
        "guidance": request.guidance,
        "shift": request.shift,
        "seed": job.seed,
        "bpm": request.bpm,
        "key": request.key,
        "time_signature": request.time_signature,
        "language": request.language,
        "loras": [lora.record() for lora in loras],
        "speed": request.speed,
        # The step cache that ran and how many denoiser calls it skipped.
        "step_cache": cache_record,
        "audio_format": request.audio_format,
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "audio_seconds": round(audio_seconds, 3),
        **run_record(manager, started),
    }
    output = outputs.save_audio(samples, SAMPLE_RATE, parameters, kind="music", audio_format=request.audio_format)
    queued.report(1.0, "Done")
    return MusicResult(output, seconds=seconds, audio_seconds=audio_seconds, notes=list(job.notes))
