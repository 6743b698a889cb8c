"""Faster forms of the VAE's causal convs, applied from outside by class swap (same parameters and keys).

All are the same linear maps as :class:`hyvideo.vae.causal_conv.CausalConv3d` / ``UpsampleCausal3D`` in plain
PyTorch (portable, any device), differing only in float summation order:

- a 1x1x1 conv as one GEMM per sample (:func:`pointwise_conv3d`);
- a k_t = 3 causal conv over a short clip without convolving the replicated front frames
  (:func:`causal_conv_folded_front`);
- the nearest x2 upsampler + conv in polyphase form, without building the upsampled tensor
  (:func:`upsample_conv_polyphase`, 2.25-3.4x fewer FLOPs).

:func:`use_fast_convs` swaps the classes of a VAE's modules; the VAE parity tests bound the difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.accel.stamp import weight_stamp
from hyvideo.vae.causal_conv import CausalConv3d, UpsampleCausal3D


class FastCausalConv3d(CausalConv3d):
    """:class:`CausalConv3d` whose 1x1x1 convs run as one GEMM and short k_t = 3 convs fold their front frames."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if (c.kernel_size[0] == 3 and c.stride[0] == 1 and self.pad_mode == "replicate"
                and x.shape[2] <= FOLD_FRONT_MAX_FRAMES):
            return causal_conv_folded_front(x, c, self.causal_padding[:4])
        if c.kernel_size == (1, 1, 1) and c.stride == (1, 1, 1) and c.groups == 1:
            return pointwise_conv3d(x, c.weight, c.bias)
        return super().forward(x)


class PolyphaseUpsampleCausal3D(UpsampleCausal3D):
    """:class:`UpsampleCausal3D` as :func:`upsample_conv_polyphase` (factors 1 or 2, replicate padding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if set(self.scale_factor) <= {1, 2} and self.conv.pad_mode == "replicate":
            return upsample_conv_polyphase(x, self.conv.conv, self.scale_factor)
        return super().forward(x)


def use_fast_convs(vae: nn.Module) -> int:
    """Swap every ``CausalConv3d`` / ``UpsampleCausal3D`` of ``vae`` for its fast form (in place); returns the count."""
    n = 0
    for m in vae.modules():
        if type(m) is CausalConv3d:
            m.__class__, n = FastCausalConv3d, n + 1
        elif type(m) is UpsampleCausal3D:
            m.__class__, n = PolyphaseUpsampleCausal3D, n + 1
    return n


def pointwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1x1, stride-1 conv as one GEMM per sample: ``weight[C_out, C_in] @ x[C_in, T H W] (+ bias)``.

    x ``[B, C_in, T, H, W]`` (frames of a larger chunk are fine: ``flatten`` keeps it a view) ->
    ``[B, C_out, T, H, W]``, contiguous. Same linear map as ``F.conv3d``; on CPU in bf16 2.7x faster than
    oneDNN's 1x1x1 conv (256 -> 128 channels, one 256 x 256 frame: 26 vs 72 ms), which copies such inputs
    and runs the pointwise product as a small-tile conv. Differentiable.
    """
    b, _, t, h, w = x.shape
    out = torch.matmul(weight.flatten(1), x.flatten(2))  # [B, C_out, T H W]
    if bias is not None:
        out = out + bias[:, None]
    return out.view(b, -1, t, h, w)


# Saving one frame-conv of T pays for the extra output concat at short clips only: bf16, 1 CPU thread, 128-512
# channels: 9 frames 0.91-0.92x the time of pad + conv, 13 frames 0.94x, 17 frames 0.97-1.01x.
FOLD_FRONT_MAX_FRAMES = 12


def cached_weight_fold(conv: nn.Conv3d, name: str, key_extra, build):
    """``build(w)`` of ``conv.weight`` (upcast to float32 if half precision), cached on ``conv`` under ``name``.

    The cache is used and filled only with autograd off. Its key is the weight's storage, version, dtype and
    device plus ``key_extra``, so in-place updates (optimizer steps, ``load_state_dict``, ``.to()``) rebuild it.
    Used for the folded kernels of :func:`causal_conv_folded_front` and :func:`polyphase_kernel`.
    """
    w = conv.weight
    key = (*weight_stamp(w), key_extra)
    cache = getattr(conv, name, None)
    if cache is not None and cache[0] == key and not torch.is_grad_enabled():
        return cache[1]
    out = build(w.float() if w.dtype in (torch.float16, torch.bfloat16) else w)
    if not torch.is_grad_enabled():
        setattr(conv, name, (key, out))
    return out


def _front_kernels(conv: nn.Conv3d, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w0 + w1 + w2, [w0 + w1, w2])`` over the time taps of a k_t = 3 kernel, summed in float32, in ``dtype``."""
    return cached_weight_fold(conv, "_front_cache", dtype, lambda w: (
        w.sum(2, keepdim=True).to(dtype), torch.cat([w[:, :, :1] + w[:, :, 1:2], w[:, :, 2:]], 2).to(dtype)))


def causal_conv_folded_front(x: torch.Tensor, conv: nn.Conv3d, spatial_padding: tuple[int, int, int, int]):
    """A k_t = 3, stride-1 causal conv with replicate front padding, without convolving the padded frames.

    The padded input is ``[x0, x0, x0, x1, ..., x_{T-1}]``, so output frame 0 is ``(w0 + w1 + w2) * x0`` and
    frame 1 is ``(w0 + w1) * x0 + w2 * x1``: the two front outputs cost one frame-conv instead of two, and no
    padded frames are materialised. Frames ``2..T-1`` are the plain conv over ``x``. Same linear map as
    ``conv(pad(x))`` up to float summation order (weights summed in float32); differentiable.

    Args:
        x: ``[B, C_in, T, H, W]``, T >= 1.
        conv: inner ``nn.Conv3d`` with kernel ``(3, k_h, k_w)``, time stride 1, padding 0.
        spatial_padding: ``(W_left, W_right, H_top, H_bottom)`` replicate padding.

    Returns:
        ``[B, C_out, T, H', W']``.
    """
    if any(spatial_padding):
        x = F.pad(x, (*spatial_padding, 0, 0), mode="replicate")
    k1, k2 = _front_kernels(conv, x.dtype)
    s, d, g = conv.stride, conv.dilation, conv.groups
    outs = [F.conv3d(x[:, :, :1], k1, conv.bias, s, 0, d, g)]
    if x.shape[2] >= 2:
        outs.append(F.conv3d(x[:, :, :2], k2, conv.bias, s, 0, d, g))
    if x.shape[2] >= 3:
        outs.append(F.conv3d(x, conv.weight, conv.bias, s, 0, d, g))
    return torch.cat(outs, 2) if len(outs) > 1 else outs[0]


def _fold_matrix(factor: int) -> torch.Tensor:
    """``[f, taps, 3]`` map from a 3-tap kernel axis to the taps each phase of a nearest x``factor`` upsampling sees.

    Factor 1: the identity (3 taps). Factor 2: phase 0 (output ``2i``) reads upsampled ``2i-1, 2i, 2i+1`` =
    input ``i-1, i, i``, taps ``(w0, w1 + w2)``; phase 1 (output ``2i+1``) reads input ``i, i, i+1``, taps
    ``(w0 + w1, w2)``.
    """
    if factor == 1:
        return torch.eye(3)[None]
    return torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]])


def polyphase_kernel(conv: nn.Conv3d, factor: tuple[int, int, int], dtype: torch.dtype):
    """Per-phase kernels ``[P C_out, C_in, k_t, k_h, k_w]`` and bias ``[P C_out]``, P = f_t f_h f_w.

    For :func:`upsample_conv_polyphase`: each axis upsampled by 2 folds its 3 taps into 2 per phase
    (:func:`_fold_matrix`). Folded in float32 (or the weight's precision if higher), cast once, and cached on
    ``conv`` without autograd (:func:`cached_weight_fold`), so a decode loop folds each upsampler once.
    """
    def build(w):
        mt, mh, mw = (_fold_matrix(f).to(w.device, w.dtype) for f in factor)
        k = torch.einsum("atk,bul,cvm,oiklm->abcoituv", mt, mh, mw, w)
        p = k.shape[0] * k.shape[1] * k.shape[2]
        bias = conv.bias.repeat(p).to(dtype) if conv.bias is not None else None
        return k.reshape(p * w.shape[0], *k.shape[4:]).to(dtype), bias

    return cached_weight_fold(conv, "_polyphase_cache", (dtype, tuple(factor)), build)


def upsample_conv_polyphase(x: torch.Tensor, conv: nn.Conv3d, factor: tuple[int, int, int]) -> torch.Tensor:
    """``CausalConv3d(k3, replicate)`` applied to the causal nearest upsampling of x, without upsampling x.

    Equals :class:`UpsampleCausal3D` (frame 0 spatial only, frames ``1..T-1`` repeated ``f_t`` times, then
    the causal conv) up to float summation order. Nearest upsampling by 2 repeats each input sample, so each
    output phase (even/odd index per upsampled axis) is a 2-tap conv of the (replicate-padded) input with
    folded weights (:func:`_fold_matrix`); replicate padding commutes with nearest upsampling. For the causal
    time axis, padding x by 1 frame in front gives: even output frame ``2m`` = taps ``(w0, w1 + w2)`` on input
    frames ``m-1, m`` and odd frame ``2m+1`` = ``(w0 + w1, w2)`` on ``m, m+1``; which also reproduces frame 0
    = ``(w0 + w1 + w2) x_0``. Per output voxel the conv costs ``prod(taps)`` (8 for (2, 2, 2) instead of 27).
    This is the sub-pixel ("polyphase") form of resize-convolution (Shi et al. 2016, ESPCN, sec. 2.2).

    Args:
        x: ``[B, C_in, T, H, W]``, any float dtype (computed in x's dtype; folded weights are summed in
            float32 and cast once).
        conv: the inner ``nn.Conv3d`` (kernel (3, 3, 3), stride 1, padding 0).
        factor: (f_t, f_h, f_w), each 1 or 2.

    Returns:
        ``[B, C_out, 1 + f_t (T - 1), f_h H, f_w W]``, contiguous.

    Raises:
        ValueError: a factor not in {1, 2}, or a conv that is not k3 / stride 1.
    """
    if not set(factor) <= {1, 2}:
        raise ValueError(f"upsample_conv_polyphase supports factors 1 or 2 per axis, got {factor}")
    if conv.kernel_size != (3, 3, 3) or conv.stride != (1, 1, 1):
        raise ValueError(f"needs a k3 stride-1 conv, got kernel {conv.kernel_size} stride {conv.stride}")
    ft, fh, fw = factor
    b, _, t, h, w = x.shape
    c_out = conv.out_channels
    xp = F.pad(x, (1, 1, 1, 1, 1 if ft == 2 else 2, 0), mode="replicate")
    # One conv for all phases (one large GEMM is faster than 8 small ones): a 2-tap axis of phase p reads
    # padded samples (i + p, i + p + 1), i.e. output i + p of the shared 2-tap conv.
    kernel, bias = polyphase_kernel(conv, factor, x.dtype)
    y = F.conv3d(xp, kernel, bias)
    # Interleave with one strided copy per time phase: phase (pt, ph, pw) is block i = (pt fh + ph) fw + pw of
    # y, read from frame/row/column offset (pt, ph, pw), so the (h, fh, w, fw) layout is a plain strided view.
    s_b, s_p, s_t, s_h, s_w = y.stride(0), c_out * y.stride(1), y.stride(2), y.stride(3), y.stride(4)
    t_out = 1 + ft * (t - 1)
    out = x.new_empty(b, c_out, t_out, fh * h, fw * w)
    for pt in range(ft):
        n_t = t if pt == 0 else t - 1
        if n_t == 0:
            continue  # a single frame has no odd output frame
        src = y.as_strided(
            (b, c_out, n_t, h, fh, w, fw),
            (s_b, y.stride(1), s_t, s_h, fw * s_p + s_h, s_w, s_p + s_w),
            y.storage_offset() + pt * fh * fw * s_p + pt * s_t,
        )
        out[:, :, pt::ft].view(b, c_out, n_t, h, fh, w, fw).copy_(src)
    return out
