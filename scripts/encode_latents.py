"""Pre-encode training clips to a latent cache (VAE latents + text states) for ``train_dit.py``.

    python scripts/encode_latents.py --config configs/train/dit_stage3_joint_256p.yaml --out cache/joint_256p
    # then: train_dit.py --config ... --set data.latent_cache=cache/joint_256p

Uses the run config's data section (manifest, resolutions, num_frames, fps) and model section (VAE, text
encoders). Each sample of the dataset (every bucket of every tier) becomes one entry; see
``hyvideo/data/latent_cache.py`` for the layout. Samples of one bucket are encoded ``--batch-size`` at a time
(the VAE and the text encoders work per sample, so entries equal those of batch size 1 up to float rounding;
batches amortise the per-call cost of small models, ~3x on a CPU). Unreadable clips are logged and skipped
(count printed).

``--latents-from CACHE`` re-encodes only the text of an existing cache with this config's text encoders and
copies its latents, buckets and captions (no VAE runs): e.g. ``--set model.text_conditioning=clip`` makes the
CLIP-only text cache of the paper's text-encoder ablation from the released-conditioning cache
(``scripts/ablate_nano.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hyvideo.data.latent_cache import LatentCacheDataset, write_entry, write_index  # noqa: E402
from hyvideo.data.manifest import read_manifest  # noqa: E402
from hyvideo.data.video_dataset import VideoClipDataset  # noqa: E402
from hyvideo.training.builders import check_resolutions  # noqa: E402
from hyvideo.training.conditioning import TextConditioner, build_frozen_vae, encode_latents  # noqa: E402
from hyvideo.training.config import DiTTrainConfig, load_config, to_dict  # noqa: E402

log = logging.getLogger("encode_latents")


def main(argv=None) -> Path:
    """Write the cache; returns its directory."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="DiT run config (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--out", required=True, help="cache directory to write")
    p.add_argument("--batch-size", type=int, default=8, help="samples of one bucket encoded together")
    p.add_argument("--latents-from", default=None, metavar="CACHE",
                   help="copy this cache's latents and encode only the text (no VAE; see above)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.latents_from is not None and not (Path(args.latents_from) / "index.jsonl").is_file():
        p.error(f"--latents-from {args.latents_from} is not a finished latent cache (no index.jsonl)")
    if args.latents_from is not None and Path(args.latents_from).resolve() == Path(args.out).resolve():
        p.error(f"--latents-from and --out are the same folder ({args.out}); write the new cache elsewhere")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(DiTTrainConfig, args.config, args.set)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.latents_from is not None:
        return retext(cfg, LatentCacheDataset(args.latents_from), out, args.batch_size, device)
    dataset = VideoClipDataset(read_manifest(cfg.data.manifest), tiers=check_resolutions(cfg.data.resolutions),
                               num_frames=cfg.data.num_frames, fps=cfg.data.fps, seed=cfg.run.seed,
                               use_images_from_videos=cfg.data.use_images_from_videos)
    vae = build_frozen_vae(cfg.model, device, cfg.run.seed)
    text = TextConditioner(cfg.model, device)
    lines: list[dict | None] = [None] * len(dataset)
    by_bucket: dict[tuple, list[int]] = {}
    for i, key in enumerate(dataset.bucket_keys()):
        by_bucket.setdefault(key, []).append(i)
    batches = [ids[j: j + args.batch_size] for ids in by_bucket.values() for j in range(0, len(ids), args.batch_size)]
    with tqdm(total=len(dataset), desc="encode") as bar:
        for ids in batches:
            items = [dataset[i] for i in ids]
            latents = encode_latents(vae, torch.stack([it["pixels"] for it in items]).to(device)).cpu()
            t = text([it["caption"] for it in items], items[0]["bucket"][-1])
            for b, (i, item) in enumerate(zip(ids, items)):
                lines[i] = write_entry(out, i, latents[b], {k: v[b].cpu() for k, v in t.items()},
                                       bucket=item["bucket"], caption=item["caption"])
            bar.update(len(ids))
    null = {kind: {k: v[0].cpu() for k, v in text([""], frames).items()}
            for kind, frames in (("video", max(cfg.data.num_frames, 5)), ("image", 1))}
    write_index(out, lines, null,
                {"model": to_dict(cfg.model), "data": to_dict(cfg.data), "skipped": dict(dataset.skipped)})
    log.info("wrote %d entries to %s (skipped: %s)", len(lines), out, dict(dataset.skipped))
    return out


def retext(cfg: DiTTrainConfig, src: LatentCacheDataset, out: Path, batch_size: int, device: torch.device) -> Path:
    """A cache with ``src``'s latents, buckets and captions and the text states of ``cfg.model``'s encoders
    (``meta.json``: this model section, ``src``'s data section); returns ``out``."""
    text = TextConditioner(cfg.model, device)
    by_bucket: dict[tuple, list[int]] = {}
    for i, key in enumerate(src.bucket_keys()):
        by_bucket.setdefault(key, []).append(i)
    batches = [ids[j: j + batch_size] for ids in by_bucket.values() for j in range(0, len(ids), batch_size)]
    lines: list[dict | None] = [None] * len(src)
    with tqdm(total=len(src), desc="encode text") as bar:
        for ids in batches:
            t = text([src.lines[i]["caption"] for i in ids], src.lines[ids[0]]["bucket"][-1])
            for b, i in enumerate(ids):
                lines[i] = write_entry(out, i, src[i]["latent"], {k: v[b].cpu() for k, v in t.items()},
                                       bucket=tuple(src.lines[i]["bucket"]), caption=src.lines[i]["caption"])
            bar.update(len(ids))
    num_frames = src.meta.get("data", {}).get("num_frames", cfg.data.num_frames)
    null = {kind: {k: v[0].cpu() for k, v in text([""], frames).items()}
            for kind, frames in (("video", max(num_frames, 5)), ("image", 1))}
    write_index(out, lines, null, {**src.meta, "model": to_dict(cfg.model), "text_from": str(src.dir),
                                   "latents_from": str(src.dir)})
    log.info("wrote %d entries to %s (latents of %s, text of %s)", len(lines), out, src.dir, cfg.model.text_encoder)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
