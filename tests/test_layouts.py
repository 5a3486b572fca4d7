"""The catalog against what the real repos hold (the layout manifests in `tests/layouts/`, one per repo).

For every real catalog entry, the companion repos (HiDream's Llama, Redux's prior, LTX-Video 0.9.7's latent upscaler)
and FramePack's component repos:
(a) the download filter (`allow_patterns`, matched by huggingface_hub's own `filter_repo_objects`) picks exactly the
    files the loader reads;
(b) the RAM check before a load counts exactly those files' weight bytes;
(c) the tiny builder's folder for the same family has the repo's shape.
The models a job attaches (`pipelines/catalog/controls.py`: ControlNets, IP-Adapters and the FLUX.1 adapter's image encoder)
are checked the same way, by what their loaders read: a diffusers model folder (`config.json` and the weights of the
variant loaded), an IP-Adapter's weight file, a transformers model folder for its image encoder (`config.json`,
`model.safetensors`); the RAM check and the memory plan count their catalog sizes, which must be those files' bytes; a
ControlNet's config names the class the catalog loads it with.

"The loader reads", from a manifest: for a diffusers repo, `model_index.json` and, in the folder of each component the
pipeline loads (those named in `model_index.json`, less those the family passes as None), its configs, tokenizer files
and the `.safetensors` weights of the variant the entry loads (no fp16 copy beside fp32, no .bin/.onnx/flax/OpenVINO);
never the root's single files, `text_encoders/` (ComfyUI copies) or other folders. For a repo whose root is one model
(FramePack's transformer, the Llama encoder, Fish Speech): the root's configs, tokenizer files and weights, not its
docs or sub-folders (Meta's `original/`).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from types import SimpleNamespace

import pytest
from huggingface_hub.utils import filter_repo_objects

from pipelines.catalog import FAMILIES, MODELS, MODELS_BY_ID
from pipelines.tiny import build_tiny_companion, build_tiny_component_repo, build_tiny_model
from tests.hub_server import load_manifest, manifest_path

_CONFIG_SUFFIXES = (".json",)
_TOKENIZER_SUFFIXES = (".txt", ".model", ".tiktoken")
_WEIGHT_SUFFIXES = (".safetensors", ".pth")
_DOCS = ("README.md", ".gitattributes", "LICENSE", "USE_POLICY.md")
_VARIANTS = ("fp16", "fp32", "bf16")


# -- the repos under test ---------------------------------------------------------------------------------------------

def _passed_as_none(spec) -> set[str]:
    """Components the family's loader passes as None (SD1.5's safety checker); Fish Speech has no diffusers family."""
    family = FAMILIES.get(spec.family)
    return {name for name, value in family.load_kwargs.items() if value is None} if family else set()


def _sources():
    """(test id, what is downloaded, its allow_patterns, the variant loaded, the components loaded or None for a root
    layout, how its tiny stand-in is built)."""
    sources, seen = [], set()
    demo_companions = {
        (c.encoder_class, c.prior_pipeline_class, c.upsampler_pipeline_class): c.id for s in MODELS if s.demo and s.companion for c in [s.companion]
    }
    for spec in MODELS:
        if spec.demo or spec.checkpoint is not None:
            continue
        if spec.repo and spec.repo not in seen:
            seen.add(spec.repo)
            sources.append(SimpleNamespace(
                id=spec.id, repo=spec.repo, patterns=spec.allow_patterns, variant=spec.variant, spec=spec,
                skipped_as_none=_passed_as_none(spec),
                build=lambda folder, spec=spec: build_tiny_model(spec.family, folder, task=spec.task),
            ))
        companion = spec.companion
        if companion is not None and companion.repo not in seen:
            seen.add(companion.repo)
            demo_id = demo_companions[(companion.encoder_class, companion.prior_pipeline_class, companion.upsampler_pipeline_class)]
            sources.append(SimpleNamespace(
                id=f"companion-{companion.id}", repo=companion.repo, patterns=companion.allow_patterns, variant=None, spec=None,
                # A latent upsampler is loaded with the model's own VAE passed in: the repo's copy is never read.
                skipped_as_none={"vae"} if companion.upsampler_pipeline_class else set(),
                build=lambda folder, demo_id=demo_id: build_tiny_companion(demo_id, folder),
            ))
        for source in spec.component_repos:
            if source.repo not in seen:
                seen.add(source.repo)
                sources.append(SimpleNamespace(
                    id=f"component-{source.id}", repo=source.repo, patterns=source.allow_patterns, variant=None, spec=None,
                    skipped_as_none=set(), components=tuple(source.components),
                    build=lambda folder, demo_id=f"demo-{source.id}": build_tiny_component_repo(demo_id, folder),
                ))
    return sources


SOURCES = _sources()
IDS = [source.id for source in SOURCES]
# Entries whose weights are another entry's repo but that read a companion of their own as well (LTX-Video 0.9.7 with its
# latent upscaler): their RAM check counts both.
_SHARED_REPO_WITH_COMPANION = [
    SimpleNamespace(id=spec.id, repo=spec.repo, patterns=spec.allow_patterns, variant=spec.variant, spec=spec, skipped_as_none=_passed_as_none(spec))
    for spec in MODELS
    if not spec.demo and spec.base and spec.repo and spec.companion is not None and spec.companion != MODELS_BY_ID[spec.base].companion
]
RAM_SOURCES = [s for s in SOURCES if s.spec is not None] + _SHARED_REPO_WITH_COMPANION


def _loaded_components(source, manifest) -> list[str] | None:
    """The component folders the loader reads, or None for a repo whose root is the model."""
    if getattr(source, "components", None):
        return list(source.components)
    if "model_index.json" not in manifest["classes"]:
        return None
    return [name for name, (library, cls) in manifest["components"].items()
            if library and cls and name not in source.skipped_as_none]


def _reads_index(source) -> bool:
    return not getattr(source, "components", None)


def _is_variant_weight_wanted(name: str, variant: str | None) -> bool:
    parts = name.split(".")
    found = [part for part in parts[1:] if part in _VARIANTS or part.split("-")[0] in _VARIANTS]
    return (variant in found[0] if found else False) if variant else not found


def loader_reads(paths, components: list[str] | None, variant: str | None, index: bool = True) -> list[str]:
    """`index=False` for a component repo: its folders are read one by one, its `model_index.json` (if any) never."""
    read = []
    for path in paths:
        parts = PurePosixPath(path).parts
        name = parts[-1]
        if components is None:
            if len(parts) != 1 or name in _DOCS or name.endswith(".md"):
                continue
        elif path == "model_index.json":
            if index:
                read.append(path)
            continue
        elif len(parts) != 2 or parts[0] not in components:
            continue
        weight = name.endswith(_WEIGHT_SUFFIXES) or name.endswith(".safetensors.index.json")
        if weight and not _is_variant_weight_wanted(name, variant):
            continue
        if weight or name.endswith(_CONFIG_SUFFIXES + _TOKENIZER_SUFFIXES):
            read.append(path)
    return sorted(read)


def _manifest_files(source) -> dict[str, int]:
    return {row["path"]: row["size"] for row in load_manifest(source.repo)["files"]}


def test_every_real_repo_has_a_layout_manifest():
    missing = [source.repo for source in SOURCES if not manifest_path(source.repo).is_file()]
    assert missing == []
    for source in SOURCES:
        manifest = load_manifest(source.repo)
        assert manifest["sources"], f"{source.repo}: say where each fact came from"
        assert manifest["repo"] == source.repo


# -- (a) the download filter ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_download_filter_picks_exactly_the_files_the_loader_reads(source):
    files = _manifest_files(source)
    manifest = load_manifest(source.repo)
    picked = sorted(filter_repo_objects(list(files), allow_patterns=list(source.patterns)))
    wanted = loader_reads(files, _loaded_components(source, manifest), source.variant, index=_reads_index(source))

    extra = sorted(set(picked) - set(wanted))
    missing = sorted(set(wanted) - set(picked))
    extra_gb = sum(files[path] for path in extra) / 1e9
    assert (extra, missing) == ([], []), (
        f"{source.repo}: the filter {source.patterns} also fetches {len(extra)} files ({extra_gb:.1f} GB) the loader never "
        f"reads: {extra[:8]}; and misses {missing[:8]}"
    )


# -- (b) the RAM check ------------------------------------------------------------------------------------------------

def _materialize(folder, files: dict[str, int], paths) -> None:
    """The downloaded folder as the filter leaves it: every file at its real (manifest) size, sparse."""
    for path in paths:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            handle.truncate(files[path])


@pytest.mark.parametrize("source", RAM_SOURCES, ids=[s.id for s in RAM_SOURCES])
def test_ram_check_counts_exactly_the_weights_the_loader_reads(source, tmp_path, monkeypatch):
    # _check_ram lives in pipelines/manager.py today; it may move to a loaders module.
    import psutil

    from pipelines.errors import NotEnoughMemory
    from pipelines.manager import _check_ram
    from pipelines.loading.model_store import ModelFiles

    spec = source.spec
    expected = 0
    folders = {}
    repos = [(source, tmp_path / spec.id)]
    if spec.companion is not None:
        repos += [(s, tmp_path / s.id.removeprefix("companion-")) for s in SOURCES if s.repo == spec.companion.repo]
    for component in spec.component_repos:
        repos += [(s, tmp_path / component.id) for s in SOURCES if s.repo == component.repo]
    for repo_source, folder in repos:
        files = _manifest_files(repo_source)
        _materialize(folder, files, filter_repo_objects(list(files), allow_patterns=list(repo_source.patterns)))
        read = loader_reads(files, _loaded_components(repo_source, load_manifest(repo_source.repo)), repo_source.variant,
                            index=_reads_index(repo_source))
        expected += sum(files[path] for path in read if path.endswith(_WEIGHT_SUFFIXES))
        folders[repo_source.id] = folder
    model_files = ModelFiles(
        folders[source.id],
        companion_folder=next((folders[s] for s in folders if s.startswith("companion-")), None),
        component_folders={s.removeprefix("component-"): f for s, f in folders.items() if s.startswith("component-")},
    )

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=expected))
    try:
        _check_ram(spec, model_files)
    except NotEnoughMemory as error:
        pytest.fail(f"{spec.id}: with exactly the {expected / 1e9:.2f} GB of weights the loader reads free, the RAM check "
                    f"refused ({error}): it counts files the loader never reads")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=expected - 1))
    try:
        _check_ram(spec, model_files)
    except NotEnoughMemory:
        return
    pytest.fail(f"{spec.id}: one byte short of the {expected / 1e9:.2f} GB of weights the loader reads, the RAM check "
                "still passed: it counts fewer bytes than the loader reads")


# -- (c) the tiny builder's shape ------------------------------------------------------------------------------------

def _tokenizer_route(names: set[str]) -> str:
    """How transformers 5 reads a tokenizer folder: as it is (a tokenizer.json, or a BPE vocab with merges), converted
    from a SentencePiece model (needs sentencepiece and protobuf), or from a tiktoken file."""
    if "tokenizer.json" in names or {"vocab.json", "merges.txt"} <= names:
        return "ready"
    if any(name.endswith(".model") for name in names):
        return "sentencepiece"
    if any(name.endswith(".tiktoken") for name in names):
        return "tiktoken"
    return "none"


def _weight_stem(name: str) -> str:
    """A weight file's name without shard numbers or precision: what says which loader reads it."""
    stem = name.split(".")[0].split("-0")[0]
    return stem + "." + name.rsplit(".", 1)[-1]


def shape(paths, classes: dict[str, str], components: list[str] | None, variant: str | None, index: bool) -> dict:
    read = loader_reads(paths, components, variant, index)
    folders = {}
    for path in read:
        parts = PurePosixPath(path).parts
        folder = parts[0] if len(parts) == 2 else "."
        folders.setdefault(folder, set()).add(parts[-1])
    return {
        "folders": sorted(folders),
        "weights": {folder: sorted({_weight_stem(n) for n in names if n.endswith(_WEIGHT_SUFFIXES)}) for folder, names in folders.items()},
        "tokenizers": {folder: _tokenizer_route(names) for folder, names in folders.items()
                       if folder.startswith("tokenizer") or (folder == "." and _tokenizer_route(names) != "none")},
        # Schedulers are left out: runners set their own, and several manifests could not confirm the repo's.
        "classes": {path: cls for path, cls in classes.items()
                    if ":" not in path and not path.startswith("scheduler/") and path in read},
    }


def _tiny_layout(folder):
    paths = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() and path.name != "atelier-demo.json")
    classes, components = {}, None
    for path in paths:
        if path.endswith(".json"):
            data = json.loads((folder / path).read_text())
            if isinstance(data, dict) and "_class_name" in data:
                classes[path] = data["_class_name"]
            if path == "model_index.json":
                components = data
    return paths, classes, components


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    built = {}

    def build(source):
        if source.id not in built:
            built[source.id] = tmp_path_factory.mktemp("tiny") / source.id
            source.build(built[source.id])
        return built[source.id]

    return build


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_tiny_builder_has_the_real_repos_shape(source, tiny_folders):
    manifest = load_manifest(source.repo)
    real_components = _loaded_components(source, manifest)
    real = shape(list(_manifest_files(source)), manifest["classes"], real_components, source.variant, _reads_index(source))

    tiny_paths, tiny_classes, tiny_index = _tiny_layout(tiny_folders(source))
    if getattr(source, "components", None):
        tiny_components = list(source.components)
    elif tiny_index is not None:
        tiny_components = [name for name, value in tiny_index.items() if isinstance(value, list) and value[0] and name not in source.skipped_as_none]
    else:
        tiny_components = None
    # The tiny models are saved without precision variants; the real entry's variant is not part of the shape.
    tiny = shape(tiny_paths, tiny_classes, tiny_components, None, _reads_index(source))
    assert tiny == real, f"{source.repo}: the tiny builder's folder differs from the real repo's"


# -- the attached models: ControlNets, IP-Adapters, image encoders ------------------------------------------------------

def _attached_sources():
    """(test id, the repo, its allow_patterns, what the loader reads there, the class its config names)."""
    from pipelines.catalog.controls import CONTROLNETS, IP_ADAPTERS

    sources = []
    for controlnet in CONTROLNETS:
        if not controlnet.source.demo:
            sources.append(SimpleNamespace(
                id=controlnet.id, source=controlnet.source, reads=[("diffusers", "", controlnet.variant)], model_class=controlnet.model_class,
            ))
    for adapter in IP_ADAPTERS:
        if adapter.source.demo:
            continue
        weight = "/".join(part for part in (adapter.subfolder, adapter.weight_name) if part)
        reads = [("file", weight, None)] + ([("transformers", adapter.encoder_subfolder, None)] if adapter.encoder_subfolder else [])
        sources.append(SimpleNamespace(id=adapter.id, source=adapter.source, reads=reads, model_class=None))
        if adapter.encoder is not None:
            sources.append(SimpleNamespace(
                id=f"{adapter.id}-encoder", source=adapter.encoder, reads=[("transformers", "", None)], model_class=None,
            ))
    return sources


ATTACHED = _attached_sources()


def _folder_model_reads(paths, folder: str, stem: str, variant: str | None) -> list[str]:
    """What `from_pretrained` reads in a model folder: its config.json and the `.safetensors` weights named `stem` of
    `variant` (shards and their index included); no .bin, no other precision, no other model's files beside them."""
    import re

    tag = re.escape(f".{variant}") if variant else ""
    weights = re.compile(rf"{re.escape(stem)}(\.safetensors\.index{tag}\.json|{tag}\.safetensors|{tag}-\d+-of-\d+\.safetensors)")
    read = []
    for path in paths:
        parent, _, name = path.rpartition("/")
        if parent == folder and (name == "config.json" or weights.fullmatch(name)):
            read.append(path)
    return read


def attached_reads(paths, reads) -> list[str]:
    read = []
    for kind, where, variant in reads:
        if kind == "file":
            read += [path for path in paths if path == where]
        elif kind == "diffusers":
            read += _folder_model_reads(paths, where, "diffusion_pytorch_model", variant)
        else:
            read += _folder_model_reads(paths, where, "model", variant)
    return sorted(read)


def test_every_attached_repo_has_a_layout_manifest():
    missing = [item.source.repo for item in ATTACHED if not manifest_path(item.source.repo).is_file()]
    assert missing == []
    for item in ATTACHED:
        manifest = load_manifest(item.source.repo)
        assert manifest["sources"] and manifest["repo"] == item.source.repo


@pytest.mark.parametrize("item", ATTACHED, ids=[item.id for item in ATTACHED])
def test_attached_download_filter_picks_exactly_the_files_the_loader_reads(item):
    files = _manifest_files(item.source)
    picked = sorted(filter_repo_objects(list(files), allow_patterns=list(item.source.allow_patterns)))
    wanted = attached_reads(list(files), item.reads)
    assert wanted, f"{item.source.repo}: the manifest has none of the files the loader reads"
    assert (sorted(set(picked) - set(wanted)), sorted(set(wanted) - set(picked))) == ([], []), (
        f"{item.source.repo}: the filter {item.source.allow_patterns} picks {picked}; the loader reads {wanted}"
    )
    assert item.source.folder_marker in wanted, "the file that says the download is complete is one the loader reads"


@pytest.mark.parametrize("item", ATTACHED, ids=[item.id for item in ATTACHED])
def test_attached_size_in_the_catalog_is_the_weights_the_loader_reads(item):
    """The RAM check and the memory plan count `size_bytes`: it must be the downloaded weights' bytes (within 1%: the
    manifests' sizes are the Hub's rounded figures)."""
    files = _manifest_files(item.source)
    weights = sum(files[path] for path in attached_reads(list(files), item.reads) if path.endswith(_WEIGHT_SUFFIXES))
    assert abs(item.source.size_bytes - weights) <= 0.01 * weights, (
        f"{item.source.repo}: the catalog counts {item.source.size_bytes / 1e9:.2f} GB; the files read hold {weights / 1e9:.2f} GB"
    )


@pytest.mark.parametrize("item", [i for i in ATTACHED if i.model_class], ids=[i.id for i in ATTACHED if i.model_class])
def test_attached_controlnet_config_names_the_class_the_catalog_loads(item):
    assert load_manifest(item.source.repo)["classes"].get("config.json") == item.model_class
