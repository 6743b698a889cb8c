"""Peak CPU memory (RSS) of VAE decode, tiled vs untiled, as frames and frame size grow.

Each (mode, frames, size) case runs in a fresh subprocess (this script re-invoked with ``--case``), which
builds the VAE, makes a random latent ``[1, 16, T_z, H/8, W/8]``, resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``, Linux) and decodes. The reported number is the peak RSS *during decode* minus the
RSS just before it, i.e. the activation memory of decode (model weights and the latent excluded, the decoded
video ``[1, 3, T, H, W]`` float32 included). Tiles are the config's ``sample_size`` px / ``sample_tsize``
frames (overlap 0.25) unless ``--tile-px`` / ``--tile-frames`` say otherwise: the released config tiles at 256
px / 64 frames; the tiny config (default here, so the run takes minutes on a CPU) at 32 px / 16 frames.

Usage::

    python scripts/bench/vae_tiling_memory.py [--config hyvideo/configs/vae_tiny.json] [--cases 17x256x256,65x720x1280,...]
        [--tile-px N] [--tile-frames N] [--max-untiled-pixels 4e7] [--threads 2]

Untiled cases above ``--max-untiled-pixels`` (T * H * W) are skipped so the machine is not pushed into OOM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: E402

DEFAULT_CASES = "9x64x64,17x128x128,33x128x128,65x128x128,33x256x256,65x256x256,33x256x512"


class PeakRSS:
    """Measure the peak resident set size of this process over a ``with`` block (Linux), in MiB.

    Entering resets the kernel's high-water mark (``VmHWM``) by writing ``5`` to ``/proc/self/clear_refs`` and
    records the current RSS; after exit, ``peak_mib`` is the block's peak RSS and ``delta_mib`` the peak minus
    the RSS at entry. Without ``/proc`` (not Linux) it falls back to ``ru_maxrss`` (process lifetime peak).
    """

    def __enter__(self) -> PeakRSS:
        self._procfs = os.path.exists("/proc/self/clear_refs")
        if self._procfs:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        self.start_mib = self._status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mib = self._status("VmHWM")
        self.delta_mib = self.peak_mib - self.start_mib

    def _status(self, field: str) -> float:
        if self._procfs:
            for line in open("/proc/self/status"):
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(config: str, mode: str, frames: int, height: int, width: int, threads: int,
             tile_px: int | None = None, tile_frames: int | None = None, walk: str = "accel") -> dict:
    """Decode one random latent in this process; return timing and peak-RSS numbers."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = AutoencoderKLCausal3D.from_config(config).eval().requires_grad_(False)
    vae.tile_sample_min_size = tile_px or vae.tile_sample_min_size
    vae.tile_sample_min_tsize = tile_frames or vae.tile_sample_min_tsize
    vae.enable_tiling(mode == "tiled")
    if walk == "accel":  # what sample_video.py runs (hyvideo.accel.apply)
        from hyvideo import accel  # noqa: PLC0415

        accel.apply(vae=vae, options=accel.AccelOptions(device="cpu"))
    z = torch.randn(1, vae.latent_channels, (frames - 1) // 4 + 1, height // 8, width // 8)
    with torch.no_grad(), PeakRSS() as mem:
        t0 = time.perf_counter()
        video = vae.decode(z).sample
        seconds = time.perf_counter() - t0
    return {"mode": mode, "frames": frames, "height": height, "width": width, "out_shape": list(video.shape),
            "seconds": seconds, "peak_delta_mib": mem.delta_mib,
            "output_mib": video.numel() * video.element_size() / 2**20}


def main() -> None:
    """Run every case in a subprocess and print one table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "hyvideo" / "configs" / "vae_tiny.json"))
    p.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated TxHxW pixel sizes (T = 1 + 4k)")
    p.add_argument("--max-untiled-pixels", type=float, default=4e7, help="skip untiled T*H*W above this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tile-px", type=int, help="spatial tile side in px (default: the config's sample_size)")
    p.add_argument("--tile-frames", type=int, help="temporal tile, frames (default: config's sample_tsize)")
    p.add_argument("--walk", choices=["accel", "plain"], default="accel",
                   help="accel: the paths sample_video.py runs (hyvideo.accel.apply); plain: the model as written")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: "mode:TxHxW", run one case and print JSON
    args = p.parse_args()
    if args.case:
        mode, size = args.case.split(":")
        t, h, w = (int(v) for v in size.split("x"))
        print(json.dumps(run_case(args.config, mode, t, h, w, args.threads, args.tile_px, args.tile_frames,
                                         args.walk)))
        return

    cfg = json.loads(Path(args.config).read_text())
    tile_px, tile_frames = args.tile_px or cfg["sample_size"], args.tile_frames or cfg["sample_tsize"]
    print(f"config {args.config}; tiles {tile_px} px / {tile_frames} frames, overlap 0.25; float32; "
          f"threads {args.threads}; decoder walk {args.walk}; peak = peak RSS during decode minus RSS before it")
    print(f"{'frames':>6} {'H x W':>11} {'mode':>8} {'peak RSS delta':>15} {'output':>10} {'time':>8}")
    for size in args.cases.split(","):
        t, h, w = (int(v) for v in size.split("x"))
        for mode in ("tiled", "untiled"):
            cells = f"{t:>6} {f'{h}x{w}':>11} {mode:>8}"
            if mode == "untiled" and t * h * w > args.max_untiled_pixels:
                print(f"{cells} {'skipped (> --max-untiled-pixels)':>36}", flush=True)
                continue
            cmd = [sys.executable, __file__, "--config", args.config, "--threads", str(args.threads),
                   "--tile-px", str(tile_px), "--tile-frames", str(tile_frames), "--walk", args.walk,
                   "--case", f"{mode}:{size}"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                err = res.stderr.strip().splitlines()[-1:]
                print(f"{cells} failed (rc {res.returncode}): {err}", flush=True)
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            mib, out, sec = r["peak_delta_mib"], r["output_mib"], r["seconds"]
            print(f"{cells} {mib:>11.0f} MiB {out:>6.0f} MiB {sec:>7.1f}s", flush=True)


if __name__ == "__main__":
    main()
