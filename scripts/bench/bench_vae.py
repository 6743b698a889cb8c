"""Benchmark VAE decode: our ``AutoencoderKLCausal3D`` vs diffusers' ``AutoencoderKLHunyuanVideo``, same weights.

Released VAE config (``hyvideo/configs/vae_884_16c_hy.json``), random weights; checks the decoded videos agree, then
times both interleaved (warm-up, repeats, median) and prints time, ratio, peak memory (RSS high-water delta
on CPU, read from a child process with a fixed mmap threshold as in bench_dit.py; ``max_memory_allocated`` on
GPU) and FLOP/s against the measured matmul peak.

    python scripts/bench/bench_vae.py                                  # [1, 16, 5, 32, 32] -> 17 x 256 x 256, bf16
    python scripts/bench/bench_vae.py --latent 1 16 9 64 64 --tiling   # released tiles on both sides
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_dit import (  # noqa: E402
    DTYPES, is_memory_child, machine, matmul_peak, measure, peaks_in_child, print_table, rel_err, report_peaks)

ROOT = Path(__file__).resolve().parents[2]


def build_pair(config: Path, dtype: torch.dtype, device: torch.device):
    """(ours, diffusers) with identical random weights (separate copies), in ``dtype`` on ``device``."""
    from diffusers import AutoencoderKLHunyuanVideo  # noqa: PLC0415

    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    torch.manual_seed(0)
    ours = AutoencoderKLCausal3D.from_config(config).eval()
    sys.path.insert(0, str(ROOT / "tests" / "vae"))
    from vae_twin import diffusers_kwargs  # noqa: PLC0415

    ref = AutoencoderKLHunyuanVideo(**diffusers_kwargs(ours.config)).eval()
    ref.load_state_dict(copy.deepcopy(ours.state_dict()), strict=True)
    return ours.to(device, dtype), ref.to(device, dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--config", default=str(ROOT / "hyvideo" / "configs" / "vae_884_16c_hy.json"))
    ap.add_argument("--latent", type=int, nargs=5, default=[1, 16, 5, 32, 32], metavar=("B", "C", "T", "H", "W"))
    ap.add_argument("--tiling", action="store_true", help="released tiling on both (default: as each ships)")
    ap.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the plain model (no hyvideo.accel.apply)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs after the warm-up (slow on CPU)")
    args = ap.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    ours, ref = build_pair(Path(args.config), dtype, device)
    from hyvideo import accel  # noqa: PLC0415

    fast = copy.deepcopy(ours)
    plan = accel.apply(vae=fast, options=accel.AccelOptions(device=device))  # as sample_video.py does
    if args.tiling:
        ours.enable_tiling()
        fast.enable_tiling()
        ref.enable_tiling()
    else:
        # diffusers decodes frame-wise (temporal tiles of 4 latent frames, blended) by default even with
        # tiling off; that changes the result and adds a tile, so switch it off to compare one full pass.
        ref.use_framewise_decoding = False
    z = torch.randn(args.latent, generator=torch.Generator().manual_seed(0)).to(device, dtype)

    def run_ours():  # the plain model: the math as written in hyvideo/vae
        return ours.decode(z).sample

    def run_ref():
        return ref.decode(z, return_dict=False)[0]

    def run_fast():  # with hyvideo.accel's paths (fast convs; on CPU the frame-chunked walk and kernels)
        return fast.decode(z).sample

    plain = "hyvideo plain model"
    fns = {plain: run_ours, "diffusers": run_ref, "hyvideo accel (default)": run_fast}
    if not args.plain:
        del fns[plain]
    if is_memory_child():  # one cold call each: the peaks (first-call weight folds included, a few MiB)
        report_peaks(measure(fns, device, 0, 1))
        return
    peak = matmul_peak(device, dtype)
    res = measure(fns, device, max(args.warmup, 1), args.repeats, count_flops_of="diffusers")
    flops = res["diffusers"].pop("flops")
    if device.type == "cpu":  # times above with glibc's defaults; RSS peaks need the fixed mmap threshold
        for name, p in peaks_in_child().items():
            res[name]["peak"] = p
    rows = [{"name": k, **r, "flops": flops, "err": rel_err(r["out"], res["diffusers"]["out"])}
            for k, r in res.items()]
    out_shape = tuple(res["diffusers"]["out"].shape)
    print(f"hyvideo accel: {plan}")
    print(f"device: {machine(device)}; dtype {args.dtype}; latent {args.latent} -> video {out_shape}; tiling "
          f"{'on' if args.tiling else 'default'}; {flops / 1e9:.1f} GFLOP per decode (diffusers' count); measured {args.dtype} "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s; median of {args.repeats}")
    print("rel err = max|ours - diffusers| / max|diffusers| (same dtype); times with glibc's default malloc, peak "
          "RSS from a child run (one call each) with the mmap threshold fixed at 128 KiB")
    print_table(rows, peak)


if __name__ == "__main__":
    main()
