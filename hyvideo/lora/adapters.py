"""LoRA fine-tuning of the DiT with peft: inject, read/restore the adapter state, save and export files.

Typical training use::

    targets = add_lora(dit, LoraSettings(rank=32, alpha=32))          # base frozen, adapters trainable
    opt = torch.optim.AdamW([p for _, p in lora_parameters(dit)], lr=1e-4)
    ...
    sd = lora_state_dict(dit)                                           # deterministic keys/order; for resume
    set_lora_state_dict(dit, sd)                                        # strict restore
    save_lora(dit, "out/lora.safetensors", config=run_config)          # diffusers format + metadata

The adapter is ``peft.tuners.lora.Linear`` on each targeted released linear (Hu et al. 2021, "LoRA: Low-Rank
Adaptation of Large Language Models"; ``delta_W = alpha / r * B A``, B initialised to zero, A Kaiming-uniform,
peft's defaults).
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from hyvideo.lora.apply import adapter_names, inject_adapter, lora_layers, read_lora
from hyvideo.lora.formats import (LoraState, LoraWeight, exact_targets, json_metadata, to_comfyui, to_diffusers,
                                  to_musubi)
from hyvideo.lora.io import HYVIDEO_METADATA_KEY, LORA_ADAPTER_METADATA_KEY, write_safetensors
from hyvideo.lora.keymap import ModelKeys, linear_shapes

# The attention and MLP linears of the dual- and single-stream blocks (name suffixes, peft's matching rule).
DEFAULT_TARGETS = ("img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2",
                   "txt_attn_qkv", "txt_attn_proj", "txt_mlp.fc1", "txt_mlp.fc2", "linear1", "linear2")
MODULATION_TARGETS = ("img_mod.linear", "txt_mod.linear", "modulation.linear")
STYLES = ("diffusers", "musubi", "comfyui")


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """LoRA hyper-parameters (the trainer's ``lora:`` config section).

    Attributes:
        rank: LoRA rank r >= 1.
        alpha: scale numerator, ``delta_W = alpha / rank * B A``; None = rank (scale 1, the diffusers default).
        dropout: dropout on the LoRA branch input, in [0, 1).
        target_modules: linear-name suffixes (peft's rule: a linear matches if its full name equals the target or
            ends with ``"." + target``), e.g. ``"img_attn_qkv"``, ``"img_mlp.fc1"``, ``"single_blocks.3.linear1"``.
        include_modulation: also adapt the blocks' modulation linears (``img_mod.linear``, ``txt_mod.linear``,
            ``modulation.linear``); musubi-tuner leaves them out by default, so do we.
    """

    rank: int = 32
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    include_modulation: bool = False

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"LoRA rank must be an integer >= 1, got {self.rank!r}")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0 (or None = rank), got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise ValueError("LoRA target_modules is empty; the default is " + ", ".join(DEFAULT_TARGETS))

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.target_modules) + (MODULATION_TARGETS if self.include_modulation else ())


def resolve_targets(dit: nn.Module, targets: tuple[str, ...] | list[str]) -> list[str]:
    """Full names of the DiT's linears matched by ``targets`` (peft's suffix rule), in module order.

    Raises:
        ValueError: a target that matches no linear; the message suggests close names.
    """
    names = list(linear_shapes(dit))
    suffixes = sorted({".".join(n.split(".")[i:]) for n in names for i in range(len(n.split(".")))})
    chosen = set()
    for target in targets:
        hits = [n for n in names if n == target or n.endswith("." + target)]
        if not hits:
            close = difflib.get_close_matches(target, suffixes, n=3)
            raise ValueError(f"LoRA target module {target!r} matches no linear of the DiT"
                             + (f"; did you mean {close}?" if close else "")
                             + f" Targets are name suffixes such as {list(DEFAULT_TARGETS[:3])}, "
                             f"{list(MODULATION_TARGETS)} or full names like 'double_blocks.0.img_attn_qkv'.")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def add_lora(dit: nn.Module, settings: LoraSettings | None = None, *, adapter_name: str = "default",
             adapter_dtype: torch.dtype | None = torch.float32, **overrides) -> list[str]:
    """Inject a trainable peft LoRA into the DiT's linears; freezes every base parameter.

    Args:
        dit: the DiT (weights loaded; built on a real device).
        settings: :class:`LoraSettings`; ``overrides`` are its fields (``add_lora(dit, rank=8)``).
        adapter_name: peft adapter name ("default").
        adapter_dtype: dtype of the LoRA weights (float32: stable with a bf16 base; None = the base dtype).

    Returns:
        The adapted linears' full names, in module order.

    Raises:
        ValueError: bad settings (rank <= 0, ...), a target that matches nothing, a taken adapter name.
    """
    from peft import LoraConfig

    settings = LoraSettings(**{**(asdict(settings) if settings else {}), **overrides})
    targets = resolve_targets(dit, settings.targets)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.dropout,
                        target_modules=exact_targets(targets))
    inject_adapter(dit, config, adapter_name)
    if adapter_dtype is not None:
        for _, layer in lora_layers(dit):
            if adapter_name in layer.lora_A:
                layer.lora_A[adapter_name].to(adapter_dtype)
                layer.lora_B[adapter_name].to(adapter_dtype)
    return targets


def lora_parameters(dit: nn.Module, adapter_name: str = "default") -> list[tuple[str, nn.Parameter]]:
    """``[(name, parameter)]`` of one adapter, in module order (give these to the optimizer)."""
    tag = f".{adapter_name}."
    return [(n, p) for n, p in dit.named_parameters() if tag in n and (".lora_A." in n or ".lora_B." in n)]


def count_parameters(dit: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of the DiT (adapters included)."""
    params = list(dit.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lora_state_dict(dit: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's weights ``{<released module>.lora_A.weight: [r, in], ....lora_B.weight: [out, r]}``.

    Keys in module order, A before B; the tensors are the live parameters (detached; clone before mutating).
    Restore with :func:`set_lora_state_dict`; a round trip is bit-exact.
    """
    sd = {}
    for name, layer in lora_layers(dit):
        if adapter_name in layer.lora_A:
            sd[f"{name}.lora_A.weight"] = layer.lora_A[adapter_name].weight.detach()
            sd[f"{name}.lora_B.weight"] = layer.lora_B[adapter_name].weight.detach()
    if not sd:
        raise ValueError(f"no adapter named {adapter_name!r} on the DiT (have {adapter_names(dit)})")
    return sd


def set_lora_state_dict(dit: nn.Module, sd: dict[str, torch.Tensor], adapter_name: str = "default") -> None:
    """Copy an adapter state dict (from :func:`lora_state_dict`) into the adapter, strictly (exact resume).

    Raises:
        ValueError: missing / unexpected keys or shape mismatches (the message lists a few).
    """
    own = lora_state_dict(dit, adapter_name)
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k}: {list(sd[k].shape)} vs {list(v.shape)}" for k, v in own.items()
              if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"LoRA state dict does not match adapter {adapter_name!r}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape (file vs model) {shapes[:5]}")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(sd[k])


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 / DTensor shard (a collective: every rank must call), else ``t``."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def adapter_state(dit: nn.Module, adapter_name: str = "default") -> LoraState:
    """The adapter as a :data:`hyvideo.lora.formats.LoraState` (released names, per-layer rank and alpha).

    Sharded (FSDP2 DTensor) weights are gathered, so under FSDP call this on every rank and write on one
    (:func:`write_lora`).
    """
    state = {}
    for name, layer in lora_layers(dit):
        if adapter_name in layer.lora_A:
            down = _full(layer.lora_A[adapter_name].weight.detach())
            alpha = float(layer.lora_alpha[adapter_name])
            if layer.use_rslora.get(adapter_name):  # rsLoRA scale alpha / sqrt(r) as a plain alpha / r
                alpha *= math.sqrt(down.shape[0])
            state[name] = LoraWeight(down, _full(layer.lora_B[adapter_name].weight.detach()), alpha)
    if not state:
        raise ValueError(f"no adapter named {adapter_name!r} on the DiT (have {adapter_names(dit)})")
    return state


def write_lora(state: LoraState, dit: nn.Module, path: str | os.PathLike, *, style: str = "diffusers",
               config: dict | None = None, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write a :data:`LoraState` for ``dit`` as a safetensors file in ``style`` (see :func:`save_lora`)."""
    if style not in STYLES:
        raise ValueError(f"LoRA file style must be one of {STYLES}, got {style!r}")
    keys = ModelKeys.of(dit)
    if dtype is not None:
        state = {m: LoraWeight(w.down.to(dtype), w.up.to(dtype), w.alpha) for m, w in state.items()}
    ranks, alphas = sorted({w.rank for w in state.values()}), sorted({w.alpha for w in state.values()})
    meta_info = {"format": "hyvideo-lora", "version": 1, "style": style, "rank": ranks[0] if len(ranks) == 1 else ranks,
                 "alpha": alphas[0] if len(alphas) == 1 else alphas, "target_modules": list(state),
                 "base_model": getattr(dit, "config", {}), "config": config or {}, **(extra or {})}
    metadata = {"format": "pt", HYVIDEO_METADATA_KEY: json_metadata(meta_info)}
    if style == "diffusers":
        tensors, kwargs = to_diffusers(state, keys)
        tensors = {f"transformer.{k}": v for k, v in tensors.items()}
        metadata[LORA_ADAPTER_METADATA_KEY] = json_metadata({f"transformer.{k}": v for k, v in kwargs.items()})
    elif style == "musubi":
        tensors = to_musubi(state)
    else:
        tensors = to_comfyui(state)
    return write_safetensors(path, tensors, metadata)


def save_lora(dit: nn.Module, path: str | os.PathLike, adapter_name: str = "default", *, style: str = "diffusers",
              config: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Save an adapter as a LoRA safetensors file (atomically); returns the path.

    Args:
        style: "diffusers" (default: ``transformer.<diffusers module>.lora_A/B.weight``, what
            ``HunyuanVideoPipeline.load_lora_weights`` reads, alpha in ``lora_adapter_metadata``), "musubi"
            (``lora_unet_...`` + ``.alpha``, musubi-tuner / kohya) or "comfyui" (``diffusion_model.<released
            module>.lora_A/B.weight``, alpha folded in).
        config: the run config to store in the ``hyvideo_lora`` metadata (JSON-serialisable).
        dtype: cast the LoRA tensors (e.g. ``torch.bfloat16``); None keeps the adapter dtype.

    Raises:
        ValueError: unknown style or adapter, non-finite weights.
    """
    dropouts = {getattr(layer.lora_dropout[adapter_name], "p", 0.0) for _, layer in lora_layers(dit)
                if adapter_name in layer.lora_dropout}
    extra = {"dropout": dropouts.pop()} if len(dropouts) == 1 else {}
    return write_lora(adapter_state(dit, adapter_name), dit, path, style=style, config=config, dtype=dtype,
                      extra=extra)


def convert_lora_file(src: str | os.PathLike | dict[str, torch.Tensor], dst: str | os.PathLike, dit: nn.Module, *,
                      style: str = "diffusers", config: dict | None = None) -> Path:
    """Re-write a LoRA of any supported style as ``style`` for ``dit`` (a meta-device DiT of the right config
    is enough: ``HYVideoDiffusionTransformer.from_config(cfg, device="meta")``). Returns the written path.

    Raises:
        FileNotFoundError, LoraFormatError, ValueError: as :func:`hyvideo.lora.load_lora_weights` / :func:`save_lora`.
    """
    state, source_style = read_lora(src, dit)
    return write_lora(state, dit, dst, style=style, config=config, extra={"converted_from": source_style})
