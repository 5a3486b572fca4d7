import json
import threading

import pytest
from PIL import Image

from pipelines.errors import OutputNotWritable
from pipelines.outputs import OutputStore, read_parameters, safe_name

PARAMETERS = {"prompt": "a fox", "model": "demo-sd3", "seed": 7, "steps": 2, "width": 64, "height": 64}


def image():
    return Image.new("RGB", (64, 64), (200, 30, 30))


def test_png_carries_its_parameters_and_a_sidecar_beside_it(tmp_path):
    saved = OutputStore(tmp_path).save_image(image(), PARAMETERS)
    assert saved.path.is_file() and saved.path.suffix == ".png" and saved.path.is_relative_to(tmp_path / "images")
    with Image.open(saved.path) as png:
        embedded = json.loads(png.text["atelier"])
        assert "Seed: 7" in png.text["parameters"] and png.text["parameters"].startswith("a fox")
    sidecar = json.loads(saved.sidecar.read_text())
    assert embedded["seed"] == sidecar["seed"] == 7 and sidecar["app_version"] and sidecar["file"] == saved.path.name


def test_saving_never_overwrites(tmp_path):
    store = OutputStore(tmp_path)
    first = store.save_image(image(), PARAMETERS)
    second = store.save_image(Image.new("RGB", (64, 64)), PARAMETERS)
    assert first.path != second.path
    assert Image.open(first.path).getpixel((0, 0)) == (200, 30, 30)


def test_concurrent_saves_each_get_their_own_file(tmp_path):
    store = OutputStore(tmp_path)
    saved = []
    threads = [threading.Thread(target=lambda: saved.append(store.save_image(image(), PARAMETERS))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({s.path for s in saved}) == 8
    assert not list(tmp_path.rglob(".*.tmp")), "no temporary file is left behind"


def test_an_unwritable_outputs_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OutputNotWritable, match="outputs"):
        OutputStore(blocker).save_image(image(), PARAMETERS)


def test_parameters_read_back_from_the_png_when_the_sidecar_is_gone(tmp_path):
    saved = OutputStore(tmp_path).save_image(image(), PARAMETERS)
    saved.sidecar.unlink()
    assert read_parameters(saved.path)["prompt"] == "a fox"


@pytest.mark.parametrize("text", ["../../etc/passwd", "a/b\\c", "..", "", "  "])
def test_file_name_fragments_cannot_escape_their_folder(text):
    name = safe_name(text)
    assert "/" not in name and "\\" not in name and name not in ("", ".", "..")


def test_results_are_listed_newest_first_and_filter_by_kind_and_model(tmp_path):
    store = OutputStore(tmp_path)
    first = store.save_image(image(), PARAMETERS)
    second = store.save_image(image(), {**PARAMETERS, "model": "demo-flux", "seed": 8})
    third = store.save_image(image(), PARAMETERS, kind="edits")
    assert [o.path for o in store.list_outputs()] == [third.path, second.path, first.path]
    assert [o.path for o in store.list_outputs(kind="images")] == [second.path, first.path]
    assert [o.path for o in store.list_outputs(model="demo-flux")] == [second.path]
    assert [o.path for o in store.list_outputs(limit=1)] == [third.path]
    assert store.list_outputs()[0].parameters["kind"] == "edits"


def test_listing_skips_results_whose_file_is_gone_and_sidecars_that_point_elsewhere(tmp_path):
    store = OutputStore(tmp_path)
    kept = store.save_image(image(), PARAMETERS)
    gone = store.save_image(image(), PARAMETERS)
    gone.path.unlink()
    outside = tmp_path / "secret.png"
    image().save(outside)
    forged = kept.sidecar.with_name("99999-forged.json")
    forged.write_text(json.dumps({**PARAMETERS, "file": "../../secret.png"}))
    (kept.sidecar.parent / "00000-broken.json").write_text("{")
    assert [o.path for o in store.list_outputs()] == [kept.path]


def test_settings_are_read_back_from_a_wav_comment_and_a_video_comment(tmp_path):
    import subprocess

    import imageio_ffmpeg
    import numpy as np
    import soundfile

    parameters = {**PARAMETERS, "prompt": 'a "quoted" = prompt; # with\nnewline \\ and ünicode'}
    wav = tmp_path / "speech.wav"
    with soundfile.SoundFile(wav, "w", samplerate=44100, channels=1) as audio:
        audio.comment = json.dumps(parameters)
        audio.write(np.zeros(4410, dtype="float32"))
    assert read_parameters(wav) == parameters

    video = tmp_path / "clip.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=64x64:d=0.2", "-c:v", "libx264",
         "-pix_fmt", "yuv420p", "-metadata", f"comment={json.dumps(parameters)}", str(video)],
        check=True,
    )
    assert read_parameters(video) == parameters


def test_files_without_settings_are_refused_with_their_name(tmp_path):
    plain = tmp_path / "plain.png"
    image().save(plain)
    with pytest.raises(ValueError, match="plain.png carries no Atelier parameters"):
        read_parameters(plain)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: Atelier reads settings from"):
        read_parameters(text)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a set of parameters"):
        read_parameters(listing)


def test_a_wav_carries_its_parameters_however_long_the_text(tmp_path):
    import numpy as np
    import soundfile

    parameters = {**PARAMETERS, "text": "A long text; with = signs, # marks\nand lines. " * 400}
    tone = np.sin(np.linspace(0, 2 * np.pi * 440, 44100)).astype("float32") * 0.5
    saved = OutputStore(tmp_path).save_audio(tone, 44100, parameters)
    assert saved.path.suffix == ".wav" and saved.path.is_relative_to(tmp_path / "speech")
    info = soundfile.info(saved.path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 1, 44100, "PCM_16")
    saved.sidecar.unlink()  # read from the WAV itself
    assert read_parameters(saved.path)["text"] == parameters["text"]


def test_inputs_are_kept_once_per_content_never_listed_and_found_again_by_their_hash(tmp_path):
    store = OutputStore(tmp_path / "outputs")
    first, renamed, other = tmp_path / "photo.png", tmp_path / "same picture.PNG", tmp_path / "other.png"
    image().save(first)
    renamed.write_bytes(first.read_bytes())
    Image.new("RGB", (8, 8)).save(other)
    records = [store.keep_input(path) for path in (first, renamed, other)]
    assert records[0]["kept"] == records[1]["kept"] != records[2]["kept"] and records[1]["file"] == "same picture.PNG"
    assert len([path for path in (tmp_path / "outputs").rglob("*") if path.is_file()]) == 2
    assert store.kept_input(records[1]).read_bytes() == first.read_bytes()
    store.save_image(image(), PARAMETERS)
    assert [saved.path.suffix for saved in store.list_outputs()] == [".png"], "kept inputs are not results"
    assert store.keep_input(None) is None


@pytest.mark.parametrize("record", [None, "photo.png", {"file": "photo.png"}, {"sha256": "../../etc/passwd"}, {"sha256": "0" * 64}])
def test_a_record_without_a_kept_copy_finds_nothing(tmp_path, record):
    assert OutputStore(tmp_path).kept_input(record) is None


def test_an_odd_suffix_is_not_carried_into_the_kept_name(tmp_path):
    strange = tmp_path / "voice.w@v"
    strange.write_bytes(b"RIFF")
    record = OutputStore(tmp_path / "outputs").keep_input(strange)
    assert record["kept"] == f"inputs/{record['sha256'][:2]}/{record['sha256']}"


def test_a_link_out_of_the_outputs_folder_is_skipped_and_the_rest_listed(tmp_path, caplog):
    store = OutputStore(tmp_path / "outputs")
    kept = store.save_image(image(), PARAMETERS)
    secret = tmp_path / "secret.png"
    image().save(secret)
    (kept.path.parent / "00007-linked.png").symlink_to(secret)
    (kept.path.parent / "00007-linked.json").write_text(json.dumps({**PARAMETERS, "file": "00007-linked.png"}))
    outside_sidecar = tmp_path / "elsewhere.json"
    outside_sidecar.write_text(json.dumps({**PARAMETERS, "file": kept.path.name}))
    (kept.path.parent / "00008-sidecar-link.json").symlink_to(outside_sidecar)
    (kept.path.parent / "00009-dangling.json").symlink_to(tmp_path / "gone.json")
    (tmp_path / "outputs" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    assert [o.path for o in store.list_outputs()] == [kept.path]
    assert "leads out of the outputs folder" in caplog.text


def test_a_sidecar_nested_too_deeply_is_skipped_and_read_as_a_clear_error(tmp_path, caplog):
    store = OutputStore(tmp_path)
    kept = store.save_image(image(), PARAMETERS)
    nested = kept.sidecar.with_name("00009-nested.json")
    nested.write_text("[" * 200_000 + "]" * 200_000)
    assert [o.path for o in store.list_outputs()] == [kept.path]
    assert "00009-nested.json is nested too deeply" in caplog.text
    with pytest.raises(ValueError, match="00009-nested.json is nested too deeply to hold a set of parameters"):
        read_parameters(nested)


def test_tidy_rewrites_a_missing_sidecar_from_the_parameters_in_a_wav_and_a_video(tmp_path):
    import numpy as np

    store = OutputStore(tmp_path)
    audio = store.save_audio(np.zeros(4410, dtype="float32"), 44100, {**PARAMETERS, "text": "hello"})
    video = store.save_video(np.zeros((2, 64, 64, 3), dtype=np.uint8), 8, ".mp4", PARAMETERS)
    expected = {saved.path: json.loads(saved.sidecar.read_text()) for saved in (audio, video)}
    for saved in (audio, video):
        saved.sidecar.unlink()
    assert store.list_outputs() == []
    assert store.tidy().sidecars_rewritten == 2
    assert {o.path: json.loads(o.sidecar.read_text()) for o in store.list_outputs()} == expected


def test_tidy_clears_partial_videos_and_leaves_files_it_cannot_read_unlisted(tmp_path, caplog):
    import numpy as np

    store = OutputStore(tmp_path)
    partial = store.write_partial_video(np.zeros((2, 64, 64, 3), dtype=np.uint8), 8, "job-3")
    kept = store.save_image(image(), PARAMETERS)
    plain = kept.path.with_name("00002-plain.png")
    image().save(plain)
    tidied = store.tidy()
    assert not partial.exists() and tidied.partial_videos == 1 and tidied.sidecars_rewritten == 0
    assert plain.is_file() and [o.path for o in store.list_outputs()] == [kept.path]
    assert "00002-plain.png has no sidecar" in caplog.text


@pytest.mark.parametrize("name", ["gone.png", "fake.gif", "fake.webp"])
def test_a_file_that_cannot_be_read_is_named_without_its_folder(tmp_path, name):
    folder = tmp_path / "gradio-hash-0123456789abcdef"
    folder.mkdir()
    if name != "gone.png":
        (folder / name).write_bytes(b"not a picture")
    with pytest.raises(ValueError, match=f"^{name} cannot be read") as error:
        read_parameters(folder / name)
    assert folder.name not in str(error.value)


def test_each_login_saves_and_lists_in_its_own_folder_and_never_sees_the_others(tmp_path):
    store = OutputStore(tmp_path)
    shared = store.save_image(image(), {**PARAMETERS, "prompt": "before logins"})
    alice = store.for_user("alice").save_image(image(), {**PARAMETERS, "prompt": "alice's"})
    bob = store.for_user("bob").save_image(image(), {**PARAMETERS, "prompt": "bob's"})
    assert alice.path.is_relative_to(tmp_path / "users" / "alice" / "images")
    assert [o.path for o in store.for_user("alice").list_outputs()] == [alice.path]
    assert [o.path for o in store.for_user("bob").list_outputs()] == [bob.path]
    assert [o.path for o in store.list_outputs()] == [shared.path], "the shared listing does not reach into users/"
    kept = store.for_user("alice").keep_input(alice.path)
    assert store.for_user("alice").kept_input(kept) is not None and store.for_user("bob").kept_input(kept) is None


@pytest.mark.parametrize("first, second", [("a.b", "a-b"), ("../bob", "bob"), ("x" * 50 + "1", "x" * 50 + "2"), ("Ω", "output")])
def test_two_logins_never_share_a_folder_and_none_leaves_users(tmp_path, first, second):
    store = OutputStore(tmp_path)
    one, two = store.for_user(first).root, store.for_user(second).root
    assert one != two and one.parent == two.parent == tmp_path / "users"


def test_tidy_also_clears_what_a_kill_left_in_each_logins_folder(tmp_path):
    import numpy as np

    alice = OutputStore(tmp_path).for_user("alice")
    partial = alice.write_partial_video(np.zeros((2, 64, 64, 3), dtype=np.uint8), 8, "job-3")
    saved = alice.save_image(image(), PARAMETERS)
    saved.sidecar.unlink()
    leftover = saved.path.with_name(f".{'0' * 32}.tmp")
    leftover.write_bytes(b"half")
    tidied = OutputStore(tmp_path).tidy()
    assert (tidied.partial_videos, tidied.sidecars_rewritten, tidied.temporary_files) == (1, 1, 1)
    assert not partial.exists() and not leftover.exists() and [o.path for o in alice.list_outputs()] == [saved.path]
