"""What the app sets up at start, checked in-process on the built UI (no server)."""

import json
import logging

import app


def test_listening_without_a_login_is_warned_about_and_gradio_cache_files_expire(demo_models_dir, tmp_path, caplog):
    args = app.parse_args([
        "--listen", "--demo", "--models-dir", str(demo_models_dir), "--outputs-dir", str(tmp_path / "outputs"),
        "--settings-file", str(tmp_path / "settings.json"),
    ])
    with caplog.at_level(logging.WARNING):
        context = app.build_context(args)
    assert "every network interface with no login" in caplog.text
    ui = app.build_ui(context)
    assert "every network interface with no login" in json.dumps(ui.config, ensure_ascii=False, default=str)
    # Every hour, Gradio deletes the copies it made more than a day before.
    assert ui.delete_cache == (3600, 86400)


def test_a_login_or_staying_on_this_computer_needs_no_warning():
    assert app.exposure_warnings(app.parse_args(["--listen", "--auth", "alice:s3cret"])) == []
    assert app.exposure_warnings(app.parse_args([])) == []
