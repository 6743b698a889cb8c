"""Sample text-to-video with HunyuanVideo weights (official ``ckpts/`` tree or a diffusers folder).

Examples::

    # tiny random models, CPU, seconds:
    python scripts/make_tiny_checkpoints.py --out tiny_ckpts
    python sample_video.py --model-base tiny_ckpts --prompt "A cat walks on the grass, realistic style." \
        --video-size 64 64 --video-length 9 --infer-steps 4

    # released weights (huggingface-cli download tencent/HunyuanVideo --local-dir ./ckpts):
    python sample_video.py --model-base ckpts --video-size 720 1280 --video-length 129 --infer-steps 50 \
        --prompt "A cat walks on the grass, realistic style." --seed 42 --embedded-cfg-scale 6.0 \
        --flow-shift 7.0 --flow-reverse --use-cpu-offload --save-path ./results

Bad arguments (length not 4n+1, size not a multiple of 16, empty prompt, unknown precision, NaN guidance, a seed
outside 64 bits, an unwritable save path, a request that cannot fit in memory, missing or mismatched weights)
exit with status 2 and a message before any heavy work.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
from pathlib import Path

from hyvideo.model_args import (  # noqa: F401 - PRECISIONS, ATTN_BACKENDS, offload_mode: used by tests/callers
    ATTN_BACKENDS,
    PRECISIONS,
    add_model_args,
    check_model_args,
    default_device,
    dtypes,
    load_models,
    offload_mode,
    resolve_model_base,
    resolve_precisions,
)


def build_parser() -> argparse.ArgumentParser:
    """The released sampler's flags: the request, the model flags shared with ``gradio_server.py``
    (:func:`hyvideo.model_args.add_model_args`), and Ulysses."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompt", default=None)
    p.add_argument("--prompt-file", default=None,
                   help="batch: .txt (one prompt per line), .csv or .jsonl (prompt, optional seed / negative_prompt / "
                        "name); one video per prompt and seed with stable names, a rerun skips finished videos")
    p.add_argument("--neg-prompt", default=None)
    p.add_argument("--video-size", type=int, nargs="+", default=[720, 1280], help="H W in pixels (one value = square)")
    p.add_argument("--video-length", type=int, default=129, help="frames, 4n+1")
    p.add_argument("--infer-steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=None, help="video i uses seed+i (random if omitted)")
    p.add_argument("--flow-shift", type=float, default=7.0)
    p.add_argument("--flow-reverse", action="store_true",
                   help="accepted for compatibility; sigma=1 is noise always (the released weights' convention)")
    p.add_argument("--embedded-cfg-scale", type=float, default=6.0)
    p.add_argument("--cfg-scale", type=float, default=1.0)
    p.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch-size", type=int, default=1, help="videos per forward pass")
    p.add_argument("--num-videos", type=int, default=1, help="videos per prompt")
    p.add_argument("--save-path", default="./results")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--ulysses-degree", type=int, default=1,
                   help="Ulysses sequence-parallel degree; launch with torchrun --nproc_per_node N (world size divisible by N)")
    add_model_args(p)
    add_i2v_args(p)
    return p


def add_i2v_args(p: argparse.ArgumentParser) -> None:
    """The released HunyuanVideo-I2V flags, and video-to-video."""
    g = p.add_argument_group("image-to-video (HunyuanVideo-I2V weights) and video-to-video (text-to-video weights)")
    g.add_argument("--i2v-mode", action="store_true", help="image-to-video: needs --i2v-image-path and I2V weights")
    g.add_argument("--i2v-image-path", default=None, help="the first frame to animate (any image PIL reads)")
    g.add_argument("--i2v-resolution", default="720p", choices=["64p", "128p", "256p", "360p", "540p", "720p"],
                   help="bucket family (released: 360p, 540p, 720p; 64p-256p for small models): the video size is "
                        "the bucket closest to the image's aspect ratio (--video-size is ignored)")
    g.add_argument("--i2v-condition-type", default=None, choices=["token_replace", "latent_concat"],
                   help="what the weights must be (default: read from them; the released model is token_replace)")
    g.add_argument("--i2v-stability", action="store_true",
                   help="start from 0.999 * noise + 0.001 * image latent (steadier video; released flag)")
    g.add_argument("--video-path", default=None,
                   help="video-to-video (SDEdit) input clip (an image gives a still clip), resized to --video-size")
    g.add_argument("--strength", type=float, default=None,
                   help="video-to-video strength in (0, 1]: the fraction of the schedule re-run (default 0.8; 1 = "
                        "text-to-video from the same noise)")
    g.add_argument("--fix-first-frame", action="store_true",
                   help="video-to-video: keep the input's first frame (latent frame 0 on the input's at every "
                        "sigma; image-to-video with text-to-video weights)")


def check_i2v_args(args) -> None:
    """The I2V / V2V flag combinations (before the request check).

    Raises:
        ValueError: a flag without the mode it belongs to, both modes, a strength outside (0, 1].
    """
    if args.i2v_mode and not args.i2v_image_path:
        raise ValueError("--i2v-mode needs --i2v-image-path IMAGE (the first frame to animate)")
    if args.i2v_image_path and not args.i2v_mode:
        raise ValueError("--i2v-image-path is only used with --i2v-mode (image-to-video with HunyuanVideo-I2V weights)")
    if args.i2v_mode and args.video_path:
        raise ValueError("choose --i2v-mode (image-to-video) or --video-path (video-to-video), not both")
    if args.strength is not None and not args.video_path:
        raise ValueError("--strength is only used with --video-path (video-to-video)")
    if args.fix_first_frame and not args.video_path:
        raise ValueError("--fix-first-frame is only used with --video-path (video-to-video)")
    if args.strength is not None and not 0.0 < args.strength <= 1.0:
        raise ValueError(f"--strength must be in (0, 1] (0 keeps the input, 1 is text-to-video from pure noise), "
                         f"got {args.strength}")


def request_of(args):
    """The :class:`hyvideo.sampling.SampleRequest` of the parsed flags (all flags also go into the sidecar)."""
    from hyvideo.sampling import SampleRequest  # noqa: PLC0415

    return SampleRequest(prompt=args.prompt or "", height=args.video_size[0], width=args.video_size[1],
                         video_length=args.video_length, infer_steps=args.infer_steps, seed=args.seed,
                         flow_shift=args.flow_shift, embedded_guidance_scale=args.embedded_cfg_scale,
                         cfg_scale=args.cfg_scale, negative_prompt=args.neg_prompt, num_videos=args.num_videos,
                         batch_size=args.batch_size, fps=args.fps, vae_tiling=args.vae_tiling,
                         image_path=args.i2v_image_path if args.i2v_mode else None,
                         i2v_resolution=args.i2v_resolution, i2v_stability=args.i2v_stability,
                         video_path=args.video_path, strength=0.8 if args.strength is None else args.strength,
                         fix_first_frame=args.fix_first_frame,
                         extra={k: v for k, v in vars(args).items() if k != "entries"})


def check_args(args) -> None:
    """Validate everything cheap to check; raises ValueError with a message naming the bad value."""
    from hyvideo.sampling import check_request  # noqa: PLC0415
    from hyvideo.utils.outputs import prepare_output_dir  # noqa: PLC0415

    if len(args.video_size) not in (1, 2):
        raise ValueError(f"--video-size takes H W (or one value for square), got {args.video_size}")
    if len(args.video_size) == 1:
        args.video_size = args.video_size * 2
    check_model_args(args)
    check_i2v_args(args)
    if args.prompt_file is not None:
        from hyvideo.prompt_file import read_prompt_file  # noqa: PLC0415

        if args.prompt:
            raise ValueError("pass either --prompt or --prompt-file, not both")
        args.entries, messages = read_prompt_file(args.prompt_file)
        for message in messages:
            print(f"warning: {message}", file=sys.stderr)
        check_request(dataclasses.replace(request_of(args), prompt=args.entries[0].prompt))
    else:
        check_request(request_of(args))
    if args.i2v_mode:  # the video size is the image's bucket (released rule), said in one line
        from hyvideo.sampling import apply_image_bucket  # noqa: PLC0415

        req, line = apply_image_bucket(request_of(args))
        args.video_size = [req.height, req.width]
        print(line)
    if args.ulysses_degree < 1:
        raise ValueError(f"--ulysses-degree must be >= 1, got {args.ulysses_degree}")
    prepare_output_dir(args.save_path)


def check_model_fits(args, device: str) -> None:
    """Refuse a request whose memory estimate exceeds what the device has (before loading any model)."""
    import torch  # noqa: PLC0415

    from hyvideo.checkpoint.io import dit_config_for, resolve_model_paths, weight_file_params  # noqa: PLC0415
    from hyvideo.memory import GIB, advice, available_bytes, estimate_sampling  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    paths = resolve_model_paths(args.model_base, args.dit_weight, i2v=args.i2v_mode)
    dit_cfg = dit_config_for(paths.dit, args.model)
    check_condition_type(args, dit_cfg, paths.dit)
    if args.ulysses_degree > 1:
        from hyvideo.parallel.sequence_parallel import check_sp_degree  # noqa: PLC0415
        from hyvideo.pipeline import latent_shape  # noqa: PLC0415

        check_sp_degree(dit_cfg, latent_shape(1, *args.video_size, args.video_length), args.ulysses_degree)
    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config(dit_cfg)
    has_config = any((d / "config.json").is_file() for d in (Path(paths.dit), Path(paths.dit).parent))
    have = weight_file_params(paths.dit)  # validates the file too (payloads, non-checkpoints)
    want = sum(p.numel() for p in dit.parameters())
    if not has_config and have != want:  # (with a config.json, the strict load lists the mismatched keys)
        raise ValueError(f"the DiT weights {paths.dit} hold {have:,} parameters but the --model preset "
                         f"{args.model!r} describes a model of {want:,}; put the model's config.json beside the "
                         "weights or pass the matching --model")
    with torch.device("meta"):
        vae = AutoencoderKLCausal3D.from_config(paths.vae / "config.json") if (paths.vae / "config.json").is_file() \
            else None
    dt = dtypes(args)
    text_bytes = sum(f.stat().st_size for d in (paths.text_encoder, paths.text_encoder_2) for f in Path(d).rglob("*")
                     if f.suffix in (".safetensors", ".bin", ".pt"))
    est = estimate_sampling(
        dit_params=sum(p.numel() for p in dit.parameters()), dit_hidden=dit.hidden_size,
        dit_dtype=dt["dit"], fp8=args.use_fp8,
        vae_params=sum(p.numel() for p in vae.parameters()) if vae else 0,
        vae_width=vae.config["block_out_channels"][0] if vae else 128, vae_dtype=dt["vae"],
        text_bytes=text_bytes, batch=args.batch_size, cfg=args.cfg_scale > 1, height=args.video_size[0],
        width=args.video_size[1], frames=args.video_length, tiling=args.vae_tiling, offload=offload_mode(args))
    free = available_bytes(device)
    if free is not None and est.total > free:
        raise ValueError(
            f"this request needs about {est.total / GIB:.1f} GiB on {device} (weights {est.weights / GIB:.1f}, DiT "
            f"activations {est.dit_activations / GIB:.1f}, VAE decode {est.vae_activations / GIB:.1f}, frames "
            f"{est.video / GIB:.1f}) but {free / GIB:.1f} GiB are free; try {advice(est, args.vae_tiling, offload_mode(args), args.use_fp8)}")


def check_condition_type(args, dit_cfg: dict, dit_path) -> None:
    """The weights must fit the mode: I2V flags need an I2V DiT, text-to-video / video-to-video a T2V one.

    Raises:
        ValueError: naming the condition type found in the weights.
    """
    found = dit_cfg.get("i2v_condition_type")
    if args.i2v_mode and found is None:
        raise ValueError(f"--i2v-mode needs HunyuanVideo-I2V weights, but the DiT at {dit_path} has "
                         f"i2v_condition_type None (a text-to-video model); point --model-base at an I2V tree "
                         f"(hunyuan-video-i2v-720p/, or a diffusers HunyuanVideoImageToVideoPipeline folder)")
    if not args.i2v_mode and found is not None:
        raise ValueError(f"the DiT at {dit_path} is an image-to-video model (i2v_condition_type {found!r}); pass "
                         f"--i2v-mode --i2v-image-path IMAGE, or point --model-base at text-to-video weights")
    if args.i2v_mode and args.i2v_condition_type not in (None, found):
        raise ValueError(f"--i2v-condition-type {args.i2v_condition_type} does not match the DiT at {dit_path} "
                         f"(i2v_condition_type {found!r})")


def setup_distributed(args, device: str):
    """torchrun: SP groups of ``--ulysses-degree`` ranks, groups split the seeds; None for one process.

    Raises:
        ValueError: the world size is not divisible by the degree.
    """
    import os  # noqa: PLC0415

    if args.ulysses_degree == 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    from hyvideo.parallel.mesh import init_distributed  # noqa: PLC0415

    try:
        return init_distributed(sp_degree=args.ulysses_degree, backend="gloo" if device == "cpu" else "")
    except ValueError as e:
        raise ValueError(f"{e} (launch with torchrun --nproc_per_node {args.ulysses_degree})") from None


def shared_seed(args, env) -> int:
    """``--seed``, or one random seed drawn on rank 0 and broadcast, so all ranks of a video start alike."""
    if args.seed is not None:
        return args.seed
    seed = random.randint(0, 1_000_000)
    if env is not None:
        import torch.distributed as dist  # noqa: PLC0415

        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = box[0]
    return seed


def requests(args, env):
    """``(request, base seed)`` per video group: the single ``--prompt``, or one per line of ``--prompt-file``
    (base seed: the line's ``seed``, else ``--seed``, else 0, so a rerun finds the same names)."""
    if args.prompt_file is None:
        yield request_of(args), shared_seed(args, env)
        return
    for e in args.entries:
        req = dataclasses.replace(request_of(args), prompt=e.prompt, name=e.name,
                                  negative_prompt=e.negative_prompt or args.neg_prompt)
        yield req, e.seed if e.seed is not None else (args.seed if args.seed is not None else 0)


def given_flags(argv) -> set[str]:
    """argparse dests of the flags present on the command line (defaults suppressed)."""
    p = build_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return set(vars(p.parse_known_args(argv)[0]))


def apply_nano_card(args, argv) -> list[str]:
    """Fill ``--model-base`` (:func:`hyvideo.model_args.resolve_model_base`: ./ckpts, else the shipped nano tree)
    and, for a tree with a nano model card, the flags the user left out (size, length, steps, flow shift, text
    length, fps); returns the warnings to print (words the model never saw, a size / length it was not trained on).

    Raises:
        ValueError: a malformed nano.json.
    """
    from hyvideo import nano  # noqa: PLC0415

    card = resolve_model_base(args)
    if card is None:
        return []
    changed = nano.apply_card_defaults(args, card, given_flags(argv))
    if changed:
        print(f"nano model card defaults: {', '.join(changed)}")
    if len(args.video_size) == 1:
        args.video_size = args.video_size * 2
    prompts = [args.prompt or ""] if args.prompt_file is None else []
    warnings = [nano.prompt_warning(p, card) for p in prompts]
    warnings.append(nano.size_warning(args.video_size[0], args.video_size[1], args.video_length, card))
    return [w for w in warnings if w]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        warnings = apply_nano_card(args, argv)
        check_args(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    from hyvideo.checkpoint.io import WeightLoadError  # noqa: PLC0415
    from hyvideo.diffusion.sampler import NonFiniteError  # noqa: PLC0415
    from hyvideo.sampling import finished, run_request  # noqa: PLC0415

    device = default_device(args)
    reason = resolve_precisions(args, device)
    print(f"precision on {reason}: DiT {args.precision}, VAE {args.vae_precision}, text {args.text_encoder_precision}")
    try:
        check_model_fits(args, device)
        env = setup_distributed(args, device)
    except (FileNotFoundError, WeightLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if env is not None:
        device = str(env.device)
    try:
        pipe, plan = load_models(args, device, sp_group=env.sp_group if env is not None else None)
    except (FileNotFoundError, WeightLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        for req, base in requests(args, env):
            seeds = req.seeds(base)
            if env is not None:
                seeds = seeds[env.dp_rank::env.dp_world]
            todo = [s for s in seeds if not finished(req, s, args.save_path)]
            if len(todo) < len(seeds):
                print(f"{req.name}: {len(seeds) - len(todo)} finished video(s) found in {args.save_path}, skipped")
            # every rank of an SP group holds the same video; its first rank writes it
            run_request(pipe, req, args.save_path, seeds=todo, write=env is None or env.sp_rank == 0,
                        sidecar_extra={"device": device, "accel": str(plan)})
    except ValueError as e:  # an input clip shorter than its header said
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if env is not None:
        from hyvideo.parallel.mesh import destroy  # noqa: PLC0415

        destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
