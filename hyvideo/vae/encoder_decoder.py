"""Encoder and decoder stacks of the causal 3D VAE.

Reference: HV:hyvideo/vae/vae.py (``EncoderCausal3D``, ``DecoderCausal3D``); DF autoencoder_kl_hunyuan_video.py
(``HunyuanVideoEncoder3D``, ``HunyuanVideoDecoder3D``). Spec: /work/shared/spec/hunyuanvideo.md sections 3.3-3.4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from hyvideo.vae.blocks import (
    GROUP_NORM_EPS,
    DownEncoderBlockCausal3D,
    MidBlockCausal3D,
    UpDecoderBlockCausal3D,
    get_activation,
    run_maybe_checkpointed,
)
from hyvideo.vae.causal_conv import CausalConv3d

DOWN_BLOCK_TYPES = ("DownEncoderBlockCausal3D",)
UP_BLOCK_TYPES = ("UpDecoderBlockCausal3D",)


def _log2_ratio(ratio: int, name: str, num_blocks: int) -> int:
    """log2 of a compression ratio; raise unless it is a power of two reachable with ``num_blocks - 1`` steps."""
    n = int(math.log2(ratio)) if ratio > 0 else -1
    if ratio <= 0 or 2**n != ratio or n > num_blocks - 1:
        raise ValueError(
            f"{name}={ratio} must be a power of two <= 2**(len(block_out_channels) - 1) = {2 ** (num_blocks - 1)}"
        )
    return n


def _resample_factors(i: int, num_blocks: int, n_spatial: int, n_time: int) -> tuple[int, int, int] | None:
    """(t, h, w) factor of block i's down/upsampler, or None (released rule, spec 3.3).

    Spatial resampling in the first ``n_spatial`` blocks; temporal in blocks ``i >= num_blocks - 1 - n_time``
    except the last (for 4 blocks and ratio 4 that is blocks 1 and 2; for ratio 8, blocks 0-2).
    """
    spatial = i < n_spatial
    temporal = i >= num_blocks - 1 - n_time and i != num_blocks - 1
    if not (spatial or temporal):
        return None
    return (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)


class EncoderCausal3D(nn.Module):
    """conv_in -> down blocks -> mid block -> GN -> act -> conv_out (2 C_z channels: mean and logvar).

    Args:
        in_channels: pixel channels (3).
        latent_channels: C_z; conv_out has 2 C_z channels (double_z).
        block_out_channels: widths of the down blocks.
        layers_per_block: resnets per down block.
        num_groups: GroupNorm groups.
        act_fn: activation name.
        spatial_compression_ratio: H / H_z.
        time_compression_ratio: (T - 1) / (T_z - 1).
        mid_block_add_attention: keep the mid-block attention.
    """

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        block_out_channels: Sequence[int],
        layers_per_block: int,
        num_groups: int,
        act_fn: str,
        spatial_compression_ratio: int,
        time_compression_ratio: int,
        mid_block_add_attention: bool,
    ) -> None:
        super().__init__()
        n = len(block_out_channels)
        n_spatial = _log2_ratio(spatial_compression_ratio, "spatial_compression_ratio", n)
        n_time = _log2_ratio(time_compression_ratio, "time_compression_ratio", n)
        self.conv_in = CausalConv3d(in_channels, block_out_channels[0], kernel_size=3)
        self.down_blocks = nn.ModuleList()
        for i, out_ch in enumerate(block_out_channels):
            in_ch = block_out_channels[max(i - 1, 0)]
            stride = _resample_factors(i, n, n_spatial, n_time)
            self.down_blocks.append(
                DownEncoderBlockCausal3D(in_ch, out_ch, layers_per_block, num_groups, act_fn, stride)
            )
        self.mid_block = MidBlockCausal3D(block_out_channels[-1], num_groups, act_fn, mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(num_groups, block_out_channels[-1], eps=GROUP_NORM_EPS)
        self.conv_act = get_activation(act_fn)
        self.conv_out = CausalConv3d(block_out_channels[-1], 2 * latent_channels, kernel_size=3)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, 2 C_z, T_z, H_z, W_z]`` (before ``quant_conv``)."""
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = run_maybe_checkpointed(block, x, self.gradient_checkpointing)
        x = run_maybe_checkpointed(self.mid_block, x, self.gradient_checkpointing)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class DecoderCausal3D(nn.Module):
    """conv_in -> mid block -> up blocks (``layers_per_block + 1`` resnets each) -> GN -> act -> conv_out.

    Args:
        latent_channels: C_z.
        out_channels: pixel channels (3).
        block_out_channels: widths of the *encoder* down blocks (the decoder runs them reversed).
        layers_per_block: the encoder's; each up block has one more resnet.
        num_groups: GroupNorm groups.
        act_fn: activation name.
        spatial_compression_ratio: H / H_z.
        time_compression_ratio: (T - 1) / (T_z - 1).
        mid_block_add_attention: keep the mid-block attention.
    """

    def __init__(
        self,
        latent_channels: int,
        out_channels: int,
        block_out_channels: Sequence[int],
        layers_per_block: int,
        num_groups: int,
        act_fn: str,
        spatial_compression_ratio: int,
        time_compression_ratio: int,
        mid_block_add_attention: bool,
    ) -> None:
        super().__init__()
        n = len(block_out_channels)
        n_spatial = _log2_ratio(spatial_compression_ratio, "spatial_compression_ratio", n)
        n_time = _log2_ratio(time_compression_ratio, "time_compression_ratio", n)
        rev = list(reversed(block_out_channels))
        self.conv_in = CausalConv3d(latent_channels, rev[0], kernel_size=3)
        self.up_blocks = nn.ModuleList()  # registered before mid_block: the released state-dict order
        self.mid_block = MidBlockCausal3D(rev[0], num_groups, act_fn, mid_block_add_attention)
        for i, out_ch in enumerate(rev):
            in_ch = rev[max(i - 1, 0)]
            factor = _resample_factors(i, n, n_spatial, n_time)
            self.up_blocks.append(
                UpDecoderBlockCausal3D(in_ch, out_ch, layers_per_block + 1, num_groups, act_fn, factor)
            )
        self.conv_norm_out = nn.GroupNorm(num_groups, block_out_channels[0], eps=GROUP_NORM_EPS)
        self.conv_act = get_activation(act_fn)
        self.conv_out = CausalConv3d(block_out_channels[0], out_channels, kernel_size=3)
        self.gradient_checkpointing = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C_z, T_z, H_z, W_z]`` (after ``post_quant_conv``) -> ``[B, C, T, H, W]``."""
        x = self.conv_in(z)
        x = run_maybe_checkpointed(self.mid_block, x, self.gradient_checkpointing)
        x = x.to(next(self.up_blocks.parameters()).dtype)  # released: cast to the up blocks' dtype
        for block in self.up_blocks:
            x = run_maybe_checkpointed(block, x, self.gradient_checkpointing)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))
