"""Checks that run before the process group, the model or any weight is touched (issue 15).

Every check raises :class:`hyvideo.training.config.ConfigError` with one message that names the value and
what is allowed; ``train_dit.py`` / ``train_vae.py`` print it once (rank 0) and exit with status 2
(:func:`hyvideo.training.cli.run_cli`). The checks are deterministic, so every rank reaches the same verdict
without communicating. What is checked:

- paths: model / VAE configs (JSON that builds a model on the meta device), weight files, text encoders,
  LPIPS weights, ``run.init_from``;
- data: the manifest (exists, readable, every line valid, with ``file:line``) or the latent cache, every
  resolution tier, clips long enough for ``num_frames`` at ``fps``, and a full global batch for the launched
  world size (the dataset is built here once and handed to the loader);
- parallel layout: world size divisible by ``parallel.sp_degree``, ``engine: none`` only on one process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hyvideo.data.manifest import ManifestError, read_manifest
from hyvideo.data.sampler import BucketBatchSampler

from .builders import build_dataset, check_resolutions
from .config import ConfigError, DataConfig, DiTTrainConfig, VAETrainConfig


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 for a plain ``python`` launch)."""
    return int(os.environ.get("WORLD_SIZE", 1)) if "RANK" in os.environ else 1


def _need_file(path: str, key: str, what: str = "file") -> Path:
    p = Path(path)
    if not (p.is_dir() if what == "folder" else p.exists()):
        raise ConfigError(f"{key}: {what} not found: {path}")
    return p


def model_config_dict(path: str, key: str, kind: str) -> dict:
    """The full constructor config (defaults filled in) of the JSON model config at ``path``, checked by
    building the model on the meta device (no memory).

    Raises:
        ConfigError: missing file, invalid JSON, or kwargs the model rejects (the message says which).
    """
    p = _need_file(path, key)
    try:
        config = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{key}: {path} is not valid JSON: {e}") from None
    if kind == "dit":
        from hyvideo.models.dit import HYVideoDiffusionTransformer as cls  # noqa: PLC0415
    else:
        from hyvideo.vae.autoencoder import AutoencoderKLCausal3D as cls  # noqa: PLC0415
    if not isinstance(config, dict):
        raise ConfigError(f"{key}: {path} must hold a JSON object of constructor arguments")
    try:
        with torch.device("meta"):
            model = cls.from_config(config)
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"{key}: {path} does not describe a valid {cls.__name__}: {e}") from None
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_") and k != "attn_backend"}


def check_layout(cfg, world: int) -> None:
    """World size vs ``parallel.sp_degree`` / ``engine``; DeepSpeed is not part of this build."""
    par = cfg.parallel
    if par.engine == "deepspeed":
        raise ConfigError("parallel.engine='deepspeed' is not supported by this build; use 'fsdp' "
                          "(FSDP2 fully_shard = ZeRO-3 sharding of parameters, gradients and optimizer state)")
    if world % par.sp_degree:
        raise ConfigError(f"parallel.sp_degree={par.sp_degree} does not divide the world size {world} "
                          f"(torchrun --nproc_per_node x --nnodes)")
    if par.engine == "none" and world > 1:
        raise ConfigError(f"parallel.engine='none' runs on one process, but {world} were launched; use 'fsdp'")


def check_data(data: DataConfig, *, resolutions, num_frames: int, seed: int, dp_world: int, grad_accum: int,
               where: str = "data"):
    """Build the dataset for ``resolutions`` x ``num_frames`` and check it can feed every step.

    Returns:
        The dataset (reuse it for the loader).

    Raises:
        ConfigError: missing / unreadable / malformed manifest or cache, no usable clip, every video too short
            for ``num_frames`` at ``data.fps`` (with the longest clip's length), or no bucket with a full global
            batch of ``micro_batch x dp_world x grad_accum`` samples.
    """
    tiers = check_resolutions(resolutions, f"{where}.resolutions") if not data.latent_cache else resolutions
    if data.latent_cache:
        cache = _need_file(data.latent_cache, "data.latent_cache", "folder")
        for name in ("index.jsonl", "meta.json", "null_text.safetensors"):
            if not (cache / name).is_file():
                raise ConfigError(f"data.latent_cache {cache} has no {name}: not a finished "
                                  f"scripts/encode_latents.py output")
    elif not data.manifest:
        raise ConfigError("set data.manifest (clips) or data.latent_cache (scripts/encode_latents.py output)")
    else:
        _need_file(data.manifest, "data.manifest")
        try:
            read_manifest(data.manifest)  # every line parsed, with file:line on the first bad one
        except ManifestError as e:
            raise ConfigError(f"data.manifest: {e}") from None
    try:
        dataset = build_dataset(data, resolutions=tiers, num_frames=num_frames, seed=seed)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"{data.manifest or data.latent_cache}: {e}") from None
    _check_clip_lengths(dataset, data, num_frames, where)
    micro = {"video": data.video_batch_size, "image": data.image_batch_size}
    try:
        BucketBatchSampler(dataset.bucket_keys(), micro_batch=micro, dp_world=dp_world, grad_accum=grad_accum,
                           mix=data.mix, seed=seed, max_steps=1)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}. Add clips, lower data.video_batch_size / data.image_batch_size or "
                          f"optim.grad_accum, or launch fewer ranks") from None
    return dataset


def _check_clip_lengths(dataset, data: DataConfig, num_frames: int, where: str) -> None:
    """All video clips too short for ``num_frames`` (while the mix asks for videos): say so, with numbers."""
    wants_video = any(kind == "video" and w > 0 for kind, w in data.mix) and num_frames > 1
    too_short = getattr(dataset, "skipped", {}).get("clip_too_short", 0)
    if not wants_video or not too_short or any(k[0] == "video" for k in dataset.bucket_keys()):
        return
    longest = max((n / fps for _, _, fps, n in dataset.meta.values() if fps > 0), default=0.0)
    need = (num_frames - 1) / data.fps
    raise ConfigError(f"{where}.num_frames={num_frames} at data.fps={data.fps:g} needs clips of at least "
                      f"{need:.2f} s, but all {too_short} video clips of {data.manifest} are shorter (longest: "
                      f"{longest:.2f} s). Lower {where}.num_frames or data.fps, or use longer clips")


def check_lora_targets(cfg: DiTTrainConfig, dit_config: dict) -> None:
    """The ``lora.target_modules`` name linears of this DiT (checked on a ``meta`` build: no memory).

    Raises:
        ConfigError: a target that matches nothing (the message suggests the closest names).
    """
    from hyvideo.lora import resolve_targets  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415
    from hyvideo.training.lora import lora_settings  # noqa: PLC0415

    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config(dit_config)
    try:
        resolve_targets(dit, lora_settings(cfg).targets)
    except ValueError as e:
        raise ConfigError(f"lora.target_modules: {e}") from None


def preflight_dit(cfg: DiTTrainConfig, world: int | None = None):
    """All checks of ``train_dit.py`` that need no process group; returns ``(dataset, dit_config dict)``."""
    world = launched_world_size() if world is None else world
    check_layout(cfg, world)
    dit_config = model_config_dict(cfg.model.dit_config, "model.dit_config", "dit")
    if dit_config["heads_num"] % cfg.parallel.sp_degree:
        raise ConfigError(f"parallel.sp_degree={cfg.parallel.sp_degree} must divide the DiT's heads_num="
                          f"{dit_config['heads_num']} (Ulysses splits the heads)")
    on_the_fly = not cfg.data.latent_cache
    if on_the_fly or cfg.run.sample_every:
        model_config_dict(cfg.model.vae_config, "model.vae_config", "vae")
        if cfg.model.vae_weights:
            _need_file(cfg.model.vae_weights, "model.vae_weights")
    if on_the_fly and cfg.model.text_encoder != "tiny":
        _need_file(cfg.model.text_encoder, "model.text_encoder", "folder")
    if cfg.run.init_from:
        _need_file(cfg.run.init_from, "run.init_from")
    if cfg.lora.rank > 0:
        check_lora_targets(cfg, dit_config)
    dataset = check_data(cfg.data, resolutions=cfg.data.resolutions, num_frames=cfg.data.num_frames,
                         seed=cfg.run.seed, dp_world=world // cfg.parallel.sp_degree, grad_accum=cfg.optim.grad_accum)
    if cfg.data.latent_cache:
        check_cache_text(cfg, dit_config)
    return dataset, dit_config


def check_cache_text(cfg: DiTTrainConfig, dit_config: dict) -> None:
    """The latent cache's text states fit this run: same ``model.text_conditioning`` (a cache made for the
    CLIP-only ablation holds CLIP states) and a width equal to the DiT's ``text_states_dim``.

    Raises:
        ConfigError: naming the cache's value and the run's.
    """
    from safetensors import safe_open  # noqa: PLC0415

    cache = Path(cfg.data.latent_cache)
    made = json.loads((cache / "meta.json").read_text()).get("model", {}).get("text_conditioning", "llm+clip")
    if made != cfg.model.text_conditioning:
        raise ConfigError(f"data.latent_cache {cache} was encoded with model.text_conditioning={made!r}, this run "
                          f"sets {cfg.model.text_conditioning!r}; re-encode (scripts/encode_latents.py) or match it")
    with safe_open(str(cache / "null_text.safetensors"), "pt") as f:
        width = f.get_slice("video.text_states").get_shape()[-1]
    if width != dit_config.get("text_states_dim", width):
        raise ConfigError(f"data.latent_cache {cache} holds text states of width {width}, the DiT "
                          f"({cfg.model.dit_config}) takes text_states_dim={dit_config['text_states_dim']}")


def preflight_vae(cfg: VAETrainConfig, plan, world: int | None = None) -> tuple[list, dict]:
    """All checks of ``train_vae.py`` that need no process group; returns ``(datasets per curriculum stage (None
    for a stage at or after ``run.max_steps``), vae_config dict)``. ``plan`` is the curriculum
    ``[(start_step, tiers, frames)]``."""
    world = launched_world_size() if world is None else world
    if cfg.parallel.sp_degree != 1:
        raise ConfigError(f"parallel.sp_degree applies to the DiT only; set it to 1 for VAE training, "
                          f"got {cfg.parallel.sp_degree}")
    check_layout(cfg, world)
    vae_config = model_config_dict(cfg.model.vae_config, "model.vae_config", "vae")
    for key in ("model.init_weights", "loss.lpips_vgg", "loss.lpips_lin"):
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name):
            _need_file(getattr(getattr(cfg, section), name), key)
    if not cfg.data.manifest:
        raise ConfigError("data.manifest must be set (JSONL/Parquet of clips, hyvideo/data/manifest.py)")
    datasets = []
    for i, (start, tiers, frames) in enumerate(plan):
        if start >= cfg.run.max_steps:  # a stage this run never reaches
            datasets.append(None)
            continue
        where = f"curriculum[{i}]" if cfg.curriculum else "data"
        datasets.append(check_data(cfg.data, resolutions=tiers, num_frames=frames, seed=cfg.run.seed,
                                   dp_world=world, grad_accum=cfg.optim.grad_accum, where=where))
    return datasets, vae_config
