"""Winograd convolutions for the lean VAE decode on CPU in bfloat16 (inference only).

3x3x3 causal convs: each output frame is ``sum_t conv2d(x_{f+t}, w_t)`` over the 3 time taps; the 3x3 spatial
part runs as Winograd's minimal filtering algorithm F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016): 16 multiplies per 2x2 outputs instead of 36. Per tile-row slab the
input tiles are transformed once (``V = B^T d B``, 16 planes ``[tiles, T', C_in]``), each output frame is 16
GEMMs ``V[xi][:, f:f+3] @ U[xi]^T`` with the 3 time taps concatenated along K = 3 C_in (oneDNN, through
``torch.mm``), and ``A^T M A + bias`` is written into the ``[C_out, H, W]`` frame. :func:`winograd_frames`
reads the raw frames of the lean walk: the GroupNorm (as a per-channel affine), SiLU, replicate border and
causal front frames are applied inside the input transform, and a resnet's residual add inside the output
transform, so none of them costs a pass over memory.

Upsampler convs (nearest x2 + 3x3x3 conv, polyphase form, :func:`upsample_winograd`): every output phase is a
2x2 conv of the input, so F(2x2, 2x2) transforms the shared input tiles once and one GEMM per transformed
element covers all phases and channels; the output transform writes the phases interleaved.

The transforms are C++ (``csrc/winograd*.cpp``, :mod:`hyvideo.accel.cpu.native`; used unless ``HYVIDEO_NATIVE=0``
or the build fails, when :func:`winograd_usable` is False and ``F.conv3d`` runs). Measured in
docs/benchmarks.md section 2 (released decoder, 17 x 256 x 256, bf16, 2 threads, lean walk, A/B in one
process): decode 36.8 / 37.8 s vs 46.7 / 47.6 s with oneDNN's direct convs. Error: the transformed inputs and GEMM results are rounded to bfloat16, so each
conv is ~2x further from float32 than the direct bf16 conv (4-5e-3 vs ~2e-3 of the output's max); the
decoded video stays about as close to diffusers' bf16 decode as our direct decode does (5.4-5.9e-2 vs 4.7e-2
of the max, random weights, ~30 convs deep).
"""

from __future__ import annotations

import torch
from torch import nn

from hyvideo.accel.cpu import native

# F(2x2, 3x3) matrices (Lavin & Gray): U = G g G^T, V = B^T d B, Y = A^T (U * V) A.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# Largest transformed-input slab [16, tiles, T', C_in] in elements (16 MiB in bf16): allocations below glibc's
# mmap threshold are reused from the heap instead of being page-faulted in on every call.
SLAB_ELEMENTS = 1 << 23
# Measured per conv (bf16, 2 threads, docs/benchmarks.md, before the prologue fusion): 0.53-0.78x oneDNN's direct
# conv time at 256 and 512 output channels, 0.96-1.0x at 128; used from 128 up (the whole decode is faster with
# the 128-channel stage included). The 128 -> 3 conv_out stays direct: Winograd ran it no faster (377 vs 382 ms).
MIN_OUT_CHANNELS = 128


def winograd_usable(x: torch.Tensor, conv: nn.Conv3d) -> bool:
    """True where :func:`conv3d_winograd` may replace ``F.conv3d(x, conv.weight, conv.bias)``.

    x is the input ``[B, C_in, T, H, W]``, padded or not (padding by 1 keeps H and W even): CPU bfloat16
    inference, a 3x3x3 stride-1 ungrouped kernel with at least :data:`MIN_OUT_CHANNELS` outputs, even H and W,
    and the extension built.
    """
    if x.device.type != "cpu" or x.dtype != torch.bfloat16 or conv.weight.dtype != torch.bfloat16:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return False
    if conv.kernel_size != (3, 3, 3) or conv.stride != (1, 1, 1) or conv.groups != 1 or conv.dilation != (1, 1, 1):
        return False
    if conv.padding != (0, 0, 0) or conv.out_channels < MIN_OUT_CHANNELS:
        return False
    h, w = x.shape[-2:]
    return x.dim() == 5 and h >= 2 and w >= 2 and h % 2 == 0 and w % 2 == 0 and native.load()


def fused_usable(x: torch.Tensor, conv: nn.Module, act: nn.Module | None) -> bool:
    """True where :func:`winograd_frames` may run ``conv(act(norm(x)))`` for the lean decode.

    x is an unpadded frame chunk ``[B, C_in, n, H, W]``; conv a :class:`hyvideo.vae.causal_conv.CausalConv3d`
    with causal replicate padding ``(1, 1, 1, 1, 2, 0)`` (the released decoder's 3x3x3 convs) whose ``.conv``
    passes :func:`winograd_usable`; act None or SiLU.
    """
    if getattr(conv, "causal_padding", None) != (1, 1, 1, 1, 2, 0) or getattr(conv, "pad_mode", None) != "replicate":
        return False
    return (act is None or isinstance(act, nn.SiLU)) and winograd_usable(x, conv.conv)


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` per time tap: weight ``[C_out, C_in, 3, 3, 3]`` -> ``[16, C_out, 3 C_in]``, same dtype.

    Row ``xi = 4 a + b`` holds the (a, b) element of each 4x4 transformed kernel; K index ``t C_in + c``. One
    GEMM ``kron(G, G) [16, 9] @ [9, C_out 3 C_in]`` (G's entries are 0, +-1/2, 1: exact in bfloat16; bf16
    GEMMs accumulate in float32 and round once), 3-8x faster than an einsum in float32, so the lean decode
    transforms each kernel per call instead of keeping a resident copy.
    """
    c_out, c_in = weight.shape[:2]
    g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
    w9 = weight.reshape(c_out, c_in, 3, 9).permute(3, 0, 2, 1).reshape(9, -1)  # [9, C_out * 3 * C_in]
    return (torch.kron(g, g) @ w9).view(16, c_out, 3 * c_in)


def conv3d_winograd(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Valid 3x3x3 conv of a padded input by Winograd F(2x2, 3x3).

    Args:
        x: ``[B, C_in, T + 2, H + 2, W + 2]`` bfloat16 on CPU (already padded; H, W even).
        u: ``[16, C_out, 3 C_in]`` bfloat16 from :func:`winograd_weight`.
        bias: ``[C_out]`` or None.

    Returns:
        ``[B, C_out, T, H, W]`` bfloat16; equals ``F.conv3d(x, weight, bias)`` within bf16 rounding.

    Raises:
        RuntimeError: the extension is not built (check :func:`winograd_usable` first) or the shapes disagree.
    """
    b, _, tp, hp, wp = x.shape
    out = x.new_empty(b, u.shape[1], tp - 2, hp - 2, wp - 2)
    for i in range(b):
        winograd_frames(list(x[i].unbind(1)), u, bias, out[i], pad=0)
    return out


def winograd_frames(frames: list[torch.Tensor], u: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor, *,
                    pad: int, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                    silu: bool = False, accumulate: bool = False) -> None:
    """One sample's 3x3x3 conv from a list of input frames, written into ``out``; the prologue and epilogue fused.

    Computes ``out (+)= conv(pad(act(frames * scale + shift)))`` where the transforms read each input value once
    per tile: a GroupNorm (statistics folded into ``scale`` / ``shift``) and SiLU before the conv, the 1-pixel
    replicate border (``pad=1``), and a residual add (``accumulate``) cost no extra pass over memory.

    Args:
        frames: ``T + 2`` tensors ``[C_in, H_s, W_s]`` bfloat16 (views with contiguous rows; a frame may repeat,
            e.g. causal replicate padding in time); padded (``H_s = H + 2``) when ``pad=0``, else ``H_s = H``.
        u: ``[16, C_out, 3 C_in]`` bfloat16 from :func:`winograd_weight`.
        bias: ``[C_out]`` or None.
        out: ``[C_out, T, H, W]`` bfloat16 with unit stride along W (overwritten, or added to with accumulate).
        pad: 0 or 1 (replicate border read by clamping).
        scale, shift: ``[C_in]`` per-channel affine applied to the input first (both or neither).
        silu: SiLU after the affine (needs scale and shift).
        accumulate: add the conv to ``out`` instead of overwriting it.

    Raises:
        RuntimeError: the extension is not built or the shapes disagree.
    """
    ops = torch.ops.hyvideo_winograd  # (its operators are looked up inside _slab_gemms, after the load check)
    tp, (c, hs, ws) = len(frames), frames[0].shape
    t, h, w = tp - 2, hs + 2 * pad - 2, ws + 2 * pad - 2
    tw, th = w // 2, h // 2
    c_out = u.shape[1]
    if u.shape != (16, c_out, 3 * c) or out.shape != (c_out, t, h, w):
        raise RuntimeError(f"Winograd weight {tuple(u.shape)} / output {tuple(out.shape)} do not match {c} input "
                           f"channels and {t} x {h} x {w} outputs")
    _slab_gemms(lambda r0, n: ops.input_transform(frames, r0, n, pad, scale, shift, silu), u, th, tw, tp, c, 3,
                lambda m, f, r0: ops.output_transform(m, out[:, f], r0, bias, accumulate))


# F(2x2, 2x2) for the polyphase upsampler convs (csrc/winograd_up.cpp): U = G2 g G2^T per phase and time tap.
_G2 = ((1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


def up_usable(x: torch.Tensor, conv: nn.Conv3d, factor: tuple[int, int, int]) -> bool:
    """True where :func:`upsample_winograd` may run the polyphase upsample-conv of a frame chunk x.

    x ``[B, C_in, n, H, W]``: the conditions of :func:`winograd_usable` (CPU bf16 inference, 3x3x3 stride-1
    conv with at least :data:`MIN_OUT_CHANNELS` outputs, even H, W, kernels built) and factors ``(f_t, 2, 2)``
    with ``f_t`` 1 or 2 (the released upsamplers).
    """
    return factor[0] in (1, 2) and tuple(factor[1:]) == (2, 2) and winograd_usable(x, conv)


def up_weight(kernel: torch.Tensor) -> torch.Tensor:
    """Polyphase kernels ``[P C_out, C_in, k_t, 2, 2]`` -> ``[9, P C_out, k_t C_in]`` (K index ``t C_in + c``)."""
    n, c, kt = kernel.shape[:3]
    g = torch.tensor(_G2, dtype=kernel.dtype, device=kernel.device)
    w4 = kernel.reshape(n, c, kt, 4).permute(3, 0, 2, 1).reshape(4, -1)  # [4, P C_out * k_t * C_in]
    return (torch.kron(g, g) @ w4).view(9, n, kt * c)


def upsample_winograd(frames: list[torch.Tensor], u: torch.Tensor, bias: torch.Tensor | None,
                      outs: list[list[torch.Tensor]], phases: list[list[int]]) -> None:
    """One sample's polyphase upsample-conv of a chunk by Winograd F(2x2, 2x2), written into its output frames.

    Args:
        frames: the phase convs' input frames in time order, ``[C_in, H, W]`` bfloat16 views (unpadded: the
            replicate border is read by clamping; frames repeat where the causal time padding does).
        u: ``[9, P C_out, k_t C_in]`` from :func:`up_weight`; phase frame f reads ``frames[f : f + k_t]``.
        bias: ``[C_out]`` or None.
        outs: per phase frame, the upsampled output frames ``[C_out, 2H, 2W]`` it produces (unit stride along W).
        phases: per phase frame, the time phase of each of those output frames.

    Raises:
        RuntimeError: the kernels are not built or the shapes disagree.
    """
    ops = torch.ops.hyvideo_winograd_up
    tp, (c, h, w) = len(frames), frames[0].shape
    kt = u.shape[2] // c
    th, tw = h // 2 + 1, w // 2 + 1
    if u.shape[2] != kt * c or len(outs) != tp - kt + 1:
        raise RuntimeError(f"{tp} input frames, {len(outs)} phase frames and weights {tuple(u.shape)} disagree")
    _slab_gemms(lambda r0, n: ops.input_transform(frames, r0, n), u, th, tw, tp, c, kt,
                lambda m, f, r0: ops.output_transform(m, outs[f], phases[f], r0, bias))


def _slab_gemms(transform, u: torch.Tensor, th: int, tw: int, tp: int, c: int, kt: int, emit) -> None:
    """The GEMM loop shared by both Winograd convs, per slab of tile rows (at most :data:`SLAB_ELEMENTS`).

    ``transform(r0, n)`` gives the transformed input ``[X, n * tw, tp, c]`` of tile rows ``r0 .. r0 + n - 1``
    (X = 16 or 9 transformed elements); for each output frame f, ``m[xi] = V[xi][:, f:f + kt] @ u[xi]^T`` over
    its kt time taps (K = kt c), then ``emit(m, f, r0)`` runs the output transform.

    Raises:
        RuntimeError: hyvideo's C++ kernels are not built.
    """
    if not native.load():
        raise RuntimeError("hyvideo's C++ CPU kernels are not available (hyvideo.accel.cpu.native); use F.conv3d")
    n_xi = u.shape[0]
    rows = max(1, min(th, SLAB_ELEMENTS // (n_xi * tw * tp * c)))
    for r0 in range(0, th, rows):
        n = min(rows, th - r0)
        v = transform(r0, n).view(n_xi, n * tw, tp * c)
        m = v.new_empty(n_xi, n * tw, u.shape[1])
        for f in range(tp - kt + 1):
            for xi in range(n_xi):
                torch.mm(v[xi, :, f * c: (f + kt) * c], u[xi].t(), out=m[xi])
            emit(m, f, r0)
