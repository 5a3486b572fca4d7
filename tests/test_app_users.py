"""Several logins on one app: each person sees, lists, reuses and downloads only their own work."""

import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.app_server import AppServer

IMAGE = dict(model="demo-sd3", steps=2, api_name="/generate_image")


@pytest.fixture(scope="module")
def shared(demo_models_dir, tmp_path_factory):
    """An app with two logins: alice from the command line, bob from a logins file."""
    folder = tmp_path_factory.mktemp("shared")
    logins = folder / "logins.txt"
    logins.write_text("# people who may use this app\nbob:pw2\n\n")
    server = AppServer(
        "--demo", "--models-dir", str(demo_models_dir), "--outputs-dir", str(folder / "outputs"),
        "--auth", "alice:pw1", "--auth-file", str(logins), log_path=folder / "app.log",
    ).wait_ready()
    server.outputs = folder / "outputs"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(shared):
    return Client(shared.url, auth=("alice", "pw1"), verbose=False)


@pytest.fixture(scope="module")
def bob(shared):
    return Client(shared.url, auth=("bob", "pw2"), verbose=False)


def fetch(server, client, path: str) -> int:
    """The status of downloading `path` the way the page and gradio_client do, with `client`'s login."""
    url = server.url + "gradio_api/file=" + urllib.parse.quote(path)
    return httpx.get(url, cookies=client.cookies, timeout=30).status_code


def test_each_login_gets_its_own_folder_and_lists_only_its_own_results(shared, alice, bob):
    _, made, _ = alice.predict(prompt="alice's private lighthouse", seed=11, **IMAGE)
    _, made_by_bob, _ = bob.predict(prompt="bob's garden", seed=12, **IMAGE)
    alices = Path(made["images"][0])
    assert alices.is_relative_to(shared.outputs / "users" / "alice" / "images")
    assert Path(made_by_bob["images"][0]).is_relative_to(shared.outputs / "users" / "bob" / "images")

    assert [r["prompt"] for r in alice.predict(api_name="/outputs")] == ["alice's private lighthouse"]
    assert [r["prompt"] for r in bob.predict(api_name="/outputs")] == ["bob's garden"]

    assert fetch(shared, alice, str(alices)) == 200
    assert fetch(shared, bob, str(alices)) == 403, "bob downloaded alice's result by its path"
    sidecar = alices.with_suffix(".json")
    assert fetch(shared, bob, str(sidecar)) == 403
    assert fetch(shared, bob, str(alices.parent / ".." / ".." / ".." / "alice" / "images" / alices.parent.name / alices.name)) == 403


def test_the_queue_shows_another_persons_jobs_only_as_another_job(shared, alice, bob):
    running = alice.submit(prompt="alice's secret castle", width=512, height=512, steps=60, seed=1, model="demo-sd3", api_name="/generate_image")
    deadline = time.monotonic() + 60
    while not any(j["state"] == "running" for j in bob.predict(api_name="/queue")["jobs"]):
        assert time.monotonic() < deadline, "alice's job did not start"
        time.sleep(0.1)
    seen_by_bob = bob.predict(api_name="/queue")
    assert seen_by_bob["jobs"][0]["summary"] == "another job" and seen_by_bob["jobs"][0]["tab"] == ""
    assert "castle" in str(alice.predict(api_name="/queue")["jobs"])
    alice.predict(api_name="/stop")
    running.result(timeout=60)

    recent_for_bob = bob.predict(api_name="/queue")["recent"]
    assert "alice" not in str(recent_for_bob) and "castle" not in str(recent_for_bob) and "lighthouse" not in str(recent_for_bob)
    assert any(job["summary"] == "another job" for job in recent_for_bob)
    assert "castle" in str(alice.predict(api_name="/queue")["recent"])


def test_several_logins_are_accepted_from_flags_and_a_file(tmp_path):
    import app

    logins = tmp_path / "logins.txt"
    logins.write_text("carol:pw:with:colons\n# a comment\n\n")
    args = app.parse_args(["--auth", "alice:pw1", "--auth", "bob:pw2", "--auth-file", str(logins)])
    assert args.logins == [("alice", "pw1"), ("bob", "pw2"), ("carol", "pw:with:colons")]
    assert app.exposure_warnings(app.parse_args(["--listen", "--auth-file", str(logins)])) == []
    assert app.parse_args([]).logins is None
    for bad in ("dave\n", "erin:pw\nerin:other\n", ":nobody\n"):
        logins.write_text(bad)
        with pytest.raises(SystemExit):
            app.parse_args(["--auth-file", str(logins)])
