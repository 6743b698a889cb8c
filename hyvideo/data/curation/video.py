"""Video probing and streamed, memory-bounded frame reading for curation (PyAV, the decoder of
``hyvideo.utils.video_io``).

Frame indices are 0-based in decode (presentation) order, the same indices ``read_video`` uses, so
``start_frame``/``end_frame`` in the manifest address the frames the trainer will decode.

Memory: frames are converted to BGR one at a time (:func:`iter_frames`); a frame of more than
:data:`MAX_CONVERT_PIXELS` is scaled down by swscale *during* the YUV -> BGR conversion, so its full-size BGR
array is never built. The decoder itself still holds the frames the codec needs at full size (about
1.5 bytes/pixel each for 8-bit 4:2:0), which is why videos above :data:`MAX_SOURCE_PIXELS` are not decoded at
all (see :func:`size_problem`).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Frames with more pixels are converted to BGR at this size (4096 x 2160 = 25.3 MiB as BGR); smaller frames,
# i.e. every resolution up to DCI 4K, are converted at full size, bit for bit as before.
MAX_CONVERT_PIXELS = 4096 * 2160
# Videos with more pixels per frame are not decoded (curation reports them as rejected "too_large"): the
# decoder keeps reference frames at full size, ~100 MB each at 8192 x 8192.
MAX_SOURCE_PIXELS = 8192 * 8192
# Videos whose long side exceeds this many times the short side are not decoded (rejected "extreme_aspect"):
# flow and camera tracking upscale the short side to 160-180 px, which would blow up a 8192 x 2 frame.
MAX_ASPECT = 16.0


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

    The frame count comes from the container when it states one, otherwise from a full decode (skipped,
    leaving 0, for a frame size :func:`size_problem` rejects).

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
        if num <= 0 and size_problem(width, height) is None:  # an undecodable size is not decoded to count
            num = sum(1 for _ in container.decode(stream))
    return VideoInfo(str(path), num, fps, width, height)


def size_problem(width: int, height: int) -> str | None:
    """Why a video of this frame size is not decoded (``"too_large"`` / ``"extreme_aspect"``), or None.

    See :data:`MAX_SOURCE_PIXELS` and :data:`MAX_ASPECT`; a size of 0 counts as ``"extreme_aspect"``.
    """
    if width * height > MAX_SOURCE_PIXELS:
        return "too_large"
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        return "extreme_aspect"
    return None


def bounded_size(width: int, height: int, max_pixels: int = MAX_CONVERT_PIXELS) -> tuple[int, int]:
    """``(width, height)`` scaled by one factor so that ``width * height <= max_pixels`` (aspect kept,
    unchanged when it already fits)."""
    if width * height <= max_pixels:
        return width, height
    s = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * s)), max(1, int(height * s))


def to_bgr(frame, max_pixels: int = MAX_CONVERT_PIXELS) -> np.ndarray:
    """``[H, W, 3]`` uint8 BGR array of a decoded ``av.VideoFrame``, at most ``max_pixels`` pixels.

    Larger frames are scaled (area filter) inside swscale's YUV -> BGR conversion, so no full-size BGR array
    exists even transiently; smaller ones are converted at full size.
    """
    size = bounded_size(frame.width, frame.height, max_pixels)
    if size == (frame.width, frame.height):
        return frame.to_ndarray(format="bgr24")
    return frame.to_ndarray(format="bgr24", width=size[0], height=size[1], interpolation="AREA")


def iter_frames(path: str | os.PathLike, indices: list[int] | np.ndarray,
                max_pixels: int = MAX_CONVERT_PIXELS) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the given frames in one sequential pass, yielding them as they are decoded.

    Only one converted frame exists at a time inside this generator; the caller decides what to keep. The
    decoder uses slice threads only: frame threading would hold one more full-size frame per thread.

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed).
        max_pixels: see :func:`to_bgr`.

    Yields:
        ``(index, [H, W, 3] uint8 BGR)`` in increasing index order, each wanted index the file holds once.

    Raises:
        av.error.FFmpegError: the file cannot be opened or a packet cannot be decoded.
    """
    import av  # noqa: PLC0415

    wanted = {int(i) for i in indices}
    if not wanted:
        return
    last = max(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # the default; frame threading ("AUTO") holds a full-size frame per thread
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                yield i, to_bgr(frame, max_pixels)
            if i >= last:
                break


def read_frames(path: str | os.PathLike, indices: list[int] | np.ndarray,
                max_pixels: int = MAX_CONVERT_PIXELS) -> dict[int, np.ndarray]:
    """Decode the given frames in one sequential pass into a dict (all of them in memory at once; curation
    itself streams with :func:`iter_frames`).

    Args:
        path: video file.
        indices: frame indices (any order, repeats allowed).
        max_pixels: see :func:`to_bgr`.

    Returns:
        ``{index: [H, W, 3] uint8 BGR}`` for every index the file holds (indices past the end are missing).
    """
    return dict(iter_frames(path, indices, max_pixels))


def resize_short_side(img: np.ndarray, short_side_px: int, allow_upscale: bool = True) -> np.ndarray:
    """Resize so the shorter side is ``short_side_px`` pixels (aspect kept; area filter when shrinking)."""
    h, w = img.shape[:2]
    scale = short_side_px / min(h, w)
    if scale == 1.0 or (scale > 1.0 and not allow_upscale):
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def shrink_long_side(img: np.ndarray, max_side_px: int) -> np.ndarray:
    """Downscale (area filter, aspect kept) so the longer side is at most ``max_side_px``; never upscales."""
    h, w = img.shape[:2]
    if max(h, w) <= max_side_px:
        return img
    s = max_side_px / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def evenly_spaced(start: int, end: int, num: int) -> list[int]:
    """``num`` frame indices spread evenly over ``[start, end)`` (fewer if the range is shorter)."""
    if end <= start:
        return []
    num = min(num, end - start)
    return sorted(set(np.linspace(start, end - 1, num).round().astype(int).tolist()))


def write_video(frames_bgr: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 25.0, crf: int = 18,
                preset: str = "medium") -> Path:
    """Write uint8 BGR frames ``[H, W, 3]`` (even H and W) to an H.264 mp4, atomically (temp file + rename).

    Used to build test and benchmark inputs; ``frames_bgr`` may be a generator (frames are encoded as they
    come), ``fps`` may be fractional (e.g. 30000/1001); ``preset`` is the x264 speed preset (``"ultrafast"``
    for large test inputs).

    Raises:
        ValueError: no frames, or frames of odd or differing size (nothing is left at ``path``).
    """
    from fractions import Fraction  # noqa: PLC0415

    import av  # noqa: PLC0415

    frames = iter(frames_bgr)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"frames must have an even size, got {w}x{h}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset, "x264-params": "log=0"}
            for k, f in enumerate(itertools.chain([first], frames)):
                if f.shape[:2] != (h, w):
                    raise ValueError(f"frames must share one size: frame {k} is {f.shape[1]}x{f.shape[0]}, "
                                     f"the first {w}x{h}")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")))
            container.mux(stream.encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path
