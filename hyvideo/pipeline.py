"""Video generation: prompt (+ image) -> text states -> seeded noise -> Euler loop -> VAE decode (spec section 5).

Text-to-video; image-to-video with the HunyuanVideo-I2V DiTs (``latent_concat`` / ``token_replace``, the image
encoded by the VAE conditions every step, see :mod:`hyvideo.diffusion.i2v`); video-to-video (SDEdit: the input
clip encoded and noised to the schedule's sigma at ``strength``), optionally with its first frame pinned.
Used by ``sample_video.py`` and the tests. Pure library code: no argparse, no file IO (models come from
:func:`hyvideo.checkpoint.loader.load_pipeline`; speed-ups from :func:`hyvideo.accel.apply`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hyvideo.accel.offload import placed
from hyvideo.diffusion import i2v
from hyvideo.diffusion.flow_matching import add_noise, get_sigmas
from hyvideo.diffusion.sampler import NonFiniteError, cfg_combine, euler_sample
from hyvideo.text.templates import NEGATIVE_PROMPT, NEGATIVE_PROMPT_I2V

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
        dit: :class:`hyvideo.models.dit.HYVideoDiffusionTransformer` (its ``i2v_condition_type`` selects the mode).
        vae: :class:`hyvideo.vae.autoencoder.AutoencoderKLCausal3D`.
        text_encoder: :class:`hyvideo.text.encoders.LLMTextEncoder`, or for an I2V DiT
            :class:`hyvideo.text.llava_i2v.LlavaI2VTextEncoder` (prompt read with the image).
        text_encoder_2: :class:`hyvideo.text.encoders.CLIPTextEncoder`.
        device: where computation runs.
        offload: models kept in CPU memory and moved to ``device`` only while they run, among ``"text"``,
            ``"dit"``, ``"vae"`` (a DiT whose blocks are streamed by :mod:`hyvideo.accel.offload` is not listed).
        step_cache: the :class:`hyvideo.accel.step_cache.FirstBlockCache` installed by ``accel.apply`` (reset
            before every video), or None.
        default_negative_prompt: the CFG negative used when a call passes none: None = the released
            ``NEGATIVE_PROMPT`` (``NEGATIVE_PROMPT_I2V``); a model that was trained with text dropout on the empty
            caption and never saw those words (the nano model: its card's ``negative_prompt: ""``) sets ``""``,
            which encodes the empty caption, the unconditional it learned.
    """

    dit: nn.Module
    vae: nn.Module
    text_encoder: object
    text_encoder_2: object
    device: torch.device = torch.device("cpu")
    offload: tuple[str, ...] = ()
    step_cache: object = None
    default_negative_prompt: str | None = None

    @property
    def condition_type(self) -> str | None:
        """The DiT's ``i2v_condition_type``: None (text-to-video), ``"latent_concat"`` or ``"token_replace"``."""
        return getattr(self.dit, "i2v_condition_type", None)

    def encode_text(self, prompts: list[str], video_length: int, images: list | None = None,
                    allow_empty: bool = False):
        """LLM states ``[B, L_txt, D_txt]``, mask ``[B, L_txt]`` and CLIP pooled ``[B, D_2]``.

        ``images`` (one RGB PIL image per prompt) go with the prompts through the LLaVA encoder of an I2V pipeline;
        a text-only encoder (an I2V DiT trained on text-only states, e.g. the nano one) reads the prompts alone.
        ``allow_empty`` encodes an empty prompt as the empty caption (the CFG negative of a text-dropout model).
        """
        from hyvideo.text.encoders import encode_prompts  # noqa: PLC0415
        from hyvideo.text.llava_i2v import LlavaI2VTextEncoder  # noqa: PLC0415

        off = "text" in self.offload
        with placed(self.text_encoder, self.device, off), placed(self.text_encoder_2, self.device, off):
            if images is None or not isinstance(self.text_encoder, LlavaI2VTextEncoder):
                emb = encode_prompts(self.text_encoder, self.text_encoder_2, prompts, video_length,
                                     allow_empty=allow_empty)
                return emb.states, emb.mask, emb.pooled
            states, mask = self.text_encoder(prompts, images, allow_empty=True)
            return states, mask, self.text_encoder_2(prompts, allow_empty=True)

    def encode_latents(self, pixels: torch.Tensor, vae_tiling: bool = True) -> torch.Tensor:
        """Pixels ``[B, 3, T, H, W]`` in [-1, 1] -> scaled latents ``[B, 16, T_z, H_z, W_z]`` float32 (posterior mode,
        as the released I2V pipeline)."""
        self.vae.enable_tiling(vae_tiling)
        vae_dtype = next(self.vae.parameters()).dtype
        with placed(self.vae, self.device, "vae" in self.offload):
            z = self.vae.encode(pixels.to(self.device, vae_dtype)).latent_dist.mode()
        return z.float() * self.vae.config["scaling_factor"]

    def _check_mode(self, image, video, strength: float, video_length: int) -> None:
        """Raises ValueError when the request does not fit the DiT (I2V weights without an image and vice versa)."""
        ctype = self.condition_type
        if ctype is not None and image is None:
            raise ValueError(f"this DiT is an image-to-video model (i2v_condition_type {ctype!r}); pass an image "
                             f"(sample_video.py --i2v-mode --i2v-image-path IMAGE)")
        if ctype is None and image is not None:
            raise ValueError("an image was given but this DiT is a text-to-video model (i2v_condition_type None); "
                             "load HunyuanVideo-I2V weights, or use video-to-video with --fix-first-frame")
        if ctype is not None and video is not None:
            raise ValueError(f"video-to-video needs text-to-video weights; this DiT has i2v_condition_type {ctype!r}")
        if image is not None and video_length < 5:
            raise ValueError(f"image-to-video needs a video of at least 5 frames, got --video-length {video_length}")
        i2v.check_strength(strength)

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
        decode_callback=None,
        image=None,
        i2v_stability: bool = False,
        video: torch.Tensor | None = None,
        strength: float = 1.0,
        fix_first_frame: bool = False,
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
            negative_prompt: for cfg > 1; None/empty = :attr:`default_negative_prompt`, whose None is the
                released ``NEGATIVE_PROMPT`` (``NEGATIVE_PROMPT_I2V`` with a black image for image-to-video).
            latents: optional initial noise ``[B, 16, T_z, H_z, W_z]`` (overrides ``seeds``).
            vae_tiling: encode / decode with the VAE's tiles (released default on).
            output_type: ``"video"`` (decoded) or ``"latent"``.
            callback: optional ``callback(step, total_steps)`` after each denoising step (1-based).
            decode_callback: optional ``decode_callback(tile, total_tiles)`` after each VAE decode tile (1-based).
            image: image-to-video (I2V DiT only): one RGB ``PIL.Image`` or one per prompt. The LLaVA encoder
                reads it as given; the VAE gets it resized (shorter side) and centre-cropped to ``height x width``
                (the caller picks the bucket: :func:`hyvideo.data.i2v_buckets.closest_i2v_bucket`).
            i2v_stability: start from ``0.999 * noise + 0.001 * image latent`` (released ``--i2v-stability``).
            video: video-to-video input ``[B or 1, 3, T, height, width]`` in [-1, 1] (text-to-video DiT only).
            strength: video-to-video strength in (0, 1]: the input is noised to the first sigma of the last
                ``strength`` of the schedule (1 = text-to-video from the same noise).
            fix_first_frame: video-to-video: latent frame 0 follows the input's exactly at every sigma (the
                first frame of a text-to-video model fixed to the input's).

        Returns:
            ``[B, 3, T, H, W]`` float32 in [0, 1] (or the final latents for ``output_type="latent"``); a
            ``latent_concat`` video has ``T - 4`` frames (the released decode drops its first 4).

        Raises:
            ValueError: see :func:`validate_generation_args` / :func:`validate_sampling_args`; seed count !=
                prompt count; an image without I2V weights or I2V weights without an image; strength outside
                (0, 1].
            NonFiniteError: NaN / Inf latents or frames (named step and likely causes).
        """
        validate_generation_args(prompts, height, width, video_length)
        validate_sampling_args(seeds=seeds if latents is None else [], infer_steps=infer_steps,
                               flow_shift=flow_shift, embedded_guidance_scale=embedded_guidance_scale,
                               cfg_scale=cfg_scale)
        self._check_mode(image, video, strength, video_length)
        b = len(prompts)
        if latents is None:
            if len(seeds) != b:
                raise ValueError(f"got {len(seeds)} seeds for {b} prompts; pass one seed per prompt")
            latents = seeded_noise(seeds, latent_shape(b, height, width, video_length, self.dit.out_channels))
        images = None if image is None else (list(image) if isinstance(image, (list, tuple)) else [image] * b)
        start, sigmas, cond, velocity = self._prepare_latents(latents, images, video, height, width, infer_steps,
                                                              flow_shift, strength, i2v_stability, fix_first_frame,
                                                              vae_tiling)
        model_fn = self._model_fn(prompts, video_length, images, negative_prompt, cfg_scale,
                                  embedded_guidance_scale, cond, velocity)
        mode = {None: "text-to-video", "latent_concat": "image-to-video (latent concat)",
                "token_replace": "image-to-video (token replace)"}[self.condition_type]
        if video is not None:
            mode = f"video-to-video (strength {strength}{', first frame fixed' if fix_first_frame else ''})"
        print(f"sampling {b} video(s) {video_length}x{height}x{width} (frames x H x W), {mode}, {len(sigmas) - 1} "
              f"steps, flow shift {flow_shift}, embedded guidance {embedded_guidance_scale}, cfg {cfg_scale}")
        if self.step_cache is not None:
            self.step_cache.reset()
        with placed(self.dit, self.device, "dit" in self.offload):
            step_cb = None if callback is None else (lambda i, _x: callback(i + 1, len(sigmas) - 1))
            latents = euler_sample(model_fn, start.to(self.device), sigmas, progress=progress, callback=step_cb)
        if self.step_cache is not None:
            c = self.step_cache
            print(f"step cache (threshold {c.threshold}): {c.num_full} of {c.num_full + c.num_skipped} DiT "
                  f"evaluations computed ({c.speedup:.2f}x fewer)")
        if output_type == "latent":
            return latents
        video_out = self.decode(latents, vae_tiling=vae_tiling, callback=decode_callback)
        if self.condition_type == "latent_concat":
            video_out = video_out[:, :, i2v.LATENT_CONCAT_DROPPED_FRAMES:]
        return video_out

    def _prepare_latents(self, noise, images, video, height, width, infer_steps, flow_shift, strength,
                         i2v_stability, fix_first_frame, vae_tiling):
        """Start latents, sigmas, the I2V condition and the velocity rule (frame 0 fixed or free).

        Returns:
            ``(start [B, 16, T_z, H_z, W_z] float32, sigmas, cond or None, velocity(v) -> v)``.
        """
        from hyvideo.data.i2v_buckets import image_to_tensor, resize_center_crop  # noqa: PLC0415

        sigmas, cond, velocity = get_sigmas(infer_steps, flow_shift), None, (lambda v: v)
        noise = noise.float().to(self.device)
        ctype = self.condition_type
        if images is not None:
            pixels = torch.stack([image_to_tensor(resize_center_crop(im, (height, width))) for im in images])
            # one frame: encoded untiled, as the released and diffusers pipelines do  -> [B, 16, 1, H_z, W_z]
            image_latent = self.encode_latents(pixels.unsqueeze(2), vae_tiling=False)
            cond = i2v.condition(image_latent, noise.shape[2], ctype)
            start = i2v.stability_start(noise, image_latent) if i2v_stability else noise
            if ctype == "token_replace":  # frame 0 is the clean image latent and never moves
                start = torch.cat([image_latent, start[:, :, 1:]], dim=2)
                velocity = lambda v: torch.cat([torch.zeros_like(v[:, :, :1]), v[:, :, 1:]], dim=2)  # noqa: E731
            return start, sigmas, cond, velocity
        if video is None:
            return noise, sigmas, None, velocity
        z0 = self.encode_latents(video, vae_tiling).expand(noise.shape[0], -1, -1, -1, -1)
        if z0.shape != noise.shape:
            raise ValueError(f"the input video encodes to latents {tuple(z0.shape[1:])}, the request needs "
                             f"{tuple(noise.shape[1:])}: pass {latent_shape(1, height, width, 1)[3] * 8}x"
                             f"{latent_shape(1, height, width, 1)[4] * 8} px frames, as many as --video-length")
        sigmas = i2v.strength_sigmas(sigmas, strength)
        # contiguous: z0 comes out of the VAE encoder in another memory layout, which the sum inherits, and the
        # decoder's convolutions then round differently (5e-5): strength 1 must equal text-to-video bit for bit
        start = add_noise(z0, noise, sigmas[0]).contiguous()
        if fix_first_frame:
            first, first_noise = z0[:, :, :1], noise[:, :, :1]
            velocity = lambda v: i2v.pinned_velocity(v, first, first_noise)  # noqa: E731
        return start, sigmas, None, velocity

    def _model_fn(self, prompts, video_length, images, negative_prompt, cfg_scale, embedded_guidance_scale, cond,
                  velocity):
        """The velocity function of the Euler loop: text states, guidance, CFG, the I2V input and frame rule."""
        b, do_cfg = len(prompts), cfg_scale > 1.0
        dit_dtype = next(p.dtype for p in self.dit.parameters() if p.dtype.itemsize > 1)
        if do_cfg:
            default_negative = self.default_negative_prompt
            if default_negative is None:
                default_negative = NEGATIVE_PROMPT if images is None else NEGATIVE_PROMPT_I2V
            negative = [negative_prompt or default_negative] * b
            black = None if images is None else [_black_like(im) for im in images]
            # the prompts were checked non-empty up front; only the negative may be the empty caption
            states, mask, pooled = self.encode_text(negative + list(prompts), video_length,
                                                    None if images is None else black + images, allow_empty=True)
        else:
            states, mask, pooled = self.encode_text(list(prompts), video_length, images)
        states, mask, pooled = (x.to(self.device) for x in (states, mask, pooled))
        n, ctype = states.shape[0], self.condition_type
        guidance = None
        if self.dit.guidance_embed:
            scale = 6.0 if embedded_guidance_scale is None else embedded_guidance_scale
            guidance = torch.full((n,), scale, dtype=dit_dtype, device=self.device) * 1000.0
        cond = None if cond is None else cond.to(self.device)

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if cond is not None:
                x = i2v.model_input(x, cond, ctype)
            x_in = torch.cat([x, x]) if do_cfg else x
            t_in = torch.cat([t, t]) if do_cfg else t
            v = self.dit(x_in.to(dit_dtype), t_in, states.to(dit_dtype), mask, pooled.to(dit_dtype), guidance)
            return velocity(cfg_combine(*v.float().chunk(2), cfg_scale) if do_cfg else v)

        return model_fn

    def decode(self, latents: torch.Tensor, vae_tiling: bool = True, callback=None) -> torch.Tensor:
        """Latents ``[B, 16, T_z, H_z, W_z]`` (scaled) -> video ``[B, 3, T, H, W]`` float32 in [0, 1].

        ``callback(tile, total_tiles)`` (optional) runs after each decoder call (one per tile; 1 untiled).

        Raises:
            NonFiniteError: the decoded frames hold NaN / Inf (e.g. an fp16 VAE overflowing).
        """
        if vae_tiling:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        vae_dtype = next(self.vae.parameters()).dtype
        hook = None
        if callback is not None:
            total, done = self.vae.num_decode_tiles(latents.shape), [0]

            def count(*_):
                done[0] += 1
                callback(done[0], total)
            hook = self.vae.decoder.register_forward_hook(count)
        try:
            with placed(self.vae, self.device, "vae" in self.offload):
                z = (latents / self.vae.config["scaling_factor"]).to(self.device, vae_dtype)
                video = self.vae.decode(z).sample
        finally:
            if hook is not None:
                hook.remove()
        if not bool(torch.isfinite(video).all()):
            raise NonFiniteError(f"the VAE decode produced NaN/Inf frames (VAE dtype {vae_dtype}); try "
                                 "--vae-precision fp32 or bf16")
        return (video.float() / 2 + 0.5).clamp(0, 1)


def _black_like(image):
    """A black RGB image of the same size (the released unconditional image of I2V guidance)."""
    from PIL import Image  # noqa: PLC0415

    return Image.new("RGB", image.size, 0)
