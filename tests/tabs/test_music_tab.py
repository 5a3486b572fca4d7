"""The Music tab's one field table: the API's parameters and the remembered controls in their fixed orders, and the
path of a job (checked, then queued; only the page remembers values)."""

import gradio as gr
import numpy as np
import pytest
import soundfile

from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from pipelines.outputs import OutputStore
from tabs import music
from tabs.context import AppContext

API_PARAMETERS = (
    "tags", "lyrics", "duration", "steps", "guidance", "seed", "task", "audio", "start", "end", "model", "bpm", "key",
    "time_signature", "language", "shift", "cover_strength", "audio_format", "loras", "speed", "cache_method", "cache_threshold",
)


@pytest.fixture
def built(tmp_path, presets):
    """The tab over an empty models folder in demo mode (the demo model is built when a job first uses it), and its
    /generate_music handler."""
    store = ModelStore(tmp_path / "models", offline=True)
    context = AppContext(ModelManager(store, presets["cpu"]), store, OutputStore(tmp_path / "outputs"), presets, demo_mode=True)
    with gr.Blocks() as ui:
        tab = music.build(context)
    handler = next(event.fn for event in ui.fns.values() if event.api_name == "generate_music")
    return tab, handler


def test_the_api_parameters_and_the_remembered_controls_keep_their_orders(built):
    tab, _ = built
    assert tuple(field.name for field in tab.fields.api_fields) == API_PARAMETERS
    assert tab.fields.remembered_names == music.SETTINGS_FIELDS
    assert [component.elem_id for component in tab.settings_components][:3] == ["music-model", "music-task", "music-tags"]


def test_a_range_past_the_end_of_the_clip_is_refused_before_anything_is_remembered(built, tmp_path):
    tab, handler = built
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, np.zeros((3 * 48_000, 2), np.float32), 48_000)
    with pytest.raises(gr.Error, match="start: 5 s is past the end of the clip"):
        handler(tags="rock", task="repaint", audio=str(clip), start=5.0, end=-1)
    assert tab.context.settings.get("music") == {}


def test_a_scripts_job_remembers_nothing_for_any_page(built):
    tab, handler = built
    audio, used, _ = handler(tags="lo-fi piano", duration=1.0, steps=2, seed=3, task="text2music")
    assert audio and used["parameters"]["seed"] == 3
    assert tab.context.settings.get("music") == {} and tab.context.settings.get("users") == {}
