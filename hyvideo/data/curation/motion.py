"""Motion: dense optical flow (OpenCV DIS) at a reference resolution, in pixels/frame.

DIS optical flow: Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016
(``cv2.DISOpticalFlow``). Frames are resized so their short side is ``flow_short_side_px`` before the flow,
so a score of 1.0 means "content moves one reference-resolution pixel per frame" whatever the source size.
The same flow fields feed the camera-movement classifier (``camera.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

from hyvideo.data.curation.video import resize_short_side


def _gray(frame_bgr: np.ndarray, short_side_px: int) -> np.ndarray:
    return cv2.cvtColor(resize_short_side(frame_bgr, short_side_px), cv2.COLOR_BGR2GRAY)


def dense_flow(frame0_bgr: np.ndarray, frame1_bgr: np.ndarray, short_side_px: int) -> np.ndarray:
    """DIS optical flow from ``frame0`` to ``frame1`` at the reference resolution.

    Args:
        frame0_bgr: ``[H, W, 3]`` uint8 BGR.
        frame1_bgr: same size.
        short_side_px: reference short side, pixels.

    Returns:
        ``[h, w, 2]`` float32 flow (dx, dy) in reference pixels, with ``min(h, w) == short_side_px``.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(frame0_bgr, short_side_px), _gray(frame1_bgr, short_side_px), None)


def clip_flows(frames: dict[int, np.ndarray], pairs: list[tuple[int, int]], short_side_px: int) -> list[np.ndarray]:
    """Flow for each ``(i, j)`` pair, divided by ``j - i`` so it is in reference pixels per frame."""
    return [dense_flow(frames[i], frames[j], short_side_px) / float(j - i)
            for i, j in pairs if i in frames and j in frames]


def motion_score(flows: list[np.ndarray]) -> float:
    """Mean optical-flow magnitude over all pixels and pairs, pixels/frame at the reference resolution.

    Raises:
        ValueError: no flow field was given.
    """
    if not flows:
        raise ValueError("motion_score needs at least one flow field")
    return float(np.mean([np.linalg.norm(f, axis=-1).mean() for f in flows]))


def flow_pairs(start: int, end: int, num_pairs: int, stride: int) -> list[tuple[int, int]]:
    """``num_pairs`` pairs ``(i, i + stride)`` spread evenly inside ``[start, end)``."""
    last = end - 1 - stride
    if last < start:
        return []
    firsts = sorted(set(np.linspace(start, last, min(num_pairs, last - start + 1)).round().astype(int).tolist()))
    return [(i, i + stride) for i in firsts]
