"""Causal 3D convolution and the causal down/upsamplers of the HunyuanVideo VAE.

Reference: HV:hyvideo/vae/unet_causal_3d_blocks.py (``CausalConv3d``, ``DownsampleCausal3D``,
``UpsampleCausal3D``); DF:src/diffusers/models/autoencoders/autoencoder_kl_hunyuan_video.py
(``HunyuanVideoCausalConv3d``, ...). Spec: /work/shared/spec/hunyuanvideo.md sections 3.2 and 3.4.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _triple(value: int | tuple[int, int, int], name: str) -> tuple[int, int, int]:
    """Return ``value`` as a (t, h, w) triple; raise if it is not one int or three ints."""
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name} must be an int or a (t, h, w) triple, got {value}")
    return value  # type: ignore[return-value]


class CausalConv3d(nn.Module):
    """Conv3d that sees only the current and earlier frames (replicate padding in all three dims).

    Before a plain ``nn.Conv3d`` with ``padding=0``, the input is padded with ``mode="replicate"`` by
    ``k_w // 2`` on both sides of W, ``k_h // 2`` on both sides of H, and ``k_t - 1`` frames *in front* of T
    (none behind), so output frame ``t`` depends on input frames ``<= t * stride_t`` only. Spatial padding is
    replicate too, not zeros (spec 3.2). A kernel-1 conv gets no padding at all.

    The weight lives under an inner ``.conv`` so the released keys (``conv_in.conv.weight``) load as they are.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: int or (k_t, k_h, k_w).
        stride: int or (s_t, s_h, s_w). With ``s_t = 2`` and ``k_t = 3``: T -> (T - 1) // 2 + 1.
        bias: add a bias.
        pad_mode: ``F.pad`` mode; the released model uses ``"replicate"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        bias: bool = True,
        pad_mode: str = "replicate",
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size, "kernel_size")
        self.pad_mode = pad_mode
        # F.pad order is last dim first: (W_left, W_right, H_top, H_bottom, T_front, T_back).
        self.causal_padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), _triple(stride, "stride"), 0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T, H, W]`` -> ``[B, C_out, T', H', W']``; with stride 1, ``T' = T``, ``H' = H``, ``W' = W``."""
        return self.conv(F.pad(x, self.causal_padding, mode=self.pad_mode))


class DownsampleCausal3D(nn.Module):
    """Strided causal conv (k3): stride (1, 2, 2) halves H and W, (2, 2, 2) also maps T -> (T - 1) // 2 + 1.

    Args:
        channels: input and output channels (the released encoder keeps them equal).
        stride: (s_t, s_h, s_w).
    """

    def __init__(self, channels: int, stride: tuple[int, int, int] = (2, 2, 2)) -> None:
        super().__init__()
        self.stride = tuple(stride)
        self.conv = CausalConv3d(channels, channels, kernel_size=3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C, (T - 1) // s_t + 1, H / s_h, W / s_w]`` (H, W even)."""
        return self.conv(x)


class UpsampleCausal3D(nn.Module):
    """Nearest upsampling with a special first frame, then a causal conv (k3).

    Frame 0 is upsampled spatially only; frames 1..T-1 by the full (f_t, f_h, f_w) factor, so with
    ``f_t = 2``: T -> 1 + 2 (T - 1) (e.g. 9 -> 17 -> 33) (spec 3.4). Nearest interpolation copies values, so it
    is exact in any dtype (the released code upcasts bf16 only because old PyTorch lacked the bf16 kernel).

    Args:
        channels: input and output channels.
        scale_factor: (f_t, f_h, f_w) integer factors.
    """

    def __init__(self, channels: int, scale_factor: tuple[int, int, int] = (2, 2, 2)) -> None:
        super().__init__()
        self.scale_factor = tuple(int(f) for f in scale_factor)
        self.conv = CausalConv3d(channels, channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C, 1 + f_t (T - 1), f_h H, f_w W]``."""
        first = F.interpolate(x[:, :, :1], scale_factor=(1, *self.scale_factor[1:]), mode="nearest")
        if x.shape[2] > 1:
            rest = F.interpolate(x[:, :, 1:], scale_factor=self.scale_factor, mode="nearest")
            first = torch.cat((first, rest), dim=2)
        return self.conv(first)
