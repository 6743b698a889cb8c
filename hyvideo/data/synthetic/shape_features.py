"""Rotation- and scale-invariant shape features of a binary object mask, and the radial signature.

The radial signature ``r(theta) / mean r`` of the outline, measured from the centroid in ``NUM_BINS`` angle
bins, carries the shape's symmetry: its Fourier magnitudes are rotation invariant (a triangle peaks at
harmonic 3, a square and a cross at 4, a star at 5, a circle nowhere), and its circular shift between
frames measures rotation. Solidity (area / convex-hull area) separates the concave star and cross from
the convex square, triangle and circle.
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_BINS = 72  # 5-degree angle bins


def radial_signature(mask: np.ndarray) -> np.ndarray | None:
    """``[NUM_BINS]`` outline radius per angle bin from the centroid, divided by its mean; None if empty.

    Bins that no outline point falls into are filled by circular linear interpolation.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float64)
    if len(c) < 8:
        return None
    ys, xs = np.nonzero(mask)
    d = c - np.array([xs.mean(), ys.mean()])
    ang = np.mod(np.arctan2(d[:, 1], d[:, 0]), 2 * np.pi)
    rad = np.hypot(d[:, 0], d[:, 1])
    bins = (ang / (2 * np.pi) * NUM_BINS).astype(int) % NUM_BINS
    sig = np.full(NUM_BINS, np.nan)
    np.fmax.at(sig, bins, rad)
    ok = ~np.isnan(sig)
    if ok.sum() < NUM_BINS // 4:
        return None
    idx = np.arange(NUM_BINS)
    sig = np.interp(idx, idx[ok], sig[ok], period=NUM_BINS)
    return sig / sig.mean()


def shape_features(mask: np.ndarray) -> np.ndarray | None:
    """``[8]`` features of a mask: solidity, fill of the enclosing circle, harmonics 2-7 of the signature.

    Returns None for an empty or degenerate mask.
    """
    sig = radial_signature(mask)
    if sig is None:
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    area = float(mask.sum())
    hull = float(cv2.contourArea(cv2.convexHull(c)))
    _, radius = cv2.minEnclosingCircle(c)
    harm = np.abs(np.fft.rfft(sig))[2:8] / NUM_BINS
    return np.concatenate([[area / max(hull, 1.0), area / max(np.pi * radius ** 2, 1.0)], harm])


def rotation_shift(sig0: np.ndarray, sig1: np.ndarray) -> tuple[float, float]:
    """Best circular alignment of two signatures: ``(shift in degrees, residual RMS after alignment)``.

    The shift is in (-180, 180]; the residual says how well the outlines match once aligned.
    """
    rolls = sig1[(np.arange(NUM_BINS)[:, None] + np.arange(NUM_BINS)[None, :]) % NUM_BINS]  # row k = roll by -k
    errs = np.sqrt(np.mean((rolls - sig0) ** 2, axis=1))
    k = int(np.argmin(errs))
    shift = k * 360.0 / NUM_BINS
    return (shift - 360.0 if shift > 180 else shift), float(errs[k])
