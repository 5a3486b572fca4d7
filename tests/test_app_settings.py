"""What the app remembers and where, end to end: a script's call never changes what a page opens with (login or not),
text that cannot be saved is refused at its field and breaks nothing for the next job, a damaged settings file never
stops a start, and a GPU preset on a machine without a GPU says so and is not carried over to the next start."""

import json
import urllib.request
import uuid

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file

from pipelines import hardware
from tests.app_server import AppServer

NO_GPU = hardware.Hardware(gpu_name=None, vram_total_bytes=0, ram_total_bytes=64 * 1024**3, bf16_supported=False)


def saved_sections(path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def app_with_login(demo_models_dir, tmp_path_factory):
    outputs = tmp_path_factory.mktemp("outputs")
    server = AppServer(
        "--models-dir", str(demo_models_dir), "--outputs-dir", str(outputs), "--auth", "alice:wonderland",
        log_path=tmp_path_factory.mktemp("logs") / "app.log",
    ).wait_ready()
    yield server
    server.stop()


def test_a_scripts_calls_leave_nothing_for_any_page_to_open_with_even_with_a_login(app_with_login, tmp_path):
    client = Client(app_with_login.url, auth=("alice", "wonderland"), verbose=False)
    client.predict(text="A script's words.", seed=2, max_new_tokens=16, api_name="/speak")
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, np.zeros((48_000, 2), np.float32), 48_000)
    client.predict(tags="a script's song", task="complete", audio=handle_file(str(clip)), duration=1.0, steps=2, api_name="/generate_music")
    with pytest.raises(Exception):
        client.predict(prompt="a script's failed call", model="sd3-medium", steps=1, api_name="/generate_image")
    assert set(saved_sections(app_with_login.settings_path)) <= {"preset"}


def raw_queue_call(app, api_name: str, data: list) -> dict:
    """Send `data` to the event named `api_name` as the page's own requests do, without gradio_client (whose JSON
    encoding refuses a lone surrogate); the final message of the queue for it."""
    config = json.load(urllib.request.urlopen(app.url + "config", timeout=10))
    fn_index = next(dependency["id"] for dependency in config["dependencies"] if dependency.get("api_name") == api_name)
    session = uuid.uuid4().hex
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
    join = urllib.request.Request(
        app.url + "gradio_api/queue/join", data=body.encode("ascii"), headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(join, timeout=10).read()
    with urllib.request.urlopen(f"{app.url}gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream:
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the queue closed before the job completed")


def test_a_lone_surrogate_is_refused_at_its_field_and_the_next_jobs_still_run(app, client):
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate_music"]["parameters"]
    values = {parameter["parameter_name"]: parameter["parameter_default"] for parameter in parameters}
    values |= {"tags": "rock", "lyrics": "a\ud800b", "duration": 1.0, "steps": 2, "seed": 7}
    done = raw_queue_call(app, "generate_music", list(values.values()))
    assert not done["success"] and "lyrics: has a character that is not valid text at position 2" in done["output"]["error"]
    # Other tabs first: before, the unsavable value stayed in memory and failed every job until a Music job replaced it.
    assert client.predict(text="Still speaking.", max_new_tokens=16, api_name="/speak")[0]
    assert len(client.predict(prompt="still drawing", model="demo-sd3", steps=1, api_name="/generate_image")[0]) == 1
    _, used, _ = client.predict(tags="after the bad request", lyrics="la la", duration=1.0, steps=2, seed=8, api_name="/generate_music")
    assert used["parameters"]["lyrics"] == "la la"


# -- starts and the preset panel, in this process on a machine without a GPU --------------------------------------


@pytest.fixture
def started(tmp_path, monkeypatch):
    """`started(settings_text, *flags)`: the app's context as `main()` builds it on a machine with no GPU."""
    import app

    monkeypatch.setattr(hardware, "detect_hardware", lambda: NO_GPU)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    path = tmp_path / "settings.json"

    def start(settings_text: str | None = None, *flags: str):
        if settings_text is not None:
            path.write_text(settings_text)
        args = app.parse_args([
            "--demo", "--models-dir", str(tmp_path / "models"), "--outputs-dir", str(tmp_path / "outputs"),
            "--loras-dir", str(tmp_path / "loras"), "--settings-file", str(path), *flags,
        ])
        return app.build_context(args)

    start.path = path
    return start


@pytest.mark.parametrize("damage", ['{"preset": {"id": ["cpu"]}}', '{"preset": "cpu"}', "[1, 2]", '{"preset": {"id": "cpu"}, "x": "' + "x" * 2_000_000 + '"}'])
def test_a_damaged_settings_file_never_stops_a_start_and_is_kept_as_bad(started, damage):
    context = started(damage)
    assert context.manager.preset.id == "cpu"
    assert started.path.with_name("settings.json.bad").read_text() == damage


def test_a_gpu_preset_remembered_on_a_machine_without_a_gpu_is_not_used_at_the_next_start(started):
    assert started('{"preset": {"id": "12gb"}}').manager.preset.id == "cpu"
    assert started('{"preset": {"id": "no-such-preset"}}').manager.preset.id == "cpu"


def test_choosing_a_gpu_preset_without_a_gpu_warns_in_the_panel_and_is_not_remembered(started):
    import app

    context = started()
    ui = app.build_ui(context)
    set_preset = next(event.fn for event in ui.fns.values() if event.api_name == "set_preset")
    explanation, _ = set_preset("12gb")
    assert context.manager.preset.id == "12gb"
    assert "No NVIDIA GPU was found: every job runs on the processor" in explanation
    assert "not remembered for the next start" in explanation
    assert saved_sections(started.path).get("preset", {}).get("id") != "12gb"
    explanation, _ = set_preset("cpu")
    assert "No NVIDIA GPU was found" not in explanation and saved_sections(started.path)["preset"] == {"id": "cpu"}
