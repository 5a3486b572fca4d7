"""Tiny Depth Anything: a random-weight depth model in the layout transformers' `depth-estimation` pipeline loads
(a 4-layer DINOv2 backbone, the DPT neck and head, the DPT image processor). It stands in for an installed depth
model in the tests; its depth maps are noise."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor


def build(folder: Path, seed: int = 0) -> None:
    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8,
        out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, patch_size=8, neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8, head_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5],
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=True, ensure_multiple_of=8).save_pretrained(folder)
