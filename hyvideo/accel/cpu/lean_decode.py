"""Memory-lean inference walk of the causal 3D VAE decoder: activations as lists of frame chunks.

A causal conv with temporal kernel ``k_t`` (stride 1) needs input frames ``[s - k_t + 1, e)`` for output frames
``[s, e)``, so the normalised / activated / padded input never has to exist at full size, and an input that is
not needed later can be freed chunk by chunk while the output is produced. Activations are therefore kept as a
:class:`FrameChunks` (a list of ``[B, C, n, H, W]`` tensors over consecutive frames) instead of one tensor:
a resnet with a channel-changing shortcut frees its input as its hidden and output grow, so the released
decoder's largest stage (256 -> 128 channels at full resolution) holds about one full-size 256-channel
activation instead of three (diffusers keeps 4-5: norm, activation, replicate-padded copy, conv output,
residual). GroupNorm statistics are computed first, in float32 over the whole activation (one chunked pass),
so the result equals the unchunked modules up to float rounding. On CPU in bf16 the 3x3x3 convs and the
upsampler convs run as Winograd convs that read the raw chunks (:mod:`hyvideo.accel.cpu.winograd`: norm, SiLU,
padding and residual add fused into the transforms), so the normalised / padded input is never built at all.

Inference only (no autograd); the modules keep their parameters and state-dict keys.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hyvideo.accel.cpu import native, winograd
from hyvideo.accel.vae_convs import FOLD_FRONT_MAX_FRAMES, causal_conv_folded_front, pointwise_conv3d, polyphase_kernel
from hyvideo.vae.encoder_decoder import DecoderCausal3D

DEFAULT_CHUNK_FRAMES = 2


class FrameChunks:
    """An activation ``[B, C, T, H, W]`` stored as consecutive frame chunks that can be freed one by one.

    Args:
        chunks: tensors ``[B, C, n_i, H, W]`` with equal B, C, H, W; their frames in order make up the video.
    """

    def __init__(self, chunks: list[torch.Tensor]) -> None:
        self.chunks: list[torch.Tensor | None] = list(chunks)
        self.starts = [0]
        for c in self.chunks:
            self.starts.append(self.starts[-1] + c.shape[2])
        first = self.chunks[0]
        self.shape = (first.shape[0], first.shape[1], self.starts[-1], *first.shape[3:])
        self.dtype, self.device = first.dtype, first.device

    @classmethod
    def of(cls, x: torch.Tensor | FrameChunks, chunk: int) -> FrameChunks:
        """``x`` itself, or views of a tensor in chunks of ``chunk`` frames (views free nothing early)."""
        return x if isinstance(x, FrameChunks) else cls(list(x.split(chunk, dim=2)))

    @property
    def num_frames(self) -> int:
        return self.starts[-1]

    def frames(self, a: int, b: int) -> torch.Tensor:
        """Frames ``a..b-1`` as one tensor (a view when they lie in one chunk, else a concatenation).

        Raises:
            RuntimeError: a needed chunk was already released.
        """
        parts = []
        for i, c in enumerate(self.chunks):
            s, e = self.starts[i], self.starts[i + 1]
            if e <= a or s >= b:
                continue
            if c is None:
                raise RuntimeError(f"frames {a}..{b - 1} needed, but the chunk of frames {s}..{e - 1} was released")
            parts.append(c[:, :, max(a - s, 0): min(b, e) - s])
        return parts[0] if len(parts) == 1 else torch.cat(parts, 2)

    def release_before(self, frame: int) -> None:
        """Drop every chunk that lies entirely before ``frame``."""
        for i in range(len(self.chunks)):
            if self.starts[i + 1] <= frame:
                self.chunks[i] = None

    def tensor(self) -> torch.Tensor:
        """The whole activation as one tensor (a copy unless it is a single chunk)."""
        return self.frames(0, self.num_frames)


def _like_input(x, out: FrameChunks) -> torch.Tensor | FrameChunks:
    """Return a tensor when the caller passed a tensor, chunks when it passed chunks."""
    return out if isinstance(x, FrameChunks) else out.tensor()


def group_norm_affine(x: torch.Tensor | FrameChunks, norm: nn.GroupNorm, chunk: int = DEFAULT_CHUNK_FRAMES,
                      kernels: bool = False):
    """GroupNorm of ``x`` as per-(sample, channel) statistics, for :func:`norm_act` on frame chunks.

    Statistics over ``[C / G, T, H, W]`` per group in one pass: mean and sum of squared deviations per frame
    chunk (:func:`_chunk_group_stats`), merged in float64 (Chan et al.'s parallel variance), biased variance as
    ``nn.GroupNorm``.

    Returns:
        ``(mean, var, weight, bias, eps)``; the first four ``[B * C]`` float32, for ``F.batch_norm`` over
        ``[1, B * C, ...]``.
    """
    xs = FrameChunks.of(x, chunk)
    b, c = xs.shape[:2]
    g = norm.num_groups
    count = torch.zeros((), dtype=torch.float64)
    mean = torch.zeros(b, g, dtype=torch.float64, device=xs.device)
    m2 = torch.zeros_like(mean)
    ones = torch.ones(b * g, device=xs.device)  # float32 affine: the mixed-type kernel keeps float32 statistics
    zeros = torch.zeros(b * g, device=xs.device)
    for piece in xs.chunks:
        mean_c, m2_c, n_c = _chunk_group_stats(piece, g, ones, zeros, kernels)
        delta = mean_c - mean
        tot = count + n_c
        mean = mean + delta * (n_c / tot)
        m2 = m2 + m2_c + delta.square() * (count * n_c / tot)
        count = tot
    rep = c // g
    mean_bc = mean.float().repeat_interleave(rep, dim=1).reshape(-1)
    var_bc = (m2 / count).float().repeat_interleave(rep, dim=1).reshape(-1)
    weight = norm.weight.float() if norm.affine else torch.ones(c, device=xs.device)
    bias = norm.bias.float() if norm.affine else torch.zeros(c, device=xs.device)
    return mean_bc, var_bc, weight.repeat(b), bias.repeat(b), norm.eps


def _chunk_group_stats(piece: torch.Tensor, g: int, ones: torch.Tensor, zeros: torch.Tensor, kernels: bool = False):
    """``(mean, m2, n)`` of one chunk ``[B, C, t, H, W]`` per (sample, group): float64 ``[B, G]`` and the count.

    bf16 on CPU without autograd, with hyvideo's C++ kernels: one read (``csrc/group_stats.cpp``); otherwise a
    training-mode batch norm over ``[1, B * G, N]`` gives float32 mean and 1/std straight from x's dtype (4x
    faster than var_mean on a float32 copy).
    """
    b, c = piece.shape[:2]
    n = float(piece[0, : c // g].numel())
    if (kernels and piece.device.type == "cpu" and piece.dtype == torch.bfloat16 and piece.stride(4) == 1
            and piece.stride(3) == piece.shape[4] and not (torch.is_grad_enabled() and piece.requires_grad)
            and native.load()):
        mean_c, m2_c = torch.ops.hyvideo_norm.group_stats(piece, g)
        return mean_c, m2_c, n
    flat = piece.reshape(1, b * g, -1)
    _, mean_c, invstd_c = torch.native_batch_norm(flat, ones, zeros, None, None, True, 0.0, 0.0)
    return mean_c.double().view(b, g), invstd_c.double().pow(-2).view(b, g) * n, n


def norm_act(x: torch.Tensor, stats, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``act(GroupNorm(x))`` for a frame chunk ``[B, C, t, H, W]`` with whole-activation statistics.

    One fused normalisation pass (``F.batch_norm`` in eval form with the group statistics as running stats,
    computed in float32 and written in x's dtype like ``nn.GroupNorm``), then the activation in place.
    """
    mean, var, weight, bias, eps = stats
    b, c = x.shape[:2]
    y = F.batch_norm(x.reshape(1, b * c, *x.shape[2:]), mean, var, weight, bias, False, 0.0, eps).reshape(x.shape)
    if isinstance(act, nn.SiLU):
        return F.silu(y, inplace=True)
    return act(y)


def causal_conv_chunked(conv: nn.Module, source: FrameChunks, bounds: list[int], norm=None,
                        residual: Callable[[int, int], torch.Tensor] | None = None,
                        after: Callable[[int, int], None] | None = None, kernels: bool = False) -> FrameChunks:
    """Apply a stride-1 :class:`hyvideo.vae.causal_conv.CausalConv3d` chunk by chunk over time.

    Args:
        conv: module with ``.conv`` (``nn.Conv3d``, padding 0, stride 1), ``.causal_padding``, ``.pad_mode``.
        source: the input ``[B, C_in, T, H, W]`` as frame chunks.
        bounds: output chunk boundaries ``[0, e_1, ..., T]``.
        norm: optional ``(stats, act)``: the conv reads ``act(GroupNorm(source))`` with ``stats`` from
            :func:`group_norm_affine` (see :func:`norm_act`).
        residual: optional ``(s, e) -> [B, C_out, e - s, H, W]`` tensor that output chunk ``[s, e)`` is added to,
            in place (a resnet's skip path); the chunk it returns becomes the output chunk.
        after: optional ``(s, e)`` callback once output chunk ``[s, e)`` exists (e.g. release inputs).

    Returns:
        The output as :class:`FrameChunks` with chunk boundaries ``bounds``; equal to ``conv(full input)``. Where
        (:func:`hyvideo.accel.cpu.winograd.fused_usable` holds, each chunk is one Winograd conv per sample that reads the
        source frames directly, with the norm, activation, replicate padding and residual add fused into its
        transforms. Otherwise the input frames are built (normalised, activated, padded) and convolved by
        ``F.conv3d``: the first chunk of a k_t = 3 replicate-padded conv runs as
        :func:`hyvideo.vae.causal_conv.causal_conv_folded_front` (no padded front frames are convolved), and each
        later chunk takes its context frames from the previous chunk's padded input, so every frame is built once.
    """
    c3 = conv.conv
    if c3.stride != (1, 1, 1):
        raise ValueError(f"causal_conv_chunked needs a stride-1 conv, got stride {c3.stride}")
    stats, act = norm if norm is not None else (None, None)
    if kernels and winograd.fused_usable(next(c for c in source.chunks if c is not None), conv, act):
        return _causal_conv_winograd(conv, source, bounds, stats, act, residual, after)

    def make_input(a, b):
        return source.frames(a, b) if stats is None else norm_act(source.frames(a, b), stats, act)

    pw, _, ph, _, pt, _ = conv.causal_padding
    replicate = conv.pad_mode == "replicate"
    fold_front = c3.kernel_size[0] == 3 and replicate  # as CausalConv3d.forward does
    out = []
    context = None  # replicate: the previous chunk's padded input; its last pt frames precede this chunk
    for s, e in zip(bounds[:-1], bounds[1:]):
        if s == 0 and fold_front and e <= FOLD_FRONT_MAX_FRAMES:  # replicated front frames folded into the kernel
            xi = make_input(0, e)
            y = causal_conv_folded_front(xi, c3, conv.causal_padding[:4])
            context = F.pad(xi[:, :, -pt:], (pw, pw, ph, ph, 0, 0), mode="replicate") if e >= pt else None
        elif context is not None:  # set only with replicate padding, and always holds >= pt frames
            # only this chunk's own frames are built; the pt context frames are reused, already padded
            xi = _padded_after(context[:, :, context.shape[2] - pt:], make_input(s, e), ph, pw)
            y = F.conv3d(xi, c3.weight, c3.bias)
            context = xi
        else:
            a = max(s - pt, 0)
            xi = make_input(a, e)
            front = pt - (s - a)  # replicate frames in front only for the first chunk(s)
            if pw or ph or front:
                xi = F.pad(xi, (pw, pw, ph, ph, front, 0), mode=conv.pad_mode)
            y = F.conv3d(xi, c3.weight, c3.bias)
            context = xi if replicate else None
        del xi
        out.append(residual(s, e).add_(y) if residual is not None else y)
        if after is not None:
            after(s, e)
    return FrameChunks(out)


def _causal_conv_winograd(conv, source: FrameChunks, bounds, stats, act, residual, after) -> FrameChunks:
    """:func:`causal_conv_chunked` by (:func:`hyvideo.accel.cpu.winograd.winograd_frames` (norm, pad, residual fused)."""
    c3 = conv.conv
    u = winograd.winograd_weight(c3.weight)  # per call: no resident copy of every kernel
    b, c = source.shape[:2]
    scale = shift = None
    if stats is not None:  # GroupNorm as a per-(sample, channel) affine: (x - mean) / std * weight + bias
        mean, var, weight, bias, eps = stats
        scale = weight * (var + eps).rsqrt()
        shift = bias - mean * scale
    out = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        o = residual(s, e) if residual is not None else torch.empty(
            b, c3.out_channels, e - s, *source.shape[3:], dtype=source.dtype, device=source.device)
        for i in range(b):  # causal replicate padding in time: frames before 0 are frame 0
            frames = [source.frames(f, f + 1)[i, :, 0] for f in (max(f, 0) for f in range(s - 2, e))]
            winograd.winograd_frames(frames, u, c3.bias, o[i], pad=1, accumulate=residual is not None,
                                     scale=None if scale is None else scale[i * c: (i + 1) * c],
                                     shift=None if shift is None else shift[i * c: (i + 1) * c],
                                     silu=act is not None)
        out.append(o)
        if after is not None:
            after(s, e)
    return FrameChunks(out)


def _padded_after(context: torch.Tensor, x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """``cat([context, replicate_pad_hw(x)], 2)`` built in one buffer with one copy of x.

    context ``[B, C, p, H + 2 ph, W + 2 pw]`` (already padded), x ``[B, C, n, H, W]`` -> ``[B, C, p + n, ...]``.
    """
    b, c, n, h, w = x.shape
    p = context.shape[2]
    buf = x.new_empty(b, c, p + n, h + 2 * ph, w + 2 * pw)
    buf[:, :, :p].copy_(context)
    body = buf[:, :, p:]
    body[:, :, :, ph: ph + h, pw: pw + w].copy_(x)
    if pw:
        body[:, :, :, ph: ph + h, :pw].copy_(x[..., :1].expand(-1, -1, -1, -1, pw))
        body[:, :, :, ph: ph + h, pw + w:].copy_(x[..., -1:].expand(-1, -1, -1, -1, pw))
    if ph:
        body[:, :, :, :ph].copy_(body[:, :, :, ph: ph + 1].expand(-1, -1, -1, ph, -1))
        body[:, :, :, ph + h:].copy_(body[:, :, :, ph + h - 1: ph + h].expand(-1, -1, -1, ph, -1))
    return buf


@torch.no_grad()
def norm_act_conv_lean(norm: nn.GroupNorm, act: nn.Module, conv: nn.Module, x: torch.Tensor | FrameChunks,
                       chunk: int = DEFAULT_CHUNK_FRAMES, release: bool = False,
                       kernels: bool = False) -> torch.Tensor | FrameChunks:
    """``conv(act(norm(x)))`` (e.g. the decoder's ``conv_norm_out -> conv_act -> conv_out``) in frame chunks.

    ``release=True`` frees chunks of ``x`` (a :class:`FrameChunks`) as soon as no later output needs them.
    """
    xs = FrameChunks.of(x, chunk)
    stats = group_norm_affine(xs, norm, kernels=kernels)
    keep = conv.causal_padding[4]
    out = causal_conv_chunked(conv, xs, xs.starts, norm=(stats, act),
                              after=(lambda s, e: xs.release_before(e - keep)) if release else None, kernels=kernels)
    return _like_input(x, out)


@torch.no_grad()
def resnet_lean(block: nn.Module, x: torch.Tensor | FrameChunks, chunk: int = DEFAULT_CHUNK_FRAMES,
                inplace: bool = False, kernels: bool = False) -> torch.Tensor | FrameChunks:
    """:class:`hyvideo.vae.blocks.ResnetBlockCausal3D` forward (eval), chunk by chunk.

    Pass 1: ``h = conv1(act(norm1(x)))`` and, with a shortcut, ``out = shortcut(x)``; pass 2:
    ``out += conv2(act(norm2(h)))``. ``inplace=True`` lets the block consume ``x`` (the caller must not need
    it afterwards): with a shortcut, chunks of x are freed during pass 1; without one, the output is written
    into x's chunks. Either way the chunks of h are freed during pass 2, so at most about one input-sized
    activation plus one chunk of intermediates is alive beyond the output.
    """
    xs = FrameChunks.of(x, chunk)
    if not inplace and block.conv_shortcut is None:  # the output is written into the residual's chunks
        xs = FrameChunks([c.clone() for c in xs.chunks])
    act = block.nonlinearity
    stats1 = group_norm_affine(xs, block.norm1, kernels=kernels)
    short = block.conv_shortcut
    keep = block.conv1.causal_padding[4]
    residual: list[torch.Tensor] = []

    def after1(s, e):
        if short is not None:  # the 1x1x1 shortcut as one GEMM
            residual.append(pointwise_conv3d(xs.frames(s, e), short.conv.weight, short.conv.bias))
            if inplace:
                xs.release_before(e - keep)
        else:
            residual.append(xs.frames(s, e))

    h = causal_conv_chunked(block.conv1, xs, xs.starts, norm=(stats1, act), after=after1, kernels=kernels)
    del xs
    stats2 = group_norm_affine(h, block.norm2, kernels=kernels)
    keep2 = block.conv2.causal_padding[4]

    def skip(s, e):
        i = h.starts.index(s)
        r, residual[i] = residual[i], None
        return r

    out = causal_conv_chunked(block.conv2, h, h.starts, norm=(stats2, act), residual=skip,
                              after=lambda s, e: h.release_before(e - keep2), kernels=kernels)
    return _like_input(x, out)


@torch.no_grad()
def upsample_lean(up: nn.Module, x: torch.Tensor | FrameChunks, chunk: int = DEFAULT_CHUNK_FRAMES,
                  release: bool = False, kernels: bool = False) -> torch.Tensor | FrameChunks:
    """:class:`hyvideo.vae.causal_conv.UpsampleCausal3D` forward in chunks of input frames (polyphase form).

    The conv runs as :func:`hyvideo.vae.causal_conv.upsample_conv_polyphase` does (each output phase a 2-tap
    conv of the input with folded weights), one chunk of input frames at a time, and each chunk's phases are
    interleaved into their own output chunk, so neither the upsampled tensor nor the ``P * C_out``-channel
    phase tensor exists at full size. Factors must be 1 or 2 per axis (the released model).

    Raises:
        ValueError: a factor other than 1 or 2, or a non-replicate conv.
    """
    factor = up.scale_factor
    if not set(factor) <= {1, 2} or up.conv.pad_mode != "replicate":
        raise ValueError(f"upsample_lean needs factors in {{1, 2}} and replicate padding, got {factor}")
    xs = FrameChunks.of(x, chunk)
    ft, fh, fw = factor
    conv = up.conv.conv
    kernel, bias = polyphase_kernel(conv, factor, xs.dtype)
    b, _, t, h, w = xs.shape
    c_out = conv.out_channels
    front = 1 if ft == 2 else 2  # padded frames in front of the 2-tap (ft = 2) or 3-tap (ft = 1) time axis
    out = []
    wino = kernels and winograd.up_usable(next(c for c in xs.chunks if c is not None), conv, factor)
    u = winograd.up_weight(kernel) if wino else None  # per call: no resident copy
    for s, e in zip(xs.starts[:-1], xs.starts[1:]):
        if wino:
            out.append(_upsample_chunk_winograd(xs, s, e, u, conv.bias, ft, front, kernel.shape[2]))
            if release:
                xs.release_before(e - front if e < t else t)
            continue
        # phase frames s..e-1 read padded frames s..e-1+taps-1 = input frames s-front .. e-1 (clamped).
        a = max(s - front, 0)
        xi = F.pad(xs.frames(a, e), (1, 1, 1, 1, front - (s - a), 0), mode="replicate")
        y = F.conv3d(xi, kernel, bias)  # [B, P C_out, e - s, h', w'] phase frames s..e-1
        del xi
        # time phase 0 of phase frame i -> output frame ft * i; phase 1 (ft = 2) of frame i -> output 2 i - 1.
        lo = max(ft * s - (ft - 1), 0)
        hi = ft * (e - 1) + 1
        o = y.new_empty(b, c_out, hi - lo, fh * h, fw * w)
        s_p = c_out * y.stride(1)
        for pt in range(ft):
            first = s if pt == 0 else max(s, 1)  # phase-1 output exists for frames i >= 1
            n = e - first
            if n <= 0:
                continue
            src = y.as_strided((b, c_out, n, h, fh, w, fw),
                               (y.stride(0), y.stride(1), y.stride(2), y.stride(3), fw * s_p + y.stride(3),
                                y.stride(4), s_p + y.stride(4)),
                               y.storage_offset() + pt * fh * fw * s_p + (first - s) * y.stride(2))
            o0 = ft * first - pt - lo
            o[:, :, o0: o0 + ft * n: ft].view(b, c_out, n, h, fh, w, fw).copy_(src)
        del y
        out.append(o)
        if release:
            xs.release_before(e - front if e < t else t)
    return _like_input(x, FrameChunks(out))


def _upsample_chunk_winograd(xs: FrameChunks, s: int, e: int, u, bias, ft: int, front: int, kt: int):
    """Output chunk of phase frames ``[s, e)`` by (:func:`hyvideo.accel.cpu.winograd.upsample_winograd`."""
    b, c_out = xs.shape[0], u.shape[1] // (4 * ft)
    h, w = xs.shape[3:]
    lo = max(ft * s - (ft - 1), 0)  # as the direct path: phase frame i -> output frames ft i (and 2 i - 1)
    o = torch.empty(b, c_out, ft * (e - 1) + 1 - lo, 2 * h, 2 * w, dtype=xs.dtype, device=xs.device)
    for i in range(b):
        frames = [xs.frames(p, p + 1)[i, :, 0] for p in (max(q - front, 0) for q in range(s, e + kt - 1))]
        outs, phases = [], []
        for f in range(s, e):
            pts = [pt for pt in range(ft) if pt == 0 or f >= 1]
            outs.append([o[i, :, ft * f - pt - lo] for pt in pts])
            phases.append(pts)
        winograd.upsample_winograd(frames, u, bias, outs, phases)
    return o


def chunk_frames_for(shape, max_elements: int) -> int:
    """Frames per chunk so that one chunk of an activation ``[B, C, T, H, W]`` holds at most ``max_elements``."""
    b, c, t, h, w = shape
    return max(1, min(t, max_elements // max(b * c * h * w, 1)))


def rechunk(x: FrameChunks, frames: int) -> FrameChunks:
    """``x`` with chunks of ``frames`` frames (a copy only when chunks must be merged)."""
    if all(c.shape[2] == frames for c in x.chunks[:-1]) and x.chunks[-1].shape[2] <= frames:
        return x
    if all(c.shape[2] % frames == 0 for c in x.chunks[:-1]):
        return FrameChunks([p for c in x.chunks for p in c.split(frames, dim=2)])
    return FrameChunks(list(x.tensor().split(frames, dim=2)))


# One frame of the released decoder's widest full-resolution stage (128 channels, 256 x 256 px tiles); narrower
# or lower-resolution stages get proportionally more frames per chunk (fewer, larger convs). With the C++
# Winograd convs, 17 x 256 x 256 bf16 decodes (A/B in one process) took 36.7 / 37.6 s with 1 frame, 38.2 /
# 40.9 s with 2, 42.6 s with 3 and 43.6 s with 4 (chunks of >= 2 frames at 128 x 256 x 256 are fresh mmaps
# above glibc's 32 MiB threshold, page-faulted on every call); with the direct convs 1, 2 or 4 frames ran alike.
DEFAULT_CHUNK_ELEMENTS = 128 * 256 * 256


@torch.no_grad()
def decoder_forward_lean(decoder: nn.Module, z: torch.Tensor, chunk: int | None = None,
                         max_chunk_elements: int | None = None, kernels: bool = False) -> torch.Tensor:
    """:class:`hyvideo.vae.encoder_decoder.Decoder` forward (eval) on frame chunks that are freed when consumed.

    Same modules, weights and result (up to float rounding) as ``decoder(z)``. z ``[B, C_z, T_z, H_z, W_z]``
    (after post_quant_conv) -> ``[B, C, T, H, W]``. Each stage uses ``chunk`` frames per chunk if given, else
    as many frames as fit in ``max_chunk_elements`` elements (default :data:`DEFAULT_CHUNK_ELEMENTS`; at least
    1). Peak memory is about one
    full-resolution activation of the widest full-resolution stage plus a chunk of intermediates (the released
    decoder of a 17 x 256 x 256 video: see docs/benchmarks.md).
    """
    limit = DEFAULT_CHUNK_ELEMENTS if max_chunk_elements is None else max_chunk_elements

    def frames(shape):
        return chunk if chunk is not None else chunk_frames_for(shape, limit)

    n = frames((*z.shape[:1], decoder.conv_in.conv.out_channels, *z.shape[2:]))
    zs = FrameChunks.of(z, n)
    x = causal_conv_chunked(decoder.conv_in, zs, zs.starts, kernels=kernels)
    mid = decoder.mid_block
    x = resnet_lean(mid.resnets[0], x, n, inplace=True, kernels=kernels)
    if mid.attentions[0] is not None:  # attention over all latent frames: one tensor at latent resolution
        x = FrameChunks.of(mid.attentions[0](x.tensor()), n)
    x = resnet_lean(mid.resnets[1], x, n, inplace=True, kernels=kernels)
    dtype = next(decoder.up_blocks.parameters()).dtype
    if x.dtype != dtype:
        x = FrameChunks([c.to(dtype) for c in x.chunks])
    for block in decoder.up_blocks:
        c_out = block.resnets[0].conv1.conv.out_channels
        n = frames((x.shape[0], max(x.shape[1], c_out), *x.shape[2:]))
        x = rechunk(x, n)
        for resnet in block.resnets:
            x = resnet_lean(resnet, x, n, inplace=True, kernels=kernels)
        if block.upsamplers is not None:
            x = upsample_lean(block.upsamplers[0], x, n, release=True, kernels=kernels)
    n = frames(x.shape)
    return norm_act_conv_lean(decoder.conv_norm_out, decoder.conv_act, decoder.conv_out, rechunk(x, n), n,
                              release=True, kernels=kernels).tensor()


class LeanDecoderCausal3D(DecoderCausal3D):
    """:class:`hyvideo.vae.encoder_decoder.DecoderCausal3D` whose no-grad forward is :func:`decoder_forward_lean`.

    Made by class swap (``vae.decoder.__class__ = LeanDecoderCausal3D``, :func:`hyvideo.accel.apply`): same
    parameters and keys. When gradients are needed the plain module walk runs. ``kernels`` (set by
    :func:`hyvideo.accel.apply` from the capability check) lets bf16 convs run as C++ Winograd convs.
    """

    kernels = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (z.requires_grad or any(p.requires_grad for p in self.parameters())):
            return super().forward(z)
        return decoder_forward_lean(self, z, kernels=self.kernels)
