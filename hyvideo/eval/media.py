"""Evaluation inputs: list videos / images in a folder or manifest and read them as uint8 RGB frames.

Decoding is PyAV (:func:`hyvideo.utils.video_io.read_video`) for videos and Pillow for images; resizing reuses the
training crop (:func:`hyvideo.data.buckets.resize_crop`: bilinear resize to cover, centre crop), rounded back to
8-bit so every metric sees the same 8-bit frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VIDEO_EXTS = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif", ".m4v"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class MediaItem:
    """One video or image to evaluate.

    Attributes:
        name: key used in reports and to pair files (the file name, or ``name@start`` for manifest spans).
        path: the file.
        start_frame: first frame (0-based, decode order); 0 for images.
        end_frame: end of the span (exclusive), None = end of file.
    """

    name: str
    path: Path
    start_frame: int = 0
    end_frame: int | None = None

    @property
    def is_image(self) -> bool:
        return self.path.suffix.lower() in IMAGE_EXTS


def list_media(source: str | os.PathLike, *, videos_only: bool = False) -> list[MediaItem]:
    """Videos and images of a folder (not recursive, sorted by name) or of a JSONL / Parquet manifest.

    Args:
        source: a folder, or a manifest read by :func:`hyvideo.data.manifest.read_manifest` (its ``path``,
            ``start_frame``, ``end_frame`` fields are used).
        videos_only: drop images (FVD and the VBench dimensions need frames in time).

    Returns:
        The items, at least one.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: nothing to evaluate in ``source``.
    """
    source = Path(source)
    if source.is_dir():
        exts = VIDEO_EXTS if videos_only else VIDEO_EXTS | IMAGE_EXTS
        items = [MediaItem(p.name, p) for p in sorted(source.iterdir()) if p.is_file() and p.suffix.lower() in exts]
    elif source.is_file():
        from hyvideo.data.manifest import read_manifest  # noqa: PLC0415

        items = []
        for rec in read_manifest(source):
            path = Path(rec.path)
            if videos_only and path.suffix.lower() in IMAGE_EXTS:
                continue
            name = path.name if rec.start_frame == 0 and rec.end_frame is None else f"{path.name}@{rec.start_frame}"
            items.append(MediaItem(name, path, rec.start_frame, rec.end_frame))
    else:
        raise FileNotFoundError(f"input folder or manifest not found: {source}")
    if not items:
        kinds = "videos" if videos_only else "videos or images"
        raise ValueError(f"no {kinds} in {source} (extensions: {sorted(VIDEO_EXTS | IMAGE_EXTS)})")
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{source}: duplicate item names {dup[:5]}; results are keyed by name")
    return items


def count_frames(item: MediaItem) -> int:
    """Frames available in ``item`` from its start frame (1 for images)."""
    if item.is_image:
        return 1
    from hyvideo.data.curation.video import probe  # noqa: PLC0415

    total = probe(item.path).num_frames
    end = total if item.end_frame is None else min(item.end_frame, total)
    return max(0, end - item.start_frame)


def read_frames(item: MediaItem, num_frames: int | None = None) -> torch.Tensor:
    """Decode ``num_frames`` frames of ``item`` from its start frame (None = the whole span).

    Returns:
        ``[T, H, W, 3]`` uint8 RGB (``T = 1`` for images).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: fewer frames than asked.
    """
    if item.is_image:
        from PIL import Image  # noqa: PLC0415

        if not item.path.is_file():
            raise FileNotFoundError(f"image not found: {item.path}")
        with Image.open(item.path) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy())[None]
    from hyvideo.utils.video_io import read_video  # noqa: PLC0415

    if num_frames is None and item.end_frame is not None:
        num_frames = item.end_frame - item.start_frame
    return read_video(item.path, start_frame=item.start_frame, num_frames=num_frames)


def resize_frames(frames: torch.Tensor, size: tuple[int, int] | None, multiple: int = 1) -> torch.Tensor:
    """Resize-to-cover and centre-crop to ``size``, or (``size`` None) centre-crop to a multiple of ``multiple``.

    Args:
        frames: ``[T, H, W, 3]`` uint8.
        size: ``(h, w)`` in px, or None to keep the native size.
        multiple: with ``size`` None, crop H and W down to multiples of this (a VAE's spatial factor).

    Returns:
        ``[T, h, w, 3]`` uint8 (rounded after bilinear resampling).

    Raises:
        ValueError: the frame is smaller than ``multiple``.
    """
    from hyvideo.data.buckets import resize_crop  # noqa: PLC0415

    if size is None:
        h, w = frames.shape[1] // multiple * multiple, frames.shape[2] // multiple * multiple
        if h == 0 or w == 0:
            raise ValueError(f"frames of {frames.shape[1]}x{frames.shape[2]} px are smaller than {multiple} px")
        if (h, w) == tuple(frames.shape[1:3]):
            return frames
        top, left = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
        return frames[:, top:top + h, left:left + w].contiguous()
    x = resize_crop(frames, size)  # [3, T, h, w] float32 in [-1, 1]
    return to_uint8(x.permute(1, 2, 3, 0))


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map values in [-1, 1] to uint8 with rounding (``round((x + 1) * 127.5)``, clamped to [0, 255])."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[1, 3, T, H, W]`` float32 in [-1, 1] (the VAE's pixel convention)."""
    return frames.permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)
