"""Flow-matching schedule, Euler steps and training noise vs diffusers' FlowMatchEulerDiscreteScheduler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from hyvideo.diffusion.flow_matching import add_noise, get_sigmas, sample_training_sigmas, time_shift, velocity_target
from hyvideo.diffusion.sampler import cfg_combine, euler_sample


@pytest.mark.parametrize("steps, shift", [(50, 7.0), (30, 17.0), (4, 1.0)])
def test_sigmas_match_diffusers_scheduler(steps, shift):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])  # as diffusers' HunyuanVideoPipeline
    ours = get_sigmas(steps, shift)
    torch.testing.assert_close(ours, sched.sigmas.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[:-1] * 1000, sched.timesteps.float(), rtol=0, atol=1e-3)


def test_released_timesteps_50_steps_shift_7():
    t = get_sigmas(50, 7.0) * 1000
    assert t[0].item() == 1000.0 and t[-1].item() == 0.0
    assert t[1].item() == pytest.approx(997.09, abs=0.01) and t[-2].item() == pytest.approx(125.0, abs=1e-3)


def test_euler_loop_matches_scheduler_step():
    sched = FlowMatchEulerDiscreteScheduler(shift=7.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, 6)[:-1])
    x0 = torch.randn(2, 4, 3, 4, 4)
    w = torch.randn(4, 4)

    def model_fn(x, t):  # any deterministic velocity field that depends on x and t
        return torch.einsum("bcthw,cd->bdthw", x, w).tanh() * (t.view(-1, 1, 1, 1, 1) / 1000)

    ref = x0.clone()
    for t in sched.timesteps:
        ref = sched.step(model_fn(ref, t.expand(2)), t, ref).prev_sample
    ours = euler_sample(model_fn, x0.clone(), get_sigmas(5, 7.0), progress=False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_noise_convention_sigma_one_is_noise_and_velocity_is_derivative():
    x, n = torch.randn(3, 16, 2, 4, 4), torch.randn(3, 16, 2, 4, 4)
    assert torch.equal(add_noise(x, n, torch.ones(3)), n) and torch.equal(add_noise(x, n, torch.zeros(3)), x)
    s, ds = torch.full((3,), 0.4), 1e-3
    fd = (add_noise(x, n, s + ds) - add_noise(x, n, s)) / ds
    torch.testing.assert_close(fd, velocity_target(x, n), rtol=0, atol=1e-2)


def test_training_sigmas_modes_and_shift():
    g = torch.Generator().manual_seed(0)
    u = sample_training_sigmas(20000, mode="uniform", generator=g)
    ln = sample_training_sigmas(20000, mode="logit_normal", generator=g)
    shifted = sample_training_sigmas(20000, mode="uniform", shift=3.0, generator=g)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    assert abs(ln.median().item() - 0.5) < 0.02 and ln.std() < u.std()  # logit-normal concentrates mid-range
    assert shifted.mean() > 0.6  # shift > 1 moves mass toward noise
    torch.testing.assert_close(time_shift(torch.tensor([0.5]), 3.0), torch.tensor([0.75]))
    with pytest.raises(ValueError, match="unknown timestep sampling mode"):
        sample_training_sigmas(2, mode="cosine")
    with pytest.raises(ValueError, match="flow shift must be > 0"):
        get_sigmas(4, 0.0)


def test_cfg_combine():
    u, c = torch.zeros(2), torch.ones(2)
    assert torch.equal(cfg_combine(u, c, 1.0), c) and torch.equal(cfg_combine(u, c, 6.0), torch.full((2,), 6.0))
