"""Text-to-video generation: prompt -> text states -> seeded noise -> Euler loop -> VAE decode (spec section 5).

Used by ``sample_video.py`` and the tests. Pure library code: no argparse, no file IO (models come from
:func:`hyvideo.checkpoint.loader.load_pipeline`; speed-ups from :func:`hyvideo.accel.apply`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hyvideo.accel.offload import placed
from hyvideo.diffusion.flow_matching import get_sigmas
from hyvideo.diffusion.sampler import NonFiniteError, cfg_combine, euler_sample
from hyvideo.text.templates import NEGATIVE_PROMPT

VAE_TEMPORAL_RATIO = 4  # frames per latent frame after the first
VAE_SPATIAL_RATIO = 8  # pixels per latent pixel
SIZE_MULTIPLE = 16  # H and W must be multiples of this (VAE 8 x patch 2)
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed


def validate_generation_args(prompts: list[str], height: int, width: int, video_length: int) -> None:
    """Check a request before any model is loaded.

    Raises:
        ValueError: an empty prompt, a video length that is not 4n+1, or a size that is not a multiple of 16
            (the message says what was given and what is allowed).
    """
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise ValueError("the prompt is empty; pass a non-empty --prompt")
    if video_length < 1 or (video_length - 1) % VAE_TEMPORAL_RATIO:
        raise ValueError(f"video length {video_length} is not 4n+1 frames; allowed: 1, 5, 9, ..., 129")
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(f"video size {height}x{width} (HxW) must be positive multiples of {SIZE_MULTIPLE} "
                         f"pixels, e.g. 720x1280, 544x960")


def validate_sampling_args(*, seeds: list[int], infer_steps: int, flow_shift: float,
                           embedded_guidance_scale: float | None, cfg_scale: float) -> None:
    """Check the sampler settings before any model is loaded.

    Raises:
        ValueError: a seed outside [0, 2^63 - 1], steps < 1, a flow shift that is not a finite number > 0, or a
            guidance scale that is not finite (NaN would give a black video; NaN cfg would silently disable CFG).
    """
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ValueError(f"seed {bad[0]} is outside the allowed range 0..{MAX_SEED} (64-bit)")
    if infer_steps < 1:
        raise ValueError(f"infer steps must be >= 1, got {infer_steps}")
    if not (math.isfinite(flow_shift) and flow_shift > 0):
        raise ValueError(f"flow shift must be a finite number > 0, got {flow_shift}")
    for name, value in (("embedded guidance scale", embedded_guidance_scale), ("cfg scale", cfg_scale)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def latent_shape(batch: int, height: int, width: int, video_length: int, channels: int = 16) -> tuple[int, ...]:
    """``[B, C_z, (T-1)/4 + 1, H/8, W/8]`` for a ``T``-frame ``H x W`` video."""
    return (batch, channels, (video_length - 1) // VAE_TEMPORAL_RATIO + 1,
            height // VAE_SPATIAL_RATIO, width // VAE_SPATIAL_RATIO)


def seeded_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """One float32 standard-normal sample per seed from a CPU generator (device independent).

    The released code draws fp16 noise from a CUDA generator, so its videos are not bit-reproducible here.

    Returns:
        ``[len(seeds), *shape[1:]]`` float32 on CPU.
    """
    return torch.cat([torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds])


@dataclass
class HunyuanVideoPipeline:
    """The four models plus placement.

    Attributes:
        dit: :class:`hyvideo.models.dit.HYVideoDiffusionTransformer`.
        vae: :class:`hyvideo.vae.autoencoder.AutoencoderKLCausal3D`.
        text_encoder: :class:`hyvideo.text.encoders.LLMTextEncoder`.
        text_encoder_2: :class:`hyvideo.text.encoders.CLIPTextEncoder`.
        device: where computation runs.
        offload: models kept in CPU memory and moved to ``device`` only while they run, among ``"text"``,
            ``"dit"``, ``"vae"`` (a DiT whose blocks are streamed by :mod:`hyvideo.accel.offload` is not listed).
        step_cache: the :class:`hyvideo.accel.step_cache.FirstBlockCache` installed by ``accel.apply`` (reset
            before every video), or None.
    """

    dit: nn.Module
    vae: nn.Module
    text_encoder: object
    text_encoder_2: object
    device: torch.device = torch.device("cpu")
    offload: tuple[str, ...] = ()
    step_cache: object = None

    def encode_text(self, prompts: list[str], video_length: int, allow_empty: bool = False):
        """LLM states ``[B, L_txt, D_txt]``, mask ``[B, L_txt]`` and CLIP pooled ``[B, D_2]``."""
        from hyvideo.text.encoders import encode_prompts  # noqa: PLC0415

        off = "text" in self.offload
        with placed(self.text_encoder, self.device, off), placed(self.text_encoder_2, self.device, off):
            emb = encode_prompts(self.text_encoder, self.text_encoder_2, prompts, video_length,
                                 allow_empty=allow_empty)
        return emb.states, emb.mask, emb.pooled

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str],
        *,
        height: int,
        width: int,
        video_length: int,
        seeds: list[int],
        infer_steps: int = 50,
        flow_shift: float = 7.0,
        embedded_guidance_scale: float | None = 6.0,
        cfg_scale: float = 1.0,
        negative_prompt: str | None = None,
        latents: torch.Tensor | None = None,
        vae_tiling: bool = True,
        progress: bool = True,
        output_type: str = "video",
        callback=None,
    ) -> torch.Tensor:
        """Generate ``len(prompts)`` videos.

        Args:
            prompts: one prompt per video.
            height, width: pixels, multiples of 16. video_length: frames, 4n+1.
            seeds: one seed per video (noise from :func:`seeded_noise`).
            infer_steps: Euler steps (50). flow_shift: schedule shift (7.0).
            embedded_guidance_scale: distilled guidance fed to ``guidance_in`` as ``scale * 1000`` in the DiT's
                dtype (bf16 turns 6.0 into 6016, as the released pipeline); ignored if the DiT has none.
            cfg_scale: real classifier-free guidance (> 1 runs [uncond, cond] as one batch).
            negative_prompt: for cfg > 1; None = the released ``NEGATIVE_PROMPT``; ``""`` = the empty prompt (the
                unconditional branch that caption dropout trains, as hyvideo-nano's card recommends).
            latents: optional initial noise ``[B, 16, T_z, H_z, W_z]`` (overrides ``seeds``).
            vae_tiling: decode with the VAE's tiles (released default on).
            output_type: ``"video"`` (decoded) or ``"latent"``.
            callback: optional ``callback(step, total_steps)`` after each denoising step (1-based).

        Returns:
            ``[B, 3, T, H, W]`` float32 in [0, 1] (or the final latents for ``output_type="latent"``).

        Raises:
            ValueError: see :func:`validate_generation_args` / :func:`validate_sampling_args`; seed count !=
                prompt count.
            NonFiniteError: NaN / Inf latents or frames (named step and likely causes).
        """
        validate_generation_args(prompts, height, width, video_length)
        validate_sampling_args(seeds=seeds if latents is None else [], infer_steps=infer_steps,
                               flow_shift=flow_shift, embedded_guidance_scale=embedded_guidance_scale,
                               cfg_scale=cfg_scale)
        b = len(prompts)
        if latents is None:
            if len(seeds) != b:
                raise ValueError(f"got {len(seeds)} seeds for {b} prompts; pass one seed per prompt")
            latents = seeded_noise(seeds, latent_shape(b, height, width, video_length, self.dit.in_channels))
        dit_dtype = next(p.dtype for p in self.dit.parameters() if p.dtype.itemsize > 1)
        do_cfg = cfg_scale > 1.0
        if do_cfg:
            negative = [NEGATIVE_PROMPT if negative_prompt is None else negative_prompt] * b
            states, mask, pooled = self.encode_text(negative + list(prompts), video_length,
                                                    allow_empty=not negative[0].strip())
        else:
            states, mask, pooled = self.encode_text(list(prompts), video_length)
        states, mask, pooled = (x.to(self.device) for x in (states, mask, pooled))
        n = states.shape[0]
        guidance = None
        if self.dit.guidance_embed:
            scale = 6.0 if embedded_guidance_scale is None else embedded_guidance_scale
            guidance = torch.full((n,), scale, dtype=dit_dtype, device=self.device) * 1000.0

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_in = torch.cat([x, x]) if do_cfg else x
            t_in = torch.cat([t, t]) if do_cfg else t
            v = self.dit(x_in.to(dit_dtype), t_in, states.to(dit_dtype), mask, pooled.to(dit_dtype), guidance)
            return cfg_combine(*v.float().chunk(2), cfg_scale) if do_cfg else v

        print(f"sampling {b} video(s) {video_length}x{height}x{width} (frames x H x W), {infer_steps} steps, "
              f"flow shift {flow_shift}, embedded guidance {embedded_guidance_scale}, cfg {cfg_scale}")
        if self.step_cache is not None:
            self.step_cache.reset()
        with placed(self.dit, self.device, "dit" in self.offload):
            step_cb = None if callback is None else (lambda i, _x: callback(i + 1, infer_steps))
            latents = euler_sample(model_fn, latents.to(self.device), get_sigmas(infer_steps, flow_shift),
                                   progress=progress, callback=step_cb)
        if self.step_cache is not None:
            c = self.step_cache
            print(f"step cache (threshold {c.threshold}): {c.num_full} of {c.num_full + c.num_skipped} DiT "
                  f"evaluations computed ({c.speedup:.2f}x fewer)")
        if output_type == "latent":
            return latents
        return self.decode(latents, vae_tiling=vae_tiling)

    def decode(self, latents: torch.Tensor, vae_tiling: bool = True) -> torch.Tensor:
        """Latents ``[B, 16, T_z, H_z, W_z]`` (scaled) -> video ``[B, 3, T, H, W]`` float32 in [0, 1].

        Raises:
            NonFiniteError: the decoded frames hold NaN / Inf (e.g. an fp16 VAE overflowing).
        """
        if vae_tiling:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        vae_dtype = next(self.vae.parameters()).dtype
        with placed(self.vae, self.device, "vae" in self.offload):
            z = (latents / self.vae.config["scaling_factor"]).to(self.device, vae_dtype)
            video = self.vae.decode(z).sample
        if not bool(torch.isfinite(video).all()):
            raise NonFiniteError(f"the VAE decode produced NaN/Inf frames (VAE dtype {vae_dtype}); try "
                                 "--vae-precision fp32 or bf16")
        return (video.float() / 2 + 0.5).clamp(0, 1)
