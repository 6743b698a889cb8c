"""Clarity: variance of the OpenCV Laplacian in the sharpest region of sampled frames.

The variance of the Laplacian is the classic focus measure (Pech-Pacheco et al., "Diatom autofocusing
in brightfield microscopy: a comparative study", ICPR 2000); HunyuanVideo uses it to pick clear frames.
Shallow depth of field leaves most of a good frame soft, so the score is that of the sharpest tile of a
``grid x grid`` partition, not of the whole frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from hyvideo.data.curation.video import resize_short_side


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of a grey image (grey levels squared; 0 = flat)."""
    return float(cv2.Laplacian(gray, cv2.CV_64F, ksize=1).var())


def frame_clarity(frame_bgr: np.ndarray, grid: int, max_short_side_px: int) -> float:
    """Laplacian variance of the sharpest of ``grid x grid`` tiles.

    Args:
        frame_bgr: ``[H, W, 3]`` uint8 BGR frame.
        grid: tiles per side.
        max_short_side_px: frames larger than this (short side, pixels) are first downscaled to it with an
            area filter, so that the score measures detail at a common scale, not the pixel count.

    Returns:
        The score in grey levels squared.
    """
    img = resize_short_side(frame_bgr, max_short_side_px, allow_upscale=False)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    ys = np.linspace(0, h, grid + 1).astype(int)
    xs = np.linspace(0, w, grid + 1).astype(int)
    return max(laplacian_variance(gray[ys[i]:ys[i + 1], xs[j]:xs[j + 1]])
               for i in range(grid) for j in range(grid))


def clip_clarity(frames_bgr: list[np.ndarray], grid: int, max_short_side_px: int) -> float:
    """Median :func:`frame_clarity` over the sampled frames of a clip (grey levels squared)."""
    if not frames_bgr:
        raise ValueError("clip_clarity needs at least one frame")
    return float(np.median([frame_clarity(f, grid, max_short_side_px) for f in frames_bgr]))
