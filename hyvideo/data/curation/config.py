"""Curation configuration: frozen dataclasses filled from ``configs/curation/*.yaml``.

The YAML file is the source of every threshold (``configs/curation/default.yaml`` explains each value);
the dataclasses only give the structure, types, units and validation. ``--set a.b=c`` overrides
(see :func:`load_curation_config`) are applied on top of the YAML.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "curation" / "default.yaml"

TIER_NAMES = ("256p", "360p", "540p", "720p", "finetune")
_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "str | None": "a string or null"}


def _check_types(obj, where: str) -> None:
    """Every field of a config dataclass has its annotated type (YAML turns typos into strings, ``yes`` into
    True and ``.nan`` into NaN, none of which a threshold may be).

    Raises:
        ValueError: naming the field and the value.
    """
    for f in dataclasses.fields(obj):
        v, kind = getattr(obj, f.name), f.type
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = {"int": number and isinstance(v, int), "float": number and not math.isnan(v),
              "str": isinstance(v, str), "str | None": v is None or isinstance(v, str)}.get(kind, True)
        if not ok:
            raise ValueError(f"{where}.{f.name} must be {_KINDS[kind]}, got {v!r}")


def _check_range(obj, where: str, names: tuple[str, ...], lo: float, hi: float = math.inf) -> None:
    """Each named field lies in ``[lo, hi]``.

    Raises:
        ValueError: naming the field, the value and the allowed range.
    """
    for name in names:
        v = getattr(obj, name)
        if not lo <= v <= hi:
            allowed = f">= {lo}" if hi == math.inf else f"in [{lo}, {hi}]"
            raise ValueError(f"{where}.{name} must be {allowed}, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Shot splitting (PySceneDetect ``ContentDetector``) and cutting shots into clips.

    Attributes:
        detector_threshold: ContentDetector threshold on the mean HSV frame difference (0-255 scale).
        min_shot_frames: shortest shot the detector may emit, in frames (its ``min_scene_len``).
        min_clip_s: shots shorter than this (seconds) are dropped.
        max_clip_s: longer shots are cut into consecutive clips of at most this length (seconds).
        boundary_trim_frames: frames dropped at both ends of every shot (fades, cut blur), in frames.
    """

    detector_threshold: float
    min_shot_frames: int
    min_clip_s: float
    max_clip_s: float
    boundary_trim_frames: int = 0

    def __post_init__(self):
        _check_types(self, "split")
        if not 0 < self.min_clip_s <= self.max_clip_s:
            raise ValueError(f"need 0 < split.min_clip_s <= split.max_clip_s, got {self.min_clip_s!r}, "
                             f"{self.max_clip_s!r}")
        if not self.detector_threshold > 0:
            raise ValueError(f"split.detector_threshold must be > 0, got {self.detector_threshold!r}")
        _check_range(self, "split", ("min_shot_frames",), 1)
        _check_range(self, "split", ("boundary_trim_frames",), 0)


@dataclass(frozen=True, kw_only=True)
class MeasureConfig:
    """Per-clip measurements.

    Attributes:
        num_key_frames: frames sampled evenly per clip for clarity, text and embeddings.
        clarity_grid: the frame is cut into ``clarity_grid x clarity_grid`` tiles; clarity is the best tile's.
        clarity_max_short_side_px: frames are downscaled (never upscaled) to this short side before the
            Laplacian, so the score does not grow with resolution alone.
        flow_short_side_px: the reference resolution of motion scores (short side, pixels).
        num_flow_pairs: frame pairs (evenly spread over the clip) for optical flow.
        flow_stride_frames: frames between the two frames of a pair; scores are divided by it.
        text_det_box_thresh: PP-OCR detector box score threshold (0-1).
        text_det_max_side_px: frames are downscaled to this long side (pixels) before text detection.
        num_text_frames: key frames the text detector runs on (the first ones of ``num_key_frames``).
        camera_min_confidence: camera labels below this confidence are not written into the caption.
        clip_model: local path of a CLIP model (transformers format) for embeddings; None = thumbnails.
        aesthetic_head: local safetensors/.pt linear regressor on CLIP image embeddings (needs clip_model);
            None = skipped (logged).
        watermark_model: local path of an ONNX watermark/logo classifier (see ``scorers.WatermarkDetector``);
            None = skipped (logged).
        captioner_model: local path of a vision-language model (transformers); None = no captions.
        num_caption_frames: frames given to the captioner.
    """

    num_key_frames: int
    clarity_grid: int
    clarity_max_short_side_px: int
    flow_short_side_px: int
    num_flow_pairs: int
    flow_stride_frames: int
    text_det_box_thresh: float
    text_det_max_side_px: int
    num_text_frames: int
    camera_min_confidence: float
    clip_model: str | None = None
    aesthetic_head: str | None = None
    watermark_model: str | None = None
    captioner_model: str | None = None
    num_caption_frames: int = 8

    def __post_init__(self):
        _check_types(self, "measure")
        _check_range(self, "measure", ("num_key_frames", "flow_stride_frames", "clarity_grid", "num_caption_frames"), 1)
        _check_range(self, "measure", ("num_flow_pairs",), 2)
        _check_range(self, "measure", ("clarity_max_short_side_px", "flow_short_side_px"), 16)
        _check_range(self, "measure", ("text_det_max_side_px",), 32)
        _check_range(self, "measure", ("text_det_box_thresh", "camera_min_confidence"), 0.0, 1.0)
        _check_range(self, "measure", ("num_text_frames",), 1, self.num_key_frames)


@dataclass(frozen=True, kw_only=True)
class TierConfig:
    """Thresholds of one training tier. A clip enters the tier when it passes every one of them.

    Attributes:
        name: tier name (one of ``TIER_NAMES``).
        min_short_side_px: shorter video side, pixels.
        min_duration_s: clip duration, seconds.
        min_clarity: Laplacian variance (grey levels squared) of the sharpest tile.
        min_motion: mean optical-flow magnitude, pixels/frame at the reference resolution (static filter).
        max_motion: same unit; above it the clip is chaotic or a flash.
        max_text_area: fraction (0-1) of the frame covered by detected text boxes.
        max_watermark: watermark/logo detector probability (0-1); ignored when the detector is skipped.
        min_aesthetic: aesthetic regressor score; ignored when the regressor is skipped.
    """

    name: str
    min_short_side_px: int
    min_duration_s: float
    min_clarity: float
    min_motion: float
    max_motion: float
    max_text_area: float
    max_watermark: float = 1.0
    min_aesthetic: float = float("-inf")

    def __post_init__(self):
        if self.name not in TIER_NAMES:
            raise ValueError(f"unknown tier {self.name!r}; expected one of {TIER_NAMES}")
        where = f"tiers[{self.name}]"
        _check_types(self, where)
        _check_range(self, where, ("min_short_side_px", "min_duration_s", "min_clarity", "min_motion",
                                   "max_motion"), 0)
        _check_range(self, where, ("max_text_area", "max_watermark"), 0.0, 1.0)
        if self.min_motion > self.max_motion:
            raise ValueError(f"{where}: min_motion {self.min_motion!r} > max_motion {self.max_motion!r}")


@dataclass(frozen=True, kw_only=True)
class ConceptConfig:
    """De-duplication and K-means concept balancing.

    Attributes:
        num_clusters: K-means centres (the paper used ~10k at its scale); capped at ``n // min_cluster_size``.
        min_cluster_size: average clips per centre below which K is reduced.
        dedup_cosine: clips whose embeddings have cosine similarity >= this are duplicates.
        balance_alpha: cluster sampling probability is proportional to ``size ** balance_alpha``
            (1 = natural frequency, 0 = uniform over clusters).
        seed: K-means seed.
    """

    num_clusters: int
    min_cluster_size: int
    dedup_cosine: float
    balance_alpha: float
    seed: int = 0

    def __post_init__(self):
        _check_types(self, "concepts")
        _check_range(self, "concepts", ("num_clusters", "min_cluster_size"), 1)
        _check_range(self, "concepts", ("balance_alpha",), 0.0, 1.0)
        _check_range(self, "concepts", ("dedup_cosine",), -1.0, 1.0)


_STRICTER = {  # field -> +1 if a larger value is stricter, -1 if a smaller one is
    "min_short_side_px": 1, "min_duration_s": 1, "min_clarity": 1, "min_motion": 1,
    "max_motion": -1, "max_text_area": -1, "max_watermark": -1, "min_aesthetic": 1,
}


@dataclass(frozen=True, kw_only=True)
class CurationConfig:
    """The whole curation run.

    Attributes:
        split: shot splitting.
        measure: per-clip measurements.
        concepts: de-duplication and balancing.
        tiers: the five tiers, from the loosest (256p) to the strictest (finetune, the fine-tuning tier).
        videos_per_shard: source videos per Parquet shard (the unit of work and of resume).
        num_workers: local worker processes.
    """

    split: SplitConfig
    measure: MeasureConfig
    concepts: ConceptConfig
    tiers: tuple[TierConfig, ...]
    videos_per_shard: int = 16
    num_workers: int = 2

    def __post_init__(self):
        names = tuple(t.name for t in self.tiers)
        if names != TIER_NAMES:
            raise ValueError(f"tiers must be {TIER_NAMES} in this order, got {names}")
        for lo, hi in zip(self.tiers, self.tiers[1:]):
            for name, sign in _STRICTER.items():
                a, b = getattr(lo, name), getattr(hi, name)
                if sign * (b - a) < 0:
                    raise ValueError(f"tier {hi.name} must be at least as strict as {lo.name} on {name}: "
                                     f"got {b!r} after {a!r} ({'>=' if sign > 0 else '<='} expected)")
        _check_types(self, "config")
        _check_range(self, "config", ("videos_per_shard", "num_workers"), 1)


_SECTIONS = {"split": SplitConfig, "measure": MeasureConfig, "concepts": ConceptConfig}
_TOP_LEVEL = ("videos_per_shard", "num_workers")


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _apply_override(tree: dict, key: str, value: str) -> None:
    """Set ``key`` (``section.field``, ``tiers.<i>.field`` or a top-level field) to ``value`` parsed as YAML.

    Raises:
        ValueError: unknown key, tier index out of range, or a value that is not YAML; naming both.
    """
    parts = key.split(".")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"--set {key}={value}: the value is not valid YAML ({type(e).__name__})") from None
    if isinstance(parsed, str):  # YAML 1.1 reads "1e3" as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    if parts[0] in _SECTIONS and len(parts) == 2 and parts[1] in _field_names(_SECTIONS[parts[0]]):
        node = tree.setdefault(parts[0], {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: config section {parts[0]!r} is not a mapping")
        node[parts[1]] = parsed
    elif parts[0] == "tiers" and len(parts) == 3 and parts[2] in _field_names(TierConfig):
        tiers = tree.get("tiers")
        n = len(tiers) if isinstance(tiers, list) else 0
        if not (parts[1].isdigit() and int(parts[1]) < n and isinstance(tiers[int(parts[1])], dict)):
            raise ValueError(f"--set {key}: tier index {parts[1]!r} is not one of 0..{n - 1}")
        tiers[int(parts[1])][parts[2]] = parsed
    elif len(parts) == 1 and key in _TOP_LEVEL:
        tree[key] = parsed
    elif parts[0] in _SECTIONS:
        raise ValueError(f"unknown config key {key!r}; {parts[0]} has: {', '.join(_field_names(_SECTIONS[parts[0]]))}")
    elif parts[0] == "tiers":
        raise ValueError(f"unknown config key {key!r}; expected tiers.<index>.<field>, fields: "
                         f"{', '.join(_field_names(TierConfig))}")
    else:
        raise ValueError(f"unknown config key {key!r}; expected <section>.<field> with section one of "
                         f"{', '.join(_SECTIONS)}, tiers.<index>.<field>, or one of {', '.join(_TOP_LEVEL)}")


def _read_yaml(path: Path) -> dict:
    """The YAML mapping in ``path``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, not text, not YAML, or not a mapping; naming the file.
    """
    if not path.exists():
        raise FileNotFoundError(f"curation config not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read curation config {path}: {getattr(e, 'strerror', None) or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ValueError(f"curation config {path} is not valid YAML: {what}{where}") from None
    if not isinstance(tree, dict):
        raise ValueError(f"curation config {path} must be a YAML mapping of sections, got {type(tree).__name__}")
    return tree


def load_curation_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CurationConfig:
    """Read a curation YAML and apply ``key.sub=value`` overrides.

    Args:
        path: YAML file; None = ``configs/curation/default.yaml``.
        overrides: e.g. ``["split.min_clip_s=1.5", "tiers.4.min_clarity=200"]`` (values parsed as YAML).

    Returns:
        The validated config.

    Raises:
        ValueError: unreadable or malformed YAML, malformed or unknown override, or a config that fails
            validation; the message names the file, key or value.
        FileNotFoundError: the YAML does not exist.
    """
    tree = _read_yaml(Path(path) if path is not None else DEFAULT_CONFIG)
    for item in overrides or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"override {item!r} is not key=value (e.g. tiers.4.min_clarity=300)")
        _apply_override(tree, key.strip(), value.strip())
    return config_from_dict(tree)


def _build(cls, where: str, node):
    """``cls(**node)`` with unknown, missing and non-mapping input reported by name."""
    if not isinstance(node, dict):
        raise ValueError(f"config {where} must be a mapping, got {node!r}")
    names = _field_names(cls)
    unknown = sorted(set(node) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; allowed: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in node]
    if missing:
        raise ValueError(f"config {where} is missing {', '.join(missing)}")
    return cls(**node)


def config_from_dict(tree: dict) -> CurationConfig:
    """Build a :class:`CurationConfig` from a plain dict (the YAML tree).

    Raises:
        ValueError: missing or unknown sections or keys, or values that fail validation (named).
    """
    if not isinstance(tree, dict):
        raise ValueError(f"a curation config must be a mapping, got {type(tree).__name__}")
    tree = dict(tree)
    sections = (*_SECTIONS, "tiers")
    unknown = sorted(set(tree) - set(sections) - set(_TOP_LEVEL))
    missing = [k for k in sections if k not in tree]
    if unknown or missing:
        problems = ([f"unknown section(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing section(s) {', '.join(missing)}"] if missing else [])
        raise ValueError(f"curation config: {'; '.join(problems)} (expected {', '.join(sections)} and optionally "
                         f"{', '.join(_TOP_LEVEL)})")
    tiers = tree.pop("tiers")
    if not isinstance(tiers, list):
        raise ValueError(f"config tiers must be a list of {len(TIER_NAMES)} mappings, got {tiers!r}")
    return CurationConfig(
        **{k: _build(cls, k, tree.pop(k)) for k, cls in _SECTIONS.items()},
        tiers=tuple(_build(TierConfig, f"tiers.{i}", t) for i, t in enumerate(tiers)),
        **tree,
    )


def config_to_dict(cfg: CurationConfig) -> dict:
    """Plain-dict (YAML/JSON-serialisable) form of a config, for logging and the run record."""
    return dataclasses.asdict(cfg)
