"""GPU-only checks (``pytest -m gpu``; skipped without CUDA): flash / SDPA vs the float32 reference with padded
keys, a bf16 DiT forward through accel on CUDA, FP8 and block offload with prefetch on the device."""

from __future__ import annotations

import shlex
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


# sample_video.py options that are not speed / memory flags (or cannot run on one GPU with tiny weights).
NOT_SPEED = {"--help", "--prompt", "--prompt-file", "--neg-prompt", "--video-size", "--video-length", "--infer-steps",
             "--seed", "--flow-shift", "--flow-reverse", "--no-flow-reverse", "--embedded-cfg-scale", "--num-videos",
             "--save-path", "--fps", "--ulysses-degree", "--model-base", "--dit-weight", "--model", "--load-key",
             "--text-len", "--device", "--lora-path", "--lora-scale", "--lora-fuse", "--vae-tiling", "--i2v-mode",
             "--i2v-image-path", "--i2v-resolution", "--i2v-condition-type", "--i2v-stability", "--video-path",
             "--strength", "--fix-first-frame"}


def test_gpu_check_dry_run_lists_every_section():
    """The prepared GPU run (scripts/gpu_check.sh) prints its plan on CPU; the plan covers every sample_video.py
    speed / memory flag, and every command in it parses (flags the scripts know, training overrides the config
    accepts), so a lent GPU's ten minutes are not lost to a stale command line."""
    sys.path.insert(0, str(ROOT))
    import sample_video
    from hyvideo.training.config import DiTTrainConfig, load_config

    r = subprocess.run(["bash", str(ROOT / "scripts/gpu_check.sh"), "--dry-run"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    plan = [(line.split("] ")[0].lstrip("["), shlex.split(line.split("] ", 1)[1])) for line in r.stdout.splitlines()]
    assert {name for name, _ in plan} == {"gpu-tests", "sample-flags", "attention", "dit13b", "fp8", "vae720",
                                         "bench-dit", "bench-vae", "compile", "train"}
    parser = sample_video.build_parser()
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    sampled = [cmd[2:] for name, cmd in plan if name == "sample-flags"]
    missing = options - NOT_SPEED - {flag for cmd in sampled for flag in cmd}
    assert not missing, f"flags without a GPU run in scripts/bench/gpu_check.py SAMPLE_FLAGS: {sorted(missing)}"
    for argv in sampled:
        parser.parse_args(argv)  # exits 2 on an unknown flag or a bad choice
    for name, cmd in plan:
        script = next((c for c in cmd if c.endswith(".py") and not c.startswith("<tmp>")), None)
        if script is None or script == "sample_video.py":
            continue
        source = (ROOT / script).read_text()
        unknown = [c for c in cmd[cmd.index(script) + 1:] if c.startswith("--") and f'"{c}"' not in source]
        assert not unknown, (name, script, unknown)
        if script == "train_dit.py":
            config = cmd[cmd.index("--config") + 1]
            overrides = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--set"]
            cfg = load_config(DiTTrainConfig, ROOT / config, overrides)
            assert cfg.parallel.engine == "fsdp" and cfg.parallel.precision == "bf16" and cfg.parallel.compile
    from tests.conftest import load_script

    compile(load_script("bench/gpu_check")._PROBE.format(root=ROOT), "probe.py", "exec")  # the GPU probes parse
    train = [cmd for name, cmd in plan if name == "train" and "train_dit.py" in cmd]
    out_dirs = [[c for c in cmd if c.startswith("run.out_dir=")] for cmd in train]
    assert len(train) == 2 and out_dirs[0] == out_dirs[1] and "run.max_steps=6" in train[1]  # then a resume
