"""Camera-movement classifier on synthetic moves rendered from a real frame (two speeds per class)."""

from __future__ import annotations

import numpy as np
import pytest

from hyvideo.data.curation.camera import CAMERA_CLASSES, classify_camera, classify_params
from hyvideo.data.curation.synthetic import render_move
from tests.curation.conftest import real_frames


def test_camera_accuracy_on_synthetic_moves():
    src = real_frames("bigbuckbunny", 60, 61, size=(640, 360))[0]
    results = []
    for k, label in enumerate(CAMERA_CLASSES):
        for speed in ((0.0,) if label == "static" else (1.5, 4.0)):
            frames = render_move(src, label, 13, speed, seed=k, noise_std=2.0)
            pred = classify_camera(frames[::2], frame_gap=2)
            assert 0.0 <= pred.confidence <= 1.0
            results.append(pred.label == label)
    assert np.mean(results) >= 0.9, f"accuracy {np.mean(results):.2f}"


def test_classify_params_rejects_empty_and_static_is_confident():
    with pytest.raises(ValueError):
        classify_params(np.zeros((0, 6)))
    out = classify_params(np.zeros((4, 6)))
    assert out.label == "static" and out.confidence > 0.9
    with pytest.raises(ValueError, match="need >= 2 frames"):
        classify_camera([np.zeros((8, 8, 3), np.uint8)])
