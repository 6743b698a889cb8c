"""The released HunyuanVideo-I2V rule that sizes a video from its conditioning image (HVI2V:hyvideo/inference.py).

``--i2v-resolution`` picks a base size (360p: 480, 540p: 720, 720p: 960 px); the buckets are every ``(h, w)`` with
sides multiple of 32 px and about ``base^2`` pixels (:func:`hyvideo.data.buckets.generate_crop_size_list`, ratio
at most 4). hyvideo adds 64p / 128p / 256p (16 px stride) for small models such as the nano one; they are not
released settings. The image goes to the bucket whose h/w ratio is nearest its own *on the same side*: a portrait
or square image (h/w >= 1) only to buckets with ratio <= its own, a landscape one only to buckets with ratio > its
own (``get_closest_ratio``), so that resizing the image's shorter side to the bucket's shorter side always covers
the bucket; then the centre crop (torchvision ``Resize(min(bucket))`` + ``CenterCrop(bucket)`` on the PIL image:
bilinear with antialiasing, crop offsets rounded half to even).
"""

from __future__ import annotations

import logging

import torch

from hyvideo.data.buckets import generate_crop_size_list

logger = logging.getLogger(__name__)

# --i2v-resolution -> base size (px): the released 360p / 540p / 720p, and small tiers for small models
I2V_RESOLUTIONS: dict[str, int] = {"64p": 64, "128p": 128, "256p": 256, "360p": 480, "540p": 720, "720p": 960}
I2V_BUCKET_STRIDE = 32  # px, released; the small tiers use 16 (a 32 px stride leaves too few shapes)


def bucket_stride(base: int) -> int:
    """Bucket side multiple: 32 px for the released bases (>= 480), 16 px for the small tiers."""
    return I2V_BUCKET_STRIDE if base >= 480 else 16


def i2v_buckets(resolution: str) -> list[tuple[int, int]]:
    """``(h, w)`` buckets of an ``--i2v-resolution``, in the released order.

    Raises:
        ValueError: unknown resolution (allowed ones listed).
    """
    if resolution not in I2V_RESOLUTIONS:
        raise ValueError(f"--i2v-resolution {resolution!r} is not supported; allowed: {', '.join(I2V_RESOLUTIONS)}")
    base = I2V_RESOLUTIONS[resolution]
    return generate_crop_size_list(base, bucket_stride(base))


def closest_i2v_bucket(height: int, width: int, resolution: str) -> tuple[int, int]:
    """The released bucket ``(h, w)`` of an image of ``height x width`` px (see the module docstring)."""
    buckets = i2v_buckets(resolution)
    aspect = float(height) / float(width)
    ratios = [round(float(h) / float(w), 5) for h, w in buckets]
    same_side = [i for i, r in enumerate(ratios) if (r - aspect <= 0 if aspect >= 1 else r - aspect > 0)]
    best = min(same_side, key=lambda i: abs(ratios[i] - aspect))  # first on ties, as released
    return buckets[best]


def resize_center_crop(image, size: tuple[int, int]):
    """Resize a PIL image so its shorter side is ``min(size)`` (bilinear, antialiased), then centre-crop ``(h, w)``.

    Same sizes and offsets as torchvision ``Resize(min(size))`` + ``CenterCrop(size)``. An image smaller than the
    bucket is upscaled (the caller warns); the crop never needs padding for a bucket of :func:`closest_i2v_bucket`.
    """
    from PIL import Image  # noqa: PLC0415

    h, w = size
    src_w, src_h = image.size
    short = min(h, w)
    if src_w <= src_h:
        new_w, new_h = short, int(short * src_h / src_w)
    else:
        new_w, new_h = int(short * src_w / src_h), short
    if (new_w, new_h) != (src_w, src_h):
        image = image.resize((new_w, new_h), Image.BILINEAR)
    if new_h < h or new_w < w:  # only for buckets not chosen by closest_i2v_bucket: cover them
        return _cover(image, size)
    top, left = int(round((new_h - h) / 2.0)), int(round((new_w - w) / 2.0))
    return image.crop((left, top, left + w, top + h))


def _cover(image, size: tuple[int, int]):
    """Scale up until ``size`` is covered, then centre-crop (bucket sizes not from :func:`closest_i2v_bucket`)."""
    from PIL import Image  # noqa: PLC0415

    h, w = size
    scale = max(h / image.size[1], w / image.size[0])
    new_w, new_h = max(w, round(image.size[0] * scale)), max(h, round(image.size[1] * scale))
    image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - h) / 2.0)), int(round((new_w - w) / 2.0))
    return image.crop((left, top, left + w, top + h))


def upscale_factor(image, size: tuple[int, int]) -> float:
    """The least scale at which the image covers ``size`` ``(h, w)``; > 1 means it is upscaled."""
    src_w, src_h = image.size
    return max(size[0] / src_h, size[1] / src_w)


def image_to_tensor(image) -> torch.Tensor:
    """8-bit RGB PIL image -> ``[3, H, W]`` float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5), as released)."""
    import numpy as np  # noqa: PLC0415

    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (x - 0.5) / 0.5
