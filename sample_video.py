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
    p.add_argument("--attn-backend", default="auto", choices=["auto", "sdpa", "flash", "naive"])
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


def load_pipeline(args, device):
    import torch  # noqa: PLC0415

    from hyvideo.checkpoint.io import load_dit, load_vae, resolve_model_paths  # noqa: PLC0415
    from hyvideo.pipeline import HunyuanVideoPipeline  # noqa: PLC0415
    from hyvideo.text.encoders import load_clip_text_encoder, load_llm_text_encoder  # noqa: PLC0415

    dt = {k: getattr(torch, v) for k, v in PRECISIONS.items()}
    paths = resolve_model_paths(args.model_base, args.dit_weight)
    home = "cpu" if args.use_cpu_offload else device
    print(f"loading {paths.layout} model tree from {args.model_base}: DiT {paths.dit}")
    dit = load_dit(paths.dit, model=args.model, load_key=args.load_key, dtype=dt[args.precision], device=home,
                   attn_backend=args.attn_backend)
    vae = load_vae(paths.vae, dtype=dt[args.vae_precision], device=home)
    te_dtype = dt[args.text_encoder_precision]
    llm = load_llm_text_encoder(paths.text_encoder, dtype=te_dtype, device=home)
    clip = load_clip_text_encoder(paths.text_encoder_2, dtype=te_dtype, device=home)
    return HunyuanVideoPipeline(dit, vae, llm, clip, device=torch.device(device), cpu_offload=args.use_cpu_offload)


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
    try:
        pipe = load_pipeline(args, device)
    except (FileNotFoundError, WeightLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    height, width = args.video_size
    base_seed = args.seed if args.seed is not None else random.randint(0, 1_000_000)
    seeds = [base_seed + i for i in range(args.num_videos)]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
