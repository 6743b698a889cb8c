"""GPU-only checks (``pytest -m gpu``; skipped without CUDA): flash / SDPA vs the float32 reference with padded
keys, a bf16 DiT forward through accel on CUDA, FP8 and block offload with prefetch on the device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CFG = dict(in_channels=16, out_channels=16, hidden_size=128, heads_num=2, rope_dim_list=[16, 24, 24],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=32, text_states_dim_2=32)


@pytest.mark.gpu
@cuda
def test_attention_backends_on_cuda_match_the_reference():
    from hyvideo.ops.attention import attention, flash_usable

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 300, 4, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(2, 300, dtype=torch.bool, device="cuda")
    mask[0, 250:] = False
    ref = attention(q.float(), k.float(), v.float(), key_mask=mask, backend="naive")
    for backend in ["sdpa", "auto"] + (["flash"] if flash_usable(q) else []):
        out = attention(q, k, v, key_mask=mask, backend=backend).float()
        for i, n in enumerate((250, 300)):  # valid queries only
            err = (out[i, :n] - ref[i, :n]).abs().max() / ref[i, :n].abs().max()
            assert err < 2e-2, (backend, err)


@pytest.mark.gpu
@cuda
@torch.no_grad()
def test_bf16_dit_with_accel_fp8_and_offload_on_cuda():
    from hyvideo import accel
    from hyvideo.accel.fp8 import convert_to_fp8
    from hyvideo.models.dit import HYVideoDiffusionTransformer

    torch.manual_seed(0)
    ref = HYVideoDiffusionTransformer(**CFG).eval()
    for p in ref.parameters():
        p.normal_(0, 0.05)
    inp = dict(x=torch.randn(1, 16, 3, 16, 16), t=torch.tensor([700.0]), text_states=torch.randn(1, 7, 32),
               text_mask=torch.tensor([[1, 1, 1, 1, 1, 0, 0]]), text_states_2=torch.randn(1, 32),
               guidance=torch.tensor([6000.0]))
    gold = ref(**inp)
    cuda_inp = {k: v.cuda().bfloat16() if v.is_floating_point() and k != "t" else v.cuda() for k, v in inp.items()}
    for variant in ("plain", "fp8", "offload"):
        dit = HYVideoDiffusionTransformer(**CFG).eval()
        dit.load_state_dict(ref.state_dict())
        dit = dit.to(torch.bfloat16)
        if variant == "fp8":
            convert_to_fp8(dit)
        dit = dit.cuda() if variant != "offload" else dit
        accel.apply(dit, options=accel.AccelOptions(device="cuda", sequential_offload=variant == "offload"))
        out = dit(**cuda_inp).float().cpu()
        err = ((out - gold).abs().max() / gold.abs().max()).item()
        assert torch.isfinite(out).all() and err < (5e-2 if variant == "fp8" else 2e-2), (variant, err)


def test_gpu_check_dry_run_lists_every_section():
    r = subprocess.run(["bash", str(ROOT / "scripts/gpu_check.sh"), "--dry-run"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    sections = {line.split("]")[0].lstrip("[") for line in r.stdout.splitlines()}
    assert sections == {"gpu-tests", "sample-flags", "attention", "dit13b", "fp8", "vae720", "bench-dit",
                        "bench-vae", "compile", "train"}
    assert "--use-cpu-offload" in r.stdout and "parallel.compile=true" in r.stdout
