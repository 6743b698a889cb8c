"""Curate raw videos into training manifests (shot split, scores, dedup, concept balance, five tiers).

    python scripts/curate.py --input /data/raw --output /data/curated                 # 2 local workers
    python scripts/curate.py --input videos.txt --output out --workers 8 --set tiers.4.min_clarity=300
    python scripts/curate.py --input /shared/raw --output /shared/curated --ray-address auto

Rerunning the same command resumes: finished shards are skipped. Train on ``<output>/tiers/<tier>.parquet``.
Bad arguments (inputs, config, output folder, workers, Ray) stop the run before any work with one message and
exit code 2; a video that cannot be read becomes a manifest row ``rejected_by = "error: ..."`` (logged),
a video with no clip of ``split.min_clip_s`` a row ``rejected_by = "too_short"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyvideo.data.curation.config import CurationConfig, config_to_dict, load_curation_config  # noqa: E402
from hyvideo.data.curation.runner import (connect_ray, finalize, list_inputs, plan_shards,  # noqa: E402
                                          rejection_counts, run_local, run_ray, tier_counts)

MODEL_PATHS = ("clip_model", "aesthetic_head", "watermark_model")  # local files; captioner_model may be a name


def check_output(out: Path) -> None:
    """Create ``out`` if needed and make sure files can be written in it.

    Raises:
        ValueError: ``out`` is a file, cannot be created or is not writable (the message names it).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file; give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write_test"):
            pass
    except OSError as e:
        raise ValueError(f"--output {out} is not a writable folder: {e.strerror or e}") from None


def check_models(cfg: CurationConfig) -> None:
    """Model paths in the config exist on this machine (nothing is downloaded).

    Raises:
        ValueError: naming the config key and the missing path.
    """
    for key in MODEL_PATHS:
        path = getattr(cfg.measure, key)
        if path is not None and not os.path.exists(path):
            raise ValueError(f"measure.{key} = {path!r} does not exist (a local path is expected)")


def prepare(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[CurationConfig, list[list[str]]]:
    """Everything that can fail on a bad argument, before any video is decoded: exits 2 with one message."""
    try:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        cfg = load_curation_config(args.config, args.set)
        check_models(cfg)
        videos = list_inputs(args.input)
        check_output(Path(args.output))
        if args.ray_address:  # before run.json is written: a wrong address leaves the folder reusable
            connect_ray(None if args.ray_address == "local" else args.ray_address, args.workers)
        shards = plan_shards(videos, args.output, cfg)
    except (ValueError, OSError) as e:
        ap.error(str(e))
    return cfg, shards


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder of videos, a .txt/.lst list of paths, or one video")
    ap.add_argument("--output", required=True, help="output folder (resumed when it exists)")
    ap.add_argument("--config", default=None, help="curation YAML (default configs/curation/default.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    ap.add_argument("--workers", type=int, default=None, help="local worker processes (default: config)")
    ap.add_argument("--ray-address", default=None, help="run on Ray Data at this address ('auto', 'local', ...)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, shards = prepare(ap, args)
    logging.info("config: %s", json.dumps(config_to_dict(cfg)))
    if args.ray_address:
        run_ray(shards, args.output, cfg, address=None if args.ray_address == "local" else args.ray_address,
                num_cpus=args.workers)
    else:
        run_local(shards, args.output, cfg, args.workers or cfg.num_workers)
    paths = finalize(args.output, len(shards), cfg)
    print(json.dumps({"manifests": {k: str(v) for k, v in paths.items()}, "clips_per_tier": tier_counts(paths["manifest"]),
                      "rejected_rows_by_reason": rejection_counts(paths["manifest"])}, indent=1))
    return paths


if __name__ == "__main__":
    main()
