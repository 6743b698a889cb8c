"""I2V conditioning helpers: DiT inputs of both condition types, i2v_prob mixing, the loss mask, SDEdit schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.diffusion import i2v
from hyvideo.diffusion.flow_matching import add_noise, get_sigmas, velocity_target

SMALL = dict(out_channels=16, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6], mm_double_blocks_depth=1,
             mm_single_blocks_depth=1, text_states_dim=24, text_states_dim_2=12, text_refiner_depth=1)


def _batch(b=4, t=3):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, 16, t, 4, 6, generator=g)
    noise = torch.randn(b, 16, t, 4, 6, generator=g)
    sigma = torch.rand(b, generator=g)
    return x0, noise, sigma, add_noise(x0, noise, sigma)


def test_latent_concat_inputs_carry_the_first_frame_and_mask_only_for_i2v_samples():
    x0, _, _, xt = _batch()
    mask = torch.tensor([True, False, True, False])
    inp = i2v.training_inputs(xt, x0, "latent_concat", mask)
    assert inp.x_in.shape == (4, 33, 3, 4, 6) and inp.first_frame_clean is None
    assert torch.equal(inp.x_in[:, :16], xt)
    assert torch.equal(inp.x_in[0, 16:32, 0], x0[0, :, 0]) and inp.x_in[0, 16:32, 1:].abs().max() == 0
    assert inp.x_in[0, 32, 0].eq(1).all() and inp.x_in[0, 32, 1:].eq(0).all()
    assert inp.x_in[1, 16:].abs().max() == 0  # a text-to-video sample: no image, zero mask
    assert inp.loss_mask.eq(1).all()


def test_token_replace_inputs_and_loss_skip_frame0_of_i2v_samples_only():
    x0, noise, _, xt = _batch()
    mask = torch.tensor([True, False, True, False])
    inp = i2v.training_inputs(xt, x0, "token_replace", mask)
    assert torch.equal(inp.x_in[0, :, :1], x0[0, :, :1]) and torch.equal(inp.x_in[0, :, 1:], xt[0, :, 1:])
    assert torch.equal(inp.x_in[1], xt[1])
    assert torch.equal(inp.first_frame_clean, mask)
    assert inp.loss_mask[0, 0, :, 0, 0].tolist() == [0, 1, 1] and inp.loss_mask[1].eq(1).all()
    # the loss ignores frame 0 of I2V samples: a prediction wrong only there costs nothing
    target = velocity_target(x0, noise)
    pred = target.clone()
    pred[:, :, 0] += 5.0
    loss = i2v.masked_mse(pred, target, inp.loss_mask)
    assert loss[0] == 0 and loss[2] == 0 and loss[1] > 0 and loss[3] > 0
    assert i2v.masked_mse(target, target, inp.loss_mask).eq(0).all()


def test_a_mixed_token_replace_batch_trains_the_dit_end_to_end():
    model = HYVideoDiffusionTransformer(in_channels=16, i2v_condition_type="token_replace", **SMALL)
    x0, noise, sigma, xt = _batch(b=2)
    inp = i2v.training_inputs(xt, x0, "token_replace", i2v.sample_i2v_mask(2, 1.0))
    out = model(inp.x_in, sigma * 1000, torch.randn(2, 5, 24), torch.ones(2, 5), torch.randn(2, 12),
                torch.full((2,), 6000.0), first_frame_clean=inp.first_frame_clean)
    i2v.masked_mse(out, velocity_target(x0, noise), inp.loss_mask).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_i2v_prob_mixing_rate_and_bounds():
    g = torch.Generator().manual_seed(0)
    m = i2v.sample_i2v_mask(20000, 0.3, generator=g)
    assert m.dtype == torch.bool and abs(m.float().mean().item() - 0.3) < 0.02
    assert i2v.sample_i2v_mask(5, 1.0).all() and not i2v.sample_i2v_mask(5, 0.0).any()
    with pytest.raises(ValueError, match=r"i2v_prob must be in \[0, 1\]"):
        i2v.sample_i2v_mask(2, 1.5)


def test_first_frame_images_round_trip_and_black_for_t2v():
    video = torch.rand(2, 3, 5, 8, 12) * 2 - 1
    images = i2v.first_frame_images(video, black=torch.tensor([False, True]))
    assert images[0].size == (12, 8)
    back = torch.from_numpy(np.asarray(images[0]).copy()).float().permute(2, 0, 1)
    assert (back / 127.5 - 1 - video[0, :, 0]).abs().max() <= 1 / 127.5
    assert np.asarray(images[1]).max() == 0


def test_strength_schedule_and_pinned_velocity():
    sigmas = get_sigmas(10, 7.0)
    assert torch.equal(i2v.strength_sigmas(sigmas, 1.0), sigmas)
    assert len(i2v.strength_sigmas(sigmas, 0.3)) == 4 and torch.equal(i2v.strength_sigmas(sigmas, 0.3), sigmas[7:])
    assert len(i2v.strength_sigmas(sigmas, 0.01)) == 2  # at least one step
    for bad in (0.0, -0.5, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"--strength must be in \(0, 1\]"):
            i2v.strength_sigmas(sigmas, bad)
    z0, n0 = torch.randn(1, 4, 1, 2, 2), torch.randn(1, 4, 1, 2, 2)
    x = add_noise(z0, n0, sigmas[0])
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):  # Euler on the pinned frame lands on z0
        x = x + i2v.pinned_velocity(torch.randn(1, 4, 3, 2, 2), z0, n0)[:, :, :1] * (s_next - s)
    torch.testing.assert_close(x, z0, rtol=0, atol=1e-5)
