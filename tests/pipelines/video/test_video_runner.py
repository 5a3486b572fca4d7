"""The video runner on the tiny Wan and LTX models: files with the asked frames, size and rate, the rounding said,
previews, Stop, and clear errors before anything loads."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalog import Catalog
from pipelines.errors import InvalidRequest
from pipelines.video.interpolation import LEARNED_WEIGHTS_FOLDER
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.media import read_video
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import read_parameters
from pipelines.tiny import rife as tiny_rife
from pipelines.video.video_export import ExportSettings
from pipelines.video.video_runner import VideoRequest, generate_video


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "start.png"
    Image.new("RGB", (128, 64), (30, 160, 90)).save(path)
    return str(path)


def run(request, manager, outputs, queued, **callbacks):
    """The request checked once, as the tab does, and run."""
    return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, queued, **callbacks)


def make(manager, outputs, **values):
    return run(VideoRequest(**{"prompt": "a fox in the snow", "steps": 2, "seed": 4, **values}), manager, outputs, QueuedJob())


@pytest.mark.parametrize("model, asked, made, rule, fps", [
    ("demo-wan", 6, 5, "4k+1", 16), ("demo-ltx", 14, 17, "8k+1", 24), ("demo-hunyuanvideo", 10, 9, "4k+1", 24),
])
def test_each_text_to_video_demo_writes_its_frames_size_and_rate_and_says_how_it_rounded(manager, outputs, model, asked, made, rule, fps):
    result = make(manager, outputs, model=model, width=96, height=64, frames=asked)
    video = read_video(result.video.path)
    assert video.frames.shape == (made, 64, 96, 3) and video.fps == fps
    assert result.frames_note.startswith(f"{asked} frames were asked for") and rule in result.frames_note
    saved = read_parameters(result.video.path)
    assert (saved["model"], saved["frames_requested"], saved["frames"]) == (model, asked, made)


@pytest.mark.parametrize("model", ["demo-wan-i2v", "demo-ltx"])
def test_image_to_video_takes_the_pictures_aspect_when_no_size_is_given(manager, outputs, picture, model):
    result = make(manager, outputs, model=model, image=picture, frames=5)
    # 2:1 at the demo's 64×64 pixel count, on the family's grid, no side under 64.
    assert read_video(result.video.path).frames.shape[1:3] == (64, 96)
    assert result.video.parameters["image"]["file"] == "start.png"
    assert outputs.kept_input(result.video.parameters["image"]).read_bytes() == Path(picture).read_bytes()
    assert VideoRequest(prompt="a fox", model=model, image=picture, width=64, height=64).check(manager.store.catalog, manager.store.models_dir).request.width == 64


def test_interpolation_doubles_the_rate_over_the_same_span(manager, outputs):
    doubled = read_video(make(manager, outputs, model="demo-ltx", frames=9, interpolation="blend-2x").video.path)
    assert (len(doubled.frames), doubled.fps) == (2 * 9 - 1, 2 * 24)
    assert (len(doubled.frames) - 1) / doubled.fps == (9 - 1) / 24


@pytest.fixture(scope="module")
def rife_manager(demo_models_dir, presets, tmp_path_factory):
    """A manager over the demo models and a random RIFE flownet.pkl where the app looks for it."""
    models = tmp_path_factory.mktemp("rife") / "models"
    shutil.copytree(demo_models_dir, models)
    tiny_rife.build(models / LEARNED_WEIGHTS_FOLDER / "flownet.pkl")
    return ModelManager(ModelStore(models, offline=True), presets["cpu"])


def test_rife_quadruples_the_rate_over_the_same_span_and_records_its_weights(rife_manager, outputs):
    result = make(rife_manager, outputs, model="demo-wan", width=80, height=64, frames=5, fps=8, interpolation="rife-4x")
    video = read_video(result.video.path)
    assert video.frames.shape == (4 * 5 - 3, 64, 80, 3) and video.fps == 4 * 8
    assert (len(video.frames) - 1) / video.fps == (5 - 1) / 8
    saved = read_parameters(result.video.path)
    assert (saved["interpolation"], saved["interpolation_weights"]["file"], saved["interpolation_weights"]["version"]) == (
        "rife-4x", "flownet.pkl", "4.6"
    )


def test_stop_while_rife_interpolates_saves_nothing(rife_manager, outputs):
    job = QueuedJob(on_progress=lambda fraction, text: job.stop() if text.startswith("Interpolating frames: 1/") else None)
    request = VideoRequest(prompt="a fox", model="demo-wan", frames=5, steps=2, seed=1, interpolation="rife-2x")
    result = run(request, rife_manager, outputs, job)
    assert result.stopped and result.video is None and not outputs.root.exists()


def test_same_seed_gives_the_same_video_and_the_flow_shift_changes_it_for_one_job(manager, outputs):
    frames = lambda **values: read_video(make(manager, outputs, model="demo-wan", frames=5, **values).video.path).frames
    first, shifted, again = frames(), frames(flow_shift=12.0), frames()
    assert not np.array_equal(first, shifted)
    # Same seed, same video: the shift was put back after its job.
    assert np.array_equal(first, again)


def test_previews_arrive_during_denoising_at_the_video_size(manager, outputs):
    previews = []
    request = VideoRequest(prompt="a fox", model="demo-ltx", width=96, height=64, frames=9, steps=4, seed=1)
    run(request, manager, outputs, QueuedJob(), on_preview=lambda picture, text: previews.append((picture.size, text)))
    assert previews == [((96, 64), "Step 2/4"), ((96, 64), "Step 4/4")]


def test_stop_during_denoising_saves_nothing(manager, outputs):
    job = QueuedJob()
    request = VideoRequest(prompt="a fox", model="demo-wan", frames=5, steps=4, seed=1)
    result = run(request, manager, outputs, job, on_preview=lambda picture, text: job.stop())
    assert result.stopped and result.video is None and not outputs.root.exists()


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(width=100), "width: 100 is not accepted by Wan2.1 T2V (tiny); use a multiple of 16 from 64 to 1280 (nearest: 96)"),
        (dict(model="demo-ltx", height=80), "height: 80 is not accepted by LTX-Video (tiny); use a multiple of 32"),
        (dict(frames=130), "frames: 130 is out of range; Wan2.1 T2V (tiny) makes 1 to 129 frames"),
        (dict(frames=0), "frames: 0 is out of range"),
        (dict(model="demo-wan-i2v"), "image: Wan2.1 I2V (tiny) makes a video from a picture; give an input image"),
        (dict(model="demo-framepack"), "image: FramePack I2V (tiny) makes a video from a picture; give an input image"),
        (dict(image="start.png"), "image: Wan2.1 T2V (tiny) does not start from a picture"),
        (dict(flow_shift=0), "flow_shift: 0.0 is out of range"),
        (dict(model="demo-sd3"), "model: unknown model 'demo-sd3'; choose a video model"),
        (dict(export=ExportSettings(format="mkv")), "format: 'mkv' is not offered"),
    ],
)
def test_bad_requests_are_refused_before_anything_loads(tmp_path, values, message):
    request = VideoRequest(**{"prompt": "a fox", "model": "demo-wan", **values})
    with pytest.raises(InvalidRequest) as error:
        request.check(Catalog(), tmp_path)
    assert message in str(error.value)


def test_framepack_makes_two_sections_and_shows_the_video_growing_after_each(manager, outputs, picture):
    partials = []

    def on_partial(path, text):
        # Read while the job runs: a complete, playable file of the video so far.
        partials.append((text, len(read_video(path).frames), path))

    # Sections of 2 latent frames (8 video frames): 17 frames are two sections, made from the end backwards.
    request = VideoRequest(prompt="a fox", model="demo-framepack", image=picture, frames=17, latent_window_size=2, steps=2, seed=3)
    result = run(request, manager, outputs, QueuedJob(), on_partial=on_partial)
    video = read_video(result.video.path)
    # The picture's 2:1 aspect at the demo's 64×64 pixel count, at FramePack's 30 fps.
    assert video.frames.shape == (17, 64, 96, 3) and video.fps == 30
    assert [(text, frames) for text, frames, _ in partials] == [
        ("Section 1/2 done: 5 frames so far", 5), ("Section 2/2 done: 17 frames so far", 17),
    ]
    assert not partials[0][2].exists(), "the partial video is removed when the job ends"
    saved = read_parameters(result.video.path)
    assert (saved["latent_window_size"], saved["transformer_passes"]) == (2, 4)
    assert "17 frames = 0.57 s at 30 fps in 2 sections of 8 frames" in result.length_note


def test_framepack_lengths_and_windows_are_checked_before_anything_loads(tmp_path, picture):
    checked = VideoRequest(prompt="a fox", model="demo-framepack", image=picture, frames=150).check(Catalog(), tmp_path)
    # The default window of 9 latent frames makes sections of 36 frames: 150 frames round to four sections.
    assert (checked.request.frames, checked.request.latent_window_size, checked.sections()) == (145, 9, 4)
    assert "so 145 were made" in checked.frames_note()
    with pytest.raises(InvalidRequest, match="latent_window_size: 40 is out of range; FramePack I2V \\(tiny\\) makes sections of 1 to 33"):
        VideoRequest(prompt="a fox", model="demo-framepack", image=picture, latent_window_size=40).check(Catalog(), tmp_path)


def test_stop_between_framepack_sections_saves_nothing_and_leaves_no_partial_video(manager, outputs, picture):
    job = QueuedJob()
    request = VideoRequest(prompt="a fox", model="demo-framepack", image=picture, frames=17, latent_window_size=2, steps=2, seed=3)
    result = run(request, manager, outputs, job, on_partial=lambda path, text: job.stop())
    assert result.stopped and result.video is None
    assert [path for path in outputs.root.rglob("*") if path.is_file()] == []


def test_a_gpu_preset_streams_the_video_transformer_and_makes_the_same_video(demo_models_dir, presets, outputs):
    """The 8 GB preset's memory engine (blocks streamed from a host arena, components offloaded) runs on the CPU
    too, in float32 there: the video must be the one the plain CPU placement makes."""
    made = {}
    for preset in ("cpu", "8gb-laptop"):
        manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets[preset])
        made[preset] = read_video(make(manager, outputs, model="demo-ltx", frames=9).video.path).frames
        if preset == "8gb-laptop":
            assert manager.status().block_plan is not None and manager.status().plan.components["text_encoder"].value == "offload"
    assert np.array_equal(made["cpu"], made["8gb-laptop"])


def test_the_8gb_preset_streams_framepacks_transformer_and_offloads_its_encoders_and_makes_the_same_video(
    manager, demo_models_dir, presets, outputs, picture
):
    request = VideoRequest(prompt="a fox", model="demo-framepack", image=picture, frames=9, latent_window_size=2, steps=2, seed=2)
    resident = read_video(run(request, manager, outputs, QueuedJob()).video.path).frames
    engine = ModelManager(ModelStore(demo_models_dir, offline=True), presets["8gb-laptop"])
    streamed = read_video(run(request, engine, outputs, QueuedJob()).video.path).frames
    plan = engine.status().plan
    assert engine.status().block_plan is not None and "transformer" not in plan.components
    assert {plan.components[name].value for name in ("text_encoder", "text_encoder_2", "image_encoder")} == {"offload"}
    assert streamed.shape == (9, 64, 96, 3) and np.array_equal(streamed, resident)


# -- LTX-Video 0.9.7 distilled: the condition pipeline, the authors' timesteps and the latent upsampler --------------

def test_ltx_097_distilled_entries_state_the_settings_diffusers_documents():
    from pipelines.catalog import MODELS_BY_ID

    single, upscaled = MODELS_BY_ID["ltx-video-0.9.7-distilled"], MODELS_BY_ID["ltx-video-0.9.7-distilled-upscaled"]
    for spec in (single, upscaled):
        assert spec.pipeline_class == "LTXConditionPipeline" and spec.defaults.guidance == 1.0
        assert spec.defaults.timesteps == (1000, 993, 987, 981, 975, 909, 725, 0.03) and spec.defaults.steps == 8
        assert dict(spec.defaults.call_kwargs)["guidance_rescale"] == 0.7
    assert single.defaults.upsample is None and single.companion is None
    upsample = upscaled.defaults.upsample
    assert (upsample.timesteps, upsample.denoise_strength, upsample.steps) == ((1000, 909, 725, 421, 0), 0.999, 4)
    assert upscaled.base == single.id and upscaled.companion.repo == "Lightricks/ltxv-spatial-upscaler-0.9.7"
    assert upscaled.companion.allow_patterns == ("model_index.json", "latent_upsampler/*"), "the repo's VAE copy is not fetched"


def test_the_condition_pipeline_runs_its_timesteps_as_given_even_where_the_repo_shifts_dynamically(demo_models_dir):
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler

    from pipelines.video.video_runner import _flow_shift

    # The tiny LTX scheduler's config is LTX-Video 0.9.1's: dynamic shifting and a terminal stretch to 0.1.
    pipe = SimpleNamespace(scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(demo_models_dir / "demo" / "demo-ltx" / "scheduler"))
    with pytest.raises(ValueError, match="mu"):
        pipe.scheduler.set_timesteps(timesteps=[1000.0, 0.03])
    with _flow_shift(pipe, None, fixed_schedule=True):
        pipe.scheduler.set_timesteps(timesteps=[1000.0, 993.0, 725.0, 0.03])
        assert pipe.scheduler.sigmas.tolist() == pytest.approx([1.0, 0.993, 0.725, 0.00003, 0.0])
    assert pipe.scheduler.config.use_dynamic_shifting, "the model's own scheduler is back after the job"


@pytest.mark.parametrize("with_picture", [False, True])
def test_the_distilled_demo_runs_the_authors_timesteps_with_guidance_rescale_and_records_them(manager, outputs, picture, with_picture):
    values = {"image": picture} if with_picture else {}
    result = make(manager, outputs, model="demo-ltx-distilled", width=64, height=64, frames=9, **values)
    video = read_video(result.video.path)
    assert video.frames.shape == (9, 64, 64, 3) and video.fps == 24
    saved = read_parameters(result.video.path)
    assert saved["schedule"] == {"base": [1000.0, 0.03]}, "the timesteps the pipeline ran are the model's own"
    assert saved["model_settings"]["guidance_rescale"] == 0.7 and saved["upsample"] is None
    assert (saved["image"] is not None) == with_picture


def test_another_step_count_runs_the_condition_pipelines_own_schedule(manager, outputs):
    saved = read_parameters(make(manager, outputs, model="demo-ltx-distilled", frames=9, steps=3).video.path)
    assert len(saved["schedule"]["base"]) == 3 and saved["schedule"]["base"][0] == 1000.0


@pytest.mark.parametrize("size, base, upsampled", [((64, 64), [32, 32], [64, 64]), ((96, 64), [64, 32], [128, 64])])
def test_the_two_pass_demo_upsamples_the_latents_and_denoises_again_at_twice_the_size(manager, outputs, size, base, upsampled):
    previews = []
    request = VideoRequest(prompt="a fox", model="demo-ltx-distilled-upscaled", width=size[0], height=size[1], frames=9, seed=2)
    result = run(request, manager, outputs, QueuedJob(), on_preview=lambda image, text: previews.append((image.size, text)))
    video = read_video(result.video.path)
    # The asked size: the upsampled size itself at 64×64, resized down from it otherwise (as diffusers' example does).
    assert video.frames.shape == (9, size[1], size[0], 3) and video.fps == 24
    saved = read_parameters(result.video.path)
    assert saved["schedule"] == {"base": [1000.0, 0.03], "upsampled": [421.0]}, "2 base steps, then 1 at the doubled size"
    assert saved["upsample"] == {
        "upsampler": "LTX-Video spatial latent upscaler (tiny)", "base_size": base, "upsampled_size": upsampled,
        "timesteps": [1000.0, 421.0], "denoise_strength": 0.999, "adain_factor": 1.0, "resized_to": list(size),
    }
    assert [text for _, text in previews] == ["Base pass, step 2/2", "Upsampled pass, step 1/1"]
    assert {image_size for image_size, _ in previews} == {size}
