"""Fréchet Video Distance (Unterthiner et al. 2018) with the StyleGAN-V / cd-fvd protocol.

Protocol (what :func:`fvd` does, and what ``scripts/evaluate.py fvd`` runs):

1. One clip per video: its first ``clip_frames`` consecutive frames (16 for I3D; a VideoMAE folder's
   ``config.num_frames``). Shorter videos are an error, not padded.
2. Frames are resized to ``size x size`` (224) with bilinear interpolation (``align_corners=False``, no
   antialias, aspect not kept: cd-fvd's ``preprocess_i3d``), from 8-bit RGB.
3. Features:
   - I3D (Kinetics-400), StyleGAN-V's TorchScript port ``i3d_torchscript.pt`` of the tf.hub model used by the
     original FVD: input in [-1, 1], called as ``model(x, rescale=False, resize=False, return_features=True)``,
     which returns the **400-d logits** (the layer before the softmax; what the original FVD, StyleGAN-V and
     cd-fvd compare). Not the 1024/2048-d pool features.
   - VideoMAE (cd-fvd's ``videomae`` option, the content-debiased variant): a ``transformers`` VideoMAE folder.
     Input in [0, 1], normalised with the folder's ``preprocessor_config.json`` mean / std when it says
     ``do_normalize`` (cd-fvd's VideoMAE-v2 weights take un-normalised [0, 1] input; a folder without a
     preprocessor config is treated the same way). Feature: ``fc_norm(mean over tokens)`` for a
     ``VideoMAEForVideoClassification`` folder (cd-fvd's ``forward_features``), the token mean for a bare
     ``VideoMAEModel``. cd-fvd's own ViT-g VideoMAE-v2 checkpoint is not a transformers folder and is not loaded.
4. Gaussian statistics in float64: mean and the **biased** covariance (divide by N), as StyleGAN-V's and cd-fvd's
   ``FeatureStats.get_mean_cov``.
5. ``FVD = |mu_r - mu_f|^2 + Tr(S_r + S_f - 2 sqrtm(S_r S_f))`` with ``scipy.linalg.sqrtm`` and the real part
   taken, exactly cd-fvd's ``compute_fvd_from_stats``.

FVD numbers are only comparable at equal numbers of videos (2048 in StyleGAN-V's ``fvd2048_16f``), equal clip
length and equal feature model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

I3D_FILE = "i3d_torchscript.pt"
I3D_CLIP_FRAMES = 16
I3D_SIZE = 224


class FeatureModel:
    """A video feature extractor for FVD: uint8 clips in, one feature vector per clip out.

    Attributes:
        kind: ``"i3d"`` or ``"videomae"``.
        clip_frames: frames per clip the model takes.
        size: square input side in px.
        source: where the weights came from.
    """

    def __init__(self, kind: str, net, *, clip_frames: int, size: int, source: str, device="cpu",
                 mean=None, std=None, classifier_head: bool = False):
        self.kind, self.net, self.clip_frames, self.size, self.source = kind, net, clip_frames, size, source
        self.device = torch.device(device)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1)
        self.classifier_head = classifier_head

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, T, H, W, 3]`` uint8 -> ``[B, 3, T, size, size]`` float32: [-1, 1] for I3D, [0, 1] (then the
        folder's normalisation) for VideoMAE; bilinear resize as cd-fvd's ``preprocess_i3d``."""
        b, t, h, w, c = clips.shape
        x = clips.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = x.view(b, t, c, self.size, self.size).transpose(1, 2)  # [B, 3, T, size, size]
        if self.kind == "i3d":
            return 2.0 * x / 255.0 - 1.0
        x = x / 255.0
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """Features of ``[B, T, H, W, 3]`` uint8 clips (T = ``clip_frames``): ``[B, D]`` float64 on the CPU.

        Raises:
            ValueError: wrong clip shape, or the model returned non-finite features.
        """
        if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[1] != self.clip_frames:
            raise ValueError(f"expected [B, {self.clip_frames}, H, W, 3] uint8 clips, got {tuple(clips.shape)} "
                             f"{clips.dtype}")
        return self.features(self.preprocess(clips))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of preprocessed clips ``[B, 3, T, size, size]``: ``[B, D]`` float64 on the CPU.

        Raises:
            ValueError: the model returned non-finite features or not ``[B, D]``.
        """
        x = x.to(self.device)
        if self.kind == "i3d":
            feats = self.net(x, rescale=False, resize=False, return_features=True)
        else:
            net = self.net.videomae if self.classifier_head else self.net
            feats = net(pixel_values=x.transpose(1, 2)).last_hidden_state.mean(1)  # VideoMAE takes [B, T, C, H, W]
            if self.classifier_head and self.net.fc_norm is not None:
                feats = self.net.fc_norm(feats)
        feats = feats.double().cpu()
        if feats.ndim != 2 or not torch.isfinite(feats).all():
            raise ValueError(f"{self.kind} model returned {tuple(feats.shape)} features: non-finite values or "
                             "not [B, D]")
        return feats


def load_feature_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> FeatureModel:
    """Load an FVD feature model from a local path (nothing is downloaded).

    Args:
        path: StyleGAN-V's TorchScript I3D file (``i3d_torchscript.pt``), a folder holding it, or a transformers
            VideoMAE folder (``config.json`` with ``model_type: videomae``).
        device: where the model runs.

    Raises:
        FileNotFoundError: nothing usable at ``path`` (the message names the expected files).
    """
    path = Path(path)
    if path.is_dir() and (path / I3D_FILE).is_file():
        path = path / I3D_FILE
    if path.is_file():
        try:
            net = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as e:
            raise FileNotFoundError(f"{path} is not a TorchScript file; FVD needs StyleGAN-V's TorchScript I3D "
                                    f"({I3D_FILE}) or a transformers VideoMAE folder") from e
        return FeatureModel("i3d", net, clip_frames=I3D_CLIP_FRAMES, size=I3D_SIZE, source=str(path), device=device)
    cfg_file = path / "config.json"
    if path.is_dir() and cfg_file.is_file() and json.loads(cfg_file.read_text()).get("model_type") == "videomae":
        return _load_videomae(path, device)
    raise FileNotFoundError(
        f"no FVD feature model at {path}: expected StyleGAN-V's TorchScript I3D file '{I3D_FILE}' (Kinetics-400, "
        "the standard FVD model) or a folder holding it, or a transformers VideoMAE folder (config.json with "
        "model_type 'videomae')")


def _load_videomae(folder: Path, device) -> FeatureModel:
    from transformers import VideoMAEForVideoClassification, VideoMAEModel  # noqa: PLC0415

    cfg = json.loads((folder / "config.json").read_text())
    head = "VideoMAEForVideoClassification" in (cfg.get("architectures") or [])
    cls = VideoMAEForVideoClassification if head else VideoMAEModel
    net = cls.from_pretrained(folder, local_files_only=True).to(device).eval()
    mean = std = None
    proc_file = folder / "preprocessor_config.json"
    if proc_file.is_file():
        proc = json.loads(proc_file.read_text())
        if proc.get("do_normalize", False):
            mean, std = proc["image_mean"], proc["image_std"]
    return FeatureModel("videomae", net, clip_frames=net.config.num_frames, size=net.config.image_size,
                        source=str(folder), device=device, mean=mean, std=std, classifier_head=head)


def video_features(videos: Iterable[torch.Tensor], model: FeatureModel, *, batch_size: int = 8,
                   names: Sequence[str] | None = None) -> np.ndarray:
    """Features of the first ``model.clip_frames`` frames of each video.

    Args:
        videos: ``[T, H, W, 3]`` uint8 RGB videos (T >= ``clip_frames``; sizes may differ between videos).
        model: from :func:`load_feature_model`.
        batch_size: clips per forward pass.
        names: names for error messages.

    Returns:
        ``[N, D]`` float64.

    Raises:
        ValueError: a video is too short or not uint8 ``[T, H, W, 3]``; no videos.
    """
    feats, batch = [], []
    for i, v in enumerate(videos):
        name = names[i] if names is not None else f"video {i}"
        if v.dtype != torch.uint8 or v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"{name}: expected [T, H, W, 3] uint8, got {tuple(v.shape)} {v.dtype}")
        if v.shape[0] < model.clip_frames:
            raise ValueError(f"{name} has {v.shape[0]} frames; the {model.kind} FVD protocol needs "
                             f"{model.clip_frames}")
        # resize before batching so videos of different sizes can share a batch
        batch.append(model.preprocess(v[None, : model.clip_frames]))
        if len(batch) == batch_size:
            feats.append(model.features(torch.cat(batch)))
            batch = []
    if batch:
        feats.append(model.features(torch.cat(batch)))
    if not feats:
        raise ValueError("no videos to compute features of")
    return torch.cat(feats).numpy()


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and biased covariance ``[D, D]`` (divide by N) of ``[N, D]`` features, in float64."""
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need [N, D] features with N >= 2, got shape {x.shape}")
    mu = x.mean(0)
    return mu, x.T @ x / x.shape[0] - np.outer(mu, mu)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (cd-fvd's ``compute_fvd_from_stats``).

    Raises:
        ValueError: shapes differ, or the result is not finite.
    """
    import scipy.linalg  # noqa: PLC0415

    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature dims differ: {mu1.shape} vs {mu2.shape}")
    m = np.square(mu1 - mu2).sum()
    s = scipy.linalg.sqrtm(sigma1 @ sigma2)  # cd-fvd passes disp=False (deprecated in SciPy 1.17): same value
    fd = float(np.real(m + np.trace(sigma1 + sigma2 - 2.0 * s)))
    if not np.isfinite(fd):
        raise ValueError("Fréchet distance is not finite (degenerate covariance?)")
    return fd


def fvd_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FVD between two ``[N, D]`` feature sets (:func:`gaussian_stats` then :func:`frechet_distance`)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def fvd(real_videos: Iterable[torch.Tensor], fake_videos: Iterable[torch.Tensor], feature_model: FeatureModel,
        *, batch_size: int = 8) -> dict:
    """FVD between two sets of videos with the protocol of the module doc.

    Args:
        real_videos: ``[T, H, W, 3]`` uint8 RGB videos.
        fake_videos: same, the generated ones.
        feature_model: :func:`load_feature_model` result.
        batch_size: clips per forward pass.

    Returns:
        ``{"fvd": float, "num_real": int, "num_fake": int, "feature_dim": int, "clip_frames": int,
        "size": int, "model": str}``.
    """
    real = video_features(real_videos, feature_model, batch_size=batch_size)
    fake = video_features(fake_videos, feature_model, batch_size=batch_size)
    return {"fvd": fvd_from_features(real, fake), "num_real": len(real), "num_fake": len(fake),
            "feature_dim": int(real.shape[1]), "clip_frames": feature_model.clip_frames, "size": feature_model.size,
            "model": f"{feature_model.kind}:{feature_model.source}"}
