"""Every text a request takes has its limit, refused by name before anything keeps or encodes it (a 1 MB negative
prompt once went through to the pipeline and into the PNG's parameters)."""

import pytest

from pipelines.audio.music_runner import MusicRequest
from pipelines.audio.speech_runner import Reference, SpeechRequest
from pipelines.catalog import Catalog
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest
from pipelines.lora_library import parse_lora_list
from pipelines.request_values import MAX_PROMPT_CHARS, checked_text
from pipelines.video.video_export import ExportSettings
from pipelines.video.video_request import VideoRequest

MEGABYTE_OF_TEXT = "x" * 1_000_000


def test_checked_text_strips_allows_empty_and_refuses_too_long_by_name():
    assert checked_text("negative_prompt", "  a blurry photo ") == "a blurry photo"
    assert checked_text("negative_prompt", None) == ""
    with pytest.raises(InvalidRequest, match=f"negative_prompt: has {MAX_PROMPT_CHARS + 1} characters; at most {MAX_PROMPT_CHARS}"):
        checked_text("negative_prompt", "x" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(InvalidRequest, match="negative_prompt: must be text, not int"):
        checked_text("negative_prompt", 5)


def test_an_image_requests_negative_prompt_of_a_megabyte_is_refused():
    with pytest.raises(InvalidRequest, match="negative_prompt: has 1000000 characters; at most 10000 are accepted"):
        ImageRequest(prompt="a fox", model="demo-sd3", negative_prompt=MEGABYTE_OF_TEXT).check(Catalog())


def test_a_video_requests_negative_prompt_and_filename_prefix_have_limits(tmp_path):
    with pytest.raises(InvalidRequest, match="negative_prompt: has 1000000 characters"):
        VideoRequest(prompt="a fox", model="demo-wan", negative_prompt=MEGABYTE_OF_TEXT).check(Catalog(), tmp_path)
    with pytest.raises(InvalidRequest, match="filename_prefix: has 1000000 characters; at most 2000"):
        VideoRequest(prompt="a fox", model="demo-wan", export=ExportSettings(filename_prefix=MEGABYTE_OF_TEXT)).check(Catalog(), tmp_path)


def test_a_lora_list_of_a_megabyte_is_refused_before_it_is_split():
    with pytest.raises(InvalidRequest, match="loras: has 1000000 characters; at most 2000"):
        parse_lora_list(MEGABYTE_OF_TEXT)
    with pytest.raises(InvalidRequest, match="loras: 100000 entries given; at most 8"):
        parse_lora_list(["a.safetensors"] * 100_000)


def test_music_tags_lyrics_and_speech_transcripts_keep_their_limits():
    with pytest.raises(InvalidRequest, match="tags: has 1000000 characters; at most 2000"):
        MusicRequest(tags=MEGABYTE_OF_TEXT, model="demo-ace-step").check(Catalog())
    with pytest.raises(InvalidRequest, match="lyrics: has 1000000 characters; at most 6000"):
        MusicRequest(tags="jazz", lyrics=MEGABYTE_OF_TEXT, model="demo-ace-step").check(Catalog())
    with pytest.raises(InvalidRequest, match="reference_text: has 1000000 characters; at most 2000"):
        SpeechRequest(text="hello", model="demo-fish-speech", references=(Reference("voice.wav", MEGABYTE_OF_TEXT),)).check(Catalog())


def test_the_bpm_message_agrees_with_the_field_where_0_means_automatic():
    with pytest.raises(InvalidRequest, match="bpm: 500 is out of range; use 30 to 300, or 0 to let the model choose"):
        MusicRequest(tags="jazz", bpm=500, model="demo-ace-step").check(Catalog())
