"""Render the hyvideo-nano data set: captioned synthetic mp4s with ground-truth sidecars.

    python scripts/make_nano_dataset.py --out data/nano --num-videos 2000 --seed 0 --workers 2
    python scripts/curate.py --input data/nano/videos --output data/nano_curated --config configs/curation/nano.yaml

Vocabulary, sizes and the held-out evaluation triples are in configs/nano/dataset.yaml (--config). Rerunning
the same command keeps the finished videos. Exit status 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: E402
from hyvideo.data.synthetic.dataset import generate  # noqa: E402


def _check_out(path: Path) -> str | None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"--out {path}: {probe} exists and is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"--out {path}: {probe} is not writable"
    return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output folder (videos/, summary.jsonl, manifest.jsonl)")
    ap.add_argument("--num-videos", required=True, type=int, help="videos to write (>= 1)")
    ap.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--config", type=Path, default=None, help="data set YAML (default configs/nano/dataset.yaml)")
    args = ap.parse_args(argv)
    if args.num_videos < 1:
        ap.error(f"--num-videos must be >= 1, got {args.num_videos}")
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    problem = _check_out(args.out)
    if problem:
        ap.error(problem)
    try:
        cfg = load_nano_config(args.config)
    except (OSError, ValueError) as e:
        ap.error(f"--config {args.config}: {e}")
    paths = generate(args.out, args.num_videos, args.seed, args.workers, cfg)
    counts = json.loads(paths["dataset"].read_text())["counts"]
    print(json.dumps({"outputs": {k: str(v) for k, v in paths.items()}, "counts": counts}, indent=1))
    return paths


if __name__ == "__main__":
    main()
