"""The settings file (the machine's preset, each logged-in user's last values) and what a page gets back when it opens:
per browser or per user, each value checked against its control."""

import json
from types import SimpleNamespace

import gradio as gr
import pytest

from pipelines.loading.model_store import ModelStore
from pipelines.manager import ModelManager
from pipelines.outputs import OutputStore
from tabs import image, music, tts
from tabs.context import AppContext
from tabs.saved_settings import MAX_SETTINGS_BYTES, SavedSettings

NOBODY = SimpleNamespace(username=None)
ALICE, BOB = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")


def test_the_preset_and_each_users_values_survive_a_restart(tmp_path):
    path = tmp_path / "settings.json"
    first = SavedSettings(path)
    first.update("preset", {"id": "8gb-laptop"})
    first.remember_for_user("alice", "image", {"prompt": "a fox", "steps": 4})
    first.remember_for_user("bob", "image", {"prompt": "a barn"})
    first.remember_for_user("alice", "image", {"prompt": "a fox", "steps": 6})
    again = SavedSettings(path)
    assert again.get("preset") == {"id": "8gb-laptop"}
    assert again.for_user("alice", "image") == {"prompt": "a fox", "steps": 6}
    assert again.for_user("bob", "image") == {"prompt": "a barn"}
    assert again.for_user("alice", "video") == {} and again.for_user("carol", "image") == {}


def test_an_unreadable_settings_file_is_kept_as_bad_and_the_app_starts_afresh(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    settings = SavedSettings(path)
    assert settings.get("preset") == {}
    assert (tmp_path / "settings.json.bad").read_text() == "{not json"
    settings.update("preset", {"id": "cpu"})
    assert json.loads(path.read_text()) == {"preset": {"id": "cpu"}}


def test_a_misshapen_preset_is_set_aside_and_the_rest_of_the_file_kept(tmp_path):
    path = tmp_path / "settings.json"
    damaged = {"preset": {"id": ["cpu"]}, "users": {"alice": {"image": {"prompt": "a fox"}, "video": "oops"}}}
    path.write_text(json.dumps(damaged))
    settings = SavedSettings(path)
    assert settings.get("preset") == {}
    assert settings.for_user("alice", "image") == {"prompt": "a fox"}
    assert json.loads((tmp_path / "settings.json.bad").read_text()) == damaged
    assert json.loads(path.read_text()) == {"users": {"alice": {"image": {"prompt": "a fox"}}}}


def test_an_oversized_settings_file_is_set_aside_unread(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"preset": {"id": "cpu"}, "padding": "x" * MAX_SETTINGS_BYTES}))
    settings = SavedSettings(path)
    assert settings.get("preset") == {}
    assert (tmp_path / "settings.json.bad").stat().st_size > MAX_SETTINGS_BYTES and not path.exists()


def test_an_old_global_files_tab_sections_are_ignored_and_go_at_the_next_save(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"preset": {"id": "cpu"}, "image": {"prompt": "someone else's prompt"}, "tts": {"seed": 2}}))
    settings = SavedSettings(path)
    assert settings.get("image") == {} and settings.for_user("alice", "image") == {}
    settings.remember_for_user("alice", "image", {"prompt": "mine"})
    assert json.loads(path.read_text()) == {"preset": {"id": "cpu"}, "users": {"alice": {"image": {"prompt": "mine"}}}}
    assert not (tmp_path / "settings.json.bad").exists()


def test_a_value_that_cannot_be_saved_is_not_kept_and_saving_never_raises(tmp_path):
    path = tmp_path / "settings.json"
    settings = SavedSettings(path)
    settings.update("preset", {"id": "cpu"})
    settings.update("preset", {"id": "a\ud800b"})  # a lone surrogate: UTF-8 cannot hold it
    settings.remember_for_user("alice", "music", {"lyrics": "a\ud800b"})
    settings.remember_for_user("alice", "music", {"lyrics": "x" * (MAX_SETTINGS_BYTES + 1)})
    assert settings.get("preset") == {"id": "cpu"} and settings.for_user("alice", "music") == {}
    settings.remember_for_user("alice", "music", {"lyrics": "la la"})
    assert SavedSettings(path).for_user("alice", "music") == {"lyrics": "la la"}


def test_an_unwritable_settings_file_does_not_break_the_app(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = SavedSettings(blocker / "settings.json")  # its folder is a file: cannot be created
    settings.remember_for_user("alice", "image", {"prompt": "a fox"})
    assert settings.for_user("alice", "image") == {"prompt": "a fox"}
    assert not list(tmp_path.glob("**/*.tmp"))


# -- what a page gets back ------------------------------------------------------------------------------------------


@pytest.fixture
def tabs(tmp_path, presets):
    """The Image, TTS and Music tabs over an empty models folder in demo mode, with a settings file."""
    store = ModelStore(tmp_path / "models", offline=True)
    context = AppContext(
        ModelManager(store, presets["cpu"]), store, OutputStore(tmp_path / "outputs"), presets, demo_mode=True,
        settings=SavedSettings(tmp_path / "settings.json"),
    )
    with gr.Blocks():
        return SimpleNamespace(image=image.build(context), tts=tts.build(context), music=music.build(context), context=context)


def restored(tab, in_browser, request=NOBODY) -> dict:
    """What the tab's load event gives each remembered control (only the ones it changes)."""
    values = tab.last_values(in_browser, request)
    return {name: value for name, value in zip(tab.fields.remembered_names, values) if not isinstance(value, type(gr.skip()))}


def page_values(tab, **values) -> dict:
    """The page's controls as the remember event gets them: component → value."""
    by_name = {field.name: field.component for field in tab.fields.remembered}
    return {by_name[name]: value for name, value in values.items()}


def test_one_mistyped_value_is_skipped_and_the_others_come_back(tabs):
    kept = restored(tabs.image, {"model": "demo-flux", "prompt": "a fox", "width": "abc", "steps": 2.5, "height": 320, "seed": True})
    assert kept == {"model": "demo-flux", "prompt": "a fox", "height": 320}


def test_values_a_control_cannot_take_are_not_restored(tabs):
    kept = restored(tabs.image, {
        "model": "demo-sd3", "prompt": "a\ud800b", "negative_prompt": "x" * 50_000, "weights": "nonsense", "speed": "warp",
        "strength": 7.0, "guidance": float("nan"), "scheduler": "Euler",
    })
    assert kept == {"model": "demo-sd3", "scheduler": "Euler"}
    assert restored(tabs.image, {"model": "no-such-model", "prompt": "a fox"}) == {}
    assert restored(tabs.image, ["not", "a", "dict"]) == {}


def test_a_music_task_that_needs_a_clip_and_a_voice_transcript_never_come_back_without_their_uploads(tabs):
    for task in ("repaint", "extend", "cover", "complete"):
        assert "task" not in restored(tabs.music, {"model": "demo-ace-step", "task": task, "tags": "rock"})
    assert restored(tabs.music, {"model": "demo-ace-step", "task": "text2music"})["task"] == "text2music"
    kept = restored(tabs.tts, {"model": "demo-fish-speech", "text": "Hello.", "reference_text": "what the clip says", "seed": 2})
    assert kept == {"model": "demo-fish-speech", "text": "Hello.", "seed": 2}


def test_without_a_login_the_page_keeps_its_values_in_its_own_browser(tabs):
    memory = tabs.image.fields.memory
    kept = memory.remember(page_values(tabs.image, model="demo-flux", prompt="my fox", width=320, height="abc"), NOBODY)
    assert kept == {"model": "demo-flux", "prompt": "my fox", "width": 320}
    assert tabs.context.settings.get("users") == {}
    assert restored(tabs.image, kept) == kept
    assert restored(tabs.image, {}) == {}  # another browser


def test_with_a_login_each_user_gets_their_own_values_whatever_the_browser_holds(tabs):
    memory = tabs.image.fields.memory
    written = memory.remember(page_values(tabs.image, model="demo-flux", prompt="alice's fox"), ALICE)
    assert isinstance(written, type(gr.skip()))  # nothing goes to the browser
    memory.remember(page_values(tabs.image, model="demo-sd3", prompt="bob's barn"), BOB)
    assert restored(tabs.image, {"model": "demo-sd3", "prompt": "left in this browser"}, ALICE) == {"model": "demo-flux", "prompt": "alice's fox"}
    assert restored(tabs.image, {}, BOB) == {"model": "demo-sd3", "prompt": "bob's barn"}
    again = SavedSettings(tabs.context.settings.path)
    assert again.for_user("alice", "image") == {"model": "demo-flux", "prompt": "alice's fox"}
