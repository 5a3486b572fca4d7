"""/speak end to end through gradio_client, as a script would call it."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from gradio_client import handle_file


@pytest.fixture(scope="module")
def voice_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("voice") / "my voice.wav"
    t = np.linspace(0, 1.5, 24_000, endpoint=False)
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 16_000)
    return path


def test_speak_returns_a_wav_and_the_parameters_used(app, client, voice_clip):
    audio, used, summary = client.predict(
        text="Hello from a script. This is the second sentence.",
        reference_audio=handle_file(str(voice_clip)), reference_text="a steady tone",
        temperature=0.7, top_p=0.9, repetition_penalty=1.2, max_new_tokens=20, seed=7,
        api_name="/speak",
    )
    info = soundfile.info(audio)
    assert (info.samplerate, info.channels) == (44_100, 1) and info.frames > 0
    parameters = used["parameters"]
    assert (parameters["temperature"], parameters["top_p"], parameters["repetition_penalty"]) == (0.7, 0.9, 1.2)
    assert parameters["max_new_tokens"] == 20 and parameters["seed"] == 7 and parameters["model"] == "demo-fish-speech"
    assert parameters["references"][0]["transcript"] == "a steady tone"
    saved = Path(used["audio"])
    assert saved.is_relative_to(app.outputs) and json.loads(saved.with_suffix(".json").read_text())["seed"] == 7
    assert "real time" in summary and "random weights" in summary


def test_speak_without_a_reference_uses_the_defaults(client):
    _, used, _ = client.predict(text="Just text.", seed=1, max_new_tokens=16, api_name="/speak")
    assert used["parameters"]["references"] == [] and used["parameters"]["top_p"] == 0.8


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(text=""), "text: must not be empty"),
        (dict(reference_text="words but no clip"), "reference_audio: a transcript was given without its audio clip"),
        # The slider refuses it before our check does, naming the field as our check would.
        (dict(temperature=5.0), "temperature: 5 is out of range; use"),
        (dict(max_new_tokens=3), "max_new_tokens: 3 is out of range; use 16 to 8192"),
    ],
)
def test_bad_input_to_speak_is_a_clear_error(client, change, message):
    with pytest.raises(Exception) as error:
        client.predict(**{"text": "Hello.", "max_new_tokens": 16, **change}, api_name="/speak")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)


def test_a_reference_clip_without_its_transcript_is_refused(client, voice_clip):
    with pytest.raises(Exception, match="reference_text: the reference clip my voice.wav needs its transcript"):
        client.predict(text="Hello.", reference_audio=handle_file(str(voice_clip)), api_name="/speak")


def test_an_unreadable_reference_clip_is_refused(client, tmp_path):
    fake = tmp_path / "fake.wav"
    fake.write_bytes(b"not audio at all")
    with pytest.raises(Exception, match="fake.wav is not readable audio"):
        client.predict(text="Hello.", reference_audio=handle_file(str(fake)), reference_text="hi", api_name="/speak")


def test_a_wav_made_by_the_app_can_be_listed_and_its_settings_read_back(client):
    _, used, _ = client.predict(text="Remember me.", seed=99, max_new_tokens=16, api_name="/speak")
    listed = client.predict(kind="speech", limit=1, api_name="/outputs")
    assert listed[0]["seed"] == 99 and listed[0]["text"] == "Remember me."
