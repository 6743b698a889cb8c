"""Applying LoRAs to a hyvideo DiT at sampling time: load (several, each with a scale), fuse / unfuse, unload.

Adapters are peft LoRA layers (``peft.tuners.lora.Linear`` around our ``nn.Linear``), injected on the released
module names; each loaded file is one named peft adapter and all loaded adapters are active together, so the
linear computes ``W x + sum_i scale_i * alpha_i / r_i * B_i A_i x``. Fusing merges the active adapters into the
base weights with peft's ``merge`` (no per-step LoRA cost); unfusing restores the base weights exactly from a
kept copy (peft's subtraction alone leaves rounding residue).

A DiT with adapters has the base weights under ``<module>.base_layer.weight``; :func:`unload_lora` puts the plain
linears back, so ``state_dict()`` again has the released keys and loads strictly.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from hyvideo.lora.formats import LoraFormatError, LoraState, lora_config_kwargs, parse_lora
from hyvideo.lora.io import read_lora_file
from hyvideo.lora.keymap import ModelKeys
from hyvideo.utils.modules import clean_name

_ORIGINAL = "_hyvideo_unfused_weight"  # attribute on a fused peft layer: the base weight before fusing (CPU)


def lora_layers(dit: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(module name, peft LoRA layer)]`` of the DiT, in module order."""
    from peft.tuners.lora import LoraLayer

    return [(clean_name(n), m) for n, m in dit.named_modules() if isinstance(m, LoraLayer)]


def adapter_names(dit: nn.Module) -> list[str]:
    """Names of the adapters on the DiT, in the order they were added."""
    return list(getattr(dit, "peft_config", {}))


def _is_fused(dit: nn.Module) -> bool:
    return any(m.merged for _, m in lora_layers(dit))


def inject_adapter(dit: nn.Module, config, name: str) -> None:
    """Add peft adapter ``name`` with ``config`` (a ``peft.LoraConfig``) to the DiT; every adapter stays active.

    The base parameters are frozen (peft marks only adapters trainable); adapters whose config has
    ``inference_mode=True`` are frozen too.

    Raises:
        ValueError: the name is taken or not a valid identifier, or the DiT is fused (unfuse first).
    """
    from peft.functional import inject_adapter_in_model

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"adapter name must be an identifier (letters, digits, _), got {name!r}")
    if name in adapter_names(dit):
        raise ValueError(f"an adapter named {name!r} is already on the DiT (have {adapter_names(dit)})")
    if _is_fused(dit):
        raise ValueError("the DiT has fused LoRAs; call unfuse_lora(dit) before adding another")
    custom = _register_fp8_linears(dit, config)
    with warnings.catch_warnings():  # expected: a second adapter joining peft_config; FP8 linears as custom layers
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        for cls in custom:
            warnings.filterwarnings("ignore", message=re.escape(f"Unsupported layer type '{cls}'"))
        inject_adapter_in_model(config, dit, adapter_name=name)
    for _, layer in lora_layers(dit):  # peft gives an adapter its base weight's dtype: never float8
        if name in layer.lora_A and layer.lora_A[name].weight.dtype.itemsize == 1:
            layer.lora_A[name].to(torch.float32)
            layer.lora_B[name].to(torch.float32)
    _activate_all(dit)


def _is_fp8_linear(module: nn.Module) -> bool:
    """A linear-like layer with a 1-byte (float8) weight, e.g. hyvideo's ``FP8Linear`` (matched by shape, not by
    import path, so this keeps working wherever that class lives)."""
    weight = getattr(module, "weight", None)
    return (not isinstance(module, nn.Linear) and isinstance(getattr(module, "in_features", None), int)
            and isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.dtype.itemsize == 1)


def _register_fp8_linears(dit: nn.Module, config) -> set[type]:
    """Let peft wrap FP8 linears (an FP8 base) with its ordinary LoRA linear, which only calls the base layer's
    forward and reads ``in_features`` / ``out_features`` (peft's custom-module hook). Returns the classes."""
    classes = {type(m) for m in dit.modules() if _is_fp8_linear(m)}
    if classes:
        from peft.tuners.lora import Linear as LoraLinear

        config._register_custom_module({cls: LoraLinear for cls in classes})
    return classes


def _activate_all(dit: nn.Module) -> None:
    """Make every adapter active (peft makes only the newest one active on layers it wraps again)."""
    from peft.functional import set_adapter

    configs = getattr(dit, "peft_config", {})
    if not configs:
        return
    set_adapter(dit, list(configs), inference_mode=True)  # all frozen, then unfreeze the trainable ones
    trainable = [n for n, c in configs.items() if not c.inference_mode]
    for _, layer in lora_layers(dit):
        for name in trainable:
            if name in layer.lora_A:
                layer.lora_A[name].requires_grad_(True)
                layer.lora_B[name].requires_grad_(True)


def apply_lora_state(dit: nn.Module, state: LoraState, name: str, *, trainable: bool = False) -> None:
    """Inject ``state`` (released module names, any ranks/alphas) as adapter ``name`` and copy its weights in.

    Raises:
        LoraFormatError: peft did not take every tensor (names the keys).
    """
    from peft import LoraConfig
    from peft.functional import set_peft_model_state_dict

    kwargs = lora_config_kwargs({m: w.rank for m, w in state.items()}, {m: w.alpha for m, w in state.items()})
    inject_adapter(dit, LoraConfig(**kwargs, inference_mode=not trainable), name)
    sd = {}
    for module, w in state.items():
        sd[f"{module}.lora_A.weight"], sd[f"{module}.lora_B.weight"] = w.down, w.up
    result = set_peft_model_state_dict(dit, sd, adapter_name=name)
    missing = [k for k in result.missing_keys if f".{name}." in k]
    if result.unexpected_keys or missing:
        raise LoraFormatError(f"adapter {name!r}: unexpected {result.unexpected_keys[:5]}, missing {missing[:5]}")


def read_lora(source: str | os.PathLike | dict[str, torch.Tensor], dit: nn.Module) -> tuple[LoraState, str]:
    """Read a LoRA (path or state dict) of any supported style for ``dit``; returns ``(state, style)``.

    See :func:`hyvideo.lora.formats.parse_lora` for the styles and errors; a missing path raises
    ``FileNotFoundError``.
    """
    if isinstance(source, dict):
        tensors, config = source, None
    else:
        tensors, config, _ = read_lora_file(source)
    return parse_lora(tensors, ModelKeys.of(dit), config)


def _default_name(dit: nn.Module, source) -> str:
    stem = "lora" if isinstance(source, dict) else Path(source).stem
    base = re.sub(r"\W", "_", stem) or "lora"
    base = base if re.match(r"[A-Za-z_]", base) else f"lora_{base}"
    name, i = base, 1
    while name in adapter_names(dit):
        i += 1
        name = f"{base}_{i}"
    return name


def load_lora_weights(dit: nn.Module, source: str | os.PathLike | dict[str, torch.Tensor], scale: float = 1.0, *,
                      adapter_name: str | None = None) -> str:
    """Apply a LoRA file (any supported key style) to a hyvideo DiT, unfused, next to any already loaded.

    The DiT's output becomes that of ``W + sum_i scale_i * delta_W_i`` on each adapted linear. Call again for more
    LoRAs (each with its own scale), :func:`set_lora_scale` to change a scale, :func:`fuse_lora` to merge for
    speed, :func:`unload_lora` to remove. The DiT's parameters are frozen (``requires_grad=False``) afterwards.

    Args:
        dit: :class:`hyvideo.models.dit.HYVideoDiffusionTransformer` (plain or already carrying adapters).
        source: a LoRA file / folder (see :func:`hyvideo.lora.io.read_lora_file`) or a state dict.
        scale: multiplier of this LoRA's delta (1.0 = as trained; 0 = off).
        adapter_name: peft adapter name; default: the file's stem made unique.

    Returns:
        The adapter name.

    Raises:
        FileNotFoundError: missing file.
        LoraFormatError: unknown key style, a LoRA for another model or size, inconsistent tensors (the
            message names keys and shapes).
        ValueError: the DiT is fused, or the adapter name is taken.
    """
    state, _ = read_lora(source, dit)
    if not state:
        raise LoraFormatError(f"the LoRA {source if not isinstance(source, dict) else '(state dict)'} is empty")
    name = adapter_name or _default_name(dit, source)
    apply_lora_state(dit, state, name)
    set_lora_scale(dit, name, scale)
    return name


def set_lora_scale(dit: nn.Module, adapter_name: str, scale: float) -> None:
    """Set adapter ``adapter_name``'s multiplier (peft ``set_scale``: ``scaling = scale * alpha / r``).

    Raises:
        ValueError: unknown adapter, non-finite scale, or the DiT is fused (the scale is baked in; unfuse first).
    """
    if adapter_name not in adapter_names(dit):
        raise ValueError(f"no adapter named {adapter_name!r} on the DiT (have {adapter_names(dit)})")
    if not torch.isfinite(torch.tensor(float(scale))):
        raise ValueError(f"LoRA scale must be finite, got {scale}")
    if _is_fused(dit):
        raise ValueError("the DiT has fused LoRAs; call unfuse_lora(dit) before changing a scale")
    for _, layer in lora_layers(dit):
        layer.set_scale(adapter_name, float(scale))


def fuse_lora(dit: nn.Module, *, keep_original: bool = True) -> int:
    """Merge all active adapters into the base weights (peft ``merge(safe_merge=True)``); returns layers fused.

    Args:
        keep_original: keep a CPU copy of each fused base weight so :func:`unfuse_lora` restores it bit-exactly
            (host memory equal to the adapted weights: 16.9 GiB for the default targets of the 13B DiT in bf16,
            23.2 GiB with the modulation linears). False: unfuse subtracts the deltas again (peft ``unmerge``),
            exact only up to rounding (measured on the tiny test DiT: a third of the adapted weights differ
            afterwards, by up to 0.0039 in bf16 and 6e-8 in fp32, weights ~N(0, 0.2)).

    Raises:
        ValueError: a fused weight would be non-finite (peft's safe merge); everything is unfused again.
    """
    fp8 = [n for n, layer in lora_layers(dit) if _is_fp8_linear(layer.get_base_layer())]
    if fp8:
        raise ValueError(f"cannot fuse LoRAs into FP8 weights ({fp8[:3]}, ...): sample unfused, or fuse into a "
                         "bf16/fp32 DiT and quantise after")
    n = 0
    for _, layer in lora_layers(dit):
        if layer.merged or not any(a in layer.lora_A for a in layer.active_adapters):
            continue
        if keep_original:
            layer.__dict__[_ORIGINAL] = layer.get_base_layer().weight.detach().to("cpu", copy=True)
        try:
            layer.merge(safe_merge=True)
        except ValueError:  # peft found NaN/inf in the merged weight: leave the DiT as it was
            layer.__dict__.pop(_ORIGINAL, None)
            unfuse_lora(dit)
            raise
        n += 1
    return n


def unfuse_lora(dit: nn.Module) -> int:
    """Undo :func:`fuse_lora` (exactly where the original was kept); returns layers unfused."""
    n = 0
    for _, layer in lora_layers(dit):
        if not layer.merged:
            continue
        layer.unmerge()
        original = layer.__dict__.pop(_ORIGINAL, None)
        if original is not None:
            with torch.no_grad():
                layer.get_base_layer().weight.copy_(original)
        n += 1
    return n


def _replace_with_base(dit: nn.Module, only_empty: bool) -> None:
    for name, layer in lora_layers(dit):
        if only_empty and len(layer.lora_A):
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(dit.get_submodule(parent_name) if parent_name else dit, child, layer.get_base_layer())


def unload_lora(dit: nn.Module, names: list[str] | None = None) -> None:
    """Remove adapters (default: all), unfusing first (exact restore). With none left, the plain linears are back
    and ``dit.state_dict()`` has the released keys again (base parameters stay ``requires_grad=False``).

    Raises:
        ValueError: an unknown adapter name.
    """
    from peft.functional import delete_adapter

    names = adapter_names(dit) if names is None else list(names)
    unknown = [n for n in names if n not in adapter_names(dit)]
    if unknown:
        raise ValueError(f"no adapters named {unknown} on the DiT (have {adapter_names(dit)})")
    unfuse_lora(dit)
    for name in names:
        delete_adapter(dit, name, prefix="lora_")
        del dit.peft_config[name]
    _replace_with_base(dit, only_empty=True)
    if not dit.peft_config:
        del dit.peft_config
    else:
        _activate_all(dit)


def merge_and_unload(dit: nn.Module) -> None:
    """Fuse all active adapters into the base weights for good and drop the adapter layers: the DiT is a plain
    hyvideo DiT again (released keys) with the LoRAs baked in, e.g. to export a merged checkpoint."""
    fuse_lora(dit, keep_original=False)
    _replace_with_base(dit, only_empty=False)
    if hasattr(dit, "peft_config"):
        del dit.peft_config
