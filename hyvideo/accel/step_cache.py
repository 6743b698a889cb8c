"""First-block cache (FBCache; ParaAttention's "first block cache", in the spirit of TeaCache, Liu et al. 2024).

At each sampling step the DiT runs its first dual-stream block. If the image-token residual of that block,
``r = block_0(img) - img``, differs from the one of the last fully computed step by less than ``threshold``
(relative mean absolute difference ``mean|r - r_prev| / mean|r_prev|``), the remaining blocks are skipped and
the residual they produced at that step, ``h_last - h_after_block_0`` (image tokens), is added instead. The
reference residual ``r_prev`` is only refreshed on full steps, so the error of consecutive skips accumulates
against it and bounds the run of skips. The first call after :meth:`FirstBlockCache.reset` is always full.

Installed from outside by :func:`enable_step_cache`, which swaps the DiT's class for :class:`StepCachedDiT`
(same parameters and keys; its forward is the model's, composed from ``embed``, the blocks and
``final_layer``, with block 0 split off). Under sequence parallelism the two statistics are summed over the ranks of the group so that
every rank decides alike.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from hyvideo.models.dit import HYVideoDiffusionTransformer

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

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, group=None):
        if not threshold >= 0:  # also rejects NaN
            raise ValueError(f"cache threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.group = group  # sequence-parallel group whose ranks sum the statistics (None = single device)
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
        """``[sum|r - r_prev|, sum|r_prev|]`` float32, summed over the sequence-parallel group; zeros if no r_prev.

        Accumulated in float32 by the reductions, without float32 copies of the ``[B, L_img, D]`` residuals.
        """
        if self.first_residual is None or self.first_residual.shape != first_residual.shape:
            return torch.zeros(2, device=first_residual.device)
        prev = self.first_residual
        out = torch.stack([(first_residual - prev).abs_().sum(dtype=torch.float32), prev.abs().sum(dtype=torch.float32)])
        if self.group is not None:
            dist.all_reduce(out, group=self.group)
        return out

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


class StepCachedDiT(HYVideoDiffusionTransformer):
    """The DiT with a :class:`FirstBlockCache` in ``self.step_cache`` (made by :func:`enable_step_cache`)."""

    step_cache: FirstBlockCache

    def forward(self, x, t, text_states, text_mask=None, text_states_2=None, guidance=None, first_frame_clean=None):
        """The model's forward with block 0 split off: blocks 1.. are skipped when the cache allows it."""
        cache = self.step_cache
        self._check_inputs(x, t, text_states, text_mask, text_states_2, guidance)
        img, txt, vec, key_mask, rope, first = self.embed(x, t, text_states, text_mask, text_states_2, guidance,
                                                          first_frame_clean)
        img_in = img
        img, txt = self.double_blocks[0](img, txt, vec, key_mask, rope, first)
        first_residual = img - img_in
        del img_in
        if cache.can_skip(cache.stats(first_residual)):
            img = cache.skip(img)
        else:
            img_first = img
            for block in self.double_blocks[1:]:
                img, txt = block(img, txt, vec, key_mask, rope, first)
            h = torch.cat([img, txt], dim=1)
            for block in self.single_blocks:
                h = block(h, vec, key_mask, rope, first)
            img = h[:, : img.shape[1]]
            cache.update(first_residual, img_first, img)
        return self.unpatchify(self.final_layer(img, vec), self.grid_size(x.shape))


def _dits(model: nn.Module) -> list[HYVideoDiffusionTransformer]:
    return [m for m in model.modules() if isinstance(m, HYVideoDiffusionTransformer)]


def enable_step_cache(model: nn.Module, threshold: float = DEFAULT_THRESHOLD, group=None) -> FirstBlockCache:
    """Install one shared :class:`FirstBlockCache` on every DiT inside ``model`` (class swap); returns it.

    Args:
        model: the DiT or a module holding it.
        threshold: see :class:`FirstBlockCache`.
        group: sequence-parallel process group (the statistics are summed over it), or None.

    Raises:
        TypeError: no DiT in ``model``.
        ValueError: a DiT without dual-stream blocks (the cache measures block 0), or a negative threshold.
    """
    cache = FirstBlockCache(threshold, group)
    dits = _dits(model)
    if not dits:
        raise TypeError(f"no HYVideoDiffusionTransformer found in {type(model).__name__}")
    for dit in dits:
        if not len(dit.double_blocks):
            raise ValueError("the step cache needs at least one dual-stream block (it measures block 0)")
        dit.__class__ = StepCachedDiT
        dit.step_cache = cache
    return cache


def disable_step_cache(model: nn.Module) -> None:
    """Remove the step cache (every call computes every block again)."""
    for dit in _dits(model):
        if type(dit) is StepCachedDiT:
            dit.__class__ = HYVideoDiffusionTransformer
            del dit.step_cache
