"""The curate CLI end to end: manifest columns, tier manifests readable by the trainer, kill + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from hyvideo.data.curation.config import TIER_NAMES
from hyvideo.data.curation.measure import COLUMN_UNITS
from hyvideo.data.curation.video import write_video
from hyvideo.data.manifest import read_manifest
from tests.curation.conftest import real_frames

ROOT = Path(__file__).resolve().parents[2]
SETS = ["tiers.0.min_short_side_px=144", "tiers.1.min_short_side_px=144", "tiers.2.min_short_side_px=180",
        "tiers.3.min_short_side_px=180", "tiers.4.min_short_side_px=180", "videos_per_shard=1"]


def _inputs(tmp_path: Path, videos: dict) -> Path:
    frozen = write_video([real_frames("bikes", 10, 11)[0]] * 30, tmp_path / "frozen.mp4", 25)
    lst = tmp_path / "inputs.txt"
    lst.write_text("\n".join(str(p) for p in (videos["bunny"], videos["bikes"], videos["carphone"], frozen)))
    return lst


def _args(inputs: Path, out: Path) -> list[str]:
    return ["--input", str(inputs), "--output", str(out)] + [a for s in SETS for a in ("--set", s)]


def test_cli_kill_resume_equals_uninterrupted_run(tmp_path, videos):
    sys.path.insert(0, str(ROOT / "scripts"))
    import curate  # noqa: PLC0415

    inputs = _inputs(tmp_path, videos)
    ref = curate.main(_args(inputs, tmp_path / "ref") + ["--workers", "1"])

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "curate.py"), *_args(inputs, out), "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "shards" / "shard_00000.parquet"
    deadline = time.time() + 60
    while not list((out / "shards").glob("shard_*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("shard_*.parquet")}
    assert 1 <= len(done) < 4 and not (out / "manifest.parquet").exists(), done
    assert first.exists() or done

    curate.main(_args(inputs, out) + ["--workers", "1"])
    for name, mtime in done.items():  # finished shards were not redone
        assert (out / "shards" / name).stat().st_mtime_ns == mtime
    assert pq.read_table(out / "manifest.parquet").to_pylist() == pq.read_table(ref["manifest"]).to_pylist()

    table = pq.read_table(ref["manifest"])
    for col in ("path", "start_frame", "end_frame", "fps", "width", "height", "caption", "tier", "rejected_by",
                "clarity_lapvar", "motion_px_per_frame", "text_area_ratio", "duration_s", "camera_movement"):
        assert col in table.column_names and col in COLUMN_UNITS
    rows = table.to_pylist()
    frozen = [r for r in rows if r["path"].endswith("frozen.mp4")]
    assert frozen and all(r["rejected_by"] == "256p:static" for r in frozen)
    assert {r["tier"] for r in rows} - {""} <= set(TIER_NAMES)
    bikes = sorted((r["start_frame"], r["end_frame"]) for r in rows if r["path"].endswith("bikes.mp4"))
    assert bikes == [(1, 29), (31, 75)]  # shots 0-30, 30-76 trimmed by one frame; 76-100 (< 1 s) dropped
    for tier in TIER_NAMES:
        records = read_manifest(ref[tier])
        assert all(TIER_NAMES.index(r.tier) >= TIER_NAMES.index(tier) for r in records)
    assert len(read_manifest(ref["256p"])) == sum(r["tier"] != "" for r in rows) > 0
    # the trainer's dataset takes a tier manifest as is and decodes the clip span it names
    from hyvideo.data.video_dataset import VideoClipDataset  # noqa: PLC0415

    records = read_manifest(ref["256p"])
    ds = VideoClipDataset(records, tiers=("256",), num_frames=5, fps=25.0)
    item = ds[0]
    assert item["pixels"].shape[:2] == (3, 5) and item["pixels"].isfinite().all()
