"""The Video tab's Reuse settings for the Enhance-A-Video weight: a result's weight goes back to its control, and a
result made before the weight existed comes back with it off."""

from types import SimpleNamespace

from pipelines.catalog import Catalog
from pipelines.jobs import QueuedJob
from pipelines.loading.model_store import ModelStore
from pipelines.manager import ModelManager
from pipelines.outputs import read_parameters
from pipelines.video.video_runner import VideoRequest, generate_video
from tabs.video import request_from, video_fields


def fields(presets):
    """The tab's field table without its controls, over the fixed catalog and the CPU preset."""
    context = SimpleNamespace(store=SimpleNamespace(catalog=Catalog()), manager=SimpleNamespace(preset=presets["cpu"]))
    return video_fields(context, {})


def test_a_results_enhance_weight_goes_back_to_the_tab_and_into_the_next_request(demo_models_dir, presets, outputs):
    manager = ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])
    request = VideoRequest(prompt="a fox", model="demo-ltx", frames=9, steps=2, seed=11, enhance_weight=1.5)
    result = generate_video(request.check(manager.store.catalog, manager.store.models_dir), manager, outputs, QueuedJob())
    table = fields(presets)
    restored = dict(zip(table.remembered_names, table.values_from_record(read_parameters(result.video.path))))
    assert (restored["enhance_weight"], restored["model"], restored["seed"]) == (1.5, "demo-ltx", 11)
    assert table.remembered_names[-1] == "enhance_weight"
    values = {field.name: None for field in table.fields} | {"prompt": "again", "enhance_weight": restored["enhance_weight"]}
    assert request_from(values, "demo-ltx").enhance_weight == 1.5


def test_a_result_from_before_the_weight_existed_comes_back_with_it_off(presets):
    table = fields(presets)
    old = {"model": "demo-wan", "prompt": "a fox", "seed": 3, "speed": "off", "step_cache": {"method": "none"}}
    restored = dict(zip(table.remembered_names, table.values_from_record(old)))
    assert restored["enhance_weight"] == 0.0
