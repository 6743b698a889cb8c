"""The single attention entry point of hyvideo: a registry of backends the models call by name.

Built-in backends (the only place that imports ``flash_attn``):
- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` (CPU and GPU); with trailing key padding
  (uneven prompt lengths in a batch) one unmasked call per sample, so the fused kernels still run.
- ``"flash"``: flash-attn 2 (CUDA, fp16/bf16): ``flash_attn_func`` when no key is padded, else
  ``flash_attn_varlen_func`` over the valid tokens, with the unpadding indices computed once per key mask.
- ``"naive"``: explicit softmax(QK^T/sqrt(d))V in float32; the slow reference for tests.
- ``"auto"``: ``"flash"`` where flash-attn imported and the inputs allow it (CUDA half precision, no full
  ``attn_mask``), else ``"sdpa"``.

Accelerated paths register more backends from outside (:func:`register_backend`; e.g. ``"gemm"`` by
:mod:`hyvideo.accel.cpu.attention`). flash-attn is imported once, when this module is imported: a wheel that
does not match torch logs one warning there and ``"auto"`` uses SDPA, instead of crashing in the first
attention call after the weights have loaded.

Padding follows the released model (spec section 1.9): a key-padding mask removes padded text tokens
from every valid query's keys. Outputs at padded *query* positions are unspecified (the released code
also produces garbage there) and never reach the image tokens.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def _import_flash():
    """``flash_attn`` or None; a broken install (e.g. built for another torch) is logged once, not raised."""
    try:
        import flash_attn  # noqa: PLC0415

        return flash_attn
    except ImportError as e:
        if getattr(e, "name", None) != "flash_attn":  # installed but broken (undefined symbol, wrong torch)
            log.warning("flash-attn is installed but failed to import (%s); using PyTorch SDPA", e)
        return None
    except Exception as e:  # noqa: BLE001 - an ABI mismatch can raise anything at import time
        log.warning("flash-attn is installed but failed to import (%s: %s); using PyTorch SDPA", type(e).__name__, e)
        return None


_FLASH = _import_flash()
AttentionFn = Callable[..., torch.Tensor]  # (q, k, v, key_mask) -> [B, L_q, N_h, D_h]
_BACKENDS: dict[str, AttentionFn] = {}


def register_backend(name: str, fn: AttentionFn) -> None:
    """Make ``fn(q, k, v, key_mask) -> [B, L_q, N_h, D_h]`` callable as ``attention(..., backend=name)``."""
    _BACKENDS[name] = fn


def backends() -> tuple[str, ...]:
    """Names accepted by :func:`attention` (``"auto"`` plus every registered backend)."""
    return ("auto", *_BACKENDS)


def flash_usable(q: torch.Tensor) -> bool:
    """True where the flash backend can run ``q``: flash-attn imported, CUDA, fp16 / bf16."""
    return _FLASH is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


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
        attn_mask: optional full bool mask broadcastable to ``[B, N_h, L_q, L_k]`` (True = attend); SDPA and
            the naive backend only (the token refiner). Mutually exclusive with ``key_mask``.
        backend: ``"auto"`` or a registered backend (:func:`backends`).

    Returns:
        ``[B, L_q, N_h * D_h]`` in the dtype of ``q``. Softmax scale is ``1 / sqrt(D_h)``.

    Raises:
        ValueError: unknown backend, both masks given, or a backend that cannot run these inputs.
    """
    if key_mask is not None and attn_mask is not None:
        raise ValueError("pass either key_mask or attn_mask, not both")
    b, lq, h, d = q.shape
    if backend == "auto":
        backend = "flash" if attn_mask is None and flash_usable(q) else "sdpa"
    if backend not in _BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; allowed: {backends()}")
    if attn_mask is not None:
        if backend not in ("sdpa", "naive"):
            raise ValueError(f"the {backend!r} backend takes key_mask only, not a full attn_mask")
        return _dense(q, k, v, attn_mask, naive=backend == "naive").reshape(b, lq, h * d)
    return _BACKENDS[backend](q, k, v, key_mask).reshape(b, lq, h * d)


class Attention(nn.Module):
    """Parameter-free module form of :func:`attention` with a fixed ``backend`` (no state-dict keys).

    The DiT blocks call attention through one of these, so a backend can be chosen, or the module swapped
    (e.g. Ulysses sequence parallel, :mod:`hyvideo.parallel.sequence_parallel`), from outside the model.
    """

    def __init__(self, backend: str = "auto"):
        super().__init__()
        self.backend = backend

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """q ``[B, L_q, N_h, D_h]``, k / v ``[B, L_k, N_h, D_h]``, key_mask ``[B, L_k]`` -> ``[B, L_q, N_h D_h]``."""
        return attention(q, k, v, key_mask=key_mask, backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


def _dense(q, k, v, mask, naive: bool) -> torch.Tensor:
    """SDPA or the float32 reference with a bool mask broadcastable to ``[B, N_h, L_q, L_k]`` (or None)."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # [B, N_h, L, D_h]
    if naive:
        scores = qt.float() @ kt.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = (scores.softmax(-1) @ vt.float()).to(q.dtype)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)
    return out.transpose(1, 2)


def _key_mask_4d(key_mask):
    return None if key_mask is None else key_mask.bool()[:, None, None, :]  # [B, 1, 1, L_k]: no [L, L] tensor


def _sdpa(q, k, v, key_mask):
    """SDPA; with padded keys, one unmasked call per sample over its valid key prefix when the padding is trailing
    (the DiT's ``[img, txt]`` keys: uneven prompt lengths in a batch), so the flash / fused kernels still run."""
    if key_mask is None:
        return _dense(q, k, v, None, naive=False)
    info = _unpad(key_mask.bool())
    if info.prefix_lengths is None or q.shape[0] == 1:
        return _dense(q, k, v, _key_mask_4d(key_mask), naive=False)
    out = q.new_empty(q.shape)
    for i, n in enumerate(info.prefix_lengths):  # queries past a sample's valid keys are padding: unspecified
        out[i: i + 1] = _dense(q[i: i + 1], k[i: i + 1, :n], v[i: i + 1, :n], None, naive=False)
    return out


def _naive(q, k, v, key_mask):
    return _dense(q, k, v, _key_mask_4d(key_mask), naive=True)


@dataclass
class _MaskInfo:
    indices: torch.Tensor  # [N_valid] flat indices of the valid tokens
    cu_seqlens: torch.Tensor  # [B + 1] int32
    max_len: int
    prefix_lengths: list[int] | None  # per-sample valid lengths when every sample's valid keys are a prefix


class _Unpad:
    """Valid-token indices, ``cu_seqlens``, lengths of a key mask, computed once per mask tensor.

    Every block of one DiT forward passes the same ``key_mask`` tensor, so the host syncs of ``nonzero`` and
    ``max`` happen once per forward instead of once per block. The last mask seen is remembered by identity and
    held (not by its address: the next batch's mask is often allocated where the freed one was, with the same
    shape and a fresh version counter, and would be served the previous batch's indices).
    """

    def __init__(self):
        self._mask = None
        self._version = -1
        self._value = None

    def __call__(self, mask: torch.Tensor) -> _MaskInfo:
        if mask is not self._mask or mask._version != self._version:
            lens = mask.sum(1, dtype=torch.int32)
            cu = F.pad(lens.cumsum(0, dtype=torch.int32), (1, 0))
            lengths = lens.tolist()
            positions = torch.arange(mask.shape[1], device=mask.device)
            prefix = bool((mask == (positions[None] < lens[:, None])).all())
            self._mask, self._version = mask, mask._version
            self._value = _MaskInfo(mask.flatten().nonzero().squeeze(1), cu, max(lengths), lengths if prefix else None)
        return self._value


_unpad = _Unpad()


def _flash(q, k, v, key_mask):
    """flash-attn: dense when nothing is padded, varlen over the valid tokens otherwise (padded queries -> 0)."""
    if not flash_usable(q):
        raise ValueError("the flash backend needs flash-attn and CUDA fp16/bf16 inputs")
    if key_mask is None:  # the DiT passes None when no text token is padded (checked once per forward)
        return _FLASH.flash_attn_func(q, k, v)
    b, lq, h, d = q.shape
    lk = k.shape[1]
    info = _unpad(key_mask.bool())
    k_idx, cu_k, max_k = info.indices, info.cu_seqlens, info.max_len
    if lq == lk:  # self-attention: padded queries are the padded keys
        q_idx, cu_q, max_q = k_idx, cu_k, max_k
    else:
        q_info = _Unpad()(torch.ones(b, lq, dtype=torch.bool, device=q.device))
        q_idx, cu_q, max_q = q_info.indices, q_info.cu_seqlens, q_info.max_len
    out = _FLASH.flash_attn_varlen_func(q.flatten(0, 1)[q_idx], k.flatten(0, 1)[k_idx], v.flatten(0, 1)[k_idx],
                                        cu_q, cu_k, max_q, max_k)
    return q.new_zeros(b * lq, h, d).index_copy_(0, q_idx, out).view(b, lq, h, d)


register_backend("sdpa", _sdpa)
register_backend("flash", _flash)
register_backend("naive", _naive)
