"""Clip dataset: decode, sample ``1 + 4k`` frames at a target fps, resize and crop to an aspect bucket.

Each manifest record becomes one *sample* per resolution tier: ``(record, kind, tier, bucket (h, w), frames)``.
Images, and (optionally) single frames of videos, are 1-frame videos of kind ``"image"``. The bucket key
``(kind, h, w, frames)`` is what :class:`hyvideo.data.sampler.BucketBatchSampler` groups by.

Robustness: records whose file is missing, whose span is too short, or whose size cannot be probed are
dropped when the dataset is built (logged, counted in :attr:`VideoClipDataset.skipped`). A file that fails to
decode during training is logged, counted, and replaced by the next sample of the same bucket, so batch
shapes and sizes stay identical on every rank and a long run never stops on one bad file.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .buckets import closest_bucket
from .manifest import ClipRecord, caption_text, tier_value
from .sampler import stable_seed

log = logging.getLogger(__name__)

try:  # decord is the fast path; PyAV (hyvideo.utils.video_io) is the fallback
    import decord  # noqa: F401

    _HAS_DECORD = True
except ImportError:  # pragma: no cover - depends on the environment
    _HAS_DECORD = False


@dataclass(frozen=True)
class Sample:
    record: int  # index into the record list
    kind: str  # "video" | "image"
    tier: str
    size: tuple[int, int]  # bucket (h, w) px
    num_frames: int

    @property
    def bucket(self) -> tuple:
        return (self.kind, self.tier, *self.size, self.num_frames)


def probe(path: str) -> tuple[int, int, float, int]:
    """``(width, height, fps, num_frames)`` of a video file (decord, else PyAV).

    Raises:
        RuntimeError: the file cannot be opened as a video.
    """
    try:
        if _HAS_DECORD:
            import decord  # noqa: PLC0415

            vr = decord.VideoReader(path, num_threads=1)
            h, w = vr[0].shape[:2]
            return w, h, float(vr.get_avg_fps()), len(vr)
        import av  # noqa: PLC0415

        with av.open(path) as c:
            s = c.streams.video[0]
            n = s.frames or sum(1 for _ in c.decode(video=0))
            return s.codec_context.width, s.codec_context.height, float(s.average_rate or 0), n
    except Exception as e:  # noqa: BLE001 - any decoder error means "unreadable"
        raise RuntimeError(f"cannot read video {path}: {e}") from e


def decode_frames(path: str, indices: list[int]) -> torch.Tensor:
    """Decode the given frame indices; returns ``[T, H, W, 3]`` uint8. Images return ``[1, H, W, 3]``."""
    if Path(path).suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp"}:
        from PIL import Image  # noqa: PLC0415

        with Image.open(path) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy())[None]
    if _HAS_DECORD:
        import decord  # noqa: PLC0415

        vr = decord.VideoReader(path, num_threads=1)
        return torch.from_numpy(vr.get_batch(indices).asnumpy())
    from hyvideo.utils.video_io import read_video  # noqa: PLC0415

    frames = read_video(path, start_frame=min(indices), num_frames=max(indices) - min(indices) + 1)
    return frames[[i - min(indices) for i in indices]]


class VideoClipDataset(Dataset):
    """Map-style dataset keyed by ``(sample_index, step, slot)`` from :class:`BucketBatchSampler`.

    Args:
        records: manifest records (:func:`hyvideo.data.manifest.read_manifest`).
        tiers: resolution tiers; every record is bucketed once per tier.
        num_frames: frames per video sample, ``1 + 4k``.
        fps: target frame rate; the frame stride is ``max(1, round(source_fps / fps))``.
        seed: base seed for crop offsets, clip start and caption synthesis (with step and index).
        random_crop: random (seeded) crop and clip start instead of centred ones.
        use_images_from_videos: also add a 1-frame ``"image"`` sample per video record.
        caption_drop_p: field dropout when flattening structured captions.
        native_crop: crop buckets from frames at their source resolution instead of resizing to cover.
        uint8_pixels: ``pixels`` as uint8 [0, 255] (training loaders: 4x less through worker shared memory;
            :func:`hyvideo.data.buckets.pixels_to_unit` converts on the device) instead of float32 [-1, 1].

    Raises:
        ValueError: ``num_frames`` is not ``1 + 4k``, an unknown tier, or no usable sample at all.
    """

    def __init__(self, records: list[ClipRecord], *, tiers=("256",), num_frames: int = 1, fps: float = 24.0,
                 seed: int = 0, random_crop: bool = False, use_images_from_videos: bool = False,
                 caption_drop_p: float = 0.0, max_retries: int = 8, native_crop: bool = False,
                 uint8_pixels: bool = False):
        if num_frames < 1 or (num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 1 + 4k, got {num_frames}")
        self.records, self.num_frames, self.fps, self.seed = records, num_frames, fps, seed
        self.random_crop, self.caption_drop_p, self.max_retries = random_crop, caption_drop_p, max_retries
        self.native_crop, self.uint8_pixels = native_crop, uint8_pixels
        self.skipped: Counter = Counter()
        self.meta: dict[int, tuple[int, int, float, int]] = {}
        self.samples: list[Sample] = []
        for i, rec in enumerate(records):
            meta = self._meta(rec)
            if meta is None:
                continue
            self.meta[i] = meta
            w, h = meta[0], meta[1]
            for tier in tiers:
                if rec.tier and tier_value(rec.tier) < tier_value(tier):
                    self.skipped["tier_below_stage"] += 1
                    continue
                size = closest_bucket(h, w, tier)
                if rec.is_image or num_frames == 1:
                    self.samples.append(Sample(i, "image", str(tier), size, 1))
                    continue
                if self._span(rec, meta) is None:
                    self.skipped["clip_too_short"] += 1
                    log.warning("skip %s: too short for %d frames at %.3g fps", rec.path, num_frames, fps)
                else:
                    self.samples.append(Sample(i, "video", str(tier), size, num_frames))
                if use_images_from_videos:
                    self.samples.append(Sample(i, "image", str(tier), size, 1))
        if not self.samples:
            raise ValueError(f"no usable sample in {len(records)} records (skipped: {dict(self.skipped)})")
        self._by_bucket: dict[tuple, list[int]] = {}
        for j, s in enumerate(self.samples):
            self._by_bucket.setdefault(s.bucket, []).append(j)
        if self.skipped:
            log.warning("dataset: %d samples, skipped %s", len(self.samples), dict(self.skipped))

    # ------------------------------------------------------------------ building
    def _meta(self, rec: ClipRecord):
        if not Path(rec.path).is_file():
            self.skipped["missing_file"] += 1
            log.warning("skip %s: file not found", rec.path)
            return None
        if rec.is_image:
            if rec.width and rec.height:
                return rec.width, rec.height, 0.0, 1
            try:
                from PIL import Image  # noqa: PLC0415

                with Image.open(rec.path) as im:
                    return im.width, im.height, 0.0, 1
            except Exception as e:  # noqa: BLE001
                self.skipped["unreadable"] += 1
                log.warning("skip %s: %s", rec.path, e)
                return None
        if rec.width and rec.height and rec.fps and (rec.num_frames or rec.end_frame or rec.end_time):
            n = rec.num_frames or int(rec.end_frame or round(rec.end_time * rec.fps))
            return rec.width, rec.height, float(rec.fps), n
        try:
            return probe(rec.path)
        except RuntimeError as e:
            self.skipped["unreadable"] += 1
            log.warning("skip %s", e)
            return None

    def _span(self, rec: ClipRecord, meta) -> tuple[int, int, int] | None:
        """``(first, last_exclusive, stride)`` frame span of a clip, or None if too short."""
        src_fps, n_file = meta[2], meta[3]
        start, end = rec.start_frame, rec.end_frame if rec.end_frame is not None else n_file
        if rec.start_time is not None:
            start = int(round(rec.start_time * src_fps))
        if rec.end_time is not None:
            end = int(round(rec.end_time * src_fps))
        end = min(end, n_file)
        stride = max(1, round(src_fps / self.fps)) if src_fps > 0 else 1
        if (self.num_frames - 1) * stride + 1 > end - start:
            return None
        return start, end, stride

    # ------------------------------------------------------------------ access
    def bucket_keys(self) -> list[tuple]:
        return [s.bucket for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> dict:
        """Load one sample; ``key`` is ``(index, step, slot)`` or a plain index.

        Returns:
            dict with ``pixels`` ``[3, T, h, w]`` float32 in [-1, 1] (uint8 in [0, 255] with ``uint8_pixels``),
            ``caption`` str, ``index`` int,
            ``slot`` int (position in the global batch; -1 for plain indices), ``bucket`` tuple.
        """
        idx, step, slot = key if isinstance(key, tuple) else (key, 0, -1)
        group = self._by_bucket[self.samples[idx].bucket]
        pos = group.index(idx)
        for attempt in range(self.max_retries):
            j = group[(pos + attempt) % len(group)]
            try:
                return self._load(j, step, slot)
            except Exception as e:  # noqa: BLE001 - a bad file must not end the run
                self.skipped["decode_error"] += 1
                log.warning("decode failed for %s (%s); substituting the next sample of bucket %s",
                            self.records[self.samples[j].record].path, e, self.samples[j].bucket)
        raise RuntimeError(f"{self.max_retries} consecutive unreadable samples in bucket {self.samples[idx].bucket}")

    def _load(self, j: int, step: int, slot: int) -> dict:
        from .buckets import resize_crop  # noqa: PLC0415

        s = self.samples[j]
        rec = self.records[s.record]
        rng = random.Random(stable_seed("sample", self.seed, j, step))
        if rec.is_image:
            indices = [0]
        else:
            span = self._span(rec, self.meta[s.record])
            start, end, stride = span if span is not None else (rec.start_frame, rec.start_frame + 1, 1)
            need = (s.num_frames - 1) * stride + 1
            first = start + (rng.randint(0, end - start - need) if self.random_crop else (end - start - need) // 2)
            indices = [first + k * stride for k in range(s.num_frames)]
        frames = decode_frames(rec.path, indices)
        pixels = resize_crop(frames, s.size, rng if self.random_crop else None, native=self.native_crop,
                             as_uint8=self.uint8_pixels)
        caption = caption_text(rec.caption, rng if self.caption_drop_p > 0 else None, self.caption_drop_p)
        return {"pixels": pixels, "caption": caption, "index": j, "slot": slot, "bucket": s.bucket}


def collate(batch: list[dict]) -> dict:
    """Stack samples of one bucket: ``pixels`` ``[B, 3, T, h, w]``, ``caption`` list, ``index``/``slot`` ``[B]``."""
    return {
        "pixels": torch.stack([b["pixels"] for b in batch]),
        "caption": [b["caption"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch]),
        "slot": torch.tensor([b["slot"] for b in batch]),
        "bucket": batch[0]["bucket"],
    }
