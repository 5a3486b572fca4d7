"""The streamer and its host memory without a GPU: what sits on the device when, the order blocks are prefetched in,
blocks a step cache skips, pinned memory given back, and reads and pinning that fall back instead of failing."""

import threading
import weakref
from types import SimpleNamespace

import pytest
import torch
from diffusers import FluxTransformer2DModel

from pipelines.catalog import Family
from pipelines.memory import host_arena
from pipelines.memory.host_arena import HostArena
from pipelines.memory.loader import load_streamed, stream_loaded
from pipelines.memory.weights_file import WeightsFile
from pipelines.speed.step_cache import step_cache


def flux_inputs(timestep: float) -> dict:
    generator = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 256, 64, generator=generator), encoder_hidden_states=torch.randn(1, 20, 32, generator=generator),
        pooled_projections=torch.randn(1, 32, generator=generator), timestep=torch.tensor([timestep]),
        img_ids=torch.zeros(256, 3), txt_ids=torch.zeros(20, 3), guidance=torch.tensor([3.5]),
    )


def test_placing_moves_nothing_to_the_device_before_the_denoisers_first_forward(demo_models_dir):
    folder = demo_models_dir / "demo" / "demo-flux" / "transformer"
    model, streamer = load_streamed(FluxTransformer2DModel, folder, torch.device("cpu"), torch.float32, HostArena(pinned=False))
    streamer.place({0})
    assert not streamer.on_device, "the text encoders run first with the whole card"
    with torch.no_grad():
        model(**flux_inputs(0.5), return_dict=False)
    assert streamer.on_device
    streamer.offload()
    assert not streamer.on_device
    streamer.place(set())  # a new plan for the next job decides again, and still moves nothing
    assert not streamer.on_device


class TwoLists(torch.nn.Module):
    """Runs its second block list before its first, as Wan VACE runs `vace_blocks` before `blocks`."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
        self.control_blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(2))

    def forward(self, x):
        for block in [*self.control_blocks, *self.blocks]:
            x = torch.tanh(block(x))
        return x


def test_blocks_that_run_in_another_order_than_defined_are_prefetched_in_the_order_they_run():
    torch.manual_seed(0)
    model, x = TwoLists(), torch.randn(2, 8)
    with torch.no_grad():
        expected = model(x)
    streamer = stream_loaded(model, torch.device("cpu"), torch.float32, HostArena(pinned=False))
    streamer.place(set())
    with torch.no_grad():
        assert torch.equal(model(x), expected)
        after_first = streamer.resyncs
        for _ in range(3):
            assert torch.equal(model(x), expected)
    assert streamer.resyncs == after_first, "no re-prime once the order is known"
    streamer.place({1})  # a new plan keeps the recorded order for the blocks that still stream
    with torch.no_grad():
        model(x)
        before = streamer.resyncs
        assert torch.equal(model(x), expected)
    assert streamer.resyncs == before


def test_a_step_the_cache_skips_copies_no_block(demo_models_dir):
    folder = demo_models_dir / "demo" / "demo-flux" / "transformer"
    reference = FluxTransformer2DModel.from_pretrained(folder)
    model, streamer = load_streamed(FluxTransformer2DModel, folder, torch.device("cpu"), torch.float32, HostArena(pinned=False))
    streamer.place(set())
    streamed_bytes = sum(streamer.block_bytes)
    timesteps = (0.9, 0.899, 0.898, 0.3)
    with torch.no_grad(), step_cache(SimpleNamespace(transformer=reference), Family.FLUX, "teacache", 10.0):
        expected = [reference(**flux_inputs(t), return_dict=False)[0] for t in timesteps]
    copied = []
    with torch.no_grad(), step_cache(SimpleNamespace(transformer=model), Family.FLUX, "teacache", 10.0) as report:
        for t, output in zip(timesteps, expected):
            before = streamer.streamed_copy_bytes
            assert torch.equal(model(**flux_inputs(t), return_dict=False)[0], output)
            copied.append(streamer.streamed_copy_bytes - before)
    assert report.skipped >= 1
    skipped_steps = [c for c in copied[1:] if c == 0]
    assert len(skipped_steps) == report.skipped, f"a skipped step copies nothing; copies per step {copied}"
    assert max(copied) >= streamed_bytes, "a computed step copies every streamed block"


def test_a_growing_arena_and_a_freed_one_give_their_pinned_ram_back(monkeypatch):
    events = []
    monkeypatch.setattr(host_arena, "_allocate", lambda nbytes, pinned: events.append(("pin", nbytes)) or torch.empty(nbytes, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.accelerator, "empty_host_cache", lambda: events.append(("empty host cache", len(arena._chunks))))
    arena = HostArena(pinned=True)
    arena.start_model([1000, 1000])
    first_pins = len(events)
    arena.start_model([5000, 5000])  # a bigger model: the old chunks go, and their RAM with them, before new ones
    assert events[first_pins] == ("empty host cache", 0) and events[first_pins + 1][0] == "pin"
    arena.free()
    assert events[-1] == ("empty host cache", 0)


def test_unload_empties_the_pinned_host_cache_after_the_model_is_gone(models_dir, presets, monkeypatch):
    from pipelines.loading.model_store import ModelStore
    from pipelines.manager import ModelManager
    import pipelines.manager as manager_module

    manager = ModelManager(ModelStore(models_dir, offline=True), presets["8gb-laptop"])
    with manager.use("demo-sd3") as pipe:
        alive = weakref.ref(pipe)
    del pipe
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.accelerator, "empty_host_cache", lambda: seen.append(alive() is None))
    monkeypatch.setattr(manager_module, "read_memory", lambda: SimpleNamespace(vram_free_bytes=0, process_rss_bytes=0))
    manager.unload()
    assert seen and seen[-1], "the host cache is emptied once the model's pinned weights are free"


def test_when_pinning_fails_near_the_ram_limit_the_arena_falls_back_to_ordinary_ram(monkeypatch, caplog):
    def allocate(nbytes, pinned):
        if pinned:
            raise RuntimeError("CUDA error: out of memory (cudaHostAlloc)")
        return torch.empty(nbytes, dtype=torch.uint8)

    monkeypatch.setattr(host_arena, "_allocate", allocate)
    arena = HostArena(pinned=True)
    arena.start_model([1000, 3000])
    assert not arena.pinned and arena.capacity_bytes >= 4000
    assert "Could not pin" in arena.note and "ordinary RAM" in caplog.text
    assert arena.take(1000).numel() == 1000


def test_without_positional_reads_threads_read_one_file_at_once(demo_models_dir, monkeypatch):
    # Windows has no os.preadv: reads must not queue behind one shared handle.
    import os

    monkeypatch.delattr(os, "preadv", raising=False)
    barrier, seek = threading.Barrier(2, timeout=10), os.lseek

    def meeting_seek(fd, offset, how):
        barrier.wait()  # both readers must be inside a read at once, or this breaks
        return seek(fd, offset, how)

    monkeypatch.setattr(os, "lseek", meeting_seek)
    weights = WeightsFile(demo_models_dir / "demo" / "demo-sd3" / "transformer")
    names = list(weights.locations)[:2]
    results = {}
    threads = [threading.Thread(target=lambda name=name: results.__setitem__(name, weights.read(name))) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    weights.close()
    monkeypatch.undo()
    reference = WeightsFile(demo_models_dir / "demo" / "demo-sd3" / "transformer")
    assert all(torch.equal(results[name], reference.read(name)) for name in names)
