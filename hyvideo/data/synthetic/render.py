"""Render ground-truth specs into frames: backgrounds, anti-aliased objects, camera moves, negatives.

Objects are filled polygons drawn with OpenCV's anti-aliased rasteriser at 1/16-pixel vertex precision,
*after* the camera homography is applied to their vertices, so edges stay crisp under any camera move.
Backgrounds are computed per frame in view coordinates (plain, drifting linear gradient) or warped from a
texture canvas that covers the whole camera path (``cv2.warpPerspective``).
"""

from __future__ import annotations

import cv2
import numpy as np

from hyvideo.data.synthetic.attributes import ClipSpec, NanoConfig, load_nano_config
from hyvideo.data.synthetic.geometry import apply_h, camera_matrix, object_polygon

CANVAS_MARGIN = 0.45  # texture canvas covers scene [-m, 1 + m]: every camera path of the config stays inside
BLUR_SIGMA = 0.05  # blur negatives: Gaussian sigma, fraction of the frame side (6.4 px at 128 px)
SUBPIXEL_BITS = 4


def _gradient(spec: ClipSpec, h_inv: np.ndarray, k: int, grid: np.ndarray) -> np.ndarray:
    """Linear gradient between the two colours along a direction that turns ``bg_drift_deg`` per frame."""
    scene = apply_h(h_inv, grid)
    a = np.deg2rad(spec.bg_angle_deg + spec.bg_drift_deg * k)
    t = np.clip(0.5 + (scene[:, 0] - 0.5) * np.cos(a) + (scene[:, 1] - 0.5) * np.sin(a), 0, 1)[:, None]
    c0, c1 = (np.asarray(c, np.float32) for c in spec.bg_colours)
    s = spec.size_px
    return (c0 + (c1 - c0) * t).reshape(s, s, 3).round().astype(np.uint8)


def _texture_canvas(spec: ClipSpec, cfg: NanoConfig) -> np.ndarray:
    from hyvideo.data.synthetic.textures import texture_crop  # noqa: PLC0415

    px = round(spec.size_px * (1 + 2 * CANVAS_MARGIN))
    return texture_crop(spec.texture, spec.texture_frame, spec.texture_box, px, cfg.texture_brightness)


def _background(spec: ClipSpec, h: np.ndarray, k: int, canvas, grid) -> np.ndarray:
    s = spec.size_px
    if spec.background == "plain":
        return np.broadcast_to(np.asarray(spec.bg_colours[0], np.uint8), (s, s, 3)).copy()
    if spec.background == "gradient":
        return _gradient(spec, np.linalg.inv(h), k, grid)
    # canvas pixel -> scene -> view pixel
    to_scene = np.array([[1 / s, 0, -CANVAS_MARGIN], [0, 1 / s, -CANVAS_MARGIN], [0, 0, 1]], np.float64)
    a = np.diag([s, s, 1.0]) @ h @ to_scene
    return cv2.warpPerspective(canvas, a, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _draw_objects(img: np.ndarray, spec: ClipSpec, h: np.ndarray, k: int, cfg: NanoConfig) -> None:
    s, scale = spec.size_px, 1 << SUBPIXEL_BITS
    for obj in spec.objects:
        x, y, r, a = obj.state(k)
        poly = apply_h(h, object_polygon(obj.shape, x, y, r, a)) * s - 0.5  # pixel centres at integers
        pts = np.round(poly * scale).astype(np.int32)
        cv2.fillPoly(img, [pts], tuple(int(c) for c in cfg.colours[obj.colour]), cv2.LINE_AA, SUBPIXEL_BITS)


def burn_text(frame: np.ndarray, text: str) -> np.ndarray:
    """Burn ``text`` into a frame: white with a black outline, 80 % of the width, near the bottom (in place)."""
    s = frame.shape[1]
    font, thick = cv2.FONT_HERSHEY_DUPLEX, max(1, round(s / 64))
    width = cv2.getTextSize(text, font, 1.0, thick)[0][0]
    scale = 0.8 * s / width
    (w, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = ((s - w) // 2, round(frame.shape[0] * 0.9))
    cv2.putText(frame, text, org, font, scale, (0, 0, 0), thick + max(2, s // 64), cv2.LINE_AA)
    cv2.putText(frame, text, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


def render_shot(spec: ClipSpec, cfg: NanoConfig | None = None, frame_indices: list[int] | None = None) -> np.ndarray:
    """Frames of one shot, negatives applied (blur, frozen frame, burned-in text).

    Args:
        spec: the shot's ground truth.
        cfg: data set config (colours, texture brightness); default :func:`load_nano_config`.
        frame_indices: render only these frames (default all ``spec.num_frames``).

    Returns:
        ``[T, H, W, 3]`` uint8 RGB with ``T = spec.num_frames`` (or ``len(frame_indices)``) and
        ``H = W = spec.size_px``.

    Raises:
        ValueError: unknown background, shape, camera or negative.
    """
    cfg = cfg or load_nano_config()
    if spec.background not in ("plain", "gradient", "texture"):
        raise ValueError(f"unknown background {spec.background!r}")
    if spec.negative not in ("", "blur", "static", "text"):
        raise ValueError(f"unknown negative {spec.negative!r}")
    s = spec.size_px
    canvas = _texture_canvas(spec, cfg) if spec.background == "texture" else None
    c = (np.arange(s) + 0.5) / s
    grid = np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)
    wanted = list(range(spec.num_frames)) if frame_indices is None else list(frame_indices)
    frames = []
    for k in ([0] if spec.negative == "static" else wanted):
        h = camera_matrix(spec.camera, spec.camera_rate, k)
        img = _background(spec, h, k, canvas, grid)
        _draw_objects(img, spec, h, k, cfg)
        if spec.negative == "blur":
            img = cv2.GaussianBlur(img, (0, 0), BLUR_SIGMA * s)
        elif spec.negative == "text":
            burn_text(img, spec.text)
        frames.append(img)
    if spec.negative == "static":
        frames = frames * len(wanted)
    return np.stack(frames)


def render_video(shots: list[ClipSpec], cfg: NanoConfig | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Render shots back to back (hard cuts).

    Returns:
        ``([T, H, W, 3]`` uint8 RGB, ``[(start_frame, end_frame), ...]`` per shot, end exclusive).

    Raises:
        ValueError: no shots or shots of different sizes.
    """
    if not shots or len({s.size_px for s in shots}) != 1:
        raise ValueError("render_video needs at least one shot, all of one size")
    clips = [render_shot(s, cfg) for s in shots]
    ends = np.cumsum([len(c) for c in clips]).tolist()
    return np.concatenate(clips), [(a, b) for a, b in zip([0] + ends[:-1], ends)]


def downscale(frames: np.ndarray, size_px: int) -> np.ndarray:
    """Area-downscale ``[T, H, W, 3]`` uint8 frames to ``size_px`` squares (what the trainer's resize does)."""
    return np.stack([cv2.resize(f, (size_px, size_px), interpolation=cv2.INTER_AREA) for f in frames])


def render_eval_clip(triple: tuple[str, str, str], seed: int, *, size_px: int | None = None,
                     num_frames: int | None = None, background: str = "plain",
                     cfg: NanoConfig | None = None) -> np.ndarray:
    """A ground-truth evaluation clip: one object, no camera move, plain or gradient background.

    Rendered at the source resolution ``cfg.size_px`` and area-downscaled, like a training clip.

    Args:
        triple: (colour, shape, motion); held-out triples are allowed (nothing is written to the data set).
        seed: placement, rates and background colours (:func:`~hyvideo.data.synthetic.sampling.eval_spec`).
        size_px: output side, pixels (default ``cfg.train_size_px``, 64).
        num_frames: default ``cfg.train_frames`` (17).
        background: "plain" or "gradient".

    Returns:
        ``[T, size_px, size_px, 3]`` uint8 RGB.
    """
    from hyvideo.data.synthetic.sampling import eval_spec  # noqa: PLC0415

    cfg = cfg or load_nano_config()
    spec = eval_spec(triple, seed, background=background, num_frames=num_frames, cfg=cfg)
    return downscale(render_shot(spec, cfg), size_px or cfg.train_size_px)
