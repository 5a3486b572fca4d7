"""Wan2.1 VACE's inputs: reference images, an input video and a mask, checked before anything loads, turned into
the pipeline's `video`, `mask` and `reference_images`, and the input pasted back outside the mask afterwards.

What a request's files make:
- nothing, or reference images only: text (and references) to video;
- an input video, with a mask: the white part regenerated, the black part kept; without a mask the whole video is
  regenerated, the video guiding its layout and motion;
- an input image (the Video tab's image): placed as frame 0, every other frame generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipelines.catalog import ModelSpec, VideoRules, family_spec, video_models
from pipelines.errors import InvalidRequest
from pipelines.request_values import in_range, number
from pipelines.media import MediaError, VideoProbe, image_size, probe_video, read_video_frames

MAX_REFERENCE_IMAGES = 3
# Mask pixels at least this bright (of 255) are regenerated; the pipeline splits its mask at the same half-way point.
MASK_THRESHOLD = 128
# The frames to be generated after a given first frame are mid-grey, as in diffusers' WanVACEPipeline example.
GENERATED_GREY = 128
# A mask of another aspect than the video would be cropped differently and miss its region.
ASPECT_TOLERANCE = 0.01
# Frames read only to count them: the size does not matter.
COUNTING_SIZE = (16, 16)
# The pipeline's `conditioning_scale`: 1 as trained, 0 ignores the inputs; beyond 2 the hints swamp the video.
STRENGTH_LIMITS = (0.0, 2.0)
DEFAULT_STRENGTH = 1.0


@dataclass(frozen=True)
class VaceSources:
    """A request's VACE files as checked before its size and length are known."""

    video: VideoProbe | None
    # The mask's (width, height), and whether it is one picture for every frame.
    mask_size: tuple[int, int] | None
    mask_is_image: bool


@dataclass(frozen=True)
class VaceInputs:
    """The inputs of one job, at its size and length."""

    # (frames, height, width, 3) uint8: the input video, or the first frame followed by grey; None without either.
    frames: np.ndarray | None
    # (frames, height, width) bool: the pixels to keep (black in the mask); None when everything is generated.
    keep: np.ndarray | None
    references: tuple[Image.Image, ...]


def check_sources(request, spec: ModelSpec) -> VaceSources | None:
    """Which VACE inputs the request gives and whether together they make sense; None for a model without VACE
    inputs (refused when any is given). The input video's header is read, so its size can set the default size."""
    rules = family_spec(spec.family).video
    given = [name for name in ("reference_images", "video", "mask", "keep_unmasked") if getattr(request, name)]
    if not rules.vace_inputs:
        if given:
            vace_models = [s.id for s in video_models().values() if family_spec(s.family).video.vace_inputs]
            raise InvalidRequest(
                given[0], f"{spec.name} takes no reference images, input video or mask (nor keeps unmasked pixels); "
                f"choose a VACE model: {', '.join(vace_models)}"
            )
        return None
    references = request.reference_images
    if len(references) > MAX_REFERENCE_IMAGES:
        raise InvalidRequest(
            "reference_images", f"{len(references)} were given; {spec.name} takes at most {MAX_REFERENCE_IMAGES}"
        )
    for path in references:
        _readable_image("reference_images", path)
    if request.mask and not request.video:
        raise InvalidRequest("mask", "a mask applies to an input video, and no video was given; give a video with the mask, or remove the mask")
    if request.image and request.video:
        raise InvalidRequest(
            "image", "give an input image (it becomes the first frame) or an input video, not both; remove one of them"
        )
    if request.keep_unmasked and not (request.video or request.image):
        raise InvalidRequest("keep_unmasked", "there is no input video or image to keep pixels from; give one, or turn it off")
    if not request.video:
        return VaceSources(None, None, False)
    video = _probe("video", request.video)
    if not request.mask:
        return VaceSources(video, None, False)
    mask_is_image = _is_picture(request.mask)
    mask = _readable_image("mask", request.mask) if mask_is_image else _probe("mask", request.mask)
    mask_size = mask if mask_is_image else (mask.width, mask.height)
    if abs((mask_size[0] / mask_size[1]) / (video.width / video.height) - 1) > ASPECT_TOLERANCE:
        raise InvalidRequest(
            "mask", f"is {mask_size[0]}×{mask_size[1]} but the input video is {video.width}×{video.height}; "
            "give a mask of the video's shape (the same aspect), so it covers the same region once both are fitted"
        )
    return VaceSources(video, mask_size, mask_is_image)


def fitted_length(
    request, sources: VaceSources, rules: VideoRules, size: tuple[int, int], frames: int, frames_given: bool, fps: int
) -> tuple[int, str]:
    """The frame count the input video allows (the asked one, or the longest it covers when none was asked) and a note
    saying how the video and mask were sampled, cut and fitted; InvalidRequest when they are too short."""
    if sources is None:
        return frames, ""
    # diffusers 0.42.1's WanVACEPipeline pads the mask for the references with at most as many latent frames as the
    # video has, and fails on more.
    latent_frames = rules.latent_frames(frames)
    if len(request.reference_images) > latent_frames:
        least = (len(request.reference_images) - 1) * rules.frame_multiple + 1
        raise InvalidRequest(
            "reference_images", f"{len(request.reference_images)} reference images need a video of at least {least} frames; "
            f"{frames} were asked for (give fewer references or more frames)"
        )
    if sources.video is None:
        return frames, ""
    video = sources.video
    available = _frame_count("video", request.video, fps, rules.max_frames + 1)
    if available < rules.min_frames:
        raise InvalidRequest(
            "video", f"gives {available} frame(s) at {fps} fps; at least {rules.min_frames} are needed (a longer clip, or a higher fps)"
        )
    if frames > available:
        longest = (available - 1) // rules.frame_multiple * rules.frame_multiple + 1
        if frames_given:
            raise InvalidRequest(
                "frames", f"{frames} is more than the input video gives at {fps} fps ({available}); ask for at most {longest}, or a lower fps"
            )
        frames = longest
    counted = f"more than {rules.max_frames}" if available > rules.max_frames else str(available)
    notes = [
        f"Input video {video.width}×{video.height} at {video.fps:g} fps: sampled at {fps} fps, its first {frames} of "
        f"{counted} frames used, scaled and cropped to {size[0]}×{size[1]}."
    ]
    if request.mask:
        width, height = sources.mask_size
        if not sources.mask_is_image:
            mask_frames = _frame_count("mask", request.mask, fps, frames)
            if mask_frames < frames:
                raise InvalidRequest(
                    "mask", f"gives {mask_frames} frame(s) at {fps} fps but the input video's {frames} frames each need one; "
                    "give a mask video as long as the video, or one image for every frame"
                )
        how = "one image for every frame" if sources.mask_is_image else f"sampled at {fps} fps"
        resized = "" if (width, height) == (video.width, video.height) else f", scaled from {width}×{height} like the video"
        notes.append(f"Mask: {how}{resized}; white is regenerated, black kept.")
    return frames, " ".join(notes)


def load_inputs(request) -> VaceInputs:
    """The checked request's VACE files read at its size and length (decoded here, before the model loads)."""
    size, count = (request.width, request.height), request.frames
    references = tuple(_picture(path) for path in request.reference_images)
    if request.video:
        frames = _read("video", request.video, size, request.fps, count)
        keep = None
        if request.mask:
            if _is_picture(request.mask):
                mask = np.asarray(ImageOps.fit(_picture(request.mask).convert("L"), size, Image.Resampling.BILINEAR))
                keep = np.broadcast_to(mask < MASK_THRESHOLD, (count, *mask.shape))
            else:
                keep = _read("mask", request.mask, size, request.fps, count).mean(axis=-1) < MASK_THRESHOLD
        return VaceInputs(frames, keep, references)
    if request.image:
        first = np.asarray(ImageOps.fit(_picture(request.image), size, Image.Resampling.LANCZOS))
        frames = np.full((count, size[1], size[0], 3), GENERATED_GREY, dtype=np.uint8)
        frames[0] = first
        keep = np.zeros((count, size[1], size[0]), dtype=bool)
        keep[0] = True
        return VaceInputs(frames, keep, references)
    return VaceInputs(None, None, references)


def checked_strength(strength, spec: ModelSpec) -> float | None:
    """A VACE model's strength (1 when not given); None for other models, which refuse any other value."""
    if not family_spec(spec.family).video.vace_inputs:
        if strength not in (None, "") and number("vace_strength", strength, DEFAULT_STRENGTH) != DEFAULT_STRENGTH:
            raise InvalidRequest("vace_strength", f"{spec.name} has no VACE inputs to weigh; leave the strength at 1 or choose a VACE model")
        return None
    return in_range("vace_strength", strength, DEFAULT_STRENGTH, STRENGTH_LIMITS)


def pipeline_arguments(inputs: VaceInputs, strength: float) -> dict:
    """WanVACEPipeline's `video`, `mask` and `reference_images` for these inputs (as pictures, at the video's size),
    and their weight, `conditioning_scale`."""
    arguments: dict = {"reference_images": list(inputs.references) or None, "conditioning_scale": strength}
    if inputs.frames is not None:
        arguments["video"] = [Image.fromarray(frame) for frame in inputs.frames]
        if inputs.keep is not None:
            arguments["mask"] = [Image.fromarray(np.where(kept, 0, 255).astype(np.uint8)).convert("RGB") for kept in inputs.keep]
    return arguments


def paste_kept(frames: np.ndarray, inputs: VaceInputs) -> np.ndarray:
    """The generated frames with the input's own pixels wherever the mask keeps them, frame by frame."""
    if inputs.keep is None:
        return frames
    return np.where(inputs.keep[..., None], inputs.frames, frames)


def records(request, outputs) -> dict:
    """The input files as the result's parameters name them (name, SHA-256, the copy kept under `outputs`)."""
    return {
        "reference_images": [outputs.keep_input(path) for path in request.reference_images],
        "video": outputs.keep_input(request.video),
        "mask": outputs.keep_input(request.mask),
    }


def _readable_image(field: str, path) -> tuple[int, int]:
    try:
        return image_size(Path(path))
    except MediaError as error:
        raise InvalidRequest(field, str(error)) from None


def _probe(field: str, path) -> VideoProbe:
    try:
        return probe_video(Path(path))
    except MediaError as error:
        raise InvalidRequest(field, str(error)) from None


def _frame_count(field: str, path, fps: int, most: int) -> int:
    return len(_read(field, path, COUNTING_SIZE, fps, most))


def _read(field: str, path, size, fps: int, most: int) -> np.ndarray:
    try:
        return read_video_frames(Path(path), size, fps, most)
    except MediaError as error:
        raise InvalidRequest(field, str(error)) from None


def _is_picture(path) -> bool:
    """A still picture (one frame), as opposed to a video or an animated GIF/WebP."""
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) == 1
    except (OSError, Image.DecompressionBombError):
        return False


def _picture(path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")
