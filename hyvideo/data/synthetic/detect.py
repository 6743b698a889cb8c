"""Attribute detector for nano clips: colour, shape and motion of the one object of a generated or rendered clip.

Valid for the evaluation conditions only: one object, no camera move, plain or linear-gradient background
(the conditions of :func:`hyvideo.data.synthetic.render.render_eval_clip` and of the held-out prompts);
``scripts/validate_nano_detector.py`` measures it on exactly those. Steps:

1. :func:`hyvideo.data.synthetic.segment.segment`: background planes from the frame borders, foreground
   strength, the largest region per frame, its centroid and area.
2. Colour: median RGB of the object's core (strength >= 80 % of the peak) over all frames, then HSV:
   saturation < :data:`WHITE_MAX_SAT` is white, otherwise the palette colour of nearest hue.
3. Shape: rotation/scale-invariant outline features (:mod:`hyvideo.data.synthetic.shape_features`) of the
   larger half of the frames, classified by a logistic regression fitted once per process on frames rendered
   from a fixed seed (:func:`shape_classifier`; deterministic, ~2 s) with random blur, then frame probabilities
   averaged.
4. Motion, from the tracks: total centroid displacement (least-squares line) >= :data:`MIN_TRAVEL` of the frame
   side is left/right/up/down by its dominant axis; else a total log-area change >= :data:`MIN_LOG_AREA` is
   grow/shrink; else an outline that turns (unaligned signature difference to the first frame exceeds the
   aligned one by :data:`MIN_TURN`) is rotate; else still.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from hyvideo.data.synthetic.attributes import load_nano_config
from hyvideo.data.synthetic.segment import segment, to_frames_uint8
from hyvideo.data.synthetic.shape_features import radial_signature, shape_features

WHITE_MAX_SAT = 0.25  # HSV saturation below which the object is white (backgrounds are dark)
MIN_TRAVEL = 0.15  # frame-side fraction over the clip (a move travels >= 1/3 in 17 frames)
MIN_LOG_AREA = 0.35  # |log(area_end / area_start)| (grow/shrink change the area >= 2.2x in 17 frames)
MIN_TURN = 0.03  # signature RMS (mean radius = 1) gained without re-alignment
SHAPE_TRAIN_SEED = 20240611
SHAPE_TRAIN_PER_SHAPE = 120


@dataclass(frozen=True)
class Detection:
    """What the detector saw in one clip.

    Attributes:
        colour, shape, motion: predicted words (config vocabulary); "" when no object was found.
        confidence: ``{"colour", "shape", "motion"}`` -> 0-1 (margin-based; not calibrated probabilities).
        found: an object was segmented in at least half of the frames.
        stats: the measurements behind the decisions (travel, log-area change, turn, hue, saturation, ...).
    """

    colour: str
    shape: str
    motion: str
    confidence: dict
    found: bool
    stats: dict = field(default_factory=dict)

    def as_triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)


def degrade(frames: np.ndarray, factor: int) -> np.ndarray:
    """Spatial down-up blur ``[T, H, W, 3]`` uint8: area downscale by ``factor``, bicubic upscale (VAE mimic)."""
    if factor <= 1:
        return frames
    t, h, w, _ = frames.shape
    small = [cv2.resize(f, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_CUBIC) for s in small])


def classify_colour(rgb: np.ndarray, palette: dict | None = None) -> tuple[str, float, dict]:
    """Palette word of an RGB colour (0-255): ``(word, confidence, {"hue", "sat", "val"})``.

    ``palette`` (word -> RGB 0-255) defaults to the data set config's colours; a larger palette scores a model
    taught a new colour word (the LoRA fine-tune of ``scripts/lora_nano.py``).
    """
    palette = load_nano_config().colours if palette is None else palette
    h, s, v = colorsys.rgb_to_hsv(*(float(c) / 255 for c in rgb))
    stats = {"hue_deg": round(h * 360, 1), "sat": round(s, 3), "val": round(v, 3)}
    if s < WHITE_MAX_SAT:
        return "white", float(min(1.0, (WHITE_MAX_SAT - s) / WHITE_MAX_SAT + 0.5)), stats
    dists = {}
    for name, ref in palette.items():
        rh, rs, _ = colorsys.rgb_to_hsv(*(c / 255 for c in ref))
        if rs >= WHITE_MAX_SAT:
            d = abs(h - rh) % 1.0
            dists[name] = min(d, 1 - d) * 360
    order = sorted(dists, key=dists.get)
    best, second = dists[order[0]], dists[order[1]]
    return order[0], float(1 - best / max(best + second, 1e-6)), stats


def _training_frame(shape: str, rng: np.random.Generator, cfg) -> np.ndarray | None:
    from hyvideo.data.synthetic.render import downscale, render_shot  # noqa: PLC0415
    from hyvideo.data.synthetic.sampling import eval_spec  # noqa: PLC0415

    triples = [t for t in cfg.valid_triples() if t[1] == shape]
    triple = triples[rng.integers(len(triples))]
    spec = eval_spec(triple, int(rng.integers(1 << 30)), background=str(rng.choice(["plain", "gradient"])), cfg=cfg)
    frames = render_shot(spec, cfg, frame_indices=[0, spec.num_frames - 1])
    x = degrade(downscale(frames, cfg.train_size_px), int(rng.choice([1, 1, 2, 3, 4])))
    seg = segment(x)
    return shape_features(seg.masks[int(rng.integers(2))])


@functools.lru_cache(maxsize=1)
def shape_classifier():
    """Logistic regression on :func:`shape_features`, fitted on frames rendered from :data:`SHAPE_TRAIN_SEED`.

    Training frames: eval-condition clips of every shape (random colour, motion, background, first or last
    frame), area-downscaled to ``train_size_px`` and down-up blurred by 1-4x. Deterministic for a given
    config and library versions; about 2 s once per process.

    Returns:
        A fitted ``sklearn`` pipeline (standardise + logistic regression) over ``cfg.shapes``.
    """
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    cfg = load_nano_config()
    rng = np.random.default_rng(SHAPE_TRAIN_SEED)
    xs, ys = [], []
    for shape in cfg.shapes:
        for _ in range(SHAPE_TRAIN_PER_SHAPE):
            f = _training_frame(shape, rng, cfg)
            if f is not None:
                xs.append(f)
                ys.append(shape)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=5000))
    return model.fit(np.array(xs), np.array(ys))


def _shape(seg) -> tuple[str, float]:
    order = np.argsort(-seg.areas)[: max(1, len(seg.areas) // 2)]
    feats = [shape_features(seg.masks[i]) for i in order]
    feats = np.array([f for f in feats if f is not None])
    if not len(feats):
        return "", 0.0
    model = shape_classifier()
    prob = model.predict_proba(feats).mean(0)
    k = int(np.argmax(prob))
    return str(model.classes_[k]), float(prob[k])


def _turn(seg, ok: np.ndarray) -> float:
    """Largest gain in signature difference to the first found frame from not re-aligning (rotation)."""
    from hyvideo.data.synthetic.shape_features import rotation_shift  # noqa: PLC0415

    sigs = [radial_signature(seg.masks[i]) for i in np.nonzero(ok)[0]]
    sigs = [s for s in sigs if s is not None]
    if len(sigs) < 2:
        return 0.0
    gains = []
    for s in sigs[1:]:
        raw = float(np.sqrt(np.mean((s - sigs[0]) ** 2)))
        gains.append(raw - rotation_shift(sigs[0], s)[1])
    return float(np.max(gains))


def _motion(seg) -> tuple[str, float, dict]:
    ok = ~np.isnan(seg.centroids[:, 0]) & (seg.areas > 0)
    t = np.nonzero(ok)[0].astype(np.float64)
    span = len(seg.areas) - 1
    sx = np.polyfit(t, seg.centroids[ok, 0], 1)[0] * span
    sy = np.polyfit(t, seg.centroids[ok, 1], 1)[0] * span
    la = np.polyfit(t, np.log(seg.areas[ok]), 1)[0] * span
    travel = float(np.hypot(sx, sy))
    stats = {"dx": round(float(sx), 4), "dy": round(float(sy), 4), "log_area": round(float(la), 4)}
    if travel >= MIN_TRAVEL:
        word = ("right" if sx > 0 else "left") if abs(sx) >= abs(sy) else ("down" if sy > 0 else "up")
        return word, float(min(1.0, 0.5 + (travel - MIN_TRAVEL) / MIN_TRAVEL)), stats
    if abs(la) >= MIN_LOG_AREA:
        return ("grow" if la > 0 else "shrink"), float(min(1.0, 0.5 + (abs(la) - MIN_LOG_AREA) / MIN_LOG_AREA)), stats
    turn = _turn(seg, ok)
    stats["turn"] = round(turn, 4)
    if turn >= MIN_TURN:
        return "rotate", float(min(1.0, 0.5 + (turn - MIN_TURN) / MIN_TURN)), stats
    margin = min(1 - travel / MIN_TRAVEL, 1 - abs(la) / MIN_LOG_AREA, 1 - turn / MIN_TURN)
    return "still", float(0.5 + 0.5 * max(0.0, margin)), stats


def detect(frames, palette: dict | None = None) -> Detection:
    """Colour, shape and motion of the single object of a clip (evaluation conditions; module docstring).

    Args:
        frames: ``[T, H, W, 3]`` uint8 RGB, or ``[3, T, H, W]`` float in [0, 1] (numpy or torch), T >= 2;
            made for 64x64, 17-frame clips (other sizes work; thresholds are in frame-side fractions).
        palette: colour word -> RGB (0-255) to classify the colour against; default: the data set config's.

    Returns:
        A :class:`Detection`; ``found`` is False (and the words "") when no object is visible in half the frames.

    Raises:
        ValueError: bad shape, dtype, range or non-finite values, or fewer than 2 frames.
    """
    x = to_frames_uint8(frames)
    if len(x) < 2:
        raise ValueError(f"detect needs at least 2 frames, got {len(x)}")
    seg = segment(x)
    found = int((seg.areas > 0).sum()) >= max(2, len(x) // 2)
    if not found:
        return Detection("", "", "", {"colour": 0.0, "shape": 0.0, "motion": 0.0}, False, {"peak": seg.peak})
    core = x[seg.strength >= 0.8 * seg.peak]  # [N, 3] RGB of the object's core, all frames
    colour, c_conf, c_stats = classify_colour(np.median(core, 0), palette)
    shape, s_conf = _shape(seg)
    motion, m_conf, m_stats = _motion(seg)
    return Detection(colour, shape, motion, {"colour": c_conf, "shape": s_conf, "motion": m_conf}, True,
                     {"peak": round(seg.peak, 1), **c_stats, **m_stats})
