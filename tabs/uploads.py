"""Checks on files people upload, before anything reads them in full."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from pipelines.media import MediaError, image_size
from pipelines.outputs import read_parameters

# Gradio refuses bigger uploads outright (reference audio and video included).
MAX_UPLOAD_BYTES = 200 * 1024**2
MAX_SETTINGS_FILE_BYTES = 50 * 1024**2


def parameters_from_file(path: Path) -> dict:
    """The Atelier parameters carried by an uploaded result (PNG, JSON, MP4, WAV), or a clear error."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_SETTINGS_FILE_BYTES:
        raise gr.Error(f"{path.name} is {size / 1024**2:.0f} MB; files up to {MAX_SETTINGS_FILE_BYTES // 1024**2} MB are read.")
    if path.suffix.lower() == ".png":
        try:
            image_size(path)
        except MediaError as error:
            raise gr.Error(str(error)) from None
    try:
        return read_parameters(path)
    except (OSError, ValueError) as error:
        raise gr.Error(f"No Atelier settings found in {path.name}: {error}") from None
