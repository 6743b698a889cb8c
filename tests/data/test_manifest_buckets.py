"""Manifests (JSONL / Parquet with curation columns) and aspect-ratio buckets."""

from __future__ import annotations

import json

import pytest

from hyvideo.data.buckets import buckets_for_tier, closest_bucket, generate_crop_size_list, resize_crop
from hyvideo.data.manifest import caption_text, read_manifest, tier_value, write_manifest


def test_parquet_manifest_keeps_curation_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = {"path": ["a.mp4", "/abs/b.mp4"], "start_frame": [0, 10], "end_frame": [33, 60], "fps": [24.0, 30.0],
            "width": [640, 1280], "height": [360, 720],
            "caption": [json.dumps({"short_description": "A cat.", "background": "grass"}), "plain caption"],
            "tier": ["360p", "finetune"], "clarity": [0.8, 0.9], "motion": [1.5, 2.0], "text_area": [0.0, 0.01],
            "rejected_by": ["", ""]}
    path = tmp_path / "tier.parquet"
    pq.write_table(pa.table(rows), path)
    recs = read_manifest(path)
    assert [r.path for r in recs] == [str(tmp_path / "a.mp4"), "/abs/b.mp4"]
    assert recs[0].extra["clarity"] == 0.8 and recs[1].extra["motion"] == 2.0 and "rejected_by" in recs[0].extra
    assert recs[0].caption == {"short_description": "A cat.", "background": "grass"}
    assert caption_text(recs[0].caption) == "A cat. grass."
    assert (recs[1].start_frame, recs[1].end_frame, recs[1].tier) == (10, 60, "finetune")


def test_manifest_without_path_raises(tmp_path):
    path = write_manifest([{"path": "x.mp4"}, {"caption": "no path"}], tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match=r"m.jsonl:2: record without 'path'"):
        read_manifest(path)
    with pytest.raises(ValueError, match=".jsonl or .parquet"):
        read_manifest(write_manifest([], tmp_path / "m.csv"))


def test_tier_order_and_caption_synthesis():
    assert tier_value("256p") < tier_value("360p") < tier_value("540p") < tier_value("720p") < tier_value("finetune")
    import random

    cap = {"short_description": "S", "dense_description": "D", "style": "St", "lighting": "L"}
    a = caption_text(cap, random.Random(1), drop_p=0.5)
    assert a.startswith("S.") and a == caption_text(cap, random.Random(1), drop_p=0.5)


def test_released_bucket_rule():
    # released generate_crop_size_list: base 960 (720p tier) uses a 32 px stride, sides ratio <= 4
    b720 = buckets_for_tier("720")
    assert all(h % 32 == 0 and w % 32 == 0 and max(h, w) / min(h, w) <= 4 for h, w in b720)
    assert (960, 960) in b720 and (704, 1248) in b720 and (1248, 704) in b720
    assert all(h * w <= 960 * 960 for h, w in b720)
    assert set(generate_crop_size_list(256, 16)) == {(w, h) for h, w in generate_crop_size_list(256, 16)}
    h, w = closest_bucket(720, 1280, "720")
    assert (h, w) == (704, 1248) and abs(h / w - 720 / 1280) < 0.01
    with pytest.raises(ValueError, match="has no bucket list"):
        buckets_for_tier("300")


def test_resize_crop_shape_and_range():
    import torch

    frames = torch.randint(0, 256, (5, 72, 128, 3), dtype=torch.uint8)
    out = resize_crop(frames, (32, 64))
    assert out.shape == (3, 5, 32, 64) and out.min() >= -1 and out.max() <= 1
