"""Memory-lean inference ops for the causal 3D VAE decoder: GroupNorm -> activation -> causal conv in frame chunks.

A causal conv with temporal kernel ``k_t`` (stride 1) needs input frames ``[s - k_t + 1, e)`` for output frames
``[s, e)``, so the normalised/activated/padded/upsampled input never has to exist at full size: only the block
input, the block output and one chunk of intermediates are alive at a time (diffusers keeps 4-5 full-size
tensors: norm, activation, replicate-padded copy, conv output, residual). GroupNorm statistics are computed
first, in float32, over the whole tensor (two chunked passes), so the result equals the unchunked module up to
float rounding.

Inference only (no autograd); the modules keep their parameters and state-dict keys.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.vae.causal_conv import upsample_conv_polyphase

DEFAULT_CHUNK_FRAMES = 4


def group_norm_affine(x: torch.Tensor, norm: nn.GroupNorm, chunk: int = DEFAULT_CHUNK_FRAMES):
    """GroupNorm of ``x`` as per-(sample, channel) statistics, for :func:`norm_act` on frame chunks.

    Statistics over ``[C / G, T, H, W]`` per group in one pass: float32 ``var_mean`` per frame chunk, merged
    in float64 (Chan et al.'s parallel variance), biased variance as ``nn.GroupNorm``.

    Returns:
        ``(mean, var, weight, bias)``, each ``[B * C]`` float32, for ``F.batch_norm`` over ``[1, B * C, ...]``.
    """
    b, c, t = x.shape[:3]
    g = norm.num_groups
    count = torch.zeros((), dtype=torch.float64)
    mean = torch.zeros(b, g, dtype=torch.float64, device=x.device)
    m2 = torch.zeros_like(mean)
    for a in range(0, t, chunk):
        xc = x[:, :, a:a + chunk].float().reshape(b, g, -1)
        var_c, mean_c = torch.var_mean(xc, dim=-1, correction=0)
        n_c = float(xc.shape[-1])
        delta = mean_c.double() - mean
        tot = count + n_c
        mean = mean + delta * (n_c / tot)
        m2 = m2 + var_c.double() * n_c + delta.square() * (count * n_c / tot)
        count = tot
    rep = c // g
    mean_bc = mean.float().repeat_interleave(rep, dim=1).reshape(-1)
    var_bc = (m2 / count).float().repeat_interleave(rep, dim=1).reshape(-1)
    weight = norm.weight.float() if norm.affine else torch.ones(c, device=x.device)
    bias = norm.bias.float() if norm.affine else torch.zeros(c, device=x.device)
    return mean_bc, var_bc, weight.repeat(b), bias.repeat(b), norm.eps


def norm_act(x: torch.Tensor, stats, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``act(GroupNorm(x))`` for a frame chunk ``[B, C, t, H, W]`` with whole-tensor statistics.

    One fused normalisation pass (``F.batch_norm`` in eval form with the group statistics as running stats,
    computed in float32 and written in x's dtype like ``nn.GroupNorm``), then the activation in place.
    """
    mean, var, weight, bias, eps = stats
    b, c = x.shape[:2]
    y = F.batch_norm(x.reshape(1, b * c, *x.shape[2:]), mean, var, weight, bias, False, 0.0, eps).reshape(x.shape)
    if isinstance(act, nn.SiLU):
        return F.silu(y, inplace=True)
    return act(y)


def causal_conv_chunked(conv: nn.Module, make_input: Callable[[int, int], torch.Tensor], t_in: int,
                        chunk: int = DEFAULT_CHUNK_FRAMES, out: torch.Tensor | None = None,
                        residual: Callable[[int, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Apply a stride-1 :class:`hyvideo.vae.causal_conv.CausalConv3d` chunk by chunk over time.

    Args:
        conv: module with ``.conv`` (``nn.Conv3d``, padding 0, stride 1), ``.causal_padding``, ``.pad_mode``.
        make_input: ``(a, b) -> [B, C_in, b - a, H, W]`` input frames ``a..b-1`` (built on the fly).
        t_in: number of input (= output) frames.
        chunk: output frames per chunk.
        out: optional preallocated output ``[B, C_out, T, H, W]`` (may alias the source of ``residual``
            when chunk ``[a, b)`` of it is read before it is written).
        residual: optional ``(a, b) -> [B, C_out, b - a, H, W]`` added to each output chunk.

    Returns:
        ``[B, C_out, T, H, W]`` (contiguous), equal to ``conv(full input) (+ residual)``.
    """
    c3 = conv.conv
    if c3.stride != (1, 1, 1):
        raise ValueError(f"causal_conv_chunked needs a stride-1 conv, got stride {c3.stride}")
    pw, _, ph, _, pt, _ = conv.causal_padding
    for s in range(0, t_in, chunk):
        e = min(s + chunk, t_in)
        a = max(s - pt, 0)
        xi = make_input(a, e)
        front = pt - (s - a)  # replicate frames in front only for the first chunk(s)
        if pw or ph or front:
            xi = F.pad(xi, (pw, pw, ph, ph, front, 0), mode=conv.pad_mode)
        y = F.conv3d(xi, c3.weight, c3.bias)
        if residual is not None:
            y = y + residual(s, e)
        if out is None:
            out = y.new_empty(y.shape[0], y.shape[1], t_in, *y.shape[3:])
        out[:, :, s:e] = y
    return out


def upsampled_frames(x: torch.Tensor, a: int, b: int, factor: tuple[int, int, int]) -> torch.Tensor:
    """Frames ``a..b-1`` of the causal nearest upsampling of ``x`` ``[B, C, T, H, W]`` (frame 0 spatial only).

    Output frame 0 <- input frame 0; output frame j >= 1 <- input frame ``1 + (j - 1) // f_t``.
    """
    ft, fh, fw = factor
    idx = torch.tensor([0 if j == 0 else 1 + (j - 1) // ft for j in range(a, b)], device=x.device)
    frames = x.index_select(2, idx)
    return frames.repeat_interleave(fh, dim=3).repeat_interleave(fw, dim=4)


@torch.no_grad()
def norm_act_conv_lean(norm: nn.GroupNorm, act: nn.Module, conv: nn.Module, x: torch.Tensor,
                       chunk: int = DEFAULT_CHUNK_FRAMES) -> torch.Tensor:
    """``conv(act(norm(x)))`` (e.g. the decoder's ``conv_norm_out -> conv_act -> conv_out``) in frame chunks."""
    stats = group_norm_affine(x, norm, chunk)
    return causal_conv_chunked(conv, lambda a, b: norm_act(x[:, :, a:b], stats, act), x.shape[2], chunk)


@torch.no_grad()
def resnet_lean(block: nn.Module, x: torch.Tensor, chunk: int = DEFAULT_CHUNK_FRAMES,
                inplace: bool = False) -> torch.Tensor:
    """:class:`hyvideo.vae.blocks.ResnetBlockCausal3D` forward (eval) with at most x, h and out alive.

    ``inplace=True`` writes the output into ``x`` when the channel count is unchanged (the caller must not
    need ``x`` afterwards); then only x and h are alive.
    """
    act = block.nonlinearity
    t = x.shape[2]
    h = norm_act_conv_lean(block.norm1, act, block.conv1, x, chunk)
    affine2 = group_norm_affine(h, block.norm2, chunk)
    short = block.conv_shortcut
    if short is None:
        def residual(a, b):
            return x[:, :, a:b]
    else:
        def residual(a, b):
            return F.conv3d(x[:, :, a:b], short.conv.weight, short.conv.bias)
    out = x if inplace and short is None and x.is_contiguous() else None
    return causal_conv_chunked(block.conv2, lambda a, b: norm_act(h[:, :, a:b], affine2, act), t, chunk,
                               out=out, residual=residual)


@torch.no_grad()
def upsample_lean(up: nn.Module, x: torch.Tensor, chunk: int = DEFAULT_CHUNK_FRAMES) -> torch.Tensor:
    """:class:`hyvideo.vae.causal_conv.UpsampleCausal3D` forward without the full-size upsampled tensor.

    Factors in {1, 2} (the released model) run as the polyphase form
    (:func:`hyvideo.vae.causal_conv.upsample_conv_polyphase`: no upsampled tensor, 2.25-3.4x fewer FLOPs);
    other factors run the chunked upsample -> causal conv.
    """
    if set(up.scale_factor) <= {1, 2} and up.conv.pad_mode == "replicate":
        return upsample_conv_polyphase(x, up.conv.conv, up.scale_factor)
    ft = up.scale_factor[0]
    t_out = 1 + ft * (x.shape[2] - 1)
    return causal_conv_chunked(up.conv, lambda a, b: upsampled_frames(x, a, b, up.scale_factor), t_out, chunk)


@torch.no_grad()
def decoder_forward_lean(decoder: nn.Module, z: torch.Tensor, chunk: int = DEFAULT_CHUNK_FRAMES) -> torch.Tensor:
    """:class:`hyvideo.vae.encoder_decoder.Decoder` forward (eval) with chunked, in-place resnets and upsamplers.

    Same modules, weights and result (up to float rounding) as ``decoder(z)``; peak memory is about two
    full-resolution activations instead of five or six. z ``[B, C_z, T_z, H_z, W_z]`` (after post_quant_conv)
    -> ``[B, C, T, H, W]``.
    """
    x = causal_conv_chunked(decoder.conv_in, lambda a, b: z[:, :, a:b], z.shape[2], chunk)
    mid = decoder.mid_block
    x = resnet_lean(mid.resnets[0], x, chunk, inplace=True)
    if mid.attentions[0] is not None:
        x = mid.attentions[0](x)
    x = resnet_lean(mid.resnets[1], x, chunk, inplace=True)
    x = x.to(next(decoder.up_blocks.parameters()).dtype)
    for block in decoder.up_blocks:
        for resnet in block.resnets:
            x = resnet_lean(resnet, x, chunk, inplace=True)
        if block.upsamplers is not None:
            x = upsample_lean(block.upsamplers[0], x, chunk)
    return norm_act_conv_lean(decoder.conv_norm_out, decoder.conv_act, decoder.conv_out, x, chunk)
