"""Config errors, LPIPS, discriminator and VAE losses, EMA, flow-matching draws."""

from __future__ import annotations

import pytest
import torch

from hyvideo.training.config import ConfigError, DiTTrainConfig, VAETrainConfig, load_config


def test_unknown_key_and_bad_values_are_clear_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  lr: 1.0e-4\n  learning_rate: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['optim.learning_rate'\].*allowed"):
        load_config(DiTTrainConfig, cfg)
    with pytest.raises(ConfigError, match="data.num_frames must be 1 \\+ 4k"):
        load_config(DiTTrainConfig, None, ["data.num_frames=6"])
    with pytest.raises(ConfigError, match="parallel.engine"):
        load_config(DiTTrainConfig, None, ["parallel.engine=ddp"])
    c = load_config(VAETrainConfig, None, ["optim.lr=3e-4", "data.resolutions=[256, 512]"])
    assert c.optim.lr == 3e-4 and c.data.resolutions == ("256", "512") and c.data.mix == (("video", 4), ("image", 1))


def test_stage_resolution_without_bucket(tmp_path):
    import train_dit
    import train_vae

    with pytest.raises(ConfigError, match="resolution '300' has no bucket list; known tiers"):
        train_dit.main(["--set", "data.manifest=x.jsonl", "--set", "data.resolutions=[300p]"])
    with pytest.raises(ConfigError, match=r"curriculum\[1\].resolutions: resolution '1080'"):
        train_vae.main(["--config", "configs/train/tiny_vae.yaml", "--set", "data.manifest=x.jsonl", "--set",
                        "curriculum=[{start_step: 0, resolutions: [32]}, {start_step: 5, resolutions: [1080]}]"])


def test_world_not_divisible_by_sp_degree():
    from hyvideo.parallel.mesh import init_distributed

    with pytest.raises(ValueError, match="world size 1 is not divisible by the sequence-parallel degree 2"):
        init_distributed(sp_degree=2)


def test_lpips_random_trunk_and_weight_files(tmp_path):
    from hyvideo.vae.lpips import LPIPS

    torch.manual_seed(0)
    net = LPIPS()
    x = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    d_same, d_diff = net(x, x), net(x, y)
    assert d_same.shape == (2, 3) and d_same.abs().max() < 1e-6 and (d_diff > 1e-4).all()
    y.requires_grad_(True)
    net(x, y).sum().backward()
    assert y.grad.abs().sum() > 0 and not any(p.requires_grad for p in net.parameters())
    # torchvision vgg16 layout (features.N.*, plus classifier keys that are ignored) and the lpips vgg.pth layout
    vgg = {k: torch.randn_like(v) for k, v in net.state_dict().items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)
    lin = {f"lin{i}.model.1.weight": torch.rand_like(net.lins[i].model[1].weight) for i in range(5)}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    loaded = LPIPS(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    assert torch.equal(loaded.features[0].weight, vgg["features.0.weight"])
    assert torch.equal(loaded.lins[4].model[1].weight, lin["lin4.model.1.weight"])
    del lin["lin3.model.1.weight"]
    torch.save(lin, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="missing"):
        LPIPS(None, tmp_path / "bad.pth")


def test_discriminator_and_vae_loss_terms():
    from hyvideo.vae.discriminator import PatchDiscriminator3D
    from hyvideo.vae.distribution import DiagonalGaussianDistribution
    from hyvideo.vae.losses import VAELossWeights, discriminator_loss, vae_generator_loss

    disc = PatchDiscriminator3D(channels=8, num_layers=2)
    for shape in [(2, 3, 1, 32, 32), (2, 3, 5, 32, 48)]:
        out = disc(torch.randn(shape))
        assert out.shape[:3] == (2, 1, shape[2])
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    recon = (x + 0.1).requires_grad_(True)
    post = DiagonalGaussianDistribution(torch.zeros(2, 8, 2, 4, 4))  # N(0, I): KL = 0
    w = VAELossWeights(l1=1.0, lpips=0.0, adv=0.05, kl=1e-6)
    loss, terms = vae_generator_loss(x, recon, post, weights=w, disc=disc, use_adv=False)
    assert torch.allclose(terms["l1"], (x - recon).abs().mean()) and "adv" not in terms and terms["kl"] == 0
    loss_adv, terms = vae_generator_loss(x, recon, post, weights=w, disc=disc, use_adv=True)
    assert torch.allclose(loss_adv, loss + 0.05 * terms["adv"])
    w_mse = VAELossWeights(l1=1.0, mse=5.0, lpips=0.0, adv=0.0, kl=1e-6)
    loss_mse, terms = vae_generator_loss(x, recon, post, weights=w_mse)
    assert torch.allclose(terms["mse"], torch.tensor(0.01)) and torch.allclose(loss_mse, loss + 5.0 * 0.01)
    d = discriminator_loss(disc, x, recon)
    d.backward()
    assert recon.grad is None and d > 0  # the D loss does not reach the generator output


def test_ema_and_flow_draws_are_layout_independent():
    from hyvideo.training.config import FlowConfig
    from hyvideo.training.objectives import draw_flow
    from hyvideo.training.state import EMA

    m = torch.nn.Linear(3, 2)
    ema = EMA(m, 0.5)
    before = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    assert torch.allclose(ema.shadow["weight"], before + 0.5)
    cfg = FlowConfig(timestep_sampling="logit_normal", shift=3.0, text_dropout=0.5)
    full = draw_flow((4, 2, 1, 2, 2), [0, 1, 2, 3], step=7, seed=1, cfg=cfg)
    part = draw_flow((2, 2, 1, 2, 2), [2, 3], step=7, seed=1, cfg=cfg)
    assert torch.equal(full.noise[2:], part.noise) and torch.equal(full.sigma[2:], part.sigma)
    assert ((full.sigma > 0) & (full.sigma < 1)).all()
    other = draw_flow((4, 2, 1, 2, 2), [0, 1, 2, 3], step=8, seed=1, cfg=cfg)
    assert not torch.equal(full.noise, other.noise)
    u = draw_flow((400, 1, 1, 1, 1), list(range(400)), step=0, seed=0, cfg=FlowConfig(timestep_sampling="uniform",
                                                                                     text_dropout=0.1))
    assert 0.4 < u.sigma.mean() < 0.6 and 0.03 < u.drop_text.float().mean() < 0.2


def test_every_shipped_run_config_loads():
    from hyvideo.training.builders import check_resolutions
    from tests.training.conftest import ROOT

    files = sorted((ROOT / "configs/train").glob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        cfg = load_config(VAETrainConfig if "vae" in f.name else DiTTrainConfig, f)
        check_resolutions(cfg.data.resolutions)
        for stage in getattr(cfg, "curriculum", ()):
            check_resolutions(stage.resolutions)


def test_lr_schedule_warmup_then_constant_or_cosine():
    from hyvideo.training.config import OptimConfig
    from hyvideo.training.optim import build_optimizer, build_scheduler

    def lrs(cfg, steps):
        opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
        sched, out = build_scheduler(opt, cfg), []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    const = lrs(OptimConfig(lr=1e-3, warmup_steps=10), 30)
    assert const[0] == pytest.approx(1e-6) and const[10] == const[29] == pytest.approx(1e-3)
    cos = lrs(OptimConfig(lr=1e-3, warmup_steps=10, decay_steps=110, min_lr=1e-5), 130)
    assert cos[10] == pytest.approx(1e-3) and cos[60] == pytest.approx(5.05e-4, rel=1e-3)
    assert cos[110] == cos[129] == pytest.approx(1e-5)
    with pytest.raises(ConfigError, match="decay_steps"):
        OptimConfig(lr=1e-3, warmup_steps=10, decay_steps=5)


def test_vae_curriculum_stage_batches_and_crops():
    import train_vae

    cfg = load_config(VAETrainConfig, None, [
        "data.video_batch_size=2", "data.image_batch_size=4",
        "curriculum=[{start_step: 0, resolutions: [64], num_frames: 1, video_batch_size: 32, crop_px: 32}, "
        "{start_step: 10, resolutions: [64], num_frames: 9}]"])
    data0, crop0 = train_vae.stage_data(cfg, 0)
    data1, crop1 = train_vae.stage_data(cfg, 1)
    assert (data0.video_batch_size, data0.image_batch_size, crop0) == (32, 4, 32)
    assert (data1.video_batch_size, data1.image_batch_size, crop1) == (2, 4, 0)
    x = torch.arange(3 * 2 * 1 * 64 * 64, dtype=torch.float32).reshape(3, 2, 1, 64, 64)
    a = train_vae.random_crops(x, 32, [0, 1, 2], step=5, seed=0)
    b = train_vae.random_crops(x[1:], 32, [1, 2], step=5, seed=0)  # another rank layout: same windows per slot
    assert a.shape == (3, 2, 1, 32, 32) and torch.equal(a[1:], b)
    for i in range(3):  # each window is an 8-px-aligned block of its own sample
        oy, ox = divmod(int(a[i, 0, 0, 0, 0] - x[i, 0, 0, 0, 0]), 64)
        assert oy % 8 == 0 and ox % 8 == 0 and torch.equal(a[i], x[i, ..., oy:oy + 32, ox:ox + 32])
    assert not torch.equal(a, train_vae.random_crops(x, 32, [0, 1, 2], step=6, seed=0))
    with pytest.raises(ConfigError, match="crop_px must be 0 or a positive multiple of 8"):
        load_config(VAETrainConfig, None, ["curriculum=[{start_step: 0, resolutions: [64], crop_px: 30}]"])
