"""Causal 3D convolution and the causal down/upsamplers of the HunyuanVideo VAE.

Reference: HV:hyvideo/vae/unet_causal_3d_blocks.py (``CausalConv3d``, ``DownsampleCausal3D``,
``UpsampleCausal3D``); DF:src/diffusers/models/autoencoders/autoencoder_kl_hunyuan_video.py
(``HunyuanVideoCausalConv3d``, ...). Spec: /work/shared/spec/hunyuanvideo.md sections 3.2 and 3.4.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hyvideo.ops.stamp import weight_stamp


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
        """Apply the causal conv.

        A k_t = 3, stride-1, replicate-padded conv over at most ``FOLD_FRONT_MAX_FRAMES`` frames runs as
        :func:`causal_conv_folded_front` (the same linear map with one frame-conv fewer); everything else pads
        and convolves.

        Args:
            x: ``[B, C_in, T, H, W]``.

        Returns:
            ``[B, C_out, T', H', W']``; with stride 1, ``T' = T``, ``H' = H``, ``W' = W``.
        """
        c = self.conv
        if (c.kernel_size[0] == 3 and c.stride[0] == 1 and self.pad_mode == "replicate"
                and x.shape[2] <= FOLD_FRONT_MAX_FRAMES):
            return causal_conv_folded_front(x, c, self.causal_padding[:4])
        if c.kernel_size == (1, 1, 1) and c.stride == (1, 1, 1) and c.groups == 1:
            return pointwise_conv3d(x, c.weight, c.bias)
        if any(self.causal_padding):
            x = F.pad(x, self.causal_padding, mode=self.pad_mode)
        return self.conv(x)


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
        out = out.add_(bias[:, None]) if not torch.is_grad_enabled() else out + bias[:, None]
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
    ``f_t = 2``: T -> 1 + 2 (T - 1) (e.g. 9 -> 17 -> 33). bf16 inputs are interpolated in float32 and cast
    back, as the released code does (spec 3.4).

    Args:
        channels: input and output channels.
        scale_factor: (f_t, f_h, f_w) integer factors.
    """

    def __init__(self, channels: int, scale_factor: tuple[int, int, int] = (2, 2, 2)) -> None:
        super().__init__()
        self.scale_factor = tuple(int(f) for f in scale_factor)
        self.conv = CausalConv3d(channels, channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` -> ``[B, C, 1 + f_t (T - 1), f_h H, f_w W]``.

        Factors in {1, 2} with the k3 replicate-padded conv run as :func:`upsample_conv_polyphase` (the same
        linear map without building the upsampled tensor, 2.25-3.4x fewer FLOPs); other factors upsample first.
        """
        if set(self.scale_factor) <= {1, 2} and self.conv.pad_mode == "replicate":
            return upsample_conv_polyphase(x, self.conv.conv, self.scale_factor)
        dtype = x.dtype
        if dtype == torch.bfloat16:
            x = x.float()
        first, rest = x[:, :, :1], x[:, :, 1:]
        first = F.interpolate(first.squeeze(2), scale_factor=self.scale_factor[1:], mode="nearest").unsqueeze(2)
        if rest.shape[2] > 0:
            rest = F.interpolate(rest.contiguous(), scale_factor=self.scale_factor, mode="nearest")
            x = torch.cat((first, rest), dim=2)
        else:
            x = first
        return self.conv(x.to(dtype))


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
