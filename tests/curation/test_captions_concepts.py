"""Structured captions (validator, parser, renderer) and embedding dedup / concept balancing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hyvideo.data.curation.captions import add_camera_movement, parse_caption, render_caption, validate_caption
from hyvideo.data.curation.embeddings import (concept_weights, deduplicate, deduplicate_by_cluster,
                                              thumbnail_embedding)
from tests.curation.conftest import real_frames

CAP = {"short_description": "A rabbit walks in a meadow.", "dense_description": "A big rabbit walks left.",
       "background": "green hills", "style": "animation", "shot_type": "long shot", "lighting": "daylight",
       "atmosphere": "calm"}


def test_validator_lists_every_problem():
    assert validate_caption(CAP) == CAP
    with pytest.raises(ValueError) as e:
        validate_caption({"short_description": "", "shot_type": "wide", "colour": "red", "style": 3})
    msg = str(e.value)
    for part in ("unknown key 'colour'", "'style' must be a string", "'short_description' is required",
                 "'dense_description' is required", "shot_type 'wide'"):
        assert part in msg


def test_parse_and_camera_threshold():
    parsed = parse_caption('Sure! ```json\n' + str(CAP).replace("'", '"') + "\n```")
    assert parsed == CAP
    with pytest.raises(ValueError, match="no JSON"):
        parse_caption("I cannot describe this")
    assert "camera_movement" not in add_camera_movement(CAP, "pan_left", 0.4, 0.6)
    assert add_camera_movement(CAP, "pan_left", 0.9, 0.6)["camera_movement"] == "pan left"


def test_render_dropout_keeps_first_field_and_is_seeded():
    full = render_caption(CAP)
    assert full.startswith("A rabbit walks in a meadow.") and "calm." in full
    outs = [render_caption(CAP, random.Random(s), drop_p=0.5) for s in range(20)]
    assert all(o.startswith("A rabbit walks in a meadow.") for o in outs)
    assert len(set(outs)) > 5 and any(len(o) < len(full) for o in outs)
    assert render_caption(CAP, random.Random(3), 0.5) == render_caption(CAP, random.Random(3), 0.5)


def test_dedup_and_balancing_on_real_thumbnails():
    clips = [real_frames(n, 0, 40)[::13] for n in ("bigbuckbunny", "bikes", "carphone_pristine")]
    embs = [thumbnail_embedding(c) for c in clips]
    emb = np.stack([embs[0], embs[1], embs[0], embs[2], thumbnail_embedding(clips[0][:2])])
    dup = deduplicate(emb, 0.995)
    assert dup[0] == -1 and dup[1] == -1 and dup[2] == 0 and dup[3] == -1
    assert (deduplicate_by_cluster(emb, np.zeros(5, np.int64), 0.995) == dup).all()
    split = deduplicate_by_cluster(emb, np.array([0, 1, 1, 0, 0]), 0.995)  # copies in different clusters: missed
    assert split[2] == -1
    big = np.concatenate([np.repeat(embs[:1], 12, 0), np.repeat(embs[1:2], 3, 0), embs[2:3]])
    big = big + np.random.default_rng(0).normal(0, 1e-3, big.shape).astype(np.float32)
    labels, w = concept_weights(big, num_clusters=3, min_cluster_size=1, alpha=0.0)
    assert len(set(labels[:12])) == 1 and labels[0] != labels[12] and labels[12] != labels[15]
    assert np.isclose(w.mean(), 1.0)
    # alpha = 0: each concept gets the same total weight
    totals = [w[labels == c].sum() for c in set(labels)]
    assert np.allclose(totals, totals[0])


def test_structured_caption_survives_parquet_and_manifest_reader(tmp_path, videos, test_cfg):
    from hyvideo.data.curation.measure import process_video
    from hyvideo.data.curation.shards import rows_to_table, write_parquet_atomic
    from hyvideo.data.manifest import caption_text, read_manifest

    calls = []

    def captioner(frames, *, source, span):
        calls.append((len(frames), source, span))
        assert all(f.dtype == np.uint8 and f.ndim == 3 and min(f.shape[:2]) <= 512 for f in frames)
        return CAP if len(calls) == 1 else {"short_description": "broken"}  # 2nd answer lacks a field

    rows = process_video(videos["bikes"], test_cfg, captioner)
    n, src = test_cfg.measure.num_caption_frames, str(videos["bikes"])
    assert len(rows) == 2 and calls == [(n, src, (1, 29)), (n, src, (31, 75))]
    assert rows[0]["caption"]["short_description"] == CAP["short_description"] and rows[1]["caption"] is None
    path = write_parquet_atomic(rows_to_table(rows), tmp_path / "m.parquet")
    recs = read_manifest(path)
    assert isinstance(recs[0].caption, dict) and recs[1].caption == ""
    assert caption_text(recs[0].caption).startswith("A rabbit walks in a meadow.")
