"""FLUX.1 tools: a new picture that follows another's edges (Canny) or depth (Depth), or variations of a picture
(Redux). One checked job in, one saved PNG out.

    1. the checked job (`ToolRequest.check` makes it once)   2. make the control picture at the output size (edges,
    depth)   3. load (manager.use)   4. encode (Redux: the prior turns the picture into prompt embeddings)
    5. denoise (Stop and progress between steps), decode   6. save, with the input pictures' SHA-256s
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import diffusers
import torch
from PIL import Image

from pipelines.image import control_images
from pipelines.catalog import Catalog, FamilySpec, ModelSpec, Task, family_spec
from pipelines.errors import InvalidRequest, JobStopped, UnknownModel
from pipelines.jobs import QueuedJob, with_one_retry
from pipelines.manager import ModelManager
from pipelines.media import MediaError, image_size
from pipelines.memory.planner import Workload
from pipelines.outputs import OutputStore, SavedOutput, run_record
from pipelines.request_values import (
    checked_guidance, checked_prompt, checked_seed, checked_size, checked_steps, resolved_seed, whole_number,
)
from pipelines.speed.step_cache import check_speed, step_cache

log = logging.getLogger(__name__)

# The Edit tab's mode for each tool, as the UI and the saved parameters name it.
MODES = {Task.CANNY_TO_IMAGE: "canny", Task.DEPTH_TO_IMAGE: "depth", Task.IMAGE_VARIATION: "redux"}
# FLUX.1 Redux's SigLIP (so400m, patch 14) sees the picture at 384 px: 27×27 image tokens join the 512 text tokens.
REDUX_IMAGE_TOKENS = 27 * 27
OUTPUT_KIND = "edit"


def tool_models(catalog: Catalog) -> dict[str, ModelSpec]:
    """The FLUX.1 tools in the catalog (real and demo), by id."""
    return catalog.for_task(*MODES)


@dataclass(frozen=True)
class ToolRequest:
    """Inputs as a person or a script gave them; `None` means the model's default. The model says the tool."""

    model: str
    # The input picture (a file): edges (Canny) and depth (Depth) are taken from it, Redux varies it.
    image: str | None = None
    # What to make (Canny, Depth); for Redux, an optional nudge beside the picture.
    prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = -1
    canny_low: int | None = None
    canny_high: int | None = None
    # Depth: a depth map to follow (any image; near is bright) instead of one estimated from `image`.
    depth_map: str | None = None
    # Speed: "off", "balanced" or "fast" (FLUX's step cache from the catalog); `cache_method` and `cache_threshold`
    # override the level's choice.
    speed: str = "off"
    cache_method: str | None = None
    cache_threshold: float | None = None

    def check(self, catalog: Catalog) -> "ToolJob":
        """The job this request asks for, every value filled in and in range; InvalidRequest names the first bad field."""
        models = tool_models(catalog)
        spec = models.get(self.model)
        if spec is None:
            raise UnknownModel(self.model, "a FLUX.1 tool", models)
        family = family_spec(spec.family)
        mode = MODES[spec.task]
        image, image_size_ = _probed("image", self.image)
        depth_map, map_size = _probed("depth_map", self.depth_map)
        if depth_map and mode != "depth":
            raise InvalidRequest("depth_map", f"{spec.name} does not follow a depth map; leave it empty")
        if image is None and not (mode == "depth" and depth_map):
            needs = "an input picture or a depth map" if mode == "depth" else "an input picture"
            raise InvalidRequest("image", f"{spec.name} needs {needs}")
        # Redux may vary the picture without a prompt; the others are told what to make.
        prompt = (self.prompt or "").strip()
        if prompt or mode != "redux":
            prompt = checked_prompt(prompt, empty_hint="describe the picture you want")
        input_size = image_size_ or map_size
        # The input's aspect ratio, at most the model's default pixel area.
        default_width, default_height = family.fitted_size(input_size, spec.defaults.width * spec.defaults.height, enlarge=False)
        width, height = checked_size(self.width, self.height, (default_width, default_height), family, spec.name)
        steps = checked_steps(self.steps, spec.defaults.steps)
        guidance = checked_guidance(self.guidance, spec.defaults.guidance)
        seed = checked_seed(self.seed)
        canny_low = whole_number("canny_low", self.canny_low, control_images.DEFAULT_CANNY_LOW)
        canny_high = whole_number("canny_high", self.canny_high, control_images.DEFAULT_CANNY_HIGH)
        control_images.check_canny_thresholds(canny_low, canny_high)
        cache_method, cache_threshold = check_speed(spec.family, self.speed, self.cache_method, self.cache_threshold)
        request = replace(
            self, image=image, prompt=prompt, width=width, height=height, steps=steps, guidance=guidance,
            seed=seed, canny_low=canny_low, canny_high=canny_high, depth_map=depth_map, speed=self.speed or "off",
            cache_method=cache_method, cache_threshold=cache_threshold,
        )
        size_given = self.width not in (None, "") and self.height not in (None, "")
        note = "" if size_given else _size_note(request, spec, family, input_size)
        return ToolJob(request, spec, family, mode, resolved_seed(seed), note)


@dataclass(frozen=True)
class ToolJob:
    """A checked request: its values as they will run, the model's entry and its family's rules, the tool's mode
    ("canny", "depth", "redux"), the seed drawn for -1, and how the output size came from the input's (when it did)."""

    request: ToolRequest
    spec: ModelSpec
    family: FamilySpec
    mode: str
    seed: int
    note: str = ""


@dataclass(frozen=True)
class ToolResult:
    output: SavedOutput | None
    # The edges or depth the model followed, at the output size (None for Redux), to show beside the input.
    control_image: Image.Image | None = None
    stopped: bool = False
    seconds: float = 0.0
    note: str = ""


def _probed(name: str, path) -> tuple[str | None, tuple[int, int] | None]:
    """An input picture's path and size, read once; InvalidRequest naming `name` for a file that is no image."""
    if not path:
        return None, None
    try:
        return str(path), image_size(Path(path))
    except MediaError as error:
        raise InvalidRequest(name, str(error)) from None


def _open_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def make_control_image(request: ToolRequest, mode: str, models_dir: Path) -> tuple[Image.Image | None, dict | None]:
    """The picture the control transformer follows, at the output size, and how it was made (for the parameters).
    A checked request; raises ModelNotAvailable when depth is to be estimated and no depth model is installed."""
    size = (request.width, request.height)
    if mode == "canny":
        source = control_images.fit(_open_rgb(request.image), *size)
        edges = control_images.canny_edges(source, request.canny_low, request.canny_high)
        return edges, {"kind": "canny", "low": request.canny_low, "high": request.canny_high}
    if mode == "depth" and request.depth_map:
        return control_images.fit(control_images.depth_from_map(request.depth_map), *size), {"kind": "depth", "source": "supplied map"}
    if mode == "depth":
        depth, estimator = control_images.estimate_depth(control_images.fit(_open_rgb(request.image), *size), models_dir)
        return depth, {"kind": "depth", "source": estimator.repo}
    return None, None


def preview_control(control: str, image: str | None, canny_low, canny_high, depth_map: str | None) -> Image.Image | None:
    """The control picture to show beside the input before a run, at the input's size: Canny's edges with these
    thresholds, or a supplied depth map as the model will read it. None when there is nothing to show yet (no
    input, thresholds out of range, a depth map still to be estimated: that takes the depth model, at run time)."""
    try:
        if control == "canny" and image:
            low = whole_number("canny_low", canny_low, control_images.DEFAULT_CANNY_LOW)
            high = whole_number("canny_high", canny_high, control_images.DEFAULT_CANNY_HIGH)
            return control_images.canny_edges(_open_rgb(image), low, high)
        if control == "depth" and depth_map:
            return control_images.depth_from_map(depth_map)
    except (InvalidRequest, OSError):
        return None
    return None


def _redux_embeddings(pipe, picture: Image.Image, prompt: str) -> dict:
    """Redux's prior on the loaded components: the picture's SigLIP patches, projected by the embedder, appended to
    the prompt's T5 embeddings (of "" when there is no prompt, as Black Forest Labs' own Redux sampling does)."""
    prior = diffusers.FluxPriorReduxPipeline(
        image_encoder=pipe.prior_image_encoder, feature_extractor=pipe.prior_feature_extractor,
        image_embedder=pipe.prior_image_embedder, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2,
    )
    prior.set_progress_bar_config(disable=True)
    embeddings = prior(image=picture, prompt=prompt)
    return {"prompt_embeds": embeddings.prompt_embeds, "pooled_prompt_embeds": embeddings.pooled_prompt_embeds}


def run_flux_tool(job: ToolJob, manager: ModelManager, outputs: OutputStore, queued: QueuedJob) -> ToolResult:
    # 1. The job was checked when it was made.
    request, spec, family, seed = job.request, job.spec, job.family, job.seed
    started = time.monotonic()

    # 2. The control picture, before the model loads: a missing depth model is said without waiting for a load.
    queued.report(0.0, f"Preparing the {job.mode} input")
    control, control_record = make_control_image(request, job.mode, manager.store.models_dir)
    picture = _open_rgb(request.image) if spec.task is Task.IMAGE_VARIATION else None

    # 3-5. Load (the manager plans memory for this size, or refuses), encode, denoise, decode. Noise comes from a
    # CPU generator so a seed gives the same picture whatever the device and placement.
    queued.report(0.0, f"Loading {spec.name}")
    # Redux's picture tokens join the text tokens the transformer attends over.
    image_tokens = REDUX_IMAGE_TOKENS if spec.task is Task.IMAGE_VARIATION else 0
    workload = Workload(family.denoiser_tokens(request.width, request.height) + image_tokens, family.denoiser_batch(request.guidance))

    def on_step_end(pipeline, step, timestep, callback_kwargs):
        queued.check_stop()
        queued.report((step + 1) / request.steps, f"Step {step + 1}/{request.steps}")
        return callback_kwargs

    kwargs = dict(
        width=request.width, height=request.height, num_inference_steps=request.steps, guidance_scale=request.guidance,
        callback_on_step_end=on_step_end,
    )

    def make_image() -> tuple[Image.Image, dict]:
        with manager.use(spec.id, workload, on_progress=queued.report) as pipe:
            queued.check_stop()
            if spec.task is Task.IMAGE_VARIATION:
                conditioning = _redux_embeddings(pipe, picture, request.prompt)
            else:
                conditioning = {"prompt": request.prompt, "control_image": control}
            torch.manual_seed(seed)
            # The step cache wraps the denoising alone: Redux's prior above runs no transformer steps.
            with step_cache(pipe, spec.family, request.cache_method, request.cache_threshold) as cache:
                image = pipe(**conditioning, **kwargs, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
            return image, cache.record()

    try:
        image, cache_record = with_one_retry(queued, make_image)
    except JobStopped:
        log.info("stopped %s", spec.id)
        return ToolResult(None, control, stopped=True, seconds=time.monotonic() - started)

    # 6. Save with everything needed to reproduce it, and which input files it was made from.
    companion = manager.store.companion(spec)
    parameters = {
        **{
            key: value for key, value in asdict(request).items()
            if key not in ("image", "depth_map", "seed", "cache_method", "cache_threshold")
        },
        "mode": job.mode,
        # The Edit tab's name for the prompt, so "reuse settings" finds it.
        "instruction": request.prompt,
        "seed": seed,
        "inputs": {name: record for name, record in (("image", outputs.keep_input(request.image)), ("depth_map", outputs.keep_input(request.depth_map))) if record},
        "control": control_record,
        # The step cache that ran and how many denoiser calls it skipped.
        "step_cache": cache_record,
        "model_name": spec.name,
        "repo": spec.repo or (manager.store.catalog.spec(spec.base).repo if spec.base else None),
        "prior_repo": companion.repo if companion else None,
        "demo": spec.demo,
        **run_record(manager, started),
        "width": image.width,
        "height": image.height,
    }
    saved = outputs.save_image(image, parameters, kind=OUTPUT_KIND)
    queued.report(1.0, "Done")
    return ToolResult(saved, control, seconds=time.monotonic() - started, note=job.note)


def _size_note(request: ToolRequest, spec: ModelSpec, family: FamilySpec, source: tuple[int, int]) -> str:
    """Says how a checked request's output size came from the input's (`source`)."""
    if source == (request.width, request.height):
        return f"Made at the input's size, {source[0]}×{source[1]}."
    defaults = spec.defaults
    return (
        f"Made at {request.width}×{request.height} from the input's {source[0]}×{source[1]}: its aspect ratio, within "
        f"{spec.name}'s {defaults.width}×{defaults.height} pixel area, in steps of {family.size_multiple} px."
    )
