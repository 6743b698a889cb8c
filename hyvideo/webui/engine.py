"""One loaded model serving sampling jobs one at a time: the web UI's back end, without any web code.

A job is checked completely before it waits for the model (bad values, an unreadable image, a LoRA that is not
offered, a request that would not fit in the free memory), then sampled through :func:`hyvideo.sampling.run_request`
(the CLI's path) under a lock, so exactly one job uses the model at a time whatever the web server does. Per job:
the first-block step cache threshold, the VAE tiling and a LoRA from ``--lora-dir`` (applied before the job and
removed after it, so no job sees another's adapter). Progress comes back per denoising step and per VAE decode tile;
a cancel event is honoured at the next step or tile. Failures become :class:`JobError` with a message for the page.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from hyvideo.sampling import SampleRequest, check_request, release_memory, run_request
from hyvideo.webui.sizes import SizeTable

LORA_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # what the image-to-video upload accepts (PIL format names)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# SampleRequest field that carries the conditioning image of image-to-video (added by the I2V work)
I2V_IMAGE_FIELD = "image_path"  # hyvideo.sampling.SampleRequest: the image-to-video conditioning image
RANDOM_SEED_MAX = 1_000_000  # as sample_video.py's random seed


class JobError(Exception):
    """A job that cannot run or failed; ``str(e)`` is the message shown in the page."""


class JobCancelled(Exception):
    """The job was cancelled (at a denoising step or decode tile); nothing was saved."""


@dataclass
class Job:
    """What the page (or an API client) asks for. Sizes come from the model's :class:`SizeTable`.

    ``seed`` None or -1 draws one; ``image`` is a path (image-to-video models only); ``lora`` a file name in
    ``--lora-dir`` (None / "" = none).
    """

    prompt: str
    resolution: str
    aspect: str
    video_length: int = 129
    infer_steps: int = 50
    seed: int | None = None
    flow_shift: float = 7.0
    embedded_guidance_scale: float = 6.0
    cfg_scale: float = 1.0
    negative_prompt: str = ""
    cache_threshold: float = 0.0
    vae_tiling: bool = True
    image: str | None = None
    lora: str | None = None
    lora_scale: float = 1.0


@dataclass
class JobResult:
    """A finished job: the mp4, its sidecar parameters (also written beside it as JSON), seed and seconds."""

    video: Path
    params: dict
    seed: int
    seconds: float


def is_oom(e: BaseException) -> bool:
    """True for CUDA / CPU allocator out-of-memory errors (``torch.OutOfMemoryError``, the CPU allocator's
    "can't allocate memory", Python's ``MemoryError``)."""
    text = str(e).lower()
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))


class Engine:
    """The loaded pipeline plus everything a job needs; thread safe (one job runs at a time).

    Args:
        pipe: :class:`hyvideo.pipeline.HunyuanVideoPipeline` with the accelerated paths applied.
        sizes: the sizes offered (:func:`hyvideo.webui.sizes.load_size_table`).
        save_dir: folder the videos and sidecars go to (checked writable beforehand).
        device: compute device (memory checks, cache release).
        lora_dir: folder of LoRA files offered per job, or None.
        fps: frames per second of the written mp4s.
        max_image_bytes: largest accepted image upload.
        info: fields added to every sidecar (model tree, precisions, accelerated paths).
    """

    def __init__(self, pipe, *, sizes: SizeTable, save_dir: str | Path, device: str = "cpu",
                 lora_dir: str | Path | None = None, fps: int = 24, max_image_bytes: int = 20 * 2**20,
                 offload: str = "none", info: dict | None = None):
        self.pipe, self.sizes, self.save_dir, self.device = pipe, sizes, Path(save_dir), str(device)
        self.lora_dir = Path(lora_dir) if lora_dir else None
        self.fps, self.max_image_bytes, self.offload = fps, max_image_bytes, offload
        self.info = dict(info or {})
        self._lock = threading.Lock()

    @property
    def is_i2v(self) -> bool:
        """True when the loaded DiT is an image-to-video model (the page then shows the image upload)."""
        return getattr(self.pipe.dit, "i2v_condition_type", None) is not None

    def loras(self) -> list[str]:
        """File names of the LoRAs in ``lora_dir`` (sorted), [] without one."""
        if self.lora_dir is None or not self.lora_dir.is_dir():
            return []
        return sorted(p.name for p in self.lora_dir.iterdir() if p.is_file() and p.suffix.lower() in LORA_SUFFIXES)

    # ---- checks (no model lock) -------------------------------------------------------------------------------

    def request_of(self, job: Job, seed: int) -> SampleRequest:
        """The :class:`SampleRequest` of a job, fully checked.

        Raises:
            JobError: any bad value (the message names it and what is allowed).
        """
        try:
            if not (job.prompt or "").strip():
                raise ValueError("the prompt is empty: type what the video should show")
            height, width = self.sizes.size(job.resolution, job.aspect)
            extra = {"resolution": job.resolution, "aspect": job.aspect, "cache_threshold": job.cache_threshold,
                     "lora": job.lora or None, "lora_scale": job.lora_scale if job.lora else None, **self.info}
            kwargs = {}
            if job.image:
                self.check_image(job.image)
                if not self.is_i2v:
                    raise ValueError("the loaded model is text-to-video and takes no image; remove the image or "
                                     "start the server with image-to-video weights")
                kwargs[I2V_IMAGE_FIELD] = job.image  # resized / centre-cropped to the chosen size by the pipeline
                extra["image"] = Path(job.image).name
            elif self.is_i2v:
                raise ValueError("this is an image-to-video model: upload an image")
            req = SampleRequest(prompt=job.prompt or "", height=height, width=width,
                                video_length=int(job.video_length), infer_steps=int(job.infer_steps), seed=seed,
                                flow_shift=float(job.flow_shift),
                                embedded_guidance_scale=float(job.embedded_guidance_scale),
                                cfg_scale=float(job.cfg_scale), negative_prompt=job.negative_prompt or None,
                                fps=self.fps, vae_tiling=bool(job.vae_tiling), extra=extra, **kwargs)
            check_request(req)
            if not float(job.cache_threshold) >= 0:
                raise ValueError(f"step cache threshold must be >= 0, got {job.cache_threshold}")
            if job.lora and job.lora not in self.loras():
                raise ValueError(f"LoRA {job.lora!r} is not offered; allowed: {self.loras() or 'none'}")
            if not torch.isfinite(torch.tensor(float(job.lora_scale))):
                raise ValueError(f"LoRA scale must be a finite number, got {job.lora_scale}")
        except (ValueError, TypeError) as e:
            raise JobError(str(e)) from None
        self.check_memory(req)
        return req

    def check_image(self, path: str | Path) -> None:
        """Refuse an upload that is too big, not an image, or not one of :data:`IMAGE_FORMATS`.

        Raises:
            ValueError: the message says what was wrong and what is accepted.
        """
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

        path = Path(path)
        size = path.stat().st_size if path.is_file() else -1
        if size < 0:
            raise ValueError(f"the uploaded image {path.name} could not be read")
        if size > self.max_image_bytes:
            raise ValueError(f"the uploaded image is {size / 2**20:.1f} MiB; the limit is "
                             f"{self.max_image_bytes / 2**20:.1f} MiB")
        try:
            with Image.open(path) as im:
                fmt = im.format
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"the upload {path.name} is not a readable image ({e.__class__.__name__}); "
                             f"accepted: {', '.join(IMAGE_FORMATS)}") from None
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"the upload {path.name} is a {fmt} image; accepted: {', '.join(IMAGE_FORMATS)}")

    def check_memory(self, req: SampleRequest) -> None:
        """Refuse a request whose activations (beyond the loaded weights) exceed the device's free memory.

        Raises:
            JobError: names the estimate, what is free, and what would help.
        """
        from hyvideo.memory import GIB, available_bytes, estimate_sampling  # noqa: PLC0415

        dit, vae = self.pipe.dit, self.pipe.vae
        dit_dtype = next(p.dtype for p in dit.parameters() if p.dtype.itemsize > 1)
        est = estimate_sampling(
            dit_params=0, dit_hidden=dit.hidden_size, dit_dtype=dit_dtype, fp8=False, vae_params=0,
            vae_width=vae.config["block_out_channels"][0], vae_dtype=next(vae.parameters()).dtype, text_bytes=0,
            batch=req.batch_size, cfg=req.cfg_scale > 1, height=req.height, width=req.width,
            frames=req.video_length, tiling=req.vae_tiling, offload=self.offload)
        free = available_bytes(self.device)
        if free is not None and est.total > free:
            tip = "" if req.vae_tiling else "turn on VAE tiling, or "
            raise JobError(f"{req.video_length} frames at {req.height}x{req.width} need about "
                           f"{est.total / GIB:.1f} GiB on {self.device} besides the model, but {free / GIB:.1f} GiB "
                           f"are free; {tip}choose a smaller size or fewer frames")

    # ---- running (under the model lock) -----------------------------------------------------------------------

    def run(self, job: Job, progress: Callable[[str, int, int], None] | None = None,
            cancel: threading.Event | None = None, log=print) -> JobResult:
        """Check, wait for the model, sample and save one video.

        Args:
            job: the request.
            progress: ``progress(phase, done, total)`` with phase ``"denoising"`` (steps) or ``"VAE decode"``
                (tiles).
            cancel: set it to stop the job at the next step or tile.

        Returns:
            The :class:`JobResult`.

        Raises:
            JobError: bad input, out of memory, NaN / Inf, a failed save (the message says where it was rescued).
            JobCancelled: ``cancel`` was set.
        """
        try:
            seed = random.randint(0, RANDOM_SEED_MAX) if job.seed is None or int(job.seed) == -1 else int(job.seed)
        except (ValueError, TypeError, OverflowError):
            raise JobError(f"seed must be a whole number (-1 = random), got {job.seed!r}") from None
        req = self.request_of(job, seed)

        def hook(phase: str):
            def cb(done: int, total: int) -> None:
                if cancel is not None and cancel.is_set():
                    raise JobCancelled(f"cancelled at {phase} {done}/{total}")
                if progress is not None:
                    progress(phase, done, total)
            return cb

        with self._lock:
            try:
                if cancel is not None and cancel.is_set():
                    raise JobCancelled("cancelled before it started")
                saved = self._sample(job, req, seed, hook("denoising"), hook("VAE decode"), log)
            except JobCancelled as e:
                log(f"job (seed {seed}, prompt {job.prompt[:40]!r}) {e}")
                raise
            finally:
                release_memory(self.device)
        params = json.loads(saved.sidecar.read_text())
        return JobResult(saved.path, params, seed, saved.seconds)

    def _sample(self, job: Job, req: SampleRequest, seed: int, step_cb, decode_cb, log):
        from hyvideo.diffusion.sampler import NonFiniteError  # noqa: PLC0415
        from hyvideo.lora import LoraFormatError  # noqa: PLC0415

        t0 = time.perf_counter()
        adapter, message = None, None
        try:
            self._set_step_cache(float(job.cache_threshold))
            if job.lora:
                from hyvideo.lora import load_lora_weights  # noqa: PLC0415

                adapter = load_lora_weights(self.pipe.dit, self.lora_dir / job.lora, float(job.lora_scale))
            (saved,) = run_request(self.pipe, req, self.save_dir, seeds=[seed], callback=step_cb,
                                   decode_callback=decode_cb, sidecar_extra={"device": self.device}, log=log)
            return saved
        except (NonFiniteError, OSError, LoraFormatError, ValueError) as e:
            message = str(e)
        except (RuntimeError, MemoryError) as e:
            if not is_oom(e):
                raise
            message = (f"out of memory on {self.device} after {time.perf_counter() - t0:.0f} s sampling "
                       f"{req.video_length} frames at {req.height}x{req.width}; choose a smaller size or fewer "
                       "frames, turn on VAE tiling, or restart the server with --use-cpu-offload")
        finally:
            if adapter is not None:
                from hyvideo.lora import unload_lora  # noqa: PLC0415

                unload_lora(self.pipe.dit, [adapter])
        # raised outside the handler, so the failed step's tensors (held by its traceback) can be freed
        raise JobError(message)

    def _set_step_cache(self, threshold: float) -> None:
        """Install / retune / remove the first-block step cache for this job (0 = off)."""
        from hyvideo.accel.step_cache import StepCachedDiT, disable_step_cache, enable_step_cache  # noqa: PLC0415

        dit = self.pipe.dit
        if threshold > 0:
            if isinstance(dit, StepCachedDiT):
                dit.step_cache.threshold = threshold
            else:
                enable_step_cache(dit, threshold)
            self.pipe.step_cache = dit.step_cache
        elif isinstance(dit, StepCachedDiT):
            disable_step_cache(dit)
            self.pipe.step_cache = None
