"""Step caches on the tiny demo models: threshold 0 changes nothing, the catalog's "fast" really skips blocks."""

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.catalog import Catalog, Family, family_spec
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest, generate_image
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import OutputStore, read_parameters
from pipelines.speed.step_cache import methods_for, step_cache
from pipelines.video.video_runner import VideoRequest, generate_video

# Model, pipeline, family, call; 6-10 steps so there are steps to skip.
CASES = {
    "demo-flux": (diffusers.FluxPipeline, Family.FLUX, dict(width=64, height=64, num_inference_steps=10)),
    "demo-wan": (diffusers.WanPipeline, Family.WAN, dict(width=64, height=64, num_frames=5, num_inference_steps=8)),
    "demo-ltx": (diffusers.LTXPipeline, Family.LTX, dict(width=64, height=64, num_frames=9, num_inference_steps=8)),
    "demo-hunyuanvideo": (
        diffusers.HunyuanVideoPipeline, Family.HUNYUANVIDEO, dict(width=64, height=64, num_frames=5, num_inference_steps=8),
    ),
    # Token replace: the start picture's latents stand in for the first latent frame, its own modulation in norm1.
    "demo-hunyuanvideo-i2v": (
        diffusers.HunyuanVideoImageToVideoPipeline, Family.HUNYUANVIDEO,
        dict(image=Image.new("RGB", (64, 64), "red"), width=64, height=64, num_frames=5, num_inference_steps=8, guidance_scale=6.0),
    ),
    # One section of 2 latent frames.
    "demo-framepack": (
        diffusers.HunyuanVideoFramepackPipeline, Family.FRAMEPACK,
        dict(image=Image.new("RGB", (64, 64), "red"), width=64, height=64, num_frames=5, latent_window_size=2, num_inference_steps=6),
    ),
}
OFFERED = [(model, method) for model, (_, family, _) in CASES.items() for method in methods_for(family) if method != "none"]


@pytest.fixture(scope="module")
def pipes(demo_models_dir, presets):
    loaded = {}
    for model, (pipeline_class, _, _) in CASES.items():
        if model == "demo-framepack":
            # No folder holds FramePack whole: the manager assembles it from its three repo folders.
            with ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"]).use(model) as pipe:
                loaded[model] = pipe
            continue
        pipe = pipeline_class.from_pretrained(demo_models_dir / "demo" / model)
        pipe.set_progress_bar_config(disable=True)
        loaded[model] = pipe
    return loaded


def render(pipe, call) -> np.ndarray:
    output = pipe(prompt="a fox", output_type="np", generator=torch.Generator().manual_seed(0), **call)
    return np.asarray(output.images if hasattr(output, "images") else output.frames)


def counting_block_calls(transformer):
    """Counts real forward calls of every attention module of the denoiser (skipped blocks make none)."""
    calls = [0]
    handles = [
        module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        for module in transformer.modules() if type(module).__name__.endswith("Attention")
    ]
    return calls, handles


@pytest.mark.parametrize("model, method", OFFERED)
def test_threshold_zero_gives_exactly_the_uncached_output(pipes, model, method):
    pipe, (_, family, call) = pipes[model], CASES[model]
    plain = render(pipe, call)
    with step_cache(pipe, family, method, 0.0) as report:
        cached = render(pipe, call)
    assert report.calls > 0 and report.skipped == 0
    np.testing.assert_array_equal(cached, plain)


@pytest.mark.parametrize("model, method", OFFERED)
def test_fast_skips_block_compute_and_the_next_job_is_uncached(pipes, model, method):
    pipe, (_, family, call) = pipes[model], CASES[model]
    fast = family_spec(family).speed["fast"]
    # FirstBlockCache's threshold means something else than TeaCache's; the catalog's fast one is TeaCache's.
    # The tiny random LTX changes more per step than the real one, so LTX's fast TeaCache (0.05) never skips on it.
    threshold = fast.threshold if method == fast.method and family is not Family.LTX else 0.3
    calls, handles = counting_block_calls(pipe.transformer)
    plain = render(pipe, call)
    plain_calls = calls[0]
    with step_cache(pipe, family, method, threshold) as report:
        cached = render(pipe, call)
    cached_calls = calls[0] - plain_calls
    after = render(pipe, call)
    for handle in handles:
        handle.remove()
    assert report.skipped > 0
    assert cached_calls < plain_calls
    assert cached.shape == plain.shape and np.isfinite(cached).all()
    np.testing.assert_array_equal(after, plain)


def test_a_method_the_family_lacks_is_refused(pipes):
    with pytest.raises(InvalidRequest, match="cache_method"):
        with step_cache(pipes["demo-flux"], Family.SD3, "teacache", 0.1):
            pass


def test_speed_reaches_the_image_pipeline_and_its_record(manager, tmp_path):
    outputs = OutputStore(tmp_path / "outputs")
    make = lambda **speed: generate_image(
        ImageRequest(prompt="a fox", model="demo-flux", steps=10, seed=3, width=256, height=256, **speed).check(manager.store.catalog), manager, outputs, QueuedJob()
    ).outputs[0]
    plain, off, fast = make(), make(speed="off"), make(speed="fast")
    off_record, fast_record = read_parameters(off.path), read_parameters(fast.path)
    assert off_record["speed"] == "off" and off_record["step_cache"]["calls_skipped"] == 0
    assert fast_record["speed"] == "fast" and fast_record["step_cache"]["method"] == "teacache"
    assert fast_record["step_cache"]["threshold"] == family_spec(Family.FLUX).speed["fast"].threshold
    assert fast_record["step_cache"]["calls_skipped"] > 0
    np.testing.assert_array_equal(np.asarray(Image.open(off.path)), np.asarray(Image.open(plain.path)))


def test_a_family_without_a_cache_refuses_one_and_runs_uncached_when_fast(manager, tmp_path):
    outputs = OutputStore(tmp_path / "outputs")
    with pytest.raises(InvalidRequest, match="cache_method"):
        generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=2, cache_method="teacache").check(manager.store.catalog), manager, outputs, QueuedJob())
    saved = generate_image(ImageRequest(prompt="a fox", model="demo-sd3", steps=2, speed="fast").check(manager.store.catalog), manager, outputs, QueuedJob())
    assert read_parameters(saved.outputs[0].path)["step_cache"]["method"] == "none"


@pytest.mark.parametrize("model", ["demo-wan", "demo-ltx"])
def test_speed_reaches_the_video_pipeline_and_its_record(manager, tmp_path, model):
    outputs = OutputStore(tmp_path / "outputs")
    make = lambda **speed: generate_video(
        VideoRequest(prompt="a fox", model=model, steps=8, seed=3, width=64, height=64, frames=9, **speed).check(
            manager.store.catalog, manager.store.models_dir
        ), manager, outputs, QueuedJob()
    ).video.parameters
    off = make(speed="off")
    assert off["speed"] == "off" and off["step_cache"]["calls_skipped"] == 0
    # The tiny LTX changes too much per step for its catalog thresholds (see above); a higher one shows the path.
    fast = make(speed="fast") if model == "demo-wan" else make(speed="fast", cache_threshold=0.3)
    assert fast["step_cache"]["method"] == "teacache" and fast["step_cache"]["calls_skipped"] > 0


def test_speed_reaches_framepack_and_every_section_starts_with_a_computed_step(manager, tmp_path):
    picture = tmp_path / "start.png"
    Image.new("RGB", (64, 64), "red").save(picture)
    make = lambda steps, **speed: generate_video(
        VideoRequest(prompt="a fox", model="demo-framepack", image=str(picture), frames=17, latent_window_size=2, steps=steps, seed=3, **speed).check(
            manager.store.catalog, manager.store.models_dir
        ),
        manager, OutputStore(tmp_path / "outputs"), QueuedJob(),
    ).video.parameters["step_cache"]
    fast = make(4, speed="fast")
    assert fast["method"] == "teacache" and fast["threshold"] == family_spec(Family.FRAMEPACK).speed["fast"].threshold
    assert fast["denoiser_calls"] == 2 * 4 and fast["calls_skipped"] > 0
    # However eager the threshold, the first step of each section runs: its noise is new, its history longer.
    eager = make(2, cache_method="teacache", cache_threshold=10.0)
    assert (eager["denoiser_calls"], eager["calls_skipped"]) == (4, 2)


def test_first_block_cache_also_runs_in_flux_image_to_image(manager, tmp_path):
    # FluxImg2ImgPipeline opens no cache context of its own; without ours FirstBlockCache refuses to run.
    start = tmp_path / "start.png"
    Image.new("RGB", (256, 256), "red").save(start)
    request = ImageRequest(
        prompt="a fox", model="demo-flux", steps=10, seed=1, init_image=str(start), strength=0.9, cache_method="first_block",
        cache_threshold=0.3,
    )
    saved = generate_image(request.check(manager.store.catalog), manager, OutputStore(tmp_path / "outputs"), QueuedJob()).outputs[0]
    assert Image.open(saved.path).size == (256, 256)
    assert saved.parameters["step_cache"]["method"] == "first_block" and saved.parameters["step_cache"]["calls_skipped"] > 0


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"speed": "turbo"}, "speed: 'turbo' is not a speed"),
        ({"cache_method": "magic"}, "cache_method: 'magic' is not available"),
        ({"cache_threshold": -1}, "cache_threshold: -1.0 is out of range"),
        ({"cache_threshold": "fast"}, "cache_threshold: 'fast' is not a number"),
    ],
)
def test_bad_speed_settings_name_the_field(fields, message):
    with pytest.raises(InvalidRequest, match=message):
        ImageRequest(prompt="a fox", model="demo-flux", **fields).check(Catalog())


def test_a_method_without_a_threshold_gets_one_that_skips():
    checked = ImageRequest(prompt="a fox", model="demo-flux", cache_method="teacache").check(Catalog()).request
    assert (checked.cache_method, checked.cache_threshold) == ("teacache", family_spec(Family.FLUX).speed["balanced"].threshold)
    assert ImageRequest(prompt="a fox", model="demo-flux", cache_method="first_block").check(Catalog()).request.cache_threshold > 0


@pytest.fixture(scope="module")
def hidream(demo_models_dir):
    import transformers

    llama = demo_models_dir / "demo" / "demo-llama"
    pipe = diffusers.HiDreamImagePipeline.from_pretrained(
        demo_models_dir / "demo" / "demo-hidream",
        text_encoder_4=transformers.LlamaForCausalLM.from_pretrained(llama),
        tokenizer_4=transformers.AutoTokenizer.from_pretrained(llama),
    )
    pipe.set_progress_bar_config(disable=True)
    # The pipeline renders the pixel area of this many latent pixels squared (128 as shipped: 4,096 tokens, slow on a
    # CPU); 16 makes it 64 tokens. The transformer and what TeaCache compares are the same.
    pipe.default_sample_size = 16
    return pipe


def test_hidream_teacache_is_exact_at_zero_and_skips_blocks_when_fast(hidream):
    call = dict(width=128, height=128, num_inference_steps=2, output_type="latent")
    render = lambda: hidream("a fox", generator=torch.Generator().manual_seed(0), **call).images.numpy()
    calls, handles = counting_block_calls(hidream.transformer)
    plain = render()
    plain_calls = calls[0]
    with step_cache(hidream, Family.HIDREAM, "teacache", 0.0) as exact:
        uncached = render()
    fast_threshold = family_spec(Family.HIDREAM).speed["fast"].threshold
    with step_cache(hidream, Family.HIDREAM, "teacache", fast_threshold) as fast:
        cached = render()
    fast_calls = calls[0] - 2 * plain_calls
    for handle in handles:
        handle.remove()
    np.testing.assert_array_equal(uncached, plain)
    assert exact.skipped == 0
    assert fast.calls == 2 and fast.skipped == 1 and fast_calls < plain_calls
    assert cached.shape == plain.shape and np.isfinite(cached).all() and not np.array_equal(cached, plain)
    # The blocks' own forward is back once the job is over.
    assert all("forward" not in vars(block) for block in hidream.transformer.double_stream_blocks)


def render_music(pipe, steps: int) -> np.ndarray:
    torch.manual_seed(0)
    audio = pipe(prompt="lo-fi piano", lyrics="", audio_duration=1.0, num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    return audio.audios[0].float().numpy()


def test_ace_step_teacache_is_exact_at_zero_and_skips_blocks_when_fast(manager):
    # Our TeaCache with the identity for a polynomial: ACE-Step has neither a published one nor FirstBlockCache's metadata.
    assert methods_for(Family.ACE_STEP) == ("none", "teacache")
    with manager.use("demo-ace-step") as pipe:
        calls, handles = counting_block_calls(pipe.transformer)
        plain = render_music(pipe, 8)
        plain_calls = calls[0]
        with step_cache(pipe, Family.ACE_STEP, "teacache", 0.0) as exact:
            uncached = render_music(pipe, 8)
        with step_cache(pipe, Family.ACE_STEP, "teacache", family_spec(Family.ACE_STEP).speed["fast"].threshold) as fast:
            cached = render_music(pipe, 8)
        fast_calls = calls[0] - 2 * plain_calls
        for handle in handles:
            handle.remove()
    np.testing.assert_array_equal(uncached, plain)
    assert exact.calls == 8 and exact.skipped == 0
    assert fast.skipped > 0 and fast_calls < plain_calls
    assert cached.shape == plain.shape and np.isfinite(cached).all()
    assert all("forward" not in vars(block) for block in pipe.transformer.layers)
