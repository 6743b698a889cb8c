"""``torchrun --nproc_per_node 2`` (gloo, CPU) Ulysses sampling gives the 1-process latents (fp32)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sp_sample_worker import sample_latents  # noqa: E402

FP32_TOL = 1e-5
WORKER = Path(__file__).resolve().parent / "sp_sample_worker.py"


@pytest.mark.dist
def test_torchrun_two_process_sampling_matches_one_process(tiny_ckpts, tmp_path):
    out = tmp_path / "latents.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(WORKER), str(tiny_ckpts), str(out), "2"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    with torch.inference_mode():
        ref = sample_latents(str(tiny_ckpts))
    got = torch.load(out)
    assert got.shape == ref.shape == (1, 16, 3, 8, 8)
    torch.testing.assert_close(got, ref, rtol=FP32_TOL, atol=FP32_TOL)
