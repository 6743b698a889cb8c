"""Vocabulary, ground-truth specs and held-out triples of the hyvideo-nano data set.

Everything comes from ``configs/nano/dataset.yaml`` (:func:`load_nano_config`): the colour, shape, motion,
background and camera words, sizes, sampling probabilities and the held-out colour x shape x motion triples
that are never rendered into the data set and serve as evaluation prompts.

Coordinates of a spec are *scene* coordinates: fractions of the (square) frame side, x to the right and
y down, origin at the top-left corner of the first frame's view. A camera move maps the scene to the view
per frame (:func:`hyvideo.data.synthetic.geometry.camera_matrix`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "nano" / "dataset.yaml"
MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # screen direction (x, y), y down
NEGATIVES = ("", "blur", "static", "text")


@dataclass(frozen=True, kw_only=True)
class NanoConfig:
    """The data set configuration (every field documented in ``configs/nano/dataset.yaml``).

    Raises:
        ValueError: (in ``__post_init__``) a held-out triple or invalid pair uses an unknown word, a held-out
            triple is an invalid pair, or holding the triples out removes a colour, shape or motion from training.
    """

    size_px: int
    fps: float
    shot_frames: tuple[int, int]
    train_size_px: int
    train_frames: int
    colours: dict
    shapes: tuple[str, ...]
    motions: tuple[str, ...]
    invalid_pairs: tuple[tuple[str, str], ...]
    backgrounds: tuple[str, ...]
    cameras: tuple[str, ...]
    textures: dict
    texture_brightness: float
    motion_speed: tuple[float, float]
    scale_rate: tuple[float, float]
    rotate_speed_deg: tuple[float, float]
    object_radius: tuple[float, float]
    small_radius: tuple[float, float]
    object_angle_deg: tuple[float, float]
    camera_speed: tuple[float, float]
    p_two_objects: float
    p_camera: float
    p_background: dict
    p_negative: dict
    p_joined: float
    joined_shots: tuple[int, int]
    burned_in_text: tuple[str, ...]
    heldout: tuple[tuple[str, str, str], ...]

    def __post_init__(self):
        words = (set(self.colours), set(self.shapes), set(self.motions))
        errors = [f"held-out triple {t} uses an unknown word" for t in self.heldout
                  if len(t) != 3 or any(w not in ws for w, ws in zip(t, words))]
        errors += [f"invalid pair {p} is not (shape, motion)" for p in self.invalid_pairs
                   if len(p) != 2 or p[0] not in self.shapes or p[1] not in self.motions]
        errors += [f"held-out triple {t} is an invalid pair" for t in self.heldout
                   if (t[1], t[2]) in self.invalid_pairs]
        if self.size_px % 2 or self.size_px < 32:
            errors.append(f"size_px must be even and >= 32, got {self.size_px}")
        if self.train_frames < 1 or (self.train_frames - 1) % 4:
            errors.append(f"train_frames must be 1 + 4k, got {self.train_frames}")
        if not self.train_frames <= self.shot_frames[0] <= self.shot_frames[1]:
            errors.append(f"shot_frames {self.shot_frames} must be >= train_frames {self.train_frames}, ordered")
        if set(self.p_negative) - set(NEGATIVES[1:]):
            errors.append(f"p_negative keys must be in {NEGATIVES[1:]}, got {sorted(self.p_negative)}")
        if errors:
            raise ValueError("invalid nano data set config: " + "; ".join(errors))
        train = self.training_triples()
        for i, name in enumerate(("colour", "shape", "motion")):
            missing = [w for w in (self.colours, self.shapes, self.motions)[i] if all(t[i] != w for t in train)]
            if missing:
                raise ValueError(f"holding out the triples removes {name}s {missing} from training")

    def valid_triples(self) -> list[tuple[str, str, str]]:
        """Every (colour, shape, motion) that may be rendered, in vocabulary order."""
        return [(c, s, m) for c in self.colours for s in self.shapes for m in self.motions
                if (s, m) not in self.invalid_pairs]

    def training_triples(self) -> list[tuple[str, str, str]]:
        """Valid triples that are not held out (the only ones the data set renders)."""
        held = set(self.heldout)
        return [t for t in self.valid_triples() if t not in held]


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict:
    """The YAML mapping of ``path`` over its ``base`` file's (recursively); top-level keys replace."""
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'base' files form a cycle: {[str(p) for p in seen]}")
    tree = yaml.safe_load(path.read_text())
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: expected a YAML mapping of config keys, got {type(tree).__name__}")
    if "base" not in tree:
        return tree
    base = tree.pop("base")
    return {**_read_with_base(path.parent / str(base), seen + (path.resolve(),)), **tree}


@functools.lru_cache(maxsize=4)
def load_nano_config(path: str | Path | None = None) -> NanoConfig:
    """Read and validate the data set config (default ``configs/nano/dataset.yaml``); cached per path.

    A config may start from another one: ``base: dataset.yaml`` (a path relative to the file) reads that file
    first, and every top-level key of this file replaces the base's whole value (``colours: {azure: ...}`` is
    the only colour). The LoRA data configs use it, so the geometry lives in ``dataset.yaml`` once.

    Raises:
        FileNotFoundError: no such file (or base file).
        ValueError: missing or unknown keys, a cycle of ``base`` files, or a config that fails
            :class:`NanoConfig` validation.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    tree = _read_with_base(path, ())
    fields = {f.name for f in dataclasses.fields(NanoConfig)}
    if set(tree) != fields:
        raise ValueError(f"{path}: missing keys {sorted(fields - set(tree))}, "
                         f"unknown keys {sorted(set(tree) - fields)}")
    tuples = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
              for k, v in tree.items() if isinstance(v, list)}
    tree.update(tuples)
    tree["colours"] = {k: tuple(int(c) for c in v) for k, v in tree["colours"].items()}
    return NanoConfig(**tree)


def heldout_triples(path: str | Path | None = None) -> list[tuple[str, str, str]]:
    """The held-out (colour, shape, motion) triples of the data set config, in config order."""
    return list(load_nano_config(path).heldout)


@dataclass(frozen=True)
class ObjectSpec:
    """Ground truth of one object in a shot.

    Attributes:
        colour: colour word (a key of the config's ``colours``).
        shape: shape word.
        motion: motion word: left, right, up, down, still, grow, shrink or rotate.
        x: centre at frame 0, scene x (fraction of the frame side).
        y: centre at frame 0, scene y (fraction of the frame side, down).
        radius: circumradius at frame 0, fraction of the frame side.
        angle_deg: orientation at frame 0, degrees (clockwise on screen).
        rate: per-frame rate of the motion: fraction of the side (moves), scale factor > 1 (grow, shrink),
            signed degrees (rotate, + = clockwise on screen), 0 (still).
    """

    colour: str
    shape: str
    motion: str
    x: float
    y: float
    radius: float
    angle_deg: float
    rate: float

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)

    def state(self, k: float) -> tuple[float, float, float, float]:
        """``(x, y, radius, angle_deg)`` at frame ``k`` in scene coordinates."""
        x, y, r, a = self.x, self.y, self.radius, self.angle_deg
        if self.motion in MOVES:
            dx, dy = MOVES[self.motion]
            x, y = x + dx * self.rate * k, y + dy * self.rate * k
        elif self.motion == "grow":
            r = r * self.rate ** k
        elif self.motion == "shrink":
            r = r * self.rate ** -k
        elif self.motion == "rotate":
            a = a + self.rate * k
        return x, y, r, a


@dataclass(frozen=True)
class ClipSpec:
    """Ground truth of one shot: objects, background, camera, length, and whether it is a negative.

    Attributes:
        objects: one or two objects, drawn in order (the later one on top).
        background: plain, gradient or texture.
        bg_colours: RGB background colours: one (plain) or two (gradient, from its low end to its high end).
        bg_angle_deg: gradient direction at frame 0, degrees (0 = dark on the left, light on the right).
        bg_drift_deg: gradient direction change per frame, degrees (the gradient turns slowly).
        texture: bundled clip name (texture backgrounds) or "".
        texture_frame: frame index in that clip.
        texture_box: ``(x0, y0, side)`` of the square crop, fractions of the source frame's short side.
        camera: none, pan_left, pan_right, tilt_up, tilt_down, zoom_in or zoom_out.
        camera_rate: per-frame camera speed: fraction of the side (pan, tilt) or scale step (zoom).
        num_frames: frames of the shot.
        fps: frames per second.
        size_px: frame side, pixels.
        negative: "" (a good clip), "blur", "static" (one frozen frame) or "text" (burned-in text).
        text: the burned-in text of a "text" negative, else "".
    """

    objects: tuple[ObjectSpec, ...]
    background: str
    bg_colours: tuple[tuple[int, int, int], ...]
    bg_angle_deg: float
    bg_drift_deg: float
    texture: str
    texture_frame: int
    texture_box: tuple[float, float, float]
    camera: str
    camera_rate: float
    num_frames: int
    fps: float
    size_px: int
    negative: str = ""
    text: str = ""

    def to_dict(self) -> dict:
        """JSON-serialisable form (tuples become lists); inverse of :meth:`from_dict`."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> ClipSpec:
        """Rebuild a spec from :meth:`to_dict` output.

        Raises:
            ValueError: missing or unknown keys.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"clip spec keys differ: missing {sorted(names - set(d))}, "
                             f"unknown {sorted(set(d) - names)}")
        d = dict(d)
        d["objects"] = tuple(ObjectSpec(**o) for o in d["objects"])
        d["bg_colours"] = tuple(tuple(c) for c in d["bg_colours"])
        d["texture_box"] = tuple(d["texture_box"])
        return cls(**d)
