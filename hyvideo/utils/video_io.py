"""Video reading and writing (PyAV for decoding, imageio-ffmpeg for mp4 encoding)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def read_video(path: str | os.PathLike, start_frame: int = 0, num_frames: int | None = None) -> torch.Tensor:
    """Decode frames ``[start_frame, start_frame + num_frames)`` of a video file.

    Args:
        path: video file readable by FFmpeg (PyAV).
        start_frame: first frame index (0-based, in decode order).
        num_frames: how many frames; None = to the end.

    Returns:
        ``[T, H, W, 3]`` uint8 RGB tensor.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file has fewer frames than requested.
    """
    import av  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i < start_frame:
                continue
            if num_frames is not None and len(frames) >= num_frames:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    if num_frames is not None and len(frames) < num_frames:
        raise ValueError(f"{path} has only {start_frame + len(frames)} frames; asked for "
                         f"{num_frames} from frame {start_frame}")
    return torch.from_numpy(np.stack(frames))


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Convert a ``[C, T, H, W]`` float video in [0, 1] to ``[T, H, W, C]`` uint8.

    Values are clamped and multiplied by 255 then truncated (as the released ``save_videos_grid``).
    """
    video = video.detach().float().clamp(0, 1).permute(1, 2, 3, 0)
    return (video * 255).to(torch.uint8).cpu().numpy()


def save_video(video: torch.Tensor, path: str | os.PathLike, fps: int = 24) -> Path:
    """Write a ``[C, T, H, W]`` float video in [0, 1] to an mp4 (libx264, ``fps`` frames per second).

    The file is written under a temporary name and renamed, so a crash never leaves a truncated mp4.

    Returns:
        The path written.
    """
    import imageio.v2 as imageio  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    frames = to_uint8_frames(video)
    # macro_block_size=1 keeps sizes that are not multiples of 16 unchanged.
    imageio.mimsave(tmp, list(frames), fps=fps, macro_block_size=1)
    os.replace(tmp, path)
    return path
