"""Curation configuration: frozen dataclasses filled from ``configs/curation/*.yaml``.

The YAML file is the source of every threshold (``configs/curation/default.yaml`` explains each value);
the dataclasses only give the structure, types, units and validation. ``--set a.b=c`` overrides
(see :func:`load_curation_config`) are applied on top of the YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "curation" / "default.yaml"

TIER_NAMES = ("256p", "360p", "540p", "720p", "finetune")


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
        if not 0 < self.min_clip_s <= self.max_clip_s:
            raise ValueError(f"need 0 < min_clip_s <= max_clip_s, got {self.min_clip_s}, {self.max_clip_s}")
        if self.min_shot_frames < 1 or self.boundary_trim_frames < 0:
            raise ValueError("min_shot_frames must be >= 1 and boundary_trim_frames >= 0")


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
        if self.num_key_frames < 1 or self.num_flow_pairs < 2 or self.flow_stride_frames < 1:
            raise ValueError("need num_key_frames >= 1, num_flow_pairs >= 2, flow_stride_frames >= 1")
        if not 1 <= self.num_text_frames <= self.num_key_frames:
            raise ValueError("num_text_frames must be in [1, num_key_frames]")


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
        if self.min_motion > self.max_motion:
            raise ValueError(f"tier {self.name}: min_motion > max_motion")


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
        if not 0.0 <= self.balance_alpha <= 1.0:
            raise ValueError("balance_alpha must be in [0, 1]")
        if not -1.0 <= self.dedup_cosine <= 1.0:
            raise ValueError("dedup_cosine must be in [-1, 1]")


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
                if sign * (getattr(hi, name) - getattr(lo, name)) < 0:
                    raise ValueError(f"tier {hi.name} must be at least as strict as {lo.name} on {name}")
        if self.videos_per_shard < 1 or self.num_workers < 1:
            raise ValueError("videos_per_shard and num_workers must be >= 1")


def _apply_override(tree: dict, key: str, value: str) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    parsed = yaml.safe_load(value)
    if isinstance(node, list):
        node[int(last)] = parsed
    else:
        node[last] = parsed


def load_curation_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CurationConfig:
    """Read a curation YAML and apply ``key.sub=value`` overrides.

    Args:
        path: YAML file; None = ``configs/curation/default.yaml``.
        overrides: e.g. ``["split.min_clip_s=1.5", "tiers.4.min_clarity=200"]`` (values parsed as YAML).

    Returns:
        The validated config.

    Raises:
        ValueError: malformed override or a config that fails validation.
        FileNotFoundError: the YAML does not exist.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    tree = yaml.safe_load(path.read_text())
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        _apply_override(tree, key.strip(), value.strip())
    return config_from_dict(tree)


def config_from_dict(tree: dict) -> CurationConfig:
    """Build a :class:`CurationConfig` from a plain dict (the YAML tree)."""
    tree = dict(tree)
    return CurationConfig(
        split=SplitConfig(**tree.pop("split")),
        measure=MeasureConfig(**tree.pop("measure")),
        concepts=ConceptConfig(**tree.pop("concepts")),
        tiers=tuple(TierConfig(**t) for t in tree.pop("tiers")),
        **tree,
    )


def config_to_dict(cfg: CurationConfig) -> dict:
    """Plain-dict (YAML/JSON-serialisable) form of a config, for logging and the run record."""
    return dataclasses.asdict(cfg)
