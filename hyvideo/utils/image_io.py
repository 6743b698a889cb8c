"""Reading a conditioning image (PIL): any mode PIL opens becomes 8-bit RGB, with a clear error otherwise."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: str | os.PathLike, what: str = "image"):
    """Open an image file as 8-bit RGB ``PIL.Image`` (EXIF orientation applied).

    Conversions (never a rejection): grayscale and palette images -> RGB; 16-bit images scaled to 8 bits (PIL's
    own ``convert`` would clip them); images with transparency composited over white (a bare ``convert("RGB")``
    shows whatever colour the transparent pixels hold); CMYK / YCbCr -> RGB. Each conversion is logged.

    Args:
        path: image file (anything PIL reads: PNG, JPEG, WebP, BMP, TIFF, ...).
        what: how error messages name the file (e.g. ``"--i2v-image-path"``).

    Returns:
        ``PIL.Image`` in mode ``"RGB"``, fully loaded (the file is closed).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a folder, an unreadable file, or a file PIL does not recognise as an image (message names it).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: PLC0415

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} not found")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, not an image file")
    try:
        with Image.open(path) as im:
            im.load()
            image = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ValueError(f"{what} {path} is not an image PIL can read (PNG, JPEG, WebP, BMP, TIFF, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:  # permission denied, truncated or corrupt data
        raise ValueError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None
    return to_rgb(image, name=str(path))


def to_rgb(image, name: str = "image"):
    """Any PIL image -> 8-bit RGB (see :func:`read_image` for the rules)."""
    from PIL import Image  # noqa: PLC0415

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode != "F" else max(float(arr.max()), 1.0)
        if mode == "I" and arr.max() <= 255:  # an 8-bit image PIL widened to 32-bit ints
            top = 255.0
        logger.info("%s: %s image scaled to 8 bits (divided by %g / 255)", name, mode, top)
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        logger.info("%s: %s image composited over white (alpha dropped)", name, mode)
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    logger.info("%s: %s image converted to RGB", name, mode)
    return image.convert("RGB")
