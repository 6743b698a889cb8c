"""Transformer blocks of the DiT: dual-stream, single-stream and the final layer (spec 1.6-1.8).

Joint attention runs over ``[img, txt]`` (image tokens first); RoPE applies to image q/k only.
Reference: HV:hyvideo/modules/models.py (``MMDoubleStreamBlock``, ``MMSingleStreamBlock``, ``FinalLayer``).

Token-replace image-to-video (HunyuanVideo-I2V): the first ``num_tokens`` image tokens (latent frame 0, which
holds the clean image latent) are modulated with their own conditioning vector (timestep 0) through the same
``*_mod`` linears; :class:`FirstFrameVec` carries it and :class:`SplitModulation` applies it
(HVI2V:hyvideo/modules/modulate_layers.py ``modulate(..., condition_type="token_replace")``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from hyvideo.models.norms import RMSNorm, gated_residual, layer_norm, modulate
from hyvideo.models.rope import norm_rope_joint
from hyvideo.models.token_refiner import MLP
from hyvideo.ops.attention import Attention


@dataclass
class ModulationOut:
    """One adaLN group for every token: ``shift``, ``scale``, ``gate`` each ``[B, D]``."""

    shift: torch.Tensor  # [B, D]
    scale: torch.Tensor  # [B, D]
    gate: torch.Tensor  # [B, D]

    def modulate(self, x: torch.Tensor) -> torch.Tensor:
        """``x * (1 + scale) + shift`` over ``[B, L, D]``."""
        return modulate(x, self.shift, self.scale)

    def gated(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``residual + x * gate`` over ``[B, L, D]``."""
        return gated_residual(residual, x, self.gate)


@dataclass
class FirstFrameVec:
    """Token-replace conditioning: the first ``num_tokens`` tokens use ``vec`` ``[B, D]`` (timestep 0)."""

    vec: torch.Tensor
    num_tokens: int


@dataclass
class SplitModulation:
    """``first`` modulates tokens ``[:num_tokens]`` (the clean first latent frame), ``rest`` the others."""

    first: ModulationOut
    rest: ModulationOut
    num_tokens: int

    def modulate(self, x: torch.Tensor) -> torch.Tensor:
        n = self.num_tokens
        return torch.cat([self.first.modulate(x[:, :n]), self.rest.modulate(x[:, n:])], dim=1)

    def gated(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        n = self.num_tokens
        return torch.cat([self.first.gated(residual[:, :n], x[:, :n]), self.rest.gated(residual[:, n:], x[:, n:])],
                         dim=1)


class ModulateDiT(nn.Module):
    """``linear(silu(vec))`` chunked into groups of (shift, scale, gate) (released ``*_mod.linear``)."""

    def __init__(self, hidden_size: int, factor: int, device=None, dtype=None):
        super().__init__()
        self.act = nn.SiLU()
        self.linear = nn.Linear(hidden_size, factor * hidden_size, device=device, dtype=dtype)

    def groups(self, vec: torch.Tensor) -> list[ModulationOut]:
        chunks = self.linear(self.act(vec)).chunk(self.linear.out_features // self.linear.in_features, dim=-1)
        return [ModulationOut(*chunks[i: i + 3]) for i in range(0, len(chunks), 3)]

    def forward(self, vec: torch.Tensor, first_frame: FirstFrameVec | None = None):
        """vec ``[B, D]`` -> one :class:`ModulationOut` per group, or :class:`SplitModulation` for token replace."""
        if first_frame is None:
            return self.groups(vec)
        return [SplitModulation(f, r, first_frame.num_tokens)
                for f, r in zip(self.groups(first_frame.vec), self.groups(vec))]


def make_qk_norm(enabled: bool, norm_type: str, head_dim: int, device=None, dtype=None) -> nn.Module:
    """The per-head QK norm: RMSNorm (released) or LayerNorm with affine, eps 1e-6; Identity when disabled.

    Raises:
        ValueError: unknown ``norm_type``.
    """
    if not enabled:
        return nn.Identity()
    if norm_type == "rms":
        return RMSNorm(head_dim, eps=1e-6, device=device, dtype=dtype)
    if norm_type == "layer":
        return nn.LayerNorm(head_dim, eps=1e-6, device=device, dtype=dtype)
    raise ValueError(f"unknown qk_norm_type {norm_type!r}; allowed: 'rms', 'layer'")


class MMDoubleStreamBlock(nn.Module):
    """Dual-stream block: separate weights for img and txt tokens, one joint attention (spec 1.6).

    ``norm_rope_joint`` (class attribute, :func:`hyvideo.models.rope.norm_rope_joint`) builds the joint q / k;
    accelerated subclasses may replace it with a fused kernel of the same math.
    """

    norm_rope_joint = staticmethod(norm_rope_joint)

    def __init__(self, hidden_size: int, heads_num: int, mlp_width_ratio: float, qkv_bias: bool = True,
                 qk_norm: bool = True, qk_norm_type: str = "rms", attn_backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.heads_num = heads_num
        head_dim, mlp_hidden = hidden_size // heads_num, int(hidden_size * mlp_width_ratio)
        self.img_mod = ModulateDiT(hidden_size, 6, **kw)
        self.img_norm1 = layer_norm(hidden_size, **kw)
        self.img_attn_qkv = nn.Linear(hidden_size, hidden_size * 3, bias=qkv_bias, **kw)
        self.img_attn_q_norm = make_qk_norm(qk_norm, qk_norm_type, head_dim, **kw)
        self.img_attn_k_norm = make_qk_norm(qk_norm, qk_norm_type, head_dim, **kw)
        self.img_attn_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias, **kw)
        self.img_norm2 = layer_norm(hidden_size, **kw)
        self.img_mlp = MLP(hidden_size, mlp_hidden, nn.GELU(approximate="tanh"), **kw)
        self.txt_mod = ModulateDiT(hidden_size, 6, **kw)
        self.txt_norm1 = layer_norm(hidden_size, **kw)
        self.txt_attn_qkv = nn.Linear(hidden_size, hidden_size * 3, bias=qkv_bias, **kw)
        self.txt_attn_q_norm = make_qk_norm(qk_norm, qk_norm_type, head_dim, **kw)
        self.txt_attn_k_norm = make_qk_norm(qk_norm, qk_norm_type, head_dim, **kw)
        self.txt_attn_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias, **kw)
        self.txt_norm2 = layer_norm(hidden_size, **kw)
        self.txt_mlp = MLP(hidden_size, mlp_hidden, nn.GELU(approximate="tanh"), **kw)
        self.attn = Attention(attn_backend)

    def forward(self, img, txt, vec, key_mask, rope, first_frame: FirstFrameVec | None = None):
        """img ``[B, L_img, D]``, txt ``[B, L_txt, D]``, vec ``[B, D]``, key_mask ``[B, L]`` bool or None,
        rope ``(cos, sin)`` each ``[L_img, D_h]``, first_frame: token-replace conditioning of the first image
        tokens (None: every image token uses ``vec``). Returns the updated ``(img, txt)``."""
        img_mod1, img_mod2 = self.img_mod(vec, first_frame)
        txt_mod1, txt_mod2 = self.txt_mod(vec)
        # 1. q, k, v per stream [B, L, N_h, D_h]
        img_qkv = self.img_attn_qkv(img_mod1.modulate(self.img_norm1(img)))
        txt_qkv = self.txt_attn_qkv(txt_mod1.modulate(self.txt_norm1(txt)))
        img_q, img_k, img_v = rearrange(img_qkv, "B L (K H D) -> K B L H D", K=3, H=self.heads_num)
        txt_q, txt_k, txt_v = rearrange(txt_qkv, "B L (K H D) -> K B L H D", K=3, H=self.heads_num)
        # 2. QK norm, RoPE on image tokens, joint [img, txt] attention
        q = self.norm_rope_joint([(self.img_attn_q_norm, img_q, rope), (self.txt_attn_q_norm, txt_q, None)], img_v.dtype)
        k = self.norm_rope_joint([(self.img_attn_k_norm, img_k, rope), (self.txt_attn_k_norm, txt_k, None)], img_v.dtype)
        v = torch.cat([img_v, txt_v], dim=1)
        del img_qkv, txt_qkv, img_q, img_k, img_v, txt_q, txt_k, txt_v  # views of the qkv outputs: free them now
        attn = self.attn(q, k, v, key_mask)
        del q, k, v
        img_attn, txt_attn = attn[:, : img.shape[1]], attn[:, img.shape[1]:]
        # 3. Gated residuals: attention projection, then the MLP
        img = img_mod1.gated(img, self.img_attn_proj(img_attn))
        img = img_mod2.gated(img, self.img_mlp(img_mod2.modulate(self.img_norm2(img))))
        txt = txt_mod1.gated(txt, self.txt_attn_proj(txt_attn))
        txt = txt_mod2.gated(txt, self.txt_mlp(txt_mod2.modulate(self.txt_norm2(txt))))
        return img, txt


class MMSingleStreamBlock(nn.Module):
    """Single-stream block over ``[img; txt]`` with a fused ``linear1`` = [q | k | v | mlp] (spec 1.7).

    ``norm_rope_joint`` as in :class:`MMDoubleStreamBlock`; :meth:`split_linear1` and :meth:`project_out` are
    the other pieces an accelerated subclass may replace (e.g. row-split GEMMs, the GELU fused into the GEMM).
    """

    norm_rope_joint = staticmethod(norm_rope_joint)

    def __init__(self, hidden_size: int, heads_num: int, mlp_width_ratio: float, qk_norm: bool = True,
                 qk_norm_type: str = "rms", attn_backend: str = "auto", device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.heads_num, self.hidden_size = heads_num, hidden_size
        self.mlp_hidden_dim = int(hidden_size * mlp_width_ratio)
        head_dim = hidden_size // heads_num
        self.linear1 = nn.Linear(hidden_size, hidden_size * 3 + self.mlp_hidden_dim, **kw)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size, **kw)
        self.q_norm = make_qk_norm(qk_norm, qk_norm_type, head_dim, **kw)
        self.k_norm = make_qk_norm(qk_norm, qk_norm_type, head_dim, **kw)
        self.pre_norm = layer_norm(hidden_size, **kw)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = ModulateDiT(hidden_size, 3, **kw)
        self.attn = Attention(attn_backend)

    def split_linear1(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``linear1(x)`` split into qkv ``[B, L, 3 D]`` and ``mlp_act(mlp)`` ``[B, L, D_mlp]``."""
        qkv, mlp = self.linear1(x).split([3 * self.hidden_size, self.mlp_hidden_dim], dim=-1)
        return qkv, self.mlp_act(mlp)

    def project_out(self, attn: torch.Tensor, mlp: torch.Tensor) -> torch.Tensor:
        """``linear2(cat([attn, mlp], -1))``: attn ``[B, L, D]``, mlp ``[B, L, D_mlp]`` -> ``[B, L, D]``."""
        return self.linear2(torch.cat([attn, mlp], dim=2))

    def forward(self, x, vec, key_mask, rope, first_frame: FirstFrameVec | None = None):
        """x ``[B, L_img + L_txt, D]`` (text last), vec ``[B, D]``, key_mask ``[B, L]`` bool or None,
        rope ``(cos, sin)`` each ``[L_img, D_h]`` (rotates the image tokens only), first_frame: token-replace
        conditioning of the first image tokens (None: every token uses ``vec``) -> same shape as x."""
        (mod,) = self.modulation(vec, first_frame)
        qkv, mlp = self.split_linear1(mod.modulate(self.pre_norm(x)))
        q, k, v = rearrange(qkv, "B L (K H D) -> K B L H D", K=3, H=self.heads_num)
        del qkv
        q = self.norm_rope_joint([(self.q_norm, q, rope)], v.dtype)
        k = self.norm_rope_joint([(self.k_norm, k, rope)], v.dtype)
        attn = self.attn(q, k, v, key_mask)
        del q, k, v  # v views linear1's [B, L, 3 D + D_mlp] output: free it before the projection
        return mod.gated(x, self.project_out(attn, mlp))


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
