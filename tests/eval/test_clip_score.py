"""CLIP score against torchmetrics' ``CLIPScore`` on the same local tiny CLIP (model + processor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyvideo.eval.clip_score import CLIPScorer, clip_score, sample_frames

TOL = 1e-4  # acceptance bound on the 0-100 scale; measured ~1e-6 (fp32)
# With the tiny CLIP (seed 2), random frames have cosine ~+0.2 with POSITIVE and ~-0.2 with NEGATIVE.
POSITIVE = "Close-up of a woman smiling, soft warm light, shallow depth of field."
NEGATIVE = "A cat walks on the grass, realistic style."


class _V5Shim(torch.nn.Module):
    """transformers >= 5 returns a ModelOutput from ``get_*_features``; torchmetrics 1.9 expects the tensor. The shim
    only unwraps ``pooler_output`` (the projected embedding); torchmetrics does everything else."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        out = self.model.get_image_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, *args, **kwargs):
        out = self.model.get_text_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def _video(seed, t=5, h=40, w=56):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), generator=g, dtype=torch.uint8)


def test_matches_torchmetrics_clipscore(tiny_clip):
    from torchmetrics.multimodal.clip_score import CLIPScore

    scorer = CLIPScorer(tiny_clip)
    videos = [_video(0), _video(1, t=3)]
    prompts = [POSITIVE, NEGATIVE]
    ours = clip_score(videos, prompts, scorer)
    metric = CLIPScore(model_name_or_path=lambda: (_V5Shim(scorer.model), scorer.processor))
    for video, prompt, row in zip(videos, prompts, ours["videos"]):
        ref = []
        for frame in video:  # one pair per update: torchmetrics clamps after averaging, we clamp per frame
            metric.reset()
            metric.update([frame.permute(2, 0, 1)], [prompt])
            ref.append(metric.compute().item())
        assert np.abs(np.array(row["per_frame"]) - np.array(ref)).max() < TOL
        assert row["clip_score"] == pytest.approx(np.mean(ref), abs=TOL)
    assert ours["clip_score"] == pytest.approx(np.mean([r["clip_score"] for r in ours["videos"]]))
    # Both branches of max(100 cos, 0) were compared: a video of positive and one of clamped (zero) scores.
    assert min(ours["videos"][0]["per_frame"]) > 5.0 and max(ours["videos"][1]["per_frame"]) == 0.0


def test_scores_follow_the_prompt(tiny_clip):
    scorer = CLIPScorer(tiny_clip)
    frames = _video(3, t=2)
    a = scorer.frame_scores(frames, POSITIVE)
    b = scorer.frame_scores(frames, "An astronaut rides a horse on the moon, cinematic, 4k.")
    assert a.shape == (2,) and (a > 0).all() and (b > 0).all() and np.abs(a - b).min() > 0.1


def test_sampling_and_errors(tiny_clip, tmp_path):
    assert sample_frames(5, None) == [0, 1, 2, 3, 4] and sample_frames(9, 3) == [0, 4, 8]
    with pytest.raises(ValueError, match="2 videos but 1 prompts"):
        clip_score([_video(0), _video(1)], ["a"], tiny_clip)
    with pytest.raises(ValueError, match="empty prompt"):
        clip_score([_video(0)], ["  "], tiny_clip)
    with pytest.raises(FileNotFoundError, match="config.json"):
        CLIPScorer(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        CLIPScorer(tmp_path)
