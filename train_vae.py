"""Train the causal 3D VAE: L1 + 0.1 LPIPS + 0.05 adversarial (3D PatchGAN, on after ``loss.disc_start``)
+ 1e-6 KL, video:image batches mixed 4:1, low-to-high resolution curriculum (paper section 3.1, VAE training).

One node:   torchrun --nproc_per_node 8 train_vae.py --config configs/train/vae.yaml
CPU test:   torchrun --nproc_per_node 2 train_vae.py --config configs/train/tiny_vae.yaml --set data.manifest=M

config + data checks -> resume target -> distributed init -> VAE + discriminator on meta -> activation
checkpointing -> FSDP2 -> this rank's shards (seeded init or model.init_weights) + frozen LPIPS -> optimizers -> resume
(DCP, any world size) -> loop over curriculum stages (G step, then D step once the discriminator is on) -> export
from the last checkpoint (rank 0, streaming).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch

from hyvideo.data.buckets import pixels_to_unit
from hyvideo.parallel.fsdp import apply_fsdp, parallelize
from hyvideo.parallel.mesh import configure_backends, destroy, init_distributed, mean_over_ranks
from hyvideo.training.builders import build_loader, check_resolutions
from hyvideo.training.checkpointing import Checkpointer, export_vae, find_resume, restore
from hyvideo.training.cli import run_cli, setup_logging
from hyvideo.training.config import ConfigError, VAETrainConfig, dump_yaml, load_config, to_dict
from hyvideo.training.flops import MetaFlopCounter
from hyvideo.training.meta_init import build_on_meta, init_sharded, load_full_weights, materialize
from hyvideo.training.monitor import Monitor
from hyvideo.training.objectives import sample_generator
from hyvideo.training.optim import build_optimizer, build_scheduler, clip_grad_norm
from hyvideo.training.preflight import preflight_vae
from hyvideo.training.resume import apply_optim_config, check_resume
from hyvideo.training.state import EMA, read_weights
from hyvideo.training.vae_objective import VAEReconstructor, latent_shape_of, posterior_noise, psnr_db
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from hyvideo.vae.discriminator import PatchDiscriminator3D
from hyvideo.vae.distribution import DiagonalGaussianDistribution
from hyvideo.vae.losses import VAELossWeights, discriminator_loss, vae_generator_loss

log = logging.getLogger("train_vae")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML run config (configs/train/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-4")
    return p.parse_args(argv)


def stages(cfg: VAETrainConfig) -> list[tuple[int, tuple[str, ...], int]]:
    """Curriculum as ``(start_step, resolutions, num_frames)`` sorted by start (``data.*`` when empty).

    Raises:
        ConfigError: a stage resolution without buckets, frames not 1 + 4k, or no stage starting at step 0.
    """
    if not cfg.curriculum:
        return [(0, check_resolutions(cfg.data.resolutions), cfg.data.num_frames)]
    out = []
    for i, st in enumerate(sorted(cfg.curriculum, key=lambda s: s.start_step)):
        if st.num_frames < 1 or (st.num_frames - 1) % 4:
            raise ConfigError(f"curriculum[{i}].num_frames must be 1 + 4k, got {st.num_frames}")
        out.append((st.start_step, check_resolutions(st.resolutions, f"curriculum[{i}].resolutions"), st.num_frames))
    if out[0][0] != 0:
        raise ConfigError(f"the first curriculum stage must start at step 0, got {out[0][0]}")
    return out


def stage_data(cfg: VAETrainConfig, idx: int):
    """``(data config, crop px)`` of curriculum stage ``idx``: its batch sizes override ``data.*`` where set."""
    if not cfg.curriculum:
        return cfg.data, 0
    st = sorted(cfg.curriculum, key=lambda s: s.start_step)[idx]
    sizes = {k: getattr(st, k) for k in ("video_batch_size", "image_batch_size") if getattr(st, k)}
    return (dataclasses.replace(cfg.data, **sizes) if sizes else cfg.data), st.crop_px


def random_crops(x: torch.Tensor, size: int, slots: list[int], *, step: int, seed: int) -> torch.Tensor:
    """A ``size x size`` px window of each sample of ``x`` ``[B, C, T, H, W]`` at an 8-px-aligned offset drawn from
    ``(seed, step, slot)`` (independent of the rank layout); samples smaller than ``size`` stay whole.

    Cropping trades field of view for samples per step: on the nano clips, 32 crops of 32x32 px learn faster
    than 8 whole 64x64 frames at the same cost (docs/nano.md)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        return x
    out = []
    for i, slot in enumerate(slots):
        g = sample_generator(seed, step, slot, "vae-crop")
        oy = int(torch.randint((h - size) // 8 + 1, (1,), generator=g)) * 8
        ox = int(torch.randint((w - size) // 8 + 1, (1,), generator=g)) * 8
        out.append(x[i, ..., oy:oy + size, ox:ox + size])
    return torch.stack(out)


def build_models(cfg: VAETrainConfig, vae_config: dict, env):
    """The VAE (in its reconstruction wrapper) and the discriminator, built on ``meta``, activation-checkpointed
    and sharded, then only this rank's shards allocated: the seeded init (identical for any world size) or
    ``model.init_weights`` (rank 0 reads, memory-mapped, and broadcasts); and the frozen LPIPS."""
    from hyvideo.vae.lpips import LPIPS  # noqa: PLC0415

    def vae_factory():
        return VAEReconstructor(AutoencoderKLCausal3D.from_config(vae_config))

    def disc_factory():
        return PatchDiscriminator3D(channels=cfg.loss.disc_channels, num_layers=cfg.loss.disc_layers)

    model = parallelize(build_on_meta(vae_factory), env.mesh, engine=cfg.parallel.engine,
                        precision=cfg.parallel.precision,
                        activation_checkpointing=cfg.parallel.activation_checkpointing)
    disc = build_on_meta(disc_factory)
    if cfg.parallel.engine == "fsdp":
        disc = apply_fsdp(disc, env.mesh, cfg.parallel.precision)
    for module, factory, seed in ((model, vae_factory, cfg.run.seed), (disc, disc_factory, cfg.run.seed + 1)):
        materialize(module, env.device)
        init_sharded(module, factory, seed)
    if cfg.model.init_weights:
        path = cfg.model.init_weights
        load_full_weights(model, lambda: {"vae." + k.removeprefix("vae."): v for k, v in read_weights(path).items()},
                          path)
    lpips = LPIPS(cfg.loss.lpips_vgg or None, cfg.loss.lpips_lin or None) if cfg.loss.lpips_weight > 0 else None
    return model.train(), disc.train(), lpips


def main(argv=None) -> dict:
    """Run VAE training; returns ``{"losses": {step: loss}, "psnr": {step: dB}, "last_step": int}``."""
    args = parse_args(argv)
    setup_logging()
    cfg = load_config(VAETrainConfig, args.config, args.set)
    out_dir = Path(cfg.run.out_dir)
    # 0. Every input check before any heavy work (exit 2 with one message): config, data, resume target
    plan = stages(cfg)
    datasets, vae_config = preflight_vae(cfg, plan)
    resume = find_resume(cfg.run.resume, out_dir)
    if resume is not None:
        check_resume(resume.path, step=resume.step, saved_config=resume.config, saved_model=resume.model_config,
                     cfg=cfg, model_config=vae_config)
    env = init_distributed(1, cfg.parallel.backend)
    log.info("resolved config:\n%s", dump_yaml(cfg))
    device = env.device
    configure_backends(device)
    weights = VAELossWeights(l1=cfg.loss.l1_weight, mse=cfg.loss.mse_weight, lpips=cfg.loss.lpips_weight,
                             adv=cfg.loss.adv_weight, kl=cfg.loss.kl_weight)

    # 1. Models, activation checkpointing, FSDP2, optimizers, EMA
    model, disc, lpips = build_models(cfg, vae_config, env)
    lpips = lpips.to(device) if lpips is not None else None
    optimizer, disc_opt = build_optimizer(model.parameters(), cfg.optim), build_optimizer(
        disc.parameters(), cfg.optim, lr=cfg.loss.disc_lr)
    scheduler = build_scheduler(optimizer, cfg.optim)
    ema = EMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    extra = {"discriminator": (disc, disc_opt)}
    checkpointer = Checkpointer(out_dir, is_main=env.is_main, async_save=cfg.run.async_checkpoint)

    # 2. Resume (any world size)
    start_step = 0
    if resume is not None:
        start_step = restore(resume, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, extra=extra)
        apply_optim_config(optimizer, scheduler, cfg.optim)
        apply_optim_config(disc_opt, None, cfg.optim, lr=cfg.loss.disc_lr)
        log.info("resumed from %s at step %d", resume.path, start_step)
        del resume

    # 3. Loop over curriculum stages (a new loader each time the stage changes)
    monitor = Monitor(out_dir, cfg.run.max_steps, start_step, enabled=env.is_main, tensorboard=cfg.run.tensorboard,
                      use_tqdm=cfg.run.tqdm, world=env.world)
    # MFU (GPU): the VAE's forward FLOPs counted once per input shape on a meta copy; D and LPIPS not counted
    vae_flops = MetaFlopCounter(lambda: VAEReconstructor(AutoencoderKLCausal3D.from_config(vae_config))) \
        if monitor.peak and env.is_main else None
    losses, psnrs = {}, {}
    step, stage_idx, it, dataset = start_step, None, None, None
    while step < cfg.run.max_steps:
        idx = max(i for i, s in enumerate(plan) if s[0] <= step)
        if idx != stage_idx:
            stage_idx, (_, tiers, frames) = idx, plan[idx]
            end = plan[idx + 1][0] if idx + 1 < len(plan) else cfg.run.max_steps
            dataset = datasets[idx]
            data_cfg, crop = stage_data(cfg, idx)
            _, loader = build_loader(dataset, data_cfg, dp_world=env.dp_world, dp_rank=env.dp_rank,
                                     grad_accum=cfg.optim.grad_accum, seed=cfg.run.seed, start_step=step,
                                     max_steps=min(end, cfg.run.max_steps), pin_memory=device.type == "cuda")
            it = iter(loader)
            log.info("curriculum stage %d from step %d: resolutions %s, %d frames, batches video %d / image %d%s",
                     idx, step, tiers, frames, data_cfg.video_batch_size, data_cfg.image_batch_size,
                     f", {crop}x{crop} px crops" if crop else "")
        use_adv = step >= cfg.loss.disc_start
        sums = {k: torch.zeros((), device=device)
                for k in ("loss", "l1", "mse", "lpips", "kl", "adv", "loss_d", "psnr")}
        samples = tokens = flops = 0
        pairs = []  # (real, detached fake) per micro-batch, for the D step after all G micro-steps
        for _ in range(cfg.optim.grad_accum):
            batch = next(it)
            x = pixels_to_unit(batch["pixels"].to(device, non_blocking=True))
            if crop:
                x = random_crops(x, crop, batch["slot"].tolist(), step=step, seed=cfg.run.seed)
            eps = posterior_noise(latent_shape_of(vae_config, tuple(x.shape)), batch["slot"].tolist(), step=step,
                                  seed=cfg.run.seed).to(device)
            if not cfg.loss.sample_posterior:  # decode the posterior mean (z = mean + 0 * std)
                eps = torch.zeros_like(eps)
            recon, moments = model(x, eps)
            recon = recon.float()
            posterior = DiagonalGaussianDistribution(moments.float())
            loss, terms = vae_generator_loss(x, recon, posterior, weights=weights, lpips=lpips, disc=disc,
                                             use_adv=use_adv)
            (loss / cfg.optim.grad_accum).backward()
            pairs.append((x, recon.detach()))
            sums["loss"] += loss.detach() / cfg.optim.grad_accum
            for k, v in terms.items():
                sums[k] += v.detach().float() / cfg.optim.grad_accum
            sums["psnr"] += psnr_db(recon.detach(), x) / cfg.optim.grad_accum
            samples += x.shape[0] * env.dp_world
            tokens += x.shape[0] * env.dp_world * x.shape[2] * x.shape[3] * x.shape[4]
            if vae_flops is not None:
                flops += env.dp_world * vae_flops.train_step(tuple(x.shape), tuple(eps.shape))
        disc_opt.zero_grad(set_to_none=True)  # drop the discriminator gradients of the G loss
        if use_adv:
            for x, fake in pairs:
                loss_d = discriminator_loss(disc, x, fake) / cfg.optim.grad_accum
                loss_d.backward()
                sums["loss_d"] += loss_d.detach()
        grad_norm = clip_grad_norm(model, cfg.optim.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if use_adv:
            clip_grad_norm(disc, cfg.optim.grad_clip)
            disc_opt.step()
        disc_opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        step += 1
        scalars = {k: float(v) for k, v in mean_over_ranks(sums, device).items()}
        losses[step], psnrs[step] = scalars["loss"], scalars["psnr"]
        monitor.step(step, {**scalars, "lr": lr, "grad_norm": grad_norm}, samples=samples, tokens=tokens,
                     flops=flops, log_now=step % cfg.run.log_every == 0 or step == cfg.run.max_steps)
        if cfg.run.sample_every and step % cfg.run.sample_every == 0:
            monitor.video(step, "recon", torch.cat([x[0], recon[0].detach()], dim=-1).float().cpu() / 2 + 0.5)
        stopping = cfg.run.stop_after and step >= cfg.run.stop_after
        if (cfg.run.ckpt_every and step % cfg.run.ckpt_every == 0) or step == cfg.run.max_steps or stopping:
            checkpointer.save(step, model=model, optimizer=optimizer, scheduler=scheduler, ema=ema,
                              config=to_dict(cfg), model_config=vae_config, extra=extra)
        if stopping:
            log.warning("run.stop_after=%d reached: stopping (resume continues from step %d)", step, step)
            break

    last = checkpointer.wait()
    monitor.close()
    if dataset is not None and dataset.skipped:
        log.warning("data: skipped %s", dict(dataset.skipped))
    destroy()
    # 4. Export the released VAE layout from the final checkpoint (rank 0, streaming, EMA weights when on):
    #    out_dir/export/vae/{config.json, pytorch_model.pt}, loads with hyvideo.checkpoint.io.load_vae
    if step >= cfg.run.max_steps and env.is_main:
        folder = export_vae(last, out_dir / "export" / "vae", vae_config)
        log.info("exported %s", folder)
    return {"losses": losses, "psnr": psnrs, "last_step": step, "out_dir": str(out_dir)}


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:], "train_vae.py"))
