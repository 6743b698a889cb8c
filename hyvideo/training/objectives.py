"""Flow-matching training objective with per-sample seeded randomness (paper section 3.1; spec section 5).

Every random draw of a sample (noise, sigma, text dropout) comes from a generator seeded with
``(seed, step, slot)``, where ``slot`` is the sample's position in the *global* batch of that optimizer
step. The numbers are therefore the same however the global batch is split over ranks and accumulation
micro-steps, and the same after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hyvideo.data.sampler import stable_seed
from hyvideo.diffusion.flow_matching import SIGMA_TO_T, add_noise, sample_training_sigmas, velocity_target

from .config import FlowConfig


@dataclass
class FlowDraws:
    """Per-sample draws: ``noise`` like the latents, ``sigma`` ``[B]`` float32 in (0, 1), ``drop_text`` ``[B]`` bool,
    ``i2v`` ``[B]`` bool (image-to-video DiTs: the sample is conditioned on its first frame)."""

    noise: torch.Tensor
    sigma: torch.Tensor
    drop_text: torch.Tensor
    i2v: torch.Tensor


def sample_generator(seed: int, step: int, slot: int, what: str = "flow") -> torch.Generator:
    """CPU generator for one sample of one step (see the module docstring)."""
    return torch.Generator().manual_seed(stable_seed(what, seed, step, slot))


def draw_flow(latent_shape: tuple[int, ...], slots: list[int], *, step: int, seed: int,
              cfg: FlowConfig) -> FlowDraws:
    """Draw noise ``[B, C_z, T_z, H_z, W_z]`` (float32, CPU), sigma and text dropout for the samples ``slots``.

    Sigma follows ``cfg.timestep_sampling`` (``logit_normal`` or ``uniform``) and the SD3 shift ``cfg.shift``.
    """
    noise, sigma, drop, i2v = [], [], [], []
    for slot in slots:
        g = sample_generator(seed, step, slot)
        sigma.append(sample_training_sigmas(1, mode=cfg.timestep_sampling, shift=cfg.shift,
                                            logit_mean=cfg.logit_mean, logit_std=cfg.logit_std, generator=g))
        drop.append(bool(torch.rand(1, generator=g) < cfg.text_dropout))
        noise.append(torch.randn(latent_shape[1:], generator=g))
        i2v.append(bool(torch.rand(1, generator=g) < cfg.i2v_prob))  # drawn last: the other draws are unchanged
    return FlowDraws(torch.stack(noise), torch.cat(sigma), torch.tensor(drop), torch.tensor(i2v))


def flow_matching_loss(model, latents: torch.Tensor, draws: FlowDraws, text: dict,
                       guidance: torch.Tensor | None = None, condition_type: str | None = None) -> torch.Tensor:
    """Mean squared error between the predicted and the true velocity ``noise - latents``.

    For an image-to-video DiT (``condition_type`` ``"token_replace"`` / ``"latent_concat"``, HunyuanVideo-I2V) the
    samples with ``draws.i2v`` are conditioned on their clip's first latent frame
    (:func:`hyvideo.diffusion.i2v.training_inputs`): token replace puts the clean frame in place and leaves it out
    of the loss, latent concat appends the frame and its mask as channels; the other samples train text-to-video.

    Args:
        model: DiT ``(x, t, text_states, text_mask, text_states_2, guidance) -> v``.
        latents: clean scaled latents ``[B, C_z, T_z, H_z, W_z]`` float32.
        draws: from :func:`draw_flow`.
        text: ``text_states`` ``[B, L_txt, D_txt]``, ``text_mask`` ``[B, L_txt]``, ``text_states_2`` ``[B, D_2]``.
        guidance: ``[B]`` embedded guidance * 1000 (models with ``guidance_embed``), else None.
        condition_type: the DiT's ``i2v_condition_type`` (None: text-to-video).

    Returns:
        Scalar float32 loss (mean over all elements; samples in a batch have equal sizes).
    """
    device = latents.device
    noise, sigma = draws.noise.to(device), draws.sigma.to(device)
    x_t = add_noise(latents, noise, sigma)
    text_args = (text["text_states"], text["text_mask"], text["text_states_2"], guidance)
    if condition_type is None:
        v = model(x_t, sigma * SIGMA_TO_T, *text_args)
        return (v.float() - velocity_target(latents, noise)).pow(2).mean()
    from hyvideo.diffusion.i2v import masked_mse, training_inputs  # noqa: PLC0415

    inp = training_inputs(x_t, latents, condition_type, draws.i2v.to(device))
    extra = {} if inp.first_frame_clean is None else {"first_frame_clean": inp.first_frame_clean}
    v = model(inp.x_in, sigma * SIGMA_TO_T, *text_args, **extra)
    return masked_mse(v, velocity_target(latents, noise), inp.loss_mask).mean()
