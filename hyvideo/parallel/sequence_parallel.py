"""Ulysses sequence parallelism for the DiT (DeepSpeed-Ulysses, Jacobs et al. 2023; xDiT's HunyuanVideo rule).

One implementation for training and sampling. After :func:`enable_sequence_parallel`, the model keeps its
signature ``model(x, t, text_states, text_mask, text_states_2, guidance)`` and takes / returns FULL
(replicated) tensors on every rank of the group. Inside:

1. the latent ``[B, C_z, T_z, H_z, W_z]`` is split along the patchified height (or, if that does not divide,
   the width) into ``N`` equal slabs, one per rank, with the matching rows of the RoPE tables
   (the released xDiT rule, ``hyvideo/inference.py::parallelize_transformer``);
2. every joint attention does an all-to-all that turns ``[B, L_img / N, N_h, D_h]`` image q/k/v into
   ``[B, L_img, N_h / N, D_h]`` (all tokens, a slice of heads); the replicated text tokens contribute their
   head slice; a second all-to-all brings the output back to the token slice, text heads are all-gathered;
3. the velocity slabs are all-gathered along the split axis.

Applied from outside, without touching the model's code: forward hooks on three parameter-free or leaf
modules of the DiT (``img_in`` output: this rank's slab of image tokens; ``rope`` output: the slab's table rows;
``final_layer`` output: the slabs gathered back) and a swap of each block's ``attn`` module
(:class:`hyvideo.ops.attention.Attention`, no parameters) for :class:`UlyssesAttention`. The state dict is
unchanged, so this composes with activation checkpointing, ``torch.compile`` and FSDP2.

Communication goes through ``torch.distributed.nn.functional.all_to_all`` (autograd aware; works with gloo on
CPU and NCCL on GPU). Gradient convention: the all-gathers' backward SUMS the replicated output gradients, so
with the same loss on every rank of an SP group, the sum of the per-rank parameter gradients is
``N x`` the single-process gradient -- i.e. averaging gradients over ALL ranks (FSDP/DDP over the flat world)
gives exactly the mean of the per-group single-process gradients.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from hyvideo.ops.attention import Attention, attention


def _heads_and_patch(model_or_config) -> tuple[int, tuple[int, int, int]]:
    if isinstance(model_or_config, Mapping):
        return int(model_or_config["heads_num"]), tuple(model_or_config.get("patch_size", (1, 2, 2)))
    dit = _find_dits(model_or_config)
    if not dit:
        raise TypeError(f"expected a HYVideoDiffusionTransformer (or its config dict), got {type(model_or_config)}")
    return dit[0].heads_num, tuple(dit[0].patch_size)


def split_dim(grid: tuple[int, int, int], sp_degree: int) -> int:
    """Latent axis to split (3 = H, 4 = W of ``[B, C, T, H, W]``) for patch grid ``(T, H, W)``.

    Raises:
        ValueError: neither the patchified height nor width is divisible by ``sp_degree``.
    """
    _, h, w = grid
    if h % sp_degree == 0:
        return 3
    if w % sp_degree == 0:
        return 4
    allowed = sorted({d for d in range(1, max(h, w) + 1) if h % d == 0 or w % d == 0})
    raise ValueError(f"cannot split the patch grid (T, H, W) = {tuple(grid)} evenly across sp_degree={sp_degree} "
                     f"ranks: the patchified height {h} or width {w} must be divisible by it; allowed degrees "
                     f"for this size: {allowed} (video height/16 or width/16 must be a multiple of the degree)")


def check_sp_degree(model_or_config, latent_shape: tuple[int, ...], sp_degree: int) -> None:
    """Check that a latent size can run with Ulysses degree ``sp_degree`` (before any work is done).

    Args:
        model_or_config: the DiT (or a module containing it) or its constructor config dict.
        latent_shape: ``[B, C_z, T_z, H_z, W_z]``.
        sp_degree: number of sequence-parallel ranks (>= 1).

    Raises:
        ValueError: ``heads_num % sp_degree != 0``, or neither the patchified height nor width is
            divisible by ``sp_degree``; the message lists the allowed degrees.
    """
    heads, patch = _heads_and_patch(model_or_config)
    if sp_degree < 1:
        raise ValueError(f"sp_degree must be >= 1, got {sp_degree}")
    if heads % sp_degree:
        allowed = [d for d in range(1, heads + 1) if heads % d == 0]
        raise ValueError(f"Ulysses sp_degree={sp_degree} must divide the number of attention heads {heads}; "
                         f"allowed degrees: {allowed}")
    if len(latent_shape) != 5:
        raise ValueError(f"latent_shape must be [B, C, T, H, W], got {tuple(latent_shape)}")
    grid = tuple(s // p for s, p in zip(latent_shape[2:], patch))
    split_dim(grid, sp_degree)


def _all_to_all(chunks: list[torch.Tensor], group) -> list[torch.Tensor]:
    """Send ``chunks[j]`` to rank j; return what every rank j sent to this one (autograd aware)."""
    chunks = [c.contiguous() for c in chunks]
    out = [torch.empty_like(chunks[0]) for _ in chunks]
    return list(dist_fn.all_to_all(out, chunks, group=group))


def _all_gather(x: torch.Tensor, group, n: int) -> list[torch.Tensor]:
    """All-gather as an all-to-all of ``n`` copies (backward = sum of the gradients; no deprecated API)."""
    return _all_to_all([x] * n, group)


class _SlabPlan:
    """This rank's slab of the patch grid for the current forward: set by the ``img_in`` pre-hook."""

    def __init__(self, group):
        self.group = group
        self.n = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.grid: tuple[int, int, int] = (1, 1, 1)
        self.axis = 1  # 1 = H, 2 = W of the (T, H, W) grid
        self._mask_key: tuple | None = None
        self._full_mask: torch.Tensor | None = None

    def full_key_mask(self, key_mask: torch.Tensor, n_img: int) -> torch.Tensor:
        """This rank's key mask ``[B, L_img/N + L_txt]`` -> the gathered sequence's ``[B, L_img + L_txt]`` bool (image
        keys all valid), built once per forward: every block gets the same tensor, so the attention backend
        computes its unpadding (``cu_seqlens``, host syncs) once per forward, not once per block. Remembered by
        identity (the input is held), never by address."""
        key = (key_mask, key_mask._version, n_img)
        if self._mask_key is None or key_mask is not self._mask_key[0] or key[1:] != self._mask_key[1:]:
            ones = torch.ones(key_mask.shape[0], n_img, dtype=torch.bool, device=key_mask.device)
            self._full_mask = torch.cat([ones, key_mask[:, n_img // self.n:].bool()], dim=1)
            self._mask_key = key
        return self._full_mask

    def slab(self, x: torch.Tensor, grid=None) -> torch.Tensor:
        """Tokens ``[..., L, C]`` in grid order -> this rank's ``[..., L / N, C]``."""
        t, h, w = grid or self.grid
        lead = x.shape[:-2]
        parts = x.reshape(*lead, t, h, w, x.shape[-1]).chunk(self.n, dim=len(lead) + self.axis)
        return parts[self.rank].reshape(*lead, -1, x.shape[-1])

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's ``[B, L / N, C]`` -> the full ``[B, L, C]`` on every rank (autograd aware)."""
        t, h, w = self.grid
        shape = [t, h, w]
        shape[self.axis] //= self.n
        slabs = [s.reshape(x.shape[0], *shape, x.shape[-1]) for s in _all_gather(x, self.group, self.n)]
        return torch.cat(slabs, dim=1 + self.axis).reshape(x.shape[0], -1, x.shape[-1])


class UlyssesAttention(Attention):
    """The blocks' ``attn`` module under Ulysses: joint attention with heads scattered over the group.

    Called as ``(q, k, v, key_mask)`` with q/k/v ``[B, L_img/N + L_txt, N_h, D_h]`` (this rank's image tokens,
    then all text tokens) and returns ``[B, L_img/N + L_txt, N_h * D_h]``; ``backend`` runs the local attention.
    """

    def __init__(self, plan: _SlabPlan, backend: str = "auto"):
        super().__init__(backend)
        self.plan = plan

    @torch.compiler.disable
    def forward(self, q, k, v, key_mask=None) -> torch.Tensor:
        n, rank, group = self.plan.n, self.plan.rank, self.plan.group
        b, l_local, heads, d = q.shape
        if heads % n:
            raise ValueError(f"Ulysses degree {n} must divide the number of heads {heads}")
        t, h, w = self.plan.grid
        n_img = t * h * w // n
        hs = heads // n
        mine = slice(rank * hs, (rank + 1) * hs)

        def to_heads(x):  # [B, L_img/N, N_h, D] -> [B, L_img, N_h/N, D], then text head slice appended
            img = torch.cat(_all_to_all(list(x[:, :n_img].chunk(n, dim=2)), group), dim=1)
            return torch.cat([img, x[:, n_img:, mine]], dim=1)

        qh, kh, vh = to_heads(q), to_heads(k), to_heads(v)
        full_mask = None if key_mask is None else self.plan.full_key_mask(key_mask, n_img * n)
        out = attention(qh, kh, vh, key_mask=full_mask, backend=self.backend).unflatten(-1, (hs, d))
        img = torch.cat(_all_to_all(list(out[:, : n_img * n].chunk(n, dim=1)), group), dim=2)
        txt = torch.cat(_all_gather(out[:, n_img * n:], group, n), dim=2)
        return torch.cat([img, txt], dim=1).flatten(2)


def _find_dits(model: nn.Module) -> list[nn.Module]:
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415 (keep import light)

    return [m for m in model.modules() if isinstance(m, HYVideoDiffusionTransformer)]


def enable_sequence_parallel(model: nn.Module, group=None) -> None:
    """Run ``model``'s DiT with Ulysses sequence parallelism over ``group`` (default: the world).

    Works on a plain, compiled (``Module.compile``), activation-checkpointed or FSDP2-sharded DiT; call it
    on every rank of the group. A group of size 1 leaves the model unchanged.

    Raises:
        RuntimeError: torch.distributed is not initialised.
        TypeError: ``model`` contains no HYVideoDiffusionTransformer.
        ValueError: the number of heads is not divisible by the group size.
    """
    if not dist.is_initialized():
        raise RuntimeError("enable_sequence_parallel needs torch.distributed initialised (torchrun + "
                           "hyvideo.parallel.mesh.init_distributed)")
    dits = _find_dits(model)
    if not dits:
        raise TypeError(f"no HYVideoDiffusionTransformer found in {type(model).__name__}")
    n = dist.get_world_size(group)
    if n == 1:
        return disable_sequence_parallel(model)
    for dit in dits:
        if dit.heads_num % n:
            raise ValueError(f"Ulysses degree {n} must divide heads_num {dit.heads_num}; allowed: "
                             f"{[d for d in range(1, dit.heads_num + 1) if dit.heads_num % d == 0]}")
        disable_sequence_parallel(dit)
        plan = _SlabPlan(group)
        patch = dit.patch_size

        def set_grid(module, args, plan=plan, patch=patch):
            plan.grid = tuple(s // p for s, p in zip(args[0].shape[2:], patch))
            plan.axis = split_dim(plan.grid, plan.n) - 2

        dit._sp_handles = [
            dit.img_in.register_forward_pre_hook(set_grid),
            dit.img_in.register_forward_hook(lambda m, a, out, plan=plan: plan.slab(out)),
            dit.rope.register_forward_hook(lambda m, a, out, plan=plan: tuple(plan.slab(r) for r in out)),
            dit.final_layer.register_forward_hook(lambda m, a, out, plan=plan: plan.gather(out)),
        ]
        for block in [*dit.double_blocks, *dit.single_blocks]:
            inner = _unwrapped(block)
            inner.attn = UlyssesAttention(plan, inner.attn.backend)


def _unwrapped(block: nn.Module) -> nn.Module:
    """The block itself, under an activation-checkpoint wrapper if there is one."""
    return getattr(block, "_checkpoint_wrapped_module", block)


def disable_sequence_parallel(model: nn.Module) -> None:
    """Undo :func:`enable_sequence_parallel` (back to single-device attention)."""
    for dit in _find_dits(model):
        for handle in getattr(dit, "_sp_handles", []):
            handle.remove()
        dit._sp_handles = []
        for block in [*dit.double_blocks, *dit.single_blocks]:
            inner = _unwrapped(block)
            if isinstance(inner.attn, UlyssesAttention):
                inner.attn = Attention(inner.attn.backend)
