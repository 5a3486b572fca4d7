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
