"""The one capability check of the accelerated paths: what this CPU / build can do, and why a path is off.

Every accelerated path asks :func:`check` whether it applies, and gets a :class:`Decision` with the reason
that :func:`hyvideo.accel.apply` logs. The facts come from:

- the CPU's instruction sets (``/proc/cpuinfo`` flags): bf16 is *native* with AVX512-BF16 or AMX-BF16 (bf16
  dot products in hardware); with AVX-512 (BW) oneDNN runs bf16 by conversion (slower than fp32), and on
  AVX2-only CPUs oneDNN has no bf16 kernels at all (its bf16 weight reorder raises), where PyTorch emulates
  bf16 about 4x slower than fp32. ``ONEDNN_MAX_CPU_ISA`` caps what oneDNN may use (e.g. ``AVX2`` makes this
  machine behave like an AVX2 one for oneDNN), so it is honoured too;
- PyTorch's build (oneDNN present; oneDNN's own bf16 check; a probe that oneDNN packs float32 weights, which it
  does on every ISA it runs on, for the float32 path where bf16 is emulated);
- a C++ compiler and ninja for hyvideo's extension (:mod:`hyvideo.accel.cpu.native`);
- autograd: the fast CPU kernels have no backward, so with gradients required the plain ops run.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
from dataclasses import dataclass

import torch

# oneDNN ISA names (ONEDNN_MAX_CPU_ISA) in increasing order; bf16 compute is native from AVX512_CORE_BF16 on.
_ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL")
_BF16_ISA_LEVEL = _ONEDNN_ISAS.index("AVX512_CORE_BF16")


@dataclass(frozen=True)
class Decision:
    """Whether one accelerated path runs, and why (one short phrase for the log line)."""

    name: str
    on: bool
    reason: str

    def __bool__(self) -> bool:
        return self.on

    def __str__(self) -> str:
        return f"{self.name} {'on' if self.on else 'off'} ({self.reason})"


@dataclass(frozen=True)
class CpuInfo:
    """Facts about the CPU and PyTorch's CPU build.

    Attributes:
        model: CPU model name.
        flags: lower-case ISA flags (``/proc/cpuinfo``; empty where unreadable).
        onednn: PyTorch has oneDNN (``torch.backends.mkldnn``).
        onednn_bf16: oneDNN can run bf16 primitives on this CPU (AVX512BW, AVX-NE-CONVERT or AMX).
        onednn_fp32_packing: oneDNN packs float32 linear weights here (any ISA oneDNN runs on, AVX2 included).
        isa_cap: ``ONEDNN_MAX_CPU_ISA`` if set (upper-case), else None.
    """

    model: str
    flags: frozenset
    onednn: bool
    onednn_bf16: bool
    onednn_fp32_packing: bool
    isa_cap: str | None

    @property
    def isa(self) -> str:
        """The best bf16-relevant ISA class: ``amx_bf16``, ``avx512_bf16``, ``avx512``, ``avx2`` or ``baseline``."""
        for flag, name in (("amx_bf16", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512bw", "avx512"),
                           ("avx2", "avx2")):
            if flag in self.flags:
                return name
        return "baseline"

    @property
    def capped(self) -> bool:
        """True where ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN below its bf16 instructions."""
        if self.isa_cap is None or self.isa_cap not in _ONEDNN_ISAS:
            return False
        return _ONEDNN_ISAS.index(self.isa_cap) < _BF16_ISA_LEVEL

    @property
    def native_bf16(self) -> bool:
        """bf16 GEMMs run in hardware (AVX512-BF16 / AMX) through oneDNN: bf16 beats fp32 on this CPU."""
        return self.isa in ("amx_bf16", "avx512_bf16") and self.onednn and self.onednn_bf16 and not self.capped

    def describe(self) -> str:
        bf16 = "native bf16" if self.native_bf16 else "bf16 emulated"
        cap = f", ONEDNN_MAX_CPU_ISA={self.isa_cap}" if self.isa_cap else ""
        return f"{self.model or platform.machine()} ({self.isa}, {bf16}{cap})"


def _read_cpuinfo() -> tuple[str, frozenset]:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return platform.processor(), frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.lower().split())
    return model, flags


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (read once per process)."""
    model, flags = _read_cpuinfo()
    onednn = torch.backends.mkldnn.is_available()
    onednn_bf16 = False
    if onednn and hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported"):
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return CpuInfo(model, flags, onednn, onednn_bf16, onednn and _fp32_packing_works(), cap.upper() if cap else None)


def _fp32_packing_works() -> bool:
    """Probe: oneDNN reorders a small float32 linear weight and runs a GEMM on it (no ISA list to keep)."""
    try:
        with torch.inference_mode():
            w = torch.ones(8, 8)
            out = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 8), torch.ops.mkldnn._reorder_linear_weight(w),
                                                     None, "none", [], "")
        return bool((out == 8).all())
    except (RuntimeError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def compiler_available() -> bool:
    """A C++ compiler and ninja for ``torch.utils.cpp_extension`` (the extension's build tools)."""
    from torch.utils.cpp_extension import is_ninja_available  # noqa: PLC0415

    cxx = os.environ.get("CXX", "c++")
    return shutil.which(cxx) is not None and is_ninja_available()


def preferred_cpu_dtype() -> torch.dtype:
    """The faster inference dtype on this CPU: bf16 where it is native, float32 where bf16 is emulated."""
    return torch.bfloat16 if cpu_info().native_bf16 else torch.float32


def _cpu_onednn_inference(name: str, device: torch.device | str, dtype: torch.dtype, want: torch.dtype,
                          grad: bool) -> Decision | None:
    """The "off" decision of a CPU oneDNN inference path (not CPU, another dtype, gradients, no oneDNN), else None."""
    if torch.device(device).type != "cpu":
        return Decision(name, False, f"device {torch.device(device).type}")
    if dtype != want:
        return Decision(name, False, f"dtype {str(dtype).replace('torch.', '')}")
    if grad:
        return Decision(name, False, "gradients needed")
    if not cpu_info().onednn:
        return Decision(name, False, "PyTorch without oneDNN")
    return None


def check_cpu_bf16(name: str, device: torch.device | str, dtype: torch.dtype, grad: bool) -> Decision:
    """Whether a CPU bf16 inference fast path (oneDNN packed / fused linears, gemm attention) applies.

    Conditions, in order: device is CPU, dtype is bf16, no gradients needed, oneDNN present, bf16 native.
    """
    off = _cpu_onednn_inference(name, device, dtype, torch.bfloat16, grad)
    if off is not None:
        return off
    info = cpu_info()
    if not info.native_bf16:
        return Decision(name, False, f"bf16 not native on {info.isa}" + (" (capped)" if info.capped else ""))
    return Decision(name, True, info.isa)


def check_cpu_fp32(name: str, device: torch.device | str, dtype: torch.dtype, grad: bool) -> Decision:
    """Whether the CPU float32 inference path (oneDNN-packed linears) applies.

    Conditions, in order: device is CPU, dtype is float32, no gradients needed, oneDNN present and able to pack
    float32 weights. oneDNN picks its own kernels for the CPU (AVX2, AVX-512, AMX), so no ISA is checked here.
    """
    off = _cpu_onednn_inference(name, device, dtype, torch.float32, grad)
    if off is not None:
        return off
    info = cpu_info()
    if not info.onednn_fp32_packing:
        return Decision(name, False, "oneDNN cannot pack float32 weights here")
    return Decision(name, True, info.isa + (f", oneDNN capped at {info.isa_cap}" if info.isa_cap else ""))


def check_native(name: str, device: torch.device | str, dtype: torch.dtype, grad: bool) -> Decision:
    """Whether a path built on hyvideo's C++ kernels applies: :func:`check_cpu_bf16`, then the extension."""
    from hyvideo.accel.cpu import native  # noqa: PLC0415

    base = check_cpu_bf16(name, device, dtype, grad)
    if not base:
        return base
    if not native.enabled():
        return Decision(name, False, f"{native.ENV}=0")
    if not compiler_available():
        return Decision(name, False, "no C++ compiler / ninja")
    if not native.load():
        return Decision(name, False, "C++ kernels failed to build")
    return Decision(name, True, base.reason)
