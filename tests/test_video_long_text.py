"""The Video tab's Long video text: the length context windows make and the passes they take, or what is wrong."""

import pytest

from pipelines.manager import ModelManager
from pipelines.loading.model_store import ModelStore
from tabs.video import describe_length, describe_long_video


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


def test_the_video_tab_states_the_long_length_and_the_passes_or_what_is_wrong(manager):
    catalog = manager.store.catalog
    assert describe_length(catalog, "demo-wan", 200, 16, "none").startswith("**129 frames")
    assert describe_length(catalog, "demo-wan", 200, 16, "none", context_frames=81).startswith("**201 frames at 16 fps = 12.56 s**")
    note = describe_long_video(catalog, "demo-wan", 25, 16, 2, 1.0, 9, 4, 1, "linear")
    assert "25 frames = 1.56 s" in note and "3 windows per step × 2 steps = 6 transformer passes" in note
    assert describe_long_video(catalog, "demo-wan", 25, 16, 2, 1.0, 9, 9, 1, "linear").startswith("⚠️ context_overlap:")


def test_the_long_video_note_checks_only_the_length_settings_and_matches_the_jobs_own(manager):
    """The note the tab shows while settings change is the note of the job those settings make: no prompt or input
    file is needed to make it, and an asynchronous SkyReels chunking is described the same way."""
    from pipelines.video.video_request import VideoRequest, long_video_note

    catalog = manager.store.catalog
    settings = dict(model="demo-skyreels-v2", frames=57, fps=24, steps=4, context_frames=33, context_overlap=17, ar_step=2, causal_block_size=1)
    assert long_video_note(catalog, VideoRequest(prompt="", **settings)) == (
        VideoRequest(prompt="a lighthouse", **settings).check(catalog, manager.store.models_dir).length_note()
    )
