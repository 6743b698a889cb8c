"""The causal 3D VAE of HunyuanVideo (``884-16c-hy``): encoder, decoder and ``AutoencoderKLCausal3D``.

Reference: HV:hyvideo/vae/vae.py (``EncoderCausal3D``, ``DecoderCausal3D``),
HV:hyvideo/vae/autoencoder_kl_causal_3d.py (``AutoencoderKLCausal3D``); DF ``AutoencoderKLHunyuanVideo``
(diffusers 0.42, same state-dict keys). Spec: /work/shared/spec/hunyuanvideo.md section 3.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from hyvideo.vae.distribution import AutoencoderKLOutput, DecoderOutput, DiagonalGaussianDistribution
from hyvideo.vae.encoder_decoder import DOWN_BLOCK_TYPES, UP_BLOCK_TYPES, DecoderCausal3D, EncoderCausal3D
from hyvideo.vae.tiling import spatial_tiled, temporal_tile_ranges, temporal_tiled

__all__ = [
    "AutoencoderKLCausal3D",
    "AutoencoderKLOutput",
    "DecoderCausal3D",
    "DecoderOutput",
    "DiagonalGaussianDistribution",
    "EncoderCausal3D",
]

# Keys of a released config.json that configure nothing in this implementation.
_IGNORED_CONFIG_KEYS = ("force_upcast",)


class AutoencoderKLCausal3D(nn.Module):
    """HunyuanVideo's causal 3D VAE: pixels ``[B, 3, 1 + 4k, H, W]`` <-> latents ``[B, 16, 1 + k, H/8, W/8]``.

    The constructor takes exactly the keys of the released ``vae/config.json``, each defaulting to the released
    value, so ``AutoencoderKLCausal3D()`` is the released model (246,478,803 parameters; state-dict keys equal
    the official ones and diffusers' ``AutoencoderKLHunyuanVideo``). The model is a pure ``nn.Module``;
    building it on ``torch.device("meta")`` works.

    Latent scaling is *not* applied here: as in the released pipeline, the caller multiplies the encoded
    latents by ``scaling_factor`` (0.476986, no shift) and divides by it before ``decode``.

    Causality: every conv is causal in time (front-only replicate padding) and the mid-block attention is
    frame-block-causal, but the VAE as a whole is *not* strictly prefix-causal, because every GroupNorm pools
    its statistics over T (later frames change the normalisation of earlier ones).

    Tiling: off by default here, as in the released class; the released sampler (``--vae-tiling``, default on)
    calls :meth:`enable_tiling`, which enables both spatial and temporal tiling (spec 3.7). Tile sizes are the
    plain attributes ``tile_sample_min_size`` (px, from ``sample_size``), ``tile_sample_min_tsize`` (frames,
    from ``sample_tsize``) and ``tile_overlap_factor`` (0.25); the latent sizes, strides and blend widths are
    derived from them (see :mod:`hyvideo.vae.tiling`).

    Args:
        in_channels: pixel channels in.
        out_channels: pixel channels out.
        down_block_types: one ``"DownEncoderBlockCausal3D"`` per block.
        up_block_types: one ``"UpDecoderBlockCausal3D"`` per block.
        block_out_channels: encoder widths (decoder reversed).
        layers_per_block: resnets per encoder block (decoder: +1).
        act_fn: activation name.
        latent_channels: C_z.
        norm_num_groups: GroupNorm groups (eps 1e-6 everywhere).
        sample_size: spatial tile size in px.
        sample_tsize: temporal tile size in frames.
        scaling_factor: latent scale applied by the caller.
        spatial_compression_ratio: H / H_z (power of two).
        time_compression_ratio: (T - 1) / (T_z - 1) (power of two).
        mid_block_add_attention: keep the mid-block attention.

    Raises:
        ValueError: unknown block type, block-type count differing from ``block_out_channels``, a ratio that
            is not a power of two reachable by the blocks, or channels not divisible by ``norm_num_groups``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Sequence[str] = ("DownEncoderBlockCausal3D",) * 4,
        up_block_types: Sequence[str] = ("UpDecoderBlockCausal3D",) * 4,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        act_fn: str = "silu",
        latent_channels: int = 16,
        norm_num_groups: int = 32,
        sample_size: int = 256,
        sample_tsize: int = 64,
        scaling_factor: float = 0.476986,
        spatial_compression_ratio: int = 8,
        time_compression_ratio: int = 4,
        mid_block_add_attention: bool = True,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "down_block_types": list(down_block_types),
            "up_block_types": list(up_block_types),
            "block_out_channels": list(block_out_channels),
            "layers_per_block": layers_per_block,
            "act_fn": act_fn,
            "latent_channels": latent_channels,
            "norm_num_groups": norm_num_groups,
            "sample_size": sample_size,
            "sample_tsize": sample_tsize,
            "scaling_factor": scaling_factor,
            "spatial_compression_ratio": spatial_compression_ratio,
            "time_compression_ratio": time_compression_ratio,
            "mid_block_add_attention": mid_block_add_attention,
        }
        self._validate_config()
        common = dict(
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            num_groups=norm_num_groups,
            act_fn=act_fn,
            spatial_compression_ratio=spatial_compression_ratio,
            time_compression_ratio=time_compression_ratio,
            mid_block_add_attention=mid_block_add_attention,
        )
        self.encoder = EncoderCausal3D(in_channels=in_channels, latent_channels=latent_channels, **common)
        self.decoder = DecoderCausal3D(latent_channels=latent_channels, out_channels=out_channels, **common)
        self.quant_conv = nn.Conv3d(2 * latent_channels, 2 * latent_channels, kernel_size=1)
        self.post_quant_conv = nn.Conv3d(latent_channels, latent_channels, kernel_size=1)

        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.scaling_factor = scaling_factor
        self.spatial_compression_ratio = spatial_compression_ratio
        self.time_compression_ratio = time_compression_ratio
        # Tiling (released defaults; spec 3.7). Off until enable_tiling().
        self.use_spatial_tiling = False
        self.use_temporal_tiling = False
        self.tile_sample_min_size = sample_size  # px
        self.tile_sample_min_tsize = sample_tsize  # frames
        self.tile_overlap_factor = 0.25

    def _validate_config(self) -> None:
        cfg = self.config
        n = len(cfg["block_out_channels"])
        for key, allowed in (("down_block_types", DOWN_BLOCK_TYPES), ("up_block_types", UP_BLOCK_TYPES)):
            if len(cfg[key]) != n:
                raise ValueError(f"{key} has {len(cfg[key])} entries; block_out_channels has {n}")
            bad = [t for t in cfg[key] if t not in allowed]
            if bad:
                raise ValueError(f"unsupported {key} {bad}; allowed: {list(allowed)}")
        bad_ch = [c for c in cfg["block_out_channels"] if c % cfg["norm_num_groups"]]
        if bad_ch:
            raise ValueError(f"block_out_channels {bad_ch} not divisible by norm_num_groups={cfg['norm_num_groups']}")

    # ----------------------------------------------------------------------------------------------
    # Construction helpers
    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | os.PathLike | Mapping[str, Any]) -> AutoencoderKLCausal3D:
        """Build from a released-style ``config.json`` path or a dict (randomly initialised; no weights).

        Keys starting with ``_`` (``_class_name``, ``_diffusers_version``) and ``force_upcast`` are ignored.

        Raises:
            ValueError: an unknown key.
        """
        if not isinstance(config, Mapping):
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        kwargs = {k: v for k, v in config.items() if not k.startswith("_") and k not in _IGNORED_CONFIG_KEYS}
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown VAE config keys {unknown}; allowed: {sorted(known)}")
        return cls(**kwargs)

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the parameters."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """device of the parameters."""
        return next(self.parameters()).device

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each encoder/decoder block (and each resnet/attention inside) in backward."""
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enabled

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether activation checkpointing is on."""
        return self.encoder.gradient_checkpointing

    # ----------------------------------------------------------------------------------------------
    # Tiling switches and derived sizes
    # ----------------------------------------------------------------------------------------------
    def enable_spatial_tiling(self, use_tiling: bool = True) -> None:
        """Tile over H and W when the input exceeds ``tile_sample_min_size`` px (latent: that / 8)."""
        self.use_spatial_tiling = use_tiling

    def disable_spatial_tiling(self) -> None:
        """Turn spatial tiling off."""
        self.use_spatial_tiling = False

    def enable_temporal_tiling(self, use_tiling: bool = True) -> None:
        """Tile over T when the input exceeds ``tile_sample_min_tsize`` frames (latent: that / 4)."""
        self.use_temporal_tiling = use_tiling

    def disable_temporal_tiling(self) -> None:
        """Turn temporal tiling off."""
        self.use_temporal_tiling = False

    def enable_tiling(self, use_tiling: bool = True) -> None:
        """Turn spatial *and* temporal tiling on (what the released sampler does; spec 3.7)."""
        self.enable_spatial_tiling(use_tiling)
        self.enable_temporal_tiling(use_tiling)

    def disable_tiling(self) -> None:
        """Turn all tiling off (the model's default)."""
        self.enable_tiling(False)

    @property
    def tile_latent_min_size(self) -> int:
        """Spatial latent tile side (released: 256 / 8 = 32)."""
        return self.tile_sample_min_size // self.spatial_compression_ratio

    @property
    def tile_latent_min_tsize(self) -> int:
        """Temporal latent tile length (released: 64 / 4 = 16)."""
        return self.tile_sample_min_tsize // self.time_compression_ratio

    def tile_settings(self) -> dict[str, int]:
        """All derived tile numbers (released values in comments), for logging and tests."""
        f = self.tile_overlap_factor
        s, sl = self.tile_sample_min_size, self.tile_latent_min_size
        t, tl = self.tile_sample_min_tsize, self.tile_latent_min_tsize
        return {
            "encode_spatial_stride_px": int(s * (1 - f)),  # 192
            "encode_spatial_blend_latents": int(sl * f),  # 8
            "encode_spatial_keep_latents": sl - int(sl * f),  # 24
            "decode_spatial_stride_latents": int(sl * (1 - f)),  # 24
            "decode_spatial_blend_px": int(s * f),  # 64
            "decode_spatial_keep_px": s - int(s * f),  # 192
            "encode_temporal_stride_frames": int(t * (1 - f)),  # 48
            "encode_temporal_blend_latents": int(tl * f),  # 4
            "encode_temporal_keep_latents": tl - int(tl * f),  # 12 (first tile 13)
            "decode_temporal_stride_latents": int(tl * (1 - f)),  # 12
            "decode_temporal_blend_frames": int(t * f),  # 16
            "decode_temporal_keep_frames": t - int(t * f),  # 48 (first tile 49)
        }

    # ----------------------------------------------------------------------------------------------
    # Encode / decode
    # ----------------------------------------------------------------------------------------------
    def _check_pixels(self, x: torch.Tensor) -> None:
        if x.ndim != 5:
            raise ValueError(f"expected pixels [B, C, T, H, W] (5 dims), got {x.ndim} dims, shape {tuple(x.shape)}")
        _, c, t, h, w = x.shape
        r, s = self.time_compression_ratio, self.spatial_compression_ratio
        if c != self.in_channels:
            raise ValueError(f"expected {self.in_channels} pixel channels, got C={c} (shape {tuple(x.shape)})")
        if t < 1 or (t - 1) % r:
            raise ValueError(f"frames must be T = 1 + {r}k (1, {1 + r}, {1 + 2 * r}, ...), got T={t}")
        if h < s or w < s or h % s or w % s:
            raise ValueError(
                f"H and W must be positive multiples of the spatial compression ratio {s}, got H={h}, W={w}"
            )

    def _check_latents(self, z: torch.Tensor) -> None:
        if z.ndim != 5:
            raise ValueError(
                f"expected latents [B, C_z, T_z, H_z, W_z] (5 dims), got {z.ndim} dims, shape {tuple(z.shape)}"
            )
        if z.shape[1] != self.latent_channels:
            raise ValueError(f"expected {self.latent_channels} latent channels, got C_z={z.shape[1]}")

    def _check_tiles(self) -> None:
        """Raise unless the tile strides keep whole latents (always true for the released settings)."""
        st = self.tile_settings()
        if self.use_spatial_tiling and st["encode_spatial_stride_px"] % self.spatial_compression_ratio:
            raise ValueError(
                f"spatial tile stride {st['encode_spatial_stride_px']} px (tile_sample_min_size="
                f"{self.tile_sample_min_size}, overlap {self.tile_overlap_factor}) must be a multiple of "
                f"{self.spatial_compression_ratio}"
            )
        if self.use_temporal_tiling and st["encode_temporal_stride_frames"] % self.time_compression_ratio:
            raise ValueError(
                f"temporal tile stride {st['encode_temporal_stride_frames']} frames (tile_sample_min_tsize="
                f"{self.tile_sample_min_tsize}, overlap {self.tile_overlap_factor}) must be a multiple of "
                f"{self.time_compression_ratio}"
            )

    def _encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def _encode_spatial(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_spatial_tiling and max(x.shape[-2:]) > self.tile_sample_min_size:
            st = self.tile_settings()
            return spatial_tiled(
                x,
                self._encode_tile,
                tile=self.tile_sample_min_size,
                stride=st["encode_spatial_stride_px"],
                blend_extent=st["encode_spatial_blend_latents"],
                keep=st["encode_spatial_keep_latents"],
            )
        return self._encode_tile(x)

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder + ``quant_conv`` (tiled when enabled): ``[B, C, T, H, W]`` -> ``[B, 2 C_z, T_z, H_z, W_z]``."""
        self._check_pixels(x)
        self._check_tiles()
        t = x.shape[2]
        if self.use_temporal_tiling and t > self.tile_sample_min_tsize:
            st = self.tile_settings()
            return temporal_tiled(
                x,
                self._encode_spatial,
                tile=self.tile_sample_min_tsize + 1,
                stride=st["encode_temporal_stride_frames"],
                blend_extent=st["encode_temporal_blend_latents"],
                keep=st["encode_temporal_keep_latents"],
                out_length=(t - 1) // self.time_compression_ratio + 1,
            )
        return self._encode_spatial(x)

    def encode(self, x: torch.Tensor) -> AutoencoderKLOutput:
        """Encode pixels to the latent posterior (unscaled: multiply samples by ``scaling_factor`` yourself).

        Args:
            x: ``[B, C, T, H, W]`` in [-1, 1], T = 1 + 4k, H and W multiples of 8.

        Returns:
            ``.latent_dist`` over ``[B, C_z, T_z, H_z, W_z]``, T_z = (T - 1) / 4 + 1, H_z = H / 8.

        Raises:
            ValueError: wrong ndim, channel count, frame count or spatial size, or unusable tile settings.
        """
        return AutoencoderKLOutput(latent_dist=DiagonalGaussianDistribution(self.encode_moments(x)))

    def _decode_tile(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def _decode_spatial(self, z: torch.Tensor) -> torch.Tensor:
        if self.use_spatial_tiling and max(z.shape[-2:]) > self.tile_latent_min_size:
            st = self.tile_settings()
            return spatial_tiled(
                z,
                self._decode_tile,
                tile=self.tile_latent_min_size,
                stride=st["decode_spatial_stride_latents"],
                blend_extent=st["decode_spatial_blend_px"],
                keep=st["decode_spatial_keep_px"],
            )
        return self._decode_tile(z)

    def num_decode_tiles(self, latent_shape: tuple[int, ...]) -> int:
        """How many times :meth:`decode` runs the decoder on latents of ``[B, C_z, T_z, H_z, W_z]`` (tiles).

        Mirrors :meth:`decode`'s schedule under the current tiling flags (1 when untiled); progress bars count
        decoder calls against it.
        """
        t, h, w = latent_shape[2:]
        spatial = 1
        if self.use_spatial_tiling and max(h, w) > self.tile_latent_min_size:
            stride = self.tile_settings()["decode_spatial_stride_latents"]
            spatial = len(range(0, h, stride)) * len(range(0, w, stride))
        if self.use_temporal_tiling and t > self.tile_latent_min_tsize:
            st = self.tile_settings()
            windows = temporal_tile_ranges(t, st["decode_temporal_stride_latents"], self.tile_latent_min_tsize + 1)
            return len(windows) * spatial
        return spatial

    def decode(self, z: torch.Tensor) -> DecoderOutput:
        """Decode (unscaled) latents to pixels: divide by ``scaling_factor`` before calling.

        Args:
            z: ``[B, C_z, T_z, H_z, W_z]``.

        Returns:
            ``.sample`` ``[B, C, 1 + 4 (T_z - 1), 8 H_z, 8 W_z]``, values ~[-1, 1] (not clamped).

        Raises:
            ValueError: wrong ndim or channel count, or unusable tile settings.
        """
        self._check_latents(z)
        self._check_tiles()
        t = z.shape[2]
        if self.use_temporal_tiling and t > self.tile_latent_min_tsize:
            st = self.tile_settings()
            sample = temporal_tiled(
                z,
                self._decode_spatial,
                tile=self.tile_latent_min_tsize + 1,
                stride=st["decode_temporal_stride_latents"],
                blend_extent=st["decode_temporal_blend_frames"],
                keep=st["decode_temporal_keep_frames"],
                out_length=(t - 1) * self.time_compression_ratio + 1,
            )
        else:
            sample = self._decode_spatial(z)
        return DecoderOutput(sample=sample)

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> DecoderOutput:
        """Encode, take the posterior mode (or a sample), decode; for reconstruction training.

        Args:
            x: ``[B, C, T, H, W]`` in [-1, 1].
            sample_posterior: draw ``z ~ q(z|x)`` instead of the mean.
            generator: RNG for the posterior sample.

        Returns:
            ``.sample`` ``[B, C, T, H, W]`` and ``.posterior`` (for the KL term).
        """
        posterior = self.encode(x).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return DecoderOutput(sample=self.decode(z).sample, posterior=posterior)
