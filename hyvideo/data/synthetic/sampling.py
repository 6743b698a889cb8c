"""Seeded sampling of ground-truth specs: training shots, whole videos (negatives, joined shots), eval clips.

Every draw comes from a ``numpy.random.Generator`` the caller seeds, so a spec is a pure function of its
seed. Training specs only use :meth:`NanoConfig.training_triples`: held-out triples are never sampled.
Objects are placed by rejection sampling so that their bounding circles stay inside the view on every frame
(camera included) and two objects never overlap.
"""

from __future__ import annotations

import colorsys
import dataclasses

import cv2
import numpy as np

from hyvideo.data.synthetic.attributes import MOVES, ClipSpec, NanoConfig, ObjectSpec, load_nano_config
from hyvideo.data.synthetic.geometry import view_circle

MARGIN = 0.03  # objects keep this far (frame-side fraction) from the view border on every frame
# Background HSV values (0-1). Dark, so that every object colour has a luma contrast of >= ~25 grey levels
# with the background: the curation's clarity score is computed on luma, and a blue shape on mid grey has
# almost none (and would be rejected as blurred).
PLAIN_VALUE = (0.05, 0.2)
GRADIENT_LOW, GRADIENT_HIGH = (0.03, 0.1), (0.16, 0.24)
MIN_CUT_SCORE = 45.0  # joined shots: ContentDetector score of each cut (its default threshold is 27)


def _rate(cfg: NanoConfig, motion: str, rng: np.random.Generator) -> float:
    if motion in MOVES:
        return float(rng.uniform(*cfg.motion_speed))
    if motion in ("grow", "shrink"):
        return float(rng.uniform(*cfg.scale_rate))
    if motion == "rotate":
        return float(rng.uniform(*cfg.rotate_speed_deg) * rng.choice([-1, 1]))
    return 0.0


def _object(cfg: NanoConfig, triple, num_frames: int, rng: np.random.Generator, scale: float) -> ObjectSpec:
    colour, shape, motion = triple
    rate = _rate(cfg, motion, rng)
    if motion == "grow":
        radius = rng.uniform(*cfg.small_radius) * scale
    elif motion == "shrink":
        radius = rng.uniform(*cfg.small_radius) * scale * rate ** (num_frames - 1)
    else:
        radius = rng.uniform(*cfg.object_radius) * scale
    x, y = rng.uniform(0.1, 0.9, 2)
    return ObjectSpec(colour, shape, motion, float(x), float(y), float(radius),
                      float(rng.uniform(*cfg.object_angle_deg)), rate)


def _fits(objs: list[ObjectSpec], camera: str, camera_rate: float, num_frames: int) -> bool:
    """Every object inside the view on every frame, and objects apart (bounding circles, 5 % slack)."""
    for k in range(num_frames):
        circles = [view_circle(o, camera, camera_rate, k) for o in objs]
        if any(x - r < MARGIN or x + r > 1 - MARGIN or y - r < MARGIN or y + r > 1 - MARGIN for x, y, r in circles):
            return False
        if len(circles) == 2:
            (x0, y0, r0), (x1, y1, r1) = circles
            if np.hypot(x1 - x0, y1 - y0) < 1.05 * (r0 + r1):
                return False
    return True


def _place(cfg, triples, camera, camera_rate, num_frames, rng, tries: int = 200) -> tuple[ObjectSpec, ...] | None:
    scale = 1.0 if len(triples) == 1 else 0.8
    for _ in range(tries):
        objs = [_object(cfg, t, num_frames, rng, scale) for t in triples]
        if _fits(objs, camera, camera_rate, num_frames):
            return tuple(objs)
    return None


def dark_colour(rng: np.random.Generator, value: tuple[float, float]) -> tuple[int, int, int]:
    """A dark, low-saturation RGB colour (HSV saturation <= 0.3, value in ``value``)."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(*value))
    return (round(r * 255), round(g * 255), round(b * 255))


def background_fields(cfg: NanoConfig, kind: str, rng: np.random.Generator) -> dict:
    """The background fields of a :class:`ClipSpec` for background ``kind`` (plain, gradient, texture)."""
    out = dict(background=kind, bg_colours=(), bg_angle_deg=0.0, bg_drift_deg=0.0, texture="", texture_frame=0,
               texture_box=(0.0, 0.0, 1.0))
    if kind == "plain":
        out["bg_colours"] = (dark_colour(rng, PLAIN_VALUE),)
    elif kind == "gradient":
        out["bg_colours"] = (dark_colour(rng, GRADIENT_LOW), dark_colour(rng, GRADIENT_HIGH))
        out["bg_angle_deg"] = float(rng.uniform(0, 360))
        out["bg_drift_deg"] = float(rng.uniform(1.5, 2.5) * rng.choice([-1, 1]))
    elif kind == "texture":
        from hyvideo.data.synthetic.textures import texture_num_frames  # noqa: PLC0415

        name = str(rng.choice(sorted(cfg.textures)))
        side = float(rng.uniform(0.5, 1.0))
        out.update(texture=name, texture_frame=int(rng.integers(texture_num_frames(name))),
                   texture_box=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), side))
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {cfg.backgrounds}")
    return out


def sample_clip_spec(rng: np.random.Generator, cfg: NanoConfig | None = None, num_frames: int | None = None,
                     background: str | None = None) -> ClipSpec:
    """One training shot: 1-2 objects with training triples, a background, maybe a camera move.

    A shot in which nothing would move (every object still, no camera) gets a drifting gradient background
    or a camera move, so that the curation's static filter keeps it (a frozen clip is a negative).

    Args:
        rng: the source of every random choice.
        cfg: data set config (default: :func:`load_nano_config`).
        num_frames: shot length; default uniform in ``cfg.shot_frames``.
        background: force a background kind; default drawn with ``cfg.p_background``.
    """
    cfg = cfg or load_nano_config()
    n = int(num_frames or rng.integers(cfg.shot_frames[0], cfg.shot_frames[1] + 1))
    train = cfg.training_triples()
    while True:
        k = 2 if rng.random() < cfg.p_two_objects else 1
        picks = [train[i] for i in rng.choice(len(train), size=k, replace=False)]
        if k == 2 and picks[0][:2] == picks[1][:2]:
            continue  # two objects of one colour and shape would make the caption ambiguous
        camera = str(rng.choice(cfg.cameras[1:])) if rng.random() < cfg.p_camera else "none"
        kinds = sorted(cfg.p_background)
        bg = background or str(rng.choice(kinds, p=[cfg.p_background[b] for b in kinds]))
        if camera == "none" and all(t[2] == "still" for t in picks) and bg != "gradient":
            if rng.random() < 0.5:
                bg = "gradient"
            else:
                camera = str(rng.choice(cfg.cameras[1:]))
        camera_rate = float(rng.uniform(*cfg.camera_speed)) if camera != "none" else 0.0
        objs = _place(cfg, picks, camera, camera_rate, n, rng)
        if objs is not None:
            return ClipSpec(objects=objs, **background_fields(cfg, bg, rng), camera=camera, camera_rate=camera_rate,
                            num_frames=n, fps=float(cfg.fps), size_px=cfg.size_px)


def eval_spec(triple: tuple[str, str, str], seed: int, *, background: str = "plain",
              num_frames: int | None = None, cfg: NanoConfig | None = None) -> ClipSpec:
    """Ground truth of an evaluation clip: one object of ``triple``, no camera move, plain or gradient background.

    These are the conditions of the held-out prompt evaluation (and of the detector validation). The triple
    may be held out: evaluation clips are never written into the data set.

    Args:
        triple: (colour, shape, motion).
        seed: placement, rates and background colours.
        background: "plain" or "gradient".
        num_frames: default ``cfg.train_frames``.

    Raises:
        ValueError: unknown word, an invalid (shape, motion) pair, or another background.
    """
    cfg = cfg or load_nano_config()
    if triple not in cfg.valid_triples():
        raise ValueError(f"{triple} is not a valid (colour, shape, motion) triple of the nano vocabulary")
    if background not in ("plain", "gradient"):
        raise ValueError(f"evaluation backgrounds are plain or gradient, got {background!r}")
    rng = np.random.default_rng([seed, 1234567])
    n = num_frames or cfg.train_frames
    objs = _place(cfg, [triple], "none", 0.0, n, rng, tries=1000)
    if objs is None:
        raise ValueError(f"could not place {triple} in {n} frames")
    return ClipSpec(objects=objs, **background_fields(cfg, background, rng), camera="none", camera_rate=0.0,
                    num_frames=n, fps=float(cfg.fps), size_px=cfg.size_px)


def sample_video(rng: np.random.Generator, cfg: NanoConfig | None = None) -> list[ClipSpec]:
    """The shots of one video: a good shot, a negative (blur, static, text), or 2-3 joined good shots.

    Joined shots are drawn by :func:`sample_joined`.
    """
    cfg = cfg or load_nano_config()
    u = rng.random()
    for kind, p in sorted(cfg.p_negative.items()):
        if u < p:
            return [sample_negative(kind, rng, cfg)]
        u -= p
    if u < cfg.p_joined:
        return sample_joined(rng, cfg)
    return [sample_clip_spec(rng, cfg)]


def cut_score(a: ClipSpec, b: ClipSpec, cfg: NanoConfig | None = None) -> float:
    """PySceneDetect's ``ContentDetector`` score of a hard cut from shot ``a`` to shot ``b``.

    The mean absolute difference of the H, S and V channels (OpenCV 8-bit HSV) between the last frame of
    ``a`` and the first frame of ``b``, averaged over the three channels, at 64 px.
    """
    from hyvideo.data.synthetic.render import downscale, render_shot  # noqa: PLC0415

    last = downscale(render_shot(a, cfg, frame_indices=[a.num_frames - 1]), 64)[0]
    first = downscale(render_shot(b, cfg, frame_indices=[0]), 64)[0]
    hsv = [cv2.cvtColor(f, cv2.COLOR_RGB2HSV).astype(np.float32) for f in (last, first)]
    return float(np.abs(hsv[0] - hsv[1]).mean())


def sample_joined(rng: np.random.Generator, cfg: NanoConfig | None = None) -> list[ClipSpec]:
    """2-3 good shots to be joined by hard cuts; each cut scores >= :data:`MIN_CUT_SCORE` (:func:`cut_score`).

    Shots cycle through the background kinds; a candidate next shot whose cut would be weak (e.g. two dark
    plain backgrounds) is redrawn, so the cuts are ones a shot detector must find.
    """
    cfg = cfg or load_nano_config()
    num = int(rng.integers(cfg.joined_shots[0], cfg.joined_shots[1] + 1))
    order = [str(b) for b in rng.permutation(sorted(cfg.p_background))]
    shots = [sample_clip_spec(rng, cfg, background=order[0])]
    while len(shots) < num:
        best, best_score = None, -1.0
        for attempt in range(50):
            cand = sample_clip_spec(rng, cfg, background=order[(len(shots) + attempt) % len(order)])
            score = cut_score(shots[-1], cand, cfg)
            if score > best_score:
                best, best_score = cand, score
            if score >= MIN_CUT_SCORE:
                break
        shots.append(best)
    return shots


def sample_negative(kind: str, rng: np.random.Generator, cfg: NanoConfig | None = None) -> ClipSpec:
    """A negative shot for curation to reject: "blur", "static" (one frozen frame) or "text" (burned-in text).

    A static negative's ground truth says what it shows: every object "still", no camera, no drift (its still
    triples are training triples too).

    Raises:
        ValueError: unknown kind.
    """
    cfg = cfg or load_nano_config()
    if kind not in ("blur", "static", "text"):
        raise ValueError(f"unknown negative {kind!r}; expected blur, static or text")
    spec = sample_clip_spec(rng, cfg)
    if kind == "static":
        still = tuple(dataclasses.replace(o, motion="still", rate=0.0) for o in spec.objects)
        while any(o.triple in cfg.heldout for o in still):
            spec = sample_clip_spec(rng, cfg)
            still = tuple(dataclasses.replace(o, motion="still", rate=0.0) for o in spec.objects)
        spec = dataclasses.replace(spec, objects=still, camera="none", camera_rate=0.0, bg_drift_deg=0.0)
    text = str(rng.choice(cfg.burned_in_text)) if kind == "text" else ""
    return dataclasses.replace(spec, negative=kind, text=text)
