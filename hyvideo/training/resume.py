"""What a resumed run keeps from its checkpoint and what it takes from the current config (issue 15).

- The checkpoint's model configuration must equal the current one (else: refused, with a hint).
- ``run.max_steps`` must exceed the checkpoint's step (else: refused; nothing would be trained).
- Every other changed value is logged, and the current config wins: optimizer hyper-parameters (lr, betas,
  eps, weight decay, the warmup / decay schedule) are re-applied after the optimizer and scheduler states
  are restored; data, flow and seed settings are read from the config as the run goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import OptimConfig, to_dict
from .state import CheckpointError

log = logging.getLogger(__name__)

# Keys that differ between the two launches of an interrupted run by design (not worth a log line).
_EXPECTED_CHANGES = ("run.resume", "run.stop_after", "run.max_steps", "run.tqdm", "run.tensorboard")


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume(path: str | Path, *, step: int, saved_config: dict | None, saved_model: dict | None, cfg,
                 model_config: dict) -> None:
    """Refuse a resume that cannot work; log what changed since the checkpoint (the new values are used).

    Args:
        path: the checkpoint (for messages).
        step: optimizer steps the checkpoint holds.
        saved_config: the run config stored in the checkpoint (plain dict) or None.
        saved_model: the model constructor config stored in the checkpoint, or None (older checkpoints: the
            shapes are compared when the weights are restored).
        cfg: the current run config.
        model_config: the current model constructor config.

    Raises:
        CheckpointError: another model configuration, or ``run.max_steps <= step``.
    """
    if saved_model is not None and saved_model != model_config:
        diff = sorted(k for k in set(saved_model) | set(model_config) if saved_model.get(k) != model_config.get(k))
        details = ", ".join(f"{k}: {saved_model.get(k)!r} -> {model_config.get(k)!r}" for k in diff[:4])
        raise CheckpointError(f"{path} holds another model configuration ({details}). To train this model, use a "
                              f"new run.out_dir or run.resume=never; to continue that run, restore its model config")
    if cfg.run.max_steps <= step:
        raise CheckpointError(f"run.max_steps={cfg.run.max_steps} must be greater than the step the run resumes "
                              f"from ({step}, {path}): that run is finished. Raise run.max_steps to train further, "
                              f"or use a new run.out_dir or run.resume=never to start over")
    if saved_config is None:
        return
    old, new = flatten(saved_config), flatten(to_dict(cfg))
    for key in sorted(set(old) | set(new)):
        if key in _EXPECTED_CHANGES or old.get(key) == new.get(key):
            continue
        log.warning("resume: %s changed since %s: %r -> %r (the new value is used)", key, Path(path).name,
                    old.get(key, "<absent>"), new.get(key, "<absent>"))


def apply_optim_config(optimizer, scheduler, cfg: OptimConfig, lr: float | None = None) -> None:
    """Re-apply the config's hyper-parameters to a restored optimizer (and its schedule): the restored
    ``param_groups`` and ``base_lrs`` carry the values of the run that wrote the checkpoint.

    Args:
        optimizer: AdamW after ``load_state_dict``.
        scheduler: its ``LambdaLR`` after ``load_state_dict`` (its lambda is already the current config's),
            or None for a constant-lr optimizer (the discriminator's).
        cfg: the current optimizer config.
        lr: peak lr of this optimizer (default ``cfg.lr``).
    """
    lr = cfg.lr if lr is None else lr
    impl = {k: optimizer.defaults.get(k) for k in ("foreach", "fused")}  # this run's kernels, not the saved ones
    for group in optimizer.param_groups:
        group.update(betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, **impl)
    if scheduler is None:
        for group in optimizer.param_groups:
            group["lr"] = lr
        return
    scheduler.base_lrs = [lr for _ in optimizer.param_groups]
    factors = [fn(scheduler.last_epoch) for fn in scheduler.lr_lambdas]
    for group, factor in zip(optimizer.param_groups, factors):
        group["lr"] = lr * factor
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
