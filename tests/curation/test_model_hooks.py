"""Model hooks from local paths: CLIP embeddings + aesthetic head (tiny random models), and logged skips."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hyvideo.data.curation.config import load_curation_config
from hyvideo.data.curation.measure import measure_clip
from hyvideo.data.curation.scorers import log_skip
from hyvideo.data.curation.shots import Clip
from hyvideo.data.curation.video import VideoInfo
from tests.curation.conftest import real_frames


def _frames(n=24):
    return dict(enumerate(real_frames("bigbuckbunny", 0, n)))


def test_skipped_scores_are_none_and_logged(caplog, test_cfg):
    log_skip.cache_clear()
    with caplog.at_level(logging.WARNING):
        row = measure_clip(_frames(), Clip(0, 24, 0), VideoInfo("x", 24, 25.0, 320, 180), test_cfg)
    assert row["watermark_prob"] is None and row["aesthetic_score"] is None
    assert row["embedding_kind"] == "thumbnail"
    text = caplog.text
    assert "watermark_prob skipped: measure.watermark_model is not set" in text
    assert "aesthetic_score skipped" in text


def test_local_clip_model_and_aesthetic_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    cfg = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 100},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=8)
    transformers.CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "clip")
    head = {"weight": torch.randn(1, 8), "bias": torch.tensor([5.0])}
    save_file(head, tmp_path / "aesthetic.safetensors")
    cfg = load_curation_config(None, [f"measure.clip_model={tmp_path / 'clip'}",
                                      f"measure.aesthetic_head={tmp_path / 'aesthetic.safetensors'}"])
    row = measure_clip(_frames(), Clip(0, 24, 0), VideoInfo("x", 24, 25.0, 320, 180), cfg)
    emb = np.asarray(row["embedding"])
    assert row["embedding_kind"] == "clip" and emb.shape == (8,) and abs(np.linalg.norm(emb) - 1) < 1e-4
    expected = float(emb @ head["weight"].numpy()[0] + 5.0)
    assert row["aesthetic_score"] == pytest.approx(expected, abs=1e-5)
