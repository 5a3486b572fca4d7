"""RIFE, the learned frame interpolator: Practical-RIFE's IFNet (versions 4.5 and 4.6) in plain torch.

How it makes the frame at time t between two frames: four flow blocks, from 1/8 of the size to full size, each refine
the optical flow from the new frame back to each of the two frames and a mask saying which of them to trust where; the
new frame is both frames warped along their flows and mixed by the mask. Any t in (0, 1) works, so ×4 asks for 0.25,
0.5 and 0.75 directly rather than halving twice.

Weights: Practical-RIFE's `flownet.pkl` (a plain state dict saved from distributed training, so every key starts with
`module.`), the same without the prefix (ComfyUI-Frame-Interpolation's `rife46.pth`), or a `.safetensors` of either.
The version is read from the shapes: the last layer of each block makes 5 maps (flow 4 + mask 1) in 4.5 and 6 in 4.6,
four times over for the pixel shuffle. Other versions are recognised by their extra parts and refused by name.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from pipelines.errors import ModelLoadFailed

log = logging.getLogger(__name__)

# (input channels, width) of the four flow blocks. The first sees both frames and the time (3 + 3 + 1); the others
# also the frames warped so far, the mask and the flow (3 + 3 + 1 + 1 + 4).
FLOW_BLOCKS = ((7, 192), (12, 128), (12, 96), (12, 64))
RESIDUAL_CONVS = 8
# Version by the output channels of a block's last layer (before the ×2 pixel shuffle, so 4 × the maps it makes).
VERSIONS_BY_HEAD_CHANNELS: Mapping[int, str] = {20: "4.5", 24: "4.6"}
# Parts of other versions' files, checked in this order, and the versions they belong to.
OTHER_VERSIONS = (
    ("block4.", "4.25 or later (five flow blocks)"),
    ("encode.", "4.7 to 4.24 (a feature encoder, `encode.*`)"),
    ("block0.lastconv.weight", "4.0 to 4.4 (blocks ending in a single transposed convolution)"),
    ("contextnet.", "3.x or 4.0 to 4.4 (a context network and a refining U-Net)"),
)
SUPPORTED = ", ".join(VERSIONS_BY_HEAD_CHANNELS.values())
# The flow blocks run at 1/8, 1/4, 1/2 and 1/1 of a working scale, and their convolutions halve the size twice more,
# so a frame is padded to a multiple of 32 / scale. Large frames estimate flow at half scale (Practical-RIFE's advice
# for 4K); up to 1080p at full scale.
FULL_SCALE_MAX_PIXELS = 1920 * 1088
BLOCK_SCALES = (8, 4, 2, 1)
SIZE_MULTIPLE_AT_FULL_SCALE = 32

PairCallback = Callable[[int, int], None]


def _conv(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))  # a learned per-channel gain on the residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)


class _FlowBlock(nn.Module):
    """One scale: frames (and the flow so far) in at 1/scale, a flow correction and a mask correction out at full size."""

    def __init__(self, in_channels: int, width: int, head_channels: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(_Residual(width) for _ in range(RESIDUAL_CONVS)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, head_channels, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            # Flow is in pixels: at a smaller size it moves fewer of them.
            x = torch.cat((x, F.interpolate(flow, scale_factor=1 / scale, mode="bilinear", align_corners=False) / scale), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def _warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Each pixel of `image` fetched from where `flow` (in pixels, x then y) points; edges repeat beyond the border.
    In float32 whatever the network's precision: half-precision sampling positions blur a large frame."""
    batch, _, height, width = flow.shape
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device)
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    flow = flow.float()
    grid = torch.stack((grid_x + flow[:, 0] / ((width - 1) / 2), grid_y + flow[:, 1] / ((height - 1) / 2)), dim=-1)
    warped = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped.to(image.dtype)


class IFNet(nn.Module):
    """The interpolation network. Frames in [0, 1], (batch, 3, H, W) with H and W multiples of 32 / scale."""

    def __init__(self, head_channels: int = 24):
        super().__init__()
        # Attribute names are the weights file's keys (block0.conv0.0.0.weight, ...).
        for index, (in_channels, width) in enumerate(FLOW_BLOCKS):
            self.add_module(f"block{index}", _FlowBlock(in_channels, width, head_channels))

    def forward(self, first: torch.Tensor, second: torch.Tensor, timestep: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The frames at `timestep` (batch, 1, 1, 1) between `first` and `second`."""
        time_map = timestep.expand(-1, 1, *first.shape[2:])
        flow = mask = None
        warped_first, warped_second = first, second
        for index, block_scale in enumerate(BLOCK_SCALES):
            block = getattr(self, f"block{index}")
            if flow is None:
                flow, mask = block(torch.cat((first, second, time_map), 1), None, block_scale / scale)
            else:
                flow_change, mask_change = block(
                    torch.cat((warped_first, warped_second, time_map, mask), 1), flow, block_scale / scale
                )
                flow, mask = flow + flow_change, mask + mask_change
            warped_first, warped_second = _warp(first, flow[:, :2]), _warp(second, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped_first * weight + warped_second * (1 - weight)


@dataclass(frozen=True)
class LoadedInterpolator:
    net: IFNet
    version: str


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = _load_pickled(path)
    except (OSError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, SafetensorError, EOFError) as error:
        # An OSError's text repeats the full path; the messages name the file only (its folder is the models folder).
        log.warning("RIFE weights %s not readable: %s", path, error)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ModelLoadFailed(f"{path.name}: not a readable weights file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelLoadFailed(f"{path.name}: holds no state dict of tensors; expected the RIFE flownet (a state dict)")
    # Saved from distributed training: every key carries `module.`.
    return {key.removeprefix("module."): value for key, value in state.items()}


def _load_pickled(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        # Files written by torch before 1.6 (the legacy format) cannot be memory-mapped; they are small enough to read.
        if "mmap" not in str(error):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _version(path: Path, state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """(version, head channels) of an IFNet state dict; ModelLoadFailed naming the file otherwise."""
    for part, versions in OTHER_VERSIONS:
        if any(key.startswith(part) for key in state):
            raise ModelLoadFailed(f"{Path(path).name}: this looks like RIFE {versions}; only RIFE {SUPPORTED} can be used")
    head = state.get("block0.lastconv.0.weight")
    if head is None or head.dim() != 4 or head.shape[1] not in VERSIONS_BY_HEAD_CHANNELS:
        example = next(iter(state), "none")
        outputs = " or ".join(map(str, VERSIONS_BY_HEAD_CHANNELS))
        raise ModelLoadFailed(
            f"{Path(path).name}: not a RIFE {SUPPORTED} flownet (no block0.lastconv.0.weight with {outputs} outputs; first key: "
            f"{example}). Use Practical-RIFE's flownet.pkl of version 4.6."
        )
    return VERSIONS_BY_HEAD_CHANNELS[head.shape[1]], head.shape[1]


def weights_version(path: Path) -> str:
    """The RIFE version of the weights file at `path`; ModelLoadFailed naming the file when it is no usable flownet."""
    return _version(path, _read_state_dict(Path(path)))[0]


def load_interpolator(path: Path, device: str = "cpu") -> LoadedInterpolator:
    """The network with the file's weights, every key matched, on `device`: float32 on the CPU, float16 on a GPU
    (as Practical-RIFE's own fp16 mode)."""
    path = Path(path)
    state = _read_state_dict(path)
    version, head_channels = _version(path, state)
    net = IFNet(head_channels)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        reason = " ".join(str(error).split())  # torch lists the keys on several lines
        raise ModelLoadFailed(f"{path.name}: the RIFE {version} weights do not fit the network ({reason})") from None
    dtype = torch.float32 if device == "cpu" else torch.float16
    log.info("RIFE %s loaded from %s on %s", version, path, device)
    return LoadedInterpolator(net.to(device=device, dtype=dtype).eval(), version)


def working_scale(width: int, height: int) -> float:
    return 1.0 if width * height <= FULL_SCALE_MAX_PIXELS else 0.5


def interpolate_frames(
    interpolator: LoadedInterpolator, frames: np.ndarray, factor: int, on_pair: PairCallback | None = None
) -> np.ndarray:
    """(n−1)·factor + 1 frames (uint8, n × H × W × 3): the originals unchanged, with factor−1 frames made by the network
    at 1/factor, 2/factor, ... between each pair of neighbours. `on_pair(done, total)` hears after each pair (and may
    raise to stop)."""
    if factor == 1 or len(frames) < 2:
        return frames
    net = interpolator.net
    parameter = next(net.parameters())
    height, width = frames.shape[1:3]
    scale = working_scale(width, height)
    multiple = round(SIZE_MULTIPLE_AT_FULL_SCALE / scale)
    # Right and bottom, cropped off again below. Edge pixels repeated rather than black: flow that points past the
    # frame then fetches the edge, not a dark band.
    padding = (0, -width % multiple, 0, -height % multiple)
    timesteps = torch.arange(1, factor, dtype=parameter.dtype, device=parameter.device).view(-1, 1, 1, 1) / factor

    def as_input(frame: np.ndarray) -> torch.Tensor:
        picture = torch.from_numpy(frame).to(parameter.device).permute(2, 0, 1)[None].to(parameter.dtype) / 255
        return F.pad(picture, padding, mode="replicate").expand(factor - 1, -1, -1, -1)

    made = [frames[0]]
    pairs = len(frames) - 1
    with torch.inference_mode():
        following = as_input(frames[0])
        for index in range(pairs):
            current, following = following, as_input(frames[index + 1])
            between = net(current, following, timesteps, scale)[:, :, :height, :width]
            between = (between.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            made.extend(between)
            made.append(frames[index + 1])
            if on_pair is not None:
                on_pair(index + 1, pairs)
    return np.stack(made)
