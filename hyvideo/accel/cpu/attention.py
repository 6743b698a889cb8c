"""The ``"gemm"`` attention backend for CPU bf16 inference, registered with :mod:`hyvideo.ops.attention`.

Per (sample, head): ``F.linear(q, k)`` -> softmax -> ``mm(p, v)`` in the input dtype, padded keys dropped, queries
chunked so a score block stays <= :data:`GEMM_SCORE_ELEMENTS`. On CPU with native bf16 this is ~1.6x faster than
PyTorch's CPU flash kernel (whose Q K^T tiles run at ~125 GFLOP/s; whole-row GEMMs run at ~270-320). Scores are
rounded to bf16 before the softmax, as in PyTorch's math backend and diffusers' ``AttnProcessor``; see
``tests/accel/test_cpu_dit.py`` and ``docs/benchmarks.md`` for the error. Where hyvideo's C++ kernels are built
the softmax runs in place (:func:`softmax_`).

Inference only: the GEMMs write into a preallocated output (``mm(out=)`` has no backward), so when gradients
are needed this backend hands the call to SDPA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hyvideo.accel.cpu import native
from hyvideo.ops.attention import attention, register_backend

# Largest [queries, keys] score block (2 MiB in bf16): queries go in equal chunks under it, so the scores stay
# in cache between Q K^T, the softmax and P V. bf16, 2 threads, 1344 queries x 1320 keys x 12 heads of 64: one
# block 26.5 ms, 2 chunks 23.1 ms, 3 chunks 22.9 ms, 5 chunks 24.5 ms.
GEMM_SCORE_ELEMENTS = 1 << 20


def gemm_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Attention as two dense GEMMs per (sample, head) with the softmax in between.

    q ``[B, L_q, N_h, D_h]``, k / v ``[B, L_k, N_h, D_h]``, key_mask ``[B, L_k]`` bool or None ->
    ``[B, L_q, N_h, D_h]``. Padded keys are removed per sample (exactly what a -inf mask does), so a sample's
    GEMMs only span its valid keys.
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return attention(q, k, v, key_mask=key_mask, backend="sdpa").unflatten(-1, q.shape[-2:])
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
                scores = F.linear(q[i, r: r + rows, j], k_ij)  # [rows, L_k]; F.linear beats mm(q, k.t()) here
                torch.mm(softmax_(scores), v_ij, out=out[i, r: r + rows, j])
    return out


def softmax_(scores: torch.Tensor) -> torch.Tensor:
    """Row softmax of a score matrix ``[R, L_k]``, in place where hyvideo's C++ kernel runs (bf16 on CPU).

    The kernel (``csrc/softmax.cpp``) computes in float32 and rounds once to bfloat16, as ``Tensor.softmax``
    does for bf16 input, in one read and one write; elsewhere (other dtypes or devices, autograd,
    ``HYVIDEO_NATIVE=0``, no compiler) this is ``scores.softmax(-1)`` (a new tensor).
    """
    if (scores.device.type == "cpu" and scores.dtype == torch.bfloat16 and scores.stride(-1) == 1
            and not (torch.is_grad_enabled() and scores.requires_grad) and native.load()):
        return torch.ops.hyvideo_attention.softmax_(scores)
    return scores.softmax(-1)


register_backend("gemm", gemm_attention)
