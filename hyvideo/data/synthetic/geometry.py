"""Shape outlines and camera moves as plain geometry (scene and view coordinates in frame-side fractions).

Camera conventions are those of the curation classifier (``hyvideo.data.curation.camera``): ``pan_left``
moves the camera left, so content moves right; ``tilt_up`` turns the camera up (a rotation, so the
homography has a perspective term), content moves down; ``zoom_in`` magnifies about the frame centre.
The idea of a per-frame homography follows ``hyvideo.data.curation.synthetic``.
"""

from __future__ import annotations

import math

import numpy as np

# Shapes are scaled so that, at one circumradius, their areas are within a factor of ~1.6 of each other.
STAR_INNER = 0.5  # inner / outer radius of the five-pointed star
CROSS_HALF_WIDTH = 0.34  # half the arm width of the plus-shaped cross, in circumradii
CIRCLE_SCALE = 0.85  # the circle's radius, in circumradii (a full circle looks bigger than a polygon)


def shape_outline(shape: str) -> np.ndarray:
    """Unit outline of a shape, ``[N, 2]`` float64 (x, y down), centred on its centroid, circumradius 1.

    The square, triangle, star and cross point up at angle 0; angles turn them clockwise on screen.

    Raises:
        ValueError: unknown shape.
    """
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return CIRCLE_SCALE * np.stack([np.cos(t), np.sin(t)], 1)
    if shape in ("square", "triangle"):
        n = 4 if shape == "square" else 3
        t = -np.pi / 2 + np.pi / n * (shape == "square") + 2 * np.pi * np.arange(n) / n
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        return pts * (1.12 if shape == "triangle" else 0.95)
    if shape == "star":
        t = -np.pi / 2 + np.pi * np.arange(10) / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER) * 1.08
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if shape == "cross":
        w = CROSS_HALF_WIDTH
        h = math.sqrt(1 - w * w)  # arm ends lie on the unit circle
        q = [(w, -h), (w, -w), (h, -w), (h, w), (w, w), (w, h), (-w, h), (-w, w), (-h, w), (-h, -w), (-w, -w), (-w, -h)]
        return np.array(q, np.float64)
    raise ValueError(f"unknown shape {shape!r}")


def object_polygon(shape: str, x: float, y: float, radius: float, angle_deg: float) -> np.ndarray:
    """Outline ``[N, 2]`` in scene coordinates of a shape at centre ``(x, y)``, circumradius and angle."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return shape_outline(shape) @ rot.T * radius + np.array([x, y])


def camera_matrix(camera: str, rate: float, k: float) -> np.ndarray:
    """``[3, 3]`` homography from scene to view coordinates (frame-side fractions) at frame ``k``.

    Args:
        camera: none, pan_left/right, tilt_up/down, zoom_in/out.
        rate: pan/tilt: content speed at the centre, fraction of the side per frame; zoom: scale step per frame.
        k: frame index (0 = identity).

    Raises:
        ValueError: unknown camera move.
    """
    about = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float64)
    inv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], np.float64)
    if camera == "none":
        return np.eye(3)
    kind, _, direction = camera.partition("_")
    if kind == "pan":
        dx = rate * k * (1 if direction == "left" else -1)
        return np.array([[1, 0, dx], [0, 1, 0], [0, 0, 1]], np.float64)
    if kind == "tilt":  # focal length = one frame side; the centre moves by tan(angle) = rate * k
        ang = math.atan(rate * k) * (1 if direction == "up" else -1)
        c, s = math.cos(ang), math.sin(ang)
        rot = np.array([[1, 0, 0], [0, c, s], [0, -s, c]], np.float64)  # content moves down for ang > 0
        return about @ rot @ inv
    if kind == "zoom":
        s = (1 + rate) ** (k if direction == "in" else -k)
        return about @ np.diag([s, s, 1.0]) @ inv
    raise ValueError(f"unknown camera move {camera!r}")


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a ``[3, 3]`` homography to points ``[N, 2]``."""
    p = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ h.T
    return p[:, :2] / p[:, 2:3]


def view_circle(obj, camera: str, camera_rate: float, k: float) -> tuple[float, float, float]:
    """Centre and radius ``(x, y, r)`` in view coordinates of an object's bounding circle at frame ``k``."""
    x, y, r, _ = obj.state(k)
    h = camera_matrix(camera, camera_rate, k)
    ring = np.array([[x, y], [x + r, y], [x - r, y], [x, y + r], [x, y - r]])
    v = apply_h(h, ring)
    return float(v[0, 0]), float(v[0, 1]), float(np.max(np.linalg.norm(v[1:] - v[0], axis=1)))
