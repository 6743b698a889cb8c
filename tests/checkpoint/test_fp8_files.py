"""The released FP8 file pair loads scaled (with or without --use-fp8); float8 codes without scales are refused."""

from __future__ import annotations

import json

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.accel.fp8 import FP8_DTYPE, FP8_MAX, FP8Linear, convert_to_fp8
from hyvideo.checkpoint.fp8 import fp8_map_path, save_fp8
from hyvideo.checkpoint.io import WeightLoadError, load_dit, save_atomic

CFG = dict(in_channels=4, out_channels=4, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=1, mm_single_blocks_depth=1, text_states_dim=12, text_states_dim_2=8,
           text_refiner_depth=1)
NAME = "mp_rank_00_model_states"


@pytest.fixture
def released(tmp_path):
    """A bf16 DiT file and its FP8 twin in the released naming, plus the bf16 source weights."""
    torch.manual_seed(0)
    model = HYVideoDiffusionTransformer(**CFG).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    source = {k: v.clone() for k, v in model.state_dict().items()}
    save_atomic({"module": source}, tmp_path / f"{NAME}.pt")
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    fp8_map = convert_to_fp8(model)
    save_fp8(model, fp8_map, tmp_path / f"{NAME}_fp8.pt")
    return tmp_path, source


def _max_step(w: torch.Tensor) -> float:
    """Largest e4m3 rounding step of a weight scaled by max|w| / 448 (3 mantissa bits: 2^-3 of the top binade)."""
    return float(w.float().abs().max()) / FP8_MAX * 32


def test_fp8_file_loads_scaled_with_and_without_use_fp8(released):
    folder, source = released
    big = "single_blocks.0.linear1.weight"
    for fp8 in (True, False):
        dit = load_dit(folder / f"{NAME}_fp8.pt", fp8=fp8)
        lin = dit.single_blocks[0].linear1
        w = lin.dequantized(torch.float32) if fp8 else lin.weight.float()
        assert isinstance(lin, FP8Linear) == fp8 and (lin.weight.dtype == FP8_DTYPE) == fp8
        err = (w - source[big].float()).abs().max().item()
        assert err <= _max_step(source[big]), err  # scaled: not the raw codes (max 448)
        assert w.abs().max() < 1.0


def test_bf16_path_with_use_fp8_finds_the_released_sibling(released):
    folder, _ = released
    dit = load_dit(folder / f"{NAME}.pt", fp8=True)
    assert dit.double_blocks[0].img_attn_qkv.weight.dtype == FP8_DTYPE
    dit = load_dit(folder, fp8=True)  # the folder form too
    assert isinstance(dit.double_blocks[0].img_attn_qkv, FP8Linear)


def test_float8_codes_without_scales_are_refused(released):
    folder, _ = released
    fp8_map_path(folder / f"{NAME}_fp8.pt").unlink()
    with pytest.raises(WeightLoadError, match="need their scales"):
        load_dit(folder / f"{NAME}_fp8.pt")
    codes = torch.load(folder / f"{NAME}_fp8.pt", weights_only=True)
    save_atomic(codes, folder / "renamed.pt")  # float8 tensors under another name: refused, not cast
    with pytest.raises(WeightLoadError, match="float8 tensors .* no scale"):
        load_dit(folder / "renamed.pt")


def test_use_fp8_without_released_files_quantises_on_the_cpu(tmp_path, monkeypatch):
    """The bf16 weights never reach the device: quantisation happens before the move (checked via .to calls)."""
    torch.manual_seed(0)
    save_atomic({"module": HYVideoDiffusionTransformer(**CFG).state_dict()}, tmp_path / f"{NAME}.pt")
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    moved = []
    real_to = torch.nn.Module.to

    def spy(self, *a, **k):
        if isinstance(self, HYVideoDiffusionTransformer):
            moved.append(any(isinstance(m, FP8Linear) for m in self.modules()))
        return real_to(self, *a, **k)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    dit = load_dit(tmp_path / f"{NAME}.pt", fp8=True, dtype=torch.bfloat16)
    assert moved == [True]  # the only move to the device happens after quantisation
    assert isinstance(dit.single_blocks[0].linear2, FP8Linear)
