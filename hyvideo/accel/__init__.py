"""Everything that makes inference faster, applied from outside the models through one call: :func:`apply`.

The model files (``hyvideo/models``, ``hyvideo/vae``) are the math once; this package swaps in faster forms with
the same parameters and state-dict keys, or hooks around them, after asking :mod:`hyvideo.accel.capability`
what the machine can do:

- ``parallel``: Ulysses sequence parallel (:mod:`hyvideo.parallel.sequence_parallel`, hooks + attention swap);
- ``step_cache``: first-block cache (:mod:`hyvideo.accel.step_cache`);
- ``fp8``: FP8 block weights (:mod:`hyvideo.accel.fp8`; built at load time by ``checkpoint.io.load_dit``);
- ``offload``: DiT block streaming (:mod:`hyvideo.accel.offload`);
- CPU bf16 where bf16 is native (:mod:`hyvideo.accel.cpu`): oneDNN-packed linears, GELU fused into GEMMs,
  the ``gemm`` attention backend, C++ kernels (QK norm + RoPE, softmax, GroupNorm statistics, Winograd convs);
- CPU float32 (where bf16 is emulated): oneDNN-packed linears;
- elsewhere: the lean blocks (:mod:`hyvideo.accel.lean_blocks`);
- VAE: faster conv forms on every device (:mod:`hyvideo.accel.vae_convs`) and, on CPU, the frame-chunked
  decoder walk (:mod:`hyvideo.accel.cpu.lean_decode`).

:func:`apply` prepares models for inference (eval mode, frozen weights) and logs one line saying which paths
it chose and why. Training never calls it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hyvideo.accel.capability import Decision, check_cpu_bf16, check_cpu_fp32, check_native, cpu_info

log = logging.getLogger(__name__)
# Below this decoder width the conv forms and the chunked walk cost more than they save: on 2 CPU threads a VAE
# of width 64 decoded 4.5 s plain vs 5.4 s with the fast convs and 7.2 s with the chunked walk too (bf16), a
# width-8 one 4.8 s vs 6.0 / 11.4 s (fp32); the released width 128 gained 14-21 % from the fast convs.
MIN_FAST_VAE_WIDTH = 128


@dataclass
class AccelOptions:
    """What the caller asks for (CLI flags); what actually runs also depends on the machine.

    Attributes:
        device: the compute device.
        attn_backend: ``"auto"`` (per capability) or a backend name forced on every DiT attention.
        cache_threshold: first-block step cache threshold (0 = off).
        sequential_offload: stream the DiT's blocks from CPU memory (see :mod:`hyvideo.accel.offload`).
        sp_group: Ulysses process group (None or size 1 = off).
        cpu_paths: allow the CPU bf16 paths (False forces the plain ops; they still need the capability).
        min_fast_vae_width: the VAE conv forms and the chunked decode apply from this decoder width up
            (:data:`MIN_FAST_VAE_WIDTH`; narrower VAEs run faster plain).
    """

    device: torch.device | str = "cpu"
    attn_backend: str = "auto"
    cache_threshold: float = 0.0
    sequential_offload: bool = False
    sp_group: object = None
    cpu_paths: bool = True
    min_fast_vae_width: int = MIN_FAST_VAE_WIDTH


@dataclass
class AccelPlan:
    """What :func:`apply` did: the decisions (with reasons) and the handles that undo stateful paths."""

    decisions: list[Decision] = field(default_factory=list)
    step_cache: object = None
    offload: object = None

    def __str__(self) -> str:
        return "; ".join(str(d) for d in self.decisions)

    def on(self, name: str) -> bool:
        return any(d.name == name and d.on for d in self.decisions)


def _dtype(module: nn.Module) -> torch.dtype:
    return next((p.dtype for p in module.parameters() if p.is_floating_point() and p.dtype.itemsize > 1),
                torch.float32)


def apply(dit: nn.Module | None = None, vae: nn.Module | None = None,
          options: AccelOptions | None = None) -> AccelPlan:
    """Apply every accelerated path that fits the options and the machine; log one line; return the plan.

    Args:
        dit: :class:`hyvideo.models.dit.HYVideoDiffusionTransformer` (already on its device / dtype), or None.
        vae: :class:`hyvideo.vae.autoencoder.AutoencoderKLCausal3D`, or None.
        options: see :class:`AccelOptions`.

    Returns:
        The :class:`AccelPlan`.
    """
    options = options or AccelOptions()
    device = torch.device(options.device)
    plan = AccelPlan()
    for model in (dit, vae):
        if model is not None:
            model.eval().requires_grad_(False)
    if dit is not None:
        _apply_dit(dit, device, options, plan)
    if vae is not None:
        _apply_vae(vae, device, options, plan)
    if device.type == "cuda":  # the VAE's conv shapes repeat across tiles and steps: keep the autotuned kernels
        torch.backends.cudnn.benchmark = True
    where = cpu_info().describe() if device.type == "cpu" else str(device)
    log.info("accel on %s: %s", where, plan)
    return plan


def _apply_dit(dit: nn.Module, device: torch.device, options: AccelOptions, plan: AccelPlan) -> None:
    from hyvideo.accel.fp8 import FP8Linear  # noqa: PLC0415
    from hyvideo.ops.attention import Attention  # noqa: PLC0415

    dtype = _dtype(dit)
    d = plan.decisions
    n_fp8 = sum(isinstance(m, FP8Linear) for m in dit.modules())
    d.append(Decision("fp8", n_fp8 > 0, f"{n_fp8} block linears" if n_fp8 else "not requested"))
    group = options.sp_group
    degree = torch.distributed.get_world_size(group) if group is not None else 1
    if degree > 1:
        from hyvideo.parallel.sequence_parallel import enable_sequence_parallel  # noqa: PLC0415

        enable_sequence_parallel(dit, group)
    d.append(Decision("ulysses", degree > 1, f"degree {degree}"))
    cpu = check_cpu_bf16("cpu-bf16", device, dtype, grad=False) if options.cpu_paths else \
        Decision("cpu-bf16", False, "disabled")
    d.append(cpu)
    if cpu:
        from hyvideo.accel.cpu.dit import use_cpu_blocks  # noqa: PLC0415

        use_cpu_blocks(dit)
        d.append(_pack_dit_linears(dit, "packed-linears"))
        d.append(check_native("cpu-kernels", device, dtype, grad=False))
    else:  # portable: lean blocks (row-split / concat-free GEMMs, in-place GELU, concat-free joint RoPE)
        from hyvideo.accel.lean_blocks import use_lean_blocks  # noqa: PLC0415

        fp32 = check_cpu_fp32("cpu-fp32-packed", device, dtype, grad=False) if options.cpu_paths else \
            Decision("cpu-fp32-packed", False, "disabled")
        d.append(_pack_dit_linears(dit, fp32.name, fp32.reason) if fp32 else fp32)
        n = use_lean_blocks(dit)
        d.append(Decision("lean-blocks", n > 0, f"{n} modules"))
    backend = options.attn_backend
    if backend == "auto" and cpu:
        backend = "gemm"
    if backend == "gemm":
        import hyvideo.accel.cpu.attention  # noqa: F401, PLC0415 - registers the "gemm" backend
    for m in dit.modules():
        if isinstance(m, Attention):
            m.backend = backend
    d.append(Decision(f"attention={backend}", True, "requested" if options.attn_backend != "auto" else "auto"))
    if options.cache_threshold > 0:
        from hyvideo.accel.step_cache import enable_step_cache  # noqa: PLC0415

        plan.step_cache = enable_step_cache(dit, options.cache_threshold, group if degree > 1 else None)
    d.append(Decision("step-cache", options.cache_threshold > 0, f"threshold {options.cache_threshold}"))
    if options.sequential_offload:
        from hyvideo.accel.offload import enable_sequential_offload  # noqa: PLC0415

        plan.offload = enable_sequential_offload(dit, device)
    d.append(Decision("block-offload", options.sequential_offload, "requested" if options.sequential_offload
                      else "not requested"))


def _pack_dit_linears(dit: nn.Module, name: str, reason: str = "") -> Decision:
    """oneDNN-pack the DiT's linears (one extra copy of their weights) if the copy fits in half the free memory;
    the decision ``name``, its ``reason`` extended by the count and the copy's size (or why it was skipped)."""
    from hyvideo.accel.cpu.linear import linear_weight_bytes, pack_linear_weights  # noqa: PLC0415

    need, free = linear_weight_bytes(dit), _available_memory()
    if free is not None and need > free // 2:
        return Decision(name, False, f"packed copies need {need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB available")
    n = pack_linear_weights(dit)
    return Decision(name, n > 0, ", ".join(r for r in (reason, f"{n} linears, +{need / 2**20:.0f} MiB") if r))


def _available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where unreadable)."""
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
        return next((int(ln.split()[1]) * 1024 for ln in lines if ln.startswith("MemAvailable:")), None)
    except (OSError, ValueError, IndexError):
        return None


def _apply_vae(vae: nn.Module, device: torch.device, options: AccelOptions, plan: AccelPlan) -> None:
    from hyvideo.accel.vae_convs import use_fast_convs  # noqa: PLC0415

    width = vae.config["block_out_channels"][0] if hasattr(vae, "config") else options.min_fast_vae_width
    if width < options.min_fast_vae_width:
        reason = f"width {width} < {options.min_fast_vae_width}: the plain convs are faster"
        plan.decisions += [Decision("vae-fast-convs", False, reason), Decision("vae-lean-decode", False, reason)]
        return
    n = use_fast_convs(vae)
    plan.decisions.append(Decision("vae-fast-convs", n > 0, f"{n} convs"))
    lean = device.type == "cpu" and options.cpu_paths
    if lean:
        from hyvideo.accel.cpu.lean_decode import LeanDecoderCausal3D  # noqa: PLC0415

        vae.decoder.__class__ = LeanDecoderCausal3D
    plan.decisions.append(Decision("vae-lean-decode", lean, "CPU" if lean else f"device {device.type}"))
    if lean:
        kernels = check_native("vae-winograd", device, _dtype(vae), grad=False)
        vae.decoder.kernels = bool(kernels)
        plan.decisions.append(kernels)
