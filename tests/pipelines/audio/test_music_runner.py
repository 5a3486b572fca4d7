"""Music on the tiny ACE-Step model: durations and sample rates read back from the files, repaint that leaves the
rest of the clip untouched, extend, cover, formats with their metadata, the 8 GB plan, clear errors."""

import json
import math

import numpy as np
import pytest
import soundfile

from pipelines.catalog import Catalog, family_spec
from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.manager import ModelManager
from pipelines.media import read_audio, read_comment
from pipelines.memory.planner import DenoiserShape, plan_blocks
from pipelines.loading.model_store import ModelStore
from pipelines.audio.music_runner import MusicRequest, generate_music, music_workload
from pipelines.outputs import read_parameters
from pipelines.placement import ComponentSize, Placement, plan_placement

MODEL = "demo-ace-step"
RATE = 48_000


@pytest.fixture(scope="module")
def manager(demo_models_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True), presets["cpu"])


def write_clip(path, seconds: float, rate: int = RATE, channels: int = 2):
    """A 16-bit clip of two tones, so a sample that changes is visible."""
    t = np.arange(round(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([left, 0.2 * np.sin(2 * np.pi * 330 * t)], axis=1)[:, :channels]
    soundfile.write(path, data.squeeze(), rate, subtype="PCM_16")
    return path


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip.wav", 3.3)


def make(manager, outputs, **fields):
    fields.setdefault("tags", "warm lo-fi piano, vinyl crackle")
    fields.setdefault("model", MODEL)
    fields.setdefault("seed", 5)
    return generate_music(MusicRequest(**fields).check(manager.store.catalog), manager, outputs, QueuedJob())


def samples_of(path):
    data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    return data, rate


# 2.2 s is a length the pipeline alone fails on (diffusers 0.42.1 rounds 55 frames up to 56); 2.3 s is not a
# whole number of latent frames.
@pytest.mark.parametrize("duration", [2.2, 2.3, 4.0])
def test_text_to_music_lasts_the_requested_duration_at_48k_stereo(manager, outputs, duration):
    result = make(manager, outputs, duration=duration, lyrics="[verse]\nLanterns on the water")
    info = soundfile.info(result.output.path)
    assert (info.samplerate, info.channels) == (RATE, 2)
    assert info.frames == round(duration * RATE)
    assert result.audio_seconds == pytest.approx(duration)
    data, _ = samples_of(result.output.path)
    assert np.abs(data).max() > 1000  # not silence


def test_parameters_are_in_the_file_and_the_sidecar(manager, outputs):
    result = make(manager, outputs, duration=2.0, lyrics="[chorus]\nCarry me home", bpm=96, key="a minor", time_signature="3/4")
    embedded = json.loads(read_comment(result.output.path))
    sidecar = json.loads(result.output.path.with_suffix(".json").read_text())
    for used in (embedded, sidecar, read_parameters(result.output.path)):
        assert used["model"] == MODEL and used["task"] == "text2music" and used["kind"] == "music"
        assert used["tags"] == "warm lo-fi piano, vinyl crackle" and used["lyrics"] == "[chorus]\nCarry me home"
        assert (used["bpm"], used["key"], used["time_signature"]) == (96, "A minor", "3")
        assert (used["seed"], used["duration"], used["sample_rate"]) == (5, 2.0, RATE)
        assert (used["preset"], used["device"]) == ("cpu", "cpu") and 0 < used["seconds"] and used["created"]
    assert result.output.path.parent.parent.name == "music"


def test_the_same_seed_gives_the_same_music(manager, outputs):
    first, _ = samples_of(make(manager, outputs, duration=2.0, seed=11).output.path)
    again, _ = samples_of(make(manager, outputs, duration=2.0, seed=11).output.path)
    other, _ = samples_of(make(manager, outputs, duration=2.0, seed=12).output.path)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("audio_format", ["flac", "mp3"])
def test_flac_and_mp3_carry_their_parameters(manager, outputs, audio_format):
    result = make(manager, outputs, duration=2.0, audio_format=audio_format)
    assert result.output.path.suffix == f".{audio_format}"
    info = soundfile.info(result.output.path)
    assert info.samplerate == RATE and info.channels == 2
    # MP3 frames pad the end; FLAC is exact.
    assert info.duration == pytest.approx(2.0, abs=0.0 if audio_format == "flac" else 0.08)
    assert read_parameters(result.output.path)["audio_format"] == audio_format
    assert json.loads(read_comment(result.output.path))["seed"] == 5


@pytest.mark.parametrize("start, end", [(1.0, 2.0), (0.0, 0.8), (1.5, -1)])
def test_repaint_keeps_the_length_and_every_sample_outside_the_range(manager, outputs, clip, start, end):
    original, _ = samples_of(clip)
    result = make(manager, outputs, task="repaint", audio=str(clip), start=start, end=end)
    repainted, rate = samples_of(result.output.path)
    assert rate == RATE and repainted.shape == original.shape
    first, last = round(start * RATE), (len(original) if end == -1 else round(end * RATE))
    assert np.array_equal(repainted[:first], original[:first])
    assert np.array_equal(repainted[last:], original[last:])
    assert not np.array_equal(repainted[first:last], original[first:last])
    used = result.output.parameters
    assert (used["start"], used["end"]) == (start, last / RATE)
    assert used["input_audio"]["file"] == "clip.wav"
    assert outputs.kept_input(used["input_audio"]).read_bytes() == clip.read_bytes(), "a copy of the clip is kept"


def test_repaint_crossfades_into_the_range(manager, outputs, clip):
    original, _ = samples_of(clip)
    repainted, _ = samples_of(make(manager, outputs, task="repaint", audio=str(clip), start=1.0, end=2.0).output.path)
    first = RATE
    # The first samples inside the range are still mostly the original: no jump at the splice.
    jump = np.abs(repainted[first].astype(int) - original[first - 1].astype(int)).max()
    step = np.abs(np.diff(original[first - 50 : first + 50].astype(int), axis=0)).max()
    assert jump <= 2 * step + 2


def test_extend_adds_the_requested_seconds_after_the_unchanged_clip(manager, outputs, clip):
    original, _ = samples_of(clip)
    result = make(manager, outputs, task="extend", audio=str(clip), duration=1.7)
    extended, _ = samples_of(result.output.path)
    assert len(extended) == len(original) + round(1.7 * RATE)
    assert np.array_equal(extended[: len(original)], original)
    assert np.abs(extended[len(original) :]).max() > 0


def test_extend_of_a_44k_mono_clip_lasts_its_length_plus_the_extension(manager, outputs, tmp_path):
    mono = write_clip(tmp_path / "mono.wav", 2.5, rate=44_100, channels=1)
    result = make(manager, outputs, task="complete", audio=str(mono), duration=1.5)
    info = soundfile.info(result.output.path)
    assert (info.samplerate, info.channels) == (RATE, 2)
    assert info.duration == pytest.approx(2.5 + 1.5, abs=1 / RATE)
    assert result.output.parameters["task"] == "extend"


def test_cover_restyles_the_whole_clip_at_its_length(manager, outputs, clip):
    original, _ = samples_of(clip)
    result = make(manager, outputs, task="cover", audio=str(clip), cover_strength=0.5)
    covered, _ = samples_of(result.output.path)
    assert covered.shape == original.shape
    assert not np.array_equal(covered, original)
    assert result.output.parameters["cover_strength"] == 0.5


def test_the_input_clip_is_decoded_once_when_the_request_is_checked(manager, outputs, clip, monkeypatch):
    import pipelines.audio.music_runner as music_runner

    reads = []
    monkeypatch.setattr(music_runner, "read_audio", lambda *args, **kwargs: reads.append(args[0]) or read_audio(*args, **kwargs))
    job = MusicRequest(tags="jazz piano", model=MODEL, task="repaint", audio=str(clip), start=1.0, end=-1).check(manager.store.catalog)
    assert len(reads) == 1 and job.clip.seconds == pytest.approx(3.3) and (job.start, job.end) == (1.0, job.clip.seconds)
    assert job.notes == (f"Repainted from 1 s to the end of the clip ({job.clip.seconds:.2f} s).",)
    result = generate_music(job, manager, outputs, QueuedJob())
    assert len(reads) == 1, "the runner trusts the job's clip"
    assert result.notes == list(job.notes) and result.output.parameters["end"] == job.end


def test_a_random_seed_is_drawn_once_when_the_request_is_checked(manager, outputs):
    job = MusicRequest(tags="drums", model=MODEL, duration=1.0, steps=2, seed=-1).check(manager.store.catalog)
    assert job.request.seed == -1 and 0 <= job.seed
    assert generate_music(job, manager, outputs, QueuedJob()).output.parameters["seed"] == job.seed


def test_stop_before_the_first_step_saves_nothing(manager, outputs):
    job = QueuedJob()
    job.stop()
    result = generate_music(MusicRequest(tags="drums", model=MODEL, duration=2.0).check(manager.store.catalog), manager, outputs, job)
    assert result.stopped and result.output is None
    assert not list((outputs.root).rglob("*.wav"))


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"duration": 0}, "duration"),
        ({"duration": -3}, "duration"),
        ({"duration": 601}, "duration"),
        ({"duration": float("nan")}, "duration"),
        ({"duration": "long"}, "duration"),
        ({"tags": "  "}, "tags"),
        ({"task": "remix"}, "task"),
        ({"task": "repaint"}, "audio"),
        ({"task": "cover", "audio": None}, "audio"),
        ({"steps": 0}, "steps"),
        ({"bpm": 500}, "bpm"),
        ({"key": "H major"}, "key"),
        ({"time_signature": "5/4"}, "time_signature"),
        ({"audio_format": "ogg"}, "audio_format"),
        ({"seed": 2**40}, "seed"),
        ({"model": "demo-sd3"}, "model"),
    ],
)
def test_bad_requests_name_their_field(manager, outputs, fields, field):
    with pytest.raises(InvalidRequest) as error:
        make(manager, outputs, **{"duration": 2.0, **fields})
    assert error.value.field == field


@pytest.mark.parametrize(
    "start, end, field, words",
    [
        (5.0, -1, "start", "past the end"),
        (1.0, 9.0, "end", "past the end"),
        (2.0, 1.0, "end", "too short"),
        (1.0, 1.2, "end", "too short"),
        (-1.0, 2.0, "start", "before the clip"),
    ],
)
def test_a_range_outside_the_clip_is_refused_before_loading(manager, outputs, clip, start, end, field, words):
    with pytest.raises(InvalidRequest, match=words) as error:
        make(manager, outputs, task="repaint", audio=str(clip), start=start, end=end)
    assert error.value.field == field
    assert not list(outputs.root.rglob("*.wav"))


def test_unreadable_or_too_short_audio_is_refused(manager, outputs, tmp_path):
    fake = tmp_path / "song.wav"
    fake.write_text("not audio at all")
    with pytest.raises(InvalidRequest, match="not readable audio"):
        make(manager, outputs, task="cover", audio=str(fake))
    short = write_clip(tmp_path / "short.wav", 0.3)
    with pytest.raises(InvalidRequest, match="at least"):
        make(manager, outputs, task="cover", audio=str(short))


def test_an_extension_beyond_ten_minutes_is_refused(manager, outputs, clip):
    with pytest.raises(InvalidRequest, match="longer than 600"):
        make(manager, outputs, task="extend", audio=str(clip), duration=599)


def test_the_8gb_preset_places_encoders_dit_and_vae_in_turn_and_decodes_in_chunks(presets):
    spec = Catalog().spec("ace-step-15-xl-turbo")
    sizes = {
        name: ComponentSize(size, size // 32 if name == "transformer" else 0, 50_000_000)
        for name, size in {**spec.component_bytes, "condition_encoder": 400_000_000}.items()
    }
    plan = plan_placement(family_spec(spec.family), sizes, presets["8gb-laptop"], "cuda", "bfloat16")
    assert plan.components["text_encoder"] is Placement.OFFLOAD and plan.components["condition_encoder"] is Placement.OFFLOAD
    assert plan.components["vae"] is Placement.OFFLOAD and plan.vae_tiling
    # The 9.5 GB DiT cannot visit whole: it streams.
    assert plan.components["transformer"] is Placement.STREAM
    assert plan.predicted_peak_vram_bytes <= presets["8gb-laptop"].usable_vram_bytes


def test_four_minutes_fit_the_8gb_preset_with_most_of_the_dit_resident(presets):
    # ACE-Step 1.5 XL's DiT: 32 blocks of 2560 wide, a 9728-wide MLP, about 254 MB per block in bf16.
    shape = DenoiserShape(block_bytes=(254_000_000,) * 32, trunk_bytes=150_000_000, hidden_size=2560, widest_layer=9728)
    four_minutes = music_workload(frames=math.ceil(240 * 25), guidance=1.0)
    plan = plan_blocks(shape, four_minutes, presets["8gb-laptop"].usable_vram_bytes)
    assert plan.fits and len(plan.resident) >= 16
    assert four_minutes.tokens == 3000


def test_the_tiled_vae_decodes_a_long_clip_in_chunks_to_its_full_length(manager, outputs):
    tiles = []
    with manager.use(MODEL) as pipe:
        # The 8 GB preset turns tiling on; tiles of 32 frames make 6 s (150 frames) take several.
        hook = pipe.vae.decoder.register_forward_pre_hook(lambda module, args: tiles.append(args[0].shape[-1]))
        pipe.vae.enable_tiling()
        pipe.vae.tile_latent_min_length, pipe.vae.tile_latent_overlap = 32, 4
        try:
            result = make(manager, outputs, duration=6.0)
        finally:
            pipe.vae.disable_tiling()
            hook.remove()
    assert len(tiles) >= 6 and max(tiles) <= 32
    assert soundfile.info(result.output.path).frames == 6 * RATE


@pytest.fixture(scope="module")
def lora_manager(demo_models_dir, demo_loras_dir, presets):
    return ModelManager(ModelStore(demo_models_dir, offline=True, loras_dir=demo_loras_dir), presets["cpu"])


def test_an_ace_step_lora_with_a_weight_changes_the_music_and_leaving_it_out_restores_it(lora_manager, outputs):
    assert [lora.name for lora in lora_manager.store.loras.for_family(Catalog().spec(MODEL).family)] == ["music/lofi.safetensors"]
    base, _ = samples_of(make(lora_manager, outputs, duration=2.0).output.path)
    with_lora = make(lora_manager, outputs, duration=2.0, loras="music/lofi.safetensors:0.8")
    styled, _ = samples_of(with_lora.output.path)
    assert not np.array_equal(base, styled)
    record = with_lora.output.parameters["loras"]
    assert [(lora["file"], lora["weight"]) for lora in record] == [("music/lofi.safetensors", 0.8)] and len(record[0]["sha256"]) == 16
    lighter, _ = samples_of(make(lora_manager, outputs, duration=2.0, loras="music/lofi.safetensors:0.3").output.path)
    assert not np.array_equal(lighter, styled)
    again, _ = samples_of(make(lora_manager, outputs, duration=2.0).output.path)
    assert np.array_equal(again, base)


def test_an_image_lora_is_refused_for_music_by_name(lora_manager, outputs):
    with pytest.raises(InvalidRequest, match="detail.safetensors is made for SD3"):
        make(lora_manager, outputs, duration=2.0, loras="detail.safetensors:1")


def test_speed_reaches_ace_step_and_its_record_and_threshold_zero_changes_nothing(manager, outputs):
    off = make(manager, outputs, duration=1.0, steps=8)
    exact = make(manager, outputs, duration=1.0, steps=8, cache_method="teacache", cache_threshold=0)
    fast = make(manager, outputs, duration=1.0, steps=8, speed="fast")
    assert np.array_equal(samples_of(exact.output.path)[0], samples_of(off.output.path)[0])
    assert read_parameters(exact.output.path)["step_cache"]["calls_skipped"] == 0
    record = read_parameters(fast.output.path)
    assert record["speed"] == "fast" and record["step_cache"]["method"] == "teacache"
    assert record["step_cache"]["denoiser_calls"] == 8 and record["step_cache"]["calls_skipped"] > 0
    data, rate = samples_of(fast.output.path)
    assert (rate, data.shape) == (RATE, (RATE, 2))


def test_a_cache_ace_step_lacks_is_refused_by_name(manager, outputs):
    with pytest.raises(InvalidRequest, match="cache_method: 'first_block' is not available"):
        make(manager, outputs, cache_method="first_block")
