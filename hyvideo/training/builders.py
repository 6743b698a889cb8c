"""Dataset, bucket sampler and loader from the data section of a run config."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader

from hyvideo.data.buckets import buckets_for_tier
from hyvideo.data.latent_cache import LatentCacheDataset, collate_latents
from hyvideo.data.manifest import read_manifest
from hyvideo.data.sampler import BucketBatchSampler
from hyvideo.data.video_dataset import VideoClipDataset, collate

from .config import ConfigError, DataConfig

log = logging.getLogger(__name__)


def check_resolutions(resolutions, where: str = "data.resolutions") -> tuple[str, ...]:
    """Normalise tiers (``256`` / ``"256p"`` -> ``"256"``) and check each has a bucket list.

    Raises:
        ConfigError: a resolution without buckets (the message lists the known tiers).
    """
    out = []
    for r in resolutions:
        tier = str(r).lower().removesuffix("p").removesuffix("px")
        try:
            buckets_for_tier(tier)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        out.append(tier)
    if not out:
        raise ConfigError(f"{where} is empty; give at least one resolution tier")
    return tuple(out)


def build_dataset(data: DataConfig, *, resolutions, num_frames: int, seed: int):
    """The clip dataset over ``data.manifest`` (uint8 pixels), or the latent cache when ``data.latent_cache`` is set.

    Raises:
        ConfigError: no manifest / cache configured, or a resolution without buckets.
        ValueError: no usable sample (the message counts what was skipped and why).
    """
    if data.latent_cache:
        return LatentCacheDataset(data.latent_cache)
    if not data.manifest:
        raise ConfigError("data.manifest (or data.latent_cache for the DiT) must be set")
    return VideoClipDataset(read_manifest(data.manifest), tiers=check_resolutions(resolutions), num_frames=num_frames,
                            fps=data.fps, seed=seed, random_crop=data.random_crop,
                            use_images_from_videos=data.use_images_from_videos, native_crop=data.native_crop,
                            uint8_pixels=True)


def build_loader(dataset, data: DataConfig, *, dp_world: int, dp_rank: int, grad_accum: int, seed: int,
                 start_step: int, max_steps: int, pin_memory: bool = False):
    """``(sampler, loader)`` over ``dataset`` (from :func:`build_dataset`).

    Each iteration of ``loader`` yields one micro-batch of this data-parallel rank; ``grad_accum``
    consecutive micro-batches form optimizer step ``start_step``, then ``start_step + 1``, ...
    Clip pixels arrive as uint8 ``[B, 3, T, h, w]`` (convert on the device with
    :func:`hyvideo.data.buckets.pixels_to_unit`); ``pin_memory`` (set it on CUDA) page-locks each batch so
    the host-to-device copy can be asynchronous.

    Raises:
        ValueError: no bucket holds a full global batch (message lists bucket sizes).
    """
    micro = {"video": data.video_batch_size, "image": data.image_batch_size}
    fn = collate_latents if isinstance(dataset, LatentCacheDataset) else collate
    sampler = BucketBatchSampler(dataset.bucket_keys(), micro_batch=micro, dp_world=dp_world, dp_rank=dp_rank,
                                 grad_accum=grad_accum, mix=data.mix, seed=seed, start_step=start_step,
                                 max_steps=max_steps)
    # Its own generator: creating the iterator draws the workers' base seed from it, not from the global RNG,
    # whose restored state (LoRA dropout) a resumed run must see untouched.
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=fn, num_workers=data.num_workers,
                        persistent_workers=data.num_workers > 0, pin_memory=pin_memory,
                        generator=torch.Generator().manual_seed(seed + start_step))
    return sampler, loader
