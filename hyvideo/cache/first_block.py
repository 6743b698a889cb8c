"""First-block cache (FBCache; ParaAttention's "first block cache", in the spirit of TeaCache, Liu et al. 2024).

At each sampling step the DiT runs its first dual-stream block. If the image-token residual of that block,
``r = block_0(img) - img``, differs from the one of the last fully computed step by less than ``threshold``
(relative mean absolute difference ``mean|r - r_prev| / mean|r_prev|``), the remaining blocks are skipped and
the residual they produced at that step, ``h_last - h_after_block_0`` (image tokens), is added instead. The
reference residual ``r_prev`` is only refreshed on full steps, so the error of consecutive skips accumulates
against it and bounds the run of skips. The first call after :meth:`FirstBlockCache.reset` is always full.

The DiT calls the cache through its ``step_cache`` attribute (installed by :func:`enable_step_cache`);
under sequence parallelism the two statistics are summed over the ranks so that every rank decides alike.
"""

from __future__ import annotations

import torch
from torch import nn

# Measured on a DiT trained by scripts/train_real_clips_dit.py (30 steps): 0.15 computes 11 of 30 evaluations
# (2.7x fewer) at 58.6 dB PSNR of the decoded video vs uncached; 0.1 computes 20 of 30 at 65.7 dB
# (docs/benchmarks.md).
DEFAULT_THRESHOLD = 0.15

class FirstBlockCache:
    """State of the first-block cache for one sampling run.

    Args:
        threshold: skip when the relative L1 change of the first block's residual is below this (0 = never
            skip; larger = more skips and more error; default :data:`DEFAULT_THRESHOLD`).

    Attributes:
        num_full: DiT evaluations computed in full since the last reset.
        num_skipped: evaluations that reused the cached residual.

    Raises:
        ValueError: a negative threshold.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        if threshold < 0:
            raise ValueError(f"cache threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget the cached residuals and counters (call before every new video)."""
        self.first_residual: torch.Tensor | None = None
        self.rest_residual: torch.Tensor | None = None
        self.num_full = 0
        self.num_skipped = 0

    @property
    def speedup(self) -> float:
        """Evaluations requested / evaluations computed in full (block-count speed-up bound)."""
        return (self.num_full + self.num_skipped) / max(self.num_full, 1)

    def stats(self, first_residual: torch.Tensor) -> torch.Tensor:
        """``[sum|r - r_prev|, sum|r_prev|]`` float32 (sums so that ranks can add them up); zeros if no r_prev."""
        if self.first_residual is None or self.first_residual.shape != first_residual.shape:
            return torch.zeros(2, device=first_residual.device)
        prev = self.first_residual.float()
        return torch.stack([(first_residual.float() - prev).abs().sum(), prev.abs().sum()])

    def can_skip(self, stats: torch.Tensor) -> bool:
        """Decide from (possibly all-reduced) :meth:`stats`."""
        if self.first_residual is None or self.rest_residual is None or self.threshold == 0:
            return False
        diff, ref = stats.tolist()
        return ref > 0 and diff / ref < self.threshold

    def skip(self, img_after_first: torch.Tensor) -> torch.Tensor:
        """Image tokens after the last block, from the cached residual; ``[B, L_img, D]``."""
        self.num_skipped += 1
        return img_after_first + self.rest_residual.to(img_after_first.dtype)

    def update(self, first_residual: torch.Tensor, img_after_first: torch.Tensor, img_last: torch.Tensor) -> None:
        """Store the residuals of a fully computed step."""
        self.num_full += 1
        self.first_residual = first_residual.detach()
        self.rest_residual = (img_last - img_after_first).detach()


def enable_step_cache(model: nn.Module, threshold: float = DEFAULT_THRESHOLD) -> FirstBlockCache:
    """Install a :class:`FirstBlockCache` on every DiT inside ``model`` (one shared state); returns it."""
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    cache = FirstBlockCache(threshold)
    dits = [m for m in model.modules() if isinstance(m, HYVideoDiffusionTransformer)]
    if not dits:
        raise TypeError(f"no HYVideoDiffusionTransformer found in {type(model).__name__}")
    for dit in dits:
        dit.step_cache = cache
    return cache


def disable_step_cache(model: nn.Module) -> None:
    """Remove the step cache (every call computes every block again)."""
    for m in model.modules():
        if hasattr(m, "step_cache"):
            m.step_cache = None
