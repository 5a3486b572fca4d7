"""Reuse settings puts a result's input files back: each tab maps the copies kept under outputs/ onto its input
controls, clears a control the result had no input for, and names the inputs whose copies are gone."""

import gradio as gr
import pytest

from pipelines.outputs import OutputStore
from tabs.edit import EditTab
from tabs.image import ImageTab
from tabs.kept_inputs import KeptInputs
from tabs.music import MusicTab
from tabs.tts import TtsTab
from tabs.video import VideoTab


@pytest.fixture
def store(tmp_path):
    return OutputStore(tmp_path / "outputs")


def kept(store, tmp_path, name: str, content: bytes = b"") -> dict:
    path = tmp_path / name
    path.write_bytes(content or name.encode())
    return store.keep_input(path)


def is_copy_of(value, name: str) -> bool:
    return isinstance(value, str) and open(value, "rb").read() == name.encode()


def test_the_image_tab_gets_its_start_image_back_and_a_text_to_image_result_clears_it(store, tmp_path):
    used = {"init_image": kept(store, tmp_path, "start.png")}
    start, control_images, ip_adapter_images = ImageTab(None, []).inputs_from(used, KeptInputs(store))
    assert is_copy_of(start, "start.png") and control_images is None and ip_adapter_images is None
    assert ImageTab(None, []).inputs_from({"init_image": None}, KeptInputs(store)) == (None, None, None)


def test_the_edit_tab_fills_its_three_slots_and_mask_or_a_flux_tools_picture_and_depth_map(store, tmp_path):
    used = {"images": [kept(store, tmp_path, "one.png"), kept(store, tmp_path, "two.png")], "mask": kept(store, tmp_path, "mask.png")}
    one, two, three, mask, depth = EditTab(None, [], None).inputs_from(used, KeptInputs(store))
    assert is_copy_of(one, "one.png") and is_copy_of(two, "two.png") and three is None and is_copy_of(mask, "mask.png") and depth is None
    used = {"inputs": {"image": kept(store, tmp_path, "edges.png"), "depth_map": kept(store, tmp_path, "depth.png")}}
    one, two, three, mask, depth = EditTab(None, [], None).inputs_from(used, KeptInputs(store))
    assert is_copy_of(one, "edges.png") and (two, three, mask) == (None, None, None) and is_copy_of(depth, "depth.png")


def test_the_video_tab_gets_vaces_references_video_and_mask_back(store, tmp_path):
    used = {
        "image": None, "reference_images": [kept(store, tmp_path, "ref1.png"), kept(store, tmp_path, "ref2.png")],
        "video": kept(store, tmp_path, "clip.mp4"), "mask": kept(store, tmp_path, "mask.mp4"),
    }
    image, references, video, mask = VideoTab(None, []).inputs_from(used, KeptInputs(store))
    assert image is None and [open(path, "rb").read() for path in references] == [b"ref1.png", b"ref2.png"]
    assert is_copy_of(video, "clip.mp4") and is_copy_of(mask, "mask.mp4")


def test_the_tts_tab_gets_every_voice_clip_and_the_further_clips_transcripts(store, tmp_path):
    references = [
        {**kept(store, tmp_path, f"voice{index}.wav"), "transcript": f"line {index}"} for index in range(3)
    ]
    first, more, transcripts = TtsTab(None, []).inputs_from({"references": references}, KeptInputs(store))
    assert is_copy_of(first, "voice0.wav") and [open(path, "rb").read() for path in more] == [b"voice1.wav", b"voice2.wav"]
    assert transcripts == "line 1\nline 2"


def test_the_music_tab_gets_its_input_clip_back(store, tmp_path):
    (clip,) = MusicTab(None, []).inputs_from({"input_audio": {**kept(store, tmp_path, "clip.wav"), "seconds": 2.0}}, KeptInputs(store))
    assert is_copy_of(clip, "clip.wav")


def test_an_input_whose_copy_is_gone_leaves_its_control_alone_and_is_named(store, tmp_path):
    record = kept(store, tmp_path, "gone.png")
    store.kept_input(record).unlink()
    lookup = KeptInputs(store)
    assert ImageTab(None, []).inputs_from({"init_image": record}, lookup)[0] == gr.skip()
    assert lookup.missing == ["gone.png"]
    # A result from before inputs were kept has a short hash and no copy.
    lookup = KeptInputs(store)
    assert lookup.paths([{"file": "old.wav", "sha256": "0123456789abcdef"}]) is None and lookup.missing == ["old.wav"]
