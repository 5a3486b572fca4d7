"""Wan2.1 VACE's inputs: reference images, an input video and a mask, checked and read once when the request is
checked (before anything loads), turned into the pipeline's `video`, `mask` and `reference_images`, and the input
pasted back outside the mask afterwards.

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

from pipelines.catalog import FamilySpec, ModelSpec, VideoDefaults, VideoRules
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
# Frames read only to count them (the tab's fitting to a clip): the size does not matter.
COUNTING_SIZE = (16, 16)
# The pipeline's `conditioning_scale`: 1 as trained, 0 ignores the inputs; beyond 2 the hints swamp the video.
STRENGTH_LIMITS = (0.0, 2.0)
DEFAULT_STRENGTH = 1.0


@dataclass(frozen=True)
class VaceSources:
    """A request's VACE files as read before its size and length are known: the pictures whole, the videos' headers."""

    references: tuple[Image.Image, ...]
    video: VideoProbe | None
    # The mask: one picture for every frame, or a video's header.
    mask_picture: Image.Image | None
    mask_video: VideoProbe | None

    @property
    def mask_size(self) -> tuple[int, int] | None:
        if self.mask_picture is not None:
            return self.mask_picture.size
        return (self.mask_video.width, self.mask_video.height) if self.mask_video is not None else None


@dataclass(frozen=True)
class VaceInputs:
    """The inputs of one job, at its size and length."""

    # (frames, height, width, 3) uint8: the input video, or the first frame followed by grey; None without either.
    frames: np.ndarray | None
    # (frames, height, width) bool: the pixels to keep (black in the mask); None when everything is generated.
    keep: np.ndarray | None
    references: tuple[Image.Image, ...]


def check_sources(request, spec: ModelSpec, rules: VideoRules, vace_models: list[str]) -> VaceSources | None:
    """Which VACE inputs the request gives and whether together they make sense; None for a model without VACE
    inputs (refused when any is given, naming `vace_models`, the ones that take them). The pictures are read whole
    and the videos' headers, so the input video's size can set the default size."""
    given = [name for name in ("reference_images", "video", "mask", "keep_unmasked") if getattr(request, name)]
    if not rules.vace_inputs:
        if given:
            raise InvalidRequest(
                given[0], f"{spec.name} takes no reference images, input video or mask (nor keeps unmasked pixels); "
                f"choose a VACE model: {', '.join(vace_models)}"
            )
        return None
    if len(request.reference_images) > MAX_REFERENCE_IMAGES:
        raise InvalidRequest(
            "reference_images", f"{len(request.reference_images)} were given; {spec.name} takes at most {MAX_REFERENCE_IMAGES}"
        )
    references = tuple(read_picture("reference_images", path) for path in request.reference_images)
    if request.mask and not request.video:
        raise InvalidRequest("mask", "a mask applies to an input video, and no video was given; give a video with the mask, or remove the mask")
    if request.image and request.video:
        raise InvalidRequest(
            "image", "give an input image (it becomes the first frame) or an input video, not both; remove one of them"
        )
    if request.keep_unmasked and not (request.video or request.image):
        raise InvalidRequest("keep_unmasked", "there is no input video or image to keep pixels from; give one, or turn it off")
    if not request.video:
        return VaceSources(references, None, None, None)
    video = _probe("video", request.video)
    if not request.mask:
        return VaceSources(references, video, None, None)
    if _is_picture(request.mask):
        sources = VaceSources(references, video, read_picture("mask", request.mask), None)
    else:
        sources = VaceSources(references, video, None, _probe("mask", request.mask))
    width, height = sources.mask_size
    if abs((width / height) / (video.width / video.height) - 1) > ASPECT_TOLERANCE:
        raise InvalidRequest(
            "mask", f"is {width}×{height} but the input video is {video.width}×{video.height}; "
            "give a mask of the video's shape (the same aspect), so it covers the same region once both are fitted"
        )
    return sources


@dataclass(frozen=True)
class JobShape:
    """The size, length and rate a VACE job's inputs are read at, and whether the length was asked for."""

    size: tuple[int, int]
    frames: int
    frames_given: bool
    fps: int


def read_inputs(
    request, sources: VaceSources, rules: VideoRules, shape: JobShape, start_image: Image.Image | None
) -> tuple[VaceInputs, int, str]:
    """The inputs at the job's size and length, each file decoded once, here; the frame count the input video allows
    (the asked one, or the longest it covers when none was asked) and a note saying how the video and mask were
    sampled, cut and fitted. InvalidRequest when they are too short."""
    frames = shape.frames
    # diffusers 0.42.1's WanVACEPipeline pads the mask for the references with at most as many latent frames as the
    # video has, and fails on more.
    if len(sources.references) > rules.latent_frames(frames):
        least = (len(sources.references) - 1) * rules.frame_multiple + 1
        raise InvalidRequest(
            "reference_images", f"{len(sources.references)} reference images need a video of at least {least} frames; "
            f"{frames} were asked for (give fewer references or more frames)"
        )
    if sources.video is None:
        if start_image is None:
            return VaceInputs(None, None, sources.references), frames, ""
        return _first_frame_inputs(start_image, shape.size, frames, sources.references), frames, ""
    # One read at the job's size: up to one frame past the longest video, to say how long the clip is.
    clip = _read("video", request.video, shape.size, shape.fps, rules.max_frames + 1)
    frames = _frames_from_clip(len(clip), rules, shape)
    video = sources.video
    counted = f"more than {rules.max_frames}" if len(clip) > rules.max_frames else str(len(clip))
    notes = [
        f"Input video {video.width}×{video.height} at {video.fps:g} fps: sampled at {shape.fps} fps, its first {frames} of "
        f"{counted} frames used, scaled and cropped to {shape.size[0]}×{shape.size[1]}."
    ]
    keep = None
    if request.mask:
        keep = _kept_pixels(request.mask, sources, shape, frames)
        how = "one image for every frame" if sources.mask_picture is not None else f"sampled at {shape.fps} fps"
        width, height = sources.mask_size
        resized = "" if (width, height) == (video.width, video.height) else f", scaled from {width}×{height} like the video"
        notes.append(f"Mask: {how}{resized}; white is regenerated, black kept.")
    # A copy when cut, so the frames past the job's length are not held with the job.
    used = clip if frames == len(clip) else clip[:frames].copy()
    return VaceInputs(used, keep, sources.references), frames, " ".join(notes)


def fitted_clip(path, family: FamilySpec, defaults: VideoDefaults, fps: int) -> tuple[int, int, int]:
    """The width, height and frames a clip gives a VACE job that asks for none: its aspect at about the model's default
    pixel count, and its length at `fps` when shorter than the model's default."""
    rules = family.video
    video = _probe("video", path)
    width, height = family.fitted_size((video.width, video.height), defaults.width * defaults.height)
    available = len(_read("video", path, COUNTING_SIZE, fps, rules.max_frames + 1))
    return width, height, _frames_from_clip(available, rules, JobShape((width, height), defaults.frames, False, fps))


def _frames_from_clip(available: int, rules: VideoRules, shape: JobShape) -> int:
    """The frames a clip of `available` frames (at the job's fps) gives: the asked ones, or when none were asked the
    longest it covers, if shorter than the default."""
    if available < rules.min_frames:
        raise InvalidRequest(
            "video", f"gives {available} frame(s) at {shape.fps} fps; at least {rules.min_frames} are needed (a longer clip, or a higher fps)"
        )
    if shape.frames <= available:
        return shape.frames
    longest = (available - 1) // rules.frame_multiple * rules.frame_multiple + 1
    if shape.frames_given:
        raise InvalidRequest(
            "frames", f"{shape.frames} is more than the input video gives at {shape.fps} fps ({available}); ask for at most {longest}, or a lower fps"
        )
    return longest


def _kept_pixels(path, sources: VaceSources, shape: JobShape, frames: int) -> np.ndarray:
    """(frames, height, width) bool: black in the mask, fitted like the video."""
    if sources.mask_picture is not None:
        mask = np.asarray(ImageOps.fit(sources.mask_picture.convert("L"), shape.size, Image.Resampling.BILINEAR))
        return np.broadcast_to(mask < MASK_THRESHOLD, (frames, *mask.shape))
    mask = _read("mask", path, shape.size, shape.fps, frames)
    if len(mask) < frames:
        raise InvalidRequest(
            "mask", f"gives {len(mask)} frame(s) at {shape.fps} fps but the input video's {frames} frames each need one; "
            "give a mask video as long as the video, or one image for every frame"
        )
    return mask.mean(axis=-1) < MASK_THRESHOLD


def _first_frame_inputs(picture: Image.Image, size: tuple[int, int], count: int, references) -> VaceInputs:
    """The picture fitted as frame 0 (kept), every later frame grey (generated)."""
    frames = np.full((count, size[1], size[0], 3), GENERATED_GREY, dtype=np.uint8)
    frames[0] = np.asarray(ImageOps.fit(picture, size, Image.Resampling.LANCZOS))
    keep = np.zeros((count, size[1], size[0]), dtype=bool)
    keep[0] = True
    return VaceInputs(frames, keep, references)


def checked_strength(vace_strength, spec: ModelSpec, rules: VideoRules) -> float | None:
    """A VACE model's strength (1 when not given); None for other models, which refuse any other value."""
    if not rules.vace_inputs:
        if vace_strength not in (None, "") and number("vace_strength", vace_strength, DEFAULT_STRENGTH) != DEFAULT_STRENGTH:
            raise InvalidRequest("vace_strength", f"{spec.name} has no VACE inputs to weigh; leave the strength at 1 or choose a VACE model")
        return None
    return in_range("vace_strength", vace_strength, DEFAULT_STRENGTH, STRENGTH_LIMITS)


def pipeline_arguments(inputs: VaceInputs, vace_strength: float) -> dict:
    """WanVACEPipeline's `video`, `mask` and `reference_images` for these inputs (as pictures, at the video's size),
    and their weight (the pipeline's `conditioning_scale`)."""
    arguments: dict = {"reference_images": list(inputs.references) or None, "conditioning_scale": vace_strength}
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


def read_picture(field: str, path) -> Image.Image:
    """The picture in RGB, its size checked first from the header (InvalidRequest naming `field` when unreadable or
    too big)."""
    try:
        image_size(Path(path))
    except MediaError as error:
        raise InvalidRequest(field, str(error)) from None
    with Image.open(path) as image:
        return image.convert("RGB")


def _probe(field: str, path) -> VideoProbe:
    try:
        return probe_video(Path(path))
    except MediaError as error:
        raise InvalidRequest(field, str(error)) from None


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
