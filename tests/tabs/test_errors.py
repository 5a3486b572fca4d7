"""How our errors read on the page and for a script: the page names a field by its control's label and escapes the
text; a script gets the API's parameter names; a bug shows its kind, never a path."""

import gradio as gr
import pytest

from pipelines.errors import InvalidRequest, UnknownModel
from tabs.errors import shown_to_user
from tabs.fields import Field, FieldTable

PAGE = gr.Request(headers={"x-gradio-user": "app"})
SCRIPT = gr.Request(headers={"x-gradio-user": "api"})


@pytest.fixture
def fields():
    with gr.Blocks():
        return FieldTable([
            Field("text", gr.Textbox(label="Text")),
            Field("max_new_tokens", gr.Number(label="Max frames per chunk (≈21.5 per second)")),
            Field("tags", gr.Textbox(label="Style: genre, instruments, mood")),
            Field("images", gr.File(visible=False)),
            Field("model", gr.Dropdown(label="Model", choices=[("Demo: tiny SD3 (random weights)", "demo-sd3"), ("Demo: tiny FLUX", "demo-flux")])),
        ])


def raising(error):
    def handler(*args, request: gr.Request = None):
        raise error

    return handler


def message(handler, request) -> str:
    with pytest.raises(gr.Error) as shown:
        handler(request=request)
    return shown.value.message


def test_the_page_names_a_field_by_its_label_and_a_script_by_its_parameter(fields):
    handler = shown_to_user(raising(InvalidRequest("max_new_tokens", "5000 is out of range; use 1 to 2048")), fields)
    assert message(handler, PAGE) == "Max frames per chunk: 5000 is out of range; use 1 to 2048"
    assert message(handler, SCRIPT) == "max_new_tokens: 5000 is out of range; use 1 to 2048"
    tags = shown_to_user(raising(InvalidRequest("tags", "must not be empty")), fields)
    assert message(tags, PAGE) == "Style: must not be empty"


def test_a_field_without_a_label_shows_its_message_alone_on_the_page(fields):
    handler = shown_to_user(raising(InvalidRequest("images", "Image 2: cat.png is not a readable image")), fields)
    assert message(handler, PAGE) == "Image 2: cat.png is not a readable image"


def test_html_in_a_message_is_escaped_on_the_page_so_a_placeholder_stays_visible(fields):
    error = InvalidRequest("text", "<img><|image_2|></img> refers to image 2, but only 1 image was given")
    handler = shown_to_user(raising(error), fields)
    assert message(handler, PAGE) == "Text: &lt;img&gt;&lt;|image_2|&gt;&lt;/img&gt; refers to image 2, but only 1 image was given"
    assert message(handler, SCRIPT) == "text: <img><|image_2|></img> refers to image 2, but only 1 image was given"


def test_an_unknown_model_lists_the_models_the_dropdown_offers_by_their_shown_names(fields):
    error = UnknownModel("nope", "an image model", ["demo-sd3", "demo-flux", "sd35-large", "flux1-dev"])
    handler = shown_to_user(raising(error), fields)
    shown = message(handler, PAGE)
    assert shown == "Model: unknown model 'nope'; choose an image model: Demo: tiny SD3 (random weights), Demo: tiny FLUX"
    assert message(handler, SCRIPT) == "model: unknown model 'nope'; choose an image model: demo-sd3, demo-flux"


def test_a_bug_shows_its_kind_and_no_path():
    handler = shown_to_user(raising(FileNotFoundError(2, "No such file or directory", "/tmp/gradio/abc123/secret.png")))
    shown = message(handler, PAGE)
    assert "FileNotFoundError" in shown and "/tmp" not in shown and "secret.png" not in shown


def test_an_edit_mode_lists_the_offered_models_of_that_mode_when_the_dropdown_shows_another_mode(fields):
    """The Edit tab's dropdown shows one mode's models; its message for another mode lists that mode's offered models
    (the demo ones in demo mode), not every model the catalog has for it."""
    from pipelines.catalog import Catalog
    from pipelines.image.edit_modes import EDIT_MODES, check_mode_inputs

    with pytest.raises(UnknownModel) as raised:
        check_mode_inputs(EDIT_MODES["inpaint"], "omnigen-v1", Catalog(), [], "", None, {})
    offered = (("FLUX.1 Fill (tiny)", "demo-flux-fill"), ("OmniGen (tiny)", "demo-omnigen"))
    handler = shown_to_user(raising(raised.value), fields, offered=offered)
    assert message(handler, SCRIPT) == "model: 'omnigen-v1' is not a model for Inpaint; choose one of: demo-flux-fill"
    assert message(handler, PAGE) == "Model: 'omnigen-v1' is not a model for Inpaint; choose one of: FLUX.1 Fill (tiny)"
