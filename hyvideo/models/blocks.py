"""Transformer blocks of the DiT: dual-stream, single-stream and the final layer (spec 1.6-1.8).

Joint attention runs over ``[img, txt]`` (image tokens first); RoPE applies to image q/k only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hyvideo.models.norms import RMSNorm, gated_residual, layer_norm, modulate
from hyvideo.models.rope import norm_rope_joint
from hyvideo.models.token_refiner import MLP
from hyvideo.ops.attention import attention
from hyvideo.ops.linear import fused_linear, fusable, gelu_of, plain_linear


def joint_attention(block: nn.Module, q, k, v, key_mask, txt_len: int) -> torch.Tensor:
    """Joint ``[img, txt]`` attention of a block through its ``attn_processor`` hook.

    ``block.attn_processor`` is None (plain :func:`hyvideo.ops.attention.attention`) or a callable
    ``(q, k, v, *, key_mask, txt_len, backend) -> [B, L, N_h * D_h]`` installed from outside the model,
    e.g. by :func:`hyvideo.parallel.sequence_parallel.enable_sequence_parallel` (Ulysses). The model itself
    never communicates. q/k/v ``[B, L_img + L_txt, N_h, D_h]``, text last; key_mask ``[B, L]`` bool or None.
    """
    if block.attn_processor is not None:
        return block.attn_processor(q, k, v, key_mask=key_mask, txt_len=txt_len, backend=block.attn_backend)
    return attention(q, k, v, key_mask=key_mask, backend=block.attn_backend)


@dataclass
class ModulationOut:
    shift: torch.Tensor  # [B, D]
    scale: torch.Tensor  # [B, D]
    gate: torch.Tensor  # [B, D]


class ModulateDiT(nn.Module):
    """``linear(silu(vec))`` chunked into groups of (shift, scale, gate) (released ``*_mod.linear``)."""

    def __init__(self, hidden_size: int, factor: int, device=None, dtype=None):
        super().__init__()
        self.act = nn.SiLU()
        self.linear = nn.Linear(hidden_size, factor * hidden_size, device=device, dtype=dtype)

    def forward(self, vec: torch.Tensor) -> list[ModulationOut]:
        chunks = self.linear(self.act(vec)).chunk(self.linear.out_features // self.linear.in_features, dim=-1)
        return [ModulationOut(*chunks[i: i + 3]) for i in range(0, len(chunks), 3)]


def _qk_norm(enabled: bool, norm_type: str, head_dim: int, kw) -> nn.Module:
    if not enabled:
        return nn.Identity()
    if norm_type == "rms":
        return RMSNorm(head_dim, eps=1e-6, **kw)
    if norm_type == "layer":
        return nn.LayerNorm(head_dim, eps=1e-6, **kw)
    raise ValueError(f"unknown qk_norm_type {norm_type!r}; allowed: 'rms', 'layer'")


class MMDoubleStreamBlock(nn.Module):
    """Dual-stream block: separate weights for img and txt tokens, one joint attention (spec 1.6)."""

    def __init__(self, hidden_size: int, heads_num: int, mlp_width_ratio: float, qkv_bias: bool = True,
                 qk_norm: bool = True, qk_norm_type: str = "rms", attn_backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.heads_num = heads_num
        self.attn_backend = attn_backend
        self.attn_processor = None  # see joint_attention
        head_dim = hidden_size // heads_num
        mlp_hidden = int(hidden_size * mlp_width_ratio)
        for s in ("img", "txt"):
            setattr(self, f"{s}_mod", ModulateDiT(hidden_size, 6, **kw))
            setattr(self, f"{s}_norm1", layer_norm(hidden_size, **kw))
            setattr(self, f"{s}_attn_qkv", nn.Linear(hidden_size, hidden_size * 3, bias=qkv_bias, **kw))
            setattr(self, f"{s}_attn_q_norm", _qk_norm(qk_norm, qk_norm_type, head_dim, kw))
            setattr(self, f"{s}_attn_k_norm", _qk_norm(qk_norm, qk_norm_type, head_dim, kw))
            setattr(self, f"{s}_attn_proj", nn.Linear(hidden_size, hidden_size, bias=qkv_bias, **kw))
            setattr(self, f"{s}_norm2", layer_norm(hidden_size, **kw))
            setattr(self, f"{s}_mlp", MLP(hidden_size, mlp_hidden, nn.GELU(approximate="tanh"), **kw))

    def _qkv(self, stream: str, x: torch.Tensor, mod: ModulationOut):
        qkv = getattr(self, f"{stream}_attn_qkv")(modulate(getattr(self, f"{stream}_norm1")(x), mod.shift, mod.scale))
        return rearrange(qkv, "B L (K H D) -> K B L H D", K=3, H=self.heads_num)  # q, k, v before the QK norm

    def _post(self, stream: str, x, attn, mod1: ModulationOut, mod2: ModulationOut) -> torch.Tensor:
        x = gated_residual(x, getattr(self, f"{stream}_attn_proj")(attn), mod1.gate)
        h = modulate(getattr(self, f"{stream}_norm2")(x), mod2.shift, mod2.scale)
        return gated_residual(x, getattr(self, f"{stream}_mlp")(h), mod2.gate)

    def forward(self, img, txt, vec, key_mask, rope):
        """img ``[B, L_img, D]``, txt ``[B, L_txt, D]``, vec ``[B, D]``, key_mask ``[B, L]`` bool or None,
        rope ``(cos, sin)`` each ``[L_img, D_h]``. Returns the updated ``(img, txt)``."""
        img_mod1, img_mod2 = self.img_mod(vec)
        txt_mod1, txt_mod2 = self.txt_mod(vec)
        img_q, img_k, img_v = self._qkv("img", img, img_mod1)
        txt_q, txt_k, txt_v = self._qkv("txt", txt, txt_mod1)
        q = norm_rope_joint([(self.img_attn_q_norm, img_q, rope), (self.txt_attn_q_norm, txt_q, None)], img_v.dtype)
        k = norm_rope_joint([(self.img_attn_k_norm, img_k, rope), (self.txt_attn_k_norm, txt_k, None)], img_v.dtype)
        attn = joint_attention(self, q, k, torch.cat([img_v, txt_v], 1), key_mask, txt.shape[1])
        n_img = img.shape[1]
        img = self._post("img", img, attn[:, :n_img], img_mod1, img_mod2)
        txt = self._post("txt", txt, attn[:, n_img:], txt_mod1, txt_mod2)
        return img, txt


class MMSingleStreamBlock(nn.Module):
    """Single-stream block over ``[img; txt]`` with a fused ``linear1`` = [q | k | v | mlp] (spec 1.7)."""

    def __init__(self, hidden_size: int, heads_num: int, mlp_width_ratio: float, qk_norm: bool = True,
                 qk_norm_type: str = "rms", attn_backend: str = "auto", device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.heads_num = heads_num
        self.hidden_size = hidden_size
        self.attn_backend = attn_backend
        self.attn_processor = None  # see joint_attention
        self.mlp_hidden_dim = int(hidden_size * mlp_width_ratio)
        head_dim = hidden_size // heads_num
        self.linear1 = nn.Linear(hidden_size, hidden_size * 3 + self.mlp_hidden_dim, **kw)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size, **kw)
        self.q_norm = _qk_norm(qk_norm, qk_norm_type, head_dim, kw)
        self.k_norm = _qk_norm(qk_norm, qk_norm_type, head_dim, kw)
        self.pre_norm = layer_norm(hidden_size, **kw)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = ModulateDiT(hidden_size, 3, **kw)

    def forward(self, x, vec, txt_len: int, key_mask, rope):
        """x ``[B, L_img + L_txt, D]`` (text last), vec ``[B, D]`` -> same shape as x.

        rope: ``(cos, sin)`` each ``[L_img, D_h]``, or ``[L_img + L_txt, D_h]`` with identity text rows
        (:func:`hyvideo.models.rope.extend_rope_identity`; rotates q/k in one pass, same result).
        """
        (mod,) = self.modulation(vec)
        qkv, act = self._linear1(modulate(self.pre_norm(x), mod.shift, mod.scale))
        q, k, v = rearrange(qkv, "B L (K H D) -> K B L H D", K=3, H=self.heads_num)
        q, k = norm_rope_joint([(self.q_norm, q, rope)], v.dtype), norm_rope_joint([(self.k_norm, k, rope)], v.dtype)
        attn = joint_attention(self, q, k, v, key_mask, txt_len)
        return gated_residual(x, self._linear2(attn, act), mod.gate)

    def _linear1(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``linear1(h)`` split into qkv ``[B, L, 3 D]`` and ``mlp_act(mlp)`` ``[B, L, D_mlp]``.

        Where the GELU can be fused (:func:`hyvideo.ops.linear.fusable`: CPU bf16 inference) the qkv rows and the
        MLP rows of the weight run as two GEMMs, the second with the GELU in its epilogue; otherwise one GEMM.
        """
        d3, approximate = 3 * self.hidden_size, gelu_of(self.mlp_act)
        if approximate is None or not fusable(h, self.linear1):
            qkv, mlp = self.linear1(h).split([d3, self.mlp_hidden_dim], dim=-1)
            return qkv, self.mlp_act(mlp)
        n = self.linear1.out_features
        return fused_linear(h, self.linear1, (0, d3)), fused_linear(h, self.linear1, (d3, n), gelu=approximate)

    def _linear2(self, attn: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``linear2(cat([attn, act], -1))``; as two GEMMs into one buffer (no [B, L, D + D_mlp] concat) except on
        the oneDNN path, where one GEMM on the concat with the (packed) weight is as fast or faster."""
        w = self.linear2.weight
        if fusable(attn, self.linear2) or not plain_linear(self.linear2):
            return self.linear2(torch.cat([attn, act], 2))  # also FP8 / DTensor / offloaded weights
        d = attn.shape[-1]
        out = F.linear(act, w[:, d:], self.linear2.bias)
        return out.flatten(0, 1).addmm_(attn.flatten(0, 1), w[:, :d].t()).view_as(out)


class FinalLayer(nn.Module):
    """``norm_final`` + adaLN (shift, scale — shift first) + ``linear`` to ``prod(patch) * C_out`` (spec 1.8)."""

    def __init__(self, hidden_size: int, patch_size, out_channels: int, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.norm_final = layer_norm(hidden_size, **kw)
        n_out = out_channels
        for p in patch_size:
            n_out *= p
        self.linear = nn.Linear(hidden_size, n_out, bias=True, **kw)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, **kw))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        """x ``[B, L_img, D]`` -> ``[B, L_img, p_t * p_h * p_w * C_out]``."""
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))
