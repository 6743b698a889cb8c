"""Tier assignment and config validation."""

from __future__ import annotations

import pytest

from hyvideo.data.curation.config import TIER_NAMES, load_curation_config
from hyvideo.data.curation.tiers import assign_tier


def _scores(**kw) -> dict:
    base = {"short_side_px": 1080, "duration_s": 6.0, "clarity_lapvar": 1000.0, "motion_px_per_frame": 1.0,
            "text_area_ratio": 0.0, "watermark_prob": None, "aesthetic_score": None}
    return {**base, **kw}


def test_tiers_are_nested_and_record_the_stopping_filter():
    cfg = load_curation_config()
    assert tuple(t.name for t in cfg.tiers) == TIER_NAMES
    assert assign_tier(_scores(), cfg.tiers) == ("finetune", "")
    assert assign_tier(_scores(short_side_px=480), cfg.tiers) == ("360p", "540p:resolution")
    assert assign_tier(_scores(clarity_lapvar=10.0), cfg.tiers) == ("", "256p:blur")
    assert assign_tier(_scores(watermark_prob=0.99), cfg.tiers) == ("", "256p:watermark")
    assert assign_tier(_scores(aesthetic_score=4.2), cfg.tiers) == ("360p", "540p:aesthetic")


def test_config_rejects_looser_later_tier_and_bad_override():
    with pytest.raises(ValueError, match="at least as strict"):
        load_curation_config(None, ["tiers.4.min_clarity=1.0"])
    with pytest.raises(ValueError, match="key=value"):
        load_curation_config(None, ["tiers.4.min_clarity"])
    with pytest.raises(ValueError, match="unknown tier"):
        load_curation_config(None, ["tiers.4.name=sft"])
