"""Image conditioning of HunyuanVideo-I2V, for sampling and training (one place for the tensor conventions).

Two released condition types (HVI2V:hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py and
HVI2V:hyvideo/diffusion/flow/transport.py ``training_losses``; diffusers ``HunyuanVideoImageToVideoPipeline``):

- ``latent_concat``: the DiT input is ``[x_sigma, image latent in frame 0 and zeros after, mask]`` on the channel
  axis (``2 C_z + 1`` channels; mask 1 on latent frame 0). The decoded video drops its first 4 frames.
- ``token_replace``: latent frame 0 of the DiT input is the clean image latent at every step (the DiT modulates
  its tokens with timestep 0), the sampler only moves frames 1..; the loss skips frame 0.

``i2v_stability`` (released ``--i2v-stability``) starts sampling from ``0.999 * noise + 0.001 * image latent`` on
every frame instead of pure noise. Latents are scaled (``vae latent * scaling_factor``), ``[B, C_z, T_z, H_z, W_z]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hyvideo.models.dit import I2V_CONDITION_TYPES

STABILITY_NOISE_WEIGHT = 0.999  # released i2v_stability: latents = 0.999 * noise + 0.001 * image latent
LATENT_CONCAT_DROPPED_FRAMES = 4  # released latent_concat: the decoded video starts at frame 4


def check_condition_type(condition_type: str | None) -> None:
    """Raises ValueError naming the allowed I2V condition types."""
    if condition_type not in I2V_CONDITION_TYPES:
        raise ValueError(f"unknown I2V condition type {condition_type!r}; allowed: {', '.join(I2V_CONDITION_TYPES)}")


def condition(image_latent: torch.Tensor, num_frames: int, condition_type: str,
              present: torch.Tensor | None = None) -> torch.Tensor:
    """The per-video condition tensor of a condition type.

    Args:
        image_latent: clean latent of the image (or of a clip's first frame) ``[B, C_z, 1, H_z, W_z]``.
        num_frames: latent frames ``T_z`` of the video.
        condition_type: ``"latent_concat"`` or ``"token_replace"``.
        present: ``[B]`` bool, samples that have an image (others get zeros and a zero mask; latent concat
            training with text-to-video samples); None = all.

    Returns:
        latent concat: ``[B, C_z + 1, T_z, H_z, W_z]`` (image latent in frame 0, zeros after; then the mask);
        token replace: the image latent ``[B, C_z, 1, H_z, W_z]``.
    """
    check_condition_type(condition_type)
    if condition_type == "token_replace":
        return image_latent[:, :, :1]
    b, _, _, h, w = image_latent.shape
    frames = image_latent.new_zeros(b, image_latent.shape[1] + 1, num_frames, h, w)
    frames[:, :-1, :1] = image_latent[:, :, :1]
    frames[:, -1:, :1] = 1.0
    if present is not None:
        frames = frames * present.to(frames.dtype).reshape(-1, 1, 1, 1, 1)
    return frames


def model_input(x: torch.Tensor, cond: torch.Tensor, condition_type: str,
                first_frame_clean: torch.Tensor | None = None) -> torch.Tensor:
    """The DiT input for latents ``x`` ``[B, C_z, T_z, H_z, W_z]`` and :func:`condition` ``cond``.

    Args:
        first_frame_clean: token replace only: ``[B]`` bool, samples whose frame 0 is replaced (None = all).

    Returns:
        ``[B, 2 C_z + 1, T_z, ...]`` (latent concat) or ``x`` with frame 0 replaced (token replace).
    """
    check_condition_type(condition_type)
    if condition_type == "latent_concat":
        return torch.cat([x, cond.to(x.dtype)], dim=1)
    replaced = torch.cat([cond.to(x.dtype), x[:, :, 1:]], dim=2)
    if first_frame_clean is None:
        return replaced
    return torch.where(first_frame_clean.bool().reshape(-1, 1, 1, 1, 1), replaced, x)


def stability_start(noise: torch.Tensor, image_latent: torch.Tensor) -> torch.Tensor:
    """Released ``--i2v-stability`` start ``0.999 * noise + 0.001 * image latent`` (every frame), float32."""
    w = torch.tensor([STABILITY_NOISE_WEIGHT], device=noise.device)  # a float32 tensor, as released
    return noise.float() * w + image_latent.float() * (1 - w)


# ----------------------------------------------------------------------------------------------------------------
# Training


def sample_i2v_mask(batch_size: int, i2v_prob: float, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """``[B]`` bool: which samples of a batch are image-to-video (probability ``i2v_prob``), the rest text-to-video.

    Raises:
        ValueError: ``i2v_prob`` outside [0, 1].
    """
    if not 0.0 <= i2v_prob <= 1.0:
        raise ValueError(f"i2v_prob must be in [0, 1], got {i2v_prob}")
    if i2v_prob == 1.0:
        return torch.ones(batch_size, dtype=torch.bool, device=device)
    return torch.rand(batch_size, generator=generator, device=generator.device if generator else "cpu").to(device) \
        < i2v_prob


@dataclass
class I2VTrainInputs:
    """What a training step feeds the DiT and the loss.

    Attributes:
        x_in: DiT input ``[B, C_in, T_z, H_z, W_z]``.
        first_frame_clean: ``[B]`` bool for the DiT's ``first_frame_clean`` (token replace), else None.
        loss_mask: ``[B, 1, T_z, 1, 1]`` float, 0 where the loss is skipped (frame 0 of token-replace I2V samples).
        i2v: ``[B]`` bool, the image-to-video samples (the others are text-to-video: encode their prompt with a
            black image, as the release's dropped semantic images).
    """

    x_in: torch.Tensor
    first_frame_clean: torch.Tensor | None
    loss_mask: torch.Tensor
    i2v: torch.Tensor


def training_inputs(x_noisy: torch.Tensor, x_clean: torch.Tensor, condition_type: str, i2v: torch.Tensor,
                    cond_latent: torch.Tensor | None = None) -> I2VTrainInputs:
    """Build the DiT input of a mixed I2V / T2V batch (released ``training_losses`` with ``i2v_mode``).

    Args:
        x_noisy: ``x_sigma = (1 - sigma) x_clean + sigma noise`` ``[B, C_z, T_z, H_z, W_z]``.
        x_clean: the clip's clean latents, same shape.
        condition_type: ``"latent_concat"`` or ``"token_replace"``.
        i2v: ``[B]`` bool from :func:`sample_i2v_mask`.
        cond_latent: the image latent ``[B, C_z, 1, H_z, W_z]``; None = latent frame 0 of the clip, which for the
            causal VAE equals the latent of its first frame encoded alone (the release decodes frame 0 and
            encodes it again, which adds 8-bit rounding and a VAE round trip).

    Returns:
        :class:`I2VTrainInputs`. The velocity target stays ``noise - x_clean`` for every frame; the loss mask
        removes frame 0 of token-replace I2V samples (its input is the clean latent, there is nothing to predict).
    """
    check_condition_type(condition_type)
    cond_latent = x_clean[:, :, :1] if cond_latent is None else cond_latent
    b, _, t = x_clean.shape[:3]
    loss_mask = torch.ones(b, 1, t, 1, 1, dtype=torch.float32, device=x_clean.device)
    if condition_type == "latent_concat":
        cond = condition(cond_latent, t, condition_type, present=i2v)
        return I2VTrainInputs(model_input(x_noisy, cond, condition_type), None, loss_mask, i2v)
    loss_mask[:, :, :1] = (~i2v).float().reshape(-1, 1, 1, 1, 1)
    x_in = model_input(x_noisy, cond_latent, condition_type, first_frame_clean=i2v)
    return I2VTrainInputs(x_in, i2v, loss_mask, i2v)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over the elements the mask keeps (released ``mean_flat`` over frames 1.. for
    token-replace samples). pred / target ``[B, C, T, H, W]``, mask broadcastable; returns ``[B]`` float32."""
    sq = (pred.float() - target.float()).square() * loss_mask
    kept = (loss_mask.expand_as(sq)).flatten(1).sum(1).clamp_min(1)
    return sq.flatten(1).sum(1) / kept


def first_frame_images(video: torch.Tensor, black: torch.Tensor | None = None) -> list:
    """The first frame of each clip as an RGB ``PIL.Image`` for the LLaVA encoder.

    Args:
        video: pixels ``[B, 3, T, H, W]`` in [-1, 1] (or ``[B, 3, H, W]``).
        black: ``[B]`` bool, samples whose image is replaced by a black one of the same size (text-to-video
            samples, dropped semantic images).

    Returns:
        ``B`` images, 8-bit (rounded, as the release's ``numpy_to_pil``).
    """
    from PIL import Image  # noqa: PLC0415

    frames = video[:, :, 0] if video.ndim == 5 else video
    arr = ((frames.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    images = [Image.fromarray(a) for a in arr]
    if black is not None:
        images = [Image.new("RGB", im.size, 0) if bool(k) else im for im, k in zip(images, black)]
    return images


# ----------------------------------------------------------------------------------------------------------------
# Video-to-video (SDEdit, Meng et al. 2022) and the pinned first frame for text-to-video weights


def check_strength(strength: float) -> None:
    """Raises ValueError unless ``0 < strength <= 1`` (1 = start from pure noise, i.e. text-to-video)."""
    if not (isinstance(strength, (int, float)) and 0.0 < float(strength) <= 1.0):
        raise ValueError(f"--strength must be in (0, 1] (0 keeps the input, 1 is text-to-video from pure noise), "
                         f"got {strength}")


def strength_sigmas(sigmas: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of a sampling schedule that a video-to-video run of ``strength`` walks (diffusers img2img rule).

    ``N * strength`` of the ``N`` steps are kept (the last ones): ``t_start = int(N - N * strength)``. Strength 1
    keeps the whole schedule (``sigmas[0] = 1``: the start is the noise itself).

    Args:
        sigmas: ``[N + 1]`` decreasing schedule (:func:`hyvideo.diffusion.flow_matching.get_sigmas`).
        strength: in (0, 1].

    Returns:
        ``[N - t_start + 1]`` sigmas; the start latent is ``(1 - s0) * x_input + s0 * noise`` with ``s0`` the first.

    Raises:
        ValueError: strength outside (0, 1].
    """
    check_strength(strength)
    n = len(sigmas) - 1
    t_start = int(max(n - min(n * strength, n), 0))  # < n for any strength > 0: at least one step
    return sigmas[t_start:]


def pinned_velocity(v: torch.Tensor, pinned_latent: torch.Tensor, pinned_noise: torch.Tensor) -> torch.Tensor:
    """Velocity with latent frame 0 replaced by the exact one of a known clean latent.

    With ``v_0 = noise_0 - z_0`` the Euler steps keep frame 0 on ``(1 - sigma) z_0 + sigma noise_0`` at every
    sigma and end on ``z_0``: the first frame of a text-to-video model is fixed to the input's (no I2V training
    needed; the DiT sees a frame 0 as noisy as the rest, as in training). v ``[B, C, T, H, W]``, pinned
    ``[B, C, 1, H, W]``.
    """
    return torch.cat([(pinned_noise - pinned_latent).to(v.dtype), v[:, :, 1:]], dim=2)
