"""Text to speech on the tiny Fish Speech model: WAV files, voice cloning, long text, Stop, clear errors."""

import json

import numpy as np
import pytest
import soundfile

from pipelines.errors import InvalidRequest
from pipelines.jobs import QueuedJob
from pipelines.outputs import read_parameters
from pipelines.catalog import Catalog
from pipelines.audio.speech_runner import Reference, SpeechRequest, speak, split_text

MODEL = "demo-fish-speech"


def run(request: SpeechRequest, manager, outputs, queued):
    """The request checked once into its job, then spoken."""
    return speak(request.check(manager.store.catalog), manager, outputs, queued)


@pytest.fixture
def voice_clip(tmp_path):
    """Two seconds of a gliding tone at 22.05 kHz: the runner must resample it to the codec's rate."""
    path = tmp_path / "voice.wav"
    t = np.linspace(0, 2, 44_100, endpoint=False)
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * (180 + 60 * t) * t)).astype("float32"), 22_050)
    return path


def test_long_text_is_split_at_sentence_ends():
    text = "The first sentence is here. A second one follows! Is this the third? Yes. " * 3
    chunks = split_text(text, 60)
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert all(chunk.endswith((".", "!", "?")) for chunk in chunks)
    assert " ".join(chunks) == text.strip()


def test_a_sentence_longer_than_a_chunk_is_cut_at_clauses_not_inside_words():
    sentence = "This sentence, which goes on and on, has clauses, commas and many words in it before it ends."
    chunks = split_text(sentence, 30)
    assert all(len(chunk) <= 30 for chunk in chunks)
    assert set(" ".join(chunks).split()) == set(sentence.split())


def test_chinese_and_japanese_sentence_marks_split_too():
    assert split_text("你好。今天天气很好！我们去公园吧？", 8) == ["你好。", "今天天气很好！", "我们去公园吧？"]


def test_speech_is_a_44k_wav_with_its_parameters(manager, outputs):
    result = run(SpeechRequest(text="Hello there. How are you?", model=MODEL, seed=3, max_new_tokens=24), manager, outputs, QueuedJob())
    path = result.output.path
    info = soundfile.info(path)
    assert (info.samplerate, info.channels) == (44_100, 1) and info.frames > 0
    assert result.audio_seconds == pytest.approx(info.frames / 44_100, abs=1e-3)
    for record in (json.loads(result.output.sidecar.read_text()), read_parameters(path)):
        assert record["text"] == "Hello there. How are you?" and record["seed"] == 3 and record["model"] == MODEL
        assert record["temperature"] == 0.8 and record["max_new_tokens"] == 24 and record["demo"] is True


def test_the_same_seed_gives_the_same_speech(manager, outputs):
    make = lambda seed: soundfile.read(run(SpeechRequest(text="Same words.", model=MODEL, seed=seed, max_new_tokens=16), manager, outputs, QueuedJob()).output.path)[0]
    assert np.array_equal(make(5), make(5))
    assert not np.array_equal(make(5), make(6))


def test_voice_cloning_runs_end_to_end_and_records_the_reference(manager, outputs, voice_clip):
    request = SpeechRequest(text="Say this in my voice.", model=MODEL, references=(Reference(str(voice_clip), "a gliding tone"),), seed=1, max_new_tokens=16)
    result = run(request, manager, outputs, QueuedJob())
    recorded = result.output.parameters["references"]
    assert recorded[0]["file"] == "voice.wav" and recorded[0]["transcript"] == "a gliding tone" 
    assert outputs.kept_input(recorded[0]).read_bytes() == voice_clip.read_bytes(), "a copy of the reference is kept"
    plain = run(SpeechRequest(text="Say this in my voice.", model=MODEL, seed=1, max_new_tokens=16), manager, outputs, QueuedJob())
    assert not np.array_equal(soundfile.read(result.output.path)[0], soundfile.read(plain.output.path)[0]), "the reference changes the speech"


def test_each_chunk_of_a_long_text_reports_its_progress(manager, outputs):
    reports = []
    text = "One short sentence. Another short sentence. A third short sentence."
    result = run(SpeechRequest(text=text, model=MODEL, chunk_length=25, max_new_tokens=16, seed=2), manager, outputs, QueuedJob(lambda f, t: reports.append(t)))
    assert result.chunks == ["One short sentence.", "Another short sentence.", "A third short sentence."]
    assert result.output.parameters["chunks"] == 3
    for number in (1, 2, 3):
        assert any(text.startswith(f"Chunk {number}/3") for text in reports)


def test_stop_keeps_the_chunks_already_finished(manager, outputs):
    def on_progress(fraction, text):
        if text.startswith("Chunk 2/"):
            job.stop()

    job = QueuedJob(on_progress)
    text = "First part here. Second part here. Third part here."
    result = run(SpeechRequest(text=text, model=MODEL, chunk_length=20, max_new_tokens=16, seed=2), manager, outputs, job)
    assert result.stopped and result.chunks == ["First part here."]
    assert result.output.parameters["stopped"] is True and soundfile.info(result.output.path).frames > 0
    after = run(SpeechRequest(text="After the stop.", model=MODEL, max_new_tokens=16, seed=2), manager, outputs, QueuedJob())
    assert not after.stopped


@pytest.mark.parametrize(
    "change, field, hint",
    [
        (dict(text="  "), "text", "empty"),
        (dict(text="x" * 20_001), "text", "20000"),
        (dict(model="demo-sd3"), "model", "demo-fish-speech"),
        (dict(temperature=0), "temperature", "0.01 to 2"),
        (dict(top_p=1.5), "top_p", "0.01 to 1"),
        (dict(repetition_penalty=3), "repetition_penalty", "0.5 to 2"),
        (dict(max_new_tokens=2.5), "max_new_tokens", "whole number"),
        (dict(seed=-2), "seed", "-1 (random)"),
        (dict(precision="int4"), "precision", "bfloat16, float16, float32"),
        (dict(references=(Reference("clip.wav", ""),)), "reference_text", "needs its transcript"),
        (dict(references=(Reference("", "words"),)), "reference_audio", "without its audio"),
    ],
)
def test_bad_values_name_the_field_and_what_is_accepted(change, field, hint):
    with pytest.raises(InvalidRequest) as error:
        SpeechRequest(**{"text": "Hello.", "model": MODEL, **change}).check(Catalog())
    assert error.value.field == field and hint in str(error.value)


def test_unreadable_or_too_long_reference_audio_is_refused_by_name(manager, outputs, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really audio")
    with pytest.raises(InvalidRequest, match="reference_audio: broken.wav is not readable audio"):
        run(SpeechRequest(text="Hi.", model=MODEL, references=(Reference(str(broken), "hi"),)), manager, outputs, QueuedJob())
    long_clip = tmp_path / "long.wav"
    soundfile.write(long_clip, np.zeros(8_000 * 91, dtype="float32"), 8_000)
    with pytest.raises(InvalidRequest, match="long.wav is longer than 90 s"):
        run(SpeechRequest(text="Hi.", model=MODEL, references=(Reference(str(long_clip), "hi"),)), manager, outputs, QueuedJob())
    assert not list(outputs.root.rglob("*.wav"))


def test_a_chosen_precision_reloads_the_model_in_it_and_is_recorded(manager, outputs):
    auto = run(SpeechRequest(text="Precise words.", model=MODEL, seed=4, max_new_tokens=16), manager, outputs, QueuedJob())
    assert auto.output.parameters["dtype"] == "float32" and auto.output.parameters["precision"] == "auto"
    half = run(SpeechRequest(text="Precise words.", model=MODEL, seed=4, max_new_tokens=16, precision="bfloat16"), manager, outputs, QueuedJob())
    assert half.output.parameters["dtype"] == "bfloat16" and manager.status().plan.dtype == "bfloat16"
    assert soundfile.info(half.output.path).frames > 0
