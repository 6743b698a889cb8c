"""Text-to-video generation: prompt -> text states -> seeded noise -> Euler loop -> VAE decode (spec section 5).

Used by ``sample_video.py`` and the tests. Pure library code: no argparse, no file IO.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from hyvideo.cache import disable_step_cache, enable_step_cache
from hyvideo.diffusion.flow_matching import get_sigmas
from hyvideo.diffusion.sampler import cfg_combine, euler_sample
from hyvideo.text.templates import NEGATIVE_PROMPT

VAE_TEMPORAL_RATIO = 4  # frames per latent frame after the first
VAE_SPATIAL_RATIO = 8  # pixels per latent pixel
SIZE_MULTIPLE = 16  # H and W must be multiples of this (VAE 8 x patch 2)


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
        cpu_offload: keep every model on the CPU and move each to ``device`` only while it runs.
        cache_threshold: first-block step cache threshold (:mod:`hyvideo.cache`); 0 = off (every step in full).
    """

    dit: nn.Module
    vae: nn.Module
    text_encoder: object
    text_encoder_2: object
    device: torch.device = torch.device("cpu")
    cpu_offload: bool = False
    cache_threshold: float = 0.0

    @contextlib.contextmanager
    def _placed(self, module):
        """Move ``module`` to the compute device for the block's duration when offloading."""
        if self.cpu_offload:
            module.to(self.device)
        try:
            yield
        finally:
            if self.cpu_offload:
                module.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def encode_text(self, prompts: list[str], video_length: int):
        """LLM states ``[B, L_txt, D_txt]``, mask ``[B, L_txt]`` and CLIP pooled ``[B, D_2]``."""
        from hyvideo.text.encoders import encode_prompts  # noqa: PLC0415

        with self._placed(self.text_encoder), self._placed(self.text_encoder_2):
            emb = encode_prompts(self.text_encoder, self.text_encoder_2, prompts, video_length)
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
            negative_prompt: for cfg > 1; None/empty = the released ``NEGATIVE_PROMPT``.
            latents: optional initial noise ``[B, 16, T_z, H_z, W_z]`` (overrides ``seeds``).
            vae_tiling: decode with the VAE's tiles (released default on).
            output_type: ``"video"`` (decoded) or ``"latent"``.

        Returns:
            ``[B, 3, T, H, W]`` float32 in [0, 1] (or the final latents for ``output_type="latent"``).

        Raises:
            ValueError: see :func:`validate_generation_args`; seed count != prompt count.
        """
        validate_generation_args(prompts, height, width, video_length)
        b = len(prompts)
        if latents is None:
            if len(seeds) != b:
                raise ValueError(f"got {len(seeds)} seeds for {b} prompts; pass one seed per prompt")
            latents = seeded_noise(seeds, latent_shape(b, height, width, video_length, self.dit.in_channels))
        dit_dtype = next(self.dit.parameters()).dtype
        do_cfg = cfg_scale > 1.0
        if do_cfg:
            negative = [negative_prompt or NEGATIVE_PROMPT] * b
            states, mask, pooled = self.encode_text(negative + list(prompts), video_length)
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
        cache = enable_step_cache(self.dit, self.cache_threshold) if self.cache_threshold > 0 else None
        with self._placed(self.dit):
            latents = euler_sample(model_fn, latents.to(self.device), get_sigmas(infer_steps, flow_shift),
                                   progress=progress)
        if cache is not None:
            print(f"step cache (threshold {self.cache_threshold}): {cache.num_full} of {infer_steps} DiT "
                  f"evaluations computed ({cache.speedup:.2f}x fewer)")
            disable_step_cache(self.dit)
        if output_type == "latent":
            return latents
        return self.decode(latents, vae_tiling=vae_tiling)

    def decode(self, latents: torch.Tensor, vae_tiling: bool = True) -> torch.Tensor:
        """Latents ``[B, 16, T_z, H_z, W_z]`` (scaled) -> video ``[B, 3, T, H, W]`` float32 in [0, 1]."""
        if vae_tiling:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        vae_dtype = next(self.vae.parameters()).dtype
        with self._placed(self.vae):
            z = (latents / self.vae.config["scaling_factor"]).to(self.device, vae_dtype)
            video = self.vae.decode(z).sample
        return (video.float() / 2 + 0.5).clamp(0, 1)
