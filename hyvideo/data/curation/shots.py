"""Shot splitting with PySceneDetect's content detector, then cutting shots into training clips.

Reference: HunyuanVideo (arXiv 2412.03603) section on data filtering: "we use PySceneDetect to split raw
videos into single-shot video clips". ``ContentDetector`` thresholds the weighted mean HSV difference of
consecutive (downscaled) frames; see https://www.scenedetect.com/docs/latest/api/detectors.html.

Memory: PySceneDetect decodes in a thread, downscales each frame (``auto_downscale``: ~256 px wide) and
queues at most 4 of them, so it holds one full-size BGR frame at a time; frames above
``video.MAX_CONVERT_PIXELS`` reach it already scaled by swscale (:class:`_BoundedVideoStreamAv`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from scenedetect.backends.pyav import VideoStreamAv

from hyvideo.data.curation.config import SplitConfig
from hyvideo.data.curation.video import bounded_size, to_bgr

# Shortest clip, frames: camera tracking needs two frames, motion one pair 2 frames apart (default stride).
MIN_CLIP_FRAMES = 3


class _BoundedVideoStreamAv(VideoStreamAv):
    """PySceneDetect's PyAV stream with frames converted by :func:`video.to_bgr`: identical below
    ``MAX_CONVERT_PIXELS``, scaled during the YUV -> BGR conversion above it (never a full-size BGR array)."""

    @property
    def frame_size(self) -> tuple[int, int]:
        return bounded_size(*super().frame_size)

    def read(self, decode: bool = True):
        ok = super().read(decode=False)  # advances the stream; the decoded av.VideoFrame is self._frame
        if ok is False or not decode:
            return ok
        return to_bgr(self._frame)


@dataclass(frozen=True)
class Clip:
    """A clip: frames ``[start_frame, end_frame)`` of one shot of a source video (exclusive end)."""

    start_frame: int
    end_frame: int
    shot_index: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


def detect_shots(path: str | os.PathLike, cfg: SplitConfig) -> list[tuple[int, int]]:
    """Split a video into shots.

    Args:
        path: video file.
        cfg: detector threshold and minimum shot length.

    Returns:
        ``[(start_frame, end_frame), ...]`` covering the whole video, end exclusive. A video without a cut
        is one shot.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    from scenedetect import ContentDetector, SceneManager  # noqa: PLC0415

    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    video = _BoundedVideoStreamAv(str(path))  # same decoder and frame indices as read_video
    manager = SceneManager()
    manager.auto_downscale = True
    manager.add_detector(ContentDetector(threshold=cfg.detector_threshold, min_scene_len=cfg.min_shot_frames))
    manager.detect_scenes(video=video)
    scenes = manager.get_scene_list(start_in_scene=True)
    shots = [(int(a.frame_num), int(b.frame_num)) for a, b in scenes]
    if not shots:  # start_in_scene=True makes this rare; kept for videos that fail to decode frames
        total = int(video.frame_number)
        shots = [(0, total)] if total > 0 else []
    return shots


def shots_to_clips(shots: list[tuple[int, int]], fps: float, cfg: SplitConfig) -> list[Clip]:
    """Trim shots at both ends, drop short ones and cut long ones into clips of at most ``max_clip_s``.

    A long shot of length L becomes ``ceil(L / max_len)`` clips of equal length (so no tiny remainder);
    every clip is at least ``min_clip_s`` and :data:`MIN_CLIP_FRAMES` frames long.

    Args:
        shots: ``(start_frame, end_frame)`` pairs, end exclusive.
        fps: source frame rate, frames/second.
        cfg: clip length range in seconds and boundary trim in frames.

    Returns:
        The clips in source order.

    Raises:
        ValueError: ``fps`` is not positive.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    min_len = max(MIN_CLIP_FRAMES, round(cfg.min_clip_s * fps))
    max_len = max(min_len, int(cfg.max_clip_s * fps))
    clips: list[Clip] = []
    for k, (start, end) in enumerate(shots):
        start, end = start + cfg.boundary_trim_frames, end - cfg.boundary_trim_frames
        length = end - start
        if length < min_len:
            continue
        pieces = -(-length // max_len)
        bounds = [start + round(i * length / pieces) for i in range(pieces + 1)]
        clips.extend(Clip(a, b, k) for a, b in zip(bounds, bounds[1:]) if b - a >= min_len)
    return clips
