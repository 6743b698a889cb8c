"""3D PatchGAN discriminator for VAE training (the VQGAN / pix2pix N-layer design, lifted to video).

Kernels are ``(3, 4, 4)`` with temporal stride 1 and spatial stride 2 (then 1 for the last two convs), so
1-frame images and ``4k + 1``-frame videos both work. GroupNorm instead of BatchNorm: the result does not
depend on how the batch is split across ranks (FSDP/DP parity) and needs no running statistics.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _groups(c: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if c % g == 0)


class PatchDiscriminator3D(nn.Module):
    """Per-patch real/fake logits.

    Args:
        in_channels: 3 (RGB in [-1, 1]).
        channels: width of the first conv (doubles per layer, capped at 8x).
        num_layers: strided conv layers after the first.

    Input ``[B, 3, T, H, W]``; output ``[B, 1, T, H', W']`` logits (H' ~ H / 2^num_layers - 2).
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        k, p = (3, 4, 4), (1, 1, 1)
        layers = [nn.Conv3d(in_channels, channels, k, (1, 2, 2), p), nn.LeakyReLU(0.2)]
        c = channels
        for n in range(1, num_layers + 1):
            c_out = channels * min(2 ** n, 8)
            stride = (1, 2, 2) if n < num_layers else (1, 1, 1)
            layers += [nn.Conv3d(c, c_out, k, stride, p, bias=False), nn.GroupNorm(_groups(c_out), c_out),
                       nn.LeakyReLU(0.2)]
            c = c_out
        layers.append(nn.Conv3d(c, 1, k, 1, p))
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)

    def init_weights(self) -> None:
        """The constructor's conv init (normal, std 0.02), for a model built on the ``meta`` device and
        materialised with ``to_empty`` (``hyvideo.training.meta_init``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss ``0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator (VAE) adversarial loss ``-mean D(x_hat)``."""
    return -logits_fake.mean()
