"""Where a model's weights are on disk, and getting them there.

Lookup order for a real model: `<models_dir>/<id>/` (a diffusers folder), then the Hugging Face cache, then
a download into `<models_dir>/<id>/` when online. Demo models are built by our own code into
`<models_dir>/demo/<id>/` the first time they are needed. Every folder is loaded the same way afterwards.
LoRAs people add themselves live apart, in the LoRA library (`loras_dir`). Upscalers (ESRGAN, SwinIR, HAT…: one
file each, read by spandrel) live in `<models_dir>/upscalers/`; the demo's tiny ones are built into
`<models_dir>/demo/upscalers/`.

A checkpoint file in `<models_dir>/` (see `checkpoint_files.py`) loads against its base model's folder: the
base's own folder when it is here, else `<models_dir>/bases/<base id>/`, which holds only what the file lacks
(configs and tokenizers; for a transformer-only file also the text encoders and VAE), downloaded when online.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipelines.catalog import Catalog, CompanionRepo, ComponentRepo, ModelSpec, family_spec
from pipelines.loading.checkpoint_files import encoder_files_for, scan_checkpoint_files
from pipelines.errors import ModelNotAvailable
from pipelines.jobs import ProgressCallback
from pipelines.lora_library import LoraLibrary
from pipelines.catalog.controls import AttachedRepo
from pipelines.tiny import BUILDER_VERSION, build_tiny_companion, build_tiny_component_repo, build_tiny_lora, build_tiny_model
from pipelines.tiny.upscalers import build_demo_upscalers
from pipelines.tiny.controlnets import build_tiny_attached

log = logging.getLogger(__name__)

_DEMO_STAMP = "atelier-demo.json"
# What a whole-pipeline checkpoint file needs from its base repo: configs and tokenizers, no weights.
_CONFIG_FILES = ("model_index.json", "*/*.json", "*/*.txt", "*/*.model")
UPSCALERS_FOLDER = "upscalers"
# The single-file formats spandrel reads (a `.pth`/`.pt`/`.ckpt` is a pickled state dict, read with weights_only).
UPSCALER_SUFFIXES = (".pth", ".safetensors", ".pt", ".ckpt")


@dataclass(frozen=True)
class ModelFiles:
    """The folder a pipeline loads from, the LoRA file fused into it, the folder of a component published in a
    repo of its own (HiDream's Llama encoder) and the checkpoint file loaded against the folder, if any. For a model
    assembled from component repos (FramePack), `folder` holds its transformer and `component_folders` the rest, by
    component repo id."""

    folder: Path
    lora_file: Path | None = None
    companion_folder: Path | None = None
    checkpoint: Path | None = None
    component_folders: dict[str, Path] = field(default_factory=dict)
    # Component name -> a GGUF encoder file from `<models_dir>/text_encoders/` read in place of the repo's encoder.
    encoder_files: dict[str, Path] = field(default_factory=dict)


class ModelStore:
    def __init__(self, models_dir: Path, offline: bool, loras_dir: Path | None = None):
        self.models_dir = Path(models_dir)
        self.offline = offline
        self.loras = LoraLibrary(loras_dir)
        # The models the app knows, with the checkpoint files of the last scan.
        self.catalog = Catalog()
        # Why each file in the models folder that is not a usable checkpoint was skipped, from the last scan.
        self.file_problems: list[str] = []

    def scan_files(self) -> list[ModelSpec]:
        """List the checkpoint files in the models folder as catalog entries (headers are read once per file version)."""
        specs, self.file_problems = scan_checkpoint_files(self.models_dir) if self.models_dir.is_dir() else ([], [])
        self.catalog.replace_files(specs)
        return specs

    # -- where things are -------------------------------------------------------------------------

    def weights_spec(self, spec: ModelSpec) -> ModelSpec:
        """The entry whose weights `spec` loads (a fast preset loads its base model's)."""
        return self.catalog.spec(spec.base) if spec.base else spec

    def local_folder(self, spec: ModelSpec) -> Path:
        weights = self.weights_spec(spec)
        if weights.demo:
            return self.models_dir / "demo" / weights.id
        return self.models_dir / weights.id

    def companion(self, spec: ModelSpec) -> CompanionRepo | None:
        """The separately published components `spec` loads: its own (FLUX.1 Redux's prior beside its base's
        weights), or those of the entry whose weights it loads (HiDream's Llama for a fast preset)."""
        return spec.companion or self.weights_spec(spec).companion

    def companion_folder(self, spec: ModelSpec) -> Path | None:
        """Where the separately published component lives: one folder, shared by every model that names it."""
        companion = self.companion(spec)
        if companion is None:
            return None
        return self.models_dir / ("demo" if spec.demo else "") / companion.id

    def component_repo_folder(self, spec: ModelSpec, source: ComponentRepo) -> Path:
        """Where a component repo lives: one folder, shared by every model that names it."""
        return self.models_dir / ("demo" if spec.demo else "") / source.id

    def _find_component_repos(self, spec: ModelSpec) -> dict[str, Path]:
        """The folders of the model's component repos that are on this machine, by repo id."""
        found = {}
        for source in self.weights_spec(spec).component_repos:
            folder = self.component_repo_folder(spec, source)
            if not (folder / source.folder_marker).is_file():
                folder = self._cached_snapshot(source)
            if folder is not None:
                found[source.id] = folder
        return found

    def base_files_folder(self, spec: ModelSpec) -> Path:
        """Where the part of a checkpoint file's base model that the file lacks is kept when the base itself is not here."""
        return self.models_dir / "bases" / spec.base

    def _base_patterns(self, spec: ModelSpec) -> tuple[str, ...]:
        family = family_spec(spec.family)
        if family.file_holds_pipeline:
            return _CONFIG_FILES
        others = [name for name in family.component_roles if name != family.denoiser]
        # The plain weights only (as `families.diffusers_files`): SD3.5 keeps fp16 duplicates of its encoders beside them.
        return _CONFIG_FILES + tuple(pattern for name in others for pattern in (f"{name}/*model.safetensors*", f"{name}/*model-*.safetensors"))

    def _find_checkpoint_base(self, spec: ModelSpec) -> ModelFiles | None:
        base = self.weights_spec(spec)
        for folder in (self.local_folder(spec), self.base_files_folder(spec)):
            if (folder / base.folder_marker).is_file():
                return ModelFiles(folder, checkpoint=Path(spec.checkpoint.path))
        folder = self._cached_snapshot(base)
        return ModelFiles(folder, checkpoint=Path(spec.checkpoint.path)) if folder is not None else None

    def lora_path(self, spec: ModelSpec) -> Path | None:
        if spec.lora is None:
            return None
        if spec.demo:
            return self.models_dir / "demo" / spec.id / spec.lora.filename
        return self.models_dir / "loras" / spec.lora.filename

    def _cached_snapshot(self, source: ModelSpec | CompanionRepo | ComponentRepo) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(source.repo, local_files_only=True, allow_patterns=list(source.allow_patterns)))
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        return folder if (folder / source.folder_marker).is_file() else None

    def _find_companion(self, spec: ModelSpec) -> Path | None:
        companion = self.companion(spec)
        folder = self.companion_folder(spec)
        if (folder / companion.folder_marker).is_file() or spec.demo:
            return folder
        return self._cached_snapshot(companion)

    def find_local(self, spec: ModelSpec) -> ModelFiles | None:
        """The files for `spec` if all of them are on this machine (or, for a demo model, can be built)."""
        if spec.checkpoint is not None:
            if not Path(spec.checkpoint.path).is_file():
                return None
            if self.weights_spec(spec).demo:
                return ModelFiles(self.local_folder(spec), checkpoint=Path(spec.checkpoint.path))
            return self._find_checkpoint_base(spec)
        weights = self.weights_spec(spec)
        folder = self.local_folder(spec)
        if not (folder / weights.folder_marker).is_file() and not weights.demo:
            folder = self._cached_snapshot(weights)
            if folder is None:
                return None
        lora = self.lora_path(spec)
        if lora is not None and not lora.is_file() and not spec.demo:
            return None
        companion = None
        if self.companion(spec) is not None:
            companion = self._find_companion(spec)
            if companion is None:
                return None
        components = self._find_component_repos(spec)
        if len(components) < len(weights.component_repos):
            return None
        return ModelFiles(folder, lora, companion, component_folders=components)

    def is_on_disk(self, spec: ModelSpec) -> bool:
        if spec.demo:
            return True
        return self.find_local(spec) is not None

    def upscaler_files(self) -> dict[str, Path]:
        """The upscaler files in `<models_dir>/upscalers/`, by file name (what the Upscale model choice shows)."""
        folder = self.models_dir / UPSCALERS_FOLDER
        found = sorted(folder.glob("*")) if folder.is_dir() else []
        return {path.name: path for path in found if path.suffix.lower() in UPSCALER_SUFFIXES and path.is_file()}

    def demo_upscaler_files(self) -> dict[str, Path]:
        """The demo's tiny random-weight upscalers, built into `<models_dir>/demo/upscalers/` the first time."""
        folder = self.models_dir / "demo" / UPSCALERS_FOLDER
        if not _demo_is_current(folder):
            _build_atomically(folder, build_demo_upscalers)
        return {path.name: path for path in sorted(folder.glob("*")) if path.suffix.lower() in UPSCALER_SUFFIXES}

    # -- getting things ---------------------------------------------------------------------------

    def ensure(self, spec: ModelSpec, on_progress: ProgressCallback | None = None) -> ModelFiles:
        """Files ready to load: built (demo), found, or downloaded; ModelNotAvailable with a way out otherwise. A GGUF
        encoder file in `<models_dir>/text_encoders/` that fits the model's encoder comes with them."""
        files = self._ensure(spec, on_progress)
        return replace(files, encoder_files=encoder_files_for(self.models_dir, spec.family, files.folder))

    def _ensure(self, spec: ModelSpec, on_progress: ProgressCallback | None) -> ModelFiles:
        if spec.demo:
            return self._ensure_demo(spec)
        if spec.checkpoint is not None:
            return self._ensure_checkpoint_base(spec, on_progress)
        found = self.find_local(spec)
        if found is not None:
            return found
        if self.offline:
            raise ModelNotAvailable(self._missing_message(spec, "the app is offline"))
        weights = self.weights_spec(spec)
        folder = self.local_folder(spec)
        if not (folder / weights.folder_marker).is_file():
            folder = self._cached_snapshot(weights) or self._download_folder(spec, weights, folder, on_progress)
        lora = self.lora_path(spec)
        if lora is not None and not lora.is_file():
            self._download_file(spec, lora)
        companion = None
        if self.companion(spec) is not None:
            companion = self._find_companion(spec)
            if companion is None:
                companion = self._download_folder(spec, self.companion(spec), self.companion_folder(spec), on_progress)
        components = self._find_component_repos(spec)
        for source in weights.component_repos:
            if source.id not in components:
                target = self.component_repo_folder(spec, source)
                components[source.id] = self._download_folder(spec, source, target, on_progress)
        return ModelFiles(folder, lora, companion, component_folders=components)

    def attached_folder(self, source: AttachedRepo) -> Path:
        """Where a ControlNet or IP-Adapter (or its image encoder) lives: one folder, shared by every model it fits."""
        return self.models_dir / ("demo" if source.demo else "") / source.id

    def ensure_attached(self, spec: ModelSpec, source: AttachedRepo, on_progress: ProgressCallback | None = None) -> Path:
        """The folder of a model attached to `spec` for a job: built for the demo base (which `ensure(spec)` built
        first), found here or in the Hugging Face cache, or downloaded; ModelNotAvailable with the command otherwise."""
        folder = self.attached_folder(source)
        if source.demo:
            if not _demo_is_current(folder):
                base_folder = self.local_folder(spec)
                _build_atomically(folder, lambda target: build_tiny_attached(source.id, target, base_folder))
            return folder
        if (folder / source.folder_marker).is_file():
            return folder
        cached = self._cached_snapshot(source)
        if cached is not None:
            return cached
        if self.offline:
            include = " ".join(f'--include "{pattern}"' for pattern in source.allow_patterns)
            raise ModelNotAvailable(
                f"{source.name} is not on this machine (the app is offline). It needs {source.size_bytes / 1e9:.1f} GB. "
                f"Get it with: hf download {source.repo} {include} --local-dir {folder}"
            )
        return self._download_folder(spec, source, folder, on_progress)

    def _ensure_checkpoint_base(self, spec: ModelSpec, on_progress: ProgressCallback | None) -> ModelFiles:
        """The checkpoint file with its base's folder: found, built (demo base) or downloaded, never at load time."""
        path = Path(spec.checkpoint.path)
        if not path.is_file():
            raise ModelNotAvailable(f"{path.name} is no longer in {self.models_dir}.")
        base = self.weights_spec(spec)
        if base.demo:
            return ModelFiles(self._ensure_demo(base).folder, checkpoint=path)
        found = self._find_checkpoint_base(spec)
        if found is not None:
            return found
        folder = self.base_files_folder(spec)
        patterns = self._base_patterns(spec)
        what = "configs and tokenizers" if family_spec(spec.family).file_holds_pipeline else "configs, text encoders and VAE"
        if self.offline:
            include = " ".join(f'--include "{pattern}"' for pattern in patterns)
            raise ModelNotAvailable(
                f"{path.name} is a {base.name} checkpoint; loading it needs the {what} of {base.repo}, which are not on "
                f"this machine (the app is offline). Get them with: hf download {base.repo} {include} --local-dir {folder}"
            )
        self._download_folder(spec, replace(base, allow_patterns=patterns), folder, on_progress)
        return ModelFiles(folder, checkpoint=path)

    def _missing_message(self, spec: ModelSpec, why: str) -> str:
        """What is missing and the command that gets each missing piece (the model, its LoRA, its companion)."""
        weights = self.weights_spec(spec)
        folder = self.local_folder(spec)
        commands = []
        def include(patterns) -> str:
            # `hf download` takes one pattern per --include; without them it fetches the whole repo (for FLUX.1 also
            # the 23.8 GB single-file checkpoint at its root).
            return " ".join(f'--include "{pattern}"' for pattern in patterns)

        if not (folder / weights.folder_marker).is_file() and self._cached_snapshot(weights) is None:
            commands.append(f"hf download {weights.repo} {include(weights.allow_patterns)} --local-dir {folder}")
        lora = self.lora_path(spec)
        if spec.lora is not None and lora is not None and not lora.is_file():
            commands.append(f"the LoRA: hf download {spec.lora.repo} {spec.lora.filename} --local-dir {lora.parent}")
        companion = self.companion(spec)
        if companion is not None and self._find_companion(spec) is None:
            commands.append(
                f"its {companion.name}, from a repo of its own: hf download {companion.repo} "
                f"{include(companion.allow_patterns)} --local-dir {self.companion_folder(spec)}"
            )
        found = self._find_component_repos(spec)
        for source in weights.component_repos:
            if source.id not in found:
                commands.append(
                    f"its {source.name}, from a repo of its own: hf download {source.repo} "
                    f"{include(source.allow_patterns)} --local-dir {self.component_repo_folder(spec, source)}"
                )
        return (
            f"{spec.name} is not on this machine ({why}). It needs {spec.weight_bytes / 1e9:.1f} GB in {self.models_dir}. "
            f"Get it with: {' ; and '.join(commands)}. Or start with --demo to try the app with demo models."
        )

    def _download_folder(
        self, spec: ModelSpec, source: ModelSpec | CompanionRepo | ComponentRepo | AttachedRepo, folder: Path,
        on_progress: ProgressCallback | None,
    ) -> Path:
        """Download `source` (the model's own repo, or its companion's) for `spec` into `folder`; returns `folder`."""
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.utils import filter_repo_objects

        # Downloads land in a side folder first so an interrupted download never looks like a model.
        partial = self.models_dir / ".downloads" / folder.relative_to(self.models_dir)
        started = time.monotonic()
        log.info("downloading %s (%s) for %s into %s", source.id, source.repo, spec.id, folder)
        try:
            # The listing first, so progress can say "bytes of total" from the start (the client's own byte total
            # grows as each file starts); its commit pins the download to the files counted.
            pinned, total_bytes, total_files = {}, None, None
            try:
                info = HfApi().model_info(source.repo, files_metadata=True)
            except Exception:  # the download below meets the same refusal or outage and reports it as the user needs
                info = None
            if info is not None:
                sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or ()}
                wanted = list(filter_repo_objects(sizes, allow_patterns=list(source.allow_patterns)))
                pinned, total_bytes, total_files = {"revision": info.sha}, sum(sizes[name] for name in wanted), len(wanted)
            snapshot_download(
                source.repo, local_dir=partial, allow_patterns=list(source.allow_patterns), **pinned,
                tqdm_class=_reporting_tqdm(on_progress, f"Downloading {source.name}", total_bytes, total_files),
            )
        except Exception as error:  # the Hub client raises many types; all mean "not available now"
            raise ModelNotAvailable(self._download_failure(spec, source, error)) from error
        if on_progress is not None:
            on_progress(1.0, f"Downloaded {source.name}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, folder)
        log.info("downloaded %s in %.0f s", source.id, time.monotonic() - started)
        return folder

    def _download_file(self, spec: ModelSpec, target: Path) -> None:
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(spec.lora.repo, spec.lora.filename, local_dir=target.parent)
        except Exception as error:  # as above
            raise ModelNotAvailable(self._download_failure(spec, self.weights_spec(spec), error)) from error

    def _download_failure(self, spec: ModelSpec, source: ModelSpec | CompanionRepo | ComponentRepo, error: Exception) -> str:
        if _is_refusal(error):
            needs = "" if source is self.weights_spec(spec) else f"{spec.name} needs {source.name}, which "
            subject = needs or f"{spec.name} "
            return (
                f"{subject}is gated on the Hugging Face Hub and the download was refused: accept its licence at "
                f"https://huggingface.co/{source.repo} and log in (hf auth login, formerly huggingface-cli login, "
                "or set HF_TOKEN), then try again."
            )
        return self._missing_message(spec, f"the download failed: {type(error).__name__}: {error}")

    def _ensure_demo(self, spec: ModelSpec) -> ModelFiles:
        weights = self.weights_spec(spec)
        folder = self.local_folder(spec)
        if not _demo_is_current(folder):
            _build_atomically(folder, lambda target: build_tiny_model(weights.family, target, task=weights.task))
        lora = self.lora_path(spec)
        if lora is not None and not _demo_is_current(lora.parent):
            _build_atomically(lora.parent, lambda target: build_tiny_lora(spec.family, target / lora.name))
        companion = self.companion_folder(spec)
        if companion is not None and not _demo_is_current(companion):
            _build_atomically(companion, lambda target: build_tiny_companion(self.companion(spec).id, target))
        components = {}
        for source in weights.component_repos:
            components[source.id] = self.component_repo_folder(spec, source)
            if not _demo_is_current(components[source.id]):
                _build_atomically(components[source.id], lambda target, repo_id=source.id: build_tiny_component_repo(repo_id, target))
        return ModelFiles(folder, lora, companion, component_folders=components)


def _is_refusal(error: Exception) -> bool:
    """The Hub said no to this account (a gated repo whose licence is not accepted, or no login): 401 or 403."""
    from huggingface_hub.errors import GatedRepoError

    response = getattr(error, "response", None)
    return isinstance(error, GatedRepoError) or getattr(response, "status_code", None) in (401, 403)


def _reporting_tqdm(
    on_progress: ProgressCallback | None, description: str, total_bytes: int | None = None, total_files: int | None = None,
):
    """A tqdm class that turns the Hub client's bars into one report: bytes done of `total_bytes`, speed, time left and
    file n of `total_files`. huggingface_hub 2.4 drives three bars through the class it is given: two byte bars
    (bytes received, bytes written) and a bar of files done; each is read for what it counts. Totals not known from
    the repo's listing are taken from the bars (whose byte total grows as files start)."""
    from tqdm.auto import tqdm

    state = {"started": time.monotonic(), "bytes": {}, "byte_totals": {}, "files": 0, "file_total": 0, "fraction": 0.0}

    def size(count: float) -> str:
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if count >= scale:
                return f"{count / scale:.1f} {unit}"
        return f"{count:.0f} B"

    def report() -> None:
        done = max(state["bytes"].values(), default=0)
        total = total_bytes if total_bytes is not None else max(state["byte_totals"].values(), default=0)
        files = total_files if total_files is not None else state["file_total"]
        # A file that is already complete on disk is skipped without byte updates; never step backwards.
        state["fraction"] = max(state["fraction"], min(done / total, 1.0) if total else 0.0)
        elapsed = time.monotonic() - state["started"]
        speed = done / elapsed if elapsed > 0 else 0.0
        text = f"{description}: {size(done)} of {size(total)}"
        if speed > 0:
            left = max(total - done, 0) / speed
            text += f", {size(speed)}/s, {left / 60:.0f} min left" if left >= 90 else f", {size(speed)}/s, {left:.0f} s left"
        text += f" (file {min(state['files'] + 1, files)} of {files})"
        on_progress(state["fraction"], text)

    class ReportingTqdm(tqdm):
        def update(self, n=1):
            result = super().update(n)
            if on_progress is None:
                return result
            if self.unit == "B":
                state["bytes"][id(self)], state["byte_totals"][id(self)] = self.n, self.total or 0
            else:
                state["files"], state["file_total"] = self.n, self.total or 0
            report()
            return result

    return ReportingTqdm


def _demo_is_current(folder: Path) -> bool:
    stamp = folder / _DEMO_STAMP
    try:
        return json.loads(stamp.read_text())["builder_version"] == BUILDER_VERSION
    except (OSError, ValueError, KeyError):
        return False


def _build_atomically(folder: Path, build) -> None:
    """Build into a temporary sibling and rename, so a crash mid-build never leaves a half model."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(folder.name + f".building-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    build(temporary)
    (temporary / _DEMO_STAMP).write_text(json.dumps({"builder_version": BUILDER_VERSION}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temporary, folder)
    log.info("built demo model in %s", folder)


@dataclass(frozen=True)
class ModelListing:
    spec: ModelSpec
    on_disk: bool
    offered: bool

    def as_dict(self) -> dict:
        spec = self.spec
        return {
            "id": spec.id,
            "name": spec.name,
            "label": spec.label,
            "family": spec.family.value,
            "task": spec.task.value,
            "repo": spec.repo,
            # A component's repo beside the model's own (HiDream's gated Llama encoder), or None.
            "companion_repo": spec.companion.repo if spec.companion else None,
            # Repos the pipeline takes components from beside its own (FramePack: HunyuanVideo's encoders and VAE).
            "component_repos": [source.repo for source in spec.component_repos],
            "base": spec.base,
            "demo": spec.demo,
            "on_disk": self.on_disk,
            "offered": self.offered,
            "weight_gb": round(spec.weight_bytes / 1e9, 2),
            "licence": spec.licence,
            "defaults": asdict(spec.defaults),
            "checkpoint": asdict(spec.checkpoint) if spec.checkpoint else None,
        }


def list_models(store: ModelStore, demo_mode: bool) -> list[ModelListing]:
    """Every catalog entry and whether the app offers it now.

    Demo models are offered in demo mode and whenever no real weights for their task are on disk; real models are offered
    unless in demo mode (one not on disk downloads on first use when online). Checkpoint files in the models folder are
    always offered: someone put them there to use them.
    """
    store.scan_files()
    models = store.catalog.all()
    on_disk = {spec.id: store.is_on_disk(spec) for spec in models}
    tasks_with_real_weights = {spec.task for spec in models if not spec.demo and not spec.checkpoint and on_disk[spec.id]}
    listings = []
    for spec in models:
        if spec.checkpoint is not None:
            offered = True
        elif spec.demo:
            offered = demo_mode or spec.task not in tasks_with_real_weights
        else:
            offered = not demo_mode
        listings.append(ModelListing(spec, on_disk[spec.id], offered))
    return listings
