"""hyvideo's C++ CPU kernels (``csrc/*.cpp``): one extension built on first use, or a clean fallback.

The kernels (``winograd.cpp`` / ``winograd_up.cpp``: Winograd transforms for the lean VAE decode's convs with
GroupNorm + SiLU + padding + residual fused in; ``group_stats.cpp``: GroupNorm statistics in one read;
``softmax.cpp``: in-place bf16 softmax for the gemm attention; ``qk_norm_rope.cpp``: QK RMSNorm + RoPE in one
pass) are compiled by :func:`torch.utils.cpp_extension.load` the first time :func:`load` is called (a C++
compiler and ninja; ~1 min on 2 cores, once). They register ``torch.ops.hyvideo_*`` operators.

The build is per CPU flavour: it is compiled with ``-march=native``, so its name (and cache folder under
``~/.cache/torch_extensions``) carries a hash of this CPU's ISA flags, and a machine with another CPU that
shares the cache builds its own copy instead of loading one that would crash it. A lock left by a killed build
is removed once it is older than :data:`BUILD_TIMEOUT_S` (``HYVIDEO_NATIVE_BUILD_TIMEOUT``); while another
process holds a fresh lock, this one waits at most that long and then runs the PyTorch ops, with one warning.
Set ``HYVIDEO_NATIVE=0`` to never build or use the kernels; where the build fails (no compiler), one warning
is logged and every caller keeps its PyTorch path, so results never depend on the build succeeding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)
ENV = "HYVIDEO_NATIVE"
TIMEOUT_ENV = "HYVIDEO_NATIVE_BUILD_TIMEOUT"
BUILD_TIMEOUT_S = 600.0  # a normal build takes ~1 min on 2 cores
_CSRC = Path(__file__).parent / "csrc"
_LOADED: bool | None = None


def enabled() -> bool:
    """False when ``HYVIDEO_NATIVE=0`` is set (the kernels are then never built or used)."""
    return os.environ.get(ENV, "1") != "0"


def flavour() -> str:
    """Extension name for this CPU: ``hyvideo_cpu_<hash of the ISA flags>`` (the build uses -march=native)."""
    from hyvideo.accel.capability import cpu_info  # noqa: PLC0415

    key = " ".join(sorted(cpu_info().flags)) + "|" + torch.__version__
    return "hyvideo_cpu_" + hashlib.sha1(key.encode()).hexdigest()[:10]


def build_dir(name: str) -> Path:
    """The cache folder ``torch.utils.cpp_extension`` builds ``name`` in."""
    from torch.utils.cpp_extension import _get_build_directory  # noqa: PLC0415

    return Path(_get_build_directory(name, verbose=False))


def _timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, BUILD_TIMEOUT_S))
    except ValueError:
        return BUILD_TIMEOUT_S


def _owner_alive(folder: Path) -> bool | None:
    """Whether the process that wrote ``folder/lock.owner`` (``pid host``) still runs; None if unknown."""
    try:
        pid, host = (folder / "lock.owner").read_text().split()
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def wait_for_lock(folder: Path, timeout_s: float) -> bool:
    """Make sure no stale build lock blocks ``folder``; True when a build may start.

    The lock is stale, and removed with a warning, when the process that took it is gone (its pid is in
    ``lock.owner``) or, for a lock without owner, when it is older than ``timeout_s``. A live owner's lock is
    waited for (one log line), at most ``timeout_s``; then False.
    """
    lock, start, told = folder / "lock", time.time(), False
    while lock.exists():
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            break
        alive = _owner_alive(folder)
        if alive is False or (alive is None and age > timeout_s):
            log.warning("removing a stale C++ build lock %s (%s); rebuilding", lock,
                        "its build process is gone" if alive is False else f"{age:.0f} s old")
            lock.unlink(missing_ok=True)
            break
        if time.time() - start > timeout_s:
            return False
        if not told:
            log.warning("waiting for another process to finish building hyvideo's C++ kernels (%s, at most %.0f s)",
                        lock, timeout_s)
            told = True
        time.sleep(0.5)
    return True


def load() -> bool:
    """Build / load the extension once; True when its operators are registered.

    Returns False (after one warning) when it cannot be built or another build holds the lock too long, and
    without trying when :func:`enabled` is False, PyTorch lacks oneDNN (the kernels hand their GEMMs to
    oneDNN through ``torch.mm``) or there is no C++ compiler / ninja.
    """
    global _LOADED
    if _LOADED is None:
        from hyvideo.accel.capability import compiler_available  # noqa: PLC0415

        _LOADED = False
        if enabled() and torch.backends.mkldnn.is_available() and compiler_available():
            _LOADED = _build()
    return _LOADED


def _build() -> bool:
    from torch.utils.cpp_extension import load as build  # noqa: PLC0415

    try:
        name = flavour()
        folder = build_dir(name)
        if not wait_for_lock(folder, _timeout()):
            log.warning("another process has been building hyvideo's C++ kernels in %s for over %.0f s; using "
                        "PyTorch ops (delete %s if no build is running)", folder, _timeout(), folder / "lock")
            return False
        owner = folder / "lock.owner"
        owner.write_text(f"{os.getpid()} {socket.gethostname()}")
        try:
            build(name=name, sources=sorted(str(p) for p in _CSRC.glob("*.cpp")), extra_include_paths=[str(_CSRC)],
                  extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                  build_directory=str(folder), is_python_module=False, verbose=False)
        finally:
            owner.unlink(missing_ok=True)
        return True
    except Exception as e:  # noqa: BLE001 - no compiler / ninja: callers keep their PyTorch paths
        log.warning("hyvideo C++ CPU kernels unavailable (%s: %s); using PyTorch ops", type(e).__name__, e)
        return False
