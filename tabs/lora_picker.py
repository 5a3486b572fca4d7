"""The LoRA controls a tab shows for its model: a picker of the library's files that fit the model's family, a
Refresh button, and the `name:weight` lines a request takes (and a result records)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipelines.errors import InvalidRequest
from pipelines.lora_library import LoraChoice, parse_lora_list
from tabs.context import AppContext


def lora_text(choices) -> str:
    """LoRAs as the text field shows them: one `name:weight` per line."""
    return "\n".join(choice.as_text() for choice in choices)


def recorded_lora_text(used: dict) -> str:
    """The LoRA lines of a saved result's parameters."""
    return lora_text(LoraChoice(lora["file"], lora["weight"]) for lora in used.get("loras") or [])


def lora_names(context: AppContext, model_id: str) -> list[str]:
    """The library's LoRAs that fit `model_id`'s family."""
    spec = context.store.catalog.get(model_id)
    if spec is None:
        return []
    return [lora.name for lora in context.store.loras.for_family(spec.family)]


def chosen_loras(text: str) -> list[LoraChoice]:
    """The LoRAs in the text field; none while it is being typed into and does not parse yet."""
    try:
        return list(parse_lora_list(text))
    except InvalidRequest:
        return []


def fitting_lora_text(context: AppContext, model_id: str, text: str) -> str:
    """The lines of `text` whose LoRA fits `model_id` (the rest would only be refused after a model change)."""
    fitting = set(lora_names(context, model_id))
    return lora_text(choice for choice in chosen_loras(text) if choice.name in fitting)


@dataclass
class LoraPicker:
    files: gr.Dropdown
    refresh: gr.Button
    text: gr.Textbox


def build_lora_picker(context: AppContext, model: gr.Dropdown, default_model: str, elem_prefix: str) -> LoraPicker:
    """The controls, inside an accordion, wired so the picker and the text follow each other and the library."""
    with gr.Accordion("LoRAs", open=False):
        with gr.Row():
            files = gr.Dropdown(
                choices=lora_names(context, default_model), value=[], multiselect=True, allow_custom_value=True,
                label="LoRAs for this model", elem_id=f"{elem_prefix}-lora-files", scale=4,
            )
            refresh = gr.Button("Refresh", size="sm", scale=0, elem_id=f"{elem_prefix}-lora-refresh")
        text = gr.Textbox(
            value="", label="LoRA weights", info="one name:weight per line (1 = full strength, 0 = off, negative subtracts)", lines=2,
            placeholder="style.safetensors:0.8", elem_id=f"{elem_prefix}-loras",
        )
        gr.Markdown(f"Put `.safetensors` LoRAs in `{context.store.loras.folder}`, then press Refresh.")

    def pick(names, lines):
        """The picked files as weight lines, keeping the weights already typed for them."""
        weights = {choice.name: choice.weight for choice in chosen_loras(lines)}
        return lora_text(LoraChoice(name, weights.get(name, 1.0)) for name in names or [])

    def show_chosen(lines, model_id):
        """The picker follows the text (typed, or restored by "reuse settings"), and the library as it is now."""
        names = lora_names(context, model_id)
        return gr.update(choices=names, value=[choice.name for choice in chosen_loras(lines) if choice.name in names])

    files.input(pick, inputs=[files, text], outputs=[text], api_visibility="private")
    text.change(show_chosen, inputs=[text, model], outputs=[files], api_visibility="private")
    refresh.click(show_chosen, inputs=[text, model], outputs=[files], api_visibility="private")
    return LoraPicker(files, refresh, text)
