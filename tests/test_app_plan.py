"""Will it run here? `/plan` through gradio_client on a live app, for models whose weights are not on disk too."""

import pytest
from gradio_client.exceptions import AppError

from tests.app_server import AppServer


@pytest.fixture(scope="module")
def planned_app(demo_models_dir, tmp_path_factory):
    """The app told its machine has 32 GB of RAM (the reference laptop), whatever this one has."""
    server = AppServer(
        "--models-dir", str(demo_models_dir), "--outputs-dir", str(tmp_path_factory.mktemp("outputs")), "--ram-gb", "32",
        "--preset", "8gb-laptop", log_path=tmp_path_factory.mktemp("logs") / "app.log",
    ).wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(planned_app):
    from gradio_client import Client

    return Client(planned_app.url, verbose=False)


def test_plan_answers_for_a_model_that_is_not_on_disk_with_its_components(client):
    plan = client.predict("wan21-t2v-1.3b", "8gb-laptop", 0, 832, 480, 81, api_name="/plan")
    assert {"fits", "peak_ram_gb", "peak_vram_gb", "streamed_gb_per_step", "seconds_per_step_estimate", "reason", "components"} <= plan.keys()
    parts = {component["name"]: component for component in plan["components"]}
    assert parts.keys() == {"transformer", "text_encoder", "vae"}
    assert "pinned arena" in parts["transformer"]["tier"] and parts["transformer"]["storage"] == "bfloat16"
    assert plan["peak_ram_gb"] <= plan["ram_budget_gb"] and plan["fits"], plan["reason"]
    assert plan["peak_vram_gb"] <= 8


def test_plan_refuses_wan_14b_at_480p_on_the_8gb_laptop_and_says_why(client):
    plan = client.predict("wan21-t2v-14b", "", 0, 832, 480, 81, api_name="/plan")
    assert not plan["fits"] and "even with every block streamed" in plan["reason"] and "6.80 GiB" in plan["reason"]
    assert plan["streamed_gb_per_step"] > 28, "every block streams, for the prompt and the negative prompt"
    assert plan["seconds_per_step_estimate"] > 0


def test_more_ram_lets_a_model_fit_that_32_gb_cannot_hold(client):
    small = client.predict("flux1-dev", "24gb", 16, 0, 0, 0, api_name="/plan")
    large = client.predict("flux1-dev", "24gb", 64, 0, 0, 0, api_name="/plan")
    assert not small["fits"] and "GB of RAM" in small["reason"]
    assert large["fits"] and large["seconds_per_step_estimate"] is not None


def test_an_unknown_model_is_named(client):
    with pytest.raises(AppError, match="unknown model 'nope'"):
        client.predict("nope", "", 0, 0, 0, 0, api_name="/plan")
