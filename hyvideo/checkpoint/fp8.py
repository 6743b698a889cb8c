"""The released FP8 DiT files: naming, reading with their scales, and writing (spec section 2.5).

The release ships ``mp_rank_00_model_states_fp8.pt`` (``{"module": state dict}`` whose block linears are
``float8_e4m3fn`` codes) and ``mp_rank_00_model_states_fp8_map.pt`` (``{module name: scale}``, the weight is
``code * scale``). A float8 weight without its scale is meaningless (the largest code is 448), so such a file
is only read together with its map.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hyvideo.accel.fp8 import FP8_DTYPE
from hyvideo.checkpoint.io import WeightLoadError, read_state_dict, save_atomic

FP8_SUFFIX = "_fp8.pt"


def fp8_map_path(weight_path: str | os.PathLike) -> Path:
    """``.../mp_rank_00_model_states_fp8.pt`` -> ``.../mp_rank_00_model_states_fp8_map.pt`` (released naming)."""
    p = Path(weight_path)
    return p.with_name(p.name[: -len(".pt")] + "_map.pt") if p.name.endswith(".pt") else p.with_name(p.name + "_map.pt")


def is_fp8_file(path: str | os.PathLike) -> bool:
    """True for a released-style FP8 weight file name (``*_fp8.pt``)."""
    return Path(path).name.endswith(FP8_SUFFIX)


def released_fp8_path(dit_path: str | os.PathLike) -> Path | None:
    """The FP8 weights for a DiT path, if present with their scale map.

    ``dit_path`` may be the FP8 file itself (``X_fp8.pt``), the bf16 file (then its sibling ``X_fp8.pt``), or a
    folder (``*_model_states_fp8.pt`` inside).
    """
    p = Path(dit_path)
    if p.is_dir():
        candidates = sorted(p.glob("*_model_states" + FP8_SUFFIX))
    elif is_fp8_file(p):
        candidates = [p]
    else:
        candidates = [p.with_name(p.stem + FP8_SUFFIX)]
    found = [c for c in candidates if c.is_file() and fp8_map_path(c).is_file()]
    return found[0] if found else None


def read_fp8_pair(weight_path: str | os.PathLike, load_key: str = "module"):
    """``(state dict with float8 block weights, {module name: float32 scale})`` of a released FP8 file.

    Raises:
        WeightLoadError: the scale map is missing or unreadable, or the file has no ``load_key``.
    """
    weight_path = Path(weight_path)
    map_path = fp8_map_path(weight_path)
    if not map_path.is_file():
        raise WeightLoadError(f"{weight_path} holds float8 weights, which need their scales: the map file "
                              f"{map_path} was not found (download it beside the weights)")
    sd = read_state_dict(weight_path)
    if "module" in sd or "ema" in sd:
        if load_key not in sd:
            raise WeightLoadError(f"{weight_path} has no load key {load_key!r}")
        sd = sd[load_key]
    scales = {k: torch.as_tensor(v, dtype=torch.float32).reshape(()) for k, v in read_state_dict(map_path).items()}
    return sd, scales


def dequantize(sd: dict[str, torch.Tensor], scales: dict[str, torch.Tensor], dtype: torch.dtype,
               source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict with every float8 weight replaced by ``code * scale`` in ``dtype`` (others cast).

    Raises:
        WeightLoadError: a float8 tensor whose module has no scale in the map.
    """
    out = {}
    for k, v in sd.items():
        if v.dtype == FP8_DTYPE:
            module = k.rsplit(".", 1)[0]
            if module not in scales:
                raise WeightLoadError(f"{source}: float8 weight {k} has no scale for {module!r} in the FP8 map")
            v = v.float() * scales[module]
        out[k] = v.to(dtype) if v.is_floating_point() else v
    return out


def save_fp8(model: torch.nn.Module, fp8_map: dict[str, torch.Tensor], weight_path: str | os.PathLike):
    """Write ``{"module": state dict}`` and the scale map in the released layout (each atomically)."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_atomic({"module": sd}, weight_path), save_atomic(dict(fp8_map), fp8_map_path(weight_path))
