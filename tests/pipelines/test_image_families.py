"""HiDream-I1 and CogView4 in the image runner: the tiny demo models through the same path as the real ones."""

from types import SimpleNamespace

import diffusers
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from PIL import Image

from pipelines.catalog import FAMILIES, MODELS_BY_ID, Catalog, Family
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, _sampler, generate_image
from pipelines.jobs import QueuedJob
from pipelines.loading.loaders import companion_components
from pipelines.memory.encoder_storage import StoredLinear
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import read_parameters

NEW_DEMOS = ("demo-hidream", "demo-cogview4")
# Each sampler each new family offers. One non-square request for all: CogView4 renders it as asked, HiDream
# rescales it to its fixed area.
SAMPLER_RUNS = [
    (model, choice.name) for model in NEW_DEMOS for choice in FAMILIES[MODELS_BY_ID[model].family].schedulers
]
REQUESTED = (512, 768)


@pytest.mark.parametrize("model, sampler", SAMPLER_RUNS)
def test_each_offered_sampler_makes_a_png_and_the_size_made_is_the_size_reported(manager, outputs, model, sampler):
    progress = []
    width, height = REQUESTED
    request = ImageRequest(prompt="a fox", model=model, steps=2, seed=7, width=width, height=height, guidance=0.0, scheduler=sampler)
    result = generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob(lambda fraction, text: progress.append(text)))
    saved = result.outputs[0]
    made = {"demo-hidream": (832, 1248), "demo-cogview4": (512, 768)}[model]
    assert Image.open(saved.path).size == made
    recorded = read_parameters(saved.path)
    assert (recorded["model"], recorded["scheduler"], recorded["demo"]) == (model, sampler, True)
    assert (recorded["width"], recorded["height"], recorded["requested_size"]) == (*made, list(REQUESTED))
    if made == REQUESTED:
        assert result.size_note == ""
    else:
        assert "512×768" in result.size_note and "832×1248" in result.size_note and "1024×1024" in result.size_note
        assert result.size_note in progress, "the job's status line says it too"


@pytest.mark.parametrize("requested, made", [((512, 768), (832, 1248)), ((1024, 1024), (1024, 1024)), ((2048, 1024), (1440, 720))])
def test_hidream_keeps_the_aspect_ratio_at_its_fixed_pixel_area(requested, made):
    assert FAMILIES[Family.HIDREAM].output_size(*requested) == made
    assert FAMILIES[Family.COGVIEW4].output_size(*requested) == requested


def test_cogview4_takes_a_negative_prompt_and_a_non_square_size(manager, outputs):
    request = ImageRequest(prompt="a fox", model="demo-cogview4", negative_prompt="blurry", steps=2, seed=3, width=512, height=768)
    saved = generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]
    assert Image.open(saved.path).size == (512, 768)
    assert read_parameters(saved.path)["negative_prompt"] == "blurry" and saved.parameters["guidance"] == 3.5


@pytest.mark.parametrize(
    "change, field, hint",
    [
        (dict(model="demo-cogview4", width=500), "width", "multiple of 32 from 512 to 2048 (nearest: 512)"),
        (dict(model="demo-cogview4", height=256), "height", "from 512 to 2048"),
        (dict(model="demo-cogview4", width=2048, height=2048), "width", "at most 2,097,152 (for example 1440×1440)"),
        (dict(model="demo-hidream", width=1000), "width", "multiple of 16 from 256 to 2048"),
        (dict(model="demo-hidream", scheduler="DPM++ 2M"), "scheduler", "Euler, UniPC"),
        (dict(model="demo-cogview4", scheduler="UniPC"), "scheduler", "Euler"),
        (dict(model="demo-hidream", init_image="start.png"), "init_image", "no image-to-image mode"),
        (dict(model="demo-cogview4", init_image="start.png"), "init_image", "no image-to-image mode"),
    ],
)
def test_bad_values_for_the_new_families_name_the_field_and_what_is_accepted(change, field, hint):
    with pytest.raises(InvalidRequest) as error:
        ImageRequest(prompt="a fox", **change).check(Catalog())
    assert error.value.field == field and hint in str(error.value)


def test_the_real_models_defaults_are_the_published_ones():
    defaults = {model: MODELS_BY_ID[model].defaults for model in ("hidream-i1-full", "hidream-i1-dev", "hidream-i1-fast", "cogview4-6b")}
    assert [(d.steps, d.guidance, d.scheduler) for d in defaults.values()] == [
        (50, 5.0, "UniPC"), (28, 0.0, "Euler"), (16, 0.0, "Euler"), (50, 3.5, "Euler"),
    ]
    assert all((d.width, d.height) == (1024, 1024) for d in defaults.values())
    for model in ("hidream-i1-full", "hidream-i1-dev", "hidream-i1-fast"):
        assert MODELS_BY_ID[model].companion.repo == "meta-llama/Meta-Llama-3.1-8B-Instruct"


@pytest.mark.parametrize(
    "model_scheduler, sampler, expected_class, shift_key",
    [
        # HiDream Dev ships Euler with shift 6; HiDream Full ships UniPC with flow_shift 3.
        (FlowMatchEulerDiscreteScheduler(shift=6.0), "UniPC", UniPCMultistepScheduler, "flow_shift"),
        (UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=6.0), "Euler", FlowMatchEulerDiscreteScheduler, "shift"),
    ],
)
def test_a_swapped_sampler_keeps_the_models_shift_and_the_model_gets_its_own_back(model_scheduler, sampler, expected_class, shift_key):
    pipe = SimpleNamespace(scheduler=model_scheduler)
    with _sampler(pipe, sampler, MODELS_BY_ID["hidream-i1-dev"]):
        assert type(pipe.scheduler) is expected_class and pipe.scheduler.config[shift_key] == 6.0
    assert pipe.scheduler is model_scheduler


@pytest.mark.parametrize("model_id", list(NEW_DEMOS))
def test_a_fully_streamed_transformer_denoises_exactly_like_a_resident_one(demo_models_dir, model_id):
    """HiDream runs its caption projections (a block list defined last) before its blocks: streaming must follow."""
    spec = MODELS_BY_ID[model_id]
    files = ModelStore(demo_models_dir, offline=True).ensure(spec)
    pipe = getattr(diffusers, spec.pipeline_class).from_pretrained(files.folder, **companion_components(spec.companion, files, torch.float32))
    pipe.set_progress_bar_config(disable=True)
    run = lambda: pipe("a fox", num_inference_steps=1, width=512, height=512, guidance_scale=0.0, output_type="latent",
                       generator=torch.Generator().manual_seed(0)).images
    expected = run()
    transformer, streamer = load_streamed(type(pipe.transformer), files.folder / "transformer", torch.device("cpu"), torch.float32, HostArena(pinned=False))
    streamer.place(set())
    pipe.transformer = transformer
    assert torch.equal(run(), expected)


@pytest.mark.parametrize("model, encoder", [("demo-hidream", "text_encoder_4"), ("demo-cogview4", "text_encoder")])
def test_int8_weights_shrink_the_transformer_and_the_big_text_encoder(manager, outputs, model, encoder):
    request = ImageRequest(prompt="a fox", model=model, steps=2, seed=3, width=512, height=512, weights="int8")
    saved = generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0]
    assert saved.parameters["weights"] == "int8"
    with manager.use(model, weights="int8") as pipe:
        linear = next(m for m in pipe.transformer.modules() if isinstance(m, torch.nn.Linear))
        assert linear.weight.qdata.dtype == torch.int8, "transformer"
        # The text encoder is stored int8 by the memory engine while it is read.
        stored = [m for m in getattr(pipe, encoder).modules() if isinstance(m, StoredLinear)]
        assert stored and all(m.stored.dtype == torch.int8 for m in stored), encoder


def test_wan_makes_images_as_one_frame_videos_in_the_image_tab(manager, outputs):
    assert {"demo-wan-image", "wan21-t2v-1.3b-image", "wan21-t2v-14b-image"} <= set(manager.store.catalog.image_models())
    request = ImageRequest(prompt="a fox in snow", model="demo-wan-image", steps=2, seed=5, width=96, height=64, negative_prompt="blur")
    first, again = (generate_image(request.check(manager.store.catalog), manager, outputs, QueuedJob()).outputs[0] for _ in range(2))
    assert Image.open(first.path).size == (96, 64)
    assert (first.parameters["model"], first.parameters["scheduler"], first.parameters["demo"]) == ("demo-wan-image", "UniPC", True)
    assert Image.open(first.path).tobytes() == Image.open(again.path).tobytes()
    with pytest.raises(InvalidRequest, match="height: 40"):
        generate_image(ImageRequest(prompt="a fox", model="demo-wan-image", width=96, height=40).check(manager.store.catalog), manager, outputs, QueuedJob())
