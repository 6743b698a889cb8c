"""The one loader the CLIs call: a model tree (official ``ckpts/`` or diffusers) -> :class:`HunyuanVideoPipeline`.

Every weight file goes through :mod:`hyvideo.checkpoint.io` (``read_state_dict``), the FP8 pair through
:mod:`hyvideo.checkpoint.fp8`, the text encoders through :mod:`hyvideo.checkpoint.text`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hyvideo.checkpoint.io import load_dit, load_vae, resolve_model_paths
from hyvideo.checkpoint.text import load_clip_text_encoder, load_llava_i2v_text_encoder, load_llm_text_encoder

# Where each model lives under each offload mode ("device" or "cpu"), and which models the pipeline moves to the
# device only while they run. "cpu" is the released --use-cpu-offload (DiT blocks streamed from CPU memory by
# hyvideo.accel.offload, the other models moved in turn); "model" moves whole models in turn (the DiT must fit
# at once); "blocks" streams the DiT's blocks and keeps the other models on the device.
OFFLOAD_MODES = {
    "none": ({}, ()),
    "cpu": ({"dit": "cpu", "vae": "cpu", "text": "cpu"}, ("text", "vae")),
    "model": ({"dit": "cpu", "vae": "cpu", "text": "cpu"}, ("text", "dit", "vae")),
    "blocks": ({"dit": "cpu"}, ()),
}


def has_vision_tower(text_encoder: str | os.PathLike) -> bool:
    """Whether the text encoder folder (or the ``text_encoder_i2v/`` under a root) is a LLaVA with a vision tower
    (``vision_config`` in its ``config.json``); False for a text-only LLM or a folder without ``config.json``
    (the LLaVA loader then names what is missing)."""
    folder = Path(text_encoder)
    for cfg in (folder / "text_encoder_i2v" / "config.json", folder / "config.json"):
        if cfg.is_file():
            return "vision_config" in json.loads(cfg.read_text())
    return True


def load_pipeline(model_base: str | os.PathLike, *, dit_weight: str | os.PathLike | None = None,
                  model: str = "HYVideo-T/2-cfgdistill", load_key: str = "module",
                  dit_dtype: torch.dtype = torch.bfloat16, vae_dtype: torch.dtype = torch.float16,
                  text_dtype: torch.dtype = torch.float16, device: str | torch.device = "cpu",
                  fp8: bool = False, offload: str = "none", i2v: bool = False,
                  image_embed_interleave: int | None = None, text_len: int | None = None, log=print):
    """Load the four models of a tree and wrap them in a :class:`hyvideo.pipeline.HunyuanVideoPipeline`.

    An image-to-video DiT (``i2v_condition_type`` set) gets the LLaVA text encoder of HunyuanVideo-I2V
    (``text_encoder_i2v/`` or the diffusers tree's LLaVA ``text_encoder/``) with the released image-embedding
    interleave of its condition type. When that folder holds a text-only LLM (no ``vision_config``: the nano I2V
    tree, or any I2V DiT fine-tuned by ``train_dit.py``, whose text states come from the text-only encoder), the
    prompt is encoded as for text-to-video and the image conditions the DiT through its latent only (logged).

    Args:
        model_base: official ``ckpts/`` root or diffusers folder (:func:`hyvideo.checkpoint.io.resolve_model_paths`).
        dit_weight: DiT file / folder overriding the tree's.
        model: DiT preset used when no ``config.json`` is beside the DiT weights.
        load_key: ``"module"`` or ``"ema"``.
        dit_dtype, vae_dtype, text_dtype: weight dtypes.
        device: compute device.
        fp8: FP8 block weights (released ``*_fp8.pt`` pair if present, else quantised on the CPU).
        offload: one of :data:`OFFLOAD_MODES`.
        i2v: prefer the image-to-video components of an official tree.
        image_embed_interleave: keep every n-th image feature in the text states (None: 4 for token replace,
            2 for latent concat).
        text_len: LLM text tokens kept (the released ``--text-len``); None = the encoder's default (256).
        log: one-line progress messages.

    Returns:
        The pipeline (no accelerated paths applied yet: see :func:`hyvideo.accel.apply`). A tree with a nano model
        card (``nano.json``) whose ``sampling.negative_prompt`` is a string sets the pipeline's
        ``default_negative_prompt`` to it (``""``: the empty caption its text dropout trained, logged).

    Raises:
        FileNotFoundError, WeightLoadError, ValueError: missing / unreadable / mismatched weights, bad mode.
    """
    from hyvideo.pipeline import HunyuanVideoPipeline  # noqa: PLC0415

    if offload not in OFFLOAD_MODES:
        raise ValueError(f"unknown offload mode {offload!r}; allowed: {list(OFFLOAD_MODES)}")
    homes, moved = OFFLOAD_MODES[offload]
    device = torch.device(device)
    paths = resolve_model_paths(model_base, dit_weight, i2v=i2v)
    log(f"loading {paths.layout} model tree from {model_base}: DiT {paths.dit}")
    dit = load_dit(paths.dit, model=model, load_key=load_key, dtype=dit_dtype, device=homes.get("dit", device),
                   fp8=fp8)
    vae = load_vae(paths.vae, dtype=vae_dtype, device=homes.get("vae", device))
    text_home = homes.get("text", device)
    if dit.i2v_condition_type is None or not has_vision_tower(paths.text_encoder):
        if dit.i2v_condition_type is not None:
            log(f"text encoder {paths.text_encoder} is text-only (no vision tower): the prompt is read without the "
                f"image, which conditions the DiT through its latent only (how train_dit.py trains I2V DiTs)")
        llm = load_llm_text_encoder(paths.text_encoder, dtype=text_dtype, device=text_home,
                                    **({} if text_len is None else {"text_len": text_len}))
    else:
        from hyvideo.text.llava_i2v import default_image_embed_interleave  # noqa: PLC0415

        interleave = image_embed_interleave or default_image_embed_interleave(dit.i2v_condition_type)
        llm = load_llava_i2v_text_encoder(paths.text_encoder, dtype=text_dtype, device=text_home,
                                          image_embed_interleave=interleave)
    clip = load_clip_text_encoder(paths.text_encoder_2, dtype=text_dtype, device=text_home)
    return HunyuanVideoPipeline(dit, vae, llm, clip, device=device, offload=moved,
                                default_negative_prompt=_card_negative_prompt(model_base, log))


def _card_negative_prompt(model_base: str | os.PathLike, log) -> str | None:
    """The CFG negative a nano model card recommends (a string, ``""`` = the empty caption), or None (released)."""
    from hyvideo.nano import CARD_FILE, read_card  # noqa: PLC0415

    card = read_card(model_base)  # None when the tree has no nano.json
    negative = None if card is None else card["sampling"].get("negative_prompt")
    if not isinstance(negative, str):
        return None
    log(f"CFG negative prompt: {negative!r} (from {CARD_FILE}; '' = the empty caption, the unconditional the "
        f"model's text dropout trained, instead of the released negative prompt it never saw)")
    return negative
