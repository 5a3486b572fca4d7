"""--auth and --share as a person sharing the app would rely on them."""

import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

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


def login(server, password: str) -> int:
    form = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
    try:
        with urllib.request.urlopen(server.url + "login", data=form, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_with_auth_the_api_description_is_not_readable_without_the_login(demo_flags, tmp_path):
    server = AppServer(*demo_flags, "--auth", "alice:s3cret", log_path=tmp_path / "app.log").wait_ready()
    try:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            page = response.read().decode()
        assert "window.gradio_api_info = null;" in page and "generate_image" not in page
        for path in ("openapi.json", "docs", "config", "gradio_api/info", "gradio_api/openapi.json"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.url + path, timeout=10)
            assert refused.value.code in (401, 404), path
        client = Client(server.url, auth=("alice", "s3cret"), verbose=False)
        assert "/generate_image" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    finally:
        server.stop()


def test_repeated_wrong_logins_are_slowed_down_and_the_right_one_still_gets_in(demo_flags, tmp_path):
    from tabs.access import FREE_LOGIN_FAILURES, login_delay_s

    server = AppServer(*demo_flags, "--auth", "alice:s3cret", log_path=tmp_path / "app.log").wait_ready()
    try:
        started = time.monotonic()
        assert [login(server, f"guess{n}") for n in range(FREE_LOGIN_FAILURES)] == [400] * FREE_LOGIN_FAILURES
        assert time.monotonic() - started < 5, "the first few mistakes cost nothing"
        # Sent at once, the next tries still wait their turn, each longer than the last.
        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(lambda n: login(server, f"again{n}"), range(3))) == [400] * 3
        waited = sum(login_delay_s(FREE_LOGIN_FAILURES + n) for n in range(3))
        assert time.monotonic() - started >= waited
        started = time.monotonic()
        assert login(server, "s3cret") == 200
        assert time.monotonic() - started >= login_delay_s(FREE_LOGIN_FAILURES + 3)
        assert "wrong logins from 127.0.0.1" in server.log()
    finally:
        server.stop()
