"""The header panel: hardware preset (choose and explain), live status, the model catalog and whether each model
runs here. Endpoints: /set_preset, /status, /models, /plan."""

from __future__ import annotations

import logging

import gradio as gr

from pipelines.errors import InvalidRequest
from pipelines.loading.model_store import list_models
from pipelines.memory.job_plan import plan_job
from tabs.context import GPU_QUEUE, AppContext, named_api, user_of
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


def status_line(context: AppContext, viewer: str | None = None) -> str:
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
        f" · {queue_line(context, viewer)}"
    )


def queue_dict(context: AppContext, viewer: str | None = None) -> dict:
    """The queue as the login `viewer` may see it: another person's jobs only as "another job" (see JobView.seen_by)."""
    return {
        "jobs": [view.seen_by(viewer).as_dict() for view in context.queue.current()],
        "recent": [view.seen_by(viewer).as_dict() for view in context.queue.history()[-20:]],
    }


def queue_table(context: AppContext, viewer: str | None = None) -> str:
    """The queue view: the running job with its progress, then the waiting ones in order."""
    jobs = [view.seen_by(viewer) for view in context.queue.current()]
    if not jobs:
        return "No jobs running or waiting."
    rows = ["| # | tab | job | state |", "| --- | --- | --- | --- |"]
    for job in jobs:
        state = f"running {job.progress:.0%} · {job.text}" if job.state == "running" else f"waiting ({job.position} in line)"
        rows.append(f"| {job.id} | {job.tab} | {job.summary.replace('|', '/')} | {state} |")
    return "\n".join(rows)


def queue_line(context: AppContext, viewer: str | None = None) -> str:
    jobs = [view.seen_by(viewer) for view in context.queue.current()]
    waiting = sum(job.state == "waiting" for job in jobs)
    running = next((job for job in jobs if job.state == "running"), None)
    if running is None:
        return "Queue: idle"
    return f"Queue: {running.tab or running.summary} {running.progress:.0%} · {waiting} waiting"


def models_list(context: AppContext) -> list[dict]:
    return [listing.as_dict() for listing in list_models(context.store, context.demo_mode)]


def plan_dict(context: AppContext, model: str, preset: str = "", ram_gb: float = 0, width: int = 0, height: int = 0,
              frames: int = 0) -> dict:
    """Will `model` run on `preset` (empty: the active one) with `ram_gb` of RAM (0: this machine's), at this size (0:
    the model's defaults)? From the catalog's sizes, whether the weights are on disk or not."""
    spec = context.store.catalog.get(model)
    if spec is None:
        raise InvalidRequest("model", f"unknown model {model!r}")
    chosen = context.presets.get(preset) if preset else context.manager.preset
    if chosen is None:
        raise InvalidRequest("preset", f"unknown preset {preset!r}; choose one of {', '.join(context.presets)}")
    if ram_gb < 0 or width < 0 or height < 0 or frames < 0:
        raise InvalidRequest("ram_gb", "RAM, size and frames must be 0 (the default) or more")
    ram_bytes = int(ram_gb * 1e9) if ram_gb else context.manager.ram_bytes
    return plan_job(spec, chosen, ram_bytes, int(width), int(height), int(frames)).as_dict()


def plans_table(context: AppContext) -> str:
    """Every model on the active preset at its default size: fits or not, peak RAM and VRAM, where its big parts wait."""
    preset = context.manager.preset
    rows = [
        f"Plans for **{preset.label}** with {context.manager.ram_bytes / 1e9:.0f} GB of RAM, at each model's default size "
        "(`/plan` takes another size, preset or RAM).",
        "",
        "| model | runs here | peak RAM GB | peak VRAM GiB | streamed GB / step | disk GB / job | big parts: tier, storage |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in context.store.catalog.all():
        if context.demo_mode and not spec.demo:
            continue
        plan = plan_job(spec, preset, context.manager.ram_bytes)
        big = sorted(plan.components, key=lambda c: -(c.ram_gb + c.gpu_gb + c.disk_gb_per_job))[:3]
        parts = "; ".join(f"{component.name}: {component.tier}, {component.storage}" for component in big)
        verdict = "yes" if plan.fits else "no — " + plan.reason.replace("|", "/")
        rows.append(
            f"| {spec.label} | {verdict} | {plan.peak_ram_gb:.1f} | {plan.peak_vram_gb:.1f} | {plan.streamed_gb_per_step:.1f} | "
            f"{plan.disk_gb_per_job:.1f} | {parts} |"
        )
    return "\n".join(rows)


def gpu_preset_without_gpu(context: AppContext) -> bool:
    return context.manager.preset.device == "cuda" and context.manager.execution_device() != "cuda"


def preset_explanation(context: AppContext) -> str:
    preset = context.manager.preset
    explanation = f"**{preset.label}** — {preset.description}"
    return f"{explanation}\n\n{NO_GPU_WARNING}" if gpu_preset_without_gpu(context) else explanation


def build(context: AppContext) -> None:
    # Called once at build (no request, an empty queue), then on each page load with the request.
    def status_for(request: gr.Request = None) -> str:
        return status_line(context, user_of(request))

    def queue_for(request: gr.Request = None) -> str:
        return queue_table(context, user_of(request))

    with gr.Row(equal_height=True):
        explanation = gr.Markdown(preset_explanation(context), label="Preset", elem_id="preset-explanation")
        status_text = gr.Markdown(status_for(), label="Status", elem_id="status-line")
    with gr.Accordion("Hardware preset, status and models", open=False):
        with gr.Row():
            preset = gr.Dropdown(
                choices=[(p.label, p.id) for p in context.presets.values()],
                value=context.manager.preset.id,
                label="Hardware preset",
                elem_id="preset",
                scale=1,
            )
            with gr.Column(scale=1):
                refresh = gr.Button("Refresh", size="sm")
                unload = gr.Button("Unload model", size="sm")
        with gr.Accordion("Queue", open=True):
            queue_view = gr.Markdown(queue_for(), label="Queue", elem_id="queue-view")
        with gr.Accordion("Status (JSON)", open=False):
            status_json = gr.JSON(status_dict(context), label="Status", show_label=False, elem_id="status-json")
        with gr.Accordion("Models", open=False):
            plans_view = gr.Markdown(plans_table(context), label="Plans", elem_id="models-plans")
            models_json = gr.JSON(models_list(context), label="Models", show_label=False, elem_id="models-json")
    # Every second: a finished job leaves the status line within a second (at 3 s its percentage visibly lagged).
    timer = gr.Timer(1.0)

    def opened(request: gr.Request):
        return (
            preset_explanation(context), status_for(request), context.manager.preset.id, queue_for(request),
            status_dict(context), plans_table(context), models_list(context),
        )

    # Fresh values for each page that opens (not an API endpoint: /status, /models and /queue are).
    gr.on(
        None, opened, outputs=[explanation, status_text, preset, queue_view, status_json, plans_view, models_json],
        api_visibility="private",
    )

    @shown_to_user
    def set_preset(preset_id: str, request: gr.Request = None):
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
        return preset_explanation(context), status_line(context, user_of(request))

    preset.input(set_preset, inputs=[preset], outputs=[explanation, status_text], api_name="set_preset", **GPU_QUEUE).then(
        lambda: plans_table(context), outputs=[plans_view], api_visibility="private"
    )

    def status() -> dict:
        return status_dict(context)

    def models() -> list[dict]:
        return models_list(context)

    refresh.click(status, outputs=[status_json], api_name="status")
    refresh.click(models, outputs=[models_json], api_name="models")
    def refreshed(request: gr.Request) -> tuple[str, str]:
        return status_for(request), queue_for(request)

    timer.tick(refreshed, outputs=[status_text, queue_view], api_visibility="private")

    def queue(request: gr.Request = None) -> dict:
        """The running job and those waiting (position, progress), and the last 20 finished (start, end, outcome).
        With logins, another person's jobs show only as "another job"."""
        return queue_dict(context, user_of(request))

    named_api(queue, api_name="queue", returns="Queue", concurrency_limit=None)

    @shown_to_user
    def plan(model: str, preset: str = "", ram_gb: float = 0, width: int = 0, height: int = 0, frames: int = 0) -> dict:
        """Will it run here? The memory plan of one job: fits, peak RAM (GB) and VRAM (GiB), GB streamed per step, a
        lower bound on seconds per step, GB read from disk per job, the reason and notes (what a leaner plan costs), and
        each component's tier (GPU, pinned arena, pageable RAM, disk), storage dtype, stored format, GB in RAM, on the
        GPU and read from disk per job."""
        return plan_dict(context, model, preset, ram_gb, width, height, frames)

    named_api(plan, api_name="plan", returns="Plan", concurrency_limit=None)

    def unload_model(request: gr.Request):
        context.manager.unload()
        return status_line(context, user_of(request))

    unload.click(unload_model, outputs=[status_text], api_name="unload", **GPU_QUEUE)
