"""A cheap estimate of the memory a sampling request needs, checked before any model is loaded.

The figures are deliberately simple upper-side estimates (weights resident at once + the largest activation
of each stage), accurate to a small factor: enough to refuse ``--video-size 100000 100000`` in a second
instead of after an hour of loading, and to name the flags that would help.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

GIB = 1024**3
# Activation bytes per output pixel-frame of an untiled VAE decode, per unit of the decoder's widest
# full-resolution width (block_out_channels[0]) and per byte of dtype: ~2541 B per pixel-frame measured for the
# released VAE in bf16 (width 128) -> ~10 activations of that width alive at once (docs/benchmarks.md).
VAE_ACTIVATIONS_PER_PIXEL = 10
# Peak activation bytes per DiT token, in units of hidden size x dtype bytes: the widest block keeps its input,
# the linear1 output (3 D + 4 D), the attention output and the gated residual alive (~12 D).
DIT_ACTIVATIONS_PER_TOKEN = 12


@dataclass
class MemoryEstimate:
    """Bytes per part of a sampling request; ``total`` is what must fit on the device at the peak."""

    weights: int
    dit_activations: int
    vae_activations: int
    video: int

    @property
    def total(self) -> int:
        return self.weights + max(self.dit_activations, self.vae_activations) + self.video


def estimate_sampling(*, dit_params: int, dit_hidden: int, dit_dtype: torch.dtype, fp8: bool, vae_params: int,
                      vae_width: int, vae_dtype: torch.dtype, text_bytes: int, batch: int, cfg: bool, height: int,
                      width: int, frames: int, tiling: bool, tile_px: int = 256, tile_frames: int = 64,
                      offload: str = "none") -> MemoryEstimate:
    """Estimate the peak device memory of sampling ``batch`` videos of ``frames x height x width``.

    Args:
        dit_params, dit_hidden: DiT parameter count and width. fp8: block weights in 1 byte.
        vae_params, vae_width: VAE parameter count and ``block_out_channels[0]``.
        text_bytes: bytes of both text encoders' weights.
        cfg: real classifier-free guidance (doubles the DiT batch).
        tiling: VAE tiled decode with ``tile_px`` x ``tile_px`` x ``tile_frames`` tiles.
        offload: ``hyvideo.checkpoint.loader.OFFLOAD_MODES`` key (offloaded weights are not resident).

    Returns:
        A :class:`MemoryEstimate` in bytes.
    """
    db, vb = torch.finfo(dit_dtype).bits // 8, torch.finfo(vae_dtype).bits // 8
    dit_w = dit_params * (1 if fp8 else db)
    vae_w = vae_params * vb
    if offload == "none":
        weights = dit_w + vae_w + text_bytes
    elif offload == "model":
        weights = max(dit_w, vae_w, text_bytes)
    else:  # DiT blocks streamed: ~2 blocks and the non-block 2 % resident; text / VAE in turn (or resident)
        weights = dit_w // 20 + (max(vae_w, text_bytes) if offload == "cpu" else vae_w + text_bytes)
    tz, hz, wz = (frames - 1) // 4 + 1, height // 8, width // 8
    tokens = tz * (hz // 2) * (wz // 2) + 256
    dit_act = batch * (2 if cfg else 1) * tokens * dit_hidden * DIT_ACTIVATIONS_PER_TOKEN * db
    px = (min(height, tile_px) * min(width, tile_px) * min(frames, tile_frames + 1)) if tiling else height * width * frames
    vae_act = px * vae_width * VAE_ACTIVATIONS_PER_PIXEL * vb
    video = batch * 3 * frames * height * width * (4 + 4 + 1)  # float32 frames, their [0, 1] copy, uint8 frames
    return MemoryEstimate(weights, dit_act, vae_act, video)


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory of ``device`` in bytes (CUDA: ``mem_get_info``; CPU: MemAvailable), None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            for line in open("/proc/meminfo", encoding="ascii"):
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def advice(est: MemoryEstimate, tiling: bool, offload: str, fp8: bool) -> str:
    """The flags that would lower the biggest parts of ``est``."""
    tips = []
    if not tiling and est.vae_activations > est.dit_activations:
        tips.append("--vae-tiling")
    if offload == "none":
        tips.append("--use-cpu-offload")
    if not fp8 and est.weights > est.dit_activations:
        tips.append("--use-fp8")
    tips.append("a smaller --video-size / --video-length")
    return ", ".join(tips)
