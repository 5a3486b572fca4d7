"""Building blocks of the Fish Speech codec (fish-speech's "modded DAC"): causal convolutions, Snake,
residual units, ConvNeXt blocks, the window-limited transformer and one vector-quantizer codebook.

Every module keeps the parameter names of the official implementation where they are already descriptive;
where the official model relies on `nn.Sequential` positions, the module says so in `official_names()`
(our child name -> the official one), which `codec.official_parameter_names` follows.
Weight norm is not part of these modules: the loader folds it into plain weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines.networks.fish_speech.layers import RMSNorm


class CausalConv1d(nn.Module):
    """Conv1d that only looks back: left padding `(k - 1) * dilation + 1 - stride`, and zeros on the right so
    that a length-L input gives ceil(L / stride) frames."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups)
        self.stride = stride
        self.left_padding = (kernel_size - 1) * dilation + 1 - stride

    def forward(self, x: Tensor) -> Tensor:
        right_padding = -x.shape[-1] % self.stride
        return self.conv(F.pad(x, (self.left_padding, right_padding)))


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d whose trailing `kernel - stride` samples (which would need future input) are cut,
    so a length-L input gives L * stride samples."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.trim = kernel_size - stride

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y[..., : y.shape[-1] - self.trim]


class Snake(nn.Module):
    """Periodic activation `x + sin(a x)^2 / a` with a learned frequency `a` per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        # The 1e-9 and the reciprocal-then-multiply order follow the reference, for identical rounding.
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    """x + conv1x1(snake(dilated_conv7(snake(x)))), all causal, so the length is kept."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.snake_in = Snake(channels)
        self.dilated_conv = CausalConv1d(channels, channels, kernel_size=7, dilation=dilation)
        self.snake_mid = Snake(channels)
        self.pointwise_conv = CausalConv1d(channels, channels, kernel_size=1)

    def official_names(self) -> dict[str, str]:
        return {"snake_in": "block.0", "dilated_conv": "block.1", "snake_mid": "block.2", "pointwise_conv": "block.3"}

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pointwise_conv(self.snake_mid(self.dilated_conv(self.snake_in(x))))


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv (k7), LayerNorm, 4x MLP with exact GELU, per-channel scale `gamma`, residual."""

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: int = 4):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-2):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def rope_table(length: int, head_dim: int, base: float, device: torch.device) -> Tensor:
    """(length, head_dim / 2, 2) cos/sin of `pos * base^(-2j / head_dim)`.

    Rounded to bfloat16 and used in float32, as the reference stores its table: the rounding is part of
    the trained model's numbers. Built on the CPU so that every device gets the same rounded values.
    """
    inverse_frequencies = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(length), inverse_frequencies)
    rotations = torch.polar(torch.ones_like(angles), angles)
    table = torch.stack([rotations.real, rotations.imag], dim=-1).to(torch.bfloat16)
    return table.to(device=device, dtype=torch.float32)


def apply_rope(x: Tensor, table: Tensor) -> Tensor:
    """Rotates the interleaved pairs (x[2j], x[2j+1]) of x (B, T, heads, head_dim) in float32."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = table[None, :, None, :, 0], table[None, :, None, :, 1]
    rotated = torch.stack(
        [pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1
    )
    return rotated.flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim: int, n_head: int, head_dim: int):
        super().__init__()
        self.n_head = n_head
        self.head_dim = head_dim
        self.wqkv = nn.Linear(dim, 3 * n_head * head_dim, bias=False)
        self.wo = nn.Linear(n_head * head_dim, dim, bias=False)

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor) -> Tensor:
        batch, length, _ = x.shape
        q, k, v = self.wqkv(x).view(batch, length, 3 * self.n_head, self.head_dim).chunk(3, dim=2)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        return self.wo(y.transpose(1, 2).reshape(batch, length, self.n_head * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward branches, each scaled by a learned LayerScale."""

    def __init__(self, dim: int, n_head: int, head_dim: int, hidden_dim: int, norm_eps: float):
        super().__init__()
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.attention = Attention(dim, n_head, head_dim)
        self.attention_layer_scale = LayerScale(dim)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.feed_forward = FeedForward(dim, hidden_dim)
        self.ffn_layer_scale = LayerScale(dim)

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor) -> Tensor:
        h = x + self.attention_layer_scale(self.attention(self.attention_norm(x), rope, mask))
        return h + self.ffn_layer_scale(self.feed_forward(self.ffn_norm(h)))


class WindowLimitedTransformer(nn.Module):
    """Causal transformer over channels-first sequences (B, C, T) in which position q attends to the keys
    max(0, q - window + 1) ... q.

    RoPE tables are built per call for the sequence length: the reference precomputes `block_size` rows and
    fails beyond them, here longer inputs simply continue the same table.
    """

    def __init__(self, input_dim: int, dim: int, n_layer: int, n_head: int, head_dim: int, hidden_dim: int,
                 window_size: int | None, rope_base: float, norm_eps: float):
        super().__init__()
        self.window_size = window_size
        self.head_dim = head_dim
        self.rope_base = rope_base
        self.input_proj = nn.Linear(input_dim, dim) if input_dim != dim else None
        self.layers = nn.ModuleList(
            TransformerBlock(dim, n_head, head_dim, hidden_dim, norm_eps) for _ in range(n_layer)
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.output_proj = nn.Linear(dim, input_dim) if input_dim != dim else None

    def attention_mask(self, length: int, device: torch.device) -> Tensor:
        positions = torch.arange(length, device=device)
        offset = positions[:, None] - positions[None, :]
        window = self.window_size or length
        return (offset >= 0) & (offset < window)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        if self.input_proj is not None:
            x = self.input_proj(x)
        length = x.shape[1]
        rope = rope_table(length, self.head_dim, self.rope_base, x.device)
        mask = self.attention_mask(length, x.device)
        for layer in self.layers:
            x = layer(x, rope, mask)
        x = self.norm(x)
        if self.output_proj is not None:
            x = self.output_proj(x)
        return x.transpose(1, 2)


class VectorQuantizer(nn.Module):
    """One codebook: project down to `codebook_dim`, pick the entry with the highest cosine similarity,
    project the (unnormalised) entry back up."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.in_proj = nn.Conv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = nn.Conv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, input_dim, T) -> codes (B, T) and their reconstruction (B, input_dim, T)."""
        latents = self.in_proj(z)
        codes = self.nearest_codes(latents)
        entries = self.codebook(codes).transpose(1, 2)
        # `latents + (entries - latents)` is the reference's straight-through estimator; in the forward pass
        # it is only a rounding step, kept so the residual handed to the next codebook is bit-identical.
        return codes, self.out_proj(latents + (entries - latents))

    def nearest_codes(self, latents: Tensor) -> Tensor:
        batch = latents.shape[0]
        vectors = F.normalize(latents.transpose(1, 2).reshape(-1, latents.shape[1]))
        codebook = F.normalize(self.codebook.weight)
        # Squared distance between unit vectors, in the reference's form (same ranking as cosine similarity).
        distances = (
            vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codebook.t() + codebook.pow(2).sum(1)[None, :]
        )
        return distances.argmin(dim=1).view(batch, -1)

    def dequantize(self, codes: Tensor) -> Tensor:
        """codes (B, T) -> (B, input_dim, T)."""
        return self.out_proj(self.codebook(codes).transpose(1, 2))
