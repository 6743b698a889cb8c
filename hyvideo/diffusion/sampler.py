"""Euler ODE sampler for rectified flow and classifier-free guidance (spec section 5).

Plain functions, no scheduler object: the whole loop is visible in :func:`euler_sample`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from hyvideo.diffusion.flow_matching import SIGMA_TO_T

# model_fn(latents [B, C, T, H, W] float32, t [B] float32 = sigma * 1000) -> velocity, same shape as latents
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteError(RuntimeError):
    """The latents became NaN / Inf during sampling (the message names the step and the likely causes)."""


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``u + scale * (c - u)`` (Ho & Salimans 2022); identity at ``scale == 1``."""
    return uncond + scale * (cond - uncond)


@torch.no_grad()
def euler_sample(
    model_fn: ModelFn,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Integrate ``dx/dsigma = v`` from ``sigmas[0]`` (noise) to ``sigmas[-1]`` with Euler steps.

    Implements the released ``FlowMatchDiscreteScheduler.step`` with ``reverse=True``:
    ``x_{i+1} = x_i + v(x_i, sigma_i) * (sigma_{i+1} - sigma_i)``, in float32.

    Args:
        model_fn: velocity predictor (see :data:`ModelFn`).
        latents: initial noise ``[B, C_z, T_z, H_z, W_z]``.
        sigmas: ``[N + 1]`` decreasing schedule (:func:`hyvideo.diffusion.flow_matching.get_sigmas`).
        progress: show a tqdm bar (steps/s).
        callback: called as ``callback(step_index, latents)`` after each step.

    Returns:
        Denoised latents, float32, same shape.

    Raises:
        NonFiniteError: the latents hold NaN / Inf after a step (checked every step: a silent NaN would decode
            to a black video).
    """
    x = latents.float()
    sigmas = sigmas.float().to(x.device)
    n = len(sigmas) - 1
    for i in tqdm(range(n), desc="denoising", unit="step", disable=not progress):
        t = (sigmas[i] * SIGMA_TO_T).expand(x.shape[0])
        v = model_fn(x, t).float()
        x = x + v * (sigmas[i + 1] - sigmas[i])
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteError(
                f"the latents became NaN/Inf at denoising step {i + 1} of {n} (sigma {float(sigmas[i]):.4f}); "
                "likely causes: NaN/Inf weights, a dtype that overflows (an fp16 DiT: try bf16 or fp32), or "
                "extreme guidance scales")
        if callback is not None:
            callback(i, x)
    return x
