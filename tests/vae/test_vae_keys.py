"""The released-config VAE has exactly the released state-dict keys and shapes (built on the meta device)."""

from __future__ import annotations

from pathlib import Path

import torch

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from vae_twin import RELEASED_CONFIG

KEYS_TSV = Path(__file__).resolve().parents[1] / "assets" / "vae_keys.tsv"


def _released_keys() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in KEYS_TSV.read_text().splitlines() if line.strip()]
    return {k: tuple(int(v) for v in shape.strip("[]").split(",") if v.strip()) for k, shape in rows}


def test_state_dict_matches_released_keys_and_shapes():
    with torch.device("meta"):
        vae = AutoencoderKLCausal3D.from_config(RELEASED_CONFIG)
    ours = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    released = _released_keys()
    assert len(released) == 248
    assert sorted(set(ours) - set(released)) == [] and sorted(set(released) - set(ours)) == []
    assert ours == released
    assert sum(v.numel() for v in vae.state_dict().values()) == 246_478_803


def test_default_constructor_is_the_released_config():
    with torch.device("meta"):
        a, b = AutoencoderKLCausal3D(), AutoencoderKLCausal3D.from_config(RELEASED_CONFIG)
    assert a.config == b.config
    assert a.scaling_factor == 0.476986
    assert (a.spatial_compression_ratio, a.time_compression_ratio, a.latent_channels) == (8, 4, 16)
