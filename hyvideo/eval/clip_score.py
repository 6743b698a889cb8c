"""CLIP score of video frames against their prompt (Hessel et al. 2021, torchmetrics' ``CLIPScore`` scale).

Per frame: ``100 * max(cos(E_image, E_text), 0)`` with ``E`` the projected CLIP embeddings of a local
``transformers`` CLIP folder (model + processor; the folder's ``CLIPProcessor`` does the resize / crop /
normalisation exactly as torchmetrics does when it is handed that folder's model and processor). A video's score is
the mean over its scored frames, the set's score the mean over videos. Differences from torchmetrics'
``CLIPScore``: torchmetrics clamps at 0 after averaging, we clamp each frame (the per-image definition of the
paper; the two agree whenever no cosine is negative, always the case with trained CLIP models); prompts longer than
77 tokens are truncated by the tokenizer (keeping the end-of-text token) where torchmetrics cuts the token ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def _embedding(out) -> torch.Tensor:
    """transformers < 5 returns the projected embedding, >= 5 a ModelOutput holding it as ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class CLIPScorer:
    """A local CLIP model + processor that embeds frames and prompts.

    Args:
        clip_dir: folder with a ``CLIPModel`` (``config.json`` + weights) and its processor / tokenizer files
            (e.g. a download of ``openai/clip-vit-large-patch14``, or the release's ``text_encoder_2`` when it
            holds the full CLIP model and the image processor config).
        device: where the model runs.

    Raises:
        FileNotFoundError: ``clip_dir`` has no ``config.json`` or no ``preprocessor_config.json`` /
            ``processor_config.json`` (the image processor).
    """

    def __init__(self, clip_dir: str | os.PathLike, device: str | torch.device = "cpu"):
        from transformers import CLIPModel, CLIPProcessor  # noqa: PLC0415

        clip_dir = Path(clip_dir)
        if not (clip_dir / "config.json").is_file():
            raise FileNotFoundError(f"CLIP folder {clip_dir} has no config.json (expected a transformers CLIPModel "
                                    "folder such as openai/clip-vit-large-patch14)")
        if not any((clip_dir / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
            raise FileNotFoundError(f"CLIP folder {clip_dir} has no preprocessor_config.json / processor_config.json "
                                    "(the image processor); a text-only CLIP folder cannot score images")
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
        self.source = str(clip_dir)

    @torch.no_grad()
    def image_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``[N, D]`` float32 of ``[N, H, W, 3]`` uint8 RGB frames."""
        images = list(frames.permute(0, 3, 1, 2).cpu())  # [C, H, W] each, as torchmetrics hands them over
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        e = _embedding(self.model.get_image_features(pixels)).float()
        return e / e.norm(p=2, dim=-1, keepdim=True)

    @torch.no_grad()
    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings ``[N, D]`` float32 of prompts (truncated to the model's max positions)."""
        max_len = self.model.config.text_config.max_position_embeddings
        tok = self.processor(text=list(prompts), return_tensors="pt", padding=True, truncation=True,
                             max_length=max_len)
        e = _embedding(self.model.get_text_features(tok["input_ids"].to(self.device),
                                                    tok["attention_mask"].to(self.device))).float()
        return e / e.norm(p=2, dim=-1, keepdim=True)

    def frame_scores(self, frames: torch.Tensor, prompt: str, *, batch_size: int = 32) -> np.ndarray:
        """``100 * max(cos, 0)`` of each frame ``[N, H, W, 3]`` uint8 against ``prompt``: ``[N]`` float64."""
        text = self.text_embeddings([prompt])
        cos = torch.cat([self.image_embeddings(frames[i:i + batch_size]) @ text.T
                         for i in range(0, frames.shape[0], batch_size)])[:, 0]
        scores = (100.0 * cos).clamp(min=0).double().cpu().numpy()
        if not np.isfinite(scores).all():
            raise ValueError(f"non-finite CLIP scores for prompt {prompt!r}")
        return scores


def sample_frames(num_frames: int, max_frames: int | None) -> list[int]:
    """Frame indices scored: all, or ``max_frames`` evenly spaced ones (first and last included)."""
    if max_frames is None or max_frames >= num_frames:
        return list(range(num_frames))
    return sorted(set(np.linspace(0, num_frames - 1, max_frames).round().astype(int).tolist()))


def clip_score(videos: Sequence[torch.Tensor], prompts: Sequence[str], clip: CLIPScorer | str | os.PathLike, *,
               max_frames: int | None = None, names: Sequence[str] | None = None) -> dict:
    """CLIP score of each video (mean over frames) and of the set (mean over videos).

    Args:
        videos: ``[T, H, W, 3]`` uint8 RGB videos.
        prompts: one prompt per video.
        clip: a :class:`CLIPScorer` or a local CLIP folder.
        max_frames: score only this many evenly spaced frames per video (None = every frame).
        names: video names for the result (default ``video_<i>``).

    Returns:
        ``{"clip_score": float, "videos": [{"name", "prompt", "clip_score", "frames": [index...],
        "per_frame": [score...]}]}``, scores on the 0-100 scale.

    Raises:
        ValueError: counts differ, an empty prompt, or no videos.
    """
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
    if not videos:
        raise ValueError("no videos to score")
    scorer = clip if isinstance(clip, CLIPScorer) else CLIPScorer(clip)
    rows = []
    for i, (video, prompt) in enumerate(zip(videos, prompts)):
        if not prompt or not prompt.strip():
            raise ValueError(f"empty prompt for {names[i] if names else f'video {i}'}")
        idx = sample_frames(video.shape[0], max_frames)
        s = scorer.frame_scores(video[idx], prompt)
        rows.append({"name": names[i] if names else f"video_{i}", "prompt": prompt, "clip_score": float(s.mean()),
                     "frames": idx, "per_frame": s.tolist()})
    return {"clip_score": float(np.mean([r["clip_score"] for r in rows])), "videos": rows}
