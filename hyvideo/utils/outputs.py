"""Output folders and file names for generated videos: checked before the work, never losing the result after it."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch

MAX_NAME_BYTES = 200  # file-name limit is 255 bytes on common file systems; leave room for suffixes


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) and prove it is writable by writing and removing a probe file.

    Raises:
        ValueError: ``path`` is a file, or cannot be created / written (the message names it and why).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--save-path {path} is a file, not a folder; pass a folder to write the videos into")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe_", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"--save-path {path} is not writable: {e.strerror or e}") from None
    return path


def _truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")[:max_bytes]
    return data.decode("utf-8", errors="ignore")


def video_name(seed: int, prompt: str, folder: Path, taken: set[str] | None = None) -> str:
    """A file stem ``<time>_seed<seed>_<prompt>`` of at most :data:`MAX_NAME_BYTES` UTF-8 bytes, unique in ``folder``.

    Path separators and control characters are replaced; a name already used in ``folder`` (or in ``taken``)
    gets ``_1``, ``_2``, ... appended.
    """
    stamp = time.strftime("%Y-%m-%d-%H:%M:%S")
    slug = re.sub(r"[\x00-\x1f/\\\x7f]", "", prompt).strip() or "video"
    stem = _truncate_utf8(f"{stamp}_seed{seed}_{slug}", MAX_NAME_BYTES).rstrip(". ")
    taken = taken if taken is not None else set()
    name, i = stem, 0
    while name in taken or any(folder.glob(f"{glob_escape(name)}.*")):
        i += 1
        name = f"{stem}_{i}"
    taken.add(name)
    return name


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def save_result(video: torch.Tensor, folder: Path, name: str, fps: int, sidecar: dict) -> Path:
    """Write ``name.mp4`` + ``name.json``; if that fails, rescue the frames and raise saying where they went.

    Args:
        video: ``[C, T, H, W]`` float in [0, 1].
        folder, name: destination (from :func:`prepare_output_dir` / :func:`video_name`).
        fps: frames per second.
        sidecar: parameters to store beside the video (``video`` is filled in).

    Returns:
        The mp4 path.

    Raises:
        OSError: the video could not be written where asked; the message names the rescue file (an mp4 in the
            temporary folder, or the raw frames as a ``.pt`` tensor if even that fails).
    """
    from hyvideo.utils.video_io import save_video  # noqa: PLC0415

    try:
        path = save_video(video, folder / f"{name}.mp4", fps=fps)
        (folder / f"{name}.json").write_text(json.dumps({**sidecar, "video": str(path)}, indent=1, default=str))
        return path
    except OSError as e:
        rescue = Path(tempfile.mkdtemp(prefix="hyvideo_rescue_"))
        try:
            saved = save_video(video, rescue / "video.mp4", fps=fps)
        except Exception:  # noqa: BLE001 - keep the raw frames whatever failed
            saved = rescue / "frames.pt"
            torch.save(video.detach().cpu(), saved)
        (rescue / "params.json").write_text(json.dumps(sidecar, indent=1, default=str))
        raise OSError(f"could not save {folder / name}.mp4 ({e}); the finished video was saved to {saved}") from e
