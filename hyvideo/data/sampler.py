"""Distributed, deterministic, resumable bucket batch sampler.

The unit is the *global batch* of one optimizer step: ``micro_batch(kind) * dp_world * grad_accum`` samples of
one bucket (same kind, resolution, size and frame count). Each data-parallel rank reads its slice of it, one
micro-batch per accumulation step, so a 2-rank run and a 1-rank run with the same global batch see exactly the
same samples at every step.

Step ``s`` is a pure function of ``(seed, s)``: the kind comes from the repeating ``mix`` pattern (e.g. 4
video batches then 1 image batch), and the batch is the next one in that kind's epoch order (buckets shuffled
per epoch with ``(seed, kind, epoch)``, cut into global batches, the batch order shuffled). Resuming is
therefore just starting at the saved step; the sampler's state is ``{"step": s}``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence

import torch

log = logging.getLogger(__name__)


def stable_seed(*parts) -> int:
    """A 63-bit seed from ``repr(parts)`` that is the same in every process (unlike ``hash`` of a str)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


class BucketBatchSampler:
    """Yields micro-batches of dataset keys ``(index, step, slot)`` for one data-parallel rank.

    Args:
        bucket_keys: per-sample bucket tuple whose first element is the kind (``"video"``/``"image"``).
        micro_batch: kind -> samples per rank per micro-step.
        dp_world: data-parallel world size (ranks that read different data; sequence-parallel peers share).
        dp_rank: this rank's data-parallel index.
        grad_accum: micro-steps per optimizer step.
        mix: ``(kind, weight)`` pairs: the step pattern repeats ``weight`` consecutive steps per kind.
        seed: base seed.
        start_step: first optimizer step to yield (resume).
        max_steps: stop after this step (None = endless).

    Raises:
        ValueError: no kind has a full global batch, or bad arguments.
    """

    def __init__(self, bucket_keys: Sequence[tuple], *, micro_batch: dict[str, int], dp_world: int = 1,
                 dp_rank: int = 0, grad_accum: int = 1, mix: Sequence[tuple[str, int]] = (("video", 1), ("image", 1)),
                 seed: int = 0, start_step: int = 0, max_steps: int | None = None):
        if not 0 <= dp_rank < dp_world:
            raise ValueError(f"dp_rank {dp_rank} outside [0, {dp_world})")
        self.dp_world, self.dp_rank, self.grad_accum, self.seed = dp_world, dp_rank, grad_accum, seed
        self.micro_batch, self.start_step, self.max_steps = dict(micro_batch), start_step, max_steps
        self.buckets: dict[str, dict[tuple, list[int]]] = {}
        for i, key in enumerate(bucket_keys):
            self.buckets.setdefault(key[0], {}).setdefault(tuple(key), []).append(i)
        self.num_batches = {k: sum(len(v) // self.global_batch(k) for v in b.values()) for k, b in self.buckets.items()}
        self.pattern = [k for k, w in mix for _ in range(int(w)) if self.num_batches.get(k, 0) > 0]
        for k, w in mix:
            if w > 0 and k in self.buckets and self.num_batches[k] == 0:
                log.warning("sampler: no %s bucket holds a full global batch of %d; %s samples unused",
                            k, self.global_batch(k), k)
        if not self.pattern:
            sizes = {k: {b: len(v) for b, v in bs.items()} for k, bs in self.buckets.items()}
            raise ValueError(f"no bucket has a full global batch (micro_batch={self.micro_batch}, dp_world={dp_world}, "
                             f"grad_accum={grad_accum}, mix={list(mix)}); bucket sizes: {sizes}")
        self._cache: dict[tuple[str, int], list[list[int]]] = {}

    def global_batch(self, kind: str) -> int:
        return self.micro_batch[kind] * self.dp_world * self.grad_accum

    def _epoch_batches(self, kind: str, epoch: int) -> list[list[int]]:
        key = (kind, epoch)
        if key not in self._cache:
            g = torch.Generator().manual_seed(stable_seed(self.seed, kind, epoch))
            batches, n = [], self.global_batch(kind)
            for bucket in sorted(self.buckets[kind]):
                idx = self.buckets[kind][bucket]
                perm = [idx[i] for i in torch.randperm(len(idx), generator=g).tolist()]
                batches += [perm[i:i + n] for i in range(0, len(perm) - n + 1, n)]
            self._cache = {key: [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]}
        return self._cache[key]

    def global_indices(self, step: int) -> list[int]:
        """Sample indices of the whole global batch of optimizer step ``step``."""
        period = len(self.pattern)
        kind = self.pattern[step % period]
        k = (step // period) * self.pattern.count(kind) + self.pattern[: step % period].count(kind)
        epoch, pos = divmod(k, self.num_batches[kind])
        return self._epoch_batches(kind, epoch)[pos]

    def micro_batch_keys(self, step: int, micro: int) -> list[tuple[int, int, int]]:
        """This rank's keys ``(index, step, slot)`` for accumulation step ``micro`` of ``step``.

        ``slot`` is the position in the global batch, used to seed per-sample noise so that the data-parallel
        layout does not change the numbers.
        """
        glob = self.global_indices(step)
        mb = len(glob) // (self.dp_world * self.grad_accum)
        first = (micro * self.dp_world + self.dp_rank) * mb
        return [(glob[s], step, s) for s in range(first, first + mb)]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            for micro in range(self.grad_accum):
                yield self.micro_batch_keys(step, micro)
            step += 1

    def state_dict(self, next_step: int) -> dict:
        return {"step": next_step, "seed": self.seed}
