"""Text or image to video (Wan2.1, LTX-Video, FramePack), and VACE's references, video editing with a mask and first
frame (pipelines/video/vace.py): one checked job in, one saved video out.

    1. the checked job (`VideoRequest.check` makes it once: frames rounded to the model's rule and the rounding said,
       the input files read)   2. load (manager.use)   3. set the flow shift (or the model's fixed schedule)
    4. denoise (Stop, progress and a latent preview between steps; a model with an upsample pass denoises at a
       smaller size, doubles the latents with its latent upsampler and denoises them briefly again)   5. decode
    6. keep the input's unmasked pixels (VACE, optional)   7. interpolate frames (optional)   8. export and save

FramePack denoises and decodes section after section in one pipeline call; after each section the video so far is
written as a playable partial file (replaced whole each time, removed when the job ends) and handed to the UI.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import diffusers
import numpy as np
import torch
from PIL import Image

from pipelines.video import vace
from pipelines.speed.attention import apply_attention
from pipelines.catalog import FamilySpec, LongVideo, ModelSpec, Task
from pipelines.loading.loaders import LATENT_UPSAMPLER
from pipelines.loading.checkpoint_files import checkpoint_record
from pipelines.speed.compiled_blocks import compiled_blocks, inductor_cache_dir
from pipelines.video.context_windows import windowed_transformer
from pipelines.video.enhance import enhanced_attention
from pipelines.errors import JobStopped
from pipelines.video.interpolation import CHOICES as INTERPOLATIONS
from pipelines.video.interpolation import interpolate, weights_record
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.manager import ModelManager
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, run_record
from pipelines.video.sections import PartialVideo
from pipelines.speed.step_cache import step_cache
from pipelines.video.video_export import ExportedVideo, export_video
# The request is imported beside its runner by scripts and tests (`from pipelines.video.video_runner import VideoRequest`).
from pipelines.video.video_request import VideoJob, VideoRequest, grows_backwards

__all__ = ["PREVIEW_EVERY", "VideoJob", "VideoRequest", "VideoResult", "generate_video", "latent_preview"]

log = logging.getLogger(__name__)

# A preview every this many steps (and after the last): decoding it costs nothing next to a step.
PREVIEW_EVERY = 2

PreviewCallback = Callable[[Image.Image, str], None]
# The playable video so far of a model made in sections, after each section.
PartialCallback = Callable[[Path, str], None]


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


# LTX's condition pipeline (LTX-Video 0.9.7) differs from the family's text-to-video pipeline in two ways that matter
# here. It takes the start picture itself (`image`: a condition at frame 0), so it needs no image-to-video sibling. And
# it hands its scheduler a timestep list without a `mu` (`retrieve_timesteps(scheduler, steps, device, timesteps)`: the
# model's own list, or its linear-quadratic one), which a scheduler that shifts dynamically refuses ("`mu` must be
# passed") and one with a terminal shift would stretch away from the list. So it runs with the scheduler diffusers'
# conversion saved for 0.9.5 and 0.9.7 (scripts/convert_ltx_to_diffusers.py: `FlowMatchEulerDiscreteScheduler(
# use_dynamic_shifting=False)`, i.e. shift 1 and no terminal stretch): the list runs as given.
_CONDITION_PIPELINES = frozenset({"LTXConditionPipeline"})


@contextmanager
def _flow_shift(pipe, shift: float | None, fixed_schedule: bool = False):
    """The model's scheduler with `shift` for one job, its own put back afterwards. UniPC-style schedulers (Wan) call
    it `flow_shift`; flow-matching Euler (LTX) calls it `shift` and must stop deriving one from the video's length.
    With `fixed_schedule` (a condition pipeline, see above) the scheduler never shifts dynamically nor stretches."""
    original = pipe.scheduler
    config = original.config
    overrides = {}
    if fixed_schedule:
        overrides = {"use_dynamic_shifting": False, "shift_terminal": None, "shift": 1.0 if shift is None else shift}
    elif shift is not None:
        overrides = {"flow_shift": shift} if "flow_shift" in config else {"shift": shift, "use_dynamic_shifting": False}
    if overrides:
        pipe.scheduler = type(original).from_config(config, **overrides)
    try:
        yield
    finally:
        pipe.scheduler = original


def _for_task(pipe, family: FamilySpec, from_image: bool, spec: ModelSpec):
    """The loaded pipeline when it takes the start picture itself (an image-to-video model, a condition pipeline), or
    the family's image-to-video sibling sharing its components (nothing more in memory)."""
    if not from_image or spec.task is Task.IMAGE_TO_VIDEO or spec.pipeline_class in _CONDITION_PIPELINES:
        return pipe
    sibling = getattr(diffusers, family.video.image_to_video_pipeline_class).from_pipe(pipe)
    sibling.set_progress_bar_config(disable=True)
    return sibling


@dataclass(frozen=True)
class DenoisePass:
    """One pipeline call of a job: the size it denoises at and the steps it runs."""

    name: str
    width: int
    height: int
    steps: int


def _authors_timesteps(job: VideoJob) -> tuple[float, ...]:
    """The model's own schedule (LTX-Video 0.9.7 distilled), when the job runs its length in steps with no flow shift of
    its own; empty otherwise, and the pipeline makes its schedule for the steps asked."""
    timesteps, request = job.spec.defaults.timesteps, job.request
    return timesteps if timesteps and request.steps == len(timesteps) and request.flow_shift is None else ()


def _passes(job: VideoJob) -> tuple[DenoisePass, ...]:
    """The job's pipeline calls: one at the asked size; or, for a model with an upsample pass, the base pass at its
    fraction of the asked size (rounded down to the family's size multiple, as diffusers' LTX-Video example rounds to
    the VAE's) and the second at twice that."""
    request, upsample = job.request, job.spec.defaults.upsample
    base_steps = len(_authors_timesteps(job)) or request.steps
    if upsample is None:
        return (DenoisePass("base", request.width, request.height, base_steps),)
    multiple = job.family.size_multiple
    width, height = (max(multiple, int(side * upsample.base_scale) // multiple * multiple) for side in (request.width, request.height))
    return DenoisePass("base", width, height, base_steps), DenoisePass("upsampled", 2 * width, 2 * height, upsample.steps)


def latent_preview(latents: torch.Tensor, job: VideoJob, size: tuple[int, int] | None = None) -> Image.Image:
    """A glimpse of the video being denoised: the first latent frame's first three channels, each stretched to the
    full range, as an RGB picture at the video's size. Unpacks LTX's token sequence (patch 1: one token per latent
    pixel) at `size`, the (width, height) the pass denoises at (the video's, unless a pass runs at another)."""
    request, rules = job.request, job.rules
    width, height = size or (request.width, request.height)
    sample = latents[0].detach().float().cpu()
    if sample.dim() == 2:  # (frames·height·width tokens, channels)
        grid = (rules.latent_frames(request.frames), height // rules.pixels_per_token, width // rules.pixels_per_token)
        sample = sample.reshape(*grid, -1).permute(3, 0, 1, 2)
    # VACE puts one latent frame per reference image before the video's first.
    picture = sample[:3, len(request.reference_images)]  # (3, height, width)
    low = picture.amin(dim=(1, 2), keepdim=True)
    high = picture.amax(dim=(1, 2), keepdim=True)
    picture = ((picture - low) / (high - low).clamp(min=1e-6) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(picture).resize((request.width, request.height), Image.Resampling.BILINEAR)


def _start_image(job: VideoJob) -> Image.Image:
    """The start picture at the video's size."""
    size = (job.request.width, job.request.height)
    return job.start_image if job.start_image.size == size else job.start_image.resize(size, Image.Resampling.LANCZOS)


def _resized(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frames (count, height, width, 3) at another size, as the last step of diffusers' two-pass LTX-Video example
    (`frame.resize((expected_width, expected_height))`: PIL's bicubic; here bicubic with antialiasing in torch)."""
    if frames.shape[1:3] == (height, width):
        return frames
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    tensor = torch.nn.functional.interpolate(tensor, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return tensor.permute(0, 2, 3, 1).numpy()


def _run_passes(pipe, runner, job: VideoJob, kwargs: dict) -> np.ndarray:
    """The frames, as diffusers' LTX-Video page runs 0.9.7 distilled: one call; or the base pass's latents, doubled per
    side by the latent upsampler (`pipe_upsample(latents=..., adain_factor=...)`), denoised again at that size from
    `denoise_strength` on the upsample schedule, decoded, and resized to the asked size. Each call draws its noise from
    a generator seeded with the job's seed, as the example does."""
    seed, passes = job.seed, _passes(job)

    def generator():
        return torch.Generator("cpu").manual_seed(seed)

    torch.manual_seed(seed)
    if len(passes) == 1:
        return runner(**kwargs, output_type="np", generator=generator()).frames[0]
    base, upsampled = passes
    upsample = job.spec.defaults.upsample
    latents = runner(**{**kwargs, "width": base.width, "height": base.height}, output_type="latent", generator=generator()).frames
    upsampler = getattr(diffusers, job.spec.companion.upsampler_pipeline_class)(vae=pipe.vae, latent_upsampler=getattr(pipe, LATENT_UPSAMPLER))
    latents = upsampler(latents=latents, adain_factor=upsample.adain_factor, output_type="latent").frames
    frames = runner(
        **{**kwargs, "width": upsampled.width, "height": upsampled.height, "timesteps": list(upsample.timesteps)},
        latents=latents, denoise_strength=upsample.denoise_strength, output_type="np", generator=generator(),
    ).frames[0]
    return _resized(frames, job.request.width, job.request.height)


def _make_frames(manager, job: VideoJob, workload, queued: QueuedJob, kwargs, records: dict, partial: PartialVideo | None) -> np.ndarray:
    """The frames, from the job's seed's noise, with its flow shift, step cache and compiled blocks for this job
    only; `records` receives what the cache did ("step_cache"), what compiling cost ("compiled_blocks") and what
    Enhance-A-Video did ("enhance"). A model
    made in sections writes the video so far to `partial` after each section; the partial file is gone when this
    returns, whatever happened."""
    request, spec = job.request, job.spec
    with (
        manager.use(spec.id, workload, on_progress=queued.report) as pipe,
        _flow_shift(pipe, request.flow_shift, fixed_schedule=spec.pipeline_class in _CONDITION_PIPELINES),
        windowed_transformer(pipe.transformer, job.context_windows()),
        compiled_blocks(pipe, spec.family, request.compile == "on", inductor_cache_dir(manager.store.models_dir)) as compiled,
        step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache,
        partial.watching(pipe) if partial else nullcontext(),
    ):
        queued.check_stop()
        attention = apply_attention(pipe.transformer, request.attention, manager.preset.attention, manager.execution_device())
        runner = _for_task(pipe, job.family, "image" in kwargs, spec)
        # After the attention backend is set: the wrappers keep the processors as the backend left them.
        with enhanced_attention(pipe.transformer, spec.family, request.enhance_weight) as enhance:
            frames = _run_passes(pipe, runner, job, kwargs)
    records.update(
        step_cache=cache.record(), compiled_blocks=compiled.record(), compile_note=compiled.note(), attention=attention,
        enhance=enhance.record(),
    )
    return frames


def _workload(job: VideoJob) -> Workload:
    """What the transformer sees at once, for the manager's memory plan. In context windows it sees one window at a
    time; VACE puts each reference image before the video as one more latent frame (frame_multiple video frames); a
    model made in sections sees one section and its clean and compressed history (about 2.5 latent frames)."""
    request, rules, family = job.request, job.rules, job.family
    denoised_frames = min(request.frames, request.context_frames or request.frames) + len(request.reference_images) * rules.frame_multiple
    if job.sections():
        denoised_frames = (request.latent_window_size + 2) * rules.frame_multiple + 1
    # A model with an upsample pass is largest in its second pass, at twice the base pass's size.
    width, height = max(((p.width, p.height) for p in _passes(job)), key=lambda size: size[0] * size[1])
    tokens = rules.denoiser_tokens(width, height, denoised_frames) + family.text_tokens
    return Workload(tokens, family.denoiser_batch(request.guidance))


def _pipeline_arguments(job: VideoJob, on_step_end) -> dict:
    """The pipeline call's arguments for this job (the seed's generator and output type are added by the call)."""
    request, rules = job.request, job.rules
    kwargs = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        width=request.width,
        height=request.height,
        num_frames=request.frames,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        callback_on_step_end=on_step_end,
        **dict(job.spec.defaults.call_kwargs),
    )
    if _authors_timesteps(job):
        kwargs["timesteps"] = list(_authors_timesteps(job))
    if rules.fps_argument:
        kwargs[rules.fps_argument] = request.fps
    if rules.long_video is LongVideo.HISTORY_CHUNKS and request.context_frames is not None:
        kwargs.update(base_num_frames=request.context_frames, overlap_history=request.context_overlap)
    if rules.asynchronous_forcing:
        # Always given, 1 included: the pipeline stores a block size in the transformer's config, where a later job
        # without one would find it.
        kwargs.update(ar_step=request.ar_step, causal_block_size=request.causal_block_size)
    if job.vace is not None:
        kwargs.update(vace.pipeline_arguments(job.vace, request.vace_strength))
    elif job.start_image is not None:
        kwargs["image"] = _start_image(job)
    if job.sections():
        # diffusers counts sections as ceil(num_frames / window frames): ask for exactly ours.
        window_frames = (request.latent_window_size - 1) * rules.frame_multiple + 1
        kwargs.update(num_frames=job.sections() * window_frames, latent_window_size=request.latent_window_size)
    return kwargs


def generate_video(
    job: VideoJob, manager: ModelManager, outputs: OutputStore, queued: QueuedJob, on_preview: PreviewCallback | None = None,
    on_partial: PartialCallback | None = None,
) -> VideoResult:
    # 1. The job was checked, and its input files read, when it was made.
    request, spec, seed = job.request, job.spec, job.seed
    started = time.monotonic()
    queued.report(0.0, f"Loading {spec.name}")

    # Calls per chunk: the steps, or the rounds of asynchronous diffusion forcing (the first chunk takes the most).
    rounds_per_chunk = job.denoising_rounds()[0]
    sections = job.sections()
    passes = _passes(job)
    steps_done = 0
    # The timesteps each pass ran, as the pipeline reported them: what the saved record says was run.
    schedule: dict[str, list[float]] = {}

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        nonlocal steps_done
        queued.check_stop()
        steps_done += 1
        text = f"Step {step + 1}/{rounds_per_chunk}"
        if sections:
            text = f"Section {(steps_done - 1) // request.steps + 1}/{sections}, step {step + 1}/{request.steps}"
        fraction = steps_done / (request.steps * sections) if sections else (step + 1) / rounds_per_chunk
        current, last_step = passes[0], rounds_per_chunk
        if len(passes) > 1:
            current = passes[0] if steps_done <= passes[0].steps else passes[1]
            text = f"{'Base' if current is passes[0] else 'Upsampled'} pass, step {step + 1}/{current.steps}"
            fraction, last_step = steps_done / sum(p.steps for p in passes), current.steps
        # Diffusion forcing passes one timestep per latent frame: the schedule records the noisiest frame's.
        noisiest = timestep.max() if torch.is_tensor(timestep) else timestep
        schedule.setdefault(current.name, []).append(round(float(noisiest), 3))
        queued.report(fraction * 0.95, text)
        if on_preview is not None and ((step + 1) % PREVIEW_EVERY == 0 or step + 1 == last_step):
            on_preview(latent_preview(callback_kwargs["latents"], job, (current.width, current.height)), text)
        return callback_kwargs

    # 2-5. Load (the manager plans memory for this size and length, or refuses before anything runs), denoise, decode.
    # Noise comes from a CPU generator so a seed gives the same video whatever the device and placement.
    workload = _workload(job)
    kwargs = _pipeline_arguments(job, on_step_end)
    interpolation = INTERPOLATIONS[request.interpolation]

    def on_pair(done: int, pairs: int) -> None:
        queued.check_stop()
        queued.report(0.96 + 0.03 * done / pairs, f"Interpolating frames: {done}/{pairs} pairs")

    partial = None
    if sections:
        partial = PartialVideo(
            outputs, f"{spec.id}-{seed}", request.fps, sections, grows_backwards(spec), on_partial=on_partial, on_preview=on_preview,
        )
    records: dict = {}

    def attempt() -> np.ndarray:
        nonlocal steps_done
        steps_done = 0  # a retry after an out-of-memory starts the sections again
        schedule.clear()
        return _make_frames(manager, job, workload, queued, kwargs, records, partial)

    try:
        decoded = with_one_retry(queued, attempt)
        frames = (np.clip(decoded, 0.0, 1.0) * 255).round().astype(np.uint8)
        # 6. Keep the input's own pixels outside the mask, exactly (the VAE's round trip would blur them).
        if job.vace is not None and request.keep_unmasked:
            frames = vace.paste_kept(frames, job.vace)

        # 7. Interpolate: more frames per second over the same span (a learned interpolator on the manager's device).
        queued.report(0.96, "Interpolating frames" if interpolation.factor > 1 else "Encoding")
        frames = interpolate(frames, interpolation, manager.store.models_dir, manager.execution_device(), on_pair)
    except JobStopped:
        log.info("video stopped before it was finished; nothing saved")
        return VideoResult(None, stopped=True, seconds=time.monotonic() - started, frames_note=job.frames_note())

    # 8. Export and save with everything needed to reproduce it.
    records["schedule"] = schedule
    video = export_video(frames, request.export, _parameters(job, manager, outputs, records, interpolation, len(frames), started), outputs)
    queued.report(1.0, "Done")
    return VideoResult(
        video, seconds=time.monotonic() - started, seed=seed, frames_note=job.frames_note(), length_note=job.length_note(),
        compile_note=records["compile_note"], input_note=job.input_note,
    )


def _parameters(job: VideoJob, manager: ModelManager, outputs: OutputStore, records: dict, interpolation, frame_count: int, started: float) -> dict:
    """The saved video's record: the request as it ran, the kept inputs, what the run did, everything to reproduce it."""
    request, spec = job.request, job.spec
    return {
        **{
            key: value for key, value in asdict(request).items()
            if key not in ("seed", "image", "export", "cache_method", "cache_threshold", "reference_images", "video", "mask")
        },
        # Where the model's frame rule or a short input video changed the length; how the VACE inputs were fitted.
        "frames_requested": job.frames_requested,
        "input_note": job.input_note,
        "image": outputs.keep_input(request.image) if job.start_image else None,
        **(vace.records(request, outputs) if job.rules.vace_inputs else {}),
        # The model's own call settings beside the user's values (LTX: decode noise, guidance rescale).
        "model_settings": dict(job.spec.defaults.call_kwargs),
        # The timesteps each pass ran, as the pipeline reported them ("base", and "upsampled" for a second pass).
        "schedule": records["schedule"],
        "upsample": _upsample_record(job),
        "step_cache": records["step_cache"],
        # Whether the blocks ran compiled, and what compiling cost in this job (0 graphs: reused).
        "compiled_blocks": records["compiled_blocks"],
        "attention": records["attention"],
        # Enhance-A-Video: the weight (also among the request's values) and what it did.
        "enhance": records["enhance"],
        "seed": job.seed,
        "frames_note": job.frames_note(),
        "length_note": job.length_note(),
        "transformer_passes": job.transformer_passes()[1],
        "interpolation_weights": weights_record(interpolation, manager.store.models_dir),
        "frames_after_interpolation": frame_count,
        "fps_after_interpolation": request.fps * interpolation.factor,
        "model_name": spec.name,
        "repo": spec.repo or (manager.store.catalog.spec(spec.base).repo if spec.base else None),
        "checkpoint": checkpoint_record(spec.checkpoint),
        "demo": spec.demo,
        **run_record(manager, started),
    }


def _upsample_record(job: VideoJob) -> dict | None:
    """What a model's upsample pass did: the upsampler, the sizes each pass ran at and the second pass's settings."""
    upsample = job.spec.defaults.upsample
    if upsample is None:
        return None
    base, upsampled = _passes(job)
    companion = job.spec.companion
    return {
        "upsampler": companion.repo or companion.name,
        "base_size": [base.width, base.height],
        "upsampled_size": [upsampled.width, upsampled.height],
        "timesteps": list(upsample.timesteps),
        "denoise_strength": upsample.denoise_strength,
        "adain_factor": upsample.adain_factor,
        "resized_to": [job.request.width, job.request.height],
    }
