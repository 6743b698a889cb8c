"""VAE training losses: L1 reconstruction (+ optional squared error) + LPIPS + adversarial (hinge) + KL.

Default weights follow the issue's recipe: ``1.0 * L1 + 0.1 * LPIPS + 0.05 * adv + 1e-6 * KL`` (the adversarial
term only once the discriminator is on). All terms are means over the batch, so the loss does not depend on
how a global batch is split across ranks.

The optional squared-error term (``mse``, default 0) is for data where a small object on a flat background
carries the content: L1's optimum under uncertainty is the per-pixel median, i.e. the background, so an
untrained decoder that paints only the background sits at a plateau (hyvideo-nano: 19.4 dB after 50 and 150
steps alike); the squared error's gradient grows with the error and pulls the object out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .discriminator import hinge_d_loss, hinge_g_loss


@dataclass(frozen=True, kw_only=True)
class VAELossWeights:
    l1: float = 1.0
    mse: float = 0.0
    lpips: float = 0.1
    adv: float = 0.05
    kl: float = 1e-6


def vae_generator_loss(x: torch.Tensor, recon: torch.Tensor, posterior, *, weights: VAELossWeights,
                       lpips: nn.Module | None = None, disc: nn.Module | None = None,
                       use_adv: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total VAE loss and its detached terms.

    Args:
        x: input ``[B, 3, T, H, W]`` in [-1, 1].
        recon: reconstruction, same shape.
        posterior: the encoder's distribution (``.kl()`` summed per sample, ``.mean``).
        weights: term weights.
        lpips: LPIPS module (None or weight 0 = skip).
        disc: discriminator (used when ``use_adv``); its parameters get gradients only via the D loss.
        use_adv: add the adversarial term (after ``disc_start``).

    Returns:
        ``(loss, terms)`` where ``terms`` maps ``l1``, ``mse`` (when weighted), ``lpips``, ``kl``, ``adv`` to detached
        scalars.
    """
    terms = {"l1": (x - recon).abs().mean()}
    loss = weights.l1 * terms["l1"]
    if weights.mse > 0:
        terms["mse"] = (x - recon).pow(2).mean()
        loss = loss + weights.mse * terms["mse"]
    if lpips is not None and weights.lpips > 0:
        terms["lpips"] = lpips(recon, x).mean()
        loss = loss + weights.lpips * terms["lpips"]
    # KL summed per sample (diffusers convention), then averaged over samples; tiny weight (1e-6).
    terms["kl"] = posterior.kl().mean()
    loss = loss + weights.kl * terms["kl"]
    if use_adv and disc is not None and weights.adv > 0:
        terms["adv"] = hinge_g_loss(disc(recon))
        loss = loss + weights.adv * terms["adv"]
    return loss, {k: v.detach() for k, v in terms.items()}


def discriminator_loss(disc: nn.Module, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator on real ``x`` and detached fake ``recon``."""
    return hinge_d_loss(disc(x), disc(recon.detach()))
