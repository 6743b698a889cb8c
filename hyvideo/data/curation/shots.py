"""Shot splitting with PySceneDetect's content detector, then cutting shots into training clips.

Reference: HunyuanVideo (arXiv 2412.03603) section on data filtering: "we use PySceneDetect to split raw
videos into single-shot video clips". ``ContentDetector`` thresholds the weighted mean HSV difference of
consecutive (downscaled) frames; see https://www.scenedetect.com/docs/latest/api/detectors.html.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hyvideo.data.curation.config import SplitConfig


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
    from scenedetect import ContentDetector, SceneManager, open_video  # noqa: PLC0415

    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    video = open_video(str(path), backend="pyav")  # same decoder and frame indices as read_video
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
    every clip is at least ``min_clip_s`` long.

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
    min_len = max(1, round(cfg.min_clip_s * fps))
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
