"""ControlNets and IP-Adapters for text to image: their inputs checked once (with the image request), the control
pictures prepared, and the keywords the family's ControlNet pipeline takes.

A job's controls are lists of equal length — a picture, its type, its strength, where in the schedule it starts and
ends — or one value for all of them. Each type is served by the ControlNet the catalog names for the model
(`pipelines/catalog/controls.py`); a union ControlNet gets the type's mode. A control picture of another size than
the job's is resized to it, with a note. The IP-Adapter takes one or more reference pictures and a scale (0: the
adapter runs but changes nothing, so the image is exactly the one made without it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from pipelines.catalog import ModelSpec
from pipelines.catalog.controls import CONTROL_PIPELINES, ControlNetSpec, IPAdapterSpec, control_types, ip_adapters, preparation
from pipelines.errors import InvalidRequest
from pipelines.image.control_images import DEFAULT_CANNY_HIGH, DEFAULT_CANNY_LOW, canny_edges, estimate_depth, fit, installed_depth_estimator
from pipelines.loading.loaders import NO_ATTACHMENTS, Attachments
from pipelines.media import MediaError, image_size

MAX_CONTROLS = 4
MAX_REFERENCE_IMAGES = 4
STRENGTH_LIMITS = (0.0, 2.0)
IP_SCALE_LIMITS = (0.0, 2.0)


@dataclass(frozen=True)
class ControlInput:
    """One control picture as it will run."""

    path: str
    kind: str
    strength: float
    start: float
    end: float
    controlnet: ControlNetSpec
    # The picture's own size (it is resized to the job's when they differ).
    size: tuple[int, int]

    @property
    def mode(self) -> int | None:
        return self.controlnet.types[self.kind]


@dataclass(frozen=True)
class Conditioning:
    """A job's ControlNets and IP-Adapter as checked; empty when it has neither."""

    controls: tuple[ControlInput, ...] = ()
    ip_adapter: IPAdapterSpec | None = None
    reference_images: tuple[str, ...] = ()
    ip_scale: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def attachments(self) -> Attachments:
        if not self.controls and self.ip_adapter is None:
            return NO_ATTACHMENTS
        return Attachments(tuple(control.controlnet for control in self.controls), self.ip_adapter)


NO_CONDITIONING = Conditioning()


def _as_list(name: str, value) -> list:
    """A list parameter as scripts and the page send it: a list, or text with commas ("canny, depth", "1, 0.5")."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in re.split(r"[,;\n]", value.strip().strip("[]")) if part.strip().strip("'\"")]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _numbers(name: str, value, count: int, default: float, limits: tuple[float, float]) -> list[float]:
    """`count` numbers from a list of `count` or of one (then used for all); `default` for none."""
    items = _as_list(name, value)
    if not items:
        return [default] * count
    if len(items) not in (1, count):
        raise InvalidRequest(name, f"{len(items)} values for {count} control images; give one per image, or one for all")
    numbers = []
    for item in items:
        try:
            number = float(str(item).strip("'\"")) if isinstance(item, str) else float(item)
        except (TypeError, ValueError):
            raise InvalidRequest(name, f"{item!r} is not a number") from None
        if isinstance(item, bool) or not math.isfinite(number) or not limits[0] <= number <= limits[1]:
            raise InvalidRequest(name, f"{item!r} is out of range; use {limits[0]:g} to {limits[1]:g}")
        numbers.append(number)
    return numbers * count if len(numbers) == 1 else numbers


def _paths(name: str, value, most: int) -> list[str]:
    paths = [str(getattr(item, "path", item)) for item in _as_list(name, value)]
    if len(paths) > most:
        raise InvalidRequest(name, f"{len(paths)} images; at most {most} are taken")
    return paths


def _readable(name: str, path: str) -> tuple[int, int]:
    try:
        return image_size(Path(path))
    except MediaError as error:
        raise InvalidRequest(name, str(error)) from None


def check_conditioning(request, spec: ModelSpec, weights: ModelSpec, width: int, height: int) -> Conditioning:
    """The request's controls and IP-Adapter for `spec` (whose weights are `weights`'s) at width × height, or
    InvalidRequest naming the first bad field."""
    controls, notes = _check_controls(request, spec, weights, width, height)
    adapter, references, scale = _check_ip_adapter(request, spec, weights)
    if (controls or adapter) and request.init_image:
        field = "control_images" if controls else "ip_adapter_images"
        raise InvalidRequest(field, "ControlNets and IP-Adapters run from text here; leave the start image empty")
    if not controls and adapter is None:
        return NO_CONDITIONING
    return Conditioning(tuple(controls), adapter, tuple(references), scale, tuple(notes))


def _check_controls(request, spec: ModelSpec, weights: ModelSpec, width: int, height: int) -> tuple[list[ControlInput], list[str]]:
    paths = _paths("control_images", request.control_images, MAX_CONTROLS)
    if not paths:
        return [], []
    offered = control_types(spec.family, weights.id, weights.demo)
    if not offered:
        raise InvalidRequest("control_images", f"{spec.name} takes no ControlNet here; leave the control images empty")
    kinds = [str(kind).strip().strip("'\"").lower() for kind in _as_list("control_types", request.control_types)]
    if not kinds:
        raise InvalidRequest("control_types", f"give the type of each control image: {', '.join(offered)}")
    if len(kinds) not in (1, len(paths)):
        raise InvalidRequest("control_types", f"{len(kinds)} types for {len(paths)} control images; give one per image, or one for all")
    kinds = kinds * len(paths) if len(kinds) == 1 else kinds
    for kind in kinds:
        if kind not in offered:
            raise InvalidRequest("control_types", f"{kind!r} is not a control type of {spec.name}; choose one of {', '.join(offered)}")
    served = {offered[kind].union for kind in kinds}
    if len(served) > 1:
        raise InvalidRequest("control_types", f"{', '.join(kinds)} need a union ControlNet and a single-purpose one at once; use types of one kind")
    strengths = _numbers("control_strengths", request.control_strengths, len(paths), 1.0, STRENGTH_LIMITS)
    starts = _numbers("control_starts", request.control_starts, len(paths), 0.0, (0.0, 1.0))
    ends = _numbers("control_ends", request.control_ends, len(paths), 1.0, (0.0, 1.0))
    controls, notes = [], []
    for index, (path, kind, strength, start, end) in enumerate(zip(paths, kinds, strengths, starts, ends), start=1):
        if start >= end:
            raise InvalidRequest("control_starts", f"control {index} starts at {start:g} and ends at {end:g}; the start must come before the end")
        size = _readable("control_images", path)
        if size != (width, height):
            notes.append(f"Control image {index} ({Path(path).name}, {size[0]}×{size[1]}) was resized to {width}×{height}.")
        controls.append(ControlInput(path, kind, strength, start, end, offered[kind], size))
    return controls, notes


def _check_ip_adapter(request, spec: ModelSpec, weights: ModelSpec) -> tuple[IPAdapterSpec | None, list[str], float]:
    references = _paths("ip_adapter_images", request.ip_adapter_images, MAX_REFERENCE_IMAGES)
    scale = _numbers("ip_adapter_scale", request.ip_adapter_scale, 1, 0.0, IP_SCALE_LIMITS)[0]
    if not references:
        return None, [], scale
    offered = ip_adapters(spec.family, weights.id, weights.demo)
    if not offered:
        raise InvalidRequest("ip_adapter_images", f"{spec.name} takes no IP-Adapter here; leave the reference images empty")
    chosen = request.ip_adapter or next(iter(offered))
    if chosen not in offered:
        raise InvalidRequest("ip_adapter", f"{chosen!r} is not an IP-Adapter for {spec.name}; choose one of {', '.join(offered)}")
    adapter = offered[chosen]
    if len(references) > 1 and not adapter.several_images:
        raise InvalidRequest("ip_adapter_images", f"{adapter.name} takes one reference image; give one")
    for path in references:
        _readable("ip_adapter_images", path)
    return adapter, references, scale


# -- preparing and running ------------------------------------------------------------------------------------------


def prepare_control(control: ControlInput, width: int, height: int, models_dir: Path) -> Image.Image:
    """The picture the ControlNet sees, at the job's size: Canny edges by OpenCV; a depth map estimated by the
    installed depth model (without one, the picture is taken as a depth map); the picture itself for the other types."""
    with Image.open(control.path) as opened:
        picture = fit(opened, width, height)
    how = preparation(control.kind)
    if how == "canny":
        return canny_edges(picture, DEFAULT_CANNY_LOW, DEFAULT_CANNY_HIGH)
    if how == "depth":
        if installed_depth_estimator(models_dir) is None:
            return picture.convert("L").convert("RGB")
        return estimate_depth(picture, models_dir)[0]
    return picture


def reference_images(conditioning: Conditioning) -> list[Image.Image]:
    pictures = []
    for path in conditioning.reference_images:
        with Image.open(path) as opened:
            pictures.append(opened.convert("RGB"))
    return pictures


def control_pipeline(pipe, spec: ModelSpec, conditioning: Conditioning):
    """The family's ControlNet pipeline around the loaded pipeline's components and its attached ControlNets
    (`from_pipe`: nothing is read or copied)."""
    import diffusers

    control = CONTROL_PIPELINES[spec.family]
    union = conditioning.controls[0].controlnet.union
    name = control.union_pipeline_class if union and control.union_pipeline_class else control.pipeline_class
    runner = getattr(diffusers, name).from_pipe(pipe, controlnet=pipe.controlnet)
    runner.set_progress_bar_config(disable=True)
    return runner


def control_kwargs(runner, spec: ModelSpec, conditioning: Conditioning, prepared: list[Image.Image], width: int, height: int, seed: int) -> dict:
    """The ControlNet pipeline's keywords for the job's controls; for a pipeline that draws from the generator before
    the noise (FLUX), the noise itself, drawn first from the seed as the plain pipeline draws it."""
    control = CONTROL_PIPELINES[spec.family]
    controls = conditioning.controls
    kwargs = dict(
        controlnet_conditioning_scale=[c.strength for c in controls],
        control_guidance_start=[c.start for c in controls],
        control_guidance_end=[c.end for c in controls],
    )
    union = controls[0].controlnet.union
    # One net per control picture (a union net repeated for each of its modes); the pipelines pair them up.
    keyword = control.union_image_keyword if union and control.union_pipeline_class else control.image_keyword
    kwargs[keyword] = list(prepared)
    if union:
        kwargs["control_mode"] = [c.mode for c in controls]
    if control.noise_first:
        channels = runner.transformer.config.in_channels // 4
        kwargs["latents"], _ = runner.prepare_latents(
            1, channels, height, width, runner.transformer.dtype, runner._execution_device, torch.Generator("cpu").manual_seed(seed),
        )
    return kwargs


def record(conditioning: Conditioning, outputs, prepared_records: list) -> dict:
    """What a result keeps of its controls and IP-Adapter: inputs by hash, the prepared pictures, the models."""
    controls = [
        {
            "image": outputs.keep_input(c.path), "prepared": prepared, "type": c.kind, "strength": c.strength, "start": c.start,
            "end": c.end, "controlnet": c.controlnet.source.repo or c.controlnet.id, "mode": c.mode,
        }
        for c, prepared in zip(conditioning.controls, prepared_records)
    ]
    adapter = conditioning.ip_adapter
    return {
        "control_images": [entry["image"] for entry in controls],
        "controls": controls,
        "ip_adapter_images": [outputs.keep_input(path) for path in conditioning.reference_images],
        "ip_adapter": adapter.id if adapter else None,
        "ip_adapter_repo": (adapter.source.repo or adapter.id) if adapter else None,
    }
