"""VBench-style dimensions: known cases (static / moving video) and direct computations of VBench's formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyvideo.eval import vbench
from tests.eval.conftest import moving_square, static_video


def test_temporal_flickering():
    assert vbench.temporal_flickering(static_video()) == 1.0
    v = moving_square().numpy()
    mae = np.mean([np.abs(v[i].astype(np.float64) - v[i + 1]).mean() for i in range(len(v) - 1)])
    assert vbench.temporal_flickering(v) == pytest.approx((255 - mae) / 255, abs=1e-9)
    assert vbench.temporal_flickering(v) < 1.0


def test_dynamic_degree_static_vs_moving_square():
    still = vbench.dynamic_degree(static_video(), fps=8.0)
    assert not still["dynamic"] and max(still["pair_scores"]) < 0.1
    moving = vbench.dynamic_degree(moving_square(step=3), fps=8.0)
    # VBench's rule at 64 px, 8 fps: threshold 6 * 64 / 256 = 1.5 px, round(4 * 13 / 16) = 3 pairs needed.
    assert moving["threshold_px"] == 1.5 and moving["pairs_needed"] == 3 and moving["frame_interval"] == 1
    assert moving["dynamic"]
    assert 2.0 < np.median(moving["pair_scores"]) < 3.5  # the square moves 3 px per frame
    # At 24 fps VBench keeps every 3rd frame (interval round(24 / 8)): 9 px between kept frames.
    fast = vbench.dynamic_degree(moving_square(step=3), fps=24.0)
    assert fast["frame_interval"] == 3 and len(fast["pair_scores"]) == 4 and fast["pairs_needed"] == 1
    assert 7.0 < np.median(fast["pair_scores"]) < 10.0


def test_top5_flow_magnitude_definition():
    flow = np.zeros((20, 10, 2), np.float32)
    flow[:2, :5, 0] = 3.0  # 10 pixels = the top 5 % of 200 pixels
    flow[:2, :5, 1] = 4.0
    assert vbench.top5_flow_magnitude(flow) == pytest.approx(5.0)


def test_motion_smoothness():
    assert vbench.motion_smoothness(static_video()) == 1.0
    smooth = vbench.motion_smoothness(moving_square(step=2))
    g = torch.Generator().manual_seed(0)
    noise = vbench.motion_smoothness(torch.randint(0, 256, (13, 64, 64, 3), generator=g, dtype=torch.uint8))
    assert smooth > 0.98 and noise < 0.8
    v = moving_square(step=2).numpy()
    mid = vbench.interpolate_midpoint(v[0], v[2])
    blend = (v[0].astype(np.float64) + v[2]) / 2  # what a flow-free interpolator would do
    assert np.abs(mid.astype(np.float64) - v[1]).mean() < 0.6 * np.abs(blend - v[1]).mean()


def _vbench_loop(features: torch.Tensor) -> tuple[float, int]:
    """VBench subject_consistency.py's per-frame loop, verbatim in structure."""
    video_sim, cnt, first, former = 0.0, 0, None, None
    for i in range(len(features)):
        f = F.normalize(features[i:i + 1], dim=-1, p=2)
        if i == 0:
            first = f
        else:
            sim_pre = max(0.0, F.cosine_similarity(former, f).item())
            sim_fir = max(0.0, F.cosine_similarity(first, f).item())
            video_sim += (sim_pre + sim_fir) / 2
            cnt += 1
        former = f
    return video_sim, cnt


@pytest.mark.parametrize("kind", ["dino", "clip"])
def test_consistency_matches_vbench_formula(kind, tiny_vit, tiny_clip):
    model = vbench.FrameFeatures(tiny_vit if kind == "dino" else tiny_clip)
    frames = moving_square(num_frames=6, size=32, side=8, step=3)  # 32 px = the models' input: no resize
    mean, std = (vbench.IMAGENET_MEAN, vbench.IMAGENET_STD) if kind == "dino" else (vbench.CLIP_MEAN, vbench.CLIP_STD)
    x = (frames.permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    with torch.no_grad():
        if kind == "dino":
            direct = model.model(pixel_values=x).last_hidden_state[:, 0]
        else:
            out = model.model.get_image_features(x)
            direct = out if isinstance(out, torch.Tensor) else out.pooler_output
    ref_sum, ref_cnt = _vbench_loop(direct)
    fn = vbench.subject_consistency if kind == "dino" else vbench.background_consistency
    got_sum, got_cnt = fn(frames, model)
    assert got_cnt == ref_cnt == 5 and got_sum == pytest.approx(ref_sum, abs=1e-5)
    s, n = fn(static_video(num_frames=4, size=32), model)
    assert s / n == pytest.approx(1.0, abs=1e-6)


def test_preprocess_sizes(tiny_vit, tiny_clip):
    frames = torch.randint(0, 256, (2, 40, 64, 3), dtype=torch.uint8)
    assert vbench.FrameFeatures(tiny_vit).preprocess(frames).shape == (2, 3, 32, 51)  # short side 32, no crop
    assert vbench.FrameFeatures(tiny_clip).preprocess(frames).shape == (2, 3, 32, 32)  # centre crop
    assert vbench.FrameFeatures(tiny_vit)(frames).shape == (2, 32)  # non-square input: interpolated positions


def test_aggregate_and_errors(tmp_path):
    assert vbench.aggregate("subject_consistency", [(3.0, 4), (1.0, 1)]) == pytest.approx(0.8)
    assert vbench.aggregate("dynamic_degree", [{"dynamic": True}, {"dynamic": False}]) == 0.5
    assert vbench.aggregate("temporal_flickering", [0.9, 0.7]) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least 2 frames"):
        vbench.temporal_flickering(static_video(num_frames=1))
    with pytest.raises(ValueError, match="fps must be > 0"):
        vbench.dynamic_degree(static_video(), fps=0)
    with pytest.raises(ValueError, match="uint8"):
        vbench.motion_smoothness(static_video().float())
    with pytest.raises(FileNotFoundError, match="config.json"):
        vbench.FrameFeatures(tmp_path)
