"""The shared text check: every free-text field of every request refuses what cannot be written as UTF-8 (a lone
surrogate, which only a hand-made request carries), names the field, and keeps its length limit."""

import pytest

from pipelines.audio.music_runner import MusicRequest
from pipelines.audio.speech_runner import Reference, SpeechRequest
from pipelines.catalog import Catalog
from pipelines.errors import InvalidRequest
from pipelines.image.image_runner import ImageRequest
from pipelines.request_values import checked_prompt, checked_text
from pipelines.video.video_export import ExportSettings
from pipelines.video.video_request import VideoRequest

BROKEN = "a\ud800b"


def test_checked_text_strips_and_refuses_what_is_not_text_too_long_or_not_utf8():
    assert checked_text("lyrics", "  la la \n", 10) == "la la" and checked_text("lyrics", None, 10) == ""
    with pytest.raises(InvalidRequest, match="lyrics: has a character that is not valid text at position 2"):
        checked_text("lyrics", BROKEN, 10)
    with pytest.raises(InvalidRequest, match="tags: must be text, not list"):
        checked_text("tags", ["rock"], 10)
    with pytest.raises(InvalidRequest, match="tags: has 11 characters; at most 10 are accepted"):
        checked_text("tags", "x" * 11, 10)
    with pytest.raises(InvalidRequest, match="prompt: has a character that is not valid text"):
        checked_prompt(BROKEN)


@pytest.mark.parametrize("field, check", [
    ("prompt", lambda catalog, tmp: ImageRequest(prompt=BROKEN, model="demo-sd3").check(catalog)),
    ("negative_prompt", lambda catalog, tmp: ImageRequest(prompt="a fox", negative_prompt=BROKEN, model="demo-sd3").check(catalog)),
    ("tags", lambda catalog, tmp: MusicRequest(tags=BROKEN, model="demo-ace-step").check(catalog)),
    ("lyrics", lambda catalog, tmp: MusicRequest(tags="rock", lyrics=BROKEN, model="demo-ace-step").check(catalog)),
    ("text", lambda catalog, tmp: SpeechRequest(text=BROKEN, model="demo-fish-speech").check(catalog)),
    ("reference_text", lambda catalog, tmp: SpeechRequest(
        text="Hello.", model="demo-fish-speech", references=(Reference(str(tmp / "clip.wav"), BROKEN),),
    ).check(catalog)),
    ("prompt", lambda catalog, tmp: VideoRequest(prompt=BROKEN, model="demo-wan").check(catalog, tmp)),
    ("negative_prompt", lambda catalog, tmp: VideoRequest(prompt="a fox", negative_prompt=BROKEN, model="demo-wan").check(catalog, tmp)),
    ("filename_prefix", lambda catalog, tmp: ExportSettings(filename_prefix=BROKEN).check(16)),
])
def test_every_text_field_refuses_a_lone_surrogate_by_name(field, check, tmp_path):
    with pytest.raises(InvalidRequest, match=f"^{field}: has a character that is not valid text"):
        check(Catalog(), tmp_path)
