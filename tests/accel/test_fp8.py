"""FP8 (e4m3) weight storage: dtype, memory, accuracy against bf16, released-file round trip."""

from __future__ import annotations

import json

import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.accel.fp8 import FP8_DTYPE, FP8Linear, convert_to_fp8, parameter_bytes
from hyvideo.checkpoint.fp8 import save_fp8
from hyvideo.checkpoint.io import load_dit

# e4m3 keeps 3 mantissa bits (relative rounding <= 2^-4 per weight); over a few blocks the output moves by
# about 1%. 5e-2 of the output's max magnitude is the stated tolerance.
FP8_REL_TOL = 5e-2
CFG = dict(in_channels=4, out_channels=4, hidden_size=64, heads_num=4, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=16, text_states_dim_2=8,
           text_refiner_depth=1)


def _model():
    m = HYVideoDiffusionTransformer(**CFG).to(torch.bfloat16).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    return m


def _inputs():
    return dict(x=torch.randn(1, 4, 2, 8, 8).bfloat16(), t=torch.tensor([500.0]),
                text_states=torch.randn(1, 5, 16).bfloat16(), text_mask=torch.tensor([[1, 1, 1, 0, 0]]),
                text_states_2=torch.randn(1, 8).bfloat16(), guidance=torch.tensor([6000.0]))


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@torch.no_grad()
def test_fp8_weights_output_and_memory(tmp_path):
    model, inp = _model(), _inputs()
    ref = model(**inp)
    keys = set(model.state_dict())
    fp8_map = convert_to_fp8(model)
    fp8_layers = [m for m in model.modules() if isinstance(m, FP8Linear)]
    assert len(fp8_layers) == len(fp8_map) == 2 * 10 + 2 * 3  # 10 linears per double, 3 per single block
    assert all(m.weight.dtype == FP8_DTYPE for m in fp8_layers)
    assert model.txt_in.input_embedder.weight.dtype == torch.bfloat16  # outside the blocks: untouched
    assert set(model.state_dict()) == keys  # released key names
    out = model(**inp)
    assert out.dtype == torch.bfloat16
    err = _rel(out, ref)
    assert 0 < err <= FP8_REL_TOL, err

    # released layout: *_fp8.pt + *_fp8_map.pt, loaded into a fresh model gives the same output
    w_path, map_path = save_fp8(model, fp8_map, tmp_path / "mp_rank_00_model_states_fp8.pt")
    assert map_path.name == "mp_rank_00_model_states_fp8_map.pt"
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    loaded = load_dit(w_path, fp8=True)
    assert loaded.single_blocks[0].linear1.weight.dtype == FP8_DTYPE
    torch.testing.assert_close(loaded(**inp), out, rtol=0, atol=0)


def test_fp8_halves_parameter_memory_of_the_13b_model():
    with torch.device("meta"):
        model = HYVideoDiffusionTransformer(dtype=torch.bfloat16)
    before = parameter_bytes(model)
    convert_to_fp8(model)
    ratio = parameter_bytes(model) / before
    assert 0.49 < ratio < 0.53, ratio  # 25.6 GB -> 13.2 GB


@torch.no_grad()
def test_lean_single_block_runs_fp8_linears_without_the_concat():
    """The portable lean single block splits FP8 linears too (dequantised once per call), same output."""
    from hyvideo.accel.lean_blocks import LeanSingleStreamBlock, use_lean_blocks

    model, inp = _model(), _inputs()
    convert_to_fp8(model)
    ref = model(**inp)
    calls = []
    real = torch.cat
    use_lean_blocks(model)
    assert sum(type(m) is LeanSingleStreamBlock for m in model.modules()) == 2
    try:
        torch.cat = lambda ts, *a, **k: calls.append(tuple(t.shape[-1] for t in ts)) or real(ts, *a, **k)
        out = model(**inp)
    finally:
        torch.cat = real
    assert not any(len(c) == 2 and sum(c) == 64 + 256 for c in calls)  # no [attn, mlp] concat (64 + 4 * 64)
    assert _rel(out, ref) <= 2e-2
