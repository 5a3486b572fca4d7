"""Text or image to video (Wan2.1, LTX-Video, FramePack), and VACE's references, video editing with a mask and first
frame (pipelines/vace.py): one request in, one saved video out.

    1. check the request (frames rounded to the model's rule, and the rounding said)   2. load (manager.use)
    3. set the flow shift   4. denoise (Stop, progress and a latent preview between steps)   5. decode
    6. keep the input's unmasked pixels (VACE, optional)   7. interpolate frames (optional)   8. export and save

FramePack denoises and decodes section after section in one pipeline call; after each section the video so far is
written as a playable partial file (replaced whole each time, removed when the job ends) and handed to the UI.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import diffusers
import numpy as np
import torch
from PIL import Image

from pipelines.attention import apply_attention, check_attention
from pipelines import vace
from pipelines.catalog import FamilySpec, LongVideo, ModelSpec, Task, VideoRules, family_spec, model_spec, video_models
from pipelines.checkpoint_files import checkpoint_record
from pipelines.compiled_blocks import check_compile, compiled_blocks, inductor_cache_dir
from pipelines.context_windows import ContextWindows, windowed_transformer
from pipelines.diffusion_forcing import Chunk, check_forcing, chunks, rounds
from pipelines.errors import InvalidRequest, JobStopped
from pipelines.interpolation import CHOICES as INTERPOLATIONS
from pipelines.interpolation import check_choice, interpolate, weights_record
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.manager import ModelManager
from pipelines.media import MediaError, image_size
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, run_record
from pipelines.request_values import number, whole_number
from pipelines.sections import PartialVideo
from pipelines.step_cache import check_speed, step_cache
from pipelines.video_export import ExportedVideo, ExportSettings, export_video

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_FLOW_SHIFT = 20.0
MAX_FPS = 60
MAX_PROMPT_CHARS = 10_000
# A preview every this many steps (and after the last): decoding it costs nothing next to a step.
PREVIEW_EVERY = 2

PreviewCallback = Callable[[Image.Image, str], None]
# The playable video so far of a model made in sections, after each section.
PartialCallback = Callable[[Path, str], None]


@dataclass(frozen=True)
class VideoRequest:
    """Inputs as a person or a script gave them; `None` means the model's default."""

    prompt: str
    model: str
    negative_prompt: str = ""
    # The picture the video starts from (a file): required by image-to-video models, optional for LTX.
    image: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    fps: int | None = None
    steps: int | None = None
    guidance: float | None = None
    flow_shift: float | None = None
    seed: int = -1
    interpolation: str = "none"
    # Speed level and its optional overrides, as for images (pipelines/step_cache.py).
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None
    # "on": the transformer's repeated blocks run compiled (pipelines/compiled_blocks.py).
    compile: str = "off"
    # The transformer's attention backend (pipelines/attention.py); None means the preset's.
    attention: str | None = None
    export: ExportSettings = field(default_factory=ExportSettings)
    # Long video, in video frames. Context windows (Wan): the window length and the overlap (a window of 4k+1 frames
    # is k+1 latent frames; 4 frames of overlap share one latent frame), every `context_stride`-th latent frame in a
    # window. History chunks (SkyReels V2): the chunk length and the frames each chunk continues from.
    # No `context_frames`: the whole video at once.
    context_frames: int | None = None
    context_overlap: int | None = None
    context_stride: int | None = None
    context_blend: str = "linear"
    # Asynchronous diffusion forcing (SkyReels V2): each causal block of `causal_block_size` latent frames starts
    # `ar_step` steps after the one before. 0 = synchronous; no block size = the largest that fits, up to 5.
    ar_step: int = 0
    causal_block_size: int | None = None
    # VACE models (files): up to 3 reference images, an input video and a mask (a video, or one picture for every
    # frame; white = regenerate, black = keep). With an input video or image, `keep_unmasked` pastes the input's own
    # pixels back wherever the mask keeps them.
    reference_images: tuple[str, ...] = ()
    video: str | None = None
    mask: str | None = None
    keep_unmasked: bool = False
    # How strongly the VACE inputs steer the video (the pipeline's `conditioning_scale`, 0 to 2); None means 1.
    vace_strength: float | None = None
    # Sections (FramePack): latent frames per section (the pipeline's `latent_window_size`; 4 video frames each).
    # None: the family's default; ignored by families that do not make sections.
    latent_window_size: int | None = None
    # Filled by check(): what was asked for, when the model's frame rule changed it.
    frames_requested: int | None = None
    # Filled by check(): how the input video and mask were sampled, cut and fitted (VACE).
    input_note: str = ""

    def check(self, models_dir: Path) -> "VideoRequest":
        """A copy with defaults filled in and frames rounded to the model's rule; InvalidRequest names the first bad field."""
        models = video_models()
        spec = models.get(self.model)
        if spec is None:
            raise InvalidRequest("model", f"unknown model {self.model!r}; choose a video model: {', '.join(models)}")
        family = family_spec(spec.family)
        rules, defaults = family.video, spec.defaults
        prompt = (self.prompt or "").strip()
        if not prompt:
            raise InvalidRequest("prompt", "must not be empty; describe the video you want")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest("prompt", f"has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted")
        image = str(self.image) if self.image else None
        default_width, default_height = defaults.width, defaults.height
        if image is None and spec.task is Task.IMAGE_TO_VIDEO:
            raise InvalidRequest("image", f"{spec.name} makes a video from a picture; give an input image")
        sources = vace.check_sources(self, spec)
        if sources is not None and sources.video is not None:
            default_width, default_height = _fitted_size((sources.video.width, sources.video.height), (defaults.width, defaults.height), family)
        if image is not None:
            if spec.task is not Task.IMAGE_TO_VIDEO and not rules.image_to_video_pipeline_class and not rules.vace_inputs:
                starters = [
                    s.id for s in models.values()
                    if s.task is Task.IMAGE_TO_VIDEO or family_spec(s.family).video.image_to_video_pipeline_class
                ]
                raise InvalidRequest(
                    "image", f"{spec.name} does not start from a picture; remove the image or choose one of {', '.join(starters)}"
                )
            try:
                size = image_size(Path(image))
            except MediaError as error:
                raise InvalidRequest("image", str(error)) from None
            default_width, default_height = _fitted_size(size, (defaults.width, defaults.height), family)
        width = whole_number("width", self.width, default_width)
        height = whole_number("height", self.height, default_height)
        for name, value in (("width", width), ("height", height)):
            _check_size(name, value, spec, family)
        context_frames = None if self.context_frames in (None, "", 0) else whole_number("context_frames", self.context_frames, 0)
        if context_frames is not None and rules.long_video is None:
            raise InvalidRequest("context_frames", f"{spec.name} does not make long videos in windows or chunks; leave it empty")
        most = rules.max_long_frames if context_frames is not None else rules.max_frames
        window = checked_window(self.latent_window_size, spec.name, rules)
        requested = whole_number("frames", self.frames, defaults.frames)
        if not 1 <= requested <= most:
            longer = (
                f"; with Long video (windows or chunks) up to {rules.max_long_frames}"
                if rules.long_video and context_frames is None else ""
            )
            raise InvalidRequest(
                "frames", f"{requested} is out of range; {spec.name} makes 1 to {most} frames "
                f"{'in a long video' if context_frames is not None else 'at once'} "
                f"({rules.frame_rule(window)}){longer}"
            )
        frames = rules.nearest_frames(requested, most, window)
        context = _checked_context(self, context_frames, frames, rules)
        fps = whole_number("fps", self.fps, defaults.fps)
        if not 1 <= fps <= MAX_FPS:
            raise InvalidRequest("fps", f"{fps} is out of range; use 1 to {MAX_FPS}")
        # A clip shorter than the model's default length sets the length when none was asked for.
        frames_given = self.frames not in (None, "")
        frames, input_note = vace.fitted_length(self, sources, rules, (width, height), frames, frames_given, fps)
        requested = requested if frames_given else frames
        steps = whole_number("steps", self.steps, defaults.steps)
        if not 1 <= steps <= MAX_STEPS:
            raise InvalidRequest("steps", f"{steps} is out of range; use 1 to {MAX_STEPS}")
        guidance = number("guidance", self.guidance, defaults.guidance)
        if not 0.0 <= guidance <= MAX_GUIDANCE:
            raise InvalidRequest("guidance", f"{guidance} is out of range; use 0 to {MAX_GUIDANCE:g}")
        flow_shift = None if self.flow_shift in (None, "") else number("flow_shift", self.flow_shift, 0.0)
        flow_shift = defaults.flow_shift if flow_shift is None else flow_shift
        if flow_shift is not None and not 0.0 < flow_shift <= MAX_FLOW_SHIFT:
            raise InvalidRequest("flow_shift", f"{flow_shift} is out of range; use more than 0, up to {MAX_FLOW_SHIFT:g}")
        seed = whole_number("seed", self.seed, -1)
        if not -1 <= seed <= MAX_SEED:
            raise InvalidRequest("seed", f"{seed} is out of range; use -1 (random) or 0 to {MAX_SEED}")
        forcing = _checked_forcing(self, spec, rules, frames, context, steps)
        interpolation = check_choice(self.interpolation, models_dir)
        export = self.export.check(default_frame_rate=fps * interpolation.factor)
        cache_method, cache_threshold = check_speed(spec.family, self.speed, self.cache_method, self.cache_threshold)
        # A step cache compares one call of the transformer with the one before; in windows, consecutive calls are
        # neighbouring windows of the same step, not steps.
        if context["context_frames"] is not None and rules.long_video is LongVideo.CONTEXT_WINDOWS and cache_method != "none":
            raise InvalidRequest("speed", "step caching does not work with context windows yet; set Speed to off for a long video")
        compile_choice = check_compile(self.compile, cache_method)
        return replace(
            self, prompt=prompt, negative_prompt=(self.negative_prompt or "").strip(), image=image, width=width, height=height,
            frames=frames, fps=fps, steps=steps, guidance=guidance, flow_shift=flow_shift, seed=seed, latent_window_size=window,
            interpolation=self.interpolation or "none", export=export, **context, **forcing,
            speed=self.speed or "off", cache_method=cache_method, cache_threshold=cache_threshold, compile=compile_choice,
            attention=check_attention(self.attention),
            reference_images=tuple(str(path) for path in self.reference_images), video=str(self.video) if self.video else None,
            mask=str(self.mask) if self.mask else None, keep_unmasked=bool(self.keep_unmasked), input_note=input_note,
            vace_strength=vace.checked_strength(self.vace_strength, spec),
            # Checking a checked request changes nothing: the first request's count is the one asked for.
            frames_requested=requested if self.frames_requested is None else self.frames_requested,
        )

    def context_windows(self) -> ContextWindows | None:
        """The windows this (checked) request denoises in; None for the whole video at once, or in chunks."""
        rules = family_spec(model_spec(self.model).family).video
        if self.context_frames is None or rules.long_video is not LongVideo.CONTEXT_WINDOWS:
            return None
        return ContextWindows(
            latent_frames=rules.latent_frames(self.frames), length=rules.latent_frames(self.context_frames),
            overlap=self.context_overlap // rules.frame_multiple, stride=self.context_stride, blend=self.context_blend,
        )

    def history_chunks(self) -> int:
        """How many chunks the pipeline makes one after the other (history chunks only; 1 otherwise)."""
        return len(self.chunk_layout())

    def chunk_layout(self) -> list[Chunk]:
        """The chunks the pipeline makes one after the other, in latent frames (history chunks only; the whole video
        otherwise)."""
        rules = family_spec(model_spec(self.model).family).video
        total = rules.latent_frames(self.frames)
        if self.context_frames is None or rules.long_video is not LongVideo.HISTORY_CHUNKS:
            return [Chunk(total)]
        # diffusers counts the overlap as ((overlap - 1) // 4 + 1) latent frames.
        shared = (self.context_overlap - 1) // rules.frame_multiple + 1
        return chunks(total, rules.latent_frames(self.context_frames), shared)

    def denoising_rounds(self) -> list[int]:
        """Transformer calls per guidance pass for each chunk: the steps, more in asynchronous diffusion forcing."""
        return [rounds(self.steps, chunk, self.ar_step, self.causal_block_size or 1) for chunk in self.chunk_layout()]

    def sections(self) -> int:
        """How many sections a checked request of a family made in sections is denoised in, one after the other; 0
        for the other families."""
        if self.latent_window_size is None:
            return 0
        return (self.frames - 1) // family_spec(model_spec(self.model).family).video.frame_step(self.latent_window_size)

    def transformer_passes(self) -> tuple[int, int]:
        """(windows per step, chunks or sections; transformer passes in all) for a checked request: windows × steps,
        sections × steps or the chunks' rounds, twice that when guidance runs the transformer once with and once
        without the prompt."""
        windows = self.context_windows()
        sections = self.sections()
        per_step = len(windows.windows()) if windows else (sections or self.history_chunks())
        calls = per_step * self.steps if windows or sections else sum(self.denoising_rounds())
        family = family_spec(model_spec(self.model).family)
        separate_unconditional = self.guidance > 1.0 and not (family.guidance_doubles_batch or family.video.guidance_distilled)
        return per_step, calls * (2 if separate_unconditional else 1)

    def length_note(self) -> str:
        """For a checked request in context windows, chunks, sections or asynchronous mode: the length made and the
        passes it takes; empty otherwise."""
        if self.latent_window_size is not None:
            return sections_note(model_spec(self.model), self.frames, self.fps, self.steps, self.latent_window_size)
        if self.context_frames is None and not self.ar_step:
            return ""
        per_step, passes = self.transformer_passes()
        calls = sum(self.denoising_rounds()) if self.context_windows() is None else per_step * self.steps
        both = " (with and without the prompt)" if passes > calls else ""
        if self.context_windows() is not None:
            layout = f"windows of {self.context_frames} frames (overlap {self.context_overlap}, stride {self.context_stride})"
            count = "1 window covers the whole video" if per_step == 1 else f"{per_step} windows per step"
        elif self.context_frames is not None:
            layout = f"chunks of {self.context_frames} frames, each continuing from the last {self.context_overlap}"
            count = "1 chunk covers the whole video" if per_step == 1 else f"{per_step} chunks"
        else:
            layout, count = "one chunk", "1 chunk"
        head = f"{'Long video' if self.context_frames is not None else 'Video'}: {self.frames} frames = {self.frames / self.fps:.2f} s in {layout}"
        if not self.ar_step:
            return f"{head}; {count} × {self.steps} steps = {passes} transformer passes{both}."
        return (
            f"{head}; asynchronous: causal blocks of {self.causal_block_size} latent frames, each starting {self.ar_step} "
            f"steps after the one before; {count}, {calls} rounds for {self.steps} steps = {passes} transformer passes{both}."
        )

    def frames_note(self) -> str:
        """What the frame rule did to the request (checked requests only); empty when nothing changed."""
        if self.frames_requested in (None, self.frames):
            return ""
        spec = model_spec(self.model)
        rules = family_spec(spec.family).video
        return (
            f"{self.frames_requested} frames were asked for; {spec.name} makes "
            f"{rules.frame_rule(self.latent_window_size)} frames, so {self.frames} were made."
        )


def sections_note(spec: ModelSpec, frames: int, fps: int, steps: int, window: int) -> str:
    """The length a model made in sections makes, in how many sections and transformer passes (one per section and
    step: its guidance is distilled), for frames already on its rule."""
    section_frames = family_spec(spec.family).video.frame_step(window)
    sections = (frames - 1) // section_frames
    order = "from the last section back to the picture" if grows_backwards(spec) else "forward from the picture"
    return (
        f"Sections: {frames} frames = {frames / fps:.2f} s at {fps} fps in {sections} section{'s' if sections != 1 else ''} "
        f"of {section_frames} frames (latent window {window}), made {order}; {sections} × {steps} steps = "
        f"{sections * steps} transformer passes."
    )


def checked_window(value, model_name: str, rules: VideoRules) -> int | None:
    """The latent frames per section for a family made in sections (its default when not given); None for the others."""
    if rules.sections is None:
        return None
    window = whole_number("latent_window_size", value, rules.sections.default_window)
    low, high = rules.sections.min_window, rules.sections.max_window
    if not low <= window <= high:
        raise InvalidRequest(
            "latent_window_size", f"{window} is out of range; {model_name} makes sections of {low} to {high} latent frames "
            f"({low * rules.frame_multiple} to {high * rules.frame_multiple} video frames)"
        )
    return window


def grows_backwards(spec: ModelSpec) -> bool:
    """Whether a model made in sections makes the end of the video first (FramePack's anti-drifting order)."""
    return dict(spec.defaults.call_kwargs).get("sampling_type") == "inverted_anti_drifting"


def _checked_context(request: VideoRequest, context_frames: int | None, frames: int, rules: VideoRules) -> dict:
    """The context settings with defaults filled in and checked (window rounded to the frame rule), as fields."""
    if context_frames is None:
        return dict(context_frames=None, context_overlap=None, context_stride=None, context_blend="linear")
    if not rules.min_frames <= context_frames:
        raise InvalidRequest("context_frames", f"{context_frames} is too short; a window holds at least {rules.min_frames} frames")
    window = rules.nearest_frames(context_frames, rules.max_frames)
    chunks = rules.long_video is LongVideo.HISTORY_CHUNKS
    # By default neighbouring windows share a quarter of a window, in whole latent frames; a chunk continues from
    # the last quarter of the one before (4k+1 frames, as SkyReels' recommended 17 and 37 are).
    quarter = (window - 1) // 4 // rules.frame_multiple * rules.frame_multiple
    overlap = whole_number("context_overlap", request.context_overlap, quarter + 1 if chunks else quarter)
    lowest = 1 if chunks else 0
    if not lowest <= overlap < window - 1:
        raise InvalidRequest(
            "context_overlap", f"{overlap} is out of range; the overlap must be {lowest} or more and fewer than the "
            f"{'chunk' if chunks else 'window'}'s {window} frames (counted as {window - 1} after the first)"
        )
    stride = whole_number("context_stride", request.context_stride, 1)
    if stride < 1 or (chunks and stride != 1):
        raise InvalidRequest(
            "context_stride", f"{stride} is out of range; use 1" + ("" if chunks else " (neighbouring frames) or more")
        )
    blend = request.context_blend or "linear"
    settings = dict(context_frames=window, context_overlap=overlap, context_stride=stride, context_blend=blend)
    if not chunks:
        ContextWindows(  # says which field is wrong when the windows cannot be laid over this video
            latent_frames=rules.latent_frames(frames), length=rules.latent_frames(window),
            overlap=overlap // rules.frame_multiple, stride=stride, blend=blend,
        )
    return settings


@dataclass(frozen=True)
class VideoResult:
    video: ExportedVideo | None
    stopped: bool = False
    seconds: float = 0.0
    seed: int | None = None
    frames_note: str = ""
    # The length made and the transformer passes it took, for long videos in context windows.
    length_note: str = ""
    # Set when this job compiled the transformer blocks: what the first run cost.
    compile_note: str = ""
    # How VACE's input video and mask were sampled, cut and fitted.
    input_note: str = ""


def _fitted_size(image_size_px: tuple[int, int], default: tuple[int, int], family: FamilySpec) -> tuple[int, int]:
    """The input picture's aspect at about the model's default pixel count, on the family's size grid."""
    width, height = image_size_px
    scale = (default[0] * default[1] / (width * height)) ** 0.5
    multiple = family.size_multiple
    return tuple(min(max(round(side * scale / multiple) * multiple, family.min_size), family.max_size) for side in (width, height))


def _checked_forcing(request: VideoRequest, spec: ModelSpec, rules: VideoRules, frames: int, context: dict, steps: int) -> dict:
    """ar_step and causal_block_size checked against the chunks the video is made in, as fields."""
    ar_step = whole_number("ar_step", request.ar_step, 0)
    block = None if request.causal_block_size in (None, "", 0) else whole_number("causal_block_size", request.causal_block_size, 1)
    if not rules.asynchronous_forcing:
        if ar_step or block is not None:
            field = "ar_step" if ar_step else "causal_block_size"
            offering = [s.id for s in video_models().values() if family_spec(s.family).video.asynchronous_forcing]
            raise InvalidRequest(field, f"{spec.name} has no asynchronous mode; leave it at 0 or empty, or use {', '.join(offering)}")
        return dict(ar_step=0, causal_block_size=None)
    checked = replace(request, frames=frames, **context)
    ar_step, block = check_forcing(ar_step, block, steps, checked.chunk_layout())
    return dict(ar_step=ar_step, causal_block_size=block)


def _check_size(name: str, value: int, spec: ModelSpec, family: FamilySpec) -> None:
    multiple, low, high = family.size_multiple, family.min_size, family.max_size
    if low <= value <= high and value % multiple == 0:
        return
    nearest = min(max(round(value / multiple) * multiple, low), high)
    raise InvalidRequest(
        name, f"{value} is not accepted by {spec.name}; use a multiple of {multiple} from {low} to {high} (nearest: {nearest})"
    )


@contextmanager
def _flow_shift(pipe, shift: float | None):
    """The model's scheduler with `shift` for one job, its own put back afterwards. UniPC-style schedulers (Wan) call
    it `flow_shift`; flow-matching Euler (LTX) calls it `shift` and must stop deriving one from the video's length."""
    original = pipe.scheduler
    if shift is not None:
        config = original.config
        overrides = {"flow_shift": shift} if "flow_shift" in config else {"shift": shift, "use_dynamic_shifting": False}
        pipe.scheduler = type(original).from_config(config, **overrides)
    try:
        yield
    finally:
        pipe.scheduler = original


def _for_task(pipe, family: FamilySpec, from_image: bool, spec: ModelSpec):
    """The loaded pipeline, or the family's image-to-video sibling sharing its components (nothing more in memory)."""
    if not from_image or spec.task is Task.IMAGE_TO_VIDEO:
        return pipe
    sibling = getattr(diffusers, family.video.image_to_video_pipeline_class).from_pipe(pipe)
    sibling.set_progress_bar_config(disable=True)
    return sibling


def latent_preview(latents: torch.Tensor, request: VideoRequest, family: FamilySpec) -> Image.Image:
    """A glimpse of the video being denoised: the first latent frame's first three channels, each stretched to the
    full range, as an RGB picture at the video's size. Unpacks LTX's token sequence (patch 1: one token per latent pixel)."""
    rules = family.video
    sample = latents[0].detach().float().cpu()
    if sample.dim() == 2:  # (frames·height·width tokens, channels)
        grid = (rules.latent_frames(request.frames), request.height // rules.pixels_per_token, request.width // rules.pixels_per_token)
        sample = sample.reshape(*grid, -1).permute(3, 0, 1, 2)
    # VACE puts one latent frame per reference image before the video's first.
    picture = sample[:3, len(request.reference_images)]  # (3, height, width)
    low = picture.amin(dim=(1, 2), keepdim=True)
    high = picture.amax(dim=(1, 2), keepdim=True)
    picture = ((picture - low) / (high - low).clamp(min=1e-6) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(picture).resize((request.width, request.height), Image.Resampling.BILINEAR)


def _start_image(request: VideoRequest) -> Image.Image:
    with Image.open(request.image) as image:
        picture = image.convert("RGB")
    if picture.size != (request.width, request.height):
        picture = picture.resize((request.width, request.height), Image.Resampling.LANCZOS)
    return picture


def _make_frames(manager, spec, workload, request, job, kwargs, seed, records: dict, partial: PartialVideo | None) -> np.ndarray:
    """The frames, from the seed's noise, with the request's flow shift, step cache and compiled blocks for this job
    only; `records` receives what the cache did ("step_cache") and what compiling cost ("compiled_blocks"). A model
    made in sections writes the video so far to `partial` after each section; the partial file is gone when this
    returns, whatever happened."""
    family = family_spec(spec.family)
    with (
        manager.use(spec.id, workload, on_progress=job.report) as pipe,
        _flow_shift(pipe, request.flow_shift),
        windowed_transformer(pipe.transformer, request.context_windows()),
        compiled_blocks(pipe, spec.family, request.compile == "on", inductor_cache_dir(manager.store.models_dir)) as compiled,
        step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache,
        partial.watching(pipe) if partial else nullcontext(),
    ):
        job.check_stop()
        attention = apply_attention(pipe.transformer, request.attention, manager.preset.attention, manager.execution_device())
        runner = _for_task(pipe, family, "image" in kwargs, spec)
        torch.manual_seed(seed)
        frames = runner(**kwargs, output_type="np", generator=torch.Generator("cpu").manual_seed(seed)).frames[0]
    records.update(step_cache=cache.record(), compiled_blocks=compiled.record(), compile_note=compiled.note(), attention=attention)
    return frames


def generate_video(
    request: VideoRequest, manager: ModelManager, outputs: OutputStore, job: QueuedJob, on_preview: PreviewCallback | None = None,
    on_partial: PartialCallback | None = None,
) -> VideoResult:
    # 1. Check before anything loads.
    request = request.check(manager.store.models_dir)
    spec = model_spec(request.model)
    family = family_spec(spec.family)
    rules = family.video
    seed = request.seed if request.seed >= 0 else random.randint(0, MAX_SEED)
    started = time.monotonic()
    job.report(0.0, f"Loading {spec.name}")
    start_image = _start_image(request) if request.image else None

    # Calls per chunk: the steps, or the rounds of asynchronous diffusion forcing (the first chunk takes the most).
    rounds_per_chunk = request.denoising_rounds()[0]
    sections = request.sections()
    steps_done = 0

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        nonlocal steps_done
        job.check_stop()
        steps_done += 1
        text = f"Step {step + 1}/{rounds_per_chunk}"
        if sections:
            text = f"Section {(steps_done - 1) // request.steps + 1}/{sections}, step {step + 1}/{request.steps}"
        fraction = steps_done / (request.steps * sections) if sections else (step + 1) / rounds_per_chunk
        job.report(fraction * 0.95, text)
        if on_preview is not None and ((step + 1) % PREVIEW_EVERY == 0 or step + 1 == rounds_per_chunk):
            on_preview(latent_preview(callback_kwargs["latents"], request, family), text)
        return callback_kwargs

    # 2-5. Load (the manager plans memory for this size and length, or refuses before anything runs), denoise, decode.
    # Noise comes from a CPU generator so a seed gives the same video whatever the device and placement.
    # In context windows the transformer sees one window at a time: memory is planned for a window. VACE puts each
    # reference image before the video as one more latent frame (frame_multiple video frames).
    denoised_frames = min(request.frames, request.context_frames or request.frames) + len(request.reference_images) * rules.frame_multiple
    if sections:
        # One section at a time: its latent frames, plus the clean and compressed history (about 2.5 latent frames).
        denoised_frames = (request.latent_window_size + 2) * rules.frame_multiple + 1
    tokens = rules.denoiser_tokens(request.width, request.height, denoised_frames) + family.text_tokens
    workload = Workload(tokens, family.denoiser_batch(request.guidance))
    kwargs = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        width=request.width,
        height=request.height,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        callback_on_step_end=on_step_end,
        **dict(spec.defaults.call_kwargs),
    )
    if rules.fps_argument:
        kwargs[rules.fps_argument] = request.fps
    if rules.long_video is LongVideo.HISTORY_CHUNKS and request.context_frames is not None:
        kwargs.update(base_num_frames=request.context_frames, overlap_history=request.context_overlap)
    if rules.asynchronous_forcing:
        # Always given, 1 included: the pipeline stores a block size in the transformer's config, where a later job
        # without one would find it.
        kwargs.update(ar_step=request.ar_step, causal_block_size=request.causal_block_size)
    vace_inputs = vace.load_inputs(request) if rules.vace_inputs else None
    if vace_inputs is not None:
        kwargs.update(vace.pipeline_arguments(vace_inputs, request.vace_strength))
    elif start_image is not None:
        kwargs["image"] = start_image
    interpolation = INTERPOLATIONS[request.interpolation]

    def on_pair(done: int, pairs: int) -> None:
        job.check_stop()
        job.report(0.96 + 0.03 * done / pairs, f"Interpolating frames: {done}/{pairs} pairs")

    partial = None
    if sections:
        # diffusers counts sections as ceil(num_frames / window frames): ask for exactly ours.
        window_frames = (request.latent_window_size - 1) * rules.frame_multiple + 1
        kwargs.update(num_frames=sections * window_frames, latent_window_size=request.latent_window_size)
        partial = PartialVideo(
            outputs, f"{spec.id}-{seed}", request.fps, sections, grows_backwards(spec), on_partial=on_partial, on_preview=on_preview,
        )
    records: dict = {}

    def attempt() -> np.ndarray:
        nonlocal steps_done
        steps_done = 0  # a retry after an out-of-memory starts the sections again
        return _make_frames(manager, spec, workload, request, job, kwargs, seed, records, partial)

    try:
        decoded = with_one_retry(job, attempt)
        frames = (np.clip(decoded, 0.0, 1.0) * 255).round().astype(np.uint8)
        # 6. Keep the input's own pixels outside the mask, exactly (the VAE's round trip would blur them).
        if vace_inputs is not None and request.keep_unmasked:
            frames = vace.paste_kept(frames, vace_inputs)

        # 7. Interpolate: more frames per second over the same span (a learned interpolator on the manager's device).
        job.report(0.96, "Interpolating frames" if interpolation.factor > 1 else "Encoding")
        frames = interpolate(frames, interpolation, manager.store.models_dir, manager.execution_device(), on_pair)
    except JobStopped:
        log.info("video stopped before it was finished; nothing saved")
        return VideoResult(None, stopped=True, seconds=time.monotonic() - started, frames_note=request.frames_note())

    # 8. Export and save with everything needed to reproduce it.
    parameters = {
        **{
            key: value for key, value in asdict(request).items()
            if key not in ("seed", "image", "export", "cache_method", "cache_threshold", "reference_images", "video", "mask")
        },
        "image": outputs.keep_input(request.image) if start_image else None,
        **(vace.records(request, outputs) if rules.vace_inputs else {}),
        "step_cache": records["step_cache"],
        # Whether the blocks ran compiled, and what compiling cost in this job (0 graphs: reused).
        "compiled_blocks": records["compiled_blocks"],
        "attention": records["attention"],
        "seed": seed,
        "frames_note": request.frames_note(),
        "length_note": request.length_note(),
        "transformer_passes": request.transformer_passes()[1],
        "interpolation_weights": weights_record(interpolation, manager.store.models_dir),
        "frames_after_interpolation": len(frames),
        "fps_after_interpolation": request.fps * interpolation.factor,
        "model_name": spec.name,
        "repo": spec.repo or (model_spec(spec.base).repo if spec.base else None),
        "checkpoint": checkpoint_record(spec.checkpoint),
        "demo": spec.demo,
        **run_record(manager, started),
    }
    video = export_video(frames, request.export, parameters, outputs)
    job.report(1.0, "Done")
    return VideoResult(
        video, seconds=time.monotonic() - started, seed=seed, frames_note=request.frames_note(), length_note=request.length_note(),
        compile_note=records["compile_note"],
        input_note=request.input_note,
    )
