"""--auth and --share as a person sharing the app would rely on them."""

import urllib.request

import pytest
from gradio_client import Client

from tests.app_server import AppServer


@pytest.fixture
def demo_flags(demo_models_dir, tmp_path):
    return ["--demo", "--models-dir", str(demo_models_dir), "--outputs-dir", str(tmp_path / "outputs")]


def test_with_auth_the_api_refuses_calls_without_the_login(demo_flags, tmp_path):
    server = AppServer(*demo_flags, "--auth", "alice:s3cret", log_path=tmp_path / "app.log").wait_ready()
    try:
        with pytest.raises(Exception):
            Client(server.url, verbose=False).predict(api_name="/status")
        with pytest.raises(Exception):
            Client(server.url, auth=("alice", "wrong"), verbose=False).predict(api_name="/status")
        status = Client(server.url, auth=("alice", "s3cret"), verbose=False).predict(api_name="/status")
        assert status["preset"]
    finally:
        server.stop()


def test_sharing_without_a_login_is_warned_about_in_the_log_and_on_the_page(demo_flags, tmp_path):
    server = AppServer(*demo_flags, "--share", log_path=tmp_path / "app.log").wait_ready(timeout_s=180)
    try:
        with urllib.request.urlopen(server.url + "config", timeout=10) as response:
            config = response.read().decode()
        assert "no login" in config and "--auth" in config
        assert "no login" in server.log()
    finally:
        server.stop()
