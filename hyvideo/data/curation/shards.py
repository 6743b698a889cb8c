"""Parquet shards: schema, atomic writes, and the per-shard work unit shared by every engine.

A shard is ``videos_per_shard`` consecutive videos of the sorted input list; its rows go to
``<out>/shards/shard_NNNNN.parquet`` (temp file + rename), so a killed run leaves only whole shards and a
rerun skips them. Column units are in :data:`hyvideo.data.curation.measure.COLUMN_UNITS` and in the Parquet
schema metadata.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hyvideo.data.curation.config import CurationConfig
from hyvideo.data.curation.measure import COLUMN_UNITS, process_video
from hyvideo.data.manifest import STRUCTURED_KEYS

CAPTION_TYPE = pa.struct([(k, pa.string()) for k in STRUCTURED_KEYS])
_TYPES = {
    "path": pa.string(), "shot_index": pa.int32(), "start_frame": pa.int64(), "end_frame": pa.int64(),
    "num_frames": pa.int64(), "fps": pa.float64(), "width": pa.int32(), "height": pa.int32(),
    "short_side_px": pa.int32(), "duration_s": pa.float64(), "clarity_lapvar": pa.float64(),
    "motion_px_per_frame": pa.float64(), "text_area_ratio": pa.float64(), "watermark_prob": pa.float64(),
    "aesthetic_score": pa.float64(), "camera_movement": pa.string(), "camera_confidence": pa.float64(),
    "caption": CAPTION_TYPE, "embedding_kind": pa.string(), "tier": pa.string(), "rejected_by": pa.string(),
}
SHARD_SCHEMA = pa.schema([pa.field(k, t) for k, t in _TYPES.items()] + [pa.field("embedding", pa.list_(pa.float32()))])
FINAL_COLUMNS = {"dup_of": pa.int64(), "cluster_id": pa.int64(), "sample_weight": pa.float64()}


def with_units(schema: pa.Schema) -> pa.Schema:
    """Schema with ``{"units": json}`` metadata documenting every column."""
    return schema.with_metadata({"units": json.dumps(COLUMN_UNITS)})


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def shard_path(out_dir: str | os.PathLike, index: int) -> Path:
    """``<out>/shards/shard_NNNNN.parquet``."""
    return Path(out_dir) / "shards" / f"shard_{index:05d}.parquet"


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts from ``process_video``) -> table with :data:`SHARD_SCHEMA` (missing columns null)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in SHARD_SCHEMA}
    return pa.Table.from_pydict(cols, schema=with_units(SHARD_SCHEMA))


def _release_large_buffers() -> None:
    """Have glibc serve allocations of 1 MiB and more (decoded frames, views) with mmap, so they go back to the
    OS when freed.

    By default glibc raises that threshold after the first large free (up to 32 MiB); frame-sized buffers then
    come from heaps that fragment, and a worker's peak RSS drifts by hundreds of MB between identical runs
    (measured 260-590 MiB on the 40-clip 720p test video of ``tests/curation/test_memory.py``, 225 MiB with
    the fixed threshold). No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB (fixed: no dynamic raise)
    except (OSError, AttributeError):
        pass


def process_shard(index: int, videos: list[str], out_dir: str, cfg: CurationConfig) -> int:
    """Process the videos of shard ``index`` and write its Parquet file; returns its number of clips.

    Called in worker processes (local pool) and Ray tasks; limits OpenCV to one thread per worker and makes
    large buffers return to the OS when freed (:func:`_release_large_buffers`).
    """
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(1)
    _release_large_buffers()
    if cfg.measure.clip_model or cfg.measure.captioner_model:
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)  # one core per worker; workers are the parallelism
    captioner = None
    if cfg.measure.captioner_model:
        from hyvideo.data.curation.captions import get_captioner  # noqa: PLC0415

        captioner = get_captioner(cfg.measure.captioner_model)
    rows = [r for v in videos for r in process_video(v, cfg, captioner)]
    write_parquet_atomic(rows_to_table(rows), shard_path(out_dir, index))
    return len(rows)
