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
import logging
import random
import sys
from pathlib import Path

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
ATTN_BACKENDS = ["auto", "sdpa", "flash", "gemm", "naive"]  # hyvideo.ops.attention.backends() (a test keeps them equal)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-base", default=None,
                   help="official ckpts/ tree or diffusers folder (default: ./ckpts if it exists, else the "
                        "hyvideo-nano model shipped in the package, with its recommended settings)")
    p.add_argument("--dit-weight", default=None, help="DiT weight file/folder (default: the tree's)")
    p.add_argument("--model", default="HYVideo-T/2-cfgdistill", help="DiT preset when no config.json is beside the weights")
    p.add_argument("--load-key", default="module", choices=["module", "ema"])
    p.add_argument("--prompt", default=None)
    p.add_argument("--neg-prompt", default=None)
    p.add_argument("--video-size", type=int, nargs="+", default=[720, 1280], help="H W in pixels (one value = square)")
    p.add_argument("--video-length", type=int, default=129, help="frames, 4n+1")
    p.add_argument("--infer-steps", type=int, default=50)
    p.add_argument("--text-len", type=int, default=256, help="LLM text tokens kept (released: 256)")
    p.add_argument("--seed", type=int, default=None, help="video i uses seed+i (random if omitted)")
    p.add_argument("--flow-shift", type=float, default=7.0)
    p.add_argument("--flow-reverse", action="store_true",
                   help="accepted for compatibility; sigma=1 is noise always (the released weights' convention)")
    p.add_argument("--embedded-cfg-scale", type=float, default=6.0)
    p.add_argument("--cfg-scale", type=float, default=1.0)
    p.add_argument("--precision", default=None,
                   help="DiT dtype (default: bf16 on CUDA and on CPUs with native bf16, else fp32)")
    p.add_argument("--vae-precision", default=None,
                   help="VAE dtype (default: fp16 on CUDA, the DiT's on CPU)")
    p.add_argument("--text-encoder-precision", default=None,
                   help="text encoders' dtype (default: fp16 on CUDA, the DiT's on CPU)")
    p.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch-size", type=int, default=1, help="videos per forward pass")
    p.add_argument("--num-videos", type=int, default=1, help="videos per prompt")
    p.add_argument("--save-path", default="./results")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--attn-backend", default="auto", choices=ATTN_BACKENDS)
    # speed and memory (hyvideo.accel: sequence parallel, step cache, FP8, offload)
    p.add_argument("--ulysses-degree", type=int, default=1,
                   help="Ulysses sequence-parallel degree; launch with torchrun --nproc_per_node N (world size divisible by N)")
    p.add_argument("--cache-threshold", type=float, default=0.0,
                   help="first-block step cache threshold (0 = off; 0.15 = hyvideo.accel.step_cache default, ~2.7x "
                        "fewer DiT evaluations on a trained model)")
    p.add_argument("--use-fp8", action="store_true",
                   help="FP8 e4m3 block weights (the released *_fp8.pt + *_fp8_map.pt if present, else quantised)")
    p.add_argument("--use-cpu-offload", action="store_true",
                   help="released meaning: DiT blocks streamed from CPU memory, text encoders and VAE moved to "
                        "the GPU only while they run (24 GB cards with --use-fp8)")
    p.add_argument("--model-cpu-offload", action="store_true",
                   help="each whole model moved to the GPU only while it runs (the DiT must fit at once)")
    p.add_argument("--sequential-offload", action="store_true",
                   help="stream only the DiT's blocks from CPU memory; the other models stay on the device")
    return p


def offload_mode(args) -> str:
    """``hyvideo.checkpoint.loader.OFFLOAD_MODES`` key of the offload flags."""
    flags = [f for f in ("use_cpu_offload", "model_cpu_offload", "sequential_offload") if getattr(args, f)]
    if len(flags) > 1:
        raise ValueError(f"choose one offload flag, got {', '.join('--' + f.replace('_', '-') for f in flags)}")
    return {"use_cpu_offload": "cpu", "model_cpu_offload": "model", "sequential_offload": "blocks"}.get(
        flags[0] if flags else "", "none")


def resolve_precisions(args, device: str) -> str:
    """Fill the precision flags left at their default; returns a one-line reason for the log."""
    if device.startswith("cuda"):
        args.precision = args.precision or "bf16"
        args.vae_precision = args.vae_precision or "fp16"
        args.text_encoder_precision = args.text_encoder_precision or "fp16"
        return "CUDA"
    from hyvideo.accel.capability import cpu_info  # noqa: PLC0415

    info = cpu_info()
    reason = info.describe()
    if args.precision is None:
        args.precision = "bf16" if info.native_bf16 else "fp32"
        reason += f": default precision {args.precision}" + ("" if info.native_bf16 else
                                                              " (bf16 is emulated here, ~4x slower than fp32)")
    args.vae_precision = args.vae_precision or args.precision
    args.text_encoder_precision = args.text_encoder_precision or args.precision
    return reason


def request_of(args):
    """The :class:`hyvideo.sampling.SampleRequest` of the parsed flags (all flags also go into the sidecar)."""
    from hyvideo.sampling import SampleRequest  # noqa: PLC0415

    return SampleRequest(prompt=args.prompt or "", height=args.video_size[0], width=args.video_size[1],
                         video_length=args.video_length, infer_steps=args.infer_steps, seed=args.seed,
                         flow_shift=args.flow_shift, embedded_guidance_scale=args.embedded_cfg_scale,
                         cfg_scale=args.cfg_scale, negative_prompt=args.neg_prompt, num_videos=args.num_videos,
                         batch_size=args.batch_size, fps=args.fps, vae_tiling=args.vae_tiling, extra=vars(args))


def check_args(args) -> None:
    """Validate everything cheap to check; raises ValueError with a message naming the bad value."""
    from hyvideo.sampling import check_request  # noqa: PLC0415
    from hyvideo.utils.outputs import prepare_output_dir  # noqa: PLC0415

    if len(args.video_size) not in (1, 2):
        raise ValueError(f"--video-size takes H W (or one value for square), got {args.video_size}")
    if len(args.video_size) == 1:
        args.video_size = args.video_size * 2
    for flag in ("precision", "vae_precision", "text_encoder_precision"):
        value = getattr(args, flag)
        if value is not None and value not in PRECISIONS:
            raise ValueError(f"unknown --{flag.replace('_', '-')} {value!r}; allowed: {list(PRECISIONS)}")
    check_request(request_of(args))
    if not args.cache_threshold >= 0:
        raise ValueError(f"--cache-threshold must be >= 0, got {args.cache_threshold}")
    if args.text_len < 1:
        raise ValueError(f"--text-len must be >= 1, got {args.text_len}")
    if args.ulysses_degree < 1:
        raise ValueError(f"--ulysses-degree must be >= 1, got {args.ulysses_degree}")
    offload_mode(args)
    prepare_output_dir(args.save_path)


def check_model_fits(args, device: str) -> None:
    """Refuse a request whose memory estimate exceeds what the device has (before loading any model)."""
    import torch  # noqa: PLC0415

    from hyvideo.checkpoint.io import dit_config_for, resolve_model_paths  # noqa: PLC0415
    from hyvideo.memory import GIB, advice, available_bytes, estimate_sampling  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    paths = resolve_model_paths(args.model_base, args.dit_weight)
    dit_cfg = dit_config_for(paths.dit, args.model)
    if args.ulysses_degree > 1:
        from hyvideo.parallel.sequence_parallel import check_sp_degree  # noqa: PLC0415
        from hyvideo.pipeline import latent_shape  # noqa: PLC0415

        check_sp_degree(dit_cfg, latent_shape(1, *args.video_size, args.video_length), args.ulysses_degree)
    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config(dit_cfg)
        vae = AutoencoderKLCausal3D.from_config(paths.vae / "config.json") if (paths.vae / "config.json").is_file() \
            else None
    dt = {k: getattr(torch, v) for k, v in PRECISIONS.items()}
    text_bytes = sum(f.stat().st_size for d in (paths.text_encoder, paths.text_encoder_2) for f in Path(d).rglob("*")
                     if f.suffix in (".safetensors", ".bin", ".pt"))
    est = estimate_sampling(
        dit_params=sum(p.numel() for p in dit.parameters()), dit_hidden=dit.hidden_size,
        dit_dtype=dt[args.precision], fp8=args.use_fp8,
        vae_params=sum(p.numel() for p in vae.parameters()) if vae else 0,
        vae_width=vae.config["block_out_channels"][0] if vae else 128, vae_dtype=dt[args.vae_precision],
        text_bytes=text_bytes, batch=args.batch_size, cfg=args.cfg_scale > 1, height=args.video_size[0],
        width=args.video_size[1], frames=args.video_length, tiling=args.vae_tiling, offload=offload_mode(args))
    free = available_bytes(device)
    if free is not None and est.total > free:
        raise ValueError(
            f"this request needs about {est.total / GIB:.1f} GiB on {device} (weights {est.weights / GIB:.1f}, DiT "
            f"activations {est.dit_activations / GIB:.1f}, VAE decode {est.vae_activations / GIB:.1f}, frames "
            f"{est.video / GIB:.1f}) but {free / GIB:.1f} GiB are free; try {advice(est, args.vae_tiling, offload_mode(args), args.use_fp8)}")


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


def given_flags(argv) -> set[str]:
    """argparse dests of the flags present on the command line (defaults suppressed)."""
    p = build_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return set(vars(p.parse_known_args(argv)[0]))


def resolve_model_base(args, argv) -> list[str]:
    """Fill ``--model-base`` (./ckpts if it exists, else the shipped nano tree) and, for a tree with a nano model
    card, the flags the user left out; returns the warnings to print (unknown words, untrained size).

    Raises:
        ValueError: a malformed nano.json.
    """
    from hyvideo import nano  # noqa: PLC0415

    if args.model_base is None:
        base, is_nano = nano.default_model_base()
        args.model_base = str(base)
        if is_nano:
            print(f"no ./ckpts folder: sampling the hyvideo-nano model shipped in the package ({base})")
    card = nano.read_card(args.model_base) if Path(args.model_base).is_dir() else None
    if card is None:
        return []
    changed = nano.apply_card_defaults(args, card, given_flags(argv))
    if changed:
        print(f"nano model card defaults: {', '.join(changed)}")
    if len(args.video_size) == 1:
        args.video_size = args.video_size * 2
    warnings = [nano.prompt_warning(args.prompt or "", card),
                nano.size_warning(args.video_size[0], args.video_size[1], args.video_length, card)]
    return [w for w in warnings if w]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        warnings = resolve_model_base(args, argv)
        check_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    import torch  # noqa: PLC0415

    from hyvideo import accel  # noqa: PLC0415
    from hyvideo.checkpoint.io import WeightLoadError  # noqa: PLC0415
    from hyvideo.checkpoint.loader import load_pipeline  # noqa: PLC0415
    from hyvideo.diffusion.sampler import NonFiniteError  # noqa: PLC0415
    from hyvideo.sampling import run_request  # noqa: PLC0415

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    reason = resolve_precisions(args, device)
    print(f"precision on {reason}: DiT {args.precision}, VAE {args.vae_precision}, text {args.text_encoder_precision}")
    try:
        check_model_fits(args, device)
        env = setup_distributed(args, device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if env is not None:
        device = str(env.device)
    dt = {k: getattr(torch, v) for k, v in PRECISIONS.items()}
    try:
        pipe = load_pipeline(args.model_base, dit_weight=args.dit_weight, model=args.model, load_key=args.load_key,
                             dit_dtype=dt[args.precision], vae_dtype=dt[args.vae_precision],
                             text_dtype=dt[args.text_encoder_precision], device=device, fp8=args.use_fp8,
                             offload=offload_mode(args), text_len=args.text_len)
    except (FileNotFoundError, WeightLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    plan = accel.apply(pipe.dit, pipe.vae, accel.AccelOptions(
        device=device, attn_backend=args.attn_backend, cache_threshold=args.cache_threshold,
        sequential_offload=offload_mode(args) in ("cpu", "blocks"),
        sp_group=env.sp_group if env is not None else None))
    pipe.step_cache = plan.step_cache
    seeds = request_of(args).seeds(shared_seed(args, env))
    if env is not None:
        seeds = seeds[env.dp_rank::env.dp_world]
    try:  # every rank of an SP group holds the same video; its first rank writes it
        run_request(pipe, request_of(args), args.save_path, seeds=seeds, write=env is None or env.sp_rank == 0,
                    sidecar_extra={"device": device, "accel": str(plan)})
    except (NonFiniteError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if env is not None:
        from hyvideo.parallel.mesh import destroy  # noqa: PLC0415

        destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
