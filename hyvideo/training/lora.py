"""LoRA fine-tuning in ``train_dit.py`` (``lora.rank > 0``): a frozen base DiT, trainable peft adapters.

The base is built on ``meta`` and filled from ``run.init_from`` (the released file, an export, or a training
checkpoint; memory-mapped) in ``lora.base_dtype`` (fp8 = e4m3 block linears), frozen, then the adapters are
injected (float32, seeded by ``run.seed``: identical on every rank). The base is replicated on every rank and
the adapters' gradients are averaged by DDP (the adapters are a few MB; sharding them gains nothing), so the
same script trains on one GPU or many. With ``lora.block_swap`` the base blocks stay in CPU memory and visit
the device per block (:mod:`hyvideo.accel.block_swap`, which also checkpoints the block activations).

Checkpoints hold the adapters, their optimizer / EMA state and the run state only (:class:`AdapterView`), in the
same DCP folders as full training, so resume is exact and works across world sizes; the export is a LoRA file
(:func:`hyvideo.lora.save_lora`, diffusers keys by default, the run config in the metadata).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)
_BASE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8": torch.bfloat16}


class AdapterView(nn.Module):
    """A module whose parameters are exactly the DiT's trainable (LoRA) parameters, under stable names.

    Optimizer, EMA and checkpoints work on this view, so they never touch the frozen base. The parameters are
    the DiT's own objects (no copies); names are the DiT's with ``.`` replaced by ``__``.
    """

    def __init__(self, dit: nn.Module):
        super().__init__()
        for name, p in dit.named_parameters():
            if p.requires_grad:
                self.register_parameter(name.replace(".", "__"), p)


def lora_settings(cfg):
    """:class:`hyvideo.lora.LoraSettings` of the run's ``lora:`` section."""
    from hyvideo.lora import DEFAULT_TARGETS, LoraSettings  # noqa: PLC0415

    c = cfg.lora
    return LoraSettings(rank=c.rank, alpha=c.alpha, dropout=c.dropout,
                        target_modules=tuple(c.target_modules) or DEFAULT_TARGETS,
                        include_modulation=c.include_modulation)


def build_lora_dit(cfg, dit_config: dict, env) -> tuple[nn.Module, AdapterView]:
    """The base DiT with adapters on ``env.device`` (DDP-wrapped on several ranks) and the view of the adapters.

    Raises:
        ConfigError (via the loaders): unreadable base weights, a base of another model size.
    """
    from hyvideo.accel.fp8 import convert_to_fp8  # noqa: PLC0415
    from hyvideo.checkpoint.io import load_into  # noqa: PLC0415
    from hyvideo.lora import add_lora  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415
    from hyvideo.parallel.fsdp import apply_activation_checkpointing  # noqa: PLC0415
    from hyvideo.training.state import read_weights  # noqa: PLC0415

    dtype = _BASE_DTYPES[cfg.lora.base_dtype]
    if cfg.run.init_from:
        with torch.device("meta"):
            dit = HYVideoDiffusionTransformer.from_config(dit_config)
        load_into(dit, {k: v.to(dtype) for k, v in read_weights(cfg.run.init_from).items()}, cfg.run.init_from)
        log.info("LoRA base: %s (%s)", cfg.run.init_from, cfg.lora.base_dtype)
    else:  # no base given: the seeded from-scratch init (tests, smoke runs)
        log.warning("run.init_from is empty: the LoRA base is randomly initialised (fine for tests only)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            dit = HYVideoDiffusionTransformer.from_config(dit_config)
            dit.init_weights()
        dit = dit.to(dtype)
    if cfg.lora.base_dtype == "fp8":
        convert_to_fp8(dit)
    dit.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        targets = add_lora(dit, lora_settings(cfg))
    view = AdapterView(dit)
    log.info("LoRA rank %d on %d linears: %d trainable parameters of %d", cfg.lora.rank, len(targets),
             sum(p.numel() for p in view.parameters()), sum(p.numel() for p in dit.parameters()))
    if cfg.parallel.sp_degree > 1:
        from hyvideo.parallel.sequence_parallel import enable_sequence_parallel  # noqa: PLC0415

        enable_sequence_parallel(dit, env.sp_group)
    if cfg.lora.block_swap:
        from hyvideo.accel.block_swap import enable_block_swap  # noqa: PLC0415

        enable_block_swap(dit, env.device)  # also checkpoints the blocks' activations
    else:
        dit.to(env.device)
        if cfg.parallel.activation_checkpointing:
            apply_activation_checkpointing(dit)
    dit.train()
    if env.world > 1:
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        dit = DistributedDataParallel(dit, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return dit, view


def lora_model_config(cfg, dit_config: dict) -> dict:
    """The model config stored in LoRA checkpoints: the DiT's plus the adapter settings (resume checks both)."""
    return {**dit_config, "_lora": {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha,
                                    "target_modules": list(cfg.lora.target_modules),
                                    "include_modulation": cfg.lora.include_modulation}}


def export_lora(model: nn.Module, view: AdapterView, ema, out_dir: str | Path, cfg, config: dict) -> Path:
    """Write ``out_dir/export/lora.safetensors`` (and ``lora_ema.safetensors`` with EMA) in ``lora.export_style``."""
    from hyvideo.lora import save_lora  # noqa: PLC0415

    dit = getattr(model, "module", model)  # DDP
    folder = Path(out_dir) / "export"
    path = save_lora(dit, folder / "lora.safetensors", style=cfg.lora.export_style, config=config)
    if ema is not None:
        params = dict(view.named_parameters())
        live = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(ema.shadow[n])
            save_lora(dit, folder / "lora_ema.safetensors", style=cfg.lora.export_style, config=config)
            for n, p in params.items():
                p.copy_(live[n])
    return path
