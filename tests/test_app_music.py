"""/generate_music end to end through gradio_client, as a script would call it."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from gradio_client import handle_file

RATE = 48_000


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("song") / "my song.wav"
    t = np.arange(3 * RATE) / RATE
    soundfile.write(path, np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), RATE, subtype="PCM_16")
    return path


def test_generate_music_returns_the_file_and_the_parameters_used(app, client):
    audio, used, summary = client.predict(
        tags="upbeat funk, slap bass", lyrics="[verse]\nGet up and move", duration=2.5, steps=2, guidance=1.0, seed=9,
        task="text2music", api_name="/generate_music",
    )
    info = soundfile.info(audio)
    assert (info.samplerate, info.channels, info.frames) == (RATE, 2, round(2.5 * RATE))
    parameters = used["parameters"]
    assert (parameters["tags"], parameters["duration"], parameters["steps"], parameters["seed"]) == ("upbeat funk, slap bass", 2.5, 2, 9)
    saved = Path(used["audio"])
    assert saved.is_relative_to(app.outputs / "music") and json.loads(saved.with_suffix(".json").read_text())["task"] == "text2music"
    assert "2.5 s of music" in summary and "random weights" in summary


def test_repaint_through_the_api_keeps_the_clip_outside_the_range(client, song):
    audio, used, _ = client.predict(
        tags="jazz piano", steps=2, seed=3, task="repaint", audio=handle_file(str(song)), start=1.0, end=2.0,
        audio_format="flac", api_name="/generate_music",
    )
    original, _ = soundfile.read(song, dtype="int16")
    repainted, rate = soundfile.read(audio, dtype="int16")
    assert rate == RATE and repainted.shape == original.shape and audio.endswith(".flac")
    assert np.array_equal(repainted[:RATE], original[:RATE]) and np.array_equal(repainted[2 * RATE :], original[2 * RATE :])
    assert used["parameters"]["input_audio"]["file"] == "my song.wav"


def test_extend_through_the_api_adds_the_seconds_asked_for(client, song):
    audio, _, _ = client.predict(
        tags="jazz piano", duration=2.0, steps=2, seed=3, task="complete", audio=handle_file(str(song)), api_name="/generate_music",
    )
    assert soundfile.info(audio).frames == 5 * RATE


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(tags=""), "tags: must not be empty"),
        (dict(task="repaint"), "audio: the repaint task needs an input clip"),
        (dict(task="dance"), "task: 'dance' is not offered"),
        # The slider refuses it before our check does, naming the field as our check would.
        (dict(duration=0.2), "duration: 0.2 is out of range; use 1 to 600"),
        (dict(key="Z major"), "key: 'Z major' is not a key"),
        (dict(audio_format="ogg"), "audio_format: 'ogg' is not offered"),
    ],
)
def test_bad_input_to_generate_music_is_a_clear_error(client, change, message):
    with pytest.raises(Exception) as error:
        client.predict(**{"tags": "rock", "duration": 2.0, "steps": 2, **change}, api_name="/generate_music")
    assert type(error.value).__name__ == "AppError" and message in str(error.value)


def test_a_range_past_the_end_of_the_clip_is_a_clear_error(client, song):
    with pytest.raises(Exception) as error:
        client.predict(tags="rock", task="repaint", audio=handle_file(str(song)), start=1.0, end=7.5, api_name="/generate_music")
    assert "end: 7.5 s is past the end of the clip (3.00 s)" in str(error.value)


def test_generate_music_takes_a_lora_from_the_library(client):
    assert client.predict(model="demo-ace-step", api_name="/loras") == [{"name": "music/lofi.safetensors", "family": "ace_step"}]
    _, used, summary = client.predict(
        tags="lo-fi beat", duration=2.0, steps=2, seed=4, loras="music/lofi.safetensors:0.7", api_name="/generate_music",
    )
    assert [(lora["file"], lora["weight"]) for lora in used["parameters"]["loras"]] == [("music/lofi.safetensors", 0.7)]
    assert "LoRAs: music/lofi.safetensors:0.7" in summary


def built_music_tab(models_dir, presets, outputs_dir):
    """The Music tab as the app builds it, over `models_dir`, for what Reuse settings gives back."""
    import gradio as gr

    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore
    from pipelines.outputs import OutputStore
    from tabs import music
    from tabs.context import AppContext

    store = ModelStore(models_dir, offline=True)
    context = AppContext(ModelManager(store, presets["cpu"]), store, OutputStore(outputs_dir), presets, demo_mode=True)
    with gr.Blocks():
        return music.build(context)


def test_speed_through_generate_music_is_recorded_and_reuse_restores_it(client, demo_models_dir, presets, tmp_path):
    from tabs.music import SETTINGS_FIELDS

    _, used, summary = client.predict(tags="lo-fi piano", duration=1.0, steps=8, seed=2, speed="fast", api_name="/generate_music")
    cache = used["parameters"]["step_cache"]
    assert used["parameters"]["speed"] == "fast" and cache["method"] == "teacache" and cache["calls_skipped"] > 0
    assert f"skipped {cache['calls_skipped']} of 8 denoiser calls" in summary
    tab = built_music_tab(demo_models_dir, presets, tmp_path)
    restored = dict(zip(SETTINGS_FIELDS, tab.values_from(used["parameters"], "x.wav")))
    assert (restored["speed"], restored["cache_method"], restored["cache_threshold"]) == ("fast", "auto", None)
