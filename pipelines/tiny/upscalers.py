"""Tiny random-weight upscalers built from spandrel's own architecture classes and saved as the files people
download: an ESRGAN (RRDB) ×4 in the original ESRGAN key layout (as 4x-UltraSharp and most community models ship), and
a Real-ESRGAN Compact ×2 (SRVGGNetCompact, as realesr-general-x4v3). A `.pth` is a pickled state dict (the Compact one
wrapped in `params`, as Real-ESRGAN's releases are); a `.safetensors` holds the same tensors flat. spandrel detects
their architecture and scale from the keys and shapes, as it does for the real files."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

# The demo upscalers (file name → builder), built into `models/demo/upscalers/`.
DEMO_FILES = ("demo-esrgan-4x.pth", "demo-compact-2x.safetensors")


def build_esrgan(path: Path, seed: int = 0, scale: int = 4) -> None:
    """An ESRGAN of 8 features and one RRDB block (real ones: 64 and 23), ×`scale`."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    _save(ESRGAN(num_filters=8, num_blocks=1, scale=scale).state_dict(), Path(path), wrapper=None)


def build_compact(path: Path, seed: int = 0, scale: int = 2) -> None:
    """A Real-ESRGAN Compact of 8 features and 2 convolutions (real ones: 64 and 16 or 32), ×`scale`."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    _save(Compact(num_feat=8, num_conv=2, upscale=scale).state_dict(), Path(path), wrapper="params")


def build_demo_upscalers(folder: Path, seed: int = 0) -> None:
    """Write every demo upscaler into `folder`."""
    folder = Path(folder)
    build_esrgan(folder / DEMO_FILES[0], seed)
    build_compact(folder / DEMO_FILES[1], seed)


def _save(state: dict, path: Path, wrapper: str | None) -> None:
    state = {key: value.contiguous() for key, value in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({wrapper: state} if wrapper else state, path)
