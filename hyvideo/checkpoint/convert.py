"""State-dict key maps between the released (official) layout, which hyvideo uses as-is, and diffusers.

Pure ``dict -> dict`` functions, no IO (spec section 2.4; the inverse of diffusers'
``scripts/convert_hunyuan_video_to_diffusers.py``). The VAE keys are identical in both layouts.
"""

from __future__ import annotations

import re

import torch

# (diffusers key regex, official key template); applied to whole keys, first match wins.
_DIT_RENAMES = [
    (r"x_embedder\.proj\.(.*)", r"img_in.proj.\1"),
    (r"time_text_embed\.timestep_embedder\.linear_1\.(.*)", r"time_in.mlp.0.\1"),
    (r"time_text_embed\.timestep_embedder\.linear_2\.(.*)", r"time_in.mlp.2.\1"),
    (r"time_text_embed\.guidance_embedder\.linear_1\.(.*)", r"guidance_in.mlp.0.\1"),
    (r"time_text_embed\.guidance_embedder\.linear_2\.(.*)", r"guidance_in.mlp.2.\1"),
    (r"time_text_embed\.text_embedder\.linear_1\.(.*)", r"vector_in.in_layer.\1"),
    (r"time_text_embed\.text_embedder\.linear_2\.(.*)", r"vector_in.out_layer.\1"),
    (r"context_embedder\.proj_in\.(.*)", r"txt_in.input_embedder.\1"),
    (r"context_embedder\.time_text_embed\.timestep_embedder\.linear_1\.(.*)", r"txt_in.t_embedder.mlp.0.\1"),
    (r"context_embedder\.time_text_embed\.timestep_embedder\.linear_2\.(.*)", r"txt_in.t_embedder.mlp.2.\1"),
    (r"context_embedder\.time_text_embed\.text_embedder\.linear_1\.(.*)", r"txt_in.c_embedder.linear_1.\1"),
    (r"context_embedder\.time_text_embed\.text_embedder\.linear_2\.(.*)", r"txt_in.c_embedder.linear_2.\1"),
    (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.norm(1|2)\.(.*)",
     r"txt_in.individual_token_refiner.blocks.\1.norm\2.\3"),
    (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.attn\.to_out\.0\.(.*)",
     r"txt_in.individual_token_refiner.blocks.\1.self_attn_proj.\2"),
    (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.ff\.net\.0\.proj\.(.*)",
     r"txt_in.individual_token_refiner.blocks.\1.mlp.fc1.\2"),
    (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.ff\.net\.2\.(.*)",
     r"txt_in.individual_token_refiner.blocks.\1.mlp.fc2.\2"),
    (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.norm_out\.linear\.(.*)",
     r"txt_in.individual_token_refiner.blocks.\1.adaLN_modulation.1.\2"),
    (r"transformer_blocks\.(\d+)\.norm1\.linear\.(.*)", r"double_blocks.\1.img_mod.linear.\2"),
    (r"transformer_blocks\.(\d+)\.norm1_context\.linear\.(.*)", r"double_blocks.\1.txt_mod.linear.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_q\.(.*)", r"double_blocks.\1.img_attn_q_norm.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_k\.(.*)", r"double_blocks.\1.img_attn_k_norm.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_added_q\.(.*)", r"double_blocks.\1.txt_attn_q_norm.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.norm_added_k\.(.*)", r"double_blocks.\1.txt_attn_k_norm.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.to_out\.0\.(.*)", r"double_blocks.\1.img_attn_proj.\2"),
    (r"transformer_blocks\.(\d+)\.attn\.to_add_out\.(.*)", r"double_blocks.\1.txt_attn_proj.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj\.(.*)", r"double_blocks.\1.img_mlp.fc1.\2"),
    (r"transformer_blocks\.(\d+)\.ff\.net\.2\.(.*)", r"double_blocks.\1.img_mlp.fc2.\2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj\.(.*)", r"double_blocks.\1.txt_mlp.fc1.\2"),
    (r"transformer_blocks\.(\d+)\.ff_context\.net\.2\.(.*)", r"double_blocks.\1.txt_mlp.fc2.\2"),
    (r"single_transformer_blocks\.(\d+)\.proj_out\.(.*)", r"single_blocks.\1.linear2.\2"),
    (r"single_transformer_blocks\.(\d+)\.attn\.norm_q\.(.*)", r"single_blocks.\1.q_norm.\2"),
    (r"single_transformer_blocks\.(\d+)\.attn\.norm_k\.(.*)", r"single_blocks.\1.k_norm.\2"),
    (r"single_transformer_blocks\.(\d+)\.norm\.linear\.(.*)", r"single_blocks.\1.modulation.linear.\2"),
    (r"proj_out\.(.*)", r"final_layer.linear.\1"),
]

# Groups of diffusers keys that the official layout stores as one fused tensor (concatenated on dim 0).
_DIT_FUSED = [
    (r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\.attn\.to_(q|k|v)\.(.*)",
     ("q", "k", "v"), "txt_in.individual_token_refiner.blocks.{0}.self_attn_qkv.{2}"),
    (r"transformer_blocks\.(\d+)\.attn\.to_(q|k|v)\.(.*)", ("q", "k", "v"), "double_blocks.{0}.img_attn_qkv.{2}"),
    (r"transformer_blocks\.(\d+)\.attn\.add_(q|k|v)_proj\.(.*)", ("q", "k", "v"), "double_blocks.{0}.txt_attn_qkv.{2}"),
    (r"single_transformer_blocks\.(\d+)\.(attn\.to_q|attn\.to_k|attn\.to_v|proj_mlp)\.(.*)",
     ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "single_blocks.{0}.linear1.{2}"),
]

_FINAL_MOD = "norm_out.linear."  # diffusers AdaLayerNormContinuous: [scale; shift], official: [shift; scale]
_GROUP = re.compile(r"\((?:\\d\+|\.\*|1\|2|q\|k\|v|[a-z_.\\|]+)\)")


def _invert(pattern: str, template: str) -> tuple[re.Pattern, str]:
    """Turn (diffusers regex, official template) into (official regex, diffusers template)."""
    groups = _GROUP.findall(pattern)
    regex = ""
    for piece in re.split(r"(\\\d)", template):
        regex += groups[int(piece[1]) - 1] if re.fullmatch(r"\\\d", piece) else re.escape(piece)
    counter = iter(range(1, len(groups) + 1))
    inverse_template = _GROUP.sub(lambda _: f"\\{next(counter)}", pattern).replace("\\.", ".")
    return re.compile(regex), inverse_template


_DIT_RENAMES_INV = [_invert(p, t) for p, t in _DIT_RENAMES]


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def diffusers_to_official_dit(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a diffusers ``HunyuanVideoTransformer3DModel`` state dict to the released (= hyvideo) keys.

    Fuses q/k/v (and the single blocks' ``proj_mlp``) into ``*_qkv`` / ``linear1`` by concatenating on
    dim 0, and swaps the final modulation halves (diffusers [scale; shift] -> official [shift; scale]).

    Raises:
        KeyError: keys with no official counterpart (listed), or a fused group with a missing part.
    """
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, tuple[tuple[str, ...], dict[str, torch.Tensor]]] = {}
    unknown = []
    for key, value in sd.items():
        if key.startswith(_FINAL_MOD):
            out["final_layer.adaLN_modulation.1." + key[len(_FINAL_MOD):]] = _swap_halves(value)
            continue
        for pattern, parts, template in _DIT_FUSED:
            m = re.fullmatch(pattern, key)
            if m:
                target = template.format(*m.groups())
                groups.setdefault(target, (parts, {}))[1][m.group(2)] = value
                break
        else:
            for pattern, repl in _DIT_RENAMES:
                if re.fullmatch(pattern, key):
                    out[re.sub(pattern, repl, key)] = value
                    break
            else:
                unknown.append(key)
    if unknown:
        raise KeyError(f"diffusers keys with no official counterpart: {unknown[:10]} ({len(unknown)} in all)")
    for target, (parts, found) in groups.items():
        missing = [p for p in parts if p not in found]
        if missing:
            raise KeyError(f"cannot build {target}: missing parts {missing}")
        out[target] = torch.cat([found[p] for p in parts], dim=0)
    return out


def official_to_diffusers_dit(sd: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """Inverse of :func:`diffusers_to_official_dit`; ``hidden_size`` sizes the q/k/v splits.

    Raises:
        KeyError: an official key with no diffusers counterpart.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("final_layer.adaLN_modulation.1."):
            out[_FINAL_MOD + key.rsplit(".", 1)[1]] = _swap_halves(value)
            continue
        out.update(_split_fused(key, value, hidden_size) or _rename_inverse(key, value))
    return out


def _split_fused(key: str, value: torch.Tensor, hidden: int) -> dict[str, torch.Tensor] | None:
    for pattern, parts, template in _DIT_FUSED:
        regex = re.escape(template).replace(r"\{0\}", r"(\d+)").replace(r"\{2\}", r"(.*)")
        m = re.fullmatch(regex, key)
        if m:
            idx, suffix = m.groups()
            sizes = [hidden] * 3 + [value.shape[0] - 3 * hidden] * (len(parts) == 4)
            # Rebuild each diffusers key: fill the block index, the part name and the suffix.
            result = {}
            for part, chunk in zip(parts, value.split(sizes, dim=0)):
                fills = iter([idx, part, suffix])
                result[_GROUP.sub(lambda _: next(fills), pattern).replace("\\.", ".")] = chunk
            return result
    return None


def _rename_inverse(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    for regex, template in _DIT_RENAMES_INV:
        if regex.fullmatch(key):
            return {re.sub(regex, template, key): value}
    raise KeyError(f"official key with no diffusers counterpart: {key}")


def t2v_to_i2v_dit(sd: dict[str, torch.Tensor], condition_type: str) -> dict[str, torch.Tensor]:
    """Initialise an image-to-video DiT from text-to-video weights (released key names; e.g. the nano I2V variant).

    ``token_replace`` keeps every tensor (same keys and shapes). ``latent_concat`` widens ``img_in.proj.weight``
    ``[D, C, p_t, p_h, p_w]`` to ``2 C + 1`` input channels with zeros, so the new model starts as the
    text-to-video one (the image and mask channels begin with no effect).

    Raises:
        ValueError: an unknown condition type.
        KeyError: no ``img_in.proj.weight`` in ``sd``.
    """
    if condition_type not in ("latent_concat", "token_replace"):
        raise ValueError(f"unknown I2V condition type {condition_type!r}; allowed: 'latent_concat', 'token_replace'")
    out = dict(sd)
    if condition_type == "latent_concat":
        w = sd["img_in.proj.weight"]
        out["img_in.proj.weight"] = torch.cat([w, w.new_zeros(w.shape[0], w.shape[1] + 1, *w.shape[2:])], dim=1)
    return out
