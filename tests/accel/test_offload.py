"""Sequential (block-level) offload: same samples as without, and block weights are only resident in use."""

from __future__ import annotations

import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.diffusion.flow_matching import get_sigmas
from hyvideo.diffusion.sampler import euler_sample
from hyvideo.accel.offload import enable_sequential_offload

CFG = dict(in_channels=4, out_channels=4, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=12, text_states_dim_2=8,
           text_refiner_depth=1)


def _sample(model, inp):
    def fn(x, t):
        return model(x, t, inp["text_states"], inp["text_mask"], inp["text_states_2"], inp["guidance"])
    return euler_sample(fn, inp["x"], get_sigmas(3, 5.0), progress=False)


def test_sequential_offload_gives_the_same_samples():
    model = HYVideoDiffusionTransformer(**CFG).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    inp = dict(x=torch.randn(1, 4, 2, 8, 8), text_states=torch.randn(1, 5, 12),
               text_mask=torch.tensor([[1, 1, 1, 1, 0]]), text_states_2=torch.randn(1, 8),
               guidance=torch.tensor([5000.0]))
    ref = _sample(model, inp)
    n_params = sum(p.numel() for p in model.parameters())

    handle = enable_sequential_offload(model, "cpu")
    seen = []
    for i, block in enumerate(handle.blocks):  # resident exactly while the block runs
        block.register_forward_pre_hook(lambda m, a, i=i: seen.append((i, handle.resident(i))))
    assert not any(handle.resident(i) for i in range(len(handle.blocks)))
    assert sum(p.numel() for p in model.parameters()) < n_params / 2  # block weights are not resident
    out = _sample(model, inp)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert seen and all(resident for _, resident in seen)
    assert {i for i, _ in seen} == set(range(4))
    assert not any(handle.resident(i) for i in range(len(handle.blocks)))

    handle.remove()
    assert sum(p.numel() for p in model.parameters()) == n_params
    torch.testing.assert_close(_sample(model, inp), ref, rtol=0, atol=0)


def test_use_cpu_offload_keeps_at_most_one_block_resident(tiny_ckpts, monkeypatch):
    """The released --use-cpu-offload meaning: DiT blocks streamed, at most one resident while sampling
    (CPU compute device: no prefetch), and text encoders / VAE moved in turn."""
    import hyvideo.pipeline
    from hyvideo import accel
    from hyvideo.checkpoint.loader import load_pipeline

    pipe = load_pipeline(tiny_ckpts, dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32,
                         device="cpu", offload="cpu", log=lambda *_: None)
    assert pipe.offload == ("text", "vae")
    placed, real_placed = [], hyvideo.pipeline.placed
    monkeypatch.setattr(hyvideo.pipeline, "placed", lambda m, d, off: placed.append((m, off)) or real_placed(m, d, off))
    plan = accel.apply(pipe.dit, pipe.vae, accel.AccelOptions(device="cpu", sequential_offload=True))
    handle = plan.offload
    counts = []
    for block in handle.blocks:
        block.register_forward_pre_hook(lambda m, a: counts.append(handle.num_resident()))
        block.register_forward_hook(lambda m, a, o: counts.append(handle.num_resident()))
    pipe(["a red circle"], height=32, width=32, video_length=5, seeds=[0], infer_steps=2, progress=False,
         output_type="latent")
    assert counts and max(counts) == 1 and handle.num_resident() == 0
    offloaded = {id(m) for m, off in placed if off}  # moved to the device only while they run
    assert {id(pipe.text_encoder), id(pipe.text_encoder_2)} <= offloaded and id(pipe.dit) not in offloaded


def test_readme_24gb_recipe_offloads_the_text_encoders():
    """The README's 24 GB command must not leave the ~16 GB fp16 text encoder on the GPU (it did with
    --sequential-offload, which streams the DiT only): its offload flag keeps the text encoders in CPU memory
    and streams the DiT's blocks."""
    import re
    from pathlib import Path

    import sample_video
    from hyvideo.checkpoint.loader import OFFLOAD_MODES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [ln for ln in readme.splitlines() if "sample_video.py" in ln and "24 GB" in ln]
    assert lines, "README lost its 24 GB command"
    for line in lines:
        flags = re.findall(r"--[a-z0-9-]+", line.split("#")[0])
        args = sample_video.build_parser().parse_args(flags)
        mode = sample_video.offload_mode(args)
        homes, moved = OFFLOAD_MODES[mode]
        assert args.use_fp8 and mode == "cpu", line  # the released meaning: DiT blocks streamed
        assert homes["text"] == "cpu" and "text" in moved and homes["dit"] == "cpu", line


def test_block_buffers_are_exact_size():
    from hyvideo.accel.offload import _ALIGN

    model = HYVideoDiffusionTransformer(**CFG).eval()
    sizes = [sum(-(-p.numel() * p.element_size() // _ALIGN) * _ALIGN
                 for p in [*b.parameters(), *b.buffers()]) for b in [*model.double_blocks, *model.single_blocks]]
    handle = enable_sequential_offload(model, "cpu")
    assert handle.pinned_bytes == sum(sizes)  # one buffer per block, no power-of-two rounding
    handle.remove()
