"""A video request as a person or a script gives it, and the job it checks into once, before anything loads.

`VideoRequest.check(catalog, models_dir)` fills in the model's defaults, rounds the length to the model's frame rule
(and says so), checks every value against the family's rules and reads the input files once — the start picture,
VACE's references, input video and mask (pipelines/video/vace.py) — into a frozen `VideoJob` that the runner trusts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from pipelines.video import vace
from pipelines.speed.attention import check_attention
from pipelines.catalog import Catalog, FamilySpec, LongVideo, ModelSpec, Task, VideoRules, family_spec
from pipelines.speed.compiled_blocks import check_compile
from pipelines.video.context_windows import ContextWindows
from pipelines.video.diffusion_forcing import Chunk, check_forcing, chunks, rounds
from pipelines.video.enhance import ENHANCE_RULES, MAX_ENHANCE_WEIGHT
from pipelines.errors import InvalidRequest, UnknownModel
from pipelines.video.interpolation import check_choice
from pipelines.media import MediaError, image_size
from pipelines.request_values import (
    checked_guidance, checked_prompt, checked_seed, checked_size, checked_steps, checked_text, number, resolved_seed, whole_number,
)
from pipelines.speed.step_cache import check_speed
from pipelines.video.vace import JobShape, VaceInputs
from pipelines.video.video_export import ExportSettings

MAX_FLOW_SHIFT = 20.0
MAX_FPS = 60


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
    # Speed level and its optional overrides, as for images (pipelines/speed/step_cache.py).
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None
    # "on": the transformer's repeated blocks run compiled (pipelines/speed/compiled_blocks.py).
    compile: str = "off"
    # The transformer's attention backend (pipelines/speed/attention.py); None means the preset's.
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
    # Enhance-A-Video (pipelines/video/enhance.py): how strongly the self-attention's cross-frame intensity lifts its
    # output, 0 (off: the model untouched) to 10; Wan2.1, HunyuanVideo and LTX-Video only.
    enhance_weight: float = 0.0

    def check(self, catalog: Catalog, models_dir: Path) -> "VideoJob":
        """The job this request asks for: defaults filled in, frames rounded to the model's rule, the input files read;
        InvalidRequest names the first bad field. `models_dir` is where the learned interpolator's weights live."""
        models = catalog.video_models()
        spec = models.get(self.model)
        if spec is None:
            raise UnknownModel(self.model, "a video model", models)
        family = family_spec(spec.family)
        rules, defaults = family.video, spec.defaults
        prompt = checked_prompt(self.prompt, empty_hint="describe the video you want")
        negative_prompt = checked_text("negative_prompt", self.negative_prompt)
        image = str(self.image) if self.image else None
        if image is None and spec.task is Task.IMAGE_TO_VIDEO:
            raise InvalidRequest("image", f"{spec.name} makes a video from a picture; give an input image")
        sources = vace.check_sources(self, spec, rules, _offering(models, lambda rules: rules.vace_inputs))
        start_image = _checked_start_image(image, spec, models)
        width, height = self._checked_size(spec, family, sources, start_image)
        context_frames = None if self.context_frames in (None, "", 0) else whole_number("context_frames", self.context_frames, 0)
        if context_frames is not None and rules.long_video is None:
            raise InvalidRequest("context_frames", f"{spec.name} does not make long videos in windows or chunks; leave it empty")
        window = checked_window(self.latent_window_size, spec.name, rules)
        requested = whole_number("frames", self.frames, defaults.frames)
        frames = _checked_frames(requested, spec, rules, context_frames, window)
        context = _checked_context(self, context_frames, frames, rules)
        fps = checked_fps(self.fps, defaults.fps)
        # A clip shorter than the model's default length sets the length when none was asked for.
        frames_given = self.frames not in (None, "")
        inputs, input_note = None, ""
        if sources is not None:
            shape = JobShape((width, height), frames, frames_given, fps)
            inputs, frames, input_note = vace.read_inputs(self, sources, rules, shape, start_image)
        steps = checked_steps(self.steps, defaults.steps)
        guidance = checked_guidance(self.guidance, defaults.guidance)
        flow_shift = None if self.flow_shift in (None, "") else number("flow_shift", self.flow_shift, 0.0)
        flow_shift = defaults.flow_shift if flow_shift is None else flow_shift
        if flow_shift is not None and not 0.0 < flow_shift <= MAX_FLOW_SHIFT:
            raise InvalidRequest("flow_shift", f"{flow_shift} is out of range; use more than 0, up to {MAX_FLOW_SHIFT:g}")
        seed = checked_seed(self.seed)
        forcing = _checked_forcing(self, spec, rules, frames, context, steps, models)
        interpolation = check_choice(self.interpolation, models_dir)
        export = self.export.check(default_frame_rate=fps * interpolation.factor)
        cache_method, cache_threshold = check_speed(spec.family, self.speed, self.cache_method, self.cache_threshold)
        # A step cache compares one call of the transformer with the one before; in windows, consecutive calls are
        # neighbouring windows of the same step, not steps.
        if context["context_frames"] is not None and rules.long_video is LongVideo.CONTEXT_WINDOWS and cache_method != "none":
            raise InvalidRequest("speed", "step caching does not work with context windows yet; set Speed to off for a long video")
        request = replace(
            self, prompt=prompt, negative_prompt=negative_prompt, image=image, width=width, height=height,
            frames=frames, fps=fps, steps=steps, guidance=guidance, flow_shift=flow_shift, seed=seed, latent_window_size=window,
            interpolation=self.interpolation or "none", export=export, **context, **forcing,
            speed=self.speed or "off", cache_method=cache_method, cache_threshold=cache_threshold,
            compile=check_compile(self.compile, cache_method), attention=check_attention(self.attention),
            reference_images=tuple(str(path) for path in self.reference_images), video=str(self.video) if self.video else None,
            mask=str(self.mask) if self.mask else None, keep_unmasked=bool(self.keep_unmasked),
            vace_strength=vace.checked_strength(self.vace_strength, spec, rules),
            enhance_weight=_checked_enhance_weight(self.enhance_weight, self.compile, spec),
        )
        return VideoJob(
            request, spec, family, resolved_seed(seed), requested if frames_given else frames, start_image, inputs, input_note,
        )

    def _checked_size(self, spec: ModelSpec, family: FamilySpec, sources, start_image: Image.Image | None) -> tuple[int, int]:
        """The width and height asked for; without them the input video's or picture's aspect at about the model's
        default pixel count."""
        defaults = spec.defaults
        default_size = (defaults.width, defaults.height)
        if sources is not None and sources.video is not None:
            default_size = fitted_default_size(spec, family, (sources.video.width, sources.video.height))
        if start_image is not None:
            default_size = fitted_default_size(spec, family, start_image.size)
        width, height = checked_size(self.width, self.height, default_size, family, spec.name)
        return width, height


@dataclass(frozen=True, eq=False)
class VideoJob:
    """A checked request: its values as they will run, the model's entry and family, the seed drawn for -1, and the
    input files as read by the check (the runner reads none of them again)."""

    request: VideoRequest
    spec: ModelSpec
    family: FamilySpec
    seed: int
    # What was asked for, when the model's frame rule (or a short input video) changed it; else the frames made.
    frames_requested: int
    # The start picture in RGB at its own size (image to video, or VACE's first frame).
    start_image: Image.Image | None = None
    # VACE's inputs at the job's size and length, and how the input video and mask were sampled, cut and fitted.
    vace: VaceInputs | None = None
    input_note: str = ""

    @property
    def rules(self) -> VideoRules:
        return self.family.video

    def context_windows(self) -> ContextWindows | None:
        """The windows this job denoises in; None for the whole video at once, or in chunks."""
        request, rules = self.request, self.rules
        if request.context_frames is None or rules.long_video is not LongVideo.CONTEXT_WINDOWS:
            return None
        return ContextWindows(
            latent_frames=rules.latent_frames(request.frames), length=rules.latent_frames(request.context_frames),
            overlap=request.context_overlap // rules.frame_multiple, stride=request.context_stride, blend=request.context_blend,
        )

    def chunk_layout(self) -> list[Chunk]:
        request = self.request
        return chunk_layout(self.rules, request.frames, request.context_frames, request.context_overlap)

    def denoising_rounds(self) -> list[int]:
        """Transformer calls per guidance pass for each chunk: the steps, more in asynchronous diffusion forcing."""
        request = self.request
        return [rounds(request.steps, chunk, request.ar_step, request.causal_block_size or 1) for chunk in self.chunk_layout()]

    def sections(self) -> int:
        """How many sections a family made in sections denoises, one after the other; 0 for the other families."""
        if self.request.latent_window_size is None:
            return 0
        return (self.request.frames - 1) // self.rules.frame_step(self.request.latent_window_size)

    def transformer_passes(self) -> tuple[int, int]:
        """(windows per step, chunks or sections; transformer passes in all): windows × steps, sections × steps or the
        chunks' rounds, twice that when guidance runs the transformer once with and once without the prompt."""
        windows = self.context_windows()
        sections = self.sections()
        per_step = len(windows.windows()) if windows else (sections or len(self.chunk_layout()))
        calls = per_step * self.request.steps if windows or sections else sum(self.denoising_rounds())
        separate_unconditional = self.request.guidance > 1.0 and not (self.family.guidance_doubles_batch or self.rules.guidance_distilled)
        return per_step, calls * (2 if separate_unconditional else 1)

    def length_note(self) -> str:
        """For a job in context windows, chunks, sections or asynchronous mode: the length made and the passes it
        takes; empty otherwise."""
        request = self.request
        if request.latent_window_size is not None:
            return sections_note(self.spec, self.rules, request.frames, request.fps, request.steps, request.latent_window_size)
        if request.context_frames is None and not request.ar_step:
            return ""
        per_step, passes = self.transformer_passes()
        windows = self.context_windows()
        calls = sum(self.denoising_rounds()) if windows is None else per_step * request.steps
        both = " (with and without the prompt)" if passes > calls else ""
        if windows is not None:
            layout = f"windows of {request.context_frames} frames (overlap {request.context_overlap}, stride {request.context_stride})"
            count = "1 window covers the whole video" if per_step == 1 else f"{per_step} windows per step"
        elif request.context_frames is not None:
            layout = f"chunks of {request.context_frames} frames, each continuing from the last {request.context_overlap}"
            count = "1 chunk covers the whole video" if per_step == 1 else f"{per_step} chunks"
        else:
            layout, count = "one chunk", "1 chunk"
        head = (
            f"{'Long video' if request.context_frames is not None else 'Video'}: {request.frames} frames = "
            f"{request.frames / request.fps:.2f} s in {layout}"
        )
        if not request.ar_step:
            return f"{head}; {count} × {request.steps} steps = {passes} transformer passes{both}."
        return (
            f"{head}; asynchronous: causal blocks of {request.causal_block_size} latent frames, each starting {request.ar_step} "
            f"steps after the one before; {count}, {calls} rounds for {request.steps} steps = {passes} transformer passes{both}."
        )

    def frames_note(self) -> str:
        """What the frame rule did to the request; empty when nothing changed."""
        if self.frames_requested == self.request.frames:
            return ""
        return (
            f"{self.frames_requested} frames were asked for; {self.spec.name} makes "
            f"{self.rules.frame_rule(self.request.latent_window_size)} frames, so {self.request.frames} were made."
        )


def long_video_note(catalog: Catalog, request: VideoRequest) -> str:
    """The length a long-video request makes and the transformer passes it takes (context windows, chunks,
    asynchronous blocks), from its length settings alone — what the Video tab shows while they change, checked as the
    job's check checks them, without its prompt or input files. InvalidRequest names a bad setting."""
    models = catalog.video_models()
    spec = models.get(request.model)
    if spec is None:
        raise UnknownModel(request.model, "a video model", models)
    family = family_spec(spec.family)
    rules, defaults = family.video, spec.defaults
    context_frames = None if request.context_frames in (None, "", 0) else whole_number("context_frames", request.context_frames, 0)
    frames = _checked_frames(whole_number("frames", request.frames, defaults.frames), spec, rules, context_frames, None)
    context = _checked_context(request, context_frames, frames, rules)
    steps = checked_steps(request.steps, defaults.steps)
    forcing = _checked_forcing(request, spec, rules, frames, context, steps, models)
    checked = replace(
        request, frames=frames, fps=checked_fps(request.fps, defaults.fps), steps=steps,
        guidance=checked_guidance(request.guidance, defaults.guidance), latent_window_size=None, **context, **forcing,
    )
    return VideoJob(checked, spec, family, seed=0, frames_requested=frames).length_note()


def checked_fps(value, default: int) -> int:
    fps = whole_number("fps", value, default)
    if not 1 <= fps <= MAX_FPS:
        raise InvalidRequest("fps", f"{fps} is out of range; use 1 to {MAX_FPS}")
    return fps


def fitted_default_size(spec: ModelSpec, family: FamilySpec, size: tuple[int, int]) -> tuple[int, int]:
    """The size a video from a picture or clip of `size` gets when none is asked for: its aspect at about the model's
    default pixel count, on the family's size grid."""
    return family.fitted_size(size, spec.defaults.width * spec.defaults.height)


def fitted_start_size(spec: ModelSpec, models: dict[str, ModelSpec], path) -> tuple[int, int]:
    """The size a video from the picture at `path` gets when none is asked for (read from its header); InvalidRequest
    when the model does not start from a picture or the file is not a readable one."""
    refuse_start_image(spec, models)
    try:
        size = image_size(Path(path))
    except MediaError as error:
        raise InvalidRequest("image", str(error)) from None
    return fitted_default_size(spec, family_spec(spec.family), size)


def takes_start_image(spec: ModelSpec) -> bool:
    """Whether a model can start a video from a picture (needs one, has an image-to-video sibling, or VACE)."""
    rules = family_spec(spec.family).video
    return spec.task is Task.IMAGE_TO_VIDEO or bool(rules.image_to_video_pipeline_class) or rules.vace_inputs


def refuse_start_image(spec: ModelSpec, models: dict[str, ModelSpec]) -> None:
    """InvalidRequest naming the models that start from a picture, when `spec` does not."""
    if takes_start_image(spec):
        return
    starters = [
        s.id for s in models.values() if s.task is Task.IMAGE_TO_VIDEO or family_spec(s.family).video.image_to_video_pipeline_class
    ]
    raise InvalidRequest("image", f"{spec.name} does not start from a picture; remove the image or choose one of {', '.join(starters)}")


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


def sections_note(spec: ModelSpec, rules: VideoRules, frames: int, fps: int, steps: int, window: int) -> str:
    """The length a model made in sections makes, in how many sections and transformer passes (one per section and
    step: its guidance is distilled), for frames already on its rule."""
    section_frames = rules.frame_step(window)
    sections = (frames - 1) // section_frames
    order = "from the last section back to the picture" if grows_backwards(spec) else "forward from the picture"
    return (
        f"Sections: {frames} frames = {frames / fps:.2f} s at {fps} fps in {sections} section{'s' if sections != 1 else ''} "
        f"of {section_frames} frames (latent window {window}), made {order}; {sections} × {steps} steps = "
        f"{sections * steps} transformer passes."
    )


def grows_backwards(spec: ModelSpec) -> bool:
    """Whether a model made in sections makes the end of the video first (FramePack's anti-drifting order)."""
    return dict(spec.defaults.call_kwargs).get("sampling_type") == "inverted_anti_drifting"


def chunk_layout(rules: VideoRules, frames: int, context_frames: int | None, context_overlap: int | None) -> list[Chunk]:
    """The chunks the pipeline makes one after the other, in latent frames (history chunks only; the whole video
    otherwise)."""
    total = rules.latent_frames(frames)
    if context_frames is None or rules.long_video is not LongVideo.HISTORY_CHUNKS:
        return [Chunk(total)]
    # diffusers counts the overlap as ((overlap - 1) // 4 + 1) latent frames.
    shared = (context_overlap - 1) // rules.frame_multiple + 1
    return chunks(total, rules.latent_frames(context_frames), shared)


def _offering(models: dict[str, ModelSpec], offers) -> list[str]:
    """The ids of the models whose family's video rules `offers(rules)`, for an error naming them."""
    return [spec.id for spec in models.values() if offers(family_spec(spec.family).video)]


def _checked_enhance_weight(value, compile_setting, spec: ModelSpec) -> float:
    """Enhance-A-Video's weight: 0 (off) up to MAX_ENHANCE_WEIGHT, for the families it wraps; not with compiled blocks,
    whose traced attention the wrapper would change under the compiler."""
    weight = number("enhance_weight", value, 0.0)
    if not 0.0 <= weight <= MAX_ENHANCE_WEIGHT:
        raise InvalidRequest("enhance_weight", f"{weight:g} is out of range; use 0 (off) to {MAX_ENHANCE_WEIGHT:g}")
    if weight and spec.family not in ENHANCE_RULES:
        raise InvalidRequest(
            "enhance_weight", f"{spec.name} has no Enhance-A-Video; set it to 0, or choose a Wan2.1, HunyuanVideo or LTX-Video model",
        )
    if weight and compile_setting == "on":
        raise InvalidRequest("enhance_weight", "Enhance-A-Video does not work with compiled blocks yet; set it to 0 or Compile to off")
    return weight


def _checked_start_image(image: str | None, spec: ModelSpec, models: dict[str, ModelSpec]) -> Image.Image | None:
    if image is None:
        return None
    refuse_start_image(spec, models)
    return vace.read_picture("image", image)


def _checked_frames(requested: int, spec: ModelSpec, rules: VideoRules, context_frames: int | None, window: int | None) -> int:
    """The frames asked for, within the model's range (longer in a long video), rounded to its frame rule."""
    most = rules.max_long_frames if context_frames is not None else rules.max_frames
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
    return rules.nearest_frames(requested, most, window)


def _checked_forcing(
    request: VideoRequest, spec: ModelSpec, rules: VideoRules, frames: int, context: dict, steps: int, models: dict[str, ModelSpec],
) -> dict:
    """ar_step and causal_block_size checked against the chunks the video is made in, as fields."""
    ar_step = whole_number("ar_step", request.ar_step, 0)
    block = None if request.causal_block_size in (None, "", 0) else whole_number("causal_block_size", request.causal_block_size, 1)
    if not rules.asynchronous_forcing:
        if ar_step or block is not None:
            name = "ar_step" if ar_step else "causal_block_size"
            offering = _offering(models, lambda rules: rules.asynchronous_forcing)
            raise InvalidRequest(name, f"{spec.name} has no asynchronous mode; leave it at 0 or empty, or use {', '.join(offering)}")
        return dict(ar_step=0, causal_block_size=None)
    layout = chunk_layout(rules, frames, context["context_frames"], context["context_overlap"])
    ar_step, block = check_forcing(ar_step, block, steps, layout)
    return dict(ar_step=ar_step, causal_block_size=block)


def _checked_context(request: VideoRequest, context_frames: int | None, frames: int, rules: VideoRules) -> dict:
    """The context settings with defaults filled in and checked (window rounded to the frame rule), as fields."""
    if context_frames is None:
        return dict(context_frames=None, context_overlap=None, context_stride=None, context_blend="linear")
    if not rules.min_frames <= context_frames:
        raise InvalidRequest("context_frames", f"{context_frames} is too short; a window holds at least {rules.min_frames} frames")
    window = rules.nearest_frames(context_frames, rules.max_frames)
    history = rules.long_video is LongVideo.HISTORY_CHUNKS
    # By default neighbouring windows share a quarter of a window, in whole latent frames; a chunk continues from
    # the last quarter of the one before (4k+1 frames, as SkyReels' recommended 17 and 37 are).
    quarter = (window - 1) // 4 // rules.frame_multiple * rules.frame_multiple
    overlap = whole_number("context_overlap", request.context_overlap, quarter + 1 if history else quarter)
    lowest = 1 if history else 0
    if not lowest <= overlap < window - 1:
        raise InvalidRequest(
            "context_overlap", f"{overlap} is out of range; the overlap must be {lowest} or more and fewer than the "
            f"{'chunk' if history else 'window'}'s {window} frames (counted as {window - 1} after the first)"
        )
    stride = whole_number("context_stride", request.context_stride, 1)
    if stride < 1 or (history and stride != 1):
        raise InvalidRequest(
            "context_stride", f"{stride} is out of range; use 1" + ("" if history else " (neighbouring frames) or more")
        )
    blend = request.context_blend or "linear"
    settings = dict(context_frames=window, context_overlap=overlap, context_stride=stride, context_blend=blend)
    if not history:
        ContextWindows(  # says which field is wrong when the windows cannot be laid over this video
            latent_frames=rules.latent_frames(frames), length=rules.latent_frames(window),
            overlap=overlap // rules.frame_multiple, stride=stride, blend=blend,
        )
    return settings
