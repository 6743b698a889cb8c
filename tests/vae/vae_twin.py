"""VAE test helpers: config paths and a diffusers ``AutoencoderKLHunyuanVideo`` twin (same weights)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D

CONFIGS = Path(__file__).resolve().parents[2] / "hyvideo" / "configs"
RELEASED_CONFIG = CONFIGS / "vae_884_16c_hy.json"
TINY_CONFIG = CONFIGS / "vae_tiny.json"


def diffusers_kwargs(cfg: dict) -> dict:
    """Our (released) VAE config -> ``AutoencoderKLHunyuanVideo`` constructor kwargs."""
    n = len(cfg["block_out_channels"])
    return dict(
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        latent_channels=cfg["latent_channels"],
        down_block_types=("HunyuanVideoDownBlock3D",) * n, up_block_types=("HunyuanVideoUpBlock3D",) * n,
        block_out_channels=tuple(cfg["block_out_channels"]), layers_per_block=cfg["layers_per_block"],
        act_fn=cfg["act_fn"], norm_num_groups=cfg["norm_num_groups"], scaling_factor=cfg["scaling_factor"],
        spatial_compression_ratio=cfg["spatial_compression_ratio"],
        temporal_compression_ratio=cfg["time_compression_ratio"],
        mid_block_add_attention=cfg["mid_block_add_attention"],
    )


def diffusers_twin(ours: AutoencoderKLCausal3D):
    """A diffusers VAE built on ``meta`` holding ``ours``'s tensors (shared, ``assign=True``, strict keys)."""
    from diffusers import AutoencoderKLHunyuanVideo

    with torch.device("meta"):
        twin = AutoencoderKLHunyuanVideo(**diffusers_kwargs(ours.config))
    twin.load_state_dict(ours.state_dict(), strict=True, assign=True)
    return twin.eval()


def load_config(path: Path) -> dict:
    return json.loads(path.read_text())
