"""torchrun sampling: ranks of a Ulysses group share one random seed (same noise); with degree 1 every rank
is initialised and the ranks split the videos instead of all sampling the same seeds."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, degree, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    sys.path.insert(0, str(ROOT))
    import sample_video

    from hyvideo.parallel.mesh import destroy
    from hyvideo.pipeline import latent_shape, seeded_noise

    args = sample_video.build_parser().parse_args(["--prompt", "x", "--ulysses-degree", str(degree),
                                                  "--num-videos", "4"])
    env = sample_video.setup_distributed(args, "cpu")
    [(req, base)] = list(sample_video.requests(args, env))  # what main() samples (no --seed: a random base)
    mine = req.seeds(base)[env.dp_rank::env.dp_world]
    noise = seeded_noise(mine, latent_shape(len(mine), 32, 32, 5, 16))  # the pipeline's initial latents
    torch.save(noise, Path(out_dir, f"{rank}.pt"))
    Path(out_dir, f"{rank}.json").write_text(json.dumps({"seeds": mine, "sp_rank": env.sp_rank}))
    destroy()


@pytest.mark.dist
@pytest.mark.parametrize("degree", [2, 1])
def test_ranks_share_the_random_seed_or_split_the_videos(degree, tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), degree, str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    if degree == 2:  # one SP group: both ranks sample the same 4 seeds (identical noise for each video)
        assert r0["seeds"] == r1["seeds"] and len(r0["seeds"]) == 4 and (r0["sp_rank"], r1["sp_rank"]) == (0, 1)
        n0, n1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
        assert n0.shape[0] == 4 and torch.equal(n0, n1)
    else:  # two data-parallel ranks: consecutive seeds split between them, none sampled twice
        assert len(r0["seeds"]) == len(r1["seeds"]) == 2 and not set(r0["seeds"]) & set(r1["seeds"])
        assert sorted(r0["seeds"] + r1["seeds"]) == list(range(r0["seeds"][0], r0["seeds"][0] + 4))
