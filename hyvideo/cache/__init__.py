"""Step caching for sampling: skip most of the DiT when consecutive steps barely change."""

from hyvideo.cache.first_block import DEFAULT_THRESHOLD, FirstBlockCache, disable_step_cache, enable_step_cache

__all__ = ["DEFAULT_THRESHOLD", "FirstBlockCache", "enable_step_cache", "disable_step_cache"]
