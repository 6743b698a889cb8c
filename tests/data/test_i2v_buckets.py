"""The released I2V bucket rule (closest ratio on the same side, shorter side resize, centre crop) and image reading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hyvideo.data.i2v_buckets import (
    I2V_RESOLUTIONS,
    closest_i2v_bucket,
    i2v_buckets,
    image_to_tensor,
    resize_center_crop,
    upscale_factor,
)
from hyvideo.utils.image_io import read_image, to_rgb


@pytest.mark.parametrize("hw, resolution, bucket", [
    ((720, 1280), "720p", (704, 1248)), ((720, 1280), "540p", (544, 928)), ((720, 1280), "360p", (352, 608)),
    ((1280, 720), "720p", (1248, 704)), ((512, 512), "720p", (960, 960)), ((1080, 1440), "540p", (608, 800)),
    ((64, 64), "64p", (64, 64)), ((720, 1280), "64p", (48, 80)), ((128, 128), "128p", (128, 128)),
])
def test_known_buckets(hw, resolution, bucket):
    assert closest_i2v_bucket(*hw, resolution) == bucket


@pytest.mark.parametrize("resolution", list(I2V_RESOLUTIONS))
def test_bucket_is_on_the_images_side_and_nearest_there(resolution):
    buckets = i2v_buckets(resolution)
    base = I2V_RESOLUTIONS[resolution]
    stride = 32 if base >= 480 else 16
    assert all(h % stride == 0 and w % stride == 0 and h * w <= base * base and max(h, w) / min(h, w) <= 4
               for h, w in buckets)
    rng = np.random.default_rng(0)
    for h, w in rng.integers(100, 2000, size=(60, 2)):
        bh, bw = closest_i2v_bucket(int(h), int(w), resolution)
        aspect, ratio = h / w, bh / bw
        assert ratio <= aspect if aspect >= 1 else ratio > aspect  # the bucket is less elongated than the image
        same_side = [r for r in (a / b for a, b in buckets) if (r <= aspect if aspect >= 1 else r > aspect)]
        assert abs(ratio - aspect) <= min(abs(r - aspect) for r in same_side) + 1e-5
        # so the shorter-side resize always covers the bucket: the crop never pads
        image = Image.new("RGB", (int(w), int(h)))
        assert resize_center_crop(image, (bh, bw)).size == (bw, bh)


def test_resize_center_crop_matches_torchvision_semantics():
    # 1280x720 -> 360p bucket 608x352: shorter side 720 -> 352, longer int(352 * 1280 / 720) = 625, crop left
    # round((625 - 608) / 2) = round(8.5) = 8 (half to even)
    arr = np.tile(np.arange(1280, dtype=np.float64)[None, :, None] / 1280 * 255, (720, 1, 3)).astype(np.uint8)
    image = Image.fromarray(arr)
    out = resize_center_crop(image, (352, 608))
    ref = image.resize((625, 352), Image.BILINEAR).crop((8, 0, 616, 352))
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    x = image_to_tensor(out)
    assert x.shape == (3, 352, 608) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert upscale_factor(Image.new("RGB", (64, 36)), (352, 608)) == pytest.approx(9.78, abs=0.01)


def test_unknown_resolution_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: 64p, 128p, 256p, 360p, 540p, 720p"):
        closest_i2v_bucket(720, 1280, "1080p")


def test_image_modes_become_8bit_rgb(tmp_path):
    gray16 = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.mode == "RGB" and img.size == (64, 48)
    px = np.asarray(img)[..., 0].astype(int)
    assert px.min() == 0 and px.max() == 255 and np.all(np.diff(px.flatten()) >= 0)  # full range, monotone
    la = Image.fromarray(np.stack([np.full((8, 8), 10, np.uint8), np.full((8, 8), 128, np.uint8)], -1), "LA")
    half = np.asarray(to_rgb(la))  # 10 over white at alpha 128/255
    assert abs(int(half[0, 0, 0]) - round(10 * 128 / 255 + 255 * (1 - 128 / 255))) <= 1
    pal = Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("P")
    assert to_rgb(pal).mode == "RGB"
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    assert np.asarray(to_rgb(cmyk)).min() == 255
