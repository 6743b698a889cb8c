"""LoRA files in the ecosystem's key styles, read into (and written from) one in-memory form on released names.

In memory a LoRA is a :data:`LoraState`: ``{released linear name: LoraWeight(down A [r, in], up B [out, r],
alpha)}``, ``delta_W = alpha / r * B @ A`` (the LoRA paper, Hu et al. 2021, eq. (3) with the usual alpha/r scale).

Key styles read (detected from the keys; all may mix released and diffusers module names):

- diffusers: ``transformer.<module>.lora_A.weight`` / ``lora_B.weight``; alpha from the safetensors metadata
  ``lora_adapter_metadata`` (JSON of ``transformer.``-prefixed ``peft.LoraConfig`` kwargs), else alpha = rank.
- peft: ``base_model.model.<module>.lora_A.weight``; alpha from ``adapter_config.json`` beside it (folder layout).
- musubi-tuner / kohya: ``lora_unet_<module with . as _>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``.
- ComfyUI / musubi ``--target other``: ``diffusion_model.<module>.lora_A.weight`` (or ``lora_down``), alpha
  folded into the weights (or an ``.alpha`` key).
- hyvideo adapter state dicts: ``<released module>.lora_A.weight`` (:func:`hyvideo.lora.lora_state_dict`).

A diffusers linear is some rows of a released one (:mod:`hyvideo.lora.keymap`), so a split LoRA is put back on the
fused linear exactly: ``A = cat(A_q, A_k, A_v)``, ``B = blockdiag(B_q, B_k, B_v)`` placed on their rows (rows with
no part stay zero), per-part scales folded into B. Parts sharing one A and alpha (what splitting a fused LoRA gives)
are put back as that A and ``B`` stacked on rows, so a round trip keeps the rank.
"""

from __future__ import annotations

import collections
import json
import math
import re
from dataclasses import dataclass

import torch

from hyvideo.lora.keymap import ModelKeys

LoraState = dict  # dict[str, LoraWeight], released module name -> weights, in the DiT's module order

_SUFFIX = re.compile(r"(?P<stem>.+)\.(?P<kind>lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)")
_KIND = {"lora_A.weight": "down", "lora_down.weight": "down", "lora_B.weight": "up", "lora_up.weight": "up",
         "alpha": "alpha"}
# Dotted prefixes, longest first, with the style they indicate ("" = bare released / diffusers module names).
_PREFIXES = (("model.diffusion_model.", "comfyui"), ("base_model.model.", "peft"), ("diffusion_model.", "comfyui"),
             ("transformer.", "diffusers"), ("", "hyvideo"))
_FLAT_PREFIXES = ("lora_unet_", "lora_transformer_")  # kohya / musubi-tuner: module path with "." -> "_"
STYLES_HELP = ("diffusers 'transformer.<module>.lora_A.weight', peft 'base_model.model.<module>.lora_A.weight', "
               "musubi/kohya 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight' (+ '.alpha'), ComfyUI "
               "'diffusion_model.<module>.lora_A.weight', hyvideo '<module>.lora_A.weight'")


class LoraFormatError(ValueError):
    """A LoRA file or state dict that cannot be applied: unknown key style, wrong model, inconsistent tensors."""


@dataclass
class LoraWeight:
    """One linear's LoRA: ``delta_W [out, in] = alpha / rank * up @ down``."""

    down: torch.Tensor  # A [r, in]
    up: torch.Tensor  # B [out, r]
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self) -> torch.Tensor:
        """``delta_W [out, in]`` (in the up weight's dtype)."""
        return (self.up @ self.down.to(self.up.dtype)) * self.scale


@dataclass
class _Part:
    rows: torch.Tensor | None  # rows of the released linear (None = all)
    down: torch.Tensor
    up: torch.Tensor
    alpha: float
    source: str  # the file's module name, for messages


def alpha_from_config(config: dict | None, module: str, rank: int) -> float:
    """alpha of ``module`` under a ``peft.LoraConfig``-style dict (``lora_alpha``, ``alpha_pattern``,
    ``use_rslora``); alpha = rank when there is no config. rsLoRA's ``alpha / sqrt(r)`` is returned as the
    equivalent plain alpha ``alpha * sqrt(r)``."""
    if not config:
        return float(rank)
    from peft.utils.other import get_pattern_key  # peft's own pattern rule, so we read configs as peft does

    patterns = config.get("alpha_pattern") or {}
    key = get_pattern_key(list(patterns), module)
    alpha = float(patterns.get(key, config.get("lora_alpha", rank)))
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def _resolve(stem: str, keys: ModelKeys) -> tuple[str, torch.Tensor | None, str] | None:
    """``(released module, rows or None, style)`` for a key stem, or None if this DiT has no such linear."""
    for prefix in _FLAT_PREFIXES:
        if stem.startswith(prefix):
            dotted = keys.flat.get(stem[len(prefix):])
            return None if dotted is None else (*keys.locate(dotted)[:2], "musubi")
    for prefix, style in _PREFIXES:
        if stem.startswith(prefix):
            hit = keys.locate(stem[len(prefix):])
            if hit is not None:
                module, rows, is_diffusers = hit
                return module, rows, "diffusers" if style == "hyvideo" and is_diffusers else style
    return None


def _group(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{key stem: {"down" | "up" | "alpha": tensor}}``; raises on unknown or unsupported keys."""
    stems: dict[str, dict[str, torch.Tensor]] = collections.defaultdict(dict)
    odd = []
    for key, value in tensors.items():
        m = _SUFFIX.fullmatch(key)
        if m is None:
            odd.append(key)
        else:
            stems[m["stem"]][_KIND[m["kind"]]] = value
    if not stems:
        raise LoraFormatError(f"unknown LoRA key style; first keys: {list(tensors)[:5]}. Understood: {STYLES_HELP}")
    if odd:
        raise LoraFormatError(f"unsupported LoRA entries (only plain LoRA A/B weights and alphas are): {odd[:5]} "
                              f"({len(odd)} in all)")
    return stems


def _config_name(stem: str) -> str:
    """The module name as a peft/diffusers config saw it (prefix stripped)."""
    for prefix in ("base_model.model.", "transformer."):
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def parse_lora(tensors: dict[str, torch.Tensor], keys: ModelKeys, config: dict | None = None) -> tuple[LoraState, str]:
    """Read LoRA tensors of any supported key style into a :data:`LoraState` for the DiT described by ``keys``.

    Args:
        tensors: the file's tensors.
        keys: :meth:`ModelKeys.of` the target DiT.
        config: ``peft.LoraConfig``-style dict giving alphas (diffusers metadata, ``adapter_config.json``); an
            ``.alpha`` tensor in the file wins over it; with neither, alpha = rank.

    Returns:
        ``(state, style)``; style is one of "diffusers", "peft", "musubi", "comfyui", "hyvideo".

    Raises:
        LoraFormatError: unknown key style (names a few keys), unsupported entries (DoRA, LoRA biases, full
            diffs), modules this DiT lacks, A/B shapes that do not fit this DiT (a LoRA for another model size;
            names a few modules with both shapes), a missing A or B, non-finite values.
    """
    stems = _group(tensors)
    parts: dict[str, list[_Part]] = collections.defaultdict(list)
    unknown, bad, broken, styles = [], [], [], collections.Counter()
    for stem, found in stems.items():
        hit = _resolve(stem, keys)
        if hit is None:
            unknown.append(stem)
            continue
        module, rows, style = hit
        styles[style] += 1
        if "down" not in found or "up" not in found:
            broken.append(f"{stem}: has {sorted(found)}, needs both A (down) and B (up)")
            continue
        down, up = found["down"], found["up"]
        out_f, in_f = keys.shapes[module]
        n_rows = out_f if rows is None else rows.numel()
        if down.dim() != 2 or up.dim() != 2 or down.shape[1] != in_f or up.shape[0] != n_rows \
                or up.shape[1] != down.shape[0]:
            bad.append(f"{stem}: A {list(down.shape)}, B {list(up.shape)}; this DiT's linear is [{n_rows}, {in_f}]")
            continue
        rank = down.shape[0]
        alpha = float(found["alpha"]) if "alpha" in found else alpha_from_config(config, _config_name(stem), rank)
        if not (math.isfinite(alpha) and torch.isfinite(down).all() and torch.isfinite(up).all()):
            broken.append(f"{stem}: non-finite values (alpha {alpha})")
            continue
        parts[module].append(_Part(rows, down, up, alpha, stem))
    if unknown:
        raise LoraFormatError(f"the LoRA has {len(unknown)} modules this DiT does not have (a LoRA for another "
                              f"model?), e.g. {unknown[:5]}")
    if bad:
        raise LoraFormatError(f"the LoRA does not fit this DiT (made for another model size?): {len(bad)} modules "
                              f"differ, e.g. " + "; ".join(bad[:4]))
    if broken:
        raise LoraFormatError(f"the LoRA has {len(broken)} broken entries, e.g. " + "; ".join(broken[:4]))
    state = {m: _combine(parts[m], keys.shapes[m][0]) for m in keys.shapes if m in parts}
    return state, styles.most_common(1)[0][0]


def _combine(parts: list[_Part], out_features: int) -> LoraWeight:
    """One :class:`LoraWeight` on the released linear from its parts (see module docstring)."""
    first = parts[0]
    if len(parts) == 1 and first.rows is None:
        return LoraWeight(first.down, first.up, first.alpha)
    dtype = first.up.dtype
    for p in parts[1:]:
        dtype = torch.promote_types(dtype, p.up.dtype)
    shared = all(p.alpha == first.alpha and p.down.shape == first.down.shape and torch.equal(p.down, first.down)
                 for p in parts)
    if shared:
        up = torch.zeros(out_features, first.down.shape[0], dtype=dtype)
        for p in parts:
            up[_rows(p, out_features)] += p.up.to(dtype)
        return LoraWeight(first.down, up, first.alpha)
    total = sum(p.down.shape[0] for p in parts)
    s0 = first.alpha / first.down.shape[0]
    up = torch.zeros(out_features, total, dtype=dtype)
    col = 0
    for p in parts:
        r = p.down.shape[0]
        up[_rows(p, out_features), col: col + r] = p.up.to(dtype) * ((p.alpha / r) / s0)
        col += r
    down = torch.cat([p.down.to(dtype) for p in parts], dim=0)
    return LoraWeight(down, up, s0 * total)


def _rows(part: _Part, out_features: int) -> torch.Tensor:
    return torch.arange(out_features) if part.rows is None else part.rows


def exact_targets(names: list[str]) -> str:
    """A ``LoraConfig.target_modules`` value selecting exactly these full module names.

    One regex (peft full-matches a str), not a list: peft matches list entries as name suffixes, and diffusers'
    root ``norm_out.linear`` / ``proj_out`` are suffixes of refiner / single-block linears.
    """
    return "(" + "|".join(re.escape(n) for n in names) + ")"


def lora_config_kwargs(ranks: dict[str, int], alphas: dict[str, float]) -> dict:
    """``peft.LoraConfig`` kwargs for exactly these modules with per-module ranks/alphas: the most common as ``r`` /
    ``lora_alpha``, the rest as ``rank_pattern`` / ``alpha_pattern`` keyed ``^<module>`` (anchored, as diffusers
    writes them)."""
    r = collections.Counter(ranks.values()).most_common(1)[0][0]
    alpha = collections.Counter(alphas.values()).most_common(1)[0][0]
    return {"r": r, "lora_alpha": alpha, "target_modules": exact_targets(list(ranks)),
            "rank_pattern": {f"^{m}": v for m, v in ranks.items() if v != r},
            "alpha_pattern": {f"^{m}": v for m, v in alphas.items() if v != alpha}}


def to_diffusers(state: LoraState, keys: ModelKeys) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, LoraConfig kwargs)`` in diffusers' ``HunyuanVideoTransformer3DModel`` names (no prefix).

    A fused released linear becomes one LoRA per diffusers linear with the same A and B's rows (exact).
    """
    tensors, ranks, alphas = {}, {}, {}
    for module, w in state.items():
        for name, rows in keys.diffusers_parts(module):
            tensors[f"{name}.lora_A.weight"] = w.down.detach().clone().contiguous()
            tensors[f"{name}.lora_B.weight"] = w.up.detach()[rows].contiguous()
            ranks[name], alphas[name] = w.rank, w.alpha
    return tensors, lora_config_kwargs(ranks, alphas)


def to_musubi(state: LoraState) -> dict[str, torch.Tensor]:
    """musubi-tuner / kohya keys: ``lora_unet_<module . -> _>.lora_down.weight`` / ``.lora_up.weight`` /
    ``.alpha`` (float32 scalar), released module names (what musubi-tuner's HunyuanVideo networks use)."""
    out = {}
    for module, w in state.items():
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_down.weight"] = w.down.detach().contiguous()
        out[f"{name}.lora_up.weight"] = w.up.detach().contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(w.alpha), dtype=torch.float32)
    return out


def to_comfyui(state: LoraState) -> dict[str, torch.Tensor]:
    """ComfyUI keys ``diffusion_model.<module>.lora_A.weight`` / ``lora_B.weight`` on released names, with
    sqrt(alpha / rank) folded into both A and B (as musubi-tuner's ``convert_lora.py --target other`` writes)."""
    out = {}
    for module, w in state.items():
        s = math.sqrt(w.scale)
        out[f"diffusion_model.{module}.lora_A.weight"] = (w.down.detach() * s).contiguous()
        out[f"diffusion_model.{module}.lora_B.weight"] = (w.up.detach() * s).contiguous()
    return out


def from_hyvideo_state_dict(sd: dict[str, torch.Tensor], config: dict | None) -> LoraState:
    """A :data:`LoraState` from a hyvideo adapter state dict (``<module>.lora_A.weight``) and its config."""
    state = {}
    for key, down in sd.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight")
            state[module] = LoraWeight(down, sd[f"{module}.lora_B.weight"],
                                       alpha_from_config(config, module, down.shape[0]))
    return state


def json_metadata(value) -> str:
    """JSON for a safetensors metadata value (strings only there): sets -> lists, tuples -> lists."""
    return json.dumps(value, sort_keys=True, default=lambda o: sorted(o) if isinstance(o, set) else str(o))
