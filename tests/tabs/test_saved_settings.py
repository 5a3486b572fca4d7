import json

from tabs.saved_settings import SavedSettings


def test_settings_survive_a_restart(tmp_path):
    path = tmp_path / "settings.json"
    first = SavedSettings(path)
    first.update("preset", {"id": "8gb-laptop"})
    first.update("image", {"prompt": "a fox", "steps": 4})
    first.update("image", {"steps": 6})
    again = SavedSettings(path)
    assert again.get("preset") == {"id": "8gb-laptop"}
    assert again.get("image") == {"prompt": "a fox", "steps": 6}
    assert again.get("video") == {}


def test_a_damaged_settings_file_is_ignored_not_fatal(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    settings = SavedSettings(path)
    assert settings.get("preset") == {}
    settings.update("preset", {"id": "cpu"})
    assert json.loads(path.read_text()) == {"preset": {"id": "cpu"}}


def test_an_unwritable_settings_file_does_not_break_the_app(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = SavedSettings(blocker / "settings.json")  # its folder is a file: cannot be created
    settings.update("image", {"prompt": "a fox"})
    assert settings.get("image") == {"prompt": "a fox"}
    assert not list(tmp_path.glob("**/*.tmp"))
