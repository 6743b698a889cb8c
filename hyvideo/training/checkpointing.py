"""Training checkpoints with ``torch.distributed.checkpoint``: every rank writes its own shards, any world size
resumes (DCP reshards), optionally in the background; the newest readable checkpoint wins; streaming export.

Layout of ``<out_dir>/checkpoints/step_XXXXXXXX/`` (a folder written as ``step_XXXXXXXX.tmp/`` and renamed once
complete, so a folder with the final name is whole):

- ``.metadata`` + ``__<rank>_0.distcp``: DCP tensors ``model.*`` (the model's released key names), ``ema.*``,
  ``optim.<param>.<exp_avg|exp_avg_sq|step>`` and ``extra.<name>.model.*`` / ``extra.<name>.optim.*`` (the
  VAE discriminator); tensors only.
- ``train_state.json`` (rank 0, written last): step, resolved run config, model config, scheduler state, sampler
  position, rank 0's torch / numpy / python RNG states (all training randomness is also re-derived from
  ``(seed, step, sample)``), which optimizers have stepped, the world size that wrote it.

Checkpoints of earlier versions (one ``step_XXXXXXXX.pt`` with full state dicts, :mod:`hyvideo.training.state`)
still resume. :func:`export_dit` / :func:`export_vae` write the inference layouts from a checkpoint folder on one
process, on CPU, streaming (``python -m hyvideo.training.export``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from hyvideo.checkpoint import dcp
from hyvideo.checkpoint.io import fsync_dir

from .state import (
    EMA,
    CheckpointError,
    CorruptCheckpointError,
    checkpoint_dir,
    restore_training_state,
    safe_load,
)

log = logging.getLogger(__name__)
TRAIN_STATE = "train_state.json"
_NAME = re.compile(r"^step_(\d{8})(\.pt)?$")


# --------------------------------------------------------------------------------------------- RNG as JSON
def rng_state_json() -> dict:
    """torch / numpy / python RNG states as JSON-safe lists."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state().tolist(),
            "numpy": [np_state[0], np_state[1].tolist(), *map(float, np_state[2:])],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}


def set_rng_state_json(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------- finding
@dataclass
class ResumePoint:
    """A readable checkpoint: ``kind`` is ``"dcp"`` (folder) or ``"full"`` (an earlier version's single file)."""

    path: Path
    kind: str
    step: int
    config: dict | None
    model_config: dict | None
    meta: dict = field(default_factory=dict)  # train_state.json (dcp)
    state: dict | None = None  # the loaded file (full)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Checkpoint folders and earlier single files under ``out_dir/checkpoints``, newest step first (a folder
    before a file of the same step); temporary ``.tmp`` names are ignored."""
    found = [p for p in checkpoint_dir(out_dir).glob("step_*") if _NAME.match(p.name)]
    return sorted(found, key=lambda p: (int(_NAME.match(p.name).group(1)), p.is_dir()), reverse=True)


def open_checkpoint(path: str | Path) -> ResumePoint:
    """Check and describe one checkpoint (folder: metadata, every shard's length, ``train_state.json``;
    file: loaded memory-mapped with ``weights_only=True``).

    Raises:
        CorruptCheckpointError: incomplete or unreadable.
        CheckpointError: unsafe content (pickled objects outside the allow-list), or not a checkpoint.
    """
    path = Path(path)
    if path.is_file():
        state = safe_load(path)
        if not isinstance(state, dict) or "sampler" not in state or "model" not in state:
            raise CheckpointError(f"{path} is not a training checkpoint (no 'model' / 'sampler' entries)")
        return ResumePoint(path, "full", int(state["sampler"]["step"]), state.get("config"),
                           state.get("model_config"), state=state)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        dcp.check_complete(path)
        meta = json.loads((path / TRAIN_STATE).read_text())
    except dcp.UnsafeCheckpointError as e:
        raise CheckpointError(f"refusing to load {path}: {e}") from None
    except (dcp.IncompleteCheckpointError, OSError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"{path} is incomplete or unreadable: {e}") from e
    return ResumePoint(path, "dcp", int(meta["step"]), meta.get("config"), meta.get("model_config"), meta=meta)


def find_resume(resume: str, out_dir: str | Path) -> ResumePoint | None:
    """The checkpoint a run resumes from (``run.resume``: ``"auto"``, ``"never"`` or a path), or None.

    ``"auto"`` takes the newest checkpoint that is complete and readable, logging each skipped one and why.

    Raises:
        CheckpointError: an explicit path that is missing or unreadable; unsafe content (never skipped).
    """
    if resume == "never":
        return None
    if resume != "auto":
        try:
            return open_checkpoint(resume)
        except CorruptCheckpointError as e:
            raise CheckpointError(f"run.resume: {e}") from None
    for path in list_checkpoints(out_dir):
        try:
            return open_checkpoint(path)
        except CorruptCheckpointError as e:
            log.warning("resume: skipping %s (%s); trying the previous checkpoint", path.name, e)
    return None


# --------------------------------------------------------------------------------------------- saving
def _stepped(optimizer) -> bool:
    """Whether an optimizer has state (the discriminator's has none before ``loss.disc_start``); reading a
    fresh optimizer's state dict would initialise it with a zero step and shift Adam's step count."""
    return bool(optimizer.state)


def sharded_state(model: nn.Module, optimizer, ema: EMA | None, extra: dict | None) -> dict:
    """The DCP state of the run: this rank's shards (DTensors) of the model, optimizer and EMA, no copies."""
    state: dict = {"model": get_model_state_dict(model)}
    if _stepped(optimizer):
        state["optim"] = get_optimizer_state_dict(model, optimizer)["state"]
    if ema is not None:
        state["ema"] = dict(ema.shadow)
    for name, (module, opt) in (extra or {}).items():
        state.setdefault("extra", {})[name] = {"model": get_model_state_dict(module)}
        if _stepped(opt):
            state["extra"][name]["optim"] = get_optimizer_state_dict(module, opt)["state"]
    return state


class Checkpointer:
    """Writes DCP checkpoints of a run (collective: call on every rank).

    Args:
        out_dir: run folder (checkpoints go to ``out_dir/checkpoints/step_XXXXXXXX/``).
        is_main: rank 0 writes ``train_state.json`` and renames the finished folder.
        async_save: write in a background thread (a copy of the state is staged in CPU memory first; training
            continues). The folder is finalised at the next :meth:`save` or :meth:`wait`.
    """

    def __init__(self, out_dir: str | Path, *, is_main: bool, async_save: bool = False):
        self.dir, self.is_main, self.async_save = checkpoint_dir(out_dir), is_main, async_save
        self.pending = None  # (future, tmp folder, final folder, train_state)
        self.last: Path | None = None
        # async writes run collectives from a thread: give them their own (CPU) group
        self.group = dist.new_group(backend="gloo") if async_save and dist.is_initialized() else None

    def save(self, step: int, *, model: nn.Module, optimizer, scheduler, ema: EMA | None, config: dict,
             model_config: dict, extra: dict | None = None) -> Path:
        """Checkpoint after ``step`` optimizer steps; returns the final folder (complete once :meth:`wait`
        returned when saving asynchronously)."""
        self.wait()
        final = self.dir / f"step_{step:08d}"
        tmp = final.with_name(final.name + ".tmp")
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        meta = {"format": "hyvideo-dcp-1", "step": step, "config": config, "model_config": model_config,
                "scheduler": scheduler.state_dict(), "sampler": {"step": step}, "rng": rng_state_json(),
                "optimizers_stepped": {"model": _stepped(optimizer),
                                       **{n: _stepped(o) for n, (_, o) in (extra or {}).items()}},
                "ema": ema is not None, "world_size": dist.get_world_size() if dist.is_initialized() else 1}
        future = dcp.save(sharded_state(model, optimizer, ema, extra), tmp, process_group=self.group,
                          async_save=self.async_save)
        self.pending = (future, tmp, final, meta)
        if not self.async_save:
            self.wait()
        return final

    def wait(self) -> Path | None:
        """Finish the pending save: wait for its writes, then rank 0 writes ``train_state.json`` (fsynced) and
        renames the folder to its final name. Returns the last finished checkpoint."""
        if self.pending is None:
            return self.last
        future, tmp, final, meta = self.pending
        self.pending = None
        if future is not None:
            future.result()
        _barrier()
        if self.is_main:
            (tmp / TRAIN_STATE).write_text(json.dumps(meta))
            with open(tmp / TRAIN_STATE, "rb+") as f:
                os.fsync(f.fileno())
            fsync_dir(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            fsync_dir(final.parent)
            log.info("saved checkpoint %s", final)
        _barrier()
        self.last = final
        return final


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# --------------------------------------------------------------------------------------------- restoring
def restore(point: ResumePoint, *, model: nn.Module, optimizer, scheduler, ema: EMA | None,
            extra: dict | None = None) -> int:
    """Restore model, optimizer, scheduler, EMA, extras and RNG from ``point`` (collective); returns the step.

    Raises:
        CheckpointError: the checkpoint lacks EMA weights although EMA is on, or an extra module, or its
            model keys / shapes differ.
    """
    if point.kind == "full":
        return restore_training_state(point.path, point.state, model=model, optimizer=optimizer,
                                      scheduler=scheduler, ema=ema, extra=extra)
    meta, stepped = point.meta, point.meta.get("optimizers_stepped", {})
    if ema is not None and not meta.get("ema"):
        raise CheckpointError(f"{point.path} holds no EMA weights but optim.ema_decay > 0")
    missing = sorted(set(extra or {}) - set(stepped) - {"model"})
    if missing:
        raise CheckpointError(f"{point.path} holds no {missing} state")
    template, groups = {"model": get_model_state_dict(model)}, {}
    if stepped.get("model"):
        full = get_optimizer_state_dict(model, optimizer)  # initialises a fresh optimizer's state (then loaded)
        template["optim"], groups["model"] = full["state"], full["param_groups"]
    if ema is not None:
        template["ema"] = ema.shadow
    for name, (module, opt) in (extra or {}).items():
        template.setdefault("extra", {})[name] = {"model": get_model_state_dict(module)}
        if stepped.get(name):
            full = get_optimizer_state_dict(module, opt)
            template["extra"][name]["optim"], groups[name] = full["state"], full["param_groups"]
    try:
        dcp.load(template, point.path)
    except dcp.UnsafeCheckpointError as e:
        raise CheckpointError(f"refusing to load {point.path}: {e}") from None
    set_model_state_dict(model, template["model"])
    if "model" in groups:
        set_optimizer_state_dict(model, optimizer, {"state": template["optim"], "param_groups": groups["model"]})
    for name, (module, opt) in (extra or {}).items():
        set_model_state_dict(module, template["extra"][name]["model"])
        if name in groups:
            set_optimizer_state_dict(module, opt, {"state": template["extra"][name]["optim"],
                                                   "param_groups": groups[name]})
    scheduler.load_state_dict(meta["scheduler"])
    set_rng_state_json(meta["rng"])
    return int(meta["sampler"]["step"])


# --------------------------------------------------------------------------------------------- export
def export_dit(checkpoint: str | Path, folder: str | Path, dit_config: dict | None = None) -> Path:
    """Write ``folder/dit.pt`` (``{"module": sd, "ema": sd}``, the released layout ``sample_video.py
    --dit-weight`` and :func:`hyvideo.checkpoint.io.load_dit` read), ``dit.safetensors`` (+ ``dit_ema``) and
    ``config.json`` from a checkpoint folder; one process, CPU, streaming (see
    :func:`hyvideo.checkpoint.dcp.write_safetensors`: the ``.pt`` is written from the memory-mapped
    ``.safetensors``, so neither is ever held whole in process memory).

    Returns:
        The ``.pt`` path.
    """
    from safetensors.torch import load_file  # noqa: PLC0415

    from hyvideo.checkpoint.io import save_atomic  # noqa: PLC0415

    checkpoint, folder = Path(checkpoint), Path(folder)
    dit_config = dit_config or json.loads((checkpoint / TRAIN_STATE).read_text())["model_config"]
    obj = {"module": load_file(dcp.write_safetensors(checkpoint, folder / "dit.safetensors", "model."))}
    if dcp.tensor_entries(checkpoint, "ema."):
        obj["ema"] = load_file(dcp.write_safetensors(checkpoint, folder / "dit_ema.safetensors", "ema."))
    path = save_atomic(obj, folder / "dit.pt")
    del obj
    save_atomic_text(folder / "config.json", json.dumps({k: v for k, v in dit_config.items()
                                                         if not k.startswith("_")}, indent=1))
    return path


def export_vae(checkpoint: str | Path, folder: str | Path, vae_config: dict | None = None,
               prefer_ema: bool = True) -> Path:
    """Write the released VAE layout ``folder/{config.json, pytorch_model.pt}`` (``{"state_dict": sd}``, what
    :func:`hyvideo.checkpoint.io.load_vae` reads) and ``vae.safetensors`` from a checkpoint folder, streaming;
    the EMA weights when the checkpoint has them and ``prefer_ema``. Returns the folder."""
    from safetensors.torch import load_file  # noqa: PLC0415

    from hyvideo.checkpoint.io import save_atomic  # noqa: PLC0415

    checkpoint, folder = Path(checkpoint), Path(folder)
    vae_config = vae_config or json.loads((checkpoint / TRAIN_STATE).read_text())["model_config"]
    prefix = "ema.vae." if prefer_ema and dcp.tensor_entries(checkpoint, "ema.vae.") else "model.vae."
    sd = load_file(dcp.write_safetensors(checkpoint, folder / "vae.safetensors", prefix))
    save_atomic({"state_dict": sd}, folder / "pytorch_model.pt")
    del sd
    save_atomic_text(folder / "config.json", json.dumps(vae_config, indent=1))
    return folder


def save_atomic_text(path: Path, text: str) -> None:
    """Write a small text file atomically (temporary name, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
