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
    parser.add_argument(
        "--auth", metavar="USER:PASS", action="append",
        help="require a login for the UI and the API; repeat for several people (each sees only their own work)",
    )
    parser.add_argument(
        "--auth-file", type=Path, metavar="FILE",
        help="logins, one USER:PASS a line (blank lines and lines starting with # are skipped); with or without --auth",
    )
    parser.add_argument("--preset", help="hardware preset id (default: detected); see presets/")
    parser.add_argument(
        "--ram-gb", type=float, default=0,
        help="the RAM (GB) memory plans are made for (default: detected); a model is refused only when no plan fits it",
    )
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
    parser.add_argument(
        "--verbose", action="store_true",
        help="log everything: debug lines, tracebacks of refused requests, every library warning",
    )
    args = parser.parse_args(argv)
    try:
        args.logins = read_logins(args.auth or [], args.auth_file)
    except ValueError as error:
        parser.error(str(error))
    return args


def read_logins(flags: list[str], file: Path | None) -> list[tuple[str, str]] | None:
    """The (user, password) pairs from `--auth` flags and an `--auth-file`; None for no login at all. ValueError
    naming the flag or the file's line for a login without a name or a colon, and for a name given twice."""
    given = [(f"--auth {flag.split(':', 1)[0]}", flag) for flag in flags]  # never the password, in a message
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as error:
            raise ValueError(f"--auth-file: cannot read {file}: {error.strerror or error}") from None
        given += [
            (f"{file.name} line {number}", line.strip()) for number, line in enumerate(lines, start=1)
            if line.strip() and not line.strip().startswith("#")
        ]
    logins: dict[str, str] = {}
    for where, text in given:
        user, colon, password = text.partition(":")
        if not colon or not user:
            raise ValueError(f"{where}: a login is USER:PASS")
        if user in logins:
            raise ValueError(f"{where}: {user!r} is given twice")
        logins[user] = password
    return list(logins.items()) or None


# Libraries that log at INFO on every request or load; their warnings still show (once each).
NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "PIL", "matplotlib", "multipart", "asyncio", "filelock", "fsspec")
# Our own loggers: their warnings are about this run and may rightly repeat.
OUR_LOGGERS = ("atelier", "pipelines", "tabs", "presets", "__main__")


class OncePerMessage(logging.Filter):
    """Lets each library warning through once per run: diffusers says "Attention backends are an experimental feature"
    at every load, Python's warnings module repeats its own at every call site. Our own lines always pass."""

    def __init__(self):
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or record.name.split(".")[0] in OUR_LOGGERS:
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def configure_logging(verbose: bool) -> None:
    """One log: our INFO lines (loads, unloads, one line per refused request), each library warning once, no loading
    bars. `verbose`: everything at DEBUG, tracebacks of refused requests included, every warning every time."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True,
    )
    logging.captureWarnings(True)
    # diffusers and transformers log through handlers of their own; send their records to ours (and its filter).
    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.set_verbosity(logging.INFO if verbose else logging.WARNING)
        if not verbose:
            # "Loading pipeline components…", "Loading weights…": a dozen bar lines per load; the page shows progress.
            library.disable_progress_bar()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(OncePerMessage())


def exposure_warnings(args: argparse.Namespace) -> list[str]:
    """What to say, in the log and at the top of the page, when others can reach the app without a login."""
    if args.logins:
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
    manager = ModelManager(store, preset, ram_bytes=int(args.ram_gb * 1e9) or hardware.ram_total_bytes)
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

    configure_logging(args.verbose)
    context = build_context(args)
    ui = build_ui(context)
    ui.launch(
        server_name="0.0.0.0" if args.listen else "127.0.0.1",
        server_port=args.port,
        share=args.share,
        # Each person logs in under their own name; with logins, each has their own outputs folder (tabs/context.py).
        auth=args.logins,
        inbrowser=not args.no_browser,
        allowed_paths=[str(context.outputs.root)],
        show_error=True,
        # Every waiting GPU job holds a worker thread while it waits its turn in our queue.
        max_threads=GPU_WAITING_LIMIT + 16,
        max_file_size=MAX_UPLOAD_BYTES,
        # FastAPI's own /openapi.json would describe every route to anyone, login or not; Gradio's (behind the
        # login) is what gradio_client reads.
        # The guard also refuses one person's files to another, and turns a client's cancel into our Stop.
        app_kwargs={
            "openapi_url": None,
            "middleware": [Middleware(AccessGuard, outputs=context.outputs, on_cancel=context.queue.cancel)],
        },
    )


if __name__ == "__main__":
    main()
