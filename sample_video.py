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

Bad arguments (length not 4n+1, size not a multiple of 16, empty prompt, unknown precision, missing or
mismatched weights) exit with status 2 and a message before any heavy work.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-base", default="ckpts", help="official ckpts/ tree or diffusers folder")
    p.add_argument("--dit-weight", default=None, help="DiT weight file/folder (default: the tree's)")
    p.add_argument("--model", default="HYVideo-T/2-cfgdistill", help="DiT preset when no config.json is beside the weights")
    p.add_argument("--load-key", default="module", choices=["module", "ema"])
    p.add_argument("--prompt", default=None)
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
    p.add_argument("--precision", default="bf16", help="DiT dtype: fp32, fp16, bf16")
    p.add_argument("--vae-precision", default="fp16")
    p.add_argument("--text-encoder-precision", default="fp16")
    p.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--use-cpu-offload", action="store_true")
    p.add_argument("--batch-size", type=int, default=1, help="videos per forward pass")
    p.add_argument("--num-videos", type=int, default=1, help="videos per prompt")
    p.add_argument("--save-path", default="./results")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    # hyvideo.ops.attention.BACKENDS, spelled out so that parsing does not import torch (a test keeps them equal)
    p.add_argument("--attn-backend", default="auto", choices=["auto", "sdpa", "flash", "gemm", "naive"])
    # speed and memory (hyvideo.parallel.sequence_parallel, hyvideo.cache, hyvideo.quant, hyvideo.offload)
    p.add_argument("--ulysses-degree", type=int, default=1,
                   help="Ulysses sequence-parallel degree; launch with torchrun --nproc_per_node N (world size divisible by N)")
    p.add_argument("--cache-threshold", type=float, default=0.0,
                   help="first-block step cache threshold (0 = off; 0.15 = hyvideo.cache default, ~2.7x fewer DiT "
                        "evaluations on a trained model)")
    p.add_argument("--use-fp8", action="store_true",
                   help="FP8 e4m3 block weights (the released *_fp8.pt + *_fp8_map.pt if present, else quantised)")
    p.add_argument("--sequential-offload", action="store_true",
                   help="stream DiT blocks from CPU to the GPU one at a time (24 GB cards)")
    return p


def check_args(args) -> None:
    """Validate everything cheap to check; raises ValueError with a message naming the bad value."""
    from hyvideo.pipeline import validate_generation_args  # noqa: PLC0415

    if len(args.video_size) not in (1, 2):
        raise ValueError(f"--video-size takes H W (or one value for square), got {args.video_size}")
    if len(args.video_size) == 1:
        args.video_size = args.video_size * 2
    for flag in ("precision", "vae_precision", "text_encoder_precision"):
        if getattr(args, flag) not in PRECISIONS:
            raise ValueError(f"unknown --{flag.replace('_', '-')} {getattr(args, flag)!r}; allowed: {list(PRECISIONS)}")
    if args.infer_steps < 1 or args.batch_size < 1 or args.num_videos < 1:
        raise ValueError("--infer-steps, --batch-size and --num-videos must be >= 1")
    validate_generation_args([args.prompt or ""], args.video_size[0], args.video_size[1], args.video_length)
    if args.cache_threshold < 0:
        raise ValueError(f"--cache-threshold must be >= 0, got {args.cache_threshold}")
    if args.ulysses_degree > 1:
        from hyvideo.checkpoint.io import dit_config_for, resolve_model_paths  # noqa: PLC0415
        from hyvideo.parallel.sequence_parallel import check_sp_degree  # noqa: PLC0415
        from hyvideo.pipeline import latent_shape  # noqa: PLC0415

        try:
            cfg = dit_config_for(resolve_model_paths(args.model_base, args.dit_weight).dit, args.model)
        except FileNotFoundError:
            return  # reported when the weights are loaded
        check_sp_degree(cfg, latent_shape(1, args.video_size[0], args.video_size[1], args.video_length),
                        args.ulysses_degree)


def load_pipeline(args, device):
    import torch  # noqa: PLC0415

    from hyvideo.checkpoint.io import load_dit, load_vae, resolve_model_paths  # noqa: PLC0415
    from hyvideo.pipeline import HunyuanVideoPipeline  # noqa: PLC0415
    from hyvideo.text.encoders import load_clip_text_encoder, load_llm_text_encoder  # noqa: PLC0415

    dt = {k: getattr(torch, v) for k, v in PRECISIONS.items()}
    paths = resolve_model_paths(args.model_base, args.dit_weight)
    home = "cpu" if args.use_cpu_offload else device
    print(f"loading {paths.layout} model tree from {args.model_base}: DiT {paths.dit}")
    dit_home = "cpu" if args.sequential_offload else home
    dit = load_dit_fast(args, paths.dit, dt[args.precision], dit_home)
    if torch.device(device).type == "cpu" and dt[args.precision] == torch.bfloat16 and not args.use_fp8:
        n = dit.enable_cpu_weight_packing()
        print(f"CPU bf16: {n} DiT linears keep oneDNN-packed weight copies (faster GEMMs, one more copy of them)")
    if args.sequential_offload:
        from hyvideo.offload import enable_sequential_offload  # noqa: PLC0415

        enable_sequential_offload(dit, device)
    vae = load_vae(paths.vae, dtype=dt[args.vae_precision], device=home)
    te_dtype = dt[args.text_encoder_precision]
    llm = load_llm_text_encoder(paths.text_encoder, dtype=te_dtype, device=home)
    clip = load_clip_text_encoder(paths.text_encoder_2, dtype=te_dtype, device=home)
    return HunyuanVideoPipeline(dit, vae, llm, clip, device=torch.device(device), cpu_offload=args.use_cpu_offload,
                                cache_threshold=args.cache_threshold)


def load_dit_fast(args, path, dtype, device):
    """The DiT, with FP8 block weights for ``--use-fp8`` (released ``*_fp8.pt`` pair when present)."""
    from hyvideo.checkpoint.io import dit_config_for, load_dit  # noqa: PLC0415
    from hyvideo.quant.fp8 import convert_to_fp8, load_fp8_dit, released_fp8_path  # noqa: PLC0415

    fp8_file = released_fp8_path(path) if args.use_fp8 else None
    if fp8_file is not None:
        print(f"loading FP8 weights {fp8_file}")
        return load_fp8_dit(fp8_file, config=dit_config_for(path, args.model), dtype=dtype, device=device,
                            attn_backend=args.attn_backend)
    dit = load_dit(path, model=args.model, load_key=args.load_key, dtype=dtype, device=device,
                   attn_backend=args.attn_backend)
    if args.use_fp8:
        convert_to_fp8(dit)
    return dit


def output_name(seed: int, prompt: str) -> str:
    stamp = time.strftime("%Y-%m-%d-%H:%M:%S")
    return f"{stamp}_seed{seed}_{prompt[:100].replace('/', '')}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch  # noqa: PLC0415

    from hyvideo.checkpoint.io import WeightLoadError  # noqa: PLC0415
    from hyvideo.utils.video_io import save_video  # noqa: PLC0415

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    env = None
    if args.ulysses_degree > 1:  # torchrun: SP groups of ulysses_degree ranks; groups split the seeds
        from hyvideo.parallel.mesh import init_distributed  # noqa: PLC0415

        try:
            env = init_distributed(sp_degree=args.ulysses_degree, backend="gloo" if device == "cpu" else "")
        except ValueError as e:
            print(f"error: {e} (launch with torchrun --nproc_per_node {args.ulysses_degree})", file=sys.stderr)
            return 2
        device = str(env.device)
    try:
        pipe = load_pipeline(args, device)
    except (FileNotFoundError, WeightLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if env is not None:
        from hyvideo.parallel.sequence_parallel import enable_sequence_parallel  # noqa: PLC0415

        enable_sequence_parallel(pipe.dit, env.sp_group)
    height, width = args.video_size
    base_seed = args.seed if args.seed is not None else random.randint(0, 1_000_000)
    seeds = [base_seed + i for i in range(args.num_videos)]
    if env is not None:
        seeds = seeds[env.dp_rank::env.dp_world]
    save_dir = Path(args.save_path)
    outputs = []
    for start in range(0, len(seeds), args.batch_size):
        batch_seeds = seeds[start: start + args.batch_size]
        t0 = time.perf_counter()
        videos = pipe([args.prompt] * len(batch_seeds), height=height, width=width, video_length=args.video_length,
                      seeds=batch_seeds, infer_steps=args.infer_steps, flow_shift=args.flow_shift,
                      embedded_guidance_scale=args.embedded_cfg_scale, cfg_scale=args.cfg_scale,
                      negative_prompt=args.neg_prompt, vae_tiling=args.vae_tiling)
        elapsed = time.perf_counter() - t0
        if env is not None and env.sp_rank != 0:
            continue  # every rank of an SP group holds the same video; its first rank writes it
        for seed, video in zip(batch_seeds, videos):
            name = output_name(seed, args.prompt)
            path = save_video(video, save_dir / f"{name}.mp4", fps=args.fps)
            sidecar = {"args": vars(args), "seed": seed, "device": device, "video": str(path),
                       "frames": args.video_length, "height": height, "width": width, "fps": args.fps,
                       "seconds": round(elapsed, 3)}
            (save_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=1))
            outputs.append(path)
            print(f"saved {path} ({args.video_length} frames {height}x{width} @ {args.fps} fps, seed {seed}, "
                  f"{elapsed:.1f} s)")
    if env is not None:
        from hyvideo.parallel.mesh import destroy  # noqa: PLC0415

        destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
