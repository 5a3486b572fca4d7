import json
import shutil

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from pipelines.catalog import model_spec
from pipelines.errors import ModelNotAvailable
from pipelines.manager import ModelManager
from pipelines.model_store import ModelStore, list_models


def test_demo_models_are_built_in_the_real_layout_and_marked(tmp_path):
    store = ModelStore(tmp_path, offline=True)
    files = store.ensure(model_spec("demo-flux"))
    assert files.folder == tmp_path / "demo" / "demo-flux"
    assert json.loads((files.folder / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
    assert not list(tmp_path.glob("demo/*.building-*")), "no half-built folder is left behind"


def test_a_fast_preset_uses_its_base_weights_and_its_own_lora(tmp_path):
    store = ModelStore(tmp_path, offline=True)
    files = store.ensure(model_spec("demo-sd3-hyper8"))
    assert files.folder == tmp_path / "demo" / "demo-sd3"
    assert files.lora_file.is_file()


def test_a_real_checkpoint_in_the_models_folder_loads_through_the_same_path(models_dir, presets):
    # A diffusers folder under models/<id>/ is what a user gets from `hf download ... --local-dir`.
    shutil.copytree(models_dir / "demo" / "demo-sd3", models_dir / "sd3-medium")
    store = ModelStore(models_dir, offline=True)
    assert store.is_on_disk(model_spec("sd3-medium"))
    manager = ModelManager(store, presets["cpu"])
    with manager.use("sd3-medium") as pipe:
        assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    assert manager.status().model_id == "sd3-medium" and not manager.status().demo


def test_offline_and_missing_says_what_and_how(tmp_path):
    store = ModelStore(tmp_path, offline=True)
    with pytest.raises(ModelNotAvailable) as error:
        store.ensure(model_spec("flux1-schnell"))
    assert "hf download black-forest-labs/FLUX.1-schnell" in str(error.value)
    assert "offline" in str(error.value)


def test_a_fast_preset_without_its_lora_reports_the_lora(models_dir):
    shutil.copytree(models_dir / "demo" / "demo-sd3", models_dir / "sd3-medium")
    store = ModelStore(models_dir, offline=True)
    with pytest.raises(ModelNotAvailable, match="Hyper-SD3-8steps-CFG-lora.safetensors"):
        store.ensure(model_spec("sd3-medium-hyper8"))


def test_online_download_lands_in_the_models_folder_only_when_complete(tmp_path, demo_models_dir, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, local_dir=None, allow_patterns=None, local_files_only=False, tqdm_class=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        calls.append(repo_id)
        with tqdm_class(total=4) as bar:
            bar.update(4)
        assert not (tmp_path / "flux1-schnell").exists(), "the final folder appears only after the download"
        shutil.copytree(demo_models_dir / "demo" / "demo-flux", local_dir)
        return str(local_dir)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    store = ModelStore(tmp_path, offline=False)
    reports = []
    files = store.ensure(model_spec("flux1-schnell"), on_progress=lambda fraction, text: reports.append((fraction, text)))
    assert calls == ["black-forest-labs/FLUX.1-schnell"]
    assert reports[-1] == (1.0, "Downloading FLUX.1 [schnell]: 4/4 files"), "the download's progress reaches the job"
    assert files.folder == tmp_path / "flux1-schnell" and (files.folder / "model_index.json").is_file()


def test_a_gated_repo_asks_for_the_licence_and_a_login(tmp_path, monkeypatch):
    import httpx
    from huggingface_hub.errors import GatedRepoError

    def refuse(*args, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        url = "https://huggingface.co/api/models/black-forest-labs/FLUX.1-dev"
        raise GatedRepoError("403 gated", response=httpx.Response(403, request=httpx.Request("GET", url)))

    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    with pytest.raises(ModelNotAvailable) as error:
        ModelStore(tmp_path, offline=False).ensure(model_spec("flux1-dev"))
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in str(error.value) and "HF_TOKEN" in str(error.value)


def test_demo_models_are_offered_only_without_real_weights_or_in_demo_mode(models_dir):
    store = ModelStore(models_dir, offline=True)
    offered = {listing.spec.id for listing in list_models(store, demo_mode=False) if listing.offered}
    assert "demo-sd3" in offered and "sd3-medium" in offered

    shutil.copytree(models_dir / "demo" / "demo-sd3", models_dir / "sd3-medium")
    offered = {listing.spec.id for listing in list_models(store, demo_mode=False) if listing.offered}
    assert "demo-sd3" not in offered and "sd3-medium" in offered
    assert "demo-fish-speech" in offered, "real image weights do not hide the demo of another task"

    offered = {listing.spec.id for listing in list_models(store, demo_mode=True) if listing.offered}
    assert offered == {"demo-sd3", "demo-sd3-hyper8", "demo-flux", "demo-sd15", "demo-sdxl", "demo-fish-speech"}
