"""scripts/curate.py over a tiny rendered nano set: negatives rejected, joined shots split, good clips tiered
and captioned from their ground truth."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hyvideo.data.synthetic.dataset import write_shots
from hyvideo.data.synthetic.attributes import load_nano_config
from hyvideo.data.synthetic.sampling import eval_spec, sample_clip_spec, sample_joined, sample_negative

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "curation" / "nano.yaml"


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """Render 3 good videos, one blurred, one static, one text-burned and one 3-shot video; curate them. Plus a
    large star moving right with a still camera, which the camera classifier reads as a pan."""
    root = tmp_path_factory.mktemp("nano_curation")
    rng = np.random.default_rng(2024)
    videos = {f"good_{b}": [sample_clip_spec(rng, background=b)] for b in ("plain", "gradient", "texture")}
    videos.update({f"neg_{k}": [sample_negative(k, rng)] for k in ("blur", "static", "text")})
    big = dataclasses.replace(load_nano_config(), object_radius=(0.24, 0.25), motion_speed=(0.016, 0.016))
    videos["good_big_right"] = [eval_spec(("red", "star", "right"), 3, num_frames=26, cfg=big)]
    videos["joined"] = sample_joined(rng)
    while len(videos["joined"]) != 3:
        videos["joined"] = sample_joined(rng)
    sidecars = {name: write_shots(root / "videos", name, shots) for name, shots in videos.items()}
    sys.path.insert(0, str(ROOT / "scripts"))
    import curate  # noqa: PLC0415

    paths = curate.main(["--input", str(root / "videos"), "--output", str(root / "out"), "--config", str(CONFIG),
                         "--workers", "1"])
    rows = pq.read_table(paths["manifest"]).to_pylist()
    by_video = {name: [r for r in rows if Path(r["path"]).stem == name] for name in videos}
    return by_video, sidecars


def test_curation_rejects_negatives_and_splits_joined_shots(curated):
    rows, sidecars = curated
    for kind in ("blur", "static", "text"):
        got = rows[f"neg_{kind}"]
        assert got and all(r["tier"] == "" and r["rejected_by"] == f"256p:{kind}" for r in got), got
    joined = rows["joined"]
    shots = [(s["start_frame"], s["end_frame"]) for s in sidecars["joined"]["shots"]]
    assert len(joined) == len(shots) == 3  # one clip per rendered shot: every cut found, none invented
    for r, (a, b) in zip(sorted(joined, key=lambda r: r["start_frame"]), shots):
        assert a <= r["start_frame"] < r["end_frame"] <= b
    good = [r for name, rs in rows.items() if name.startswith("good") or name == "joined" for r in rs]
    assert len(good) == 7 and all(r["tier"] for r in good), [(r["path"], r["rejected_by"]) for r in good]


def test_curated_captions_come_from_the_ground_truth(curated):
    rows, sidecars = curated
    for name, side in sidecars.items():
        for r in rows[name]:
            shot = next(s for s in side["shots"] if s["start_frame"] <= r["start_frame"] < s["end_frame"])
            assert r["caption"] is not None, (name, r["start_frame"])
            for key in ("short_description", "dense_description", "background", "style", "camera_movement"):
                assert r["caption"][key] == shot["caption"][key]
    assert json.dumps(rows["good_plain"][0]["caption"])  # JSON-serialisable struct
