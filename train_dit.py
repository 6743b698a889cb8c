"""Train the HunyuanVideo DiT with flow matching (paper section 3.1 objective, section 4 progressive recipe).

One node:   torchrun --nproc_per_node 8 train_dit.py --config configs/train/dit_stage3_joint_256p.yaml
Many nodes: torchrun --nnodes N --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 train_dit.py ...
CPU test:   torchrun --nproc_per_node 2 train_dit.py --config configs/train/tiny.yaml

config + data checks -> resume target -> distributed init -> DiT on meta -> sequence parallel -> activation
checkpointing -> FSDP2 -> this rank's shards (seeded init or previous stage's weights) -> optimizer / EMA -> resume
(DCP, any world size) -> loop (accumulate, clip, step, EMA, log, checkpoint, sample) -> export from the last
checkpoint (rank 0, streaming).
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from hyvideo.parallel.fsdp import parallelize
from hyvideo.parallel.mesh import configure_backends, destroy, init_distributed, mean_over_ranks
from hyvideo.training.builders import build_loader
from hyvideo.training.checkpointing import Checkpointer, export_dit, find_resume, restore
from hyvideo.training.cli import run_cli, setup_logging
from hyvideo.training.conditioning import TextConditioner, build_frozen_vae, encode_latents
from hyvideo.training.flops import DiTFlops, dit_tokens
from hyvideo.training.lora import build_lora_dit, export_lora, lora_model_config
from hyvideo.training.config import DiTTrainConfig, dump_yaml, load_config, to_dict
from hyvideo.training.meta_init import build_on_meta, init_sharded, load_full_weights, materialize
from hyvideo.training.monitor import Monitor
from hyvideo.training.objectives import draw_flow, flow_matching_loss
from hyvideo.training.optim import build_optimizer, build_scheduler, clip_grad_norm
from hyvideo.training.preflight import preflight_dit
from hyvideo.training.resume import apply_optim_config, check_resume
from hyvideo.training.state import EMA, read_weights

log = logging.getLogger("train_dit")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML run config (configs/train/*.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")
    return p.parse_args(argv)


def build_dit(cfg: DiTTrainConfig, dit_config: dict, env):
    """The training DiT: built on ``meta``, sequence parallel, activation checkpointing, compile and FSDP2 applied,
    then only this rank's shards allocated and filled: the seeded from-scratch init (identical for any world
    size) or the previous stage's weights (``run.init_from``, EMA weights when the file has them; rank 0 reads
    the file memory-mapped and broadcasts it tensor by tensor)."""
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    def factory():
        return HYVideoDiffusionTransformer.from_config(dit_config)

    dit = build_on_meta(factory)
    if cfg.parallel.sp_degree > 1:
        from hyvideo.parallel.sequence_parallel import enable_sequence_parallel  # noqa: PLC0415

        enable_sequence_parallel(dit, env.sp_group)
    model = parallelize(dit, env.mesh, engine=cfg.parallel.engine, precision=cfg.parallel.precision,
                        activation_checkpointing=cfg.parallel.activation_checkpointing, compile=cfg.parallel.compile,
                        fp32_inputs=("t", "guidance"))
    materialize(model, env.device)
    if cfg.run.init_from:
        load_full_weights(model, lambda: init_weights_for(dit_config, read_weights(cfg.run.init_from)),
                          cfg.run.init_from)
        log.info("initialised from %s", cfg.run.init_from)
    else:
        init_sharded(model, factory, cfg.run.seed)
    return model.train()


def init_weights_for(dit_config: dict, sd: dict) -> dict:
    """The weights of ``run.init_from`` for this DiT: an image-to-video DiT starts from text-to-video weights
    (:func:`hyvideo.checkpoint.convert.t2v_to_i2v_dit`: latent concat widens ``img_in``, zero image channels)."""
    from hyvideo.checkpoint.convert import t2v_to_i2v_dit  # noqa: PLC0415

    ct = dit_config.get("i2v_condition_type")
    w = sd.get("img_in.proj.weight")
    if ct and w is not None and w.shape[1] == dit_config.get("out_channels", dit_config["in_channels"]) \
            and w.shape[1] != dit_config["in_channels"]:
        log.info("init_from holds text-to-video weights: %s input channels widened for %s", w.shape[1], ct)
        return t2v_to_i2v_dit(sd, ct)
    return sd


def make_batch(batch: dict, step: int, cfg: DiTTrainConfig, *, device, text_enc, vae, null_text) -> tuple:
    """``(latents, draws, text)`` of one micro-batch: latents scaled ``[B, C_z, T_z, H_z, W_z]`` float32,
    per-sample noise/sigma/text-dropout draws, and the text inputs with dropped captions replaced."""
    slots = batch["slot"].tolist()
    if "latent" in batch:  # latent cache
        latents = batch["latent"].to(device, non_blocking=True) * cfg.model.latent_scale
        draws = draw_flow(tuple(latents.shape), slots, step=step, seed=cfg.run.seed, cfg=cfg.flow)
        text = {k: batch[k].clone() for k in ("text_states", "text_mask", "text_states_2")}
        null = null_text["image" if batch["bucket"][-1] == 1 else "video"]
        for i in torch.nonzero(draws.drop_text).flatten().tolist():
            for k in text:
                text[k][i] = null[k]
        text = {k: v.to(device).float() if v.is_floating_point() else v.to(device) for k, v in text.items()}
    else:
        latents = encode_latents(vae, batch["pixels"].to(device, non_blocking=True)) * cfg.model.latent_scale
        draws = draw_flow(tuple(latents.shape), slots, step=step, seed=cfg.run.seed, cfg=cfg.flow)
        text = text_enc(batch["caption"], batch["bucket"][-1], draws.drop_text)
        text = {k: v.to(device) for k, v in text.items()}
    return latents, draws, text


@torch.no_grad()
def sample_latent(model, text: dict, shape: tuple, cfg: DiTTrainConfig, guidance_embed: bool, seed: int = 0):
    """Euler sampling (``flow.sample_steps``, ``flow.sample_shift``) of one latent ``shape`` from seeded noise."""
    from hyvideo.diffusion.flow_matching import get_sigmas  # noqa: PLC0415
    from hyvideo.diffusion.sampler import euler_sample  # noqa: PLC0415

    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(text["text_states"].device)
    guidance = torch.full((shape[0],), cfg.flow.guidance_scale * 1000.0, device=noise.device) \
        if guidance_embed else None

    def model_fn(x, t):
        return model(x, t, text["text_states"], text["text_mask"], text["text_states_2"], guidance)

    return euler_sample(model_fn, noise, get_sigmas(cfg.flow.sample_steps, cfg.flow.sample_shift), progress=False)


def main(argv=None) -> dict:
    """Run training; returns ``{"losses": {step: loss}, "out_dir": str, "last_step": int}`` (rank-local)."""
    args = parse_args(argv)
    setup_logging()
    cfg = load_config(DiTTrainConfig, args.config, args.set)
    out_dir = Path(cfg.run.out_dir)
    # 0. Every input check before any heavy work (exit 2 with one message): config, data, resume target
    dataset, dit_config = preflight_dit(cfg)
    saved_model_config = lora_model_config(cfg, dit_config) if cfg.lora.rank > 0 else dit_config
    resume = find_resume(cfg.run.resume, out_dir)
    if resume is not None:
        check_resume(resume.path, step=resume.step, saved_config=resume.config, saved_model=resume.model_config,
                     cfg=cfg, model_config=saved_model_config)
    env = init_distributed(cfg.parallel.sp_degree, cfg.parallel.backend)
    torch.manual_seed(cfg.run.seed + env.rank)  # the global RNG (LoRA dropout); a resume restores its state
    log.info("resolved config:\n%s", dump_yaml(cfg))
    device = env.device
    configure_backends(device)

    # 1. Model, sequence parallel, activation checkpointing, FSDP2 (LoRA: frozen base + adapters, DDP),
    #    optimizer, EMA -- all on the trainable parameters (`trained`: the model, or the view of its adapters)
    if cfg.lora.rank > 0:
        model, trained = build_lora_dit(cfg, dit_config, env)
    else:
        model = trained = build_dit(cfg, dit_config, env)
    model_flops = DiTFlops.of(model)  # for MFU (DTensor shapes are global)
    guidance_embed = bool(dit_config["guidance_embed"])
    optimizer = build_optimizer(trained.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim)
    ema = EMA(trained, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None

    checkpointer = Checkpointer(out_dir, is_main=env.is_main, async_save=cfg.run.async_checkpoint)

    # 2. Resume (exact: model, EMA, optimizer, scheduler, sampler position, RNG; any world size)
    start_step = 0
    if resume is not None:
        start_step = restore(resume, model=trained, optimizer=optimizer, scheduler=scheduler, ema=ema)
        apply_optim_config(optimizer, scheduler, cfg.optim)
        log.info("resumed from %s at step %d", resume.path, start_step)
        del resume

    # 3. Data and frozen conditioning models
    _, loader = build_loader(dataset, cfg.data, dp_world=env.dp_world, dp_rank=env.dp_rank,
                             grad_accum=cfg.optim.grad_accum, seed=cfg.run.seed, start_step=start_step,
                             max_steps=cfg.run.max_steps, pin_memory=device.type == "cuda")
    cached = bool(cfg.data.latent_cache)
    text_enc = None if cached else TextConditioner(cfg.model, device)
    # The frozen VAE encodes on every rank (on-the-fly latents); sample videos are decoded on rank 0 only.
    need_vae = not cached or (cfg.run.sample_every and env.is_main)
    vae = build_frozen_vae(cfg.model, device, cfg.run.seed) if need_vae else None
    null_text = dataset.null_text if cached else None
    sp_check = None
    if cfg.parallel.sp_degree > 1:
        from hyvideo.parallel.sequence_parallel import check_sp_degree as sp_check  # noqa: PLC0415
    low_precision_base = cfg.lora.rank > 0 and cfg.lora.base_dtype != "fp32"  # bf16 / fp8 base, fp32 adapters
    autocast = torch.autocast(device.type, torch.bfloat16) \
        if (cfg.parallel.precision == "bf16" and cfg.parallel.engine == "none") or low_precision_base else nullcontext()

    # 4. Loop
    monitor = Monitor(out_dir, cfg.run.max_steps, start_step, enabled=env.is_main, tensorboard=cfg.run.tensorboard,
                      use_tqdm=cfg.run.tqdm, world=env.world)
    losses: dict[int, float] = {}
    it = iter(loader)
    step = start_step
    while step < cfg.run.max_steps:
        loss_sum, samples, tokens, flops = torch.zeros((), device=device), 0, 0, 0
        for _ in range(cfg.optim.grad_accum):
            batch = next(it)
            latents, draws, text = make_batch(batch, step, cfg, device=device, text_enc=text_enc, vae=vae,
                                              null_text=null_text)
            if sp_check is not None:
                sp_check(dit_config, tuple(latents.shape), cfg.parallel.sp_degree)
            guidance = torch.full((latents.shape[0],), cfg.flow.guidance_scale * 1000.0, device=device) \
                if guidance_embed else None
            with autocast:
                loss = flow_matching_loss(model, latents, draws, text, guidance,
                                          dit_config.get("i2v_condition_type")) / cfg.optim.grad_accum
            loss.backward()
            loss_sum += loss.detach()
            img_tokens, txt_tokens = dit_tokens(dit_config, tuple(latents.shape), text["text_mask"])
            samples += latents.shape[0] * env.dp_world
            tokens += latents.shape[0] * env.dp_world * img_tokens
            flops += model_flops.train_step(latents.shape[0] * env.dp_world, img_tokens, txt_tokens)
        grad_norm = clip_grad_norm(trained, cfg.optim.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if ema is not None:
            ema.update(trained)
        step += 1
        losses[step] = float(mean_over_ranks({"loss": loss_sum}, device)["loss"])
        monitor.step(step, {"loss": losses[step], "lr": lr, "grad_norm": grad_norm}, samples=samples, tokens=tokens,
                     flops=flops, log_now=step % cfg.run.log_every == 0 or step == cfg.run.max_steps)
        if cfg.run.sample_every and step % cfg.run.sample_every == 0 and not dit_config.get("i2v_condition_type"):
            shape = (1, *latents.shape[1:])
            z = sample_latent(model, {k: v[:1] for k, v in text.items()}, shape, cfg, guidance_embed)  # all ranks
            if env.is_main:
                video = vae.decode((z / cfg.model.latent_scale).to(next(vae.parameters()).dtype)).sample[0]
                monitor.video(step, "sample", (video.float() / 2 + 0.5).clamp(0, 1).cpu())
        stopping = cfg.run.stop_after and step >= cfg.run.stop_after
        if (cfg.run.ckpt_every and step % cfg.run.ckpt_every == 0) or step == cfg.run.max_steps or stopping:
            checkpointer.save(step, model=trained, optimizer=optimizer, scheduler=scheduler, ema=ema,
                              config=to_dict(cfg), model_config=saved_model_config)
        if stopping:
            log.warning("run.stop_after=%d reached: stopping (resume continues from step %d)", step, step)
            break

    last = checkpointer.wait()
    if cfg.lora.rank > 0 and step >= cfg.run.max_steps and env.is_main:
        path = export_lora(model, trained, ema, out_dir, cfg, to_dict(cfg))
        log.info("exported %s (sample_video.py --lora-path %s)", path, path)
    monitor.close()
    if getattr(dataset, "skipped", None):
        log.warning("data: skipped %s", dict(dataset.skipped))
    destroy()
    # 5. Export the inference layout from the final checkpoint (rank 0, streaming, no collectives):
    #    sample_video.py --dit-weight out_dir/export/dit.pt
    if step >= cfg.run.max_steps and env.is_main and cfg.lora.rank == 0:
        path = export_dit(last, out_dir / "export", dit_config)
        log.info("exported %s (sample_video.py --dit-weight %s)", path, path)
    return {"losses": losses, "out_dir": str(out_dir), "last_step": step}


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:], "train_dit.py"))
