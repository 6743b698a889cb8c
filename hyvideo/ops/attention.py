"""The single attention entry point of hyvideo (the only place that imports ``flash_attn``).

Backends:
- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` (CPU and GPU; default).
- ``"flash"``: ``flash_attn.flash_attn_varlen_func`` over the unpadded tokens (CUDA, fp16/bf16 only).
- ``"gemm"``: per (sample, head) GEMM -> softmax -> GEMM in the input dtype, padded keys dropped, queries
  chunked so a score block stays <= :data:`GEMM_SCORE_ELEMENTS`. On CPU in bf16 this is ~1.6x faster than
  PyTorch's CPU flash kernel (whose Q K^T tiles run at ~125 GFLOP/s; whole-row GEMMs run at ~270-320).
  Scores are rounded to the input dtype before the softmax, as in PyTorch's math backend and diffusers'
  ``AttnProcessor``; see ``tests/perf/test_bf16_dit.py`` and ``docs/benchmarks.md`` for the error.
- ``"naive"``: explicit softmax(QK^T/sqrt(d))V in float32; the slow reference for tests.
- ``"auto"``: ``"flash"`` when flash-attn is importable and the inputs allow it; ``"gemm"`` for bf16
  CPU tensors without a full ``attn_mask``; else ``"sdpa"``.

Padding follows the released model (spec section 1.9): a key-padding mask removes padded text tokens
from every valid query's keys. Outputs at padded *query* positions are unspecified (the released code
also produces garbage there) and never reach the image tokens.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

from hyvideo.ops import native

BACKENDS = ("auto", "sdpa", "flash", "gemm", "naive")
# Largest [queries, keys] score block of the "gemm" backend (2 MiB in bf16): queries go in equal chunks under it,
# so the scores stay in cache between Q K^T, the softmax and P V. bf16, 2 threads, 1344 queries x 1320 keys x
# 12 heads of 64: one block 26.5 ms, 2 chunks 23.1 ms, 3 chunks 22.9 ms, 5 chunks 24.5 ms.
GEMM_SCORE_ELEMENTS = 1 << 20
_HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def _flash_usable(q: torch.Tensor) -> bool:
    return _HAS_FLASH and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    key_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-head attention over ``[B, L, N_h, D_h]`` inputs.

    Args:
        q: queries ``[B, L_q, N_h, D_h]``.
        k: keys ``[B, L_k, N_h, D_h]``.
        v: values ``[B, L_k, N_h, D_h]``.
        key_mask: optional ``[B, L_k]`` bool (True = attend to this key). Padded keys are ignored by
            every query. Rows whose keys are all masked are not allowed.
        attn_mask: optional full bool mask broadcastable to ``[B, N_h, L_q, L_k]`` (True = attend).
            Used by the token refiner; mutually exclusive with ``key_mask``.
        backend: one of :data:`BACKENDS`.

    Returns:
        ``[B, L_q, N_h * D_h]`` in the dtype of ``q``. Softmax scale is ``1 / sqrt(D_h)``.

    Raises:
        ValueError: unknown backend, both masks given, or ``"flash"`` requested where it cannot run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; allowed: {BACKENDS}")
    if key_mask is not None and attn_mask is not None:
        raise ValueError("pass either key_mask or attn_mask, not both")
    b, lq, h, d = q.shape
    if backend == "auto":
        backend = "flash" if attn_mask is None and _flash_usable(q) else "sdpa"
        if backend == "sdpa" and attn_mask is None and _gemm_preferred(q):
            backend = "gemm"
    if backend == "flash":
        if attn_mask is not None or not _flash_usable(q):
            raise ValueError("flash backend needs flash-attn, CUDA fp16/bf16 inputs and no attn_mask")
        return _flash_varlen(q, k, v, key_mask).reshape(b, lq, h * d)
    if backend == "gemm":
        if attn_mask is not None:
            raise ValueError("gemm backend takes key_mask only, not a full attn_mask")
        return _gemm_attention(q, k, v, key_mask).reshape(b, lq, h * d)

    mask = attn_mask
    if key_mask is not None:
        mask = key_mask.bool()[:, None, None, :]  # [B, 1, 1, L_k]: no [L, L] tensor is built
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B, N_h, L, D_h]
    if backend == "naive":
        scores = qt.float() @ kt.float().transpose(-1, -2) / math.sqrt(d)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = (scores.softmax(-1) @ vt.float()).to(q.dtype)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, lq, h * d)


def _gemm_preferred(q: torch.Tensor) -> bool:
    return q.device.type == "cpu" and q.dtype == torch.bfloat16


def _gemm_attention(q, k, v, key_mask) -> torch.Tensor:
    """Attention as two dense GEMMs per (sample, head) with the softmax in between; returns [B, L_q, N_h, D_h].

    Padded keys are removed per sample (exactly what a -inf mask does) rather than masked, so a sample's
    GEMMs only span its valid keys. Queries go in equal chunks of at most GEMM_SCORE_ELEMENTS / L_k rows.
    """
    b, lq, h, d = q.shape
    out = q.new_empty(b, lq, h, d)  # GEMMs write each head's [rows, D_h] strided block in place: no transpose copy
    q = q * (1.0 / math.sqrt(d))  # scale the [L_q, D_h] queries, not the [L_q, L_k] scores
    for i in range(b):
        k_i, v_i = k[i], v[i]
        if key_mask is not None and not bool(key_mask[i].all()):
            keep = key_mask[i].bool().nonzero().squeeze(1)
            k_i, v_i = k_i[keep], v_i[keep]
        chunks = -(-lq * k_i.shape[0] // GEMM_SCORE_ELEMENTS)  # ceil: as few chunks as the bound allows ...
        rows = -(-lq // max(chunks, 1))  # ... of equal size
        for j in range(h):
            k_ij, v_ij = k_i[:, j], v_i[:, j]
            for r in range(0, lq, rows):
                scores = F.linear(q[i, r : r + rows, j], k_ij)  # [rows, L_k]; F.linear beats mm(q, k.t()) here
                torch.mm(softmax_(scores), v_ij, out=out[i, r : r + rows, j])
    return out


def softmax_(scores: torch.Tensor) -> torch.Tensor:
    """Row softmax of a score matrix ``[R, L_k]``, in place where hyvideo's C++ kernel runs (bf16 on CPU).

    The kernel (``csrc/softmax.cpp``, inference only) computes in float32 and rounds once to bfloat16, as
    ``Tensor.softmax`` does for bf16 input, in one read and one write; elsewhere (autograd, other dtypes or
    devices, ``HYVIDEO_NATIVE=0``) this is ``scores.softmax(-1)`` (a new tensor).
    """
    if (scores.device.type == "cpu" and scores.dtype == torch.bfloat16 and scores.stride(-1) == 1
            and not (torch.is_grad_enabled() and scores.requires_grad) and native.load()):
        return torch.ops.hyvideo_attention.softmax_(scores)
    return scores.softmax(-1)


def _flash_varlen(q, k, v, key_mask):
    """flash-attn varlen over the valid tokens of each sample; padded query rows return 0."""
    from flash_attn import flash_attn_varlen_func  # noqa: PLC0415 (optional dependency)

    b, lq, h, d = q.shape
    lk = k.shape[1]
    if key_mask is None:
        key_mask = torch.ones(b, lk, dtype=torch.bool, device=q.device)
    key_mask = key_mask.bool()
    q_mask = key_mask if lq == lk else torch.ones(b, lq, dtype=torch.bool, device=q.device)
    seqlens_q = q_mask.sum(1, dtype=torch.int32)
    seqlens_k = key_mask.sum(1, dtype=torch.int32)
    cu_q = F.pad(seqlens_q.cumsum(0, dtype=torch.int32), (1, 0))
    cu_k = F.pad(seqlens_k.cumsum(0, dtype=torch.int32), (1, 0))
    out_packed = flash_attn_varlen_func(
        q[q_mask], k[key_mask], v[key_mask], cu_q, cu_k, int(seqlens_q.max()), int(seqlens_k.max())
    )
    out = q.new_zeros(b, lq, h, d)
    out[q_mask] = out_packed
    return out
