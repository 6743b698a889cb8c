"""HunyuanVideo diffusion transformer (``HYVideo-T/2``; spec section 1), text- and image-to-video.

embed (img_in, txt_in token refiner, time_in + vector_in + guidance_in) -> 20 dual-stream blocks ->
40 single-stream blocks -> final layer -> unpatchify. Parameter names equal the released
``mp_rank_00_model_states.pt`` so the released weights load with ``strict=True``.

The HunyuanVideo-I2V variants (HVI2V:hyvideo/modules/models.py, diffusers ``image_condition_type``) have the
same parameter names: ``latent_concat`` only widens ``img_in`` to ``2 C_z + 1`` input channels (noisy latent,
image latent, mask; built by :mod:`hyvideo.diffusion.i2v`); ``token_replace`` keeps ``C_z`` channels, latent
frame 0 carries the clean image latent, and its tokens are modulated with timestep 0 (``time_in(0) +
vector_in(pooled)``, no guidance term) through :class:`hyvideo.models.blocks.FirstFrameVec`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from hyvideo.models.blocks import FinalLayer, FirstFrameVec, MMDoubleStreamBlock, MMSingleStreamBlock
from hyvideo.models.embeddings import MLPEmbedder, PatchEmbed3D, TimestepEmbedder
from hyvideo.models.rope import RotaryEmbedding3D
from hyvideo.models.token_refiner import SingleTokenRefiner

I2V_CONDITION_TYPES = ("latent_concat", "token_replace")  # HunyuanVideo-I2V --i2v-condition-type choices


class HYVideoDiffusionTransformer(nn.Module):
    """The HunyuanVideo DiT. Defaults are the released 13B ``HYVideo-T/2-cfgdistill`` config.

    Args:
        patch_size: ``[p_t, p_h, p_w]`` latent patch, ``[1, 2, 2]``.
        in_channels: latent channels C_z (16).
        out_channels: predicted channels (16; None = in_channels).
        hidden_size: model width D (3072).
        heads_num: attention heads (24); ``D_h = hidden_size / heads_num``.
        mlp_width_ratio: MLP hidden = ``hidden_size * mlp_width_ratio`` (4.0).
        mlp_act_type: only ``"gelu_tanh"`` (the released activation).
        mm_double_blocks_depth: dual-stream blocks (20).
        mm_single_blocks_depth: single-stream blocks (40).
        rope_dim_list: per-axis RoPE dims (t, h, w) summing to ``D_h`` ((16, 56, 56)).
        rope_theta: RoPE base (256).
        qkv_bias: bias on the qkv/proj linears of the dual-stream blocks and refiner (True).
        qk_norm: normalise q and k per head (True); ``qk_norm_type``: ``"rms"`` or ``"layer"``.
        guidance_embed: embed the distilled guidance scale (True for cfgdistill; then ``guidance`` is required).
        text_projection: only ``"single_refiner"`` (the released token refiner).
        use_attention_mask: honour ``text_mask`` (True).
        text_states_dim: LLM hidden size (4096); ``text_states_dim_2``: CLIP pooled size (768).
        text_refiner_depth: token-refiner blocks (2 in the released model; smaller for tiny configs).
        i2v_condition_type: None (text-to-video), ``"latent_concat"`` (``in_channels = 2 * out_channels + 1``)
            or ``"token_replace"`` (``in_channels = out_channels``; the released HunyuanVideo-I2V).
        attn_backend: see :func:`hyvideo.ops.attention.attention`.
        device, dtype: factory kwargs (use ``device="meta"`` to build the 13B model without memory).

    Raises:
        ValueError: inconsistent sizes (hidden % heads, sum(rope_dim_list) != head dim, bad patch size,
            unsupported activation / text projection / qk norm type, an unknown I2V condition type or channel
            counts that do not fit it).
    """

    def __init__(
        self,
        patch_size=(1, 2, 2),
        in_channels: int = 16,
        out_channels: int | None = 16,
        hidden_size: int = 3072,
        heads_num: int = 24,
        mlp_width_ratio: float = 4.0,
        mlp_act_type: str = "gelu_tanh",
        mm_double_blocks_depth: int = 20,
        mm_single_blocks_depth: int = 40,
        rope_dim_list=(16, 56, 56),
        rope_theta: float = 256.0,
        qkv_bias: bool = True,
        qk_norm: bool = True,
        qk_norm_type: str = "rms",
        guidance_embed: bool = True,
        text_projection: str = "single_refiner",
        use_attention_mask: bool = True,
        text_states_dim: int = 4096,
        text_states_dim_2: int = 768,
        text_refiner_depth: int = 2,
        i2v_condition_type: str | None = None,
        attn_backend: str = "auto",
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "device", "dtype")}
        self.config["patch_size"], self.config["rope_dim_list"] = list(patch_size), list(rope_dim_list)
        out_channels = in_channels if out_channels is None else out_channels
        self.config["out_channels"] = out_channels
        _validate(hidden_size, heads_num, patch_size, rope_dim_list, mlp_act_type, text_projection)
        _validate_i2v(i2v_condition_type, in_channels, out_channels)
        kw = {"device": device, "dtype": dtype}
        self.patch_size = tuple(patch_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.heads_num, self.hidden_size = heads_num, hidden_size
        self.rope_dim_list, self.rope_theta = tuple(rope_dim_list), rope_theta
        self.guidance_embed, self.use_attention_mask = guidance_embed, use_attention_mask
        self.text_states_dim, self.text_states_dim_2 = text_states_dim, text_states_dim_2
        self.i2v_condition_type = i2v_condition_type

        self.img_in = PatchEmbed3D(self.patch_size, in_channels, hidden_size, **kw)
        self.txt_in = SingleTokenRefiner(text_states_dim, hidden_size, heads_num, depth=text_refiner_depth,
                                         mlp_width_ratio=mlp_width_ratio, qkv_bias=qkv_bias, **kw)
        self.time_in = TimestepEmbedder(hidden_size, **kw)
        self.vector_in = MLPEmbedder(text_states_dim_2, hidden_size, **kw)
        self.guidance_in = TimestepEmbedder(hidden_size, **kw) if guidance_embed else None
        block_kw = dict(hidden_size=hidden_size, heads_num=heads_num, mlp_width_ratio=mlp_width_ratio,
                        qk_norm=qk_norm, qk_norm_type=qk_norm_type, attn_backend=attn_backend, **kw)
        self.double_blocks = nn.ModuleList(
            [MMDoubleStreamBlock(qkv_bias=qkv_bias, **block_kw) for _ in range(mm_double_blocks_depth)])
        self.single_blocks = nn.ModuleList([MMSingleStreamBlock(**block_kw) for _ in range(mm_single_blocks_depth)])
        self.final_layer = FinalLayer(hidden_size, self.patch_size, out_channels, **kw)
        self.rope = RotaryEmbedding3D(rope_dim_list, rope_theta)  # no parameters

    @classmethod
    def from_config(cls, config: str | os.PathLike | dict[str, Any], **overrides) -> "HYVideoDiffusionTransformer":
        """Build from a dict or a JSON file of constructor kwargs (e.g. ``hyvideo/configs/dit_13b.json``).

        Raises:
            TypeError: an unknown key (the message lists it).
        """
        if not isinstance(config, dict):
            with open(config) as f:
                config = json.load(f)
        config = {k: v for k, v in {**config, **overrides}.items() if not k.startswith("_")}
        return cls(**config)

    def init_weights(self, std: float = 0.02) -> None:
        """Training-from-scratch init as released: normal(std) embedders, zero modulation gates and final layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        embedders = [self.time_in, self.txt_in.t_embedder] + ([self.guidance_in] if self.guidance_in else [])
        for emb in embedders:
            nn.init.normal_(emb.mlp[0].weight, std=std)
            nn.init.normal_(emb.mlp[2].weight, std=std)
        for block in self.txt_in.individual_token_refiner.blocks:
            nn.init.zeros_(block.adaLN_modulation[1].weight)
            nn.init.zeros_(block.adaLN_modulation[1].bias)
        for lin in (self.final_layer.linear, self.final_layer.adaLN_modulation[1]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def grid_size(self, x_shape) -> tuple[int, int, int]:
        """Patch grid ``(T, H, W)`` of a latent of shape ``[B, C, T_z, H_z, W_z]``."""
        return tuple(s // p for s, p in zip(x_shape[2:], self.patch_size))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        text_states_2: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        first_frame_clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity ``noise - data``.

        Args:
            x: latents ``[B, C_in, T_z, H_z, W_z]``; each of T_z, H_z, W_z divisible by the patch size. For
                ``latent_concat`` ``C_in = 2 C_z + 1`` (noisy latent, image latent, mask); for ``token_replace``
                latent frame 0 holds the clean image latent.
            t: ``[B]`` float timesteps ``sigma * 1000`` in [0, 1000] (1000 = pure noise).
            text_states: LLM states ``[B, L_txt, text_states_dim]``.
            text_mask: ``[B, L_txt]`` (1 = token, 0 = padding) or None (all valid).
            text_states_2: CLIP pooled ``[B, text_states_dim_2]``.
            guidance: ``[B]`` embedded guidance scale * 1000; required iff ``guidance_embed``.
            first_frame_clean: ``token_replace`` only: ``[B]`` bool, which samples carry the clean image in
                latent frame 0 (their first-frame tokens are modulated with timestep 0); the others are
                text-to-video samples modulated with ``t`` everywhere (training with ``i2v_prob < 1``). None =
                every sample (I2V sampling).

        Returns:
            Velocity ``[B, C_out, T_z, H_z, W_z]`` in the dtype of the final layer.

        Raises:
            ValueError: wrong shapes or a missing guidance / pooled-text input.
        """
        self._check_inputs(x, t, text_states, text_mask, text_states_2, guidance)
        img, txt, vec, key_mask, rope, first = self.embed(x, t, text_states, text_mask, text_states_2, guidance,
                                                          first_frame_clean)
        # Dual-stream then single-stream blocks over [img, txt] (names rebound so each input is freed once used)
        for block in self.double_blocks:
            img, txt = block(img, txt, vec, key_mask, rope, first)
        n_img, h = img.shape[1], torch.cat([img, txt], dim=1)
        del img, txt
        for block in self.single_blocks:
            h = block(h, vec, key_mask, rope, first)
        # Final layer on the image tokens, unpatchify
        return self.unpatchify(self.final_layer(h[:, :n_img], vec), self.grid_size(x.shape))

    def embed(self, x, t, text_states, text_mask, text_states_2, guidance, first_frame_clean=None):
        """Inputs -> ``(img [B, L_img, D], txt [B, L_txt, D], vec [B, D], key_mask [B, L] bool | None, rope,
        first_frame)``.

        ``rope`` is ``(cos, sin)`` float32 ``[L_img, D_h]``. Trailing text columns that are padding in every row
        are dropped first: padded keys are masked for every query and padded queries never reach the image
        tokens (spec 1.9), so the output is unchanged while attention gets shorter; when no padding is left,
        ``key_mask`` is None (the unmasked attention kernels run). ``first_frame`` is the token-replace
        :class:`FirstFrameVec` (None for the other condition types): its token count is taken from the image
        tokens this process holds (one latent frame of them), so it stays right when a sequence-parallel hook
        has split them by height or width.
        """
        # 1. Conditioning vector [B, D]; token replace: a second one at timestep 0 without the guidance term
        pooled = self.vector_in(text_states_2)
        vec = self.time_in(t) + pooled
        if self.guidance_in is not None:
            vec = vec + self.guidance_in(guidance)
        # 2. Tokens: img [B, L_img, D], txt [B, L_txt, D]
        mask = text_mask if self.use_attention_mask else None
        if mask is not None:
            text_states, mask = _trim_padding(text_states, mask)
        img = self.img_in(x)
        txt = self.txt_in(text_states, t, mask)
        key_mask = None
        if mask is not None and not bool(mask.bool().all()):
            key_mask = torch.cat([mask.new_ones(mask.shape[0], img.shape[1], dtype=torch.bool), mask.bool()], 1)
        # 3. RoPE tables of the patch grid
        grid = self.grid_size(x.shape)
        rope = self.rope(grid, device=x.device)
        first = None
        if self.i2v_condition_type == "token_replace":
            first_vec = self.time_in(torch.zeros_like(t)) + pooled
            if first_frame_clean is not None:  # text-to-video samples: frame 0 is noisy like the rest
                if first_frame_clean.shape != t.shape:
                    raise ValueError(f"first_frame_clean must be [B] = {list(t.shape)} bools, got shape "
                                     f"{list(first_frame_clean.shape)}")
                first_vec = torch.where(first_frame_clean.bool().reshape(-1, 1), first_vec, vec)
            first = FirstFrameVec(first_vec, img.shape[1] // grid[0])
        return img, txt, vec, key_mask, rope, first

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, L_img, C * p_t * p_h * p_w]`` (c outermost) -> ``[B, C, T * p_t, H * p_h, W * p_w]``."""
        (t, h, w), (pt, ph, pw) = grid, self.patch_size
        x = x.reshape(x.shape[0], t, h, w, self.out_channels, pt, ph, pw)
        x = torch.einsum("nthwcopq->nctohpwq", x)
        return x.reshape(x.shape[0], self.out_channels, t * pt, h * ph, w * pw)

    def _check_inputs(self, x, t, text_states, text_mask, text_states_2, guidance) -> None:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [B, {self.in_channels}, T, H, W] latents, got shape {tuple(x.shape)}")
        if any(s % p for s, p in zip(x.shape[2:], self.patch_size)):
            raise ValueError(f"latent (T, H, W) = {tuple(x.shape[2:])} must be divisible by patch {self.patch_size}")
        b = x.shape[0]
        if t.shape != (b,):
            raise ValueError(f"t must be [B] = [{b}] timesteps (sigma * 1000), got shape {tuple(t.shape)}")
        if text_states.ndim != 3 or text_states.shape[0] != b or text_states.shape[2] != self.text_states_dim:
            raise ValueError(f"text_states must be [{b}, L, {self.text_states_dim}], got {tuple(text_states.shape)}")
        if text_mask is not None and text_mask.shape != text_states.shape[:2]:
            raise ValueError(f"text_mask must be {tuple(text_states.shape[:2])}, got {tuple(text_mask.shape)}")
        if text_states_2 is None or text_states_2.shape != (b, self.text_states_dim_2):
            got = None if text_states_2 is None else tuple(text_states_2.shape)
            raise ValueError(f"text_states_2 (CLIP pooled) must be [{b}, {self.text_states_dim_2}], got {got}")
        if self.guidance_embed and (guidance is None or guidance.shape != (b,)):
            got = None if guidance is None else tuple(guidance.shape)
            raise ValueError(f"this model has guidance_embed=True: guidance must be [{b}] "
                             f"(embedded guidance scale * 1000), got {got}")


def _trim_padding(text_states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop text columns that are padding in every batch row (``[B, L_txt, D]``, ``[B, L_txt]``).

    Padded keys are masked for every query and padded queries never reach the image tokens (spec 1.9), so
    the output is unchanged while attention gets shorter and, when every row has the same valid prefix,
    needs no mask at all (flash / fused SDPA path instead of a masked one).
    """
    valid = mask.bool().any(0)
    n = int(valid.nonzero().max()) + 1 if bool(valid.any()) else mask.shape[1]
    return (text_states, mask) if n == mask.shape[1] else (text_states[:, :n], mask[:, :n])


def _validate_i2v(condition_type, in_channels, out_channels) -> None:
    if condition_type is not None and condition_type not in I2V_CONDITION_TYPES:
        raise ValueError(f"i2v_condition_type {condition_type!r} is not supported; allowed: None (text-to-video), "
                         f"{', '.join(repr(c) for c in I2V_CONDITION_TYPES)}")
    want = {"latent_concat": 2 * out_channels + 1, "token_replace": out_channels}.get(condition_type)
    if want is not None and in_channels != want:
        raise ValueError(f"i2v_condition_type {condition_type!r} needs in_channels = {want} for out_channels "
                         f"{out_channels}, got in_channels {in_channels}")


def _validate(hidden_size, heads_num, patch_size, rope_dim_list, mlp_act_type, text_projection) -> None:
    if hidden_size % heads_num:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by heads_num {heads_num}")
    if len(patch_size) != 3:
        raise ValueError(f"patch_size must be [p_t, p_h, p_w], got {list(patch_size)}")
    if sum(rope_dim_list) != hidden_size // heads_num:
        raise ValueError(f"sum(rope_dim_list) = {sum(rope_dim_list)} must equal the head dim "
                         f"{hidden_size // heads_num} (hidden_size / heads_num)")
    if mlp_act_type != "gelu_tanh":
        raise ValueError(f"mlp_act_type {mlp_act_type!r} is not supported; allowed: 'gelu_tanh'")
    if text_projection != "single_refiner":
        raise ValueError(f"text_projection {text_projection!r} is not supported; allowed: 'single_refiner'")
