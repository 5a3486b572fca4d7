"""Checks on files people upload, before anything reads them in full."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from pipelines.outputs import read_parameters

# Gradio refuses bigger uploads outright (reference audio and video included).
MAX_UPLOAD_BYTES = 200 * 1024**2
MAX_SETTINGS_FILE_BYTES = 50 * 1024**2
# A PNG's header states its size; refusing big ones before decoding stops decompression bombs.
MAX_IMAGE_PIXELS = 64 * 1024**2


def parameters_from_file(path: Path) -> dict:
    """The Atelier parameters carried by an uploaded result (PNG, JSON, MP4, WAV), or a clear error."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_SETTINGS_FILE_BYTES:
        raise gr.Error(f"{path.name} is {size / 1024**2:.0f} MB; files up to {MAX_SETTINGS_FILE_BYTES // 1024**2} MB are read.")
    if path.suffix.lower() == ".png":
        check_image_size(path)
    try:
        return read_parameters(path)
    except (OSError, ValueError) as error:
        raise gr.Error(f"No Atelier settings found in {path.name}: {error}") from None


def check_image_size(path: Path) -> None:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError) as error:
        raise gr.Error(f"{path.name} is not a readable image: {error}") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise gr.Error(
            f"{path.name} is {width}×{height} pixels; images up to {MAX_IMAGE_PIXELS // 1024**2} megapixels are accepted."
        )
