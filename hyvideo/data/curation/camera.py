"""Camera-movement classifier: global motion as a homography per frame pair, then 14 classes + confidence.

HunyuanVideo (arXiv 2412.03603, "Structured captioning" / camera movement types) trains a classifier for
14 camera moves and writes only high-confidence predictions into the caption. We estimate the global
motion geometrically instead of with a learned model: Shi-Tomasi corners tracked with pyramidal
Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``) and a RANSAC homography (``cv2.findHomography``) per pair.

Conventions (image x to the right, y down; the homography maps frame ``i`` to frame ``j`` in coordinates
centred on the image and divided by the long side, so its terms do not depend on resolution):

- ``pan_*``: the camera translates (truck/pedestal); content shifts the opposite way, no perspective change.
  ``pan_left`` = content moves right.
- ``tilt_*``: the camera rotates about its centre (yaw/pitch); content shifts *and* the homography has a
  perspective term of the sign a rotation gives (``h20 ~ -tx``). ``tilt_left`` = camera turns left.
- ``zoom_in`` / ``zoom_out``: scale > 1 / < 1.
- ``around_left`` / ``around_right``: rotation of the view about the optical axis (roll); ``around_left`` =
  content turns clockwise on screen. A true orbit around a subject adds parallax a single homography
  cannot represent; this class measures only its rotational component (a documented limitation).
- ``static``: no global motion; ``handheld``: small motion whose direction keeps changing (jitter larger
  than the mean drift).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hyvideo.data.curation.video import resize_short_side

CAMERA_CLASSES = (
    "zoom_in", "zoom_out", "pan_up", "pan_down", "pan_left", "pan_right", "tilt_up", "tilt_down",
    "tilt_left", "tilt_right", "around_left", "around_right", "static", "handheld",
)
# Per-frame global motion below this (long-side fraction at the image edge, i.e. 1/640 of the width) is static.
STATIC_THRESH = 1.0 / 640
# |perspective . translation| / |translation|^2 above this = a rotating camera (tilt), below = translating (pan).
TILT_RATIO = 0.5


@dataclass(frozen=True)
class CameraMotion:
    """Classifier output.

    Attributes:
        label: one of :data:`CAMERA_CLASSES`.
        confidence: 0-1; how much the winning motion dominates the others (see :func:`classify_params`).
        params: mean per-frame motion ``[tx, ty, zoom, roll, px, py]`` (long-side fractions, scale - 1,
            radians, perspective terms) and ``jitter`` (RMS deviation of per-pair motion), all per frame.
    """

    label: str
    confidence: float
    params: dict


def _normalizer(h: int, w: int) -> np.ndarray:
    """Pixel -> centred coordinates divided by the long side."""
    s = 1.0 / max(h, w)
    return np.array([[s, 0, -w / 2 * s], [0, s, -h / 2 * s], [0, 0, 1]], np.float64)


def pair_homography(frame0_bgr: np.ndarray, frame1_bgr: np.ndarray, short_side_px: int = 180,
                    max_corners: int = 200) -> np.ndarray | None:
    """Global homography from ``frame0`` to ``frame1`` in normalised centred coordinates.

    Args:
        frame0_bgr: ``[H, W, 3]`` uint8 BGR.
        frame1_bgr: same size.
        short_side_px: frames are resized to this short side before tracking.
        max_corners: Shi-Tomasi corners tracked.

    Returns:
        ``[3, 3]`` float64 with ``H[2, 2] == 1``, or None when fewer than 12 corners could be tracked
        (flat frames).
    """
    g0 = cv2.cvtColor(resize_short_side(frame0_bgr, short_side_px), cv2.COLOR_BGR2GRAY)
    g1 = cv2.cvtColor(resize_short_side(frame1_bgr, short_side_px), cv2.COLOR_BGR2GRAY)
    p0 = cv2.goodFeaturesToTrack(g0, max_corners, 0.01, 5)
    if p0 is None or len(p0) < 12:
        return None
    p1, st, _ = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, winSize=(21, 21), maxLevel=3)
    ok = st.ravel() == 1
    if ok.sum() < 12:
        return None
    H, _ = cv2.findHomography(p0[ok], p1[ok], cv2.RANSAC, 1.0)
    if H is None:
        return None
    n = _normalizer(*g0.shape)
    H = n @ H @ np.linalg.inv(n)
    return H / H[2, 2]


def homography_params(H: np.ndarray) -> np.ndarray:
    """``[tx, ty, zoom, roll, px, py]`` of a normalised homography (see :class:`CameraMotion`)."""
    a = H[:2, :2]
    zoom = float(np.sqrt(abs(np.linalg.det(a)))) - 1.0
    roll = float(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))
    return np.array([H[0, 2], H[1, 2], zoom, roll, H[2, 0], H[2, 1]], np.float64)


def classify_params(per_frame: np.ndarray) -> CameraMotion:
    """Classify per-pair motion parameters (each already divided by its frame gap).

    Magnitudes are compared as displacement at the image edge per frame (long-side fractions): translation
    ``|t|``, zoom ``|zoom| / 2``, roll ``|roll| / 2``. The confidence of a moving class is the share of the
    winner in the sum of all magnitudes and the jitter; of ``static`` it is how far below the static
    threshold the motion is; of ``handheld`` the share of the jitter.

    Args:
        per_frame: ``[P, 6]`` rows from :func:`homography_params` divided by the frame gap.

    Returns:
        The :class:`CameraMotion`.

    Raises:
        ValueError: no rows.
    """
    if len(per_frame) == 0:
        raise ValueError("classify_params needs at least one frame pair")
    m = per_frame.mean(0)
    edge = np.stack([per_frame[:, 0], per_frame[:, 1], per_frame[:, 2] / 2, per_frame[:, 3] / 2], 1)
    jitter = float(np.sqrt(((edge - edge.mean(0)) ** 2).sum(1).mean()))
    trans, zoom, roll = float(np.hypot(m[0], m[1])), abs(m[2]) / 2, abs(m[3]) / 2
    params = dict(zip(("tx", "ty", "zoom", "roll", "px", "py"), m.round(6).tolist()), jitter=round(jitter, 6))
    top = max(trans, zoom, roll)
    if top < STATIC_THRESH and jitter < STATIC_THRESH:
        return CameraMotion("static", float(1.0 - 0.5 * max(top, jitter) / STATIC_THRESH), params)
    total = trans + zoom + roll + jitter
    if jitter > top:
        return CameraMotion("handheld", jitter / total, params)
    conf = top / total
    if top == zoom:
        return CameraMotion("zoom_in" if m[2] > 0 else "zoom_out", conf, params)
    if top == roll:  # positive roll = content turns clockwise on screen (y down)
        return CameraMotion("around_left" if m[3] > 0 else "around_right", conf, params)
    rotating = -(m[4] * m[0] + m[5] * m[1]) / max(trans**2, 1e-12) > TILT_RATIO
    kind = "tilt" if rotating else "pan"
    if abs(m[0]) >= abs(m[1]):
        direction = "left" if m[0] > 0 else "right"  # content moves right = camera moves/turns left
    else:
        direction = "up" if m[1] > 0 else "down"  # content moves down = camera moves/turns up
    return CameraMotion(f"{kind}_{direction}", conf, params)


def classify_camera(frames_bgr: list[np.ndarray], frame_gap: int = 1, short_side_px: int = 180) -> CameraMotion:
    """Camera movement of a clip from frames sampled ``frame_gap`` apart, in order.

    Args:
        frames_bgr: ``[H, W, 3]`` uint8 BGR frames at source indices ``i0, i0 + gap, i0 + 2 * gap, ...``.
        frame_gap: source frames between consecutive list entries (motion is reported per source frame).
        short_side_px: tracking resolution (short side, pixels).

    Returns:
        The :class:`CameraMotion`; ``static`` with confidence 0 when no pair could be tracked.

    Raises:
        ValueError: fewer than two frames or ``frame_gap < 1``.
    """
    if len(frames_bgr) < 2 or frame_gap < 1:
        raise ValueError(f"need >= 2 frames and frame_gap >= 1, got {len(frames_bgr)} frames, gap {frame_gap}")
    rows = []
    for f0, f1 in zip(frames_bgr, frames_bgr[1:]):
        H = pair_homography(f0, f1, short_side_px)
        if H is not None:
            rows.append(homography_params(H) / frame_gap)
    if not rows:
        return CameraMotion("static", 0.0, {"untrackable": True})
    return classify_params(np.asarray(rows))
