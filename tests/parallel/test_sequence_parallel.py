"""Ulysses sequence parallelism on CPU: 2 gloo processes equal 1 process (forward and gradients; sampling
through the CLI loader under torchrun is in test_sp_sampling.py)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.ops.attention import attention
from hyvideo.parallel.sequence_parallel import check_sp_degree, disable_sequence_parallel, enable_sequence_parallel

FP32_TOL = 1e-5  # fp32; only the attention's summation order over keys differs
CFG = dict(in_channels=4, out_channels=4, hidden_size=32, heads_num=4, rope_dim_list=[2, 2, 4],
           mm_double_blocks_depth=1, mm_single_blocks_depth=1, text_states_dim=12, text_states_dim_2=8,
           text_refiner_depth=1)


def _model() -> HYVideoDiffusionTransformer:
    torch.manual_seed(0)
    m = HYVideoDiffusionTransformer(**CFG)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m


def _inputs(shape):
    g = torch.Generator().manual_seed(1)
    b = shape[0]
    mask = torch.ones(b, 6, dtype=torch.long)
    mask[0, 4:] = 0  # padded text exercises the key mask
    return dict(x=torch.randn(shape, generator=g), t=torch.tensor([700.0] * b),
                text_states=torch.randn(b, 6, 12, generator=g), text_mask=mask,
                text_states_2=torch.randn(b, 8, generator=g), guidance=torch.tensor([4000.0] * b))


def _reference(shape):
    model, inp = _model(), _inputs(shape)
    out = model(**inp)
    out.square().mean().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return out.detach(), grads


def _worker(rank, world, port, shapes, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = []
        for shape in shapes:
            model, inp = _model(), _inputs(shape)
            enable_sequence_parallel(model)
            out = model(**inp)
            out.square().mean().backward()
            grads = {}
            for k, p in model.named_parameters():
                g = p.grad.clone()
                dist.all_reduce(g)  # the FSDP/DDP average over all ranks
                grads[k] = g / world
            results.append((out.detach(), grads))
            disable_sequence_parallel(model)
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
def test_two_process_ulysses_equals_single_process(tmp_path):
    # split along H (grid 4x4 -> H) and along W (grid H=3 is odd -> W), batch 2 with a padded prompt
    shapes = [(2, 4, 2, 8, 8), (1, 4, 1, 6, 8)]
    mp.start_processes(_worker, args=(2, _free_port(), shapes, str(tmp_path)), nprocs=2, start_method="spawn")
    results = {r: torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)}
    for i, shape in enumerate(shapes):
        ref_out, ref_grads = _reference(shape)
        for rank in (0, 1):
            out, grads = results[rank][i]
            torch.testing.assert_close(out, ref_out, rtol=FP32_TOL, atol=FP32_TOL)
            for k, g in ref_grads.items():
                torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=1e-6, msg=k)


def test_invalid_degree_fails_with_message():
    model = _model()
    check_sp_degree(model, (1, 4, 2, 8, 8), 2)
    check_sp_degree(CFG, (1, 4, 2, 6, 8), 4)  # grid (2, 3, 4): W = 4 divides
    with pytest.raises(ValueError, match="must divide the number of attention heads 4"):
        check_sp_degree(model, (1, 4, 2, 8, 8), 3)
    with pytest.raises(ValueError, match=r"patchified height 3 or width 5.*allowed degrees"):
        check_sp_degree(model, (1, 4, 2, 6, 10), 2)


def test_ulysses_blocks_share_one_full_key_mask_per_forward(monkeypatch):
    """Every block's Ulysses attention gets the same gathered key mask, so the backend unpads once per forward
    (not once per block); a new mask tensor gets its own."""
    import hyvideo.ops.attention as attn
    from hyvideo.parallel import mesh
    from hyvideo.parallel.sequence_parallel import UlyssesAttention, _SlabPlan

    mesh.init_distributed(1, "gloo")
    try:
        plan = _SlabPlan(None)
        plan.grid = (1, 2, 2)
        blocks = [UlyssesAttention(plan, "sdpa") for _ in range(3)]
        made, real_info = [], attn._MaskInfo
        monkeypatch.setattr(attn, "_MaskInfo", lambda *a: made.append(1) or real_info(*a))
        q, k, v = (torch.randn(2, 4 + 3, 2, 8) for _ in range(3))  # 4 image + 3 text tokens
        masks = [torch.tensor([[1] * 7, [1] * 5 + [0] * 2], dtype=torch.bool) for _ in range(2)]
        for i, m in enumerate(masks):
            outs = [b(q, k, v, m) for b in blocks]
            assert len(made) == i + 1  # one unpadding for the three blocks
            ref = attention(q, k, v, key_mask=m, backend="naive")
            torch.testing.assert_close(outs[-1][1, :5], ref[1, :5], rtol=1e-5, atol=1e-5)
        assert plan.full_key_mask(masks[1], 4) is plan.full_key_mask(masks[1], 4)
    finally:
        mesh.destroy()
