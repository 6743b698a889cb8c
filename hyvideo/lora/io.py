"""Reading and writing LoRA files: safetensors (with metadata), peft folders, weights-only torch files.

Metadata written by hyvideo (safetensors metadata holds strings only):

- ``format``: ``"pt"`` (safetensors' framework tag, what diffusers and transformers write).
- ``lora_adapter_metadata``: JSON of the ``peft.LoraConfig`` kwargs, each key prefixed ``transformer.``
  (``r``, ``lora_alpha``, ``target_modules``, ``rank_pattern``, ``alpha_pattern``). diffusers >= 0.35 builds its
  ``LoraConfig`` from this, so alpha != rank is honoured by ``HunyuanVideoPipeline.load_lora_weights``.
- ``hyvideo_lora``: JSON ``{"format": "hyvideo-lora", "version": 1, "style", "rank", "alpha", "dropout",
  "target_modules" (released names), "base_model" (the DiT's constructor config), "config" (the caller's run
  config, e.g. the trainer's resolved YAML)}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

LORA_ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
HYVIDEO_METADATA_KEY = "hyvideo_lora"
# Weight file names inside a folder: diffusers' save_lora_weights, peft's save_pretrained.
_FOLDER_FILES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors", "adapter_model.bin",
                 "pytorch_lora_weights.bin")


def _weight_file(folder: Path) -> Path:
    found = [folder / n for n in _FOLDER_FILES if (folder / n).is_file()]
    if not found:
        found = sorted(folder.glob("*.safetensors"))
    if len(found) != 1:
        raise FileNotFoundError(f"LoRA folder {folder} must hold one weight file ({', '.join(_FOLDER_FILES)} or a "
                                f"single *.safetensors); found {[p.name for p in found]}")
    return found[0]


def read_lora_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """Read a LoRA file or folder.

    Args:
        path: a ``.safetensors`` file, a weights-only torch file (``.bin`` / ``.pt``, loaded with
            ``weights_only=True``), or a folder (peft ``save_pretrained``: ``adapter_config.json`` +
            ``adapter_model.*``; diffusers ``save_lora_weights``: ``pytorch_lora_weights.safetensors``).

    Returns:
        ``(tensors, lora_config, hyvideo_metadata)``: lora_config is a ``peft.LoraConfig``-style dict (from
        ``adapter_config.json`` or the ``lora_adapter_metadata`` entry, ``transformer.`` prefix removed) or None;
        hyvideo_metadata is the decoded ``hyvideo_lora`` entry or ``{}``.

    Raises:
        FileNotFoundError: the path (or the folder's weight file) does not exist; the message names it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LoRA file not found: {path}")
    config = None
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            config = json.loads((path / "adapter_config.json").read_text())
        path = _weight_file(path)
    metadata: dict[str, str] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    else:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    if config is None and LORA_ADAPTER_METADATA_KEY in metadata:
        raw = json.loads(metadata[LORA_ADAPTER_METADATA_KEY])
        prefixed = {k.removeprefix("transformer."): v for k, v in raw.items() if k.startswith("transformer.")}
        config = prefixed or raw
    hyvideo = json.loads(metadata[HYVIDEO_METADATA_KEY]) if HYVIDEO_METADATA_KEY in metadata else {}
    return tensors, config, hyvideo


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Save tensors + string metadata to ``path`` atomically (``path.tmp`` then rename); returns the path.

    Raises:
        ValueError: a non-finite tensor (a broken LoRA is never written).
    """
    from safetensors.torch import save_file

    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"refusing to save a LoRA with non-finite values in {bad[:5]} ({len(bad)} tensors)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path
