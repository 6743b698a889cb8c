"""Aspect-ratio buckets (the released I2V trainer's ``generate_crop_size_list``, spec section 8.1).

A *tier* names a training resolution ("256", "360", "540", "720", ...). Each tier has a base size and a patch
(stride) size; the bucket list holds every ``(h, w)`` with ``(h / patch) * (w / patch) <= (base / patch)^2``
walked from the widest to the tallest shape, aspect ratio at most ``max_ratio`` (4). A clip goes to the bucket
with the nearest height/width ratio, is resized to cover it, and is cropped.
"""

from __future__ import annotations

import functools
import random

import torch
import torch.nn.functional as F

# tier -> base size in px. 360p/540p/720p use the released bases 480/720/960; 256/512 are the paper's image
# stages; 32/64/128 are debug tiers for CPU tests and demos.
BUCKET_BASES: dict[str, int] = {
    "32": 32, "64": 64, "128": 128, "256": 256, "360": 480, "512": 512, "540": 720, "720": 960,
}
MAX_RATIO = 4.0


def generate_crop_size_list(base_size: int = 256, patch_size: int = 16, max_ratio: float = 4.0) -> list[tuple]:
    """All ``(h, w)`` crops of about ``base_size**2`` px whose sides are multiples of ``patch_size``.

    Same walk as the released code: start at ``(num_patches, 1)`` patches and move towards ``(1, num_patches)``,
    keeping shapes whose side ratio is at most ``max_ratio``. The list is symmetric, so reading its entries as
    ``(w, h)`` (the released name) or ``(h, w)`` gives the same set.

    Raises:
        ValueError: ``max_ratio < 1``.
    """
    if max_ratio < 1.0:
        raise ValueError(f"max_ratio must be >= 1, got {max_ratio}")
    num_patches = round((base_size / patch_size) ** 2)
    crops = []
    wp, hp = num_patches, 1
    while wp > 0:
        if max(wp, hp) / min(wp, hp) <= max_ratio:
            crops.append((wp * patch_size, hp * patch_size))
        if (hp + 1) * wp <= num_patches:
            hp += 1
        else:
            wp -= 1
    return crops


def tier_patch_size(base_size: int) -> int:
    """Bucket stride: 16 px below base 540, else 32 (released I2V rule)."""
    return 16 if base_size < 540 else 32


@functools.lru_cache(maxsize=None)
def buckets_for_tier(tier: str) -> tuple[tuple[int, int], ...]:
    """``(h, w)`` buckets of a tier.

    Raises:
        ValueError: the tier has no bucket list (not in :data:`BUCKET_BASES`).
    """
    tier = str(tier)
    if tier not in BUCKET_BASES:
        raise ValueError(f"resolution {tier!r} has no bucket list; known tiers: {sorted(BUCKET_BASES, key=int)}")
    base = BUCKET_BASES[tier]
    return tuple(generate_crop_size_list(base, tier_patch_size(base), MAX_RATIO))


def closest_bucket(height: int, width: int, tier: str) -> tuple[int, int]:
    """The ``(h, w)`` bucket of ``tier`` whose h/w ratio is nearest the clip's (first one on ties)."""
    buckets = buckets_for_tier(tier)
    ratio = height / width
    return min(buckets, key=lambda hw: abs(hw[0] / hw[1] - ratio))


def resize_crop(frames: torch.Tensor, size: tuple[int, int], rng: random.Random | None = None,
                native: bool = False, as_uint8: bool = False) -> torch.Tensor:
    """Resize frames to cover ``size`` (keeping aspect) and crop to it.

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB.
        size: target ``(h, w)`` in px.
        rng: random crop offset when given; centre crop otherwise.
        native: crop at the source resolution (resize only if the frame is smaller than ``size``), as for
            VAE training on crops.
        as_uint8: return uint8 ``[0, 255]`` (rounded after the resize): a quarter of the bytes through the
            loader's shared memory and pinned copies; :func:`pixels_to_unit` converts on the device.

    Returns:
        ``[3, T, h, w]`` float32 in [-1, 1], or uint8 with ``as_uint8``.
    """
    h, w = size
    x = frames.permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    scale = max(h / x.shape[2], w / x.shape[3])
    if native:
        scale = max(scale, 1.0)
    new_h, new_w = max(h, round(x.shape[2] * scale)), max(w, round(x.shape[3] * scale))
    if (new_h, new_w) != tuple(x.shape[2:]):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (new_h - h) // 2, (new_w - w) // 2
    if rng is not None:
        top, left = rng.randint(0, new_h - h), rng.randint(0, new_w - w)
    x = x[:, :, top:top + h, left:left + w]
    if as_uint8:
        return x.round().clamp(0, 255).to(torch.uint8).permute(1, 0, 2, 3).contiguous()
    return (x / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()


def pixels_to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels ``[..., 3, T, H, W]`` in [0, 255] -> float32 in [-1, 1] (``x / 127.5 - 1``; run it on the
    training device after the copy). Float input is returned as float32 unchanged."""
    if pixels.dtype != torch.uint8:
        return pixels.float()
    return pixels.float().div_(127.5).sub_(1.0)
