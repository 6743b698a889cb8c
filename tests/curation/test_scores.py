"""Acceptance tests of the per-clip measurements on real clips: text area, clarity, motion, shot cuts."""

from __future__ import annotations

import cv2
import numpy as np

from hyvideo.data.curation.clarity import clip_clarity
from hyvideo.data.curation.measure import process_video
from hyvideo.data.curation.motion import clip_flows, motion_score
from hyvideo.data.curation.shots import detect_shots
from hyvideo.data.curation.tiers import failed_filter
from hyvideo.data.curation.video import write_video
from tests.curation.conftest import real_frames


def _burn_text(frame: np.ndarray) -> np.ndarray:
    out = frame.copy()
    for k, line in enumerate(("BREAKING NEWS 2024", "subscribe for more")):
        cv2.putText(out, line, (12, 120 + 32 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def test_burned_in_text_raises_text_area_and_is_rejected(tmp_path, test_cfg):
    frames = real_frames("bigbuckbunny", 0, 30)
    plain = process_video(write_video(frames, tmp_path / "plain.mp4", 25), test_cfg)
    text = process_video(write_video([_burn_text(f) for f in frames], tmp_path / "text.mp4", 25), test_cfg)
    assert len(plain) == len(text) == 1
    assert text[0]["text_area_ratio"] > plain[0]["text_area_ratio"] + 0.02
    assert failed_filter(plain[0], test_cfg.tiers[0]) != "text"
    assert text[0]["tier"] == "" and text[0]["rejected_by"] == "256p:text"


def test_splitter_finds_every_cut_of_concatenated_real_clips(videos, test_cfg):
    shots = detect_shots(videos["concat"], test_cfg.split)
    cuts = [s for s, _ in shots[1:]]
    expected = [30, 76, 137, 187]  # bikes' own cuts at 30, 76; joins at 137 and 187
    assert len(cuts) == len(expected), f"found cuts {cuts}, expected {expected}"
    assert all(abs(c - e) <= 2 for c, e in zip(cuts, expected)), cuts
    assert shots[0][0] == 0 and shots[-1][1] == 237


def test_clarity_blur_and_distortion(test_cfg):
    m = test_cfg.measure
    frames = real_frames("bigbuckbunny", 0, 40, size=None)[::10]
    sharp = clip_clarity(frames, m.clarity_grid, m.clarity_max_short_side_px)
    blurred = clip_clarity([cv2.GaussianBlur(f, (0, 0), 3) for f in frames], m.clarity_grid, m.clarity_max_short_side_px)
    assert blurred < sharp
    assert failed_filter(_scores(clarity_lapvar=sharp), test_cfg.tiers[0]) is None
    assert failed_filter(_scores(clarity_lapvar=blurred), test_cfg.tiers[0]) == "blur"
    pristine = clip_clarity(real_frames("carphone_pristine", 0, 120, None)[::30], m.clarity_grid, m.clarity_max_short_side_px)
    distorted = clip_clarity(real_frames("carphone_distorted", 0, 120, None)[::30], m.clarity_grid, m.clarity_max_short_side_px)
    assert distorted < pristine


def _scores(**kw) -> dict:
    base = {"short_side_px": 720, "duration_s": 5.0, "clarity_lapvar": 1000.0, "motion_px_per_frame": 1.0,
            "text_area_ratio": 0.0, "watermark_prob": None, "aesthetic_score": None}
    return {**base, **kw}


def test_frozen_clip_is_static_and_rejected(tmp_path, test_cfg):
    frame = real_frames("bikes", 10, 11)[0]
    rows = process_video(write_video([frame] * 40, tmp_path / "frozen.mp4", 25), test_cfg)
    assert len(rows) == 1
    assert rows[0]["motion_px_per_frame"] < 0.02
    assert rows[0]["rejected_by"] == "256p:static" and rows[0]["tier"] == ""
    assert rows[0]["camera_movement"] == "static"


def test_synthetic_pan_speed_measured_within_10_percent(test_cfg):
    src = real_frames("bigbuckbunny", 60, 61, size=None)[0]
    speed = 3.0  # source pixels per frame; the source short side is 720 px
    frames = {k: src[:, 100 + round(speed * k): 100 + round(speed * k) + 960].copy() for k in range(0, 13)}
    ref = test_cfg.measure.flow_short_side_px
    measured = motion_score(clip_flows(frames, [(0, 4), (4, 8), (8, 12)], ref))
    expected = speed * ref / 720  # in reference pixels per frame
    assert abs(measured - expected) / expected < 0.10, (measured, expected)
