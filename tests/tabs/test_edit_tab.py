"""The Edit tab's reuse of saved parameters: the values go back to the right controls, in order."""

from types import SimpleNamespace

import gradio as gr
import pytest

from pipelines.catalog import Catalog
from tabs.edit import REMEMBERED_ORDER, EditTab, field_table


def edit_tab() -> EditTab:
    """The tab's reuse logic without its controls: the field table alone, over the fixed catalog."""
    return EditTab(SimpleNamespace(store=SimpleNamespace(catalog=Catalog())), field_table({}), None)


def test_an_outpaint_result_restores_its_mode_model_and_sides_and_leaves_the_size_automatic():
    used = {
        "mode": "outpaint", "model": "demo-flux-fill", "instruction": "more sea", "steps": 2, "guidance": 30.0, "image_guidance": 0.0,
        "seed": 5, "width": 288, "height": 256, "outpaint_left": 32, "outpaint_right": 0, "outpaint_top": 0, "outpaint_bottom": 0,
        "feather": 4.0, "keep_unmasked": True,
    }
    values = dict(zip(REMEMBERED_ORDER, edit_tab().values_from(used, "x.png")))
    assert (values["mode"], values["model"], values["outpaint_left"], values["feather"], values["seed"]) == ("outpaint", "demo-flux-fill", 32, 4.0, 5)
    assert (values["width"], values["height"]) == (0, 0)


def test_a_result_of_a_model_that_cannot_do_its_mode_is_refused():
    with pytest.raises(gr.Error, match="mode or model"):
        edit_tab().values_from({"mode": "instruction", "model": "demo-flux-fill"}, "x.png")
