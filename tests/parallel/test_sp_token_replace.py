"""Ulysses sequence parallelism with the token-replace I2V DiT: each rank's first-frame token count is its own slab's
(2 gloo processes equal 1 process, with mixed I2V / T2V samples)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.parallel.sequence_parallel import disable_sequence_parallel, enable_sequence_parallel

CFG = dict(in_channels=4, out_channels=4, hidden_size=32, heads_num=4, rope_dim_list=[2, 2, 4],
           mm_double_blocks_depth=1, mm_single_blocks_depth=1, text_states_dim=12, text_states_dim_2=8,
           text_refiner_depth=1, i2v_condition_type="token_replace")
SHAPES = [(2, 4, 3, 8, 8), (2, 4, 2, 6, 8)]  # split along H, then along W (H patches = 3 is odd)


def _model() -> HYVideoDiffusionTransformer:
    torch.manual_seed(0)
    m = HYVideoDiffusionTransformer(**CFG).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m


def _inputs(shape):
    g = torch.Generator().manual_seed(1)
    b = shape[0]
    return dict(x=torch.randn(shape, generator=g), t=torch.tensor([700.0, 300.0][:b]),
                text_states=torch.randn(b, 6, 12, generator=g), text_mask=torch.ones(b, 6, dtype=torch.long),
                text_states_2=torch.randn(b, 8, generator=g), guidance=torch.tensor([4000.0] * b),
                first_frame_clean=torch.tensor([True, False][:b]))


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, outs = _model(), []
        enable_sequence_parallel(model)
        with torch.no_grad():
            outs = [model(**_inputs(shape)) for shape in SHAPES]
        disable_sequence_parallel(model)
        torch.save(outs, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_token_replace_under_ulysses_equals_single_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(2, port, str(tmp_path)), nprocs=2, start_method="spawn")
    model = _model()
    with torch.no_grad():
        refs = [model(**_inputs(shape)) for shape in SHAPES]
    for rank in (0, 1):
        for out, ref in zip(torch.load(tmp_path / f"rank{rank}.pt"), refs):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
