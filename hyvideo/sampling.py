"""One sampling request, end to end: checked before any work, sampled, saved with its parameters.

The CLI (``sample_video.py``) and the web UI (``gradio_server.py``) both go through :func:`check_request` and
:func:`run_request`, so they sample and save identically. File IO lives here, not in :mod:`hyvideo.pipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hyvideo.pipeline import MAX_SEED, validate_generation_args, validate_sampling_args
from hyvideo.utils.outputs import save_result, video_name


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
    for start in range(0, len(seeds), req.batch_size):
        batch = seeds[start: start + req.batch_size]
        t0 = time.perf_counter()
        videos = pipe([req.prompt] * len(batch), height=req.height, width=req.width, video_length=req.video_length,
                      seeds=batch, infer_steps=req.infer_steps, flow_shift=req.flow_shift,
                      embedded_guidance_scale=req.embedded_guidance_scale, cfg_scale=req.cfg_scale,
                      negative_prompt=req.negative_prompt, vae_tiling=req.vae_tiling, progress=progress,
                      callback=callback, decode_callback=decode_callback)
        seconds = time.perf_counter() - t0
        if not write:
            continue
        for seed, video in zip(batch, videos):
            name = output_stem(req, seed) or video_name(seed, req.prompt, save_dir, taken)
            params = {k: v for k, v in asdict(req).items() if k not in ("extra", "name")}
            sidecar = {"prompt": req.prompt, "args": {**req.extra, **params}, "seed": seed, "frames": req.video_length,
                       "height": req.height, "width": req.width, "fps": req.fps, "seconds": round(seconds, 3),
                       **(sidecar_extra or {})}
            path = save_result(video, save_dir, name, req.fps, sidecar)
            saved.append(SampledVideo(path, path.with_suffix(".json"), seed, seconds))
            log(f"saved {path} ({req.video_length} frames {req.height}x{req.width} @ {req.fps} fps, seed {seed}, "
                f"{seconds:.1f} s)")
    return saved


def release_memory(device: torch.device | str) -> None:
    """Return cached device memory between requests (long-running servers)."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
