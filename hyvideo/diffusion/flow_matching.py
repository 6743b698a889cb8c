"""Rectified-flow convention used everywhere in hyvideo (spec section 5; paper section on flow matching).

One convention, matching the released weights (``--flow-reverse``):

- sigma in [0, 1]; ``x_sigma = (1 - sigma) * x_data + sigma * noise``, so sigma = 1 is pure noise.
- The model predicts the velocity ``v = noise - x_data = d x_sigma / d sigma``.
- The DiT receives ``t = sigma * 1000``.
- The SD3 time shift ``s * sigma / (1 + (s - 1) * sigma)`` (``--flow-shift`` s, 7.0 for 50 steps).
"""

from __future__ import annotations

import torch

SIGMA_TO_T = 1000.0


def time_shift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 time shift ``s * sigma / (1 + (s - 1) * sigma)``; identity for ``shift == 1``.

    Args:
        sigma: any shape, values in [0, 1].
        shift: flow shift ``s > 0`` (released default 7.0).

    Returns:
        Shifted sigma, same shape and dtype. Larger ``s`` spends more steps near the noise end.

    Raises:
        ValueError: ``shift <= 0``.
    """
    if shift <= 0:
        raise ValueError(f"flow shift must be > 0, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def get_sigmas(num_steps: int, shift: float = 7.0) -> torch.Tensor:
    """Sampling schedule: ``linspace(1, 0, num_steps + 1)`` in float32, then :func:`time_shift`.

    Matches the released ``FlowMatchDiscreteScheduler`` with ``reverse=True`` (spec section 5.2):
    with ``shift=7`` and 50 steps the timesteps are 1000, 997.09, 994.08, ..., 125.0.

    Args:
        num_steps: number of Euler steps, >= 1.
        shift: flow shift.

    Returns:
        ``[num_steps + 1]`` float32 sigmas from 1 down to 0 (the last entry is exactly 0).

    Raises:
        ValueError: ``num_steps < 1``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigmas = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float32)
    return time_shift(sigmas, shift)


def add_noise(x_data: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Forward process ``x_sigma = (1 - sigma) * x_data + sigma * noise``.

    Args:
        x_data: clean latents ``[B, ...]``.
        noise: standard normal, same shape.
        sigma: ``[B]`` (broadcast over the other dims) or a scalar, values in [0, 1].
    """
    sigma = torch.as_tensor(sigma, dtype=x_data.dtype, device=x_data.device)
    sigma = sigma.reshape(-1, *([1] * (x_data.ndim - 1))) if sigma.ndim else sigma
    return (1 - sigma) * x_data + sigma * noise


def velocity_target(x_data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Training target of the DiT: ``noise - x_data`` (same shape as the inputs)."""
    return noise - x_data


def sample_training_sigmas(
    batch_size: int,
    *,
    mode: str = "logit_normal",
    shift: float = 1.0,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw training sigmas ``[B]`` float32 in (0, 1), then apply :func:`time_shift`.

    ``mode="logit_normal"``: sigma = sigmoid(u), u ~ N(logit_mean, logit_std) (the released I2V
    trainer's ``lognorm``); ``mode="uniform"``: sigma ~ U(0, 1).

    Raises:
        ValueError: unknown ``mode``.
    """
    if mode == "logit_normal":
        u = torch.randn(batch_size, generator=generator, device=device) * logit_std + logit_mean
        sigma = torch.sigmoid(u)
    elif mode == "uniform":
        sigma = torch.rand(batch_size, generator=generator, device=device)
    else:
        raise ValueError(f"unknown timestep sampling mode {mode!r}; allowed: 'logit_normal', 'uniform'")
    return time_shift(sigma, shift)
