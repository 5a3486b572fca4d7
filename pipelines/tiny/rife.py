"""A random-weight RIFE flownet in Practical-RIFE's file layout (`module.`-prefixed keys, full-size shapes): the test
stand-in for a downloaded `flownet.pkl`."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from pipelines.networks.rife import VERSIONS_BY_HEAD_CHANNELS, IFNet

HEAD_CHANNELS_BY_VERSION = {version: channels for channels, version in VERSIONS_BY_HEAD_CHANNELS.items()}


def build(path: Path, seed: int = 0, version: str = "4.6", key_prefix: str = "module.") -> None:
    """Write a flownet of `version` to `path`: a pickled state dict, or safetensors when the name says so. Practical-RIFE's
    keys start with `module.`; ComfyUI's copies have no prefix (`key_prefix=""`)."""
    torch.manual_seed(seed)
    net = IFNet(HEAD_CHANNELS_BY_VERSION[version])
    state = {f"{key_prefix}{key}": value.contiguous() for key, value in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
