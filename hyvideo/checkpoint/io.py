"""Loading released / diffusers / hyvideo weights into hyvideo models, and saving weights atomically.

Layouts understood (spec sections 2.1, 3.9, 6):

- Official ``ckpts/``::

    ckpts/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt   {"module": state_dict}
    ckpts/hunyuan-video-t2v-720p/vae/{config.json, pytorch_model.pt}
    ckpts/text_encoder/   ckpts/text_encoder_2/

  A ``config.json`` beside the DiT weight file (written by ``scripts/make_tiny_checkpoints.py`` and by
  the training export) gives the DiT config; without one, the named preset (``configs/dit_13b.json``) is used.
- diffusers (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
  ``text_encoder_2/``, ``tokenizer_2/``): keys and configs are converted by :mod:`hyvideo.checkpoint.convert`.

Every load is ``strict``: a mismatch raises with the path and the missing / unexpected keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hyvideo.checkpoint.convert import diffusers_to_official_dit

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DIT_PRESETS = {"HYVideo-T/2-cfgdistill": "dit_13b.json", "HYVideo-T/2": "dit_13b_no_guidance.json"}
OFFICIAL_DIT_SUBDIR = Path("hunyuan-video-t2v-720p") / "transformers"
OFFICIAL_DIT_FILE = "mp_rank_00_model_states.pt"
OFFICIAL_VAE_SUBDIR = Path("hunyuan-video-t2v-720p") / "vae"


class WeightLoadError(RuntimeError):
    """A weight file is missing, unreadable or does not match the model (message names the path and keys)."""


@dataclass(frozen=True)
class ModelPaths:
    """Where each component of a model tree lives; ``layout`` is ``"official"`` or ``"diffusers"``."""

    layout: str
    dit: Path
    vae: Path
    text_encoder: Path
    text_encoder_2: Path


def resolve_model_paths(model_base: str | os.PathLike, dit_weight: str | os.PathLike | None = None) -> ModelPaths:
    """Find the components of an official ``ckpts/`` tree or a diffusers-format folder.

    Args:
        model_base: the tree's root folder.
        dit_weight: optional DiT weight file or folder overriding the tree's.

    Raises:
        FileNotFoundError: ``model_base`` (or a component of it) does not exist; the message names the path.
    """
    base = Path(model_base)
    if not base.is_dir():
        raise FileNotFoundError(f"--model-base folder not found: {base}")
    if (base / "model_index.json").is_file() or (base / "transformer").is_dir():
        paths = ModelPaths("diffusers", base / "transformer", base / "vae", base / "text_encoder",
                           base / "text_encoder_2")
    else:
        paths = ModelPaths("official", base / OFFICIAL_DIT_SUBDIR / OFFICIAL_DIT_FILE, base / OFFICIAL_VAE_SUBDIR,
                           base / "text_encoder", base / "text_encoder_2")
    if dit_weight is not None:
        paths = ModelPaths(paths.layout, Path(dit_weight), paths.vae, paths.text_encoder, paths.text_encoder_2)
    for name in ("dit", "vae", "text_encoder", "text_encoder_2"):
        p = getattr(paths, name)
        if not p.exists():
            raise FileNotFoundError(f"{name} weights not found: tried {p} ({paths.layout} layout under {base})")
    return paths


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # not a zip-format file: mmap is unavailable
        return torch.load(path, map_location="cpu", weights_only=True)


def _read_sharded_dir(folder: Path, stem: str) -> dict[str, torch.Tensor] | None:
    """Read ``{stem}.safetensors`` or its ``.index.json`` shards from a diffusers folder, if present."""
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return _read_state_dict(single)
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        sd: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            sd.update(_read_state_dict(folder / shard))
        return sd
    return None


def read_dit_state_dict(path: str | os.PathLike, load_key: str = "module") -> dict[str, torch.Tensor]:
    """Read DiT weights in the released key layout from a file or folder.

    Accepts: a ``.pt`` holding ``{"module": sd}`` / ``{"ema": sd}`` (``load_key``) or a bare state dict; a
    ``.safetensors`` file; a folder holding ``*_model_states.pt`` or ``pytorch_model_*.pt`` (official) or a
    diffusers ``transformer/`` folder (keys converted to the released names).

    Raises:
        FileNotFoundError: nothing loadable at ``path`` (message lists what was looked for).
        WeightLoadError: a wrapper without ``load_key``.
    """
    path = Path(path)
    if path.is_dir():
        diffusers_sd = _read_sharded_dir(path, "diffusion_pytorch_model")
        if diffusers_sd is not None:
            return diffusers_to_official_dit(diffusers_sd)
        files = sorted(path.glob("*_model_states.pt")) or sorted(path.glob("pytorch_model_*.pt"))
        if not files:
            raise FileNotFoundError(f"no DiT weights in {path}: looked for diffusion_pytorch_model.safetensors, "
                                    f"*_model_states.pt and pytorch_model_*.pt")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"DiT weight file not found: {path}")
    sd = _read_state_dict(path)
    if "module" in sd or "ema" in sd:
        if load_key not in sd:
            raise WeightLoadError(f"{path} holds {sorted(k for k in sd if not torch.is_tensor(sd[k]))} but not "
                                  f"the requested load key {load_key!r}")
        sd = sd[load_key]
    return sd


def dit_config_for(path: str | os.PathLike, model: str = "HYVideo-T/2-cfgdistill") -> dict:
    """DiT constructor kwargs for a weight path: a ``config.json`` beside it (ours or diffusers'), else a preset.

    Raises:
        ValueError: unknown preset name.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    cfg_file = folder / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        return dit_config_from_diffusers(cfg) if "num_attention_heads" in cfg else cfg
    if model not in DIT_PRESETS:
        raise ValueError(f"unknown DiT preset {model!r}; allowed: {sorted(DIT_PRESETS)}")
    return json.loads((CONFIG_DIR / DIT_PRESETS[model]).read_text())


def dit_config_from_diffusers(cfg: dict) -> dict:
    """Map a diffusers ``HunyuanVideoTransformer3DModel`` config to hyvideo / released kwargs."""
    return dict(
        patch_size=[cfg.get("patch_size_t", 1), cfg["patch_size"], cfg["patch_size"]],
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        hidden_size=cfg["num_attention_heads"] * cfg["attention_head_dim"], heads_num=cfg["num_attention_heads"],
        mlp_width_ratio=cfg.get("mlp_ratio", 4.0), mm_double_blocks_depth=cfg["num_layers"],
        mm_single_blocks_depth=cfg["num_single_layers"], rope_dim_list=list(cfg["rope_axes_dim"]),
        rope_theta=cfg.get("rope_theta", 256.0), qk_norm=cfg.get("qk_norm") is not None, qk_norm_type="rms",
        guidance_embed=cfg["guidance_embeds"], text_states_dim=cfg["text_embed_dim"],
        text_states_dim_2=cfg["pooled_projection_dim"], text_refiner_depth=cfg.get("num_refiner_layers", 2),
    )


def load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """``model.load_state_dict(sd, strict=True, assign=True)`` with a readable mismatch report.

    Raises:
        WeightLoadError: missing / unexpected keys or shape mismatches (listed, with ``source``).
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(sd)) if sd[k].shape != own[k].shape]
    if missing or unexpected or bad_shapes:
        raise WeightLoadError(
            f"weights in {source} do not match {type(model).__name__}: "
            f"{len(missing)} missing {missing[:8]}, {len(unexpected)} unexpected {unexpected[:8]}, "
            f"{len(bad_shapes)} shape mismatches {bad_shapes[:4]}")
    model.load_state_dict(sd, strict=True, assign=True)


def load_dit(path: str | os.PathLike, *, model: str = "HYVideo-T/2-cfgdistill", load_key: str = "module",
             dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu", **overrides):
    """Build :class:`HYVideoDiffusionTransformer` on ``meta`` and load weights (no double allocation).

    Raises:
        FileNotFoundError, WeightLoadError: see :func:`read_dit_state_dict` and :func:`load_into`.
    """
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    config = {**dit_config_for(path, model), **overrides}
    sd = read_dit_state_dict(path, load_key)
    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config(config)
    load_into(dit, {k: v.to(dtype) for k, v in sd.items()}, path)
    return dit.to(device).eval()


def vae_config_from_diffusers(cfg: dict) -> dict:
    """Map a diffusers ``AutoencoderKLHunyuanVideo`` config to the released VAE config keys."""
    n = len(cfg["block_out_channels"])
    return dict(
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"], latent_channels=cfg["latent_channels"],
        down_block_types=["DownEncoderBlockCausal3D"] * n, up_block_types=["UpDecoderBlockCausal3D"] * n,
        block_out_channels=list(cfg["block_out_channels"]), layers_per_block=cfg["layers_per_block"],
        act_fn=cfg.get("act_fn", "silu"), norm_num_groups=cfg["norm_num_groups"],
        scaling_factor=cfg["scaling_factor"], spatial_compression_ratio=cfg["spatial_compression_ratio"],
        time_compression_ratio=cfg["temporal_compression_ratio"],
        mid_block_add_attention=cfg.get("mid_block_add_attention", True),
    )


def load_vae(folder: str | os.PathLike, *, dtype: torch.dtype = torch.float16, device: str | torch.device = "cpu"):
    """Load :class:`AutoencoderKLCausal3D` from ``vae/`` (official ``pytorch_model.pt`` or diffusers safetensors).

    Official files may wrap weights in ``"state_dict"`` and prefix keys with ``vae.`` (spec 3.9).

    Raises:
        FileNotFoundError: no ``config.json`` or weight file in ``folder`` (path named).
        WeightLoadError: key mismatch.
    """
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    folder = Path(folder)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"VAE config not found: {cfg_file}")
    cfg = json.loads(cfg_file.read_text())
    if "temporal_compression_ratio" in cfg:  # diffusers config
        cfg = vae_config_from_diffusers(cfg)
    sd = _read_sharded_dir(folder, "diffusion_pytorch_model")
    if sd is None:
        weight = folder / "pytorch_model.pt"
        if not weight.is_file():
            raise FileNotFoundError(f"VAE weights not found: tried {weight} and "
                                    f"{folder / 'diffusion_pytorch_model.safetensors'}")
        sd = _read_state_dict(weight)
        sd = sd.get("state_dict", sd)
        if any(k.startswith("vae.") for k in sd):
            sd = {k[4:]: v for k, v in sd.items() if k.startswith("vae.")}
    with torch.device("meta"):
        vae = AutoencoderKLCausal3D.from_config(cfg)
    load_into(vae, {k: v.to(dtype) for k, v in sd.items()}, folder)
    return vae.to(device).eval()


def save_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path.tmp``, ``fsync`` it, rename it to ``path``, then ``fsync`` the folder, so that
    neither a crash nor a power loss leaves a truncated or empty checkpoint under the final name (without the
    syncs the rename can reach the disk before the data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where folders cannot be opened
    (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
