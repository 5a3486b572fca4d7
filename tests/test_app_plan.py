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


def test_plan_runs_wan_14b_at_480p_on_the_8gb_laptop_in_token_chunks_and_refuses_a_far_bigger_video(client):
    plan = client.predict("wan21-t2v-14b", "8gb-laptop", 32, 832, 480, 81, api_name="/plan")
    transformer = next(part for part in plan["components"] if part["name"] == "transformer")
    assert plan["fits"] and plan["peak_vram_gb"] <= 8 and "chunks of" in transformer["tier"]
    assert plan["streamed_gb_per_step"] > 0 and plan["seconds_per_step_estimate"] > 0
    huge = client.predict("wan21-t2v-14b", "8gb-laptop", 32, 1920, 1088, 161, api_name="/plan")
    assert not huge["fits"] and "even with every block streamed" in huge["reason"] and "6.80 GiB" in huge["reason"]


def test_more_ram_lets_a_model_fit_that_8_gb_cannot_hold(client):
    small = client.predict("flux1-dev", "24gb", 8, 0, 0, 0, api_name="/plan")
    large = client.predict("flux1-dev", "24gb", 64, 0, 0, 0, api_name="/plan")
    assert not small["fits"] and "GB of RAM" in small["reason"]
    assert large["fits"] and large["seconds_per_step_estimate"] is not None


def test_an_unknown_model_is_named(client):
    with pytest.raises(AppError, match="unknown model 'nope'"):
        client.predict("nope", "", 0, 0, 0, 0, api_name="/plan")


def test_plan_says_which_parts_wait_on_disk_and_which_are_stored_in_int8_and_what_it_costs(client):
    """FLUX.1 dev on the reference laptop with 16 GB: its transformer only fits in int8, its text encoders are read
    from disk as used; with 32 GB it runs as shipped, T5 still read from disk."""
    small = client.predict("flux1-dev", "8gb-laptop", 16, 0, 0, 0, api_name="/plan")
    large = client.predict("flux1-dev", "8gb-laptop", 32, 0, 0, 0, api_name="/plan")
    assert small["fits"] and large["fits"] and small["peak_ram_gb"] <= 14.4 and large["peak_vram_gb"] <= 8
    parts = {component["name"]: component for component in small["components"]}
    assert parts["transformer"]["stored"] == "int8" and parts["transformer"]["storage"] == "int8"
    assert parts["text_encoder_2"]["tier"].startswith("disk") and parts["text_encoder_2"]["ram_gb"] == 0
    assert parts["text_encoder_2"]["disk_gb_per_job"] == 9.52
    assert small["disk_gb_per_job"] == pytest.approx(9.77, abs=0.01)
    assert any("int8" in note for note in small["notes"]) and any("does not fit" in note for note in small["notes"])
    assert {c["name"]: c["stored"] for c in large["components"]}["transformer"] == "as shipped"
    assert large["disk_gb_per_job"] == 9.52 and "read from disk per job" in large["reason"]
