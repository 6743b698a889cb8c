"""Console (tqdm) and TensorBoard logging of a training run: loss, lr, grad norm, throughput, MFU, samples.

Only rank 0 logs. TensorBoard is optional: without the ``tensorboard`` package the scalars still go to the
console and to ``out_dir/metrics.jsonl``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s per GPU, for MFU (vendor data sheets).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "H800": 989e12, "A800": 312e12, "L40S": 362e12}


def peak_flops() -> float | None:
    """Peak bf16 FLOP/s of the current CUDA device, or None (CPU / unknown GPU: MFU is not reported)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def mfu(flops: float, seconds: float, peak: float, world: int) -> float:
    """Model FLOPs utilisation: ``flops`` done in ``seconds`` by ``world`` devices of ``peak`` FLOP/s each."""
    return flops / seconds / (peak * world)


class Monitor:
    """Rank-0 logger; :meth:`step` records one optimizer step.

    Args:
        out_dir: run folder (``tb/`` and ``metrics.jsonl`` go below it).
        total_steps: for the progress bar.
        start_step: first step (resume).
        enabled: False on ranks other than 0.
        tensorboard, use_tqdm: switches from the run config.
        world: number of ranks (MFU divides by world * peak).
    """

    def __init__(self, out_dir: str | Path, total_steps: int, start_step: int, *, enabled: bool,
                 tensorboard: bool = True, use_tqdm: bool = True, world: int = 1):
        self.enabled, self.world = enabled, world
        self.out_dir = Path(out_dir)
        self.writer = None
        self.bar = None
        self._t = time.perf_counter()
        self._samples = self._tokens = self._flops = 0
        self.peak = peak_flops()
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = (self.out_dir / "metrics.jsonl").open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415

                self.writer = SummaryWriter(str(self.out_dir / "tb"))
            except ImportError:  # pragma: no cover - depends on the environment
                log.warning("tensorboard is not installed; logging to the console and metrics.jsonl only")
        if use_tqdm:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)

    def step(self, step: int, scalars: dict[str, float], *, samples: int, tokens: int, flops: float = 0.0,
             log_now: bool = True) -> dict[str, float]:
        """Record optimizer step ``step``; when ``log_now``, log its scalars plus samples/s, tokens/s and MFU
        averaged since the previous logged step.

        ``samples``, ``tokens``, ``flops``: this step's totals over all ranks (``flops``: model FLOPs of the
        step, e.g. :meth:`hyvideo.training.flops.DiTFlops.train_step`; 0 = no MFU). MFU = flops / s / (world x
        the GPU's dense bf16 peak), logged on known CUDA GPUs only (:func:`peak_flops`)."""
        self._samples += samples
        self._tokens += tokens
        self._flops += flops
        if self.bar is not None and self.enabled:
            self.bar.update(1)
        if not log_now:
            return scalars
        now = time.perf_counter()
        dt, self._t = max(now - self._t, 1e-9), now
        scalars = dict(scalars)
        scalars["samples_per_s"] = self._samples / dt
        scalars["tokens_per_s"] = self._tokens / dt
        if self.peak and self._flops:
            scalars["mfu"] = mfu(self._flops, dt, self.peak, self.world)
        self._samples = self._tokens = self._flops = 0
        if not self.enabled:
            return scalars
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(f"train/{k}", v, step)
        self.metrics.write(json.dumps({"step": step, **scalars}) + "\n")
        self.metrics.flush()
        if self.bar is not None:
            self.bar.set_postfix({k: f"{scalars[k]:.4g}" for k in ("loss", "lr", "grad_norm") if k in scalars})
        else:
            log.info("step %d %s", step, {k: round(v, 6) for k, v in scalars.items()})
        return scalars

    def video(self, step: int, name: str, video: torch.Tensor, fps: int = 8) -> None:
        """Save ``video`` ``[3, T, H, W]`` in [0, 1] as ``samples/<name>_<step>.mp4`` and its frames to TensorBoard."""
        if not self.enabled:
            return
        from hyvideo.utils.video_io import save_video  # noqa: PLC0415

        path = self.out_dir / "samples" / f"{name}_{step:08d}.mp4"
        save_video(video, path, fps=fps)
        if self.writer is not None:
            self.writer.add_images(f"sample/{name}", video.permute(1, 0, 2, 3).clamp(0, 1), step)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.metrics.close()
