"""Upscaling a picture or a video with a learned upscaler from one file: ESRGAN, Real-ESRGAN (and its Compact
models), 4x-UltraSharp, SwinIR, HAT, DAT… spandrel reads the file and recognises the architecture and its scale from
the weights; we never describe an architecture by hand.

    1. the checked job (`UpscaleRequest.check`: the file is a picture or a video, the upscaler is one spandrel reads,
       the scale and tile are in range)   2. read the upscaler onto the device   3. upscale tile by tile
       (`tiling.py`), each frame of a video in turn   4. resize to the scale asked for   5. save (a video keeps its
       frame count, frame rate and sound)

Memory: an upscaler is small (ESRGAN 67 MB, SwinIR/HAT/DAT 50–170 MB) and is not one of the manager's models. It is
read for the job and dropped after it, beside whatever model the manager holds (which stays loaded: its next job
needs no reload). That is the one exception to "one model on the GPU at a time", kept small by tiling: the tile size
is chosen from the device memory free at that moment (`auto_tile`), only one tile is on the GPU, the full-size result
is gathered in RAM, and an out-of-memory halves the tile and runs the frame again. A scale other than the model's own
is reached by resizing its result (Lanczos): a 4× model at scale 2 makes 4× and scales down.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from pipelines.errors import InvalidRequest, JobStopped, NotEnoughMemory
from pipelines.hardware import free_vram_bytes, release_freed_memory
from pipelines.image.tiling import Tiling, upscale_tiled
from pipelines.jobs import QueuedJob
from pipelines.loading.model_store import ModelStore
from pipelines.media import MAX_IMAGE_PIXELS, MediaError, file_digest, image_size, probe_video, read_video
from pipelines.outputs import OutputStore, SavedOutput, run_record
from pipelines.request_values import number, whole_number

log = logging.getLogger(__name__)

# The folder results are saved under (outputs/upscaled/), and their `kind`.
UPSCALED_KIND = "upscaled"
MAX_SCALE = 8.0
MIN_TILE, MAX_TILE = 32, 2048
# Input pixels two neighbouring tiles share: wider than the reach of an ESRGAN's or a Compact model's convolutions at
# the tile's edge, so the blended seam matches a single pass (tests/pipelines/image/test_tiling.py measures it).
OVERLAP = 32
# Automatic tiles, largest first; on the CPU (whose RAM is plentiful and whose speed does not depend on tile size)
# the first that covers the picture, else CPU_TILE.
AUTO_TILES = (1024, 768, 512, 384, 256, 192, 128, 96, 64)
CPU_TILE = 512
# Device memory one output pixel of a tile needs at 16-bit: an estimate from ESRGAN's layers (two 64-channel maps at
# the output size, the RRDB's dense maps at the input size), not a measurement; an out-of-memory halves the tile.
BYTES_PER_OUTPUT_PIXEL = 384
# Share of the free device memory a tile may use (the allocator's fragmentation and cuDNN's workspace take the rest).
TILE_MEMORY_SHARE = 0.6
# A video's upscaled frames are held in RAM until they are encoded: at most this share of the RAM free at the check.
VIDEO_RAM_SHARE = 0.5
# Containers whose frames must have even sides (H.264 and VP9 in 4:2:0).
EVEN_SIDED = (".mp4", ".webm")


@dataclass(frozen=True)
class UpscalerInfo:
    """What spandrel recognised in an upscaler file."""

    name: str
    path: Path
    architecture: str
    scale: int
    purpose: str
    tags: tuple[str, ...]
    # spandrel's advice: "SUPPORTED", "DISCOURAGED", or "INTERNAL" (the model tiles itself: never tile it).
    tiling: str

    def record(self) -> dict:
        return {
            "file": self.name, "sha256": file_digest(self.path), "architecture": self.architecture, "scale": self.scale,
            "tags": list(self.tags),
        }


def offered_upscalers(store: ModelStore, demo_mode: bool) -> dict[str, Path]:
    """The upscalers to choose from, by name: every file in `models/upscalers/` (someone put it there to use it), and
    the demo's tiny ones in demo mode or when there is no real one."""
    real = store.upscaler_files()
    if real and not demo_mode:
        return real
    return {**store.demo_upscaler_files(), **real}


def read_upscaler(path: Path):
    """The upscaler in `path` as spandrel's ImageModelDescriptor, on the CPU. A pickled file is read with
    `weights_only` (tensors and plain containers, never code); ValueError with the reason when the file is not one."""
    import spandrel

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle and torch raise many types for a foreign or unsafe file
            raise ValueError(f"not a state dict that can be read safely (weights only): {type(error).__name__}") from None
    if not isinstance(state, dict):
        raise ValueError("the file holds no state dict")
    try:
        model = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(state))
    except spandrel.UnsupportedModelError:
        raise ValueError("spandrel does not recognise its architecture") from None
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise ValueError(f"a {model.architecture.name} {model.purpose} model, not an upscaler")
    if model.input_channels != 3 or model.output_channels != 3:
        raise ValueError(f"it takes {model.input_channels}-channel pictures; only RGB upscalers are used here")
    return model.eval()


def describe_upscaler(name: str, path: Path) -> UpscalerInfo:
    """What `path` holds; InvalidRequest naming `model` when it is no upscaler spandrel reads."""
    stat = Path(path).stat()
    return _described(name, Path(path).resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _described(name: str, path: Path, size_bytes: int, mtime_ns: int) -> UpscalerInfo:
    try:
        model = read_upscaler(path)
    except ValueError as error:
        raise InvalidRequest("model", f"{name} cannot be used: {error}") from None
    return UpscalerInfo(
        name, path, model.architecture.name, int(model.scale), model.purpose, tuple(model.tags), model.tiling.name,
    )


@dataclass(frozen=True)
class UpscaleRequest:
    """Inputs as given: the file to upscale (a picture or a video), the upscaler's name, the scale (0 or None: the
    model's own) and the tile size in input pixels (0: chosen from the free memory)."""

    file: str
    model: str
    scale: float | None = None
    tile: int = 0

    def check(self, store: ModelStore, demo_mode: bool) -> "UpscaleJob":
        """The job this request asks for; InvalidRequest names the first bad field."""
        if not self.file:
            raise InvalidRequest("file", "give a picture or a video to upscale")
        source = Path(str(self.file))
        if not source.is_file():
            raise InvalidRequest("file", f"{source.name} is not a file that can be read")
        offered = offered_upscalers(store, demo_mode)
        if self.model not in offered:
            choices = ", ".join(offered) or f"none (put upscaler files in {store.models_dir / 'upscalers'})"
            raise InvalidRequest("model", f"unknown upscaler {self.model!r}; choose one of {choices}")
        upscaler = describe_upscaler(self.model, offered[self.model])
        scale = number("scale", self.scale or None, float(upscaler.scale))
        if not 1.0 <= scale <= MAX_SCALE:
            raise InvalidRequest("scale", f"{scale:g} is out of range; use 1 to {MAX_SCALE:g} (0 for the model's own, {upscaler.scale})")
        tile = whole_number("tile", self.tile, 0)
        if tile and not MIN_TILE <= tile <= MAX_TILE:
            raise InvalidRequest("tile", f"{tile} is out of range; use 0 (automatic) or {MIN_TILE} to {MAX_TILE} pixels")
        media, size, frames, fps = _probe(source)
        suffix = source.suffix.lower() if media == "video" else ".png"
        output_size = _output_size(size, scale, suffix)
        if output_size[0] * output_size[1] > MAX_IMAGE_PIXELS:
            raise InvalidRequest(
                "scale", f"{size[0]}×{size[1]} at ×{scale:g} is {output_size[0]}×{output_size[1]}; results up to "
                f"{MAX_IMAGE_PIXELS // 1024**2} megapixels are made: use a smaller scale"
            )
        if media == "video":
            needed = frames * output_size[0] * output_size[1] * 3
            room = int(psutil.virtual_memory().available * VIDEO_RAM_SHARE)
            if needed > room:
                raise InvalidRequest(
                    "scale", f"{frames} frames at {output_size[0]}×{output_size[1]} need {needed / 1e9:.1f} GB of RAM "
                    f"until they are encoded; {room / 1e9:.1f} GB can be used now: use a smaller scale or a shorter clip"
                )
        request = replace(self, file=str(source), scale=scale, tile=tile)
        return UpscaleJob(request, source, media, size, output_size, frames, fps, upscaler, suffix)


@dataclass(frozen=True)
class UpscaleJob:
    """A checked request: the source (`media` "image" or "video", its size, frame count and rate), the size it is
    made at, the upscaler found in the file, and the suffix of the result (a video keeps its container)."""

    request: UpscaleRequest
    source: Path
    media: str
    size: tuple[int, int]
    output_size: tuple[int, int]
    frames: int
    fps: float
    upscaler: UpscalerInfo
    suffix: str


def _probe(source: Path) -> tuple[str, tuple[int, int], int, float]:
    """("image" or "video", (width, height), frames, fps) of a file; InvalidRequest naming `file` when it is neither.
    An animated GIF or WebP is a video; a one-frame one a picture."""
    try:
        size = image_size(source)
        with Image.open(source) as picture:
            frames = getattr(picture, "n_frames", 1)
        if frames == 1:
            return "image", size, 1, 0.0
    except MediaError:
        pass
    try:
        video = probe_video(source)
    except MediaError:
        raise InvalidRequest("file", f"{source.name} is neither a picture nor a video this app reads") from None
    # The frame count is known once the frames are read; the check counts them from the decoded clip's length.
    return "video", (video.width, video.height), _frame_count(source), video.fps


def _frame_count(source: Path) -> int:
    return len(read_video(source).frames)


def _output_size(size: tuple[int, int], scale: float, suffix: str) -> tuple[int, int]:
    """`scale` × `size`, rounded; one pixel less on an odd side where the container needs even sides."""
    width, height = (max(1, round(side * scale)) for side in size)
    if suffix in EVEN_SIDED:
        width, height = max(2, width - width % 2), max(2, height - height % 2)
    return width, height


@dataclass(frozen=True)
class UpscaleResult:
    output: SavedOutput | None
    stopped: bool = False
    seconds: float = 0.0
    # The tile size the job ran with (0: the whole picture in one pass), after any halving for memory.
    tile: int = 0


def auto_tile(free_bytes: int | None, model_scale: int, size: tuple[int, int]) -> int:
    """The tile (input pixels a side) for a device with `free_bytes` free (None: the CPU), 0 when the whole picture
    fits in one pass."""
    if free_bytes is None:
        return 0 if max(size) <= CPU_TILE else CPU_TILE
    budget = free_bytes * TILE_MEMORY_SHARE
    if size[0] * size[1] * model_scale**2 * BYTES_PER_OUTPUT_PIXEL <= budget:
        return 0
    return next((tile for tile in AUTO_TILES if (tile * model_scale) ** 2 * BYTES_PER_OUTPUT_PIXEL <= budget), AUTO_TILES[-1])


def upscale(job: UpscaleJob, manager, outputs: OutputStore, queued: QueuedJob) -> UpscaleResult:
    started = time.monotonic()
    upscaler = job.upscaler
    queued.report(0.0, f"Reading {upscaler.name}")

    # 2. The upscaler on the manager's device, beside the resident model (see the module's docstring).
    device = manager.execution_device()
    model = read_upscaler(upscaler.path)
    dtype = torch.float16 if device == "cuda" and model.supports_half else torch.float32
    model.to(torch.device(device)).to(dtype)
    tile = job.request.tile
    if not tile and upscaler.tiling != "INTERNAL":
        tile = auto_tile(free_vram_bytes(device), upscaler.scale, job.size)
    try:
        # 3-4. Each frame, tile by tile, then to the size asked for.
        frames, loop_count = _source_frames(job)
        made = np.empty((len(frames), job.output_size[1], job.output_size[0], 3), dtype=np.uint8)
        for index, frame in enumerate(frames):
            made[index], tile = _upscale_frame(model, frame, job, tile, device, dtype, queued, index, len(frames))
    except JobStopped:
        log.info("upscaling stopped; nothing saved")
        return UpscaleResult(None, stopped=True, seconds=time.monotonic() - started)
    finally:
        del model
        release_freed_memory()

    # 5. Save beside the other results, with what made it.
    parameters = _parameters(job, manager, outputs, tile, started)
    if job.media == "image":
        saved = outputs.save_image(Image.fromarray(made[0]), parameters, kind=UPSCALED_KIND)
    else:
        saved = outputs.save_video(
            made, job.fps, job.suffix, parameters, loop_count=loop_count or 0, kind=UPSCALED_KIND, audio_from=job.source,
        )
    queued.report(1.0, "Done")
    return UpscaleResult(saved, seconds=time.monotonic() - started, tile=tile)


def _source_frames(job: UpscaleJob) -> tuple[np.ndarray, int | None]:
    if job.media == "image":
        with Image.open(job.source) as picture:
            return np.asarray(picture.convert("RGB"))[None], None
    video = read_video(job.source)
    return video.frames, video.loop_count


def _upscale_frame(model, frame: np.ndarray, job: UpscaleJob, tile: int, device: str, dtype, queued: QueuedJob, index: int, count: int):
    """One frame (height, width, 3 uint8) upscaled and resized to the job's size, and the tile it ran with: an
    out-of-memory halves the tile and runs the frame again, down to MIN_TILE."""
    from pipelines.manager import is_out_of_memory

    picture = torch.from_numpy(np.array(frame)).permute(2, 0, 1).float() / 255.0

    def on_tile(done: int, total: int) -> None:
        queued.check_stop()
        where = f"frame {index + 1}/{count}, " if count > 1 else ""
        queued.report((index + done / total) / count, f"Upscaling: {where}tile {done}/{total}")

    while True:
        try:
            upscaled = upscale_tiled(picture, lambda part: model(part.to(device, dtype)), job.upscaler.scale, Tiling(tile, OVERLAP), on_tile)
            break
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            release_freed_memory()
            smaller = (tile or max(job.size)) // 2
            if smaller < MIN_TILE:
                raise NotEnoughMemory(
                    f"Out of memory upscaling with {job.upscaler.name} even in tiles of {MIN_TILE} pixels; unload the "
                    "model (System) or choose a smaller upscaler."
                ) from None
            log.info("out of memory upscaling with tiles of %s; trying %d", tile or "the whole picture", smaller)
            tile = smaller
    pixels = (upscaled.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if (pixels.shape[1], pixels.shape[0]) != job.output_size:
        pixels = np.asarray(Image.fromarray(pixels).resize(job.output_size, Image.Resampling.LANCZOS))
    return pixels, tile


def _parameters(job: UpscaleJob, manager, outputs: OutputStore, tile: int, started: float) -> dict:
    """The result's record: the request as it ran (what Reuse settings gives back), the source kept by hash, the
    upscaler's identity, the sizes and what the tiling did."""
    request = job.request
    width, height = job.output_size
    return {
        "model": request.model,
        "scale": request.scale,
        "tile": request.tile,
        "tile_used": tile,
        "overlap": OVERLAP if tile else 0,
        "source": outputs.keep_input(job.source),
        "source_kind": job.media,
        "source_size": list(job.size),
        "width": width,
        "height": height,
        "upscaler": job.upscaler.record(),
        **({"frames": job.frames, "fps": job.fps} if job.media == "video" else {}),
        **run_record(manager, started),
    }
