"""Model FLOPs of a DiT training step, for MFU (model FLOPs utilisation, PaLM appendix B).

A dense weight ``[out, in]`` applied to ``n`` tokens costs ``2 * n * out * in`` FLOPs in the forward pass; attention
over ``L`` tokens costs ``4 * L^2 * D`` (``QK^T`` and ``PV``, ``D`` = heads x head dim). The DiT applies its weights
to different token sets (:func:`weight_tokens`): image-stream weights of the dual-stream blocks to the ``L_img``
image tokens, text-stream weights and the token refiner to the ``L_txt`` text tokens, single-stream blocks to
``L_img + L_txt``, and the conditioning embedders / modulation linears once per sample. Attention is joint over
``L_img + L_txt`` in every dual- and single-stream block and over ``L_txt`` in each refiner block. A training step
is 3 forward passes (backward = 2x forward); activation-checkpointing recomputation is not counted (that is MFU's
definition, not hardware FLOPs). LoRA runs are counted as full training (an upper bound on their model FLOPs).

Element-wise work (norms, RoPE, GELU, softmax) is left out, as in every MFU figure; so the formula matches what
``torch.utils.flop_counter.FlopCounterMode`` counts (matmuls, convolutions, attention), which the tests check.

Models without a closed form (the causal 3D VAE: convolutions with causal padding, down/upsampling) are counted by
:class:`MetaFlopCounter`: ``FlopCounterMode`` over one forward on the ``meta`` device, once per input shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from hyvideo.utils.modules import clean_name

_IMG = re.compile(r"(^|\.)(double_blocks\.\d+\.img_(attn|mlp)|img_in\.|final_layer\.linear\.)")
_TXT = re.compile(r"(^|\.)(double_blocks\.\d+\.txt_(attn|mlp)|txt_in\.(input_embedder|individual_token_refiner"
                  r"\.blocks\.\d+\.(self_attn|mlp)))")
_JOINT = re.compile(r"(^|\.)single_blocks\.\d+\.linear[12]\.")


def weight_tokens(name: str) -> str:
    """Which tokens the weight ``name`` (released key, wrapper prefixes allowed) is applied to: ``"img"``,
    ``"txt"``, ``"joint"`` (image + text) or ``"sample"`` (once per sample: embedders, modulation)."""
    name = clean_name(name)
    if _IMG.search(name):
        return "img"
    if _TXT.search(name):
        return "txt"
    if _JOINT.search(name):
        return "joint"
    return "sample"


@dataclass(frozen=True)
class DiTFlops:
    """Per-token weight sizes and attention layer counts of one DiT (see the module docstring).

    Attributes:
        weights: multiply-accumulates per token, per token set (``"img"``, ``"txt"``, ``"joint"``, ``"sample"``).
        joint_attn_layers: dual- plus single-stream blocks (attention over image + text tokens).
        txt_attn_layers: token-refiner blocks (attention over text tokens).
        attn_dim: heads x head dim (the hidden size).
    """

    weights: dict[str, int]
    joint_attn_layers: int
    txt_attn_layers: int
    attn_dim: int

    @classmethod
    def of(cls, model: nn.Module) -> DiTFlops:
        """From a DiT (plain, meta-built, FSDP-sharded or LoRA-wrapped: DTensor shapes are global).

        Raises:
            ValueError: ``model`` has no ``double_blocks`` / ``single_blocks`` (not a HunyuanVideo DiT).
        """
        weights = {"img": 0, "txt": 0, "joint": 0, "sample": 0}
        for name, p in model.named_parameters():
            if p.dim() >= 2:  # matrices and conv kernels; biases and norm scales are element-wise
                weights[weight_tokens(name)] += p.numel()
        names = [clean_name(n) for n, _ in model.named_modules()]
        double = sum(bool(re.fullmatch(r"(.*\.)?double_blocks\.\d+", n)) for n in names)
        single = sum(bool(re.fullmatch(r"(.*\.)?single_blocks\.\d+", n)) for n in names)
        refiner = sum(bool(re.fullmatch(r"(.*\.)?txt_in\.individual_token_refiner\.blocks\.\d+", n)) for n in names)
        if not double + single:
            raise ValueError(f"{type(model).__name__} has no double_blocks / single_blocks: not a HunyuanVideo DiT")
        dim = next(m.hidden_size for m in model.modules() if hasattr(m, "hidden_size"))
        return cls(weights, double + single, refiner, int(dim))

    def forward(self, batch: int, img_tokens: int, txt_tokens: int) -> int:
        """Forward FLOPs of ``batch`` samples of ``img_tokens`` image and ``txt_tokens`` text tokens (the text
        length after the trailing padding is trimmed, as the DiT does)."""
        w, joint = self.weights, img_tokens + txt_tokens
        macs = w["img"] * img_tokens + w["txt"] * txt_tokens + w["joint"] * joint + w["sample"]
        attn = 4 * self.attn_dim * (self.joint_attn_layers * joint ** 2 + self.txt_attn_layers * txt_tokens ** 2)
        return batch * (2 * macs + attn)

    def train_step(self, batch: int, img_tokens: int, txt_tokens: int) -> int:
        """Model FLOPs of forward + backward (3 x forward) of one micro-batch."""
        return 3 * self.forward(batch, img_tokens, txt_tokens)


def dit_tokens(dit_config: dict, latent_shape: tuple[int, ...], text_mask: torch.Tensor | None) -> tuple[int, int]:
    """``(L_img, L_txt)`` the DiT computes on for latents ``[B, C, T_z, H_z, W_z]`` and a text mask ``[B, L]``:
    image tokens per patch grid, text tokens up to the last column that is valid in some row (the DiT trims
    trailing padding; all ``L`` without an attention mask)."""
    patch = dit_config.get("patch_size", [1, 2, 2])
    img = 1
    for size, p in zip(latent_shape[2:], patch):
        img *= size // p
    if text_mask is None:
        return img, 0
    if not dit_config.get("use_attention_mask", True):
        return img, int(text_mask.shape[1])
    valid = torch.nonzero(text_mask.bool().any(0))
    return img, int(valid.max()) + 1 if len(valid) else 0


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count  # noqa: PLC0415

    return sdpa_flop_count(query, key, value)


def flop_counter():
    """``FlopCounterMode`` that also counts CPU's fused attention kernel (absent from torch's FLOP registry)."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops})


class MetaFlopCounter:
    """Forward FLOPs of ``factory()`` on inputs of given shapes, counted by ``FlopCounterMode`` on one forward of a
    ``meta``-device copy (no memory, no compute; seconds for a large video VAE), cached per shape tuple.

    Args:
        factory: builds the model (called once, under ``torch.device("meta")``).
    """

    def __init__(self, factory: Callable[[], nn.Module]):
        self.factory, self.model, self.cache = factory, None, {}

    def forward(self, *shapes: tuple[int, ...]) -> int:
        """FLOPs of ``model(*inputs)`` for float32 inputs of ``shapes``."""
        if shapes not in self.cache:
            if self.model is None:
                with torch.device("meta"):
                    self.model = self.factory()
            inputs = [torch.empty(s, device="meta") for s in shapes]
            with torch.no_grad(), flop_counter() as counter:
                self.model(*inputs)
            self.cache[shapes] = int(counter.get_total_flops())
        return self.cache[shapes]

    def train_step(self, *shapes: tuple[int, ...]) -> int:
        """Model FLOPs of forward + backward (3 x forward)."""
        return 3 * self.forward(*shapes)
