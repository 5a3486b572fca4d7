"""How a model is stored decides its reader; a storage without one is refused by name. No weights are read here."""

from pathlib import Path

import pytest

from pipelines.catalog import Catalog
from pipelines.errors import InvalidRequest, ModelLoadFailed
from pipelines.loading.loaders import READERS, Storage, check_readable, reader_for, storage_of
from pipelines.loading.model_store import ModelFiles
from pipelines.loading.weight_formats import WeightFormat

CATALOG = Catalog()
FOLDER = Path("models/base")


@pytest.mark.parametrize("model_id, files, expected", [
    ("demo-sd3", ModelFiles(FOLDER), Storage.FOLDER),
    ("demo-sd15", ModelFiles(FOLDER, checkpoint=Path("models/fine-tune.safetensors")), Storage.PIPELINE_FILE),
    ("demo-flux", ModelFiles(FOLDER, checkpoint=Path("models/flux-Q8_0.gguf")), Storage.DENOISER_FILE),
    ("demo-framepack", ModelFiles(FOLDER, component_folders={"demo-hunyuanvideo-base": FOLDER}), Storage.ASSEMBLED),
    ("demo-fish-speech", ModelFiles(FOLDER), Storage.NATIVE),
])
def test_the_storage_follows_from_the_entry_and_its_files(model_id, files, expected):
    assert storage_of(CATALOG.spec(model_id), files) is expected


def test_every_storage_has_a_reader():
    assert set(READERS) == set(Storage)


def test_a_storage_without_a_reader_is_refused_naming_the_model_and_the_storage():
    spec = CATALOG.spec("demo-framepack")
    readers = {storage: reader for storage, reader in READERS.items() if storage is not Storage.ASSEMBLED}
    with pytest.raises(ModelLoadFailed) as refused:
        reader_for(spec, Storage.ASSEMBLED, readers)
    assert spec.name in str(refused.value) and Storage.ASSEMBLED.value in str(refused.value)
    assert reader_for(spec, Storage.FOLDER, readers) is READERS[Storage.FOLDER]


def test_nf4_is_refused_for_a_unet_before_anything_is_read():
    with pytest.raises(InvalidRequest, match="weights: NF4 is for the big transformers"):
        check_readable(CATALOG.spec("demo-sd15"), WeightFormat.NF4)
    check_readable(CATALOG.spec("demo-sd3"), WeightFormat.NF4)


def test_framepack_reads_a_transformer_saved_by_the_authors_class(tmp_path, presets):
    """lllyasviel's repos name `HunyuanVideoTransformer3DModelPacked` in config.json, a class diffusers lacks: the
    reader takes the class from the catalog, and the model loads through the store and the manager."""
    import json

    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore

    store = ModelStore(tmp_path, offline=True)
    store.ensure(store.catalog.spec("demo-framepack"))
    config = json.loads((store.local_folder(store.catalog.spec("demo-framepack")) / "config.json").read_text())
    assert config["_class_name"] == "HunyuanVideoTransformer3DModelPacked"
    with ModelManager(store, presets["cpu"]).use("demo-framepack") as pipe:
        assert type(pipe.transformer).__name__ == "HunyuanVideoFramepackTransformer3DModel"
