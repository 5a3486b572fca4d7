"""Checks on files people upload, before anything reads them in full.

Gradio's `gr.Image` opens an upload before the handler runs, and converts any picture that is not RGB (a 20 KB
1-bit PNG of 13000×13000 pixels costs 640–800 MB there), and a file that is no picture ends in Gradio's own
"Could not preprocess input component…". `checked_image` has the picture's header read first, to refuse a damaged, foreign or oversized file with a message naming the slot and the file."""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from pipelines.media import MediaError, image_size
from pipelines.outputs import read_parameters
from tabs.errors import shown_label

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


def checked_upload(label: str | None, file) -> None:
    """gr.Error "<slot>: <file> is not a readable image (…)" unless `file` (Gradio's FileData) states a picture of at
    most MAX_IMAGE_PIXELS in its header."""
    path = getattr(file, "path", None)
    if not path:
        return
    try:
        image_size(Path(path), name=getattr(file, "orig_name", None) or Path(path).name)
    except MediaError as error:
        text = f"{label}: {error}" if label else str(error)
        raise gr.Error(html.escape(text, quote=False)) from None


def upload_problem(component, upload: dict) -> str | None:
    """What is wrong with an unprocessed image upload (Gradio's file dict) as the slot's message, or None."""
    try:
        checked_upload(shown_label(component), SimpleNamespace(path=upload.get("path"), orig_name=upload.get("orig_name")))
    except gr.Error as error:
        return error.message
    return None


def checked_image(component, slot_name: str | None = None):
    """`component` (a `gr.Image` or `gr.ImageEditor` upload) with each upload checked from its header before Gradio
    opens, converts or decodes it: the picture, and the painter's layers. `slot_name` is how messages name the slot
    where its label does not say it in a word or two. (The component keeps its class: a subclass of a Gradio
    component makes Gradio write a stub file beside this module.)"""
    if slot_name:
        component.slot_name = slot_name
    preprocess = component.preprocess

    def checked_preprocess(payload):
        if payload is not None:
            files = [payload] if isinstance(component, gr.Image) else (
                [] if getattr(payload, "id", None) is not None else [payload.background, *(payload.layers or ()), payload.composite]
            )
            for file in files:
                checked_upload(shown_label(component), file)
        return preprocess(payload)

    component.preprocess = checked_preprocess
    return component
