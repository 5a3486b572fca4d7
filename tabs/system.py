"""The header panel: hardware preset (choose and explain), live status, the model catalog.
Endpoints: /set_preset, /status, /models."""

from __future__ import annotations

import logging

import gradio as gr

from pipelines.loading.model_store import list_models
from tabs.context import GPU_QUEUE, AppContext
from tabs.errors import shown_to_user

log = logging.getLogger(__name__)
GIB = 1024**3
NO_GPU_WARNING = (
    "⚠️ No NVIDIA GPU was found: every job runs on the processor whatever this preset says. Its offloading and "
    "streaming only move weights from RAM to RAM here, which saves no memory and makes jobs slower; choose **CPU only**. "
    "This choice is not remembered for the next start."
)


def status_dict(context: AppContext) -> dict:
    status = context.manager.status()
    memory = status.memory
    return {
        "preset": status.preset.id,
        "preset_label": status.preset.label,
        "device": status.device,
        "resident_model": status.model_id,
        "resident_model_name": status.model_name,
        "demo": status.demo,
        "plan": status.plan.describe() if status.plan else None,
        "denoiser_plan": status.block_plan.describe() if status.block_plan else None,
        "denoiser_resident_gb": round(status.block_plan.resident_bytes / 1e9, 2) if status.block_plan else None,
        "denoiser_streamed_gb_per_step": round(status.block_plan.streamed_bytes / 1e9, 2) if status.block_plan else None,
        "storage_dtype": status.plan.dtype if status.plan else None,
        "load_seconds": round(status.load_seconds, 2) if status.load_seconds is not None else None,
        "vram_allocated_gb": round(memory.vram_allocated_bytes / GIB, 2),
        "vram_reserved_gb": round(memory.vram_reserved_bytes / GIB, 2),
        "vram_free_gb": round(memory.vram_free_bytes / GIB, 2),
        "vram_total_gb": round(memory.vram_total_bytes / GIB, 2),
        "process_ram_gb": round(memory.process_rss_bytes / GIB, 2),
        "ram_available_gb": round(memory.ram_available_bytes / GIB, 2),
        "ram_total_gb": round(memory.ram_total_bytes / GIB, 2),
        "checkpoint_file_problems": list(context.store.file_problems),
    }


def status_line(context: AppContext) -> str:
    status = status_dict(context)
    loaded = status["resident_model_name"] or "no model loaded"
    if status["denoiser_plan"]:
        loaded += (
            f" ({status['denoiser_resident_gb']:.1f} GB resident, {status['denoiser_streamed_gb_per_step']:.1f} GB streamed "
            f"per step, {status['storage_dtype']})"
        )
    vram = f"VRAM {status['vram_reserved_gb']:.1f}/{status['vram_total_gb']:.1f} GB · " if status["vram_total_gb"] else ""
    return (
        f"**{status['preset_label']}** on {status['device']} · {loaded} · {vram}RAM (this app) {status['process_ram_gb']:.1f} GB"
        f" · {queue_line(context)}"
    )


def queue_dict(context: AppContext) -> dict:
    return {
        "jobs": [view.as_dict() for view in context.queue.current()],
        "recent": [view.as_dict() for view in context.queue.history()[-20:]],
    }


def queue_table(context: AppContext) -> str:
    """The queue view: the running job with its progress, then the waiting ones in order."""
    jobs = context.queue.current()
    if not jobs:
        return "No jobs running or waiting."
    rows = ["| # | tab | job | state |", "| --- | --- | --- | --- |"]
    for job in jobs:
        state = f"running {job.progress:.0%} · {job.text}" if job.state == "running" else f"waiting ({job.position} in line)"
        rows.append(f"| {job.id} | {job.tab} | {job.summary.replace('|', '/')} | {state} |")
    return "\n".join(rows)


def queue_line(context: AppContext) -> str:
    jobs = context.queue.current()
    waiting = sum(job.state == "waiting" for job in jobs)
    running = next((job for job in jobs if job.state == "running"), None)
    if running is None:
        return "Queue: idle"
    return f"Queue: {running.tab} {running.progress:.0%} · {waiting} waiting"


def models_list(context: AppContext) -> list[dict]:
    return [listing.as_dict() for listing in list_models(context.store, context.demo_mode)]


def gpu_preset_without_gpu(context: AppContext) -> bool:
    return context.manager.preset.device == "cuda" and context.manager.execution_device() != "cuda"


def preset_explanation(context: AppContext) -> str:
    preset = context.manager.preset
    explanation = f"**{preset.label}** — {preset.description}"
    return f"{explanation}\n\n{NO_GPU_WARNING}" if gpu_preset_without_gpu(context) else explanation


def build(context: AppContext) -> None:
    with gr.Row(equal_height=True):
        explanation = gr.Markdown(lambda: preset_explanation(context), elem_id="preset-explanation")
        status_text = gr.Markdown(lambda: status_line(context), elem_id="status-line")
    with gr.Accordion("Hardware preset, status and models", open=False):
        with gr.Row():
            preset = gr.Dropdown(
                choices=[(p.label, p.id) for p in context.presets.values()],
                value=lambda: context.manager.preset.id,
                label="Hardware preset",
                elem_id="preset",
                scale=1,
            )
            with gr.Column(scale=1):
                refresh = gr.Button("Refresh", size="sm")
                unload = gr.Button("Unload model", size="sm")
        with gr.Accordion("Queue", open=True):
            queue_view = gr.Markdown(lambda: queue_table(context), elem_id="queue-view")
        with gr.Accordion("Status (JSON)", open=False):
            status_json = gr.JSON(lambda: status_dict(context), elem_id="status-json")
        with gr.Accordion("Models", open=False):
            models_json = gr.JSON(lambda: models_list(context), elem_id="models-json")
    timer = gr.Timer(3.0)

    @shown_to_user
    def set_preset(preset_id: str):
        chosen = context.presets.get(preset_id)
        if chosen is None:
            raise gr.Error(f"preset: unknown preset {preset_id!r}; choose one of {', '.join(context.presets)}")
        context.manager.set_preset(chosen)
        # The preset is the machine's, so it is kept in the settings file for every browser; a GPU preset on a machine
        # without one is a mistake not to repeat at the next start.
        if gpu_preset_without_gpu(context):
            log.warning("preset %s: %s", chosen.id, NO_GPU_WARNING)
        else:
            context.settings.update("preset", {"id": chosen.id})
        return preset_explanation(context), status_line(context)

    preset.input(set_preset, inputs=[preset], outputs=[explanation, status_text], api_name="set_preset", **GPU_QUEUE)

    def status() -> dict:
        return status_dict(context)

    def models() -> list[dict]:
        return models_list(context)

    refresh.click(status, outputs=[status_json], api_name="status")
    refresh.click(models, outputs=[models_json], api_name="models")
    timer.tick(lambda: (status_line(context), queue_table(context)), outputs=[status_text, queue_view], api_visibility="private")

    def queue() -> dict:
        """The running job and those waiting (position, progress), and the last 20 finished (start, end, outcome)."""
        return queue_dict(context)

    gr.api(queue, api_name="queue", concurrency_limit=None)

    def unload_model():
        context.manager.unload()
        return status_line(context)

    unload.click(unload_model, outputs=[status_text], api_name="unload", **GPU_QUEUE)
