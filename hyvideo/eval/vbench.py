"""VBench's motion and quality dimensions for custom videos (Huang et al., "VBench", CVPR 2024), with local models.

Each function takes one video, ``[T, H, W, 3]`` uint8 RGB, and returns VBench's per-video figure; VBench's
set-level aggregation is in :func:`aggregate`. Formulas follow VBench's code (``vbench/<dimension>.py``); where a
model VBench downloads is replaced, the docstring says so.

- :func:`temporal_flickering`: ``(255 - mean_t MAE(frame_t, frame_t+1)) / 255`` on 8-bit values (as VBench). VBench
  scores only videos its static filter keeps (RAFT); we score what we are given.
- :func:`dynamic_degree`: VBench's rule on optical flow: frames taken every ``round(fps / 8)``, per pair the mean of
  the top 5 % flow magnitudes, threshold ``6 * max(1, 8 / fps) * min(H, W) / 256`` px, dynamic when at least
  ``round(4 * n / 16)`` pairs (n sampled frames, Python rounding) pass. Flow is OpenCV DIS (medium preset, on
  grayscale) instead of RAFT (20 iterations): magnitudes, hence decisions near the threshold, can differ.
- :func:`motion_smoothness`: VBench drops the odd frames, re-creates them by interpolating their even neighbours,
  and scores ``(255 - mean MAE(original, interpolated)) / 255``. VBench interpolates with AMT-S; we warp both
  neighbours to the midpoint along OpenCV DIS flow (the linear-motion midpoint flows of Super SloMo,
  Jiang et al. 2018, with t = 1/2) and average them. Values are lower than AMT's on real motion (a plainer
  interpolator) and equal (1.0) on static video.
- :func:`subject_consistency` (DINO ViT-B/16 in VBench) and :func:`background_consistency` (CLIP ViT-B/32): mean over
  frames t >= 1 of ``(max(0, cos(f_t-1, f_t)) + max(0, cos(f_0, f_t))) / 2`` on per-frame features of a local
  ``transformers`` folder (:class:`FrameFeatures`), with VBench's preprocessing (DINO: bilinear resize of the short
  side, no crop, ImageNet mean / std; CLIP: bicubic resize, centre crop, CLIP mean / std; both on the 8-bit frame,
  rounded back to 8 bits as torchvision does for uint8 tensors).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
DIMENSIONS = ("temporal_flickering", "dynamic_degree", "motion_smoothness", "subject_consistency",
              "background_consistency")


def _check_video(frames: torch.Tensor | np.ndarray, min_frames: int, what: str) -> np.ndarray:
    v = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"{what}: expected [T, H, W, 3] uint8 frames, got {v.shape} {v.dtype}")
    if v.shape[0] < min_frames:
        raise ValueError(f"{what} needs at least {min_frames} frames, got {v.shape[0]}")
    return v


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(cv2.absdiff(a.astype(np.float32), b.astype(np.float32)), dtype=np.float64))


def temporal_flickering(frames: torch.Tensor | np.ndarray) -> float:
    """VBench temporal flickering: ``(255 - mean MAE of consecutive frames) / 255``; 1.0 for a static video.

    Args:
        frames: ``[T, H, W, 3]`` uint8, T >= 2.
    """
    v = _check_video(frames, 2, "temporal flickering")
    return (255.0 - float(np.mean([_mae(v[i], v[i + 1]) for i in range(len(v) - 1)]))) / 255.0


def optical_flow(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """OpenCV DIS flow (medium preset) from ``frame0`` to ``frame1`` (``[H, W, 3]`` uint8 RGB): ``[H, W, 2]``
    float32 (dx, dy) in px."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    g0, g1 = (cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (frame0, frame1))
    return dis.calc(g0, g1, None)


def top5_flow_magnitude(flow: np.ndarray) -> float:
    """Mean of the largest 5 % (``int(H * W * 0.05)`` pixels) of the flow magnitudes, px (VBench ``get_score``)."""
    rad = np.sqrt(np.square(flow[..., 0].astype(np.float64)) + np.square(flow[..., 1].astype(np.float64)))
    cut = int(rad.size * 0.05)
    return float(np.mean(np.sort(rad.ravel())[::-1][:cut])) if cut > 0 else 0.0


def dynamic_degree(frames: torch.Tensor | np.ndarray, fps: float) -> dict:
    """VBench dynamic degree of one video (flow: OpenCV DIS instead of RAFT, see the module doc).

    Args:
        frames: ``[T, H, W, 3]`` uint8, T >= 2.
        fps: frame rate of ``frames``, frames per second (> 0).

    Returns:
        ``{"dynamic": bool, "pair_scores": [px...], "threshold_px": float, "pairs_needed": int,
        "frame_interval": int}``.

    Raises:
        ValueError: bad frames or fps.
    """
    v = _check_video(frames, 2, "dynamic degree")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    interval = max(1, round(fps / 8))
    sampled = v[::interval]
    thres = max(1.0, 8.0 / fps) * 6.0 * (min(v.shape[1:3]) / 256.0)
    needed = round(4 * (len(sampled) / 16.0))  # Python rounding, as VBench (2 sampled frames -> 0 -> dynamic)
    scores = [top5_flow_magnitude(optical_flow(a, b)) for a, b in itertools.pairwise(sampled)]
    return {"dynamic": sum(s > thres for s in scores) >= needed, "pair_scores": scores, "threshold_px": thres,
            "pairs_needed": needed, "frame_interval": interval}


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(x) = img(x + flow(x))`` (bilinear, border replicated), float32."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate_midpoint(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """Frame halfway between two ``[H, W, 3]`` uint8 frames: both warped to t = 1/2 along DIS flow and averaged.

    Midpoint flows (Super SloMo eq. 4, t = 1/2): ``F_t0 = -F01 / 4 + F10 / 4``, ``F_t1 = F01 / 4 - F10 / 4``.
    """
    f01, f10 = optical_flow(frame0, frame1), optical_flow(frame1, frame0)
    ft0, ft1 = 0.25 * (f10 - f01), 0.25 * (f01 - f10)
    mid = 0.5 * (_warp(frame0, ft0) + _warp(frame1, ft1))
    return np.clip(np.rint(mid), 0, 255).astype(np.uint8)


def motion_smoothness(frames: torch.Tensor | np.ndarray) -> float:
    """VBench motion smoothness with a flow-warp interpolator instead of AMT-S (see the module doc).

    Args:
        frames: ``[T, H, W, 3]`` uint8, T >= 3 (at least one odd frame between two even ones).
    """
    v = _check_video(frames, 3, "motion smoothness")
    even = v[0::2]
    diffs = [float(np.mean(cv2.absdiff(v[2 * i + 1], interpolate_midpoint(a, b))))
             for i, (a, b) in enumerate(itertools.pairwise(even))]
    return (255.0 - float(np.mean(diffs))) / 255.0


class FrameFeatures:
    """Per-frame features of a local ``transformers`` image model, preprocessed as VBench does.

    Args:
        folder: a CLIP folder (``model_type`` ``clip``: projected image embedding, VBench's background model) or a
            ViT / DINOv2 folder (e.g. ``facebook/dino-vitb16``: the final-norm CLS token, VBench's subject model).
        device: where the model runs.

    Raises:
        FileNotFoundError: no ``config.json`` in ``folder``.
    """

    def __init__(self, folder: str | os.PathLike, device: str | torch.device = "cpu"):
        folder = Path(folder)
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"feature model folder {folder} has no config.json (expected a transformers "
                                    "DINO / ViT folder such as facebook/dino-vitb16, or a CLIP folder)")
        self.model_type = json.loads(cfg_file.read_text()).get("model_type", "")
        self.device = torch.device(device)
        if self.model_type == "clip":
            from transformers import CLIPModel  # noqa: PLC0415

            self.model = CLIPModel.from_pretrained(folder, local_files_only=True)
            self.size = self.model.config.vision_config.image_size
            self.mean, self.std, self.mode, self.crop = CLIP_MEAN, CLIP_STD, "bicubic", True
        else:
            from transformers import AutoModel  # noqa: PLC0415

            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
            self.size = self.model.config.image_size
            self.mean, self.std, self.mode, self.crop = IMAGENET_MEAN, IMAGENET_STD, "bilinear", False
        self.model = self.model.to(self.device).eval()
        self.source = str(folder)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, H, W, 3]`` uint8 -> ``[N, 3, h, w]`` float32: short side resized to ``size`` (VBench's torchvision
        ``Resize`` on uint8 tensors: no antialias, rounded to 8 bits), centre-cropped for CLIP, normalised."""
        x = frames.permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        short, long_ = (h, w) if h <= w else (w, h)
        new_long = int(self.size * long_ / short)  # torchvision's rule for an int size
        new = (self.size, new_long) if h <= w else (new_long, self.size)
        x = F.interpolate(x, size=new, mode=self.mode, align_corners=False, antialias=False).round().clamp(0, 255)
        if self.crop:
            top, left = round((new[0] - self.size) / 2.0), round((new[1] - self.size) / 2.0)
            x = x[..., top:top + self.size, left:left + self.size]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Unit-norm features ``[N, D]`` float32 (CPU) of ``[N, H, W, 3]`` uint8 frames."""
        out = []
        for i in range(0, frames.shape[0], batch_size):
            x = self.preprocess(frames[i:i + batch_size]).to(self.device)
            if self.model_type == "clip":
                e = self.model.get_image_features(x)
                e = e if isinstance(e, torch.Tensor) else e.pooler_output  # transformers >= 5: a ModelOutput
            else:
                kwargs = {"interpolate_pos_encoding": True} if self.model_type == "vit" else {}
                e = self.model(pixel_values=x, **kwargs).last_hidden_state[:, 0]
            out.append(F.normalize(e.float(), dim=-1, p=2).cpu())
        return torch.cat(out)


def feature_consistency(features: torch.Tensor) -> tuple[float, int]:
    """VBench's consistency sum over frames t >= 1 of ``(max(0, cos(f_t-1, f_t)) + max(0, cos(f_0, f_t))) / 2``.

    Args:
        features: ``[T, D]`` per-frame features (T >= 2).

    Returns:
        ``(sum, T - 1)``: the video's score is ``sum / (T - 1)``; VBench's set score is the sum of sums over the sum
        of counts.
    """
    f = F.normalize(features.double(), dim=-1)
    prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0)
    first = (f[1:] * f[:1]).sum(-1).clamp(min=0)
    return float(((prev + first) / 2).sum()), f.shape[0] - 1


def subject_consistency(frames: torch.Tensor, model: FrameFeatures) -> tuple[float, int]:
    """VBench subject consistency (a DINO folder): ``(sum, count)`` of :func:`feature_consistency`."""
    _check_video(frames, 2, "subject consistency")
    return feature_consistency(model(torch.as_tensor(frames)))


def background_consistency(frames: torch.Tensor, model: FrameFeatures) -> tuple[float, int]:
    """VBench background consistency (a CLIP folder): ``(sum, count)`` of :func:`feature_consistency`."""
    _check_video(frames, 2, "background consistency")
    return feature_consistency(model(torch.as_tensor(frames)))


def aggregate(dimension: str, per_video: list) -> float:
    """VBench's set score: the mean over videos, except the two consistencies (sum of sums / sum of counts,
    i.e. a frame-weighted mean) and dynamic degree (the fraction of dynamic videos)."""
    if not per_video:
        raise ValueError(f"no videos scored for {dimension}")
    if dimension in ("subject_consistency", "background_consistency"):
        return sum(s for s, _ in per_video) / sum(n for _, n in per_video)
    if dimension == "dynamic_degree":
        return float(np.mean([r["dynamic"] for r in per_video]))
    return float(np.mean(per_video))
