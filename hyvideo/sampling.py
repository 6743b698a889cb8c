"""One sampling request, end to end: checked before any work, sampled, saved with its parameters.

The CLI (``sample_video.py``) and the web UI (``gradio_server.py``) both go through :func:`check_request` and
:func:`run_request`, so they sample and save identically. File IO lives here, not in :mod:`hyvideo.pipeline`:
the conditioning image of image-to-video (:func:`apply_image_bucket` sizes the request from it) and the input
clip of video-to-video (:func:`load_input_clip`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hyvideo.pipeline import MAX_SEED, validate_generation_args, validate_sampling_args
from hyvideo.utils.outputs import save_result, video_name

logger = logging.getLogger(__name__)


@dataclass
class SampleRequest:
    """What to sample (units: pixels, frames, fps); defaults are the released sampler's.

    ``seed`` None draws one at random (the CLI broadcasts it across ranks); video i uses ``seed + i``.
    """

    prompt: str
    height: int = 720
    width: int = 1280
    video_length: int = 129
    infer_steps: int = 50
    seed: int | None = None
    flow_shift: float = 7.0
    embedded_guidance_scale: float | None = 6.0
    cfg_scale: float = 1.0
    negative_prompt: str | None = None
    num_videos: int = 1
    batch_size: int = 1
    fps: int = 24
    vae_tiling: bool = True
    name: str | None = None  # stable output stem (batch files: "<stem>_seed<seed>"); None = time stamp + prompt
    image_path: str | None = None  # image-to-video: the conditioning image (size from apply_image_bucket)
    i2v_resolution: str = "720p"  # bucket family of the image: 360p, 540p, 720p
    i2v_stability: bool = False  # released --i2v-stability start
    video_path: str | None = None  # video-to-video: the input clip (or an image: a still clip)
    strength: float = 0.8  # video-to-video strength in (0, 1]
    fix_first_frame: bool = False  # video-to-video: frame 0 kept on the input's at every sigma
    extra: dict = field(default_factory=dict)  # caller's parameters stored in the sidecar as they are

    def seeds(self, base: int) -> list[int]:
        return [base + i for i in range(self.num_videos)]


@dataclass
class SampledVideo:
    """A saved result: the mp4, its sidecar JSON, the seed and the seconds spent sampling its batch."""

    path: Path
    sidecar: Path
    seed: int
    seconds: float


def check_request(req: SampleRequest) -> None:
    """Every cheap check of a request (before any model loads).

    Raises:
        ValueError: the message names the bad value and what is allowed.
    """
    validate_generation_args([req.prompt or ""], req.height, req.width, req.video_length)
    if req.infer_steps < 1 or req.batch_size < 1 or req.num_videos < 1:
        raise ValueError("infer steps, batch size and number of videos must be >= 1, got "
                         f"{req.infer_steps}, {req.batch_size}, {req.num_videos}")
    if req.fps < 1:
        raise ValueError(f"--fps must be >= 1, got {req.fps}")
    if req.seed is not None and not 0 <= req.seed <= MAX_SEED - req.num_videos:
        raise ValueError(f"--seed {req.seed} is outside 0..{MAX_SEED - req.num_videos} (64-bit seeds, "
                         f"{req.num_videos} videos)")
    validate_sampling_args(seeds=[], infer_steps=req.infer_steps, flow_shift=req.flow_shift,
                           embedded_guidance_scale=req.embedded_guidance_scale, cfg_scale=req.cfg_scale)
    check_conditioning(req)


def check_conditioning(req: SampleRequest) -> None:
    """The image-to-video / video-to-video parts of a request (the files are opened, not decoded in full).

    Raises:
        ValueError, FileNotFoundError: a missing / unreadable / non-image file, both an image and a video, an
            unknown resolution, a strength outside (0, 1], a clip that is not a video or an image.
    """
    from hyvideo.data.i2v_buckets import i2v_buckets  # noqa: PLC0415
    from hyvideo.diffusion.i2v import check_strength  # noqa: PLC0415
    from hyvideo.utils.image_io import read_image  # noqa: PLC0415

    if req.image_path is not None and req.video_path is not None:
        raise ValueError("choose image-to-video (--i2v-image-path) or video-to-video (--video-path), not both")
    check_strength(req.strength)
    if req.image_path is not None:
        i2v_buckets(req.i2v_resolution)
        if req.video_length < 5:
            raise ValueError(f"image-to-video needs --video-length >= 5 (4n+1), got {req.video_length}")
        read_image(req.image_path, "--i2v-image-path")
    if req.video_path is not None:
        _probe_clip(Path(req.video_path), req.video_length)


def _probe_clip(path: Path, num_frames: int) -> None:
    """Raises unless ``path`` is an image PIL can read or a video PyAV can open with enough frames (when its
    header counts them)."""
    import av  # noqa: PLC0415

    if _as_image(path) is not None:
        return
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            count = stream.frames if stream is not None else 0
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        stream = None
    if stream is None:
        raise ValueError(f"--video-path {path} is neither a video FFmpeg can decode nor an image")
    if 0 < count < num_frames:
        raise ValueError(f"--video-path {path} has only {count} frames; --video-length {num_frames} needs "
                         f"{num_frames} (use a shorter --video-length)")


def _as_image(path: Path):
    """The RGB image at ``path``, or None when PIL does not read it as an image.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    from hyvideo.utils.image_io import read_image  # noqa: PLC0415

    try:
        return read_image(path, "--video-path")
    except ValueError:
        return None


def apply_image_bucket(req: SampleRequest) -> tuple[SampleRequest, str]:
    """Image-to-video: the request sized to the released bucket of its image, and one log line saying which.

    The image keeps its aspect ratio: resized so that its shorter side fits the bucket's, centre-cropped
    (:mod:`hyvideo.data.i2v_buckets`); an image smaller than the bucket is upscaled with a warning.

    Raises:
        ValueError, FileNotFoundError: see :func:`hyvideo.utils.image_io.read_image`.
    """
    from hyvideo.data.i2v_buckets import closest_i2v_bucket, upscale_factor  # noqa: PLC0415
    from hyvideo.utils.image_io import read_image  # noqa: PLC0415

    image = read_image(req.image_path, "--i2v-image-path")
    w, h = image.size
    bh, bw = closest_i2v_bucket(h, w, req.i2v_resolution)
    scale = upscale_factor(image, (bh, bw))
    if scale > 1:
        logger.warning("--i2v-image-path %s is %dx%d px (WxH), smaller than the %s bucket %dx%d; it is upscaled "
                       "%.2fx (expect a soft first frame)", req.image_path, w, h, req.i2v_resolution, bw, bh, scale)
    line = (f"i2v: image {req.image_path} {w}x{h} px (WxH) -> {req.i2v_resolution} bucket {bw}x{bh} (WxH, ratio "
            f"{bh / bw:.3f} vs {h / w:.3f}), shorter side resized to {min(bh, bw)} px and centre-cropped")
    return dataclasses.replace(req, height=bh, width=bw), line


def load_input_clip(path: str | Path, num_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """Video-to-video input: the first ``num_frames`` frames of a clip (or an image repeated: a still clip),
    resized to cover ``size`` ``(h, w)`` and centre-cropped.

    Returns:
        ``[1, 3, num_frames, h, w]`` float32 in [-1, 1].

    Raises:
        ValueError: the clip has fewer frames than asked (the message gives both counts).
    """
    from hyvideo.data.buckets import resize_crop  # noqa: PLC0415
    from hyvideo.utils.video_io import read_video  # noqa: PLC0415

    path = Path(path)
    image = _as_image(path)
    if image is not None:
        import numpy as np  # noqa: PLC0415

        frames = torch.from_numpy(np.asarray(image).copy())[None].expand(num_frames, -1, -1, -1)
    else:
        try:
            frames = read_video(path, 0, num_frames)  # [T, H, W, 3] uint8
        except ValueError as e:
            raise ValueError(f"--video-path {path}: {e}; use a shorter --video-length") from None
    return resize_crop(frames, size).unsqueeze(0)


def output_stem(req: SampleRequest, seed: int) -> str | None:
    """The fixed file stem of ``req``'s video for ``seed``, or None when names are time-stamped."""
    return None if req.name is None else f"{req.name}_seed{seed}"


def finished(req: SampleRequest, seed: int, save_dir: str | Path) -> bool:
    """Whether a named request's video for ``seed`` already exists with its sidecar (a resumed batch skips it)."""
    stem = output_stem(req, seed)
    return stem is not None and (Path(save_dir) / f"{stem}.mp4").is_file() and (Path(save_dir) / f"{stem}.json").is_file()


def run_request(pipe, req: SampleRequest, save_dir: str | Path, *, seeds: list[int],
                callback: Callable[[int, int], None] | None = None,
                decode_callback: Callable[[int, int], None] | None = None, progress: bool = True, write: bool = True,
                sidecar_extra: dict | None = None, log=print) -> list[SampledVideo]:
    """Sample ``len(seeds)`` videos of ``req`` in batches of ``req.batch_size`` and save each with a sidecar.

    Args:
        pipe: :class:`hyvideo.pipeline.HunyuanVideoPipeline` (accelerated paths already applied).
        req: the request (checked by :func:`check_request`).
        save_dir: folder (created and probed by ``hyvideo.utils.outputs.prepare_output_dir`` beforehand).
        seeds: the seeds of this process's videos.
        callback: ``callback(step, total_steps)`` after each denoising step (progress bars of the web UI).
        decode_callback: ``decode_callback(tile, total_tiles)`` after each VAE decode tile.
        progress: tqdm bars.
        write: False on ranks that hold a copy of another rank's video (sequence parallel).
        sidecar_extra: more fields for the sidecar JSON (device, accelerated paths, ...).

    Returns:
        The saved videos, in seed order.

    Raises:
        NonFiniteError: NaN / Inf during sampling (nothing is written for that batch).
        OSError: a finished video could not be saved (it was rescued; the message says where).
    """
    save_dir, taken, saved = Path(save_dir), set(), []
    conditioning = _conditioning(req)
    for start in range(0, len(seeds), req.batch_size):
        batch = seeds[start: start + req.batch_size]
        t0 = time.perf_counter()
        videos = pipe([req.prompt] * len(batch), height=req.height, width=req.width, video_length=req.video_length,
                      seeds=batch, infer_steps=req.infer_steps, flow_shift=req.flow_shift,
                      embedded_guidance_scale=req.embedded_guidance_scale, cfg_scale=req.cfg_scale,
                      negative_prompt=req.negative_prompt, vae_tiling=req.vae_tiling, progress=progress,
                      callback=callback, decode_callback=decode_callback, **conditioning)
        seconds = time.perf_counter() - t0
        if not write:
            continue
        for seed, video in zip(batch, videos):
            name = output_stem(req, seed) or video_name(seed, req.prompt, save_dir, taken)
            params = {k: v for k, v in asdict(req).items() if k not in ("extra", "name")}
            frames, height, width = video.shape[1:]
            sidecar = {"prompt": req.prompt, "args": {**req.extra, **params}, "seed": seed, "frames": frames,
                       "height": height, "width": width, "fps": req.fps, "seconds": round(seconds, 3),
                       **(sidecar_extra or {})}
            path = save_result(video, save_dir, name, req.fps, sidecar)
            saved.append(SampledVideo(path, path.with_suffix(".json"), seed, seconds))
            log(f"saved {path} ({frames} frames {height}x{width} @ {req.fps} fps, seed {seed}, {seconds:.1f} s)")
    return saved


def _conditioning(req: SampleRequest) -> dict:
    """The pipeline keywords of an image-to-video or video-to-video request (none for text-to-video)."""
    from hyvideo.utils.image_io import read_image  # noqa: PLC0415

    if req.image_path is not None:
        return {"image": read_image(req.image_path, "--i2v-image-path"), "i2v_stability": req.i2v_stability}
    if req.video_path is not None:
        clip = load_input_clip(req.video_path, req.video_length, (req.height, req.width))
        return {"video": clip, "strength": req.strength, "fix_first_frame": req.fix_first_frame}
    return {}


def release_memory(device: torch.device | str) -> None:
    """Return cached device memory between requests (long-running servers)."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
