"""Wan2.1 VACE on the tiny model: video editing with a mask, the input kept exactly outside it, reference images,
the first frame from a picture, clear errors before anything loads, and its memory: streamed control blocks and the
control hints planned for."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import WanVACETransformer3DModel
from PIL import Image

import pipelines.video.video_runner as video_runner
from pipelines.catalog import Catalog
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed
from pipelines.memory.planner import Workload, activation_bytes, denoiser_shape
from pipelines.media import encode_video, read_video, read_video_frames
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import read_parameters
from pipelines.video.video_runner import VideoRequest, generate_video

SIZE = 64


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 12-frame 96×64 clip at 24 fps (a bar moving right), a 4-frame one, a mask video (12 and 6 frames) and a mask
    picture of the same shape (white square in the middle), a mask of another shape, three reference pictures."""
    folder = tmp_path_factory.mktemp("vace")
    clip = np.zeros((12, 64, 96, 3), np.uint8)
    clip[..., 1] = 90
    for index in range(12):
        clip[index, :, index * 6 : index * 6 + 12] = (230, 200, 40)
    (folder / "clip.mp4").write_bytes(encode_video(clip, 24, ".mp4", "input"))
    (folder / "short.mp4").write_bytes(encode_video(clip[:4], 16, ".mp4", "short"))
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 32:64] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "mask.mp4").write_bytes(encode_video(np.repeat(mask[None, ..., None], 12, axis=0).repeat(3, axis=-1), 24, ".mp4", "mask"))
    (folder / "short-mask.mp4").write_bytes(encode_video(np.repeat(mask[None, ..., None], 6, axis=0).repeat(3, axis=-1), 24, ".mp4", "mask"))
    Image.new("L", (64, 64), 255).save(folder / "square-mask.png")
    for index, colour in enumerate(("red", "white", "blue")):
        Image.new("RGB", (40 + index * 8, 30), colour).save(folder / f"ref{index}.png")
    return folder


def make(manager, outputs, **values):
    request = VideoRequest(**{"prompt": "a fox", "model": "demo-wan-vace", "steps": 2, "seed": 3, "width": SIZE, "height": SIZE, **values})
    return generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob())


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_editing_a_video_with_a_mask_video_writes_the_asked_frames_size_and_rate(manager, outputs, files):
    result = make(manager, outputs, video=str(files / "clip.mp4"), mask=str(files / "mask.mp4"), frames=5, fps=16)
    video = read_video(result.video.path)
    assert video.frames.shape == (5, SIZE, SIZE, 3) and video.fps == 16
    saved = read_parameters(result.video.path)
    for name in ("video", "mask"):
        given = files / f"{'clip' if name == 'video' else name}.mp4"
        assert (saved[name]["file"], saved[name]["sha256"]) == (given.name, sha256(given))
        assert outputs.kept_input(saved[name]).read_bytes() == given.read_bytes()
    # 12 frames at 24 fps sampled at 16 fps are 8; the first 5 were used.
    assert "sampled at 16 fps, its first 5 of 8 frames used, scaled and cropped to 64×64" in result.input_note
    assert saved["input_note"] == result.input_note


@pytest.fixture
def exported_frames(monkeypatch):
    """The frames handed to the exporter (the file itself is lossy), one array per video made."""
    captured = []
    real_export = video_runner.export_video

    def capture(frames, *args, **kwargs):
        captured.append(frames.copy())
        return real_export(frames, *args, **kwargs)

    monkeypatch.setattr(video_runner, "export_video", capture)
    return captured


def test_keep_unmasked_gives_back_the_input_exactly_outside_the_mask(manager, outputs, files, exported_frames):
    inputs = dict(video=str(files / "clip.mp4"), mask=str(files / "mask.png"), frames=5, fps=16)
    make(manager, outputs, keep_unmasked=True, **inputs)
    make(manager, outputs, **inputs)
    kept, generated = exported_frames
    source = read_video_frames(files / "clip.mp4", (SIZE, SIZE), 16, 5)
    # The 96×64 mask cropped like the video to 64×64: its white square spans columns 16–47.
    outside = np.ones((SIZE, SIZE), bool)
    outside[16:48, 16:48] = False
    assert np.array_equal(kept[:, outside], source[:, outside])
    assert np.array_equal(kept[:, ~outside], generated[:, ~outside]), "inside the mask the generated pixels stay"
    assert not np.array_equal(generated[:, outside], source[:, outside]), "without the option the model redraws them"


def test_a_picture_becomes_the_first_frame_and_is_kept_exactly(manager, outputs, files, exported_frames):
    result = make(manager, outputs, image=str(files / "ref0.png"), frames=5, keep_unmasked=True)
    first = np.asarray(Image.open(files / "ref0.png").convert("RGB").resize((SIZE, SIZE)))
    assert np.array_equal(exported_frames[0][0], first) and len(exported_frames[0]) == 5
    assert not np.array_equal(exported_frames[0][1], first)
    assert result.video.parameters["image"]["file"] == "ref0.png"


def test_reference_images_alone_make_a_video_and_change_it(manager, outputs, files):
    # Two references: the most a 5-frame video (2 latent frames) takes, see the errors below.
    references = tuple(str(files / f"ref{index}.png") for index in range(2))
    with_references = make(manager, outputs, reference_images=references, frames=5)
    plain = make(manager, outputs, frames=5)
    made = read_video(with_references.video.path)
    assert made.frames.shape == (5, SIZE, SIZE, 3)
    assert not np.array_equal(made.frames, read_video(plain.video.path).frames)
    saved = read_parameters(with_references.video.path)
    assert [record["sha256"] for record in saved["reference_images"]] == [sha256(files / f"ref{index}.png") for index in range(2)]
    assert saved["video"] is None and saved["mask"] is None


def test_the_vace_strength_weighs_the_references_and_is_recorded(manager, outputs, files):
    references = tuple(str(files / f"ref{index}.png") for index in range(2))
    made = {
        strength: make(manager, outputs, reference_images=references, frames=5, vace_strength=strength)
        for strength in (None, 1.0, 0.0)
    }
    frames = {strength: read_video(result.video.path).frames for strength, result in made.items()}
    assert np.array_equal(frames[None], frames[1.0]) and not np.array_equal(frames[1.0], frames[0.0])
    assert [result.video.parameters["vace_strength"] for result in made.values()] == [1.0, 1.0, 0.0]
    # A model without VACE inputs records none, and a strength of 1 (the page's slider) is no error there.
    assert make(manager, outputs, model="demo-wan", frames=5, vace_strength=1.0).video.parameters["vace_strength"] is None


def test_a_clip_shorter_than_the_default_length_sets_the_length(files, tmp_path):
    # 4 frames at 16 fps are fewer than the tiny model's default 9 and its minimum 5.
    with pytest.raises(InvalidRequest, match="video: gives 4 frame"):
        VideoRequest(prompt="a fox", model="demo-wan-vace", video=str(files / "short.mp4")).check(Catalog(), tmp_path)
    # 12 frames at 24 fps sampled at 8 fps are 4: too short; at 12 fps, 6, so 5 are made.
    checked = VideoRequest(prompt="a fox", model="demo-wan-vace", video=str(files / "clip.mp4"), fps=12).check(Catalog(), tmp_path)
    assert checked.request.frames == 5 and checked.frames_note() == ""
    # Without a size the clip's 3:2 aspect sets it, at about the model's default pixel count (64 is the least height).
    assert (checked.request.width, checked.request.height) == (80, 64)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(reference_images=("ref0.png", "ref1.png", "ref2.png", "ref0.png")), "reference_images: 4 were given; Wan2.1 VACE (tiny) takes at most 3"),
        (dict(reference_images=("ref0.png", "ref1.png", "ref2.png"), frames=5), "reference_images: 3 reference images need a video of at least 9 frames; 5 were asked for"),
        (dict(mask="mask.png"), "mask: a mask applies to an input video, and no video was given; give a video with the mask, or remove the mask"),
        (dict(video="clip.mp4", image="ref0.png"), "image: give an input image (it becomes the first frame) or an input video, not both"),
        (dict(video="clip.mp4", mask="square-mask.png"), "mask: is 64×64 but the input video is 96×64"),
        (dict(video="clip.mp4", mask="short-mask.mp4", frames=5), "mask: gives 4 frame(s) at 16 fps but the input video's 5 frames each need one"),
        (dict(video="clip.mp4", frames=9), "frames: 9 is more than the input video gives at 16 fps (8); ask for at most 5, or a lower fps"),
        (dict(keep_unmasked=True), "keep_unmasked: there is no input video or image to keep pixels from"),
        (dict(video="mask.png.txt"), "video: mask.png.txt is not a readable video"),
        (dict(reference_images=("clip.mp4",)), "reference_images: clip.mp4 is not a readable image"),
        (dict(model="demo-wan", video="clip.mp4"), "video: Wan2.1 T2V (tiny) takes no reference images, input video or mask (nor keeps unmasked pixels); choose a VACE model: wan21-vace-1.3b, wan21-vace-14b, demo-wan-vace"),
        (dict(model="demo-wan", keep_unmasked=True), "keep_unmasked: Wan2.1 T2V (tiny) takes no reference images"),
        (dict(vace_strength=2.5), "vace_strength: 2.5 is out of range; use 0 to 2"),
        (dict(model="demo-wan", vace_strength=0.5), "vace_strength: Wan2.1 T2V (tiny) has no VACE inputs to weigh"),
    ],
)
def test_bad_vace_inputs_are_refused_before_anything_loads(files, tmp_path, values, message):
    (files / "mask.png.txt").write_text("not a video")
    file_fields = {"reference_images", "video", "mask", "image"}
    located = {
        key: (tuple(str(files / name) for name in value) if key == "reference_images" else str(files / value)) if key in file_fields else value
        for key, value in values.items()
    }
    with pytest.raises(InvalidRequest) as error:
        VideoRequest(**{"prompt": "a fox", "model": "demo-wan-vace", **located}).check(Catalog(), tmp_path)
    assert message in str(error.value)


def test_streamed_vace_blocks_give_the_resident_output_exactly(demo_models_dir):
    """VACE's control blocks are defined after the main blocks but run before them: the block streamer must still
    hand every block its own weights."""
    folder = demo_models_dir / "demo" / "demo-wan-vace" / "transformer"
    reference = WanVACETransformer3DModel.from_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(1, 16, 3, 8, 8, generator=generator), timestep=torch.tensor([500]),
        encoder_hidden_states=torch.randn(1, 12, 32, generator=generator), control_hidden_states=torch.randn(1, 96, 3, 8, 8, generator=generator),
    )
    with torch.no_grad():
        expected = reference(**inputs, return_dict=False)[0]
    for resident in (set(), {0}, {3}):
        model, streamer = load_streamed(WanVACETransformer3DModel, folder, torch.device("cpu"), torch.float32, HostArena(pinned=False))
        streamer.place(resident)
        for _ in range(2):  # the ring carries over from one forward to the next
            with torch.no_grad():
                assert torch.equal(model(**inputs, return_dict=False)[0], expected)


def test_memory_is_planned_for_the_control_hints_vace_holds_through_a_forward(demo_models_dir):
    vace = denoiser_shape(WanVACETransformer3DModel.from_pretrained(demo_models_dir / "demo" / "demo-wan-vace" / "transformer"), [])
    plain = replace(vace, held_width=0)
    # Two control layers of the tiny model, each holding a hint of 24 channels (2 heads × 12) per token, in 2 bytes.
    tokens = 1000
    assert activation_bytes(vace, Workload(tokens)) - activation_bytes(plain, Workload(tokens)) == tokens * 2 * 24 * 2
