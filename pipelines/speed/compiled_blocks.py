"""Regional compilation: the denoiser's repeated blocks run through torch.compile, one graph for all of them.

Which blocks: those the model class declares in diffusers' `_repeated_blocks` (FLUX, Wan, SkyReels V2, LTX-Video,
the SD1.5/SDXL UNet); other families are refused. Each block's `forward` is compiled (`fullgraph=True`), not its
whole call as diffusers' `compile_repeated_blocks` does: the memory engine's streaming hooks on each block then
stay outside the graph and keep working. Every block shares one code object, so one graph serves them all.

Cached across runs: the compiled forwards stay on the blocks while the model is resident, so the next job with
the same shapes compiles nothing; a job with compile off runs them eagerly (`torch.compiler.set_stance`). Inductor's
on-disk cache lives under the models folder (`.cache/torch_compile`), so after a restart the first job reuses the
kernels compiled before (on a 2-core CPU, 80 s cold became 6 s for the Wan demo).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.catalog import Family, family_spec
from pipelines.errors import InvalidRequest

log = logging.getLogger(__name__)

COMPILE_CHOICES = ("off", "on")
# Set on a block whose forward this module compiled: the model stays compiled while it is resident.
_COMPILED_MARK = "_atelier_compiled_forward"


def inductor_cache_dir(models_dir: Path) -> Path:
    return Path(models_dir) / ".cache" / "torch_compile"


def repeated_blocks(denoiser: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks of the classes the model declares as repeated (empty when it declares none)."""
    names = set(getattr(denoiser, "_repeated_blocks", None) or ())
    return [module for module in denoiser.modules() if type(module).__name__ in names]


def check_compile(value: str | None, cache_method: str) -> str:
    """The compile choice of a request ("off" or "on"); InvalidRequest names what stands in the way."""
    value = value or "off"
    if value not in COMPILE_CHOICES:
        raise InvalidRequest("compile", f"{value!r} is not a choice; use {' or '.join(COMPILE_CHOICES)}")
    if value == "on" and cache_method != "none":
        # A step cache decides per step in Python, inside the first block's call, which a full graph cannot hold.
        raise InvalidRequest("compile", "compiled blocks and step caching do not combine yet; set Speed to off, or compile to off")
    return value


@dataclass
class CompileReport:
    """What compilation cost in one job: graphs Dynamo compiled during it and the seconds of its first denoiser call."""

    enabled: bool
    graphs_compiled: int = 0
    first_call_seconds: float | None = None

    def note(self) -> str:
        if not self.enabled or not self.graphs_compiled:
            return ""
        return (
            f"Compiling the transformer blocks: first run took {self.first_call_seconds:.1f} s. "
            "Later jobs of this size reuse the compiled blocks."
        )

    def record(self) -> dict:
        return {
            "compile": "on" if self.enabled else "off", "graphs_compiled": self.graphs_compiled,
            "first_call_seconds": None if self.first_call_seconds is None else round(self.first_call_seconds, 3),
        }


def _graphs_so_far() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _compile_blocks(denoiser: torch.nn.Module, cache_dir: Path) -> int:
    """Compile each repeated block's forward once per loaded model; the number newly wrapped."""
    # Inductor reads this whenever it looks for or writes a kernel (importing torch already set it to a temp folder).
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    wrapped = 0
    for block in repeated_blocks(denoiser):
        if getattr(block, _COMPILED_MARK, False):
            continue
        block.forward = torch.compile(block.forward, fullgraph=True)
        setattr(block, _COMPILED_MARK, True)
        wrapped += 1
    return wrapped


@contextmanager
def compiled_blocks(pipe, family: Family, enabled: bool, cache_dir: Path):
    """Runs one job with the denoiser's repeated blocks compiled (or, when not `enabled`, eagerly); yields a report."""
    report = CompileReport(enabled)
    if not enabled:
        with torch.compiler.set_stance("force_eager"):
            yield report
        return
    denoiser = getattr(pipe, family_spec(family).denoiser)
    if not repeated_blocks(denoiser):
        raise InvalidRequest("compile", f"{type(denoiser).__name__} declares no repeated blocks to compile; set compile to off")
    if _compile_blocks(denoiser, cache_dir):
        log.info("compiling the repeated blocks of %s (Inductor cache: %s)", type(denoiser).__name__, os.environ["TORCHINDUCTOR_CACHE_DIR"])
    graphs_before = _graphs_so_far()
    started: list[float] = []

    def before(module, args):
        if not started:
            started.append(time.monotonic())

    def after(module, args, output):
        if report.first_call_seconds is None:
            report.first_call_seconds = time.monotonic() - started[0]

    hooks = [denoiser.register_forward_pre_hook(before), denoiser.register_forward_hook(after)]
    try:
        yield report
    finally:
        for hook in hooks:
            hook.remove()
        report.graphs_compiled = _graphs_so_far() - graphs_before
