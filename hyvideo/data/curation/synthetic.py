"""Synthetic camera moves rendered from one real frame, with known ground truth (for tests and evaluation).

Each output frame ``k`` is ``cv2.warpPerspective`` of the source frame through a homography that maps the
output viewport into the source: translation for pans, ``K R K^-1`` for a rotating camera (tilt), scale
for zoom, rotation about the centre for roll ("around"), i.i.d. jitter for handheld. Used by
``tests/curation`` and ``scripts/eval_camera_motion.py``; ground-truth labels follow ``camera.py``.
"""

from __future__ import annotations

import numpy as np
import cv2

_DIRS = {"left": (1, 0), "right": (-1, 0), "up": (0, 1), "down": (0, -1)}  # content motion (x, y) sign


def _viewport(src_h: int, src_w: int, out_h: int, out_w: int, label: str, k: int, speed: float,
              rng: np.random.Generator, focal_px: float) -> np.ndarray:
    """Homography output-pixel -> source-pixel for frame ``k`` of move ``label``."""
    cx, cy = src_w / 2, src_h / 2
    centre = np.array([[1, 0, cx - out_w / 2], [0, 1, cy - out_h / 2], [0, 0, 1]], np.float64)
    about = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], np.float64)
    inv_about = np.linalg.inv(about)
    move = np.eye(3)
    kind, _, direction = label.partition("_")
    if kind == "pan":  # content moves by speed px/frame in output pixels
        dx, dy = _DIRS[direction]
        move = np.array([[1, 0, -dx * speed * k], [0, 1, -dy * speed * k], [0, 0, 1]], np.float64)
    elif kind == "tilt":  # the camera turns: K R^T K^-1, with the centre displacement of a `speed` pan
        dx, dy = _DIRS[direction]
        ang = speed * k / focal_px
        rot = cv2.Rodrigues(np.array([-dy * ang, dx * ang, 0.0]))[0]
        K = np.array([[focal_px, 0, cx], [0, focal_px, cy], [0, 0, 1]], np.float64)
        move = K @ rot.T @ np.linalg.inv(K)
    elif kind == "zoom":
        s = (1 + speed / 200) ** (k if direction == "in" else -k)  # speed/2 px at a 200 px radius per frame
        move = about @ np.diag([1 / s, 1 / s, 1]) @ inv_about
    elif kind == "around":
        ang = (speed / 200) * k * (1 if direction == "left" else -1)  # content turns clockwise for "left"
        c, s_ = np.cos(-ang), np.sin(-ang)
        move = about @ np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]]) @ inv_about
    elif label == "handheld":
        j = rng.normal(0, speed, 2)
        r = rng.normal(0, speed / 400)
        c, s_ = np.cos(r), np.sin(r)
        move = about @ np.array([[c, -s_, j[0]], [s_, c, j[1]], [0, 0, 1]]) @ inv_about
    elif label != "static":
        raise ValueError(f"cannot render camera move {label!r}")
    return move @ centre


def render_move(frame_bgr: np.ndarray, label: str, num_frames: int, speed: float,
                out_size: tuple[int, int] = (320, 180), seed: int = 0, noise_std: float = 0.0) -> list[np.ndarray]:
    """Render ``num_frames`` frames of a camera move over a real frame.

    Args:
        frame_bgr: ``[H, W, 3]`` uint8 source, at least ~1.6x the output size so the viewport stays inside.
        label: a class of ``camera.CAMERA_CLASSES``.
        num_frames: frames to render.
        speed: pan/tilt: content speed in output pixels/frame at the centre; zoom: scale step
            ``speed / 200`` per frame; around: ``speed / 200`` rad/frame; handheld: jitter std in pixels.
        out_size: ``(width, height)`` of the output.
        seed: RNG seed for handheld jitter and noise.
        noise_std: std of i.i.d. Gaussian pixel noise added to every frame (grey levels), like sensor noise.

    Returns:
        ``num_frames`` uint8 BGR frames of shape ``[out_h, out_w, 3]``.
    """
    out_w, out_h = out_size
    src_h, src_w = frame_bgr.shape[:2]
    rng = np.random.default_rng(seed)
    focal = float(out_w)  # ~53 degree horizontal field of view
    frames = []
    for k in range(num_frames):
        H = _viewport(src_h, src_w, out_h, out_w, label, k, speed, rng, focal)
        out = cv2.warpPerspective(frame_bgr, H, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT)
        if noise_std > 0:
            out = np.clip(out + rng.normal(0, noise_std, out.shape), 0, 255).astype(np.uint8)
        frames.append(out)
    return frames
