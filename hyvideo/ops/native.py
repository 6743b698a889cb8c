"""hyvideo's C++ CPU kernels (``csrc/*.cpp``): one extension built on first use, or a clean fallback.

The kernels (``winograd.cpp`` / ``winograd_up.cpp``: Winograd transforms for the lean VAE decode's convs with
GroupNorm + SiLU + padding + residual fused in; ``group_stats.cpp``: GroupNorm statistics in one read;
``softmax.cpp``: in-place bf16 softmax for the DiT's attention; ``qk_norm_rope.cpp``: QK RMSNorm + RoPE in one
pass) are compiled by :func:`torch.utils.cpp_extension.load` the first time
:func:`load` is called (a C++ compiler and ninja; ~30 s on 2 cores, once: the build is cached under
``~/.cache/torch_extensions`` and rebuilt only when a source changes). They register ``torch.ops.hyvideo_*``
operators. Set ``HYVIDEO_NATIVE=0`` to never build or use them; where the build fails (no compiler), one
warning is logged and every caller keeps its PyTorch path, so results never depend on the build succeeding.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)
ENV = "HYVIDEO_NATIVE"
_CSRC = Path(__file__).parent / "csrc"
_LOADED: bool | None = None


def enabled() -> bool:
    """False when ``HYVIDEO_NATIVE=0`` is set (the kernels are then never built or used)."""
    return os.environ.get(ENV, "1") != "0"


def load() -> bool:
    """Build / load the extension once; True when its operators are registered.

    Returns False (after one warning) when it cannot be built, and without trying when :func:`enabled` is
    False or PyTorch lacks oneDNN (the kernels hand their GEMMs to oneDNN through ``torch.mm``).
    """
    global _LOADED
    if _LOADED is None:
        _LOADED = False
        if enabled() and torch.backends.mkldnn.is_available():
            try:
                from torch.utils.cpp_extension import load as build  # noqa: PLC0415

                build(name="hyvideo_cpu", sources=sorted(str(p) for p in _CSRC.glob("*.cpp")),
                      extra_include_paths=[str(_CSRC)], extra_cflags=["-O3", "-march=native", "-fopenmp"],
                      extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
                _LOADED = True
            except Exception as e:  # no compiler / ninja: callers keep their PyTorch paths
                log.warning("hyvideo C++ CPU kernels unavailable (%s: %s); using PyTorch ops", type(e).__name__, e)
    return _LOADED
