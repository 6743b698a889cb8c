"""Video probing and sparse frame reading for curation (PyAV, the decoder of ``hyvideo.utils.video_io``).

Frame indices are 0-based in decode (presentation) order, the same indices ``read_video`` uses, so
``start_frame``/``end_frame`` in the manifest address the frames the trainer will decode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts of one source video.

    Attributes:
        path: the file.
        num_frames: decodable frames.
        fps: frames per second (average rate of the stream).
        width: pixels.
        height: pixels.
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's frame count, frame rate and size.

    The frame count comes from the container when it states one, otherwise from a full decode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no video stream.
    """
    import av  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        num = int(stream.frames or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
        if num <= 0:
            num = sum(1 for _ in container.decode(video=0))
    return VideoInfo(str(path), num, fps, width, height)


def read_frames(path: str | os.PathLike, indices: list[int] | np.ndarray) -> dict[int, np.ndarray]:
    """Decode the given frames in one sequential pass.

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed).

    Returns:
        ``{index: [H, W, 3] uint8 BGR}`` for every index the file holds (indices past the end are missing).
    """
    import av  # noqa: PLC0415

    wanted = set(int(i) for i in indices)
    if not wanted:
        return {}
    last = max(wanted)
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="bgr24")
            if i >= last:
                break
    return out


def resize_short_side(img: np.ndarray, short_side_px: int, allow_upscale: bool = True) -> np.ndarray:
    """Resize so the shorter side is ``short_side_px`` pixels (aspect kept; area filter when shrinking)."""
    h, w = img.shape[:2]
    scale = short_side_px / min(h, w)
    if scale == 1.0 or (scale > 1.0 and not allow_upscale):
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def evenly_spaced(start: int, end: int, num: int) -> list[int]:
    """``num`` frame indices spread evenly over ``[start, end)`` (fewer if the range is shorter)."""
    if end <= start:
        return []
    num = min(num, end - start)
    return sorted(set(np.linspace(start, end - 1, num).round().astype(int).tolist()))


def write_video(frames_bgr: list[np.ndarray], path: str | os.PathLike, fps: float = 25.0, crf: int = 18) -> Path:
    """Write uint8 BGR frames ``[H, W, 3]`` (even H and W) to an H.264 mp4, atomically (temp file + rename).

    Used to build test and benchmark inputs; ``fps`` may be fractional (e.g. 30000/1001).

    Raises:
        ValueError: no frames, or frames of odd or differing size.
    """
    import av  # noqa: PLC0415
    from fractions import Fraction  # noqa: PLC0415

    if not frames_bgr:
        raise ValueError("write_video needs at least one frame")
    h, w = frames_bgr[0].shape[:2]
    if h % 2 or w % 2 or any(f.shape[:2] != (h, w) for f in frames_bgr):
        raise ValueError(f"frames must share one even size, got first {w}x{h}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "x264-params": "log=0"}
        for f in frames_bgr:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")))
        container.mux(stream.encode())
    tmp.replace(path)
    return path
