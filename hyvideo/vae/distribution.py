"""Diagonal Gaussian posterior of the VAE and the small output records of encode/decode.

Reference: HV:hyvideo/vae/vae.py ``DiagonalGaussianDistribution`` (the diffusers class with the KL summed
over every non-batch dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0  # released clamp of the encoder's log-variance


class DiagonalGaussianDistribution:
    """N(mean, exp(logvar)) per latent element, built from the encoder's moments.

    Args:
        parameters: ``[B, 2 C_z, T_z, H_z, W_z]`` moments; channels [0, C_z) are the mean, the rest the
            log-variance (clamped to [-30, 20]).
        deterministic: if True, std and var are zero (``sample()`` returns the mean, ``kl()`` is 0).

    Attributes:
        mean: ``[B, C_z, T_z, H_z, W_z]``.
        logvar: same shape, clamped.
        std: ``exp(logvar / 2)``.
        var: ``exp(logvar)``.
    """

    def __init__(self, parameters: torch.Tensor, deterministic: bool = False) -> None:
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, LOGVAR_MIN, LOGVAR_MAX)
        self.deterministic = deterministic
        if deterministic:
            self.std = self.var = torch.zeros_like(self.mean)
        else:
            self.std = torch.exp(0.5 * self.logvar)
            self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample ``mean + std * eps``, eps ~ N(0, I) drawn from ``generator``.

        The noise is drawn on the generator's device (CPU generators work for CUDA latents) in the
        moments' dtype, then moved.

        Returns:
            ``[B, C_z, T_z, H_z, W_z]``.
        """
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        """The mean, ``[B, C_z, T_z, H_z, W_z]``."""
        return self.mean

    def kl(self, other: DiagonalGaussianDistribution | None = None) -> torch.Tensor:
        """KL(self || other), default other = N(0, I), summed over all non-batch dims.

        Returns:
            ``[B]`` (nats).
        """
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        dims = list(range(1, self.mean.ndim))
        if other is None:
            return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=dims)
        return 0.5 * torch.sum(
            (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar,
            dim=dims,
        )


@dataclass
class AutoencoderKLOutput:
    """Result of :meth:`AutoencoderKLCausal3D.encode`: the posterior over latents."""

    latent_dist: DiagonalGaussianDistribution


@dataclass
class DecoderOutput:
    """Result of decode/forward: ``sample`` ``[B, C, T, H, W]`` (values ~[-1, 1], not clamped).

    ``posterior`` is set by ``forward`` (for the KL term in training), None after ``decode``.
    """

    sample: torch.Tensor
    posterior: DiagonalGaussianDistribution | None = None
