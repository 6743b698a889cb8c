"""Loading released / diffusers / hyvideo weights into hyvideo models, and saving weights atomically.

Layouts understood (spec sections 2.1, 3.9, 6):

- Official ``ckpts/``::

    ckpts/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt   {"module": state_dict}
    ckpts/hunyuan-video-t2v-720p/vae/{config.json, pytorch_model.pt}
    ckpts/text_encoder/   ckpts/text_encoder_2/

  and the HunyuanVideo-I2V tree (``hunyuan-video-i2v-720p/`` with the same files, ``text_encoder_i2v/`` = the
  full LLaVA). A released file has no config: its ``img_in`` width (33 channels: latent concat), its keys
  (``guidance_in``) and its folder (``hunyuan-video-i2v-720p``: token replace) complete the preset.
  The same tree may hold safetensors instead (``mp_rank_00_model_states.safetensors``: the bare state dict;
  ``vae/pytorch_model.safetensors`` or ``vae/diffusion_pytorch_model.safetensors``), as the shipped
  hyvideo-nano tree does (``hyvideo/assets/nano``).

  A ``config.json`` beside the DiT weight file (written by ``scripts/make_tiny_checkpoints.py`` and by
  the training export) gives the DiT config; without one, the named preset (``hyvideo/configs/dit_13b.json``,
  shipped inside the package) is used. The released FP8 pair ``mp_rank_00_model_states_fp8.pt`` +
  ``mp_rank_00_model_states_fp8_map.pt`` (per-linear scales) loads scaled (see :func:`load_dit`).
- diffusers (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
  ``text_encoder_2/``, ``tokenizer_2/``): keys and configs are converted by :mod:`hyvideo.checkpoint.convert`.

Every load is ``strict``: a mismatch raises with the path and the missing / unexpected keys. Every weight file
of the package is read by :func:`read_state_dict` (``weights_only=True`` or safetensors: no code in a weight
file runs), and non-finite weights are reported at load time (:func:`check_finite`).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from hyvideo.checkpoint.convert import diffusers_to_official_dit

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # presets shipped inside the package
DIT_PRESETS = {"HYVideo-T/2-cfgdistill": "dit_13b.json", "HYVideo-T/2": "dit_13b_no_guidance.json",
               "tiny": "dit_tiny.json"}
OFFICIAL_DIT_SUBDIR = Path("hunyuan-video-t2v-720p") / "transformers"
OFFICIAL_DIT_FILE = "mp_rank_00_model_states.pt"
OFFICIAL_DIT_SAFETENSORS = "mp_rank_00_model_states.safetensors"  # same keys, bare state dict (no "module")
OFFICIAL_VAE_SUBDIR = Path("hunyuan-video-t2v-720p") / "vae"
OFFICIAL_I2V_ROOT = "hunyuan-video-i2v-720p"  # HunyuanVideo-I2V: same files as the t2v root
OFFICIAL_I2V_TEXT_ENCODER = "text_encoder_i2v"  # the full LLaVA (vision tower + projector + Llama)


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


def resolve_model_paths(model_base: str | os.PathLike, dit_weight: str | os.PathLike | None = None,
                        i2v: bool = False) -> ModelPaths:
    """Find the components of an official ``ckpts/`` tree or a diffusers-format folder.

    Args:
        model_base: the tree's root folder.
        dit_weight: optional DiT weight file or folder overriding the tree's.
        i2v: prefer the image-to-video components of an official tree (``hunyuan-video-i2v-720p/``,
            ``text_encoder_i2v/``). When only the other kind is present it is returned, so that the caller can
            name the condition type it found (:func:`dit_config_for`).

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
        t2v_root, i2v_root = OFFICIAL_DIT_SUBDIR.parent, Path(OFFICIAL_I2V_ROOT)
        root = i2v_root if i2v else t2v_root
        other = t2v_root if i2v else i2v_root
        if not (base / root).is_dir() and (base / other).is_dir():
            root = other
        text = OFFICIAL_I2V_TEXT_ENCODER if root == i2v_root else "text_encoder"
        dit = base / root / "transformers" / OFFICIAL_DIT_FILE
        if not dit.exists() and (dit.parent / OFFICIAL_DIT_SAFETENSORS).is_file():
            dit = dit.parent / OFFICIAL_DIT_SAFETENSORS
        paths = ModelPaths("official", dit, base / root / "vae", base / text, base / "text_encoder_2")
    if dit_weight is not None:
        paths = ModelPaths(paths.layout, Path(dit_weight), paths.vae, paths.text_encoder, paths.text_encoder_2)
    for name in ("dit", "vae", "text_encoder", "text_encoder_2"):
        p = getattr(paths, name)
        if not p.exists():
            raise FileNotFoundError(f"{name} weights not found: tried {p} ({paths.layout} layout under {base})")
    return paths


def read_state_dict(path: str | os.PathLike) -> dict:
    """Read a weight file: ``.safetensors``, or a torch file with ``weights_only=True`` (memory-mapped if zip).

    The one place the package reads weight files: a pickle that would run code is refused, not executed.

    Raises:
        FileNotFoundError: no file at ``path``.
        WeightLoadError: unreadable, truncated, or holding objects other than tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            return load_file(str(path))
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e).lower():
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format: no mmap
    except pickle.UnpicklingError as e:
        raise WeightLoadError(f"{path} is not a plain weight file (refused to unpickle code or objects: "
                              f"{str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - truncated / corrupt files raise many types
        raise WeightLoadError(f"cannot read weight file {path}: {type(e).__name__}: {e}") from None


def weight_file_params(path: str | os.PathLike) -> int:
    """Parameter count of DiT weights (a file or a folder) without reading the tensors (mmap / headers only).

    Validates each file as :func:`read_state_dict` does (a pickle payload or a non-checkpoint is refused), so the
    CLI can check a request against the real model before loading anything.

    Raises:
        FileNotFoundError: nothing loadable at ``path``.
        WeightLoadError: unreadable or unsafe file.
    """
    path = Path(path)
    files = [path]
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*_model_states.pt"))[:1] \
            or sorted(path.glob("pytorch_model_*.pt"))[:1]
        if not files:
            raise FileNotFoundError(f"no DiT weights in {path}")
    total = 0
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open  # noqa: PLC0415

            with safe_open(str(f), framework="pt") as handle:
                total += sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
            continue
        sd = read_state_dict(f)
        sd = sd.get("module") or sd.get("ema") or sd if isinstance(sd, dict) else sd
        total += sum(v.numel() for v in sd.values() if torch.is_tensor(v))
    return total


def check_finite(sd: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Raise when a floating tensor of ``sd`` holds NaN or Inf (a corrupt or diverged checkpoint).

    Raises:
        WeightLoadError: naming the source, the count and a few of the bad tensors.
    """
    bad = [k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point() and v.dtype.itemsize > 1
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightLoadError(f"{source} holds non-finite (NaN/Inf) values in {len(bad)} tensors, e.g. {bad[:4]}; "
                              f"the file is corrupt or the run that wrote it diverged")


def _read_sharded_dir(folder: Path, stem: str) -> dict[str, torch.Tensor] | None:
    """Read ``{stem}.safetensors`` or its ``.index.json`` shards from a diffusers folder, if present."""
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return read_state_dict(single)
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        sd: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            sd.update(read_state_dict(folder / shard))
        return sd
    return None


def read_dit_state_dict(path: str | os.PathLike, load_key: str = "module") -> dict[str, torch.Tensor]:
    """Read DiT weights in the released key layout from a file or folder.

    Accepts: a ``.pt`` holding ``{"module": sd}`` / ``{"ema": sd}`` (``load_key``) or a bare state dict; a
    ``.safetensors`` file (a bare state dict); a folder holding ``*_model_states.pt``,
    ``*_model_states.safetensors`` or ``pytorch_model_*.pt`` (official) or a diffusers ``transformer/`` folder
    (keys converted to the released names).

    Raises:
        FileNotFoundError: nothing loadable at ``path`` (message lists what was looked for).
        WeightLoadError: a wrapper without ``load_key``.
    """
    path = Path(path)
    if path.is_dir():
        diffusers_sd = _read_sharded_dir(path, "diffusion_pytorch_model")
        if diffusers_sd is not None:
            return diffusers_to_official_dit(diffusers_sd)
        files = (sorted(path.glob("*_model_states.pt")) or sorted(path.glob("*_model_states.safetensors"))
                 or sorted(path.glob("pytorch_model_*.pt")))
        if not files:
            raise FileNotFoundError(f"no DiT weights in {path}: looked for diffusion_pytorch_model.safetensors, "
                                    f"*_model_states.pt, *_model_states.safetensors and pytorch_model_*.pt")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"DiT weight file not found: {path}")
    sd = read_state_dict(path)
    if "module" in sd or "ema" in sd:
        if load_key not in sd:
            raise WeightLoadError(f"{path} holds {sorted(k for k in sd if not torch.is_tensor(sd[k]))} but not "
                                  f"the requested load key {load_key!r}")
        sd = sd[load_key]
    return sd


def dit_config_for(path: str | os.PathLike, model: str = "HYVideo-T/2-cfgdistill") -> dict:
    """DiT constructor kwargs for a weight path: a ``config.json`` beside it (ours or diffusers'), else a preset
    completed from the weight file itself (:func:`released_file_overrides`).

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
    preset = json.loads((CONFIG_DIR / DIT_PRESETS[model]).read_text())
    return {**preset, **released_file_overrides(path, preset.get("out_channels") or 16)}


def released_file_overrides(path: str | os.PathLike, out_channels: int = 16) -> dict:
    """What a config-less released DiT file says about itself: ``in_channels`` (33 = ``2 * 16 + 1``: latent
    concat), ``guidance_embed`` (``guidance_in`` keys present) and ``i2v_condition_type`` (latent concat by its
    width; token replace for a 16-channel file under ``hunyuan-video-i2v-720p/``, which is what HunyuanVideo-I2V
    ships). Reads the file memory-mapped (no tensor data); an unreadable file gives ``{}`` (its load reports it).
    """
    try:
        sd = read_dit_state_dict(path)
    except (FileNotFoundError, WeightLoadError, OSError):
        return {}
    weight = sd.get("img_in.proj.weight")
    if weight is None:
        return {}
    out = {"in_channels": int(weight.shape[1]), "guidance_embed": "guidance_in.mlp.0.weight" in sd}
    if out["in_channels"] == 2 * out_channels + 1:
        out["i2v_condition_type"] = "latent_concat"
    elif OFFICIAL_I2V_ROOT in Path(path).resolve().parts:
        out["i2v_condition_type"] = "token_replace"
    return out


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
        i2v_condition_type=cfg.get("image_condition_type"),
    )


def dit_config_to_diffusers(cfg: dict) -> dict:
    """Inverse of :func:`dit_config_from_diffusers`: hyvideo / released kwargs -> diffusers
    ``HunyuanVideoTransformer3DModel`` kwargs (``i2v_condition_type`` -> ``image_condition_type``).

    Raises:
        ValueError: a config diffusers cannot express (non-square spatial patch, no QK norm or a LayerNorm one).
    """
    patch = list(cfg.get("patch_size", [1, 2, 2]))
    if patch[1] != patch[2] or not cfg.get("qk_norm", True) or cfg.get("qk_norm_type", "rms") != "rms":
        raise ValueError(f"diffusers' HunyuanVideoTransformer3DModel needs a square spatial patch and RMS QK norm; "
                         f"got patch_size {patch}, qk_norm {cfg.get('qk_norm')}, {cfg.get('qk_norm_type')!r}")
    heads = cfg["heads_num"]
    return dict(
        in_channels=cfg["in_channels"], out_channels=cfg.get("out_channels") or cfg["in_channels"],
        num_attention_heads=heads, attention_head_dim=cfg["hidden_size"] // heads,
        num_layers=cfg["mm_double_blocks_depth"], num_single_layers=cfg["mm_single_blocks_depth"],
        num_refiner_layers=cfg.get("text_refiner_depth", 2), mlp_ratio=cfg.get("mlp_width_ratio", 4.0),
        patch_size=patch[1], patch_size_t=patch[0], qk_norm="rms_norm", guidance_embeds=cfg["guidance_embed"],
        text_embed_dim=cfg["text_states_dim"], pooled_projection_dim=cfg["text_states_dim_2"],
        rope_theta=float(cfg.get("rope_theta", 256.0)), rope_axes_dim=tuple(cfg["rope_dim_list"]),
        image_condition_type=cfg.get("i2v_condition_type"),
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
             dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu", fp8: bool = False,
             **overrides):
    """Build :class:`HYVideoDiffusionTransformer` on ``meta``, load its weights on the CPU, then move it.

    FP8: ``path`` may be a released ``*_fp8.pt`` (read with its ``*_fp8_map.pt`` scales) or the bf16 file
    whose ``*_fp8.pt`` sibling exists. With ``fp8=True`` the block linears keep float8_e4m3fn storage
    (:class:`hyvideo.accel.fp8.FP8Linear`, the released FP8 path); a bf16 file is quantised on the CPU before
    the model moves to ``device`` (the bf16 weights never occupy the device). With ``fp8=False`` an FP8 file
    loads dequantised (``code * scale``) in ``dtype``. A file holding float8 tensors without a scale map is
    refused. Non-finite weights are reported.

    Raises:
        FileNotFoundError, WeightLoadError: see :func:`read_dit_state_dict`, :func:`load_into` and
            :func:`check_finite`.
    """
    from hyvideo.accel.fp8 import FP8_DTYPE, FP8Linear, convert_to_fp8  # noqa: PLC0415
    from hyvideo.checkpoint import fp8 as fp8_files  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    config = {**dit_config_for(path, model), **overrides}
    fp8_file = fp8_files.released_fp8_path(path) if fp8 or fp8_files.is_fp8_file(path) else None
    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config(config)
    if fp8_file is not None:
        sd, scales = fp8_files.read_fp8_pair(fp8_file, load_key)
        if fp8:
            convert_to_fp8(dit, scales)
            sd = {k: v if v.dtype == FP8_DTYPE else v.to(dtype) for k, v in sd.items()}
        else:
            sd = fp8_files.dequantize(sd, scales, dtype, fp8_file)
        source = fp8_file
    else:
        if fp8_files.is_fp8_file(path):
            fp8_files.read_fp8_pair(path, load_key)  # raises: the scale map is missing
        sd = read_dit_state_dict(path, load_key)
        floats8 = [k for k, v in sd.items() if v.dtype == FP8_DTYPE]
        if floats8:
            raise WeightLoadError(f"{path} holds {len(floats8)} float8 tensors (e.g. {floats8[:2]}) but no scale "
                                  f"map beside it ({fp8_files.fp8_map_path(path).name}); refusing to load unscaled codes")
        sd = {k: v.to(dtype) for k, v in sd.items()}
        source = path
    load_into(dit, sd, source)
    check_finite(sd, source)
    if fp8 and fp8_file is None:
        convert_to_fp8(dit)  # quantise on the CPU: the bf16 weights never reach the device
    for m in dit.modules():  # load_into assigns: keep the fp8 weights frozen
        if isinstance(m, FP8Linear):
            m.weight.requires_grad_(False)
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
        if not weight.is_file() and (folder / "pytorch_model.safetensors").is_file():
            weight = folder / "pytorch_model.safetensors"
        if not weight.is_file():
            raise FileNotFoundError(f"VAE weights not found: tried {weight}, {folder / 'pytorch_model.safetensors'} "
                                    f"and {folder / 'diffusion_pytorch_model.safetensors'}")
        sd = read_state_dict(weight)
        sd = sd.get("state_dict", sd)
        if any(k.startswith("vae.") for k in sd):
            sd = {k[4:]: v for k, v in sd.items() if k.startswith("vae.")}
    with torch.device("meta"):
        vae = AutoencoderKLCausal3D.from_config(cfg)
    sd = {k: v.to(dtype) for k, v in sd.items()}
    load_into(vae, sd, folder)
    check_finite(sd, folder)
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
