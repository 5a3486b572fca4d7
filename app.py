"""Atelier: a local generative-media studio for small GPUs.

`python app.py --help` lists the flags; the launchers (launch.sh, launch.bat) pass theirs through.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
log = logging.getLogger("atelier")
# Gradio copies every file it hands to the browser into its cache (about 1,000 in an afternoon of work); every hour,
# copies older than a day go. The results themselves stay in the outputs folder, where the Outputs tab lists them.
CACHE_EXPIRY_S = (60 * 60, 24 * 60 * 60)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier: local image, video, speech and music generation.")
    parser.add_argument("--share", action="store_true", help="create a public Gradio share link (use with --auth)")
    parser.add_argument("--listen", action="store_true", help="serve on all network interfaces, not only this computer")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ATELIER_PORT", 7860)), help="port (default 7860)")
    parser.add_argument("--auth", metavar="USER:PASS", help="require this login for the UI and the API")
    parser.add_argument("--preset", help="hardware preset id (default: detected); see presets/")
    parser.add_argument("--models-dir", type=Path, default=HERE / "models", help="where model weights live")
    parser.add_argument(
        "--loras-dir", type=Path, default=HERE / "loras",
        help="the LoRA library: .safetensors LoRAs offered in the Image tab for the models they fit",
    )
    parser.add_argument("--outputs-dir", type=Path, default=HERE / "outputs", help="where results are saved")
    parser.add_argument(
        "--settings-file", type=Path, default=HERE / "settings.json",
        help="where the chosen hardware preset is remembered between starts (and, with --auth, each user's last values)",
    )
    parser.add_argument("--demo", action="store_true", help="offer only the demo models (tiny, random weights)")
    parser.add_argument("--offline", action="store_true", help="never download (also when HF_HUB_OFFLINE=1)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab at start")
    args = parser.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth takes USER:PASS")
    return args


def exposure_warnings(args: argparse.Namespace) -> list[str]:
    """What to say, in the log and at the top of the page, when others can reach the app without a login."""
    if args.auth:
        return []
    if args.share:
        return [
            "⚠️ This app is shared publicly with a Gradio link and no login: anyone with the link can use your GPU "
            "and see your outputs. Restart with --auth user:password."
        ]
    if args.listen:
        return [
            "⚠️ This app listens on every network interface with no login: anyone on your network can use your GPU, "
            "see your outputs and call its API. Restart with --auth user:password."
        ]
    return []


def build_context(args: argparse.Namespace):
    from pipelines.hardware import detect_hardware
    from pipelines.manager import ModelManager
    from pipelines.loading.model_store import ModelStore
    from pipelines.outputs import OutputStore, Tidied
    from presets import choose_preset, load_presets
    from tabs.context import AppContext
    from tabs.saved_settings import SavedSettings

    presets = load_presets()
    settings = SavedSettings(args.settings_file)
    hardware = detect_hardware()
    preset, warnings = choose_preset(presets, hardware.vram_total_bytes, hardware.ram_total_bytes)
    remembered = settings.get("preset").get("id")
    if args.preset:
        if args.preset not in presets:
            raise SystemExit(f"--preset: unknown preset {args.preset!r}; choose one of {', '.join(presets)}")
        preset = presets[args.preset]
    elif remembered in presets and presets[remembered].device == "cuda" and not hardware.gpu_name:
        log.warning("not using the preset %s chosen last time: it is for a GPU and this machine has none", remembered)
    elif remembered in presets:
        preset = presets[remembered]
        log.info("preset %s, as chosen last time", remembered)
    elif remembered is not None:
        log.warning("not using the preset %r chosen last time: there is no such preset now", remembered)
    if preset.device == "cuda" and not hardware.gpu_name:
        log.warning("--preset %s: this machine has no NVIDIA GPU; every job runs on the processor", preset.id)
    log.info(
        "hardware: %s, %.1f GB VRAM, %.1f GB RAM; preset %s",
        hardware.gpu_name or "no GPU", hardware.vram_total_bytes / 1e9, hardware.ram_total_bytes / 1e9, preset.id,
    )
    offline = args.offline or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    store = ModelStore(args.models_dir, offline=offline, loras_dir=args.loras_dir)
    manager = ModelManager(store, preset)
    warnings.extend(exposure_warnings(args))
    for warning in warnings:
        log.warning(warning)
    outputs = OutputStore(args.outputs_dir)
    tidied = outputs.tidy()
    if tidied != Tidied(0, 0, 0):
        log.info(
            "outputs: removed %d temporary files and %d partial videos left by an earlier run; rewrote %d sidecars",
            tidied.temporary_files, tidied.partial_videos, tidied.sidecars_rewritten,
        )
    return AppContext(
        manager=manager, store=store, outputs=outputs, presets=presets,
        demo_mode=args.demo, warnings=warnings, settings=settings,
    )


def build_ui(context):
    import gradio as gr

    from tabs import edit, image, music, outputs, system, tts, video

    with gr.Blocks(title="Atelier", delete_cache=CACHE_EXPIRY_S) as ui:
        gr.Markdown("# Atelier")
        for warning in context.warnings:
            gr.Markdown(warning, elem_classes=["atelier-warning"])
        if context.demo_mode:
            gr.Markdown("**Demo mode**: only demo models with random weights are offered; their outputs are noise.")
        system.build(context)
        with gr.Tabs() as tabs:
            with gr.Tab("Image", id="image"):
                image_tab = image.build(context)
            with gr.Tab("Edit", id="edit"):
                edit_tab = edit.build(context)
            with gr.Tab("Video", id="video"):
                video_tab = video.build(context)
            with gr.Tab("TTS", id="tts"):
                tts_tab = tts.build(context)
            with gr.Tab("Music", id="music"):
                music_tab = music.build(context)
            with gr.Tab("Outputs", id="outputs") as outputs_tab:
                # Each kind of result (its folder under outputs/) and the tab that takes its settings and inputs back.
                targets = {
                    kind: outputs.ReuseTarget(tab_id, tab.settings_components, tab.values_from, tab.input_components, tab.inputs_from)
                    for kind, tab_id, tab in (
                        ("images", "image", image_tab), ("edit", "edit", edit_tab), ("speech", "tts", tts_tab),
                        ("videos", "video", video_tab), ("music", "music", music_tab),
                    )
                }
                outputs.build(context, tabs, outputs_tab, targets, outputs.ImageDestination("edit", edit_tab.first_image))
        # Each browser's (or, with a login, each user's) last values, remembered by the page after a job of the tab. The
        # stores are placed here, outside the tabs, so every one is read when the page opens (a tab mounts when shown).
        for tab in (image_tab, edit_tab, tts_tab, video_tab, music_tab):
            tab.fields.memory.state.render()
            ui.load(tab.last_values, inputs=[tab.fields.memory.state], outputs=tab.settings_components, api_visibility="private")
    # Closing the REST route keeps every call on the queue, where the GPU's limit of one job applies.
    ui.queue(api_open=False, default_concurrency_limit=1)
    return ui


def main(argv: list[str] | None = None) -> None:
    # Flags first: `--help` and a mistyped flag answer before torch, diffusers and gradio are imported (seconds).
    args = parse_args(argv)
    from starlette.middleware import Middleware

    from tabs.access import AccessGuard
    from tabs.context import GPU_WAITING_LIMIT
    from tabs.uploads import MAX_UPLOAD_BYTES

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = build_context(args)
    ui = build_ui(context)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    ui.launch(
        server_name="0.0.0.0" if args.listen else "127.0.0.1",
        server_port=args.port,
        share=args.share,
        auth=auth,
        inbrowser=not args.no_browser,
        allowed_paths=[str(context.outputs.root)],
        show_error=True,
        # Every waiting GPU job holds a worker thread while it waits its turn in our queue.
        max_threads=GPU_WAITING_LIMIT + 16,
        max_file_size=MAX_UPLOAD_BYTES,
        # FastAPI's own /openapi.json would describe every route to anyone, login or not; Gradio's (behind the
        # login) is what gradio_client reads.
        app_kwargs={"openapi_url": None, "middleware": [Middleware(AccessGuard)]},
    )


if __name__ == "__main__":
    main()
