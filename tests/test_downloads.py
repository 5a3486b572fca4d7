"""The real download path (`ModelStore.ensure` → huggingface_hub 2.4's `snapshot_download`) against a local Hub
(`tests/hub_server.py`) serving the layout manifest of FLUX.1 [dev] with small bytes under the real file names."""

import re

import pytest
from huggingface_hub.utils import filter_repo_objects

from pipelines.catalog import MODELS_BY_ID
from pipelines.errors import ModelNotAvailable
from pipelines.loading.model_store import ModelFiles, ModelStore
from tests.hub_server import HubRepo, LocalHub, load_manifest, point_client_at, repo_from_manifest

FLUX = "black-forest-labs/FLUX.1-dev"
FLUX_SHARD = "transformer/diffusion_pytorch_model-00001-of-00003.safetensors"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with LocalHub() as hub:
        hub.add(repo_from_manifest(FLUX, gated=False))
        point_client_at(hub, monkeypatch, tmp_path / "hf-cache")
        yield hub


def _files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() and ".cache" not in path.parts)


def _allowed(spec):
    return sorted(filter_repo_objects([row["path"] for row in load_manifest(spec.repo)["files"]], allow_patterns=list(spec.allow_patterns)))


def test_download_lands_exactly_the_allowed_files_and_never_asks_for_the_root_checkpoint(hub, tmp_path):
    spec = MODELS_BY_ID["flux1-dev"]
    files = ModelStore(tmp_path / "models", offline=False).ensure(spec)

    assert files.folder == tmp_path / "models" / "flux1-dev"
    assert _files_under(files.folder) == _allowed(spec)
    fetched = hub.file_requests(FLUX)
    assert "flux1-dev.safetensors" not in fetched and "ae.safetensors" not in fetched
    for name in _allowed(spec):
        assert (files.folder / name).read_bytes() == hub.repos[FLUX].files[name]


@pytest.mark.parametrize("token, status", [(None, 401), ("hf_not_accepted", 403)])
def test_gated_repo_refusal_says_accept_the_licence_and_log_in(hub, tmp_path, monkeypatch, token, status):
    hub.repos[FLUX].gated = True
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(ModelNotAvailable) as caught:
        ModelStore(tmp_path / "models", offline=False).ensure(MODELS_BY_ID["flux1-dev"])

    message = str(caught.value)
    assert "gated on the Hugging Face Hub" in message and f"https://huggingface.co/{FLUX}" in message
    assert "hf auth login" in message and "HF_TOKEN" in message
    assert any(path.startswith(f"/{FLUX}/resolve/") for _, path in hub.requests)
    assert not (tmp_path / "models" / "flux1-dev").exists()
    assert caught.value.__cause__ is not None and getattr(caught.value.__cause__.response, "status_code", None) == status


def test_a_connection_dropped_midway_resumes_and_completes(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    # The client resumes from the last whole chunk it wrote (10 MB by default); our files are 64 kB.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 8_000)
    hub.drop_once.add((FLUX, FLUX_SHARD))
    files = ModelStore(tmp_path / "models", offline=False).ensure(MODELS_BY_ID["flux1-dev"])

    assert (files.folder / FLUX_SHARD).read_bytes() == hub.repos[FLUX].files[FLUX_SHARD]
    assert hub.range_requests == [FLUX_SHARD]
    assert not hub.drop_once


def test_progress_is_one_bar_of_bytes_with_speed_time_left_and_file_count(hub, tmp_path):
    spec = MODELS_BY_ID["flux1-dev"]
    reports = []
    ModelStore(tmp_path / "models", offline=False).ensure(spec, on_progress=lambda fraction, text: reports.append((fraction, text)))

    fractions = [fraction for fraction, _ in reports]
    assert len(reports) > 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    total = sum(len(hub.repos[FLUX].files[name]) for name in _allowed(spec))
    expected_total = f"{total / 1e3:.1f} kB"
    line = re.compile(r"Downloading .+: [\d.]+ (B|kB|MB|GB) of " + re.escape(expected_total) +
                      r"(, [\d.]+ (B|kB|MB|GB)/s, \d+ (s|min) left)? \(file (?P<n>\d+) of (?P<m>\d+)\)$")
    during = [text for _, text in reports[:-1]]
    for text in during:
        assert line.match(text), text
        assert int(line.match(text)["m"]) == len(_allowed(spec))
    assert any("/s, " in text for text in during)


def test_offline_store_never_contacts_the_hub_and_its_command_fetches_only_the_allowed_files(hub, tmp_path):
    spec = MODELS_BY_ID["flux1-dev"]
    with pytest.raises(ModelNotAvailable) as caught:
        ModelStore(tmp_path / "models", offline=True).ensure(spec)

    assert hub.requests == []
    message = str(caught.value)
    command = re.search(r"hf download (\S+)((?: --include \"[^\"]+\")+) --local-dir (\S+?)\.?(?:\s|$)", message)
    assert command is not None, message
    assert command[1] == FLUX and command[3] == str(tmp_path / "models" / "flux1-dev")
    patterns = re.findall(r'--include "([^"]+)"', command[2])
    assert tuple(patterns) == spec.allow_patterns
    listed = [row["path"] for row in load_manifest(FLUX)["files"]]
    assert "flux1-dev.safetensors" not in list(filter_repo_objects(listed, allow_patterns=patterns))


def test_sd35_download_skips_comfyui_encoders_and_fp16_copies_and_the_ram_check_counts_what_loads(tmp_path, monkeypatch, presets):
    """The tiny SD3 folder as Stability's repo holds it (ComfyUI's text_encoders/ and fp16 duplicates beside the
    diffusers folders), served as stabilityai/stable-diffusion-3.5-medium: only the files the loader reads land, the
    RAM check counts exactly their weights, and the downloaded folder loads."""
    from types import SimpleNamespace

    import psutil

    from pipelines.catalog import Family
    from pipelines.errors import NotEnoughMemory
    from pipelines.manager import ModelManager, _check_ram
    from pipelines.tiny import build_tiny_model

    repo = "stabilityai/stable-diffusion-3.5-medium"
    tiny = tmp_path / "tiny-sd3"
    build_tiny_model(Family.SD3, tiny)
    served = {str(path.relative_to(tiny)): path.read_bytes() for path in tiny.rglob("*") if path.is_file()}
    assert any(name.startswith("text_encoders/") for name in served) and "text_encoder_3/model.fp16.safetensors" in served
    with LocalHub() as hub:
        hub.add(HubRepo(repo, served))
        point_client_at(hub, monkeypatch, tmp_path / "hf-cache")
        store = ModelStore(tmp_path / "models", offline=False)
        files = store.ensure(MODELS_BY_ID["sd35-medium"])
        fetched = hub.file_requests(repo)

    landed = _files_under(files.folder)
    assert not [name for name in landed if name.startswith("text_encoders/") or ".fp16." in name]
    assert not [name for name in fetched if name.startswith("text_encoders/") or ".fp16." in name]
    loaded = sum((files.folder / name).stat().st_size for name in landed if name.endswith(".safetensors"))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=loaded))
    _check_ram(MODELS_BY_ID["sd35-medium"], files)
    # The full tiny folder (copies and duplicates included) needs no more RAM than what its loader reads.
    tiny_loaded = sum(size for name, size in ((n, len(b)) for n, b in served.items())
                      if name.endswith("model.safetensors") and not name.startswith("text_encoders/"))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=tiny_loaded))
    _check_ram(MODELS_BY_ID["demo-sd3"], ModelFiles(tiny))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=tiny_loaded - 1))
    with pytest.raises(NotEnoughMemory):
        _check_ram(MODELS_BY_ID["demo-sd3"], ModelFiles(tiny))
    monkeypatch.undo()
    with ModelManager(store, presets["cpu"]).use("sd35-medium") as pipe:
        assert type(pipe.transformer).__name__ == "SD3Transformer2DModel"
