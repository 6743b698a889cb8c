"""Block swap for training with a frozen base (LoRA): base block weights live in CPU memory and visit the device
only while their block runs, in the forward and again in the backward.

Each dual- / single-stream block gets its class swapped (same parameters and state-dict keys) for one whose
forward runs through :class:`_SwappedBlock`, an autograd function that combines re-entrant activation
checkpointing with the weight swap (the approach of musubi-tuner's ``blocks_to_swap``):

- forward: copy the block's frozen weights to the device, run the block without autograd, free the weights;
  only the block's inputs are kept;
- backward: copy the weights in again, recompute the block with autograd (the RNG state of the forward is
  restored, so LoRA dropout draws the same masks), back-propagate into the inputs and the trainable (LoRA)
  parameters, free the weights.

Trainable parameters (the adapters) and everything outside the blocks stay on the device. With a 13B DiT in bf16
(24.5 GB of block weights) at most one block (~0.4 GB) is resident at a time. Inference works too (no backward).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import _pytree as pytree

from hyvideo.accel.offload import _BLOCK_LISTS, _block_home


class _Swap:
    """The CPU homes of one block's frozen tensors and the moves in and out."""

    def __init__(self, block: nn.Module, device: torch.device):
        self.device = device
        self.tensors = {n: t for n, t in [*block.named_parameters(), *block.named_buffers()] if not t.requires_grad}
        self.home = _block_home(self.tensors, pin=device.type == "cuda")
        self.free()

    def load(self) -> None:
        for name, t in self.tensors.items():
            t.data = self.home[name].to(self.device, non_blocking=True)

    def free(self) -> None:
        for t in self.tensors.values():
            t.data = torch.empty(0, dtype=t.dtype, device=self.device)


_TENSOR = object()  # placeholder of a tensor leaf in ``ctx.leaves`` (a None leaf is a real argument)


class _SwappedBlock(torch.autograd.Function):
    """``outputs = block(*inputs)`` with the block's weights swapped in for the forward and the backward.

    The block's trainable parameters are passed as inputs too, so the outputs require grad even when the block's
    activations do not (frozen embedders), and their gradients come back through the function's backward.
    """

    @staticmethod
    def forward(ctx, block, spec, n_leaves, *leaves_and_params):
        leaves = leaves_and_params[:n_leaves]
        ctx.block, ctx.spec, ctx.n_leaves = block, spec, n_leaves
        ctx.rng = torch.get_rng_state()
        ctx.save_for_backward(*[x for x in leaves if torch.is_tensor(x)])
        ctx.leaves = [_TENSOR if torch.is_tensor(x) else x for x in leaves]
        swap = block._block_swap
        swap.load()
        try:
            with torch.no_grad():
                out = type(block).__mro__[1].forward(block, *pytree.tree_unflatten(list(leaves), spec))
        finally:
            swap.free()
        return out if isinstance(out, tuple) else (out,)

    @staticmethod
    def backward(ctx, *grads):
        tensors = iter(ctx.saved_tensors)
        leaves = [next(tensors) if x is _TENSOR else x for x in ctx.leaves]
        inputs = [x.detach().requires_grad_(x.requires_grad) if torch.is_tensor(x) else x for x in leaves]
        params = [p for p in ctx.block.parameters() if p.requires_grad]
        swap = ctx.block._block_swap
        swap.load()
        try:
            with torch.enable_grad(), torch.random.fork_rng(devices=[]):
                torch.set_rng_state(ctx.rng)
                out = type(ctx.block).__mro__[1].forward(ctx.block, *pytree.tree_unflatten(inputs, ctx.spec))
                out = out if isinstance(out, tuple) else (out,)
                pairs = [(o, g) for o, g in zip(out, grads) if o.requires_grad and g is not None]
                wrt = [x for x in inputs if torch.is_tensor(x) and x.requires_grad] + params
                got = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True) \
                    if pairs and wrt else [None] * len(wrt)
        finally:
            swap.free()
        got = iter(got)
        leaf_grads = [next(got) if torch.is_tensor(x) and x.requires_grad else None for x in inputs]
        return (None, None, None, *leaf_grads, *got)


def _swapped_forward(self, *args):
    leaves, spec = pytree.tree_flatten(args)
    params = [p for p in self.parameters() if p.requires_grad]
    out = _SwappedBlock.apply(self, spec, len(leaves), *leaves, *params)
    return out if len(out) > 1 else out[0]


def enable_block_swap(dit: nn.Module, device: torch.device | str) -> int:
    """Keep the frozen weights of ``dit``'s blocks in CPU memory and swap them in per use (see module docstring).

    Call after freezing the base and injecting the adapters; everything else of ``dit`` (adapters included)
    moves to ``device``. Replaces activation checkpointing for the blocks (do not wrap them again).

    Returns:
        The number of blocks swapped.

    Raises:
        ValueError: ``dit`` has no block lists.
    """
    device = torch.device(device)
    blocks = [b for name in _BLOCK_LISTS for b in getattr(dit, name, [])]
    if not blocks:
        raise ValueError(f"{type(dit).__name__} has no {_BLOCK_LISTS} to swap")
    block_ids = {id(t) for b in blocks for t in [*b.parameters(), *b.buffers()] if not t.requires_grad}
    for t in [*dit.parameters(), *dit.buffers()]:
        if id(t) not in block_ids:
            t.data = t.data.to(device)
    for block in blocks:
        block._block_swap = _Swap(block, device)
        block.__class__ = type(f"Swapped{type(block).__name__}", (type(block),), {"forward": _swapped_forward})
    return len(blocks)
