"""``txt_in``: the individual token refiner applied to the LLM text states (spec section 1.5)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from hyvideo.models.embeddings import TextProjection, TimestepEmbedder
from hyvideo.models.norms import gated_residual
from hyvideo.ops.attention import attention


class MLP(nn.Module):
    """``fc1`` -> activation -> ``fc2`` (the released ``MLP`` keys)."""

    def __init__(self, dim: int, hidden: int, act: nn.Module, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias, device=device, dtype=dtype)
        self.act = act
        self.fc2 = nn.Linear(hidden, dim, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[..., dim]`` -> ``[..., dim]``."""
        return self.fc2(self.act(self.fc1(x)))


class IndividualTokenRefinerBlock(nn.Module):
    """Self-attention + SiLU MLP on text tokens, gated by ``adaLN_modulation`` (gates only, no shift/scale).

    LayerNorms here have an affine (eps 1e-6); no QK norm; 24 heads in the released model.
    """

    def __init__(self, hidden_size: int, heads_num: int, mlp_width_ratio: float, qkv_bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.heads_num = heads_num
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=True, **kw)
        self.self_attn_qkv = nn.Linear(hidden_size, hidden_size * 3, bias=qkv_bias, **kw)
        self.self_attn_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias, **kw)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=True, **kw)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_width_ratio), nn.SiLU(), **kw)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, **kw))

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x ``[B, L_txt, D]``, c ``[B, D]``, attn_mask ``[B, 1, L_txt, L_txt]`` bool -> ``[B, L_txt, D]``."""
        gate_msa, gate_mlp = self.adaLN_modulation(c).chunk(2, dim=-1)
        qkv = self.self_attn_qkv(self.norm1(x))
        q, k, v = rearrange(qkv, "B L (K H D) -> K B L H D", K=3, H=self.heads_num)
        # SDPA with the full [L, L] mask (flash varlen cannot take it; the text sequence is short)
        x = gated_residual(x, self.self_attn_proj(attention(q, k, v, attn_mask=attn_mask, backend="sdpa")), gate_msa)
        return gated_residual(x, self.mlp(self.norm2(x)), gate_mlp)


class IndividualTokenRefiner(nn.Module):
    """Holds ``blocks`` (the released key ``txt_in.individual_token_refiner.blocks.N``)."""

    def __init__(self, depth: int, **block_kw):
        super().__init__()
        self.blocks = nn.ModuleList([IndividualTokenRefinerBlock(**block_kw) for _ in range(depth)])

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn_mask = None
        if mask is not None and not bool(mask.bool().all()):  # an all-valid mask changes nothing: skip it
            m = mask.bool()
            # True where query AND key are valid; column 0 forced True so padded rows are never empty.
            attn_mask = (m[:, None, :, None] & m[:, None, None, :]).clone()
            attn_mask[:, :, :, 0] = True
        for block in self.blocks:
            x = block(x, c, attn_mask)
        return x


class SingleTokenRefiner(nn.Module):
    """``txt_in``: project LLM states to the model width, condition on t + masked-mean context, refine.

    Args:
        in_channels: LLM hidden size (4096 for the released model).
        hidden_size: DiT width D.
        heads_num: attention heads.
        depth: refiner blocks (2 in the released model).
    """

    def __init__(self, in_channels: int, hidden_size: int, heads_num: int, depth: int = 2,
                 mlp_width_ratio: float = 4.0, qkv_bias: bool = True, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.input_embedder = nn.Linear(in_channels, hidden_size, bias=True, **kw)
        self.t_embedder = TimestepEmbedder(hidden_size, **kw)
        self.c_embedder = TextProjection(in_channels, hidden_size, **kw)
        self.individual_token_refiner = IndividualTokenRefiner(
            depth, hidden_size=hidden_size, heads_num=heads_num, mlp_width_ratio=mlp_width_ratio,
            qkv_bias=qkv_bias, **kw,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x ``[B, L_txt, D_txt]``, t ``[B]`` (sigma*1000), mask ``[B, L_txt]`` -> ``[B, L_txt, D]``."""
        if mask is None:
            context = x.mean(dim=1)
        else:
            m = mask.float().unsqueeze(-1)
            context = ((x.float() * m).sum(dim=1) / m.sum(dim=1)).to(x.dtype)  # masked mean of raw states
        c = self.t_embedder(t) + self.c_embedder(context)
        return self.individual_token_refiner(self.input_embedder(x), c, mask)
