"""Hierarchical tiers: the highest of the five training tiers a clip passes, and the filter that stopped it.

HunyuanVideo (arXiv 2412.03603, data filtering) builds training sets of increasing resolution and
strictness (256p, 360p, 540p, 720p, then a hand-tuned fine-tuning set) by tightening the same filters.
Tiers are nested: a clip that passes tier k passes every tier before it (``CurationConfig`` validates that
thresholds only get stricter), so a clip's tier is the last one it passes.
"""

from __future__ import annotations

import math

from hyvideo.data.curation.config import TierConfig

# Manifest column -> (tier field, comparison). None scores (skipped detectors) pass.
FILTERS = (
    ("resolution", "short_side_px", "min_short_side_px", "min"),
    ("duration", "duration_s", "min_duration_s", "min"),
    ("blur", "clarity_lapvar", "min_clarity", "min"),
    ("static", "motion_px_per_frame", "min_motion", "min"),
    ("chaotic_motion", "motion_px_per_frame", "max_motion", "max"),
    ("text", "text_area_ratio", "max_text_area", "max"),
    ("watermark", "watermark_prob", "max_watermark", "max"),
    ("aesthetic", "aesthetic_score", "min_aesthetic", "min"),
)


def failed_filter(scores: dict, tier: TierConfig) -> str | None:
    """Name of the first filter of ``tier`` the clip fails (see :data:`FILTERS`), or None if it passes.

    Raises:
        KeyError: a score column is missing from ``scores`` (None is allowed and passes).
    """
    for name, column, field, kind in FILTERS:
        value = scores[column]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        limit = getattr(tier, field)
        if (kind == "min" and value < limit) or (kind == "max" and value > limit):
            return name
    return None


def assign_tier(scores: dict, tiers: tuple[TierConfig, ...]) -> tuple[str, str]:
    """``(tier, rejected_by)``: the last tier passed ("" if none) and ``"<next tier>:<filter>"`` ("" if all).

    Example: a 480p-sharp clip gives ``("360p", "540p:resolution")``.
    """
    reached = ""
    for tier in tiers:
        fail = failed_filter(scores, tier)
        if fail is not None:
            return reached, f"{tier.name}:{fail}"
        reached = tier.name
    return reached, ""
