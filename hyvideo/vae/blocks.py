"""ResNet, mid (frame-causal attention) and down/up blocks of the causal 3D VAE.

Reference: HV:hyvideo/vae/unet_causal_3d_blocks.py (``ResnetBlockCausal3D``, ``UNetMidBlockCausal3D``,
``DownEncoderBlockCausal3D``, ``UpDecoderBlockCausal3D``); DF autoencoder_kl_hunyuan_video.py.
Spec: /work/shared/spec/hunyuanvideo.md section 3.5.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange
from torch.utils.checkpoint import checkpoint

from hyvideo.ops.attention import attention
from hyvideo.vae.causal_conv import CausalConv3d, DownsampleCausal3D, UpsampleCausal3D

GROUP_NORM_EPS = 1e-6  # every GroupNorm of the released VAE (spec 3.1)

_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "mish": nn.Mish}


def get_activation(name: str) -> nn.Module:
    """Activation module by its config name (``act_fn``); the released VAE uses ``"silu"``.

    Raises:
        ValueError: unknown name.
    """
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown act_fn {name!r}; allowed: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def run_maybe_checkpointed(module: nn.Module, x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """``module(x)``, through non-reentrant activation checkpointing when ``enabled`` (recomputed in backward;
    without autograd it simply runs)."""
    return checkpoint(module, x, use_reentrant=False) if enabled else module(x)


class ResnetBlockCausal3D(nn.Module):
    """GN -> act -> causal conv -> GN -> act -> dropout -> causal conv, plus a (k1 conv) shortcut.

    Output = shortcut(x) + h (the released ``output_scale_factor`` is 1). No time embedding.

    Args:
        in_channels: C_in.
        out_channels: C_out; a ``conv_shortcut`` (causal k1 conv with bias) is added when it differs.
        num_groups: GroupNorm groups (eps 1e-6, affine).
        act_fn: activation name.
        dropout: dropout probability (0 in the released model).
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_groups: int, act_fn: str = "silu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.nonlinearity = get_activation(act_fn)
        self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=GROUP_NORM_EPS, affine=True)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=GROUP_NORM_EPS, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.conv_shortcut = (
            CausalConv3d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T, H, W]`` -> ``[B, C_out, T, H, W]``."""
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


def frame_causal_mask(num_frames: int, tokens_per_frame: int, device: torch.device | None = None) -> torch.Tensor:
    """Frame-block-causal mask: a query may attend to every key of its own and of earlier frames.

    Equals the released additive mask (0 where key frame <= query frame, -inf elsewhere; HV
    ``prepare_causal_attention_mask``) as a bool mask. Tokens are ordered (t, h, w), t outermost.

    Args:
        num_frames: T.
        tokens_per_frame: H * W.
        device: where to build it.

    Returns:
        ``[N, N]`` bool (True = attend), N = T * H * W; rows are queries, columns keys.
    """
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame[None, :] <= frame[:, None]


def frame_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Attention under :func:`frame_causal_mask`, computed one query frame at a time.

    Query frame t attends (unmasked) to the keys of frames 0..t, which is the masked attention of the released
    code without building the ``[N, N]`` mask or the masked half of the scores. The result is exactly
    prefix-causal in frames.

    Args:
        q: ``[B, N, N_h, D_h]`` with N = T * H * W, tokens ordered (t, h, w).
        k: ``[B, N, N_h, D_h]``.
        v: ``[B, N, N_h, D_h]``.
        num_frames: T (N must be divisible by it).

    Returns:
        ``[B, N, N_h * D_h]``; softmax scale ``1 / sqrt(D_h)``.

    Raises:
        ValueError: N is not a multiple of ``num_frames``.
    """
    n = q.shape[1]
    if num_frames <= 0 or n % num_frames:
        raise ValueError(f"token count {n} is not a multiple of num_frames={num_frames}")
    hw = n // num_frames
    # "sdpa", not "auto": flash-attn caps head_dim at 256 and the VAE's single head has D_h = 512.
    outs = [
        attention(q[:, t * hw : (t + 1) * hw], k[:, : (t + 1) * hw], v[:, : (t + 1) * hw], backend="sdpa")
        for t in range(num_frames)
    ]
    return torch.cat(outs, dim=1)


class FrameCausalAttention(nn.Module):
    """Single-head self-attention over all (t, h, w) tokens with a frame-causal mask, plus the residual.

    Matches diffusers' ``Attention(heads=1, dim_head=C, norm_num_groups=G, residual_connection=True,
    bias=True, upcast_softmax=True, _from_deprecated_attn_block=True)`` as used by the released mid block:
    GroupNorm -> to_q/to_k/to_v (Linear C->C, bias) -> attention -> to_out.0 (Linear) -> + x.

    Note: the GroupNorm pools statistics over T, so this module as a whole is not prefix-causal; only the
    attention core (:func:`frame_causal_attention`) is.

    Args:
        channels: C (head dim; 512 in the released model).
        num_groups: GroupNorm groups (eps 1e-6).
    """

    def __init__(self, channels: int, num_groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(num_groups, channels, eps=GROUP_NORM_EPS, affine=True)
        self.to_q = nn.Linear(channels, channels, bias=True)
        self.to_k = nn.Linear(channels, channels, bias=True)
        self.to_v = nn.Linear(channels, channels, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels, bias=True), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C, T, H, W]``."""
        _, _, t, h, w = x.shape
        tokens = rearrange(self.group_norm(x), "b c t h w -> b (t h w) c")
        q, k, v = (rearrange(proj(tokens), "b n c -> b n 1 c") for proj in (self.to_q, self.to_k, self.to_v))
        out = self.to_out[1](self.to_out[0](frame_causal_attention(q, k, v, num_frames=t)))
        return x + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h, w=w)


class MidBlockCausal3D(nn.Module):
    """resnets.0 -> attentions.0 -> resnets.1, all at the deepest width (``UNetMidBlockCausal3D``).

    Args:
        channels: C (``block_out_channels[-1]``).
        num_groups: GroupNorm groups.
        act_fn: activation name.
        add_attention: keep the attention (``mid_block_add_attention``); if False, ``attentions.0`` is None.
    """

    def __init__(self, channels: int, num_groups: int, act_fn: str = "silu", add_attention: bool = True) -> None:
        super().__init__()
        # Registration order (attentions first) follows the released/diffusers state-dict order.
        self.attentions = nn.ModuleList([FrameCausalAttention(channels, num_groups) if add_attention else None])
        self.resnets = nn.ModuleList(
            [ResnetBlockCausal3D(channels, channels, num_groups, act_fn) for _ in range(2)]
        )
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> same shape."""
        ckpt = self.gradient_checkpointing
        x = run_maybe_checkpointed(self.resnets[0], x, ckpt)
        if self.attentions[0] is not None:
            x = run_maybe_checkpointed(self.attentions[0], x, ckpt)
        return run_maybe_checkpointed(self.resnets[1], x, ckpt)


def resnet_stack(in_channels: int, out_channels: int, num_layers: int, num_groups: int,
                 act_fn: str = "silu") -> nn.ModuleList:
    """``num_layers`` :class:`ResnetBlockCausal3D`; the first maps C_in -> C_out, the rest keep C_out."""
    return nn.ModuleList(
        [ResnetBlockCausal3D(in_channels if i == 0 else out_channels, out_channels, num_groups, act_fn)
         for i in range(num_layers)]
    )


class _ResnetsThenResample(nn.Module):
    """Shared forward of the encoder/decoder blocks: the resnets, then ``<resampler_attr>.0`` when present."""

    resampler_attr = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = run_maybe_checkpointed(resnet, x, self.gradient_checkpointing)
        resamplers = getattr(self, self.resampler_attr)
        return resamplers[0](x) if resamplers is not None else x


class DownEncoderBlockCausal3D(_ResnetsThenResample):
    """``num_layers`` resnets (the first maps C_in -> C_out), then an optional strided causal downsampler.

    ``[B, C_in, T, H, W]`` -> ``[B, C_out, (T - 1) // s_t + 1, H / s_h, W / s_w]``.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        num_layers: resnets (``layers_per_block``).
        num_groups: GroupNorm groups.
        act_fn: activation name.
        downsample_stride: (s_t, s_h, s_w) of ``downsamplers.0``, or None for no downsampler.
    """

    resampler_attr = "downsamplers"

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, num_groups: int,
                 act_fn: str = "silu", downsample_stride: tuple[int, int, int] | None = (2, 2, 2)) -> None:
        super().__init__()
        self.resnets = resnet_stack(in_channels, out_channels, num_layers, num_groups, act_fn)
        self.downsamplers = (
            nn.ModuleList([DownsampleCausal3D(out_channels, downsample_stride)]) if downsample_stride else None
        )
        self.gradient_checkpointing = False


class UpDecoderBlockCausal3D(_ResnetsThenResample):
    """``num_layers`` resnets (the first maps C_in -> C_out), then an optional causal upsampler.

    ``[B, C_in, T, H, W]`` -> ``[B, C_out, 1 + f_t (T - 1), f_h H, f_w W]``.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        num_layers: resnets (``layers_per_block + 1`` in the decoder).
        num_groups: GroupNorm groups.
        act_fn: activation name.
        upsample_factor: (f_t, f_h, f_w) of ``upsamplers.0``, or None for no upsampler.
    """

    resampler_attr = "upsamplers"

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, num_groups: int,
                 act_fn: str = "silu", upsample_factor: tuple[int, int, int] | None = (2, 2, 2)) -> None:
        super().__init__()
        self.resnets = resnet_stack(in_channels, out_channels, num_layers, num_groups, act_fn)
        self.upsamplers = (
            nn.ModuleList([UpsampleCausal3D(out_channels, upsample_factor)]) if upsample_factor else None
        )
        self.gradient_checkpointing = False
