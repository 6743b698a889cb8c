"""AdamW and the learning-rate schedule (linear warmup from ``warmup_min_lr`` to ``lr``, then constant, as the
released I2V trainer's ``WarmupLR``; optionally a cosine decay to ``min_lr`` at ``decay_steps``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import OptimConfig


def build_optimizer(params, cfg: OptimConfig, lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over ``params``: the fused kernel on CUDA, the multi-tensor (``foreach``) one elsewhere.

    Both take FSDP2's DTensor parameters (all parameters of a sharded model are DTensors, the root included,
    so lists are never mixed); a per-parameter loop over the ~840 shards of the 13B DiT is what they replace.
    """
    params = [p for p in params if p.requires_grad]
    on_cuda = bool(params) and all(p.device.type == "cuda" for p in params)
    impl = {"fused": True} if on_cuda else {"foreach": True}
    return torch.optim.AdamW(params, lr=cfg.lr if lr is None else lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, **impl)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplier ``min_ratio + (1 - min_ratio) * step / warmup`` during warmup, 1 after; with
    ``cfg.decay_steps > 0`` a cosine from 1 (at ``warmup``) to ``min_lr / lr`` (at ``decay_steps``, held after)."""
    min_ratio = min(1.0, cfg.warmup_min_lr / cfg.lr) if cfg.lr > 0 else 1.0
    floor = min(1.0, cfg.min_lr / cfg.lr) if cfg.lr > 0 else 1.0
    warmup, decay = cfg.warmup_steps, cfg.decay_steps

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return min_ratio + (1.0 - min_ratio) * step / warmup
        if decay <= 0:
            return 1.0
        frac = min(1.0, (step - max(warmup, 0)) / (decay - max(warmup, 0)))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clip_grad_norm(module: nn.Module, max_norm: float) -> float:
    """Global grad norm over all ranks (DTensor-aware), clipped to ``max_norm`` when > 0; returns the norm."""
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"), foreach=True)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)
