"""docs/api.md is the API's spec: every endpoint gradio_client lists, with its parameters (names, order, defaults,
choices) and its outputs (names, order), is the one the docs' tables describe, and nothing else is listed. Also what a
script gets back (no "unchanged" placeholders, errors that name the field) and what the log says about refused
requests."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.app_server import ROOT

API_DOCS = ROOT / "docs" / "api.md"
REFERENCE_HEADING = "## Every endpoint"


@dataclass(frozen=True)
class DocumentedParameter:
    name: str
    default_cell: str
    choices_cell: str

    @property
    def required(self) -> bool:
        return self.default_cell.strip() == "required"

    @property
    def default(self):
        """The first `value` of the default cell: what a script that leaves the parameter out sends (with the demo
        models; the cell says when a real model's values differ)."""
        return ast.literal_eval(_code(self.default_cell)[0])

    @property
    def takes_model_ids(self) -> bool:
        return "model id" in self.choices_cell

    def choices(self) -> tuple[set[str], set[str]]:
        """The values always offered, and those (in parentheses) offered only where installed."""
        optional = {value for group in re.findall(r"\(([^)]*)\)", self.choices_cell) for value in _code(group)}
        return set(_code(re.sub(r"\([^)]*\)", "", self.choices_cell))), optional


@dataclass(frozen=True)
class DocumentedEndpoint:
    name: str
    parameters: tuple[DocumentedParameter, ...]
    returns: tuple[str, ...]


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def _rows(lines: list[str], header: str) -> list[list[str]]:
    """The rows of the table whose header starts with `header` (cells stripped), or none."""
    for start, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for row in lines[start + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    return []


def documented_endpoints() -> dict[str, DocumentedEndpoint]:
    section = API_DOCS.read_text().split(REFERENCE_HEADING, 1)[1]
    parts = re.split(r"^### `(/\w+)`\s*$", section, flags=re.M)
    endpoints = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = body.splitlines()
        parameters = tuple(
            DocumentedParameter(_code(row[0])[0], row[1], row[2]) for row in _rows(lines, "| parameter |")
        )
        returns = tuple(_code(row[1])[0] for row in _rows(lines, "| # |"))
        endpoints[name] = DocumentedEndpoint(name, parameters, returns)
    return endpoints


@pytest.fixture(scope="module")
def api(client) -> dict:
    return client.view_api(return_format="dict", print_info=False)


def _enum(parameter: dict) -> list | None:
    kind = parameter["type"]
    return kind.get("enum") if isinstance(kind, dict) else None


def test_the_docs_list_exactly_the_endpoints_the_api_offers(api):
    documented = documented_endpoints()
    assert set(documented) == set(api["named_endpoints"]), "named endpoints differ from docs/api.md"
    assert not [name for name in api["named_endpoints"] if name.startswith("/lambda")]
    assert api["unnamed_endpoints"] == {}


def test_every_endpoint_has_the_documented_parameters_defaults_and_choices(api):
    for name, documented in documented_endpoints().items():
        listed = api["named_endpoints"][name]["parameters"]
        assert [p["parameter_name"] for p in listed] == [p.name for p in documented.parameters], name
        for parameter, doc in zip(listed, documented.parameters):
            where = f"{name} {doc.name}"
            assert parameter["parameter_has_default"] != doc.required, where
            if not doc.required:
                assert parameter["parameter_default"] == doc.default, where
            offered = _enum(parameter)
            if doc.takes_model_ids:
                assert offered and (doc.default is None or doc.default in offered), where
                continue
            always, where_installed = doc.choices()
            if offered is None:
                assert not always, f"{where}: the docs list choices the API does not"
            else:
                assert always <= set(offered) <= always | where_installed, where


def test_every_output_has_the_documented_name_in_order(api):
    for name, documented in documented_endpoints().items():
        returns = [output["label"] for output in api["named_endpoints"][name]["returns"]]
        assert returns == list(documented.returns), name
        assert not [label for label in returns if re.fullmatch(r"value_\d+|\d+(st|nd|rd|th)", label)], name


def test_each_model_parameter_offers_every_model_its_endpoint_accepts(api, demo_models_dir):
    from pipelines.catalog import Task
    from pipelines.image.edit_modes import EDIT_MODES, edit_models
    from pipelines.loading.model_store import ModelStore, list_models

    store = ModelStore(demo_models_dir, offline=True)
    catalog = store.catalog
    offered = {listing.spec.id for listing in list_models(store, False) if listing.offered}
    accepted = {
        "/generate_image": set(catalog.image_models()),
        "/edit_image": {model_id for mode in EDIT_MODES for model_id in edit_models(mode, catalog)},
        "/generate_video": set(catalog.video_models()),
        "/speak": set(catalog.for_task(Task.TEXT_TO_SPEECH)),
        "/generate_music": set(catalog.for_task(Task.TEXT_TO_MUSIC)),
    }
    for name, models in accepted.items():
        model = next(p for p in api["named_endpoints"][name]["parameters"] if p["parameter_name"] == "model")
        assert set(_enum(model)) == models & offered, name
    edit_choices = set(_enum(next(p for p in api["named_endpoints"]["/edit_image"]["parameters"] if p["parameter_name"] == "model")))
    assert {"demo-omnigen", "demo-flux-fill", "demo-flux-canny", "demo-flux-depth", "demo-flux-redux"} <= edit_choices


def test_an_edit_mode_without_a_model_uses_that_modes_default_model(client, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    picture = tmp_path / "house.png"
    Image.new("RGB", (64, 64), (90, 120, 200)).save(picture)
    _, used, _ = client.predict(
        instruction="a glass house", images=[handle_file(str(picture))], mode="canny", steps=1, seed=3, api_name="/edit_image",
    )
    assert used["parameters"]["model"] == "demo-flux-canny"


def test_generate_music_takes_complete_from_its_choices(api):
    task = next(p for p in api["named_endpoints"]["/generate_music"]["parameters"] if p["parameter_name"] == "task")
    assert "complete" in _enum(task)


def test_a_value_past_a_sliders_range_is_refused_with_the_field_named(client):
    with pytest.raises(Exception) as error:
        client.predict(tags="rock", duration=0, steps=2, api_name="/generate_music")
    assert type(error.value).__name__ == "AppError"
    assert "duration: 0 is out of range; use 1 to" in str(error.value)


def test_generate_video_gives_a_script_values_not_update_placeholders(client):
    result = client.predict(prompt="a fox", model="demo-wan", steps=1, frames=5, seed=1, api_name="/generate_video")
    assert len(result) == 5
    for value in result:
        assert not (isinstance(value, dict) and "__type__" in value), result
    file, used, summary, video, preview = result
    assert Path(file).is_file() and Path(video).is_file() and used["video"] and "5 frames" in summary
    assert preview is None or Path(preview).is_file()


def test_reuse_settings_gives_the_documented_image_fields_in_order(client, app):
    from gradio_client import handle_file

    _, used, _ = client.predict(prompt="a fox", model="demo-sd3", steps=1, seed=5, loras="detail.safetensors:0.5", api_name="/generate_image")
    sidecar = Path(used["images"][0]).with_suffix(".json")
    values = client.predict(handle_file(str(sidecar)), api_name="/reuse_settings")
    names = documented_endpoints()["/reuse_settings"].returns
    by_name = dict(zip(names, values))
    assert len(values) == len(names) == 26
    assert (by_name["Model"], by_name["Prompt"], by_name["Seed (-1 = random)"], by_name["Steps"]) == ("demo-sd3", "a fox", 5, 1)
    assert by_name["LoRA weights"] == "detail.safetensors:0.5"


BAD_REQUESTS = [
    (dict(prompt="a fox", steps=0, api_name="/generate_image"), "steps: 0 is out of range; use 1 to 200"),
    (dict(tags="rock", duration=0, api_name="/generate_music"), "duration: 0 is out of range"),
    (dict(instruction="x", model="nope", api_name="/edit_image"), "model: "),
]


def _refuse_each(client) -> list[str]:
    messages = []
    for request, expected in BAD_REQUESTS:
        with pytest.raises(Exception) as error:
            client.predict(**request)
        assert expected in str(error.value)
        messages.append(str(error.value))
    return messages


def test_a_refused_request_is_one_log_line_and_a_library_warning_shows_once(app, client):
    earlier = len(app.log_path.read_text())
    messages = _refuse_each(client)
    # Two loads that each make diffusers warn "Attention backends are an experimental feature".
    client.predict(prompt="a fox", model="demo-flux", steps=1, seed=1, api_name="/generate_image")
    client.predict(prompt="a fox", model="demo-wan", steps=1, frames=5, seed=1, api_name="/generate_video")
    log = app.log_path.read_text()
    assert "Traceback" not in log
    for message in messages:
        lines = [line for line in log[earlier:].splitlines() if message.splitlines()[0][:60] in line]
        assert len(lines) == 1, (message, lines)
        assert "refused" in lines[0]
    assert log.count("Attention backends are an experimental feature") == 1
    assert "Loading pipeline components" not in log


def test_verbose_logs_the_traceback_of_a_refused_request(demo_models_dir, tmp_path):
    from gradio_client import Client

    from tests.app_server import AppServer

    server = AppServer(
        "--models-dir", str(demo_models_dir), "--outputs-dir", str(tmp_path / "outputs"), "--verbose",
        log_path=tmp_path / "app.log",
    ).wait_ready()
    try:
        client = Client(server.url, verbose=False)
        with pytest.raises(Exception):
            client.predict(prompt="a fox", steps=0, api_name="/generate_image")
        log = (tmp_path / "app.log").read_text()
    finally:
        server.stop()
    assert "steps: 0 is out of range" in log and "Traceback" in log and " DEBUG " in log
