"""Segment the one object of a nano evaluation clip: background model, soft foreground, per-frame masks.

Evaluation clips (and the held-out prompt samples) have one object on a plain or linear-gradient background
and no camera move. The background of each frame is a per-channel plane ``a + b x + c y`` fitted to the
border pixels (robustly: pixels far from the first fit, e.g. an object touching the border, are dropped and
the plane refitted), so a drifting gradient is followed frame by frame. The foreground strength is the RGB
distance to that plane; the object is the largest 8-connected region above half the clip's peak strength,
found on a 4x bicubic upsampling so that contours of 64 px frames are smooth enough for shape features.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

UPSAMPLE = 4  # masks are found on 4x upsampled strength maps (sub-pixel contours)
MIN_PEAK = 20.0  # grey levels: weaker foregrounds mean "no object found"


@dataclass(frozen=True)
class Segmentation:
    """Per-frame object masks and measurements of a clip ``[T, H, W, 3]``.

    Attributes:
        masks: ``[T, H*u, W*u]`` bool masks on the upsampled grid (u = :data:`UPSAMPLE`).
        strength: ``[T, H, W]`` float32 RGB distance to the background (grey levels).
        background: ``[T, H, W, 3]`` float32 fitted background.
        centroids: ``[T, 2]`` (x, y) in frame-side fractions (x / W, y / H); NaN where no object.
        areas: ``[T]`` mask area as a fraction of the frame.
        peak: the clip's foreground peak strength (median over frames of each frame's maximum).
    """

    masks: np.ndarray
    strength: np.ndarray
    background: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray
    peak: float


def to_frames_uint8(frames) -> np.ndarray:
    """Accept ``[T, H, W, 3]`` uint8 RGB or ``[3, T, H, W]`` float in [0, 1] (array or tensor); return the former.

    Raises:
        ValueError: another shape, non-finite values, or floats outside [0, 1] (beyond a 1e-3 slack).
    """
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().float().numpy() if frames.dtype.is_floating_point else frames.cpu().numpy()
    a = np.asarray(frames)
    if a.ndim == 4 and a.dtype == np.uint8 and a.shape[-1] == 3:
        return a
    if a.ndim == 4 and np.issubdtype(a.dtype, np.floating) and a.shape[0] == 3:
        if not np.isfinite(a).all():
            raise ValueError("frames contain NaN or inf")
        if a.min() < -1e-3 or a.max() > 1 + 1e-3:
            raise ValueError(f"float frames must be in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
        return (np.clip(a, 0, 1).transpose(1, 2, 3, 0) * 255).round().astype(np.uint8)
    raise ValueError(f"frames must be [T, H, W, 3] uint8 or [3, T, H, W] float in [0, 1]; got {a.dtype} {a.shape}")


def fit_background(frame: np.ndarray, ring: int) -> np.ndarray:
    """Per-channel plane fitted to the ``ring``-pixel border of ``frame`` ``[H, W, 3]``; returns ``[H, W, 3]``."""
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    border = np.zeros((h, w), bool)
    border[:ring], border[-ring:], border[:, :ring], border[:, -ring:] = True, True, True, True
    design = np.stack([np.ones(h * w, np.float32), xx.ravel() / w, yy.ravel() / h], 1)
    pix = frame.reshape(-1, 3).astype(np.float32)
    keep = border.ravel()
    for _ in range(2):  # fit, drop outliers (an object on the border), refit
        coef, *_ = np.linalg.lstsq(design[keep], pix[keep], rcond=None)
        resid = np.linalg.norm(pix - design @ coef, axis=1)
        keep = border.ravel() & (resid <= 3 * np.median(resid[border.ravel()]) + 6)
    return (design @ coef).reshape(h, w, 3)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def segment(frames) -> Segmentation:
    """Object masks, centroids and areas of every frame (see the module docstring).

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB or ``[3, T, H, W]`` float in [0, 1].

    Raises:
        ValueError: bad input (see :func:`to_frames_uint8`).
    """
    x = to_frames_uint8(frames)
    t, h, w, _ = x.shape
    ring = max(2, min(h, w) // 20)
    bg = np.stack([fit_background(f, ring) for f in x])
    strength = np.linalg.norm(x.astype(np.float32) - bg, axis=-1)
    strength = np.stack([cv2.GaussianBlur(s, (0, 0), 0.6) for s in strength])
    peak = float(np.median(strength.reshape(t, -1).max(1)))
    masks, cents, areas = [], np.full((t, 2), np.nan), np.zeros(t)
    for i in range(t):
        up = cv2.resize(strength[i], (w * UPSAMPLE, h * UPSAMPLE), interpolation=cv2.INTER_CUBIC)
        m = _largest_component(up > 0.5 * peak) if peak >= MIN_PEAK else np.zeros(up.shape, bool)
        masks.append(m)
        if m.any():
            ys, xs = np.nonzero(m)
            cents[i] = ((xs.mean() + 0.5) / (w * UPSAMPLE), (ys.mean() + 0.5) / (h * UPSAMPLE))
            areas[i] = m.mean()
    return Segmentation(np.stack(masks), strength, bg, cents, areas, peak)
