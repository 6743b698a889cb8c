"""``num_decode_tiles`` predicts how often ``decode`` runs the decoder (the web UI's VAE-decode progress bar)."""

from __future__ import annotations

import json

import pytest
import torch

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def vae():
    cfg = {k: v for k, v in json.loads((ROOT / "hyvideo/configs/vae_tiny.json").read_text()).items()
           if not k.startswith("_")}
    return AutoencoderKLCausal3D(**cfg).eval()  # tiles of 32 px (4 latents) and 16 frames (4 latents)


@pytest.mark.parametrize("tiling", [False, True])
@pytest.mark.parametrize("shape", [(1, 16, 3, 4, 4), (1, 16, 3, 8, 8), (1, 16, 3, 8, 14), (1, 16, 6, 6, 4),
                                   (2, 16, 9, 4, 9)])
def test_num_decode_tiles_counts_decoder_calls(vae, shape, tiling):
    vae.enable_tiling(tiling)
    calls = []
    hook = vae.decoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            vae.decode(torch.randn(shape))
    finally:
        hook.remove()
    assert len(calls) == vae.num_decode_tiles(shape)
    assert (len(calls) > 1) == (tiling and (shape[2] > 4 or max(shape[3:]) > 4))
