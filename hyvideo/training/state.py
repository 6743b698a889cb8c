"""EMA weights, safe reading of weight files, and the single-file "full state" checkpoints of earlier versions.

Training checkpoints are now sharded DCP folders (:mod:`hyvideo.training.checkpointing`). The format before
was one ``torch.save`` file ``<out_dir>/checkpoints/step_XXXXXXXX.pt`` holding *full* (unsharded) state dicts
gathered on rank 0: ``model``, ``ema``, ``optimizer`` (full FSDP2 optimizer state), ``scheduler``, ``sampler``
(the next step), ``rng`` (rank 0's torch / numpy / python states), ``config``, ``model_config`` and ``extra``
modules (the VAE discriminator). Such files still resume (:func:`restore_training_state`);
:func:`save_training_state` still writes them (tests, and ``scripts/bench/bench_train_memory.py`` compares its memory).

Every file is read with ``weights_only=True`` (:func:`safe_load`; the numpy RNG types of old checkpoints are
allow-listed) or as safetensors: a pickle payload is refused, never run.
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from hyvideo.checkpoint.io import save_atomic
from hyvideo.utils.modules import clean_name

from .config import ConfigError

log = logging.getLogger(__name__)
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class CheckpointError(ConfigError):
    """A checkpoint or weight file is refused: it holds pickled Python objects (which could run code), was made
    for another model, or the run cannot continue from it. The training CLIs exit with status 2."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint cannot be read (zero bytes, truncated, incomplete); resume skips to the previous one."""


def _numpy_rng_globals() -> list:
    """The numpy types pickled by ``np.random.get_state()`` in the checkpoints of earlier versions (allowed for
    ``weights_only=True``: plain arrays and dtypes, nothing callable beyond numpy's array reconstructor)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def safe_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` (memory-mapped when the file is zip-format): tensors, containers
    and numbers only, plus the numpy RNG types of :func:`_numpy_rng_globals`.

    Raises:
        CheckpointError: the file references any other Python global (a pickle payload could run code); the
            message names the global. Nothing from the file is executed.
        CorruptCheckpointError: zero bytes, truncated or otherwise unreadable.
    """
    path = Path(path)
    with torch.serialization.safe_globals(_numpy_rng_globals()):
        try:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap can only be used" not in str(e) or path.stat().st_size == 0:
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # pre-zip format: no mmap
        except pickle.UnpicklingError as e:
            culprit = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), str(e).splitlines()[0])
            raise CheckpointError(f"refusing to load {path}: it holds pickled Python objects, not only tensors "
                                  f"({culprit}); loading it could run arbitrary code. Use files written by this "
                                  f"trainer or .safetensors weights") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
            size = path.stat().st_size if path.exists() else "missing"
            raise CorruptCheckpointError(f"{path} ({size} bytes) is unreadable: "
                                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


class EMA:
    """Exponential moving average of a model's parameters: ``ema <- decay * ema + (1 - decay) * param``.

    Works on FSDP2 (DTensor) parameters shard by shard with no communication; :meth:`full_state_dict`
    gathers (a collective: call on every rank).

    Args:
        model: the (possibly sharded) model.
        decay: e.g. 0.9999; in (0, 1).

    Raises:
        ValueError: ``decay`` outside (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {clean_name(n): p.detach().clone().float() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One multi-tensor ``lerp`` over all (local shards of the) parameters."""
        names, params = zip(*[(clean_name(n), p.detach()) for n, p in model.named_parameters()])
        params = [p if p.dtype == torch.float32 else p.float() for p in params]
        torch._foreach_lerp_([self.shadow[n] for n in names], params, 1.0 - self.decay)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: (t.full_tensor() if isinstance(t, DTensor) else t).cpu().clone() for n, t in self.shadow.items()}

    @torch.no_grad()
    def load_full_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(sd))
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:4]}")
        for n, t in self.shadow.items():
            full = sd[n].float()
            if isinstance(t, DTensor):
                self.shadow[n] = distribute_tensor(full, t.device_mesh, t.placements, src_data_rank=None)
            else:
                t.copy_(full)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full state dict (collective under FSDP; rank 0 receives it, other ranks may get ``{}``)."""
    return get_model_state_dict(model, options=_FULL)


def load_model_state(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Load a full state dict into a (possibly FSDP2-sharded) model on every rank; strict."""
    set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True, strict=True))


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save_training_state(out_dir: str | Path, step: int, *, model: nn.Module, optimizer, scheduler,
                        ema: EMA | None, config: dict, model_config: dict | None = None, extra: dict | None = None,
                        is_main: bool = True) -> Path:
    """Gather and write the full training state after ``step`` optimizer steps in the earlier single-file format
    (collective; rank 0 writes; the whole model, optimizer and EMA pass through rank 0's memory).

    Args:
        out_dir: run folder; the file is ``out_dir/checkpoints/step_{step:08d}.pt``.
        step: optimizer steps done; resuming starts at this step.
        model, optimizer, scheduler, ema: the training objects.
        config: resolved run config (plain dict).
        model_config: the model's constructor config (a resume with another one is refused).
        extra: name -> ``(module, optimizer)`` pairs saved the same way (e.g. the discriminator).
        is_main: whether this rank writes.

    Returns:
        The checkpoint path.
    """
    state = {"step": step, "config": config, "model_config": model_config, "model": model_state(model),
             "optimizer": _optimizer_state(model, optimizer),
             "scheduler": scheduler.state_dict(), "sampler": {"step": step}, "rng": rng_state(),
             "ema": ema.full_state_dict() if ema is not None else None, "extra": {}}
    for name, (module, opt) in (extra or {}).items():
        state["extra"][name] = {"model": model_state(module),
                                "optimizer": _optimizer_state(module, opt)}
    path = checkpoint_dir(out_dir) / f"step_{step:08d}.pt"
    if is_main:
        save_atomic(state, path)
        log.info("saved checkpoint %s", path)
    if dist.is_initialized():
        dist.barrier()
    return path


def restore_training_state(path: Path, state: dict, *, model: nn.Module, optimizer, scheduler, ema: EMA | None,
                           extra: dict | None = None) -> int:
    """Restore a full-state checkpoint (:func:`save_training_state`, read by :func:`safe_load`) on every rank;
    returns the step.

    Raises:
        CheckpointError: another model's weights, no EMA weights although EMA is on, or no ``extra`` module.
    """
    check_model_matches(model, state["model"], path)
    load_model_state(model, state["model"])
    _load_optimizer(model, optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        if state.get("ema") is None:
            raise CheckpointError(f"{path} holds no EMA weights but optim.ema_decay > 0")
        ema.load_full_state_dict(state["ema"])
    for name, (module, opt) in (extra or {}).items():
        if name not in state["extra"]:
            raise CheckpointError(f"{path} holds no {name!r} state; it has {sorted(state['extra'])}")
        load_model_state(module, state["extra"][name]["model"])
        _load_optimizer(module, opt, state["extra"][name]["optimizer"])
    set_rng_state(state["rng"])
    return int(state["sampler"]["step"])


def check_model_matches(model: nn.Module, sd: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise a short :class:`CheckpointError` (not a wall of size mismatches) when ``sd`` is another model's.

    Raises:
        CheckpointError: missing / unexpected keys or shape mismatches, with counts, examples and a hint.
    """
    own = {clean_name(k): tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {own[k]}" for k in sorted(set(own) & set(sd))
              if tuple(sd[k].shape) != own[k]]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} was written for another model ({len(shapes)} shape mismatches, e.g. {shapes[:2]}; "
            f"{len(missing)} missing keys, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]}). "
            f"To train this model configuration, use a new run.out_dir or run.resume=never")


def _optimizer_state(model: nn.Module, optimizer) -> dict:
    """Full optimizer state; ``{"state": {}}`` for an optimizer that never stepped (``get_optimizer_state_dict``
    would initialise it with a zero-gradient step, which changes Adam's step count)."""
    if not optimizer.state:
        return {"state": {}}
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def _load_optimizer(model: nn.Module, optimizer, osd: dict) -> None:
    """Restore a full optimizer state; an optimizer that never stepped (e.g. the discriminator's before
    ``disc_start``) stays fresh, because ``set_optimizer_state_dict`` would first initialise its state with a
    zero-gradient step and so shift Adam's step count."""
    if not osd.get("state"):
        return
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))


def read_weights(path: str | Path, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """Model weights of a previous stage: a training checkpoint (EMA if present and preferred, else model),
    an exported ``{"module", "ema"}`` file, or a bare state dict / ``.safetensors``.

    Every file is read with ``weights_only=True`` (:func:`safe_load`) or as safetensors.

    Raises:
        CheckpointError: no file at ``path``, unreadable, not a state dict, or pickled Python objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(str(path))
    try:
        state = safe_load(path)
    except CorruptCheckpointError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    for k in ("ema", "model", "module") if prefer_ema else ("model", "module", "ema"):
        if isinstance(state.get(k), dict) and state[k]:
            return state[k]
    return state
