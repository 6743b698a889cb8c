"""Assemble a trained nano model into the official ``ckpts/`` layout (safetensors) with its model card JSON.

Layout written by :func:`assemble_tree` (what :func:`hyvideo.checkpoint.io.resolve_model_paths` reads)::

    TREE/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.safetensors   DiT (EMA weights, fp16)
    TREE/hunyuan-video-t2v-720p/transformers/config.json
    TREE/hunyuan-video-t2v-720p/vae/pytorch_model.safetensors                      VAE (fp16)
    TREE/hunyuan-video-t2v-720p/vae/config.json                                    (scaling_factor = latent scale)
    TREE/text_encoder/   TREE/text_encoder_2/                                      (written earlier, with tokenizers)
    TREE/nano.json                                                                 vocabulary, trained sizes, settings
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hyvideo.checkpoint.io import OFFICIAL_DIT_SAFETENSORS, OFFICIAL_DIT_SUBDIR, OFFICIAL_VAE_SUBDIR, read_state_dict

SHIP_DTYPE = torch.float16  # halves the tree; sampling casts to the run's dtype (fp16 -> fp32 is exact)


def _save_safetensors(sd: dict[str, torch.Tensor], path: Path) -> None:
    """Atomic safetensors write of a state dict (floating tensors in :data:`SHIP_DTYPE`)."""
    from safetensors.torch import save_file  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    out = {k: (v.to(SHIP_DTYPE) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    bad = [k for k, v in out.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"refusing to ship non-finite weights (or values beyond fp16): {bad[:4]}")
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp))
    os.replace(tmp, path)


def write_dit(tree: Path, dit_export: Path, load_key: str = "ema") -> Path:
    """The exported DiT (``train_dit.py``'s ``export/dit.pt`` + ``config.json``) as the tree's safetensors."""
    sd = read_state_dict(dit_export)
    sd = sd.get(load_key) or sd["module"]
    folder = tree / OFFICIAL_DIT_SUBDIR
    _save_safetensors(sd, folder / OFFICIAL_DIT_SAFETENSORS)
    (folder / "config.json").write_text((dit_export.parent / "config.json").read_text())
    return folder


def write_vae(tree: Path, vae_export: Path, latent_scale: float) -> Path:
    """The exported VAE folder (``train_vae.py``'s ``export/vae``) as safetensors, with ``scaling_factor`` set to
    the latent scale the DiT was trained with."""
    sd = read_state_dict(vae_export / "pytorch_model.pt")
    sd = sd.get("state_dict", sd)
    folder = tree / OFFICIAL_VAE_SUBDIR
    _save_safetensors(sd, folder / "pytorch_model.safetensors")
    cfg = json.loads((vae_export / "config.json").read_text())
    cfg["scaling_factor"] = float(latent_scale)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    return folder


def write_card(tree: Path, card: dict) -> Path:
    """``TREE/nano.json`` (see :mod:`hyvideo.nano`)."""
    path = tree / "nano.json"
    path.write_text(json.dumps(card, indent=1))
    return path


def tree_size_mb(tree: Path) -> float:
    """Total size of the files under ``tree``, MB."""
    return sum(f.stat().st_size for f in Path(tree).rglob("*") if f.is_file()) / 1e6
