"""AutoencoderKLCausal3D vs diffusers ``AutoencoderKLHunyuanVideo`` with identical weights (fp32, CPU)."""

from __future__ import annotations

import torch

from hyvideo.checkpoint.io import load_vae, vae_config_from_diffusers
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from vae_twin import RELEASED_CONFIG, TINY_CONFIG, diffusers_kwargs, diffusers_twin, load_config

ATOL = 1e-4  # acceptance bound; in practice both run the same fp32 ops and agree to ~1e-6 or better
RELEASED_PARAMS = 246_478_803


def _check_parity(ours: AutoencoderKLCausal3D, x: torch.Tensor) -> None:
    twin = diffusers_twin(ours)
    twin.use_framewise_encoding = twin.use_framewise_decoding = False  # untiled on both sides
    with torch.no_grad():
        post, post_df = ours.encode(x).latent_dist, twin.encode(x).latent_dist
        b, _, t, h, w = x.shape
        assert post.mean.shape == (b, 16, (t - 1) // 4 + 1, h // 8, w // 8)
        assert (post.mean - post_df.mean).abs().max() <= ATOL
        assert (post.logvar - post_df.logvar).abs().max() <= ATOL
        assert torch.equal(post.mode(), post.mean)
        s = post.sample(generator=torch.Generator().manual_seed(3))
        s_df = post_df.sample(generator=torch.Generator().manual_seed(3))
        assert (s - s_df).abs().max() <= ATOL and not torch.equal(s, post.mean)
        z = torch.randn_like(post.mean)
        out, out_df = ours.decode(z).sample, twin.decode(z).sample
    assert out.shape == x.shape
    assert out.abs().max() > 1e-3  # not a degenerate all-zero output
    assert (out - out_df).abs().max() <= ATOL


def test_state_dict_keys_equal_diffusers(tiny_vae):
    """diffusers -> ours needs no key conversion: same keys, order and shapes; configs map both ways."""
    twin = diffusers_twin(tiny_vae)
    ours_sd, df_sd = tiny_vae.state_dict(), twin.state_dict()
    assert list(ours_sd) == list(df_sd)
    assert all(ours_sd[k].shape == df_sd[k].shape for k in ours_sd)
    mapped = AutoencoderKLCausal3D(**vae_config_from_diffusers(dict(twin.config)))
    assert {k: v.shape for k, v in mapped.state_dict().items()} == {k: v.shape for k, v in ours_sd.items()}


def test_parity_tiny_config(tiny_vae):
    x = torch.rand(2, 3, 9, 48, 32) * 2 - 1
    _check_parity(tiny_vae, x)


def test_parity_tiny_single_frame_image(tiny_vae):
    """A 1-frame input is an image: latent T_z = 1, decoded back to 1 frame."""
    _check_parity(tiny_vae, torch.rand(1, 3, 1, 32, 40) * 2 - 1)


def test_parity_released_config(released_vae):
    assert sum(p.numel() for p in released_vae.parameters()) == RELEASED_PARAMS
    assert released_vae.config == {k: v for k, v in load_config(RELEASED_CONFIG).items()}
    assert released_vae.scaling_factor == 0.476986
    _check_parity(released_vae, torch.rand(1, 3, 5, 16, 16) * 2 - 1)


def test_tiny_config_file_builds_the_tiny_model(tiny_vae):
    assert tiny_vae.config == load_config(TINY_CONFIG)
    assert sum(p.numel() for p in tiny_vae.parameters()) < 200_000


def test_diffusers_folder_loads_into_ours(tmp_path):
    """A diffusers-saved VAE (its own random init) loads into ours via ``load_vae`` and gives the same outputs."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(1)
    df = AutoencoderKLHunyuanVideo(**diffusers_kwargs(load_config(TINY_CONFIG))).eval()
    df.use_framewise_encoding = df.use_framewise_decoding = False
    df.save_pretrained(tmp_path)
    ours = load_vae(tmp_path, dtype=torch.float32)
    assert isinstance(ours, AutoencoderKLCausal3D) and ours.config["layers_per_block"] == 1
    x = torch.rand(1, 3, 5, 24, 16) * 2 - 1
    with torch.no_grad():
        assert (ours.encode(x).latent_dist.mean - df.encode(x).latent_dist.mean).abs().max() <= ATOL
        z = torch.randn(1, 16, 2, 3, 2)
        assert (ours.decode(z).sample - df.decode(z).sample).abs().max() <= ATOL
