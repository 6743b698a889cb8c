"""Cache keys for tensors derived from weights (folded VAE kernels, packed linear weights)."""

from __future__ import annotations

import torch


def weight_stamp(t: torch.Tensor) -> tuple:
    """``(storage pointer, version, dtype, device)`` of ``t``: changes when ``t`` is replaced or updated in place.

    Inference tensors (created under ``torch.inference_mode``, e.g. a model loaded inside it) keep no version
    counter; they are keyed by storage alone (version -1), since they cannot be updated outside inference mode.
    """
    return (t.data_ptr(), -1 if t.is_inference() else t._version, t.dtype, t.device)
