"""CPU offload for sampling large models on small GPUs: block streaming for the DiT, whole-model offload for the rest.

Sequential (block-level) offload (:class:`SequentialOffload`): the DiT's repeated blocks (``double_blocks``,
``single_blocks``) keep their weights in CPU memory, one exact-size pinned buffer per block when the compute
device is CUDA (per-tensor pinned allocations round up to powers of two: 23.2 GiB of 13B blocks would pin
31.3 GiB). A forward pre-hook copies a block's weights to the device just before it runs and a forward hook frees
them right after; on CUDA the next block is prefetched on a side stream while the current one computes, so at
most two blocks occupy device memory (one without prefetch). Everything outside the blocks (embedders, token
refiner, final layer: ~2% of the weights) stays on the device.

Model-level offload (:func:`placed`): a whole model lives on the CPU and moves to the device only while it runs
(the text encoders and the VAE under ``--use-cpu-offload``; every model under ``--model-cpu-offload``).

Inference only: the weights are swapped through ``param.data``, which autograd does not track.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

_BLOCK_LISTS = ("double_blocks", "single_blocks")
_ALIGN = 64  # bytes: every tensor of a block's buffer starts on a 64-byte boundary


class SequentialOffload:
    """Installs and removes the block-streaming hooks on a DiT; see the module docstring.

    Args:
        model: a module with ``double_blocks`` / ``single_blocks`` ``nn.ModuleList`` s (the DiT).
        device: the compute device.
        prefetch: copy block i+1 on a side stream while block i runs (CUDA only; ignored on CPU).

    Raises:
        ValueError: ``model`` has none of the block lists.
    """

    def __init__(self, model: nn.Module, device: torch.device | str, prefetch: bool = True):
        self.device = torch.device(device)
        self.blocks = [b for name in _BLOCK_LISTS for b in getattr(model, name, [])]
        if not self.blocks:
            raise ValueError(f"{type(model).__name__} has no {_BLOCK_LISTS} to offload")
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda and prefetch else None
        self.home: list[dict[str, torch.Tensor]] = []
        self._ready: dict[int, torch.cuda.Event] = {}
        self._handles = []
        block_ids = {id(t) for b in self.blocks for t in _tensors(b).values()}
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if id(t) not in block_ids:  # small non-block weights live on the device
                t.data = t.data.to(self.device)
        for i, block in enumerate(self.blocks):
            self.home.append(_block_home(_tensors(block), pin=cuda))
            for t in _tensors(block).values():
                t.data = torch.empty(0, dtype=t.dtype, device=self.device)  # placeholder: nothing resident
            self._handles.append(block.register_forward_pre_hook(lambda m, a, i=i: self._load(i)))
            self._handles.append(block.register_forward_hook(lambda m, a, o, i=i: self._free(i)))

    @property
    def pinned_bytes(self) -> int:
        """Bytes of CPU memory holding the offloaded blocks (pinned on CUDA)."""
        return sum(_buffer_of(h).numel() for h in self.home if h)

    def _copy_in(self, i: int) -> None:
        for name, t in _tensors(self.blocks[i]).items():
            t.data = self.home[i][name].to(self.device, non_blocking=True)

    def _load(self, i: int) -> None:
        if i in self._ready:  # prefetched on the side stream: make the compute stream wait for it
            torch.cuda.current_stream(self.device).wait_event(self._ready.pop(i))
            for t in _tensors(self.blocks[i]).values():
                t.data.record_stream(torch.cuda.current_stream(self.device))
        elif not self.resident(i):
            self._copy_in(i)
        nxt = i + 1
        if self.stream is not None and nxt < len(self.blocks) and not self.resident(nxt):
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                self._copy_in(nxt)
                event = torch.cuda.Event()
                event.record(self.stream)
            self._ready[nxt] = event

    def _free(self, i: int) -> None:
        for t in _tensors(self.blocks[i]).values():
            t.data = torch.empty(0, dtype=t.dtype, device=self.device)

    def resident(self, i: int) -> bool:
        """Whether block ``i``'s weights are currently on the compute device."""
        return all(t.numel() > 0 or self.home[i][n].numel() == 0 for n, t in _tensors(self.blocks[i]).items())

    def num_resident(self) -> int:
        """How many blocks currently hold their weights on the compute device."""
        return sum(self.resident(i) for i in range(len(self.blocks)))

    def remove(self) -> None:
        """Remove the hooks and put every block's weights back on the compute device."""
        for h in self._handles:
            h.remove()
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
        self._ready.clear()
        for i in range(len(self.blocks)):
            self._copy_in(i)
        self._handles = []


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def _block_home(tensors: dict[str, torch.Tensor], pin: bool) -> dict[str, torch.Tensor]:
    """CPU copies of a block's tensors as views of ONE byte buffer of the exact total size (pinned if ``pin``)."""
    sizes = {n: t.numel() * t.element_size() for n, t in tensors.items()}
    offsets, total = {}, 0
    for n, size in sizes.items():
        offsets[n] = total
        total += -(-size // _ALIGN) * _ALIGN
    buffer = torch.empty(total, dtype=torch.uint8, pin_memory=pin)
    home = {}
    for n, t in tensors.items():
        view = buffer[offsets[n]: offsets[n] + sizes[n]].view(t.dtype).view(t.shape)
        view.copy_(t.data)
        home[n] = view
    return home


def _buffer_of(home: dict[str, torch.Tensor]) -> torch.Tensor:
    first = next(iter(home.values()))
    return torch.empty(0, dtype=torch.uint8).set_(first.untyped_storage())


def enable_sequential_offload(model: nn.Module, device: torch.device | str = "cuda",
                              prefetch: bool = True) -> SequentialOffload:
    """Offload ``model``'s blocks to CPU and stream them to ``device`` one at a time (see module docstring).

    Returns:
        The :class:`SequentialOffload` handle; ``handle.remove()`` undoes it.
    """
    return SequentialOffload(model, device, prefetch)


@contextlib.contextmanager
def placed(module, device: torch.device, offload: bool):
    """Move ``module`` to ``device`` for the block's duration when ``offload`` (back to the CPU after)."""
    if offload:
        module.to(device)
    try:
        yield
    finally:
        if offload:
            module.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()
