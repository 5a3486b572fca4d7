"""A kill while saving, and what the next start makes of it: the process dies at an exact point of the writer (a
hook in OutputStore, not a timer), then a fresh OutputStore tidies up as the app does at start."""

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from pipelines.outputs import OutputStore
from tests.app_server import ROOT, AppServer

PARAMETERS = {"prompt": "a fox", "model": "demo-sd3", "seed": 7, "steps": 2, "width": 64, "height": 64}

SAVE_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    from PIL import Image
    from pipelines.outputs import OutputStore

    def die_at(stage, path):
        if stage == sys.argv[2]:
            os.kill(os.getpid(), signal.SIGKILL)

    OutputStore(sys.argv[1], stage_hook=die_at).save_image(Image.new("RGB", (64, 64), (200, 30, 30)), {parameters})
""").replace("{parameters}", repr(PARAMETERS))


def killed_while_saving(outputs, stage: str) -> None:
    done = subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(outputs), stage], cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


def files(outputs) -> list[str]:
    return sorted(path.name for path in outputs.rglob("*") if path.is_file())


def test_a_kill_right_after_the_temporary_write_leaves_nothing_after_the_next_start(tmp_path):
    outputs = tmp_path / "outputs"
    killed_while_saving(outputs, "written")
    [leftover] = files(outputs)
    assert leftover.endswith(".tmp") and next(outputs.rglob("*.tmp")).stat().st_size > 0

    tidied = OutputStore(outputs).tidy()
    assert tidied.temporary_files == 1 and files(outputs) == []


def test_a_kill_right_after_the_link_lists_the_result_after_the_next_start(tmp_path):
    outputs = tmp_path / "outputs"
    killed_while_saving(outputs, "linked")
    store = OutputStore(outputs)
    assert store.list_outputs() == [] and len(files(outputs)) == 2, "a result without a sidecar, and its temporary name"

    tidied = store.tidy()
    assert (tidied.temporary_files, tidied.sidecars_rewritten) == (1, 1)
    [listed] = store.list_outputs()
    assert files(outputs) == [listed.sidecar.name, listed.path.name]
    record = json.loads(listed.sidecar.read_text())
    assert record == {**PARAMETERS, "kind": "images", "app": "Atelier", "app_version": record["app_version"], "file": listed.path.name}


def test_the_app_tidies_at_start_and_one_bad_entry_does_not_break_the_listing(demo_models_dir, tmp_path):
    outputs = tmp_path / "outputs"
    killed_while_saving(outputs, "written")
    killed_while_saving(outputs, "linked")
    partial = OutputStore(outputs).write_partial_video(np.zeros((2, 64, 64, 3), dtype=np.uint8), 8, "job-1")
    day = next(outputs.glob("images/*"))
    outside = tmp_path / "private.png"
    Image.new("RGB", (8, 8)).save(outside)
    (day / "00008-linked.png").symlink_to(outside)
    (day / "00008-linked.json").write_text(json.dumps({**PARAMETERS, "file": "00008-linked.png"}))
    nested = day / "00009-nested.json"
    nested.write_text("[" * 200_000 + "]" * 200_000)

    server = AppServer(
        "--demo", "--models-dir", str(demo_models_dir), "--outputs-dir", str(outputs), log_path=tmp_path / "app.log",
    ).wait_ready()
    try:
        client = Client(server.url, verbose=False)
        listed = client.predict(api_name="/outputs")
        assert [(r["seed"], r["prompt"]) for r in listed] == [(7, "a fox")], "the result that lost its sidecar, alone"
        assert not list(outputs.rglob("*.tmp")) and not partial.exists()
        with pytest.raises(Exception, match="00009-nested.json is nested too deeply") as refused:
            client.predict(handle_file(str(nested)), api_name="/reuse_settings")
        assert "RecursionError" not in str(refused.value)
        log = server.log()
        assert "leads out of the outputs folder" in log and "rewrote it from the parameters in the file" in log
    finally:
        server.stop()
