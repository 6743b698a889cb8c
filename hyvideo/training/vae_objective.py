"""VAE training step pieces: a reconstruction wrapper (one FSDP2 root whose ``forward`` does encode ->
reparameterised sample -> decode) and per-sample seeded posterior noise."""

from __future__ import annotations

import torch
import torch.nn as nn

from .objectives import sample_generator


class VAEReconstructor(nn.Module):
    """``forward(x, eps) -> (recon, moments)`` around :class:`hyvideo.vae.autoencoder.AutoencoderKLCausal3D`.

    Going through ``forward`` (not ``encode``/``decode``) lets FSDP2 unshard the root parameters
    (``quant_conv``, ``post_quant_conv``, ...). State-dict keys are the VAE's with a ``vae.`` prefix.

    Args (forward):
        x: pixels ``[B, 3, T, H, W]`` in [-1, 1].
        eps: standard normal ``[B, C_z, T_z, H_z, W_z]`` (posterior sample ``mean + std * eps``).

    Returns:
        ``recon`` ``[B, 3, T, H, W]`` and the posterior ``moments`` ``[B, 2 C_z, T_z, H_z, W_z]``.
    """

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = self.vae.encode_moments(x)
        mean, logvar = moments.chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * eps.to(mean.dtype)
        return self.vae.decode(z).sample, moments


def latent_shape_of(vae_config: dict, pixel_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``[B, C_z, T_z, H_z, W_z]`` for pixels ``[B, 3, T, H, W]`` (T = 1 + 4k, H and W multiples of 8)."""
    b, _, t, h, w = pixel_shape
    s, r = vae_config.get("spatial_compression_ratio", 8), vae_config.get("time_compression_ratio", 4)
    return (b, vae_config.get("latent_channels", 16), (t - 1) // r + 1, h // s, w // s)


def posterior_noise(shape: tuple[int, ...], slots: list[int], *, step: int, seed: int) -> torch.Tensor:
    """Per-sample eps ``shape`` float32 seeded by ``(seed, step, slot)`` (independent of the rank layout)."""
    return torch.stack([torch.randn(shape[1:], generator=sample_generator(seed, step, s, "vae")) for s in slots])


def psnr_db(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB between videos in [-1, 1] (peak-to-peak 2), over all elements: a 0-dim float32 tensor on
    the inputs' device (no host sync, for the training loop's per-step sums)."""
    mse = (x.float().clamp(-1, 1) - y.float().clamp(-1, 1)).pow(2).mean()
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """:func:`psnr_db` as a Python float (dB)."""
    return float(psnr_db(x, y))
