"""Evaluation: VAE reconstruction, paired frame metrics, FVD, CLIP score and VBench-style dimensions.

Library entry points (``scripts/evaluate.py`` is their CLI; see ``docs/evaluation.md``):

- :func:`hyvideo.eval.frame_metrics.frame_metrics` ``(ref, cand, lpips=...)``: per-frame PSNR (dB), SSIM, LPIPS of
  two ``[T, H, W, 3]`` uint8 videos.
- :func:`hyvideo.eval.vae_recon.load_eval_vae` / :func:`hyvideo.eval.vae_recon.vae_reconstruction`
  ``(vae, items, num_frames=..., size=...)``: reconstruction metrics of any VAE we load;
  :func:`hyvideo.eval.vae_recon.reconstruct_frames` ``(vae, frames)`` for in-memory clips (one, or a batch).
- :func:`hyvideo.eval.fvd.fvd` ``(real_videos, fake_videos, feature_model)`` with
  :func:`hyvideo.eval.fvd.load_feature_model` (local I3D TorchScript or VideoMAE folder).
- :func:`hyvideo.eval.clip_score.clip_score` ``(videos, prompts, clip_dir)``.
- :mod:`hyvideo.eval.vbench`: temporal flickering, dynamic degree, motion smoothness, subject / background
  consistency.

Nothing is imported until used, so ``import hyvideo.eval`` is cheap.
"""

_LAZY = {
    "frame_metrics": "hyvideo.eval.frame_metrics",
    "load_lpips": "hyvideo.eval.frame_metrics",
    "load_eval_vae": "hyvideo.eval.vae_recon",
    "vae_reconstruction": "hyvideo.eval.vae_recon",
    "reconstruct_frames": "hyvideo.eval.vae_recon",
    "fvd": "hyvideo.eval.fvd",
    "fvd_from_features": "hyvideo.eval.fvd",
    "load_feature_model": "hyvideo.eval.fvd",
    "clip_score": "hyvideo.eval.clip_score",
    "CLIPScorer": "hyvideo.eval.clip_score",
    "FrameFeatures": "hyvideo.eval.vbench",
    "list_media": "hyvideo.eval.media",
    "read_frames": "hyvideo.eval.media",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hyvideo.eval' has no attribute {name!r}")
