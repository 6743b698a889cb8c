"""Captions from ground truth: the structured caption of a shot, the short prompt, and the curation captioner.

:func:`structured_caption` writes the project's structured caption (``hyvideo.data.manifest.STRUCTURED_KEYS``,
checked by ``hyvideo.data.curation.captions.validate_caption``) from a :class:`ClipSpec`, so the nano set goes
through the same caption path as real data: curation stores the dict, the trainer flattens it with
``caption_text`` / ``render_caption``. Prompts at sampling time are the short form, :func:`prompt_for`.

:class:`AttributeCaptioner` is the curation pipeline's captioner for the nano set (``measure.captioner_model:
attributes``): it reads the ground truth from the video's JSON sidecar instead of looking at pixels.
"""

from __future__ import annotations

import colorsys
import functools
import json
import os
from pathlib import Path

import numpy as np

from hyvideo.data.synthetic.attributes import ClipSpec, ObjectSpec

MOTION_PHRASES = {"left": "moves to the left", "right": "moves to the right", "up": "moves up", "down": "moves down",
                  "still": "stays still", "grow": "grows", "shrink": "shrinks", "rotate": "rotates"}
CAMERA_SENTENCES = {"none": "The camera does not move.", "pan_left": "The camera pans left.",
                    "pan_right": "The camera pans right.", "tilt_up": "The camera tilts up.",
                    "tilt_down": "The camera tilts down.", "zoom_in": "The camera zooms in.",
                    "zoom_out": "The camera zooms out."}
_HUES = ("red", "orange", "yellow", "yellow-green", "green", "teal", "cyan", "blue", "blue", "violet", "magenta",
         "pink")  # 30-degree hue bins


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def prompt_for(obj: ObjectSpec | tuple[str, str, str]) -> str:
    """Short prompt of one object, e.g. ``"a red circle moves to the left"`` (an ObjectSpec or a triple).

    Raises:
        KeyError: unknown motion word.
    """
    colour, shape, motion = obj.triple if isinstance(obj, ObjectSpec) else obj
    return f"{_article(colour)} {colour} {shape} {MOTION_PHRASES[motion]}"


def heldout_prompts(path: str | os.PathLike | None = None) -> list[tuple[tuple[str, str, str], str]]:
    """``[(triple, prompt), ...]`` for the held-out triples of the data set config (the evaluation prompts)."""
    from hyvideo.data.synthetic.attributes import heldout_triples  # noqa: PLC0415

    return [(t, prompt_for(t)) for t in heldout_triples(path)]


def training_prompts(n: int, path: str | os.PathLike | None = None) -> list[tuple[tuple[str, str, str], str]]:
    """``[(triple, prompt), ...]`` for ``n`` training triples spread evenly over the config's vocabulary-ordered
    list (every colour, shape and motion): the seen-combination counterpart of :func:`heldout_prompts`, for the
    generalisation gap. Raises ``ValueError`` if ``n`` is not in 1..number of training triples."""
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415

    train = load_nano_config(path).training_triples()
    if not 1 <= n <= len(train):
        raise ValueError(f"n must be in 1..{len(train)} (the training triples), got {n}")
    return [(t, prompt_for(t)) for t in (train[i * len(train) // n] for i in range(n))]


def short_description(spec: ClipSpec) -> str:
    """Every object's prompt, joined with "and" (the caption's ``short_description``)."""
    return " and ".join(prompt_for(o) for o in spec.objects)


def tone_name(rgb) -> str:
    """Words for a dark background colour, e.g. "very dark bluish grey"."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    depth = "nearly black" if v < 0.09 else "very dark" if v < 0.16 else "dark"
    if s < 0.12 or v < 0.09:
        return depth if depth == "nearly black" else f"{depth} grey"
    return f"{depth} {_HUES[int(h * 12) % 12]}-tinted grey"


def _position(x: float, y: float) -> str:
    parts = ["top" if y < 0.38 else "bottom" if y > 0.62 else "", "left" if x < 0.38 else "right" if x > 0.62 else ""]
    words = " ".join(p for p in parts if p)
    return f"the {words}" if words else "the centre"


def _object_sentence(o: ObjectSpec, num_frames: int) -> str:
    size = "small" if o.radius < 0.11 else "medium-sized" if o.radius < 0.155 else "large"
    start = f"{_article(size).capitalize()} {size} {o.colour} {o.shape} starts at {_position(o.x, o.y)} of the frame"
    x1, y1, r1, _ = o.state(num_frames - 1)
    if o.motion == "still":
        return f"{start} and stays still."
    if o.motion in ("grow", "shrink"):
        return f"{start} and {o.motion}s steadily to {r1 / o.radius:.1f} times its size."
    if o.motion == "rotate":
        way = "clockwise" if o.rate > 0 else "counter-clockwise"
        return f"{start} and rotates {way} in place."
    return f"{start} and {MOTION_PHRASES[o.motion]}, ending at {_position(x1, y1)}."


def background_text(spec: ClipSpec, textures: dict | None = None) -> str:
    """The caption's ``background`` field."""
    if spec.background == "plain":
        return f"a plain {tone_name(spec.bg_colours[0])} background"
    if spec.background == "gradient":
        lo, hi = (tone_name(c) for c in spec.bg_colours)
        return f"a slowly turning gradient from {lo} to {hi}"
    desc = (textures or {}).get(spec.texture, "a real scene")
    return f"a dimmed still photograph of {desc.removeprefix('a ').removeprefix('an ')}"


def structured_caption(spec: ClipSpec) -> dict:
    """The structured caption (validated) of one shot's ground truth.

    Returns:
        ``{short_description, dense_description, background, style, shot_type, lighting, atmosphere,
        camera_movement}`` strings; ``camera_movement`` is the ground-truth move with spaces ("static" for none).

    Raises:
        ValueError: the caption fails ``validate_caption`` (an unknown camera move).
    """
    from hyvideo.data.curation.captions import validate_caption  # noqa: PLC0415
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415

    sentences = [_object_sentence(o, spec.num_frames) for o in spec.objects]
    sentences.append(CAMERA_SENTENCES[spec.camera])
    style = "flat 2D computer graphics"
    if spec.negative == "blur":
        sentences.append("The whole video is blurred and out of focus.")
        style = "blurry, out-of-focus flat 2D computer graphics"
    elif spec.negative == "static":
        sentences.append("Nothing moves: the video is one frozen frame.")
    elif spec.negative == "text":
        sentences.append(f'The text "{spec.text}" is burned into the bottom of the frame.')
    caption = {
        "short_description": short_description(spec),
        "dense_description": " ".join(sentences),
        "background": background_text(spec, load_nano_config().textures),
        "style": style,
        "shot_type": "medium shot",
        "lighting": "flat, even lighting",
        "atmosphere": "simple and abstract",
        "camera_movement": "static" if spec.camera == "none" else spec.camera.replace("_", " "),
    }
    return validate_caption(caption)


@functools.lru_cache(maxsize=256)
def _read_sidecar(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text())


def sidecar_path(video: str | os.PathLike) -> Path:
    """The ground-truth sidecar of a data set video: the same path with a ``.json`` suffix."""
    return Path(video).with_suffix(".json")


def shot_for_span(sidecar: dict, span: tuple[int, int]) -> dict:
    """The sidecar shot that overlaps frames ``[start, end)`` the most.

    Raises:
        ValueError: no shot overlaps the span.
    """
    start, end = span
    overlaps = [min(end, s["end_frame"]) - max(start, s["start_frame"]) for s in sidecar["shots"]]
    best = int(np.argmax(overlaps)) if overlaps else -1
    if best < 0 or overlaps[best] <= 0:
        raise ValueError(f"no ground-truth shot overlaps frames [{start}, {end}) of {sidecar.get('video')}")
    return sidecar["shots"][best]


class AttributeCaptioner:
    """Curation captioner for the nano data set: the structured caption of the ground-truth shot of a clip.

    Registered as ``measure.captioner_model: attributes`` (``hyvideo.data.curation.captions.get_captioner``).
    Called as ``captioner(frames_bgr, source=<video path>, span=(start_frame, end_frame))``; the frames are
    not looked at. Raises ``ValueError`` (which the curation stage logs, leaving the clip uncaptioned) when
    ``source``/``span`` are missing, the video has no sidecar, or no shot covers the span.

    Its ``camera_movement`` is the rendered camera move, so the curation keeps it instead of the camera
    classifier's label (``camera_is_ground_truth``): the optical-flow classifier reads a large object moving
    across a plain background as a pan or zoom (on 3958 curated clips of objects at circumradius 0.2-0.25 it
    wrote a wrong camera move into 1277 captions, and a wrong prompt sentence into 823 of them, e.g. "a red
    star moves to the right. the camera pans left.").
    """

    camera_is_ground_truth = True

    def __call__(self, frames_bgr: list[np.ndarray] | None = None, *, source: str | os.PathLike | None = None,
                 span: tuple[int, int] | None = None) -> dict:
        """Structured caption (see :func:`structured_caption`) of the shot of ``source`` that covers ``span``."""
        if source is None or span is None:
            raise ValueError("AttributeCaptioner needs source= (the video path) and span= (start_frame, end_frame)")
        side = sidecar_path(source)
        if not side.is_file():
            raise ValueError(f"{source} has no ground-truth sidecar {side} (not a nano data set video?)")
        sidecar = _read_sidecar(str(side), side.stat().st_mtime_ns)
        shot = shot_for_span(sidecar, (int(span[0]), int(span[1])))
        return structured_caption(ClipSpec.from_dict(shot["spec"]))
