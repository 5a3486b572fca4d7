import json
import shutil

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from pipelines.catalog import MODELS, MODELS_BY_ID
from pipelines.errors import ModelNotAvailable
from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore, list_models


def test_demo_models_are_built_in_the_real_layout_and_marked(tmp_path):
    store = ModelStore(tmp_path, offline=True)
    files = store.ensure(MODELS_BY_ID["demo-flux"])
    assert files.folder == tmp_path / "demo" / "demo-flux"
    assert json.loads((files.folder / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
    assert not list(tmp_path.glob("demo/*.building-*")), "no half-built folder is left behind"


def test_a_fast_preset_uses_its_base_weights_and_its_own_lora(tmp_path):
    store = ModelStore(tmp_path, offline=True)
    files = store.ensure(MODELS_BY_ID["demo-sd3-hyper8"])
    assert files.folder == tmp_path / "demo" / "demo-sd3"
    assert files.lora_file.is_file()


def test_a_real_checkpoint_in_the_models_folder_loads_through_the_same_path(models_dir, presets):
    # A diffusers folder under models/<id>/ is what a user gets from `hf download ... --local-dir`.
    shutil.copytree(models_dir / "demo" / "demo-sd3", models_dir / "sd3-medium")
    store = ModelStore(models_dir, offline=True)
    assert store.is_on_disk(MODELS_BY_ID["sd3-medium"])
    manager = ModelManager(store, presets["cpu"])
    with manager.use("sd3-medium") as pipe:
        assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    assert manager.status().model_id == "sd3-medium" and not manager.status().demo


def test_offline_and_missing_says_what_and_how(tmp_path):
    store = ModelStore(tmp_path, offline=True)
    with pytest.raises(ModelNotAvailable) as error:
        store.ensure(MODELS_BY_ID["flux1-schnell"])
    assert "hf download black-forest-labs/FLUX.1-schnell" in str(error.value)
    assert "offline" in str(error.value)


def test_a_fast_preset_without_its_lora_reports_the_lora(models_dir):
    shutil.copytree(models_dir / "demo" / "demo-sd3", models_dir / "sd3-medium")
    store = ModelStore(models_dir, offline=True)
    with pytest.raises(ModelNotAvailable, match="Hyper-SD3-8steps-CFG-lora.safetensors"):
        store.ensure(MODELS_BY_ID["sd3-medium-hyper8"])


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
    files = store.ensure(MODELS_BY_ID["flux1-schnell"], on_progress=lambda fraction, text: reports.append((fraction, text)))
    assert calls == ["black-forest-labs/FLUX.1-schnell"]
    assert reports[-2] == (0.0, "Downloading FLUX.1 [schnell]: 0 B of 0 B (file 4 of 4)"), "the download's progress reaches the job"
    assert reports[-1] == (1.0, "Downloaded FLUX.1 [schnell]")
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
        ModelStore(tmp_path, offline=False).ensure(MODELS_BY_ID["flux1-dev"])
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
    assert offered == {spec.id for spec in MODELS if spec.demo}


def as_real_hidream(models_dir, with_llama=True):
    """The demo HiDream laid out as a user's downloads: the pipeline folder, and the Llama repo beside it."""
    shutil.copytree(models_dir / "demo" / "demo-hidream", models_dir / "hidream-i1-dev")
    if with_llama:
        shutil.copytree(models_dir / "demo" / "demo-llama", models_dir / "llama-3.1-8b-instruct")


def test_hidream_loads_its_llama_encoder_from_the_separate_repo_folder(models_dir, presets):
    as_real_hidream(models_dir)
    store = ModelStore(models_dir, offline=True)
    files = store.ensure(MODELS_BY_ID["hidream-i1-dev"])
    assert files.companion_folder == models_dir / "llama-3.1-8b-instruct"
    manager = ModelManager(store, presets["cpu"])
    with manager.use("hidream-i1-dev") as pipe:
        assert type(pipe).__name__ == "HiDreamImagePipeline"
        assert type(pipe.text_encoder_4).__name__ == "LlamaForCausalLM" and pipe.tokenizer_4 is not None


def test_hidream_without_its_llama_encoder_is_not_on_disk_and_says_how_to_get_it(models_dir):
    as_real_hidream(models_dir, with_llama=False)
    store = ModelStore(models_dir, offline=True)
    assert not store.is_on_disk(MODELS_BY_ID["hidream-i1-dev"])
    with pytest.raises(ModelNotAvailable) as error:
        store.ensure(MODELS_BY_ID["hidream-i1-dev"])
    # The transformers files at the root, not Meta's original/ checkpoint.
    include = " ".join(f'--include "{pattern}"' for pattern in MODELS_BY_ID["hidream-i1-dev"].companion.allow_patterns)
    assert '"*.json"' not in include
    assert f'hf download meta-llama/Meta-Llama-3.1-8B-Instruct {include} --local-dir {models_dir / "llama-3.1-8b-instruct"}' in str(error.value)
    assert "HiDream-ai/HiDream-I1-Dev" not in str(error.value), "the HiDream repo itself is on disk"


def test_a_missing_hidream_with_its_llama_on_disk_asks_only_for_the_hidream_repo(models_dir):
    shutil.copytree(models_dir / "demo" / "demo-llama", models_dir / "llama-3.1-8b-instruct")
    with pytest.raises(ModelNotAvailable) as error:
        ModelStore(models_dir, offline=True).ensure(MODELS_BY_ID["hidream-i1-fast"])
    assert "hf download HiDream-ai/HiDream-I1-Fast" in str(error.value) and "meta-llama" not in str(error.value)


def hub_refusal(status: int):
    import httpx
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    url = "https://huggingface.co/api/models/meta-llama/Meta-Llama-3.1-8B-Instruct"
    response = httpx.Response(status, request=httpx.Request("GET", url))
    return GatedRepoError("gated", response=response) if status == 403 else HfHubHTTPError("unauthorized", response=response)


@pytest.mark.parametrize("status", [403, 401])
def test_a_refused_llama_download_names_the_repo_and_asks_for_the_licence_and_a_login(models_dir, monkeypatch, status):
    """The HiDream repo downloads; the gated Llama repo answers 403 (licence not accepted) or 401 (not logged in)."""
    downloaded = []

    def fake_snapshot_download(repo_id, local_dir=None, allow_patterns=None, local_files_only=False, tqdm_class=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        if repo_id.startswith("meta-llama/"):
            raise hub_refusal(status)
        downloaded.append(repo_id)
        shutil.copytree(models_dir / "demo" / "demo-hidream", local_dir)
        return str(local_dir)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    with pytest.raises(ModelNotAvailable) as error:
        ModelStore(models_dir, offline=False).ensure(MODELS_BY_ID["hidream-i1-full"])
    message = str(error.value)
    assert "https://huggingface.co/meta-llama/Meta-Llama-3.1-8B-Instruct" in message and "accept its licence" in message
    assert "HF_TOKEN" in message and "huggingface-cli login" in message and "HiDream-I1 Full" in message
    assert downloaded == ["HiDream-ai/HiDream-I1-Full"] and (models_dir / "hidream-i1-full" / "model_index.json").is_file()
    assert not (models_dir / "llama-3.1-8b-instruct").exists(), "nothing half-downloaded looks like the encoder"


def test_framepack_is_assembled_from_three_repo_folders_shared_with_f1_and_a_missing_one_is_named(models_dir, presets):
    # The demo FramePack laid out as a user's downloads: the transformer repo and HunyuanVideo's components.
    shutil.copytree(models_dir / "demo" / "demo-framepack", models_dir / "framepack-i2v-hy")
    shutil.copytree(models_dir / "demo" / "demo-hunyuanvideo-base", models_dir / "hunyuanvideo-base")
    store = ModelStore(models_dir, offline=True)
    assert not store.is_on_disk(MODELS_BY_ID["framepack-i2v-hy"])
    with pytest.raises(ModelNotAvailable) as error:
        store.ensure(MODELS_BY_ID["framepack-i2v-hy"])
    message = str(error.value)
    assert 'hf download lllyasviel/flux_redux_bfl --include "image_encoder/*" --include "feature_extractor/*" --local-dir' in message
    assert "FramePackI2V_HY" not in message and "hunyuanvideo-community" not in message, "those are on disk"

    shutil.copytree(models_dir / "demo" / "demo-flux-redux-siglip", models_dir / "flux-redux-siglip")
    files = store.ensure(MODELS_BY_ID["framepack-i2v-hy"])
    assert files.component_folders == {"hunyuanvideo-base": models_dir / "hunyuanvideo-base", "flux-redux-siglip": models_dir / "flux-redux-siglip"}
    with ModelManager(store, presets["cpu"]).use("framepack-i2v-hy") as pipe:
        assert type(pipe).__name__ == "HunyuanVideoFramepackPipeline"
        assert type(pipe.transformer).__name__ == "HunyuanVideoFramepackTransformer3DModel"
        assert type(pipe.image_encoder).__name__ == "SiglipVisionModel" and pipe.feature_extractor is not None
    # F1 needs only its own transformer repo: the component folders are shared.
    with pytest.raises(ModelNotAvailable) as error:
        store.ensure(MODELS_BY_ID["framepack-f1-i2v-hy"])
    assert 'hf download lllyasviel/FramePack_F1_I2V_HY_20250503 --include "*.json" --include "*.safetensors" --local-dir' in str(error.value) and "flux_redux" not in str(error.value)
