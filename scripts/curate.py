"""Curate raw videos into training manifests (shot split, scores, dedup, concept balance, five tiers).

    python scripts/curate.py --input /data/raw --output /data/curated                 # 2 local workers
    python scripts/curate.py --input videos.txt --output out --workers 8 --set tiers.4.min_clarity=300
    python scripts/curate.py --input /shared/raw --output /shared/curated --ray-address auto

Rerunning the same command resumes: finished shards are skipped. Train on ``<output>/tiers/<tier>.parquet``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyvideo.data.curation.config import config_to_dict, load_curation_config  # noqa: E402
from hyvideo.data.curation.runner import (finalize, list_inputs, plan_shards, run_local, run_ray,  # noqa: E402
                                          tier_counts)


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
    cfg = load_curation_config(args.config, args.set)
    logging.info("config: %s", json.dumps(config_to_dict(cfg)))
    shards = plan_shards(list_inputs(args.input), args.output, cfg)
    if args.ray_address:
        run_ray(shards, args.output, cfg, address=None if args.ray_address == "local" else args.ray_address,
                num_cpus=args.workers)
    else:
        run_local(shards, args.output, cfg, args.workers or cfg.num_workers)
    paths = finalize(args.output, len(shards), cfg)
    counts = tier_counts(paths["manifest"])
    print(json.dumps({"manifests": {k: str(v) for k, v in paths.items()}, "clips_per_tier": counts}, indent=1))
    return paths


if __name__ == "__main__":
    main()
