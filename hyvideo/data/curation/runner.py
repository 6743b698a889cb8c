"""Run the curation stages over many videos: inputs, resumable shards, local processes or Ray Data, finalize.

Layout of an output folder::

    run.json                 inputs (sorted) and resolved config; a rerun must match it
    shards/shard_NNNNN.parquet   per-shard clip rows with embeddings (written atomically, skipped on rerun)
    manifest.parquet         every clip (rejected ones too), sorted by (path, start_frame), no embeddings
    tiers/<tier>.parquet     clips of that tier or better, not duplicates: what ``train_dit.py`` reads
    units.json               column -> unit

Local runs use ``concurrent.futures.ProcessPoolExecutor``; large runs use Ray Data (``run_ray``), one task
per shard, on an existing cluster. Finalize (dedup, K-means balancing, tier manifests) runs on the driver.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from hyvideo.data.curation.config import TIER_NAMES, CurationConfig, config_to_dict
from hyvideo.data.curation.embeddings import balance_weights, deduplicate_by_cluster, kmeans_labels
from hyvideo.data.curation.measure import COLUMN_UNITS
from hyvideo.data.curation.shards import (FINAL_COLUMNS, process_shard, shard_path, with_units,
                                          write_parquet_atomic)

log = logging.getLogger(__name__)
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".3gp", ".m2ts",
              ".mts", ".wmv", ".ogv"}
LIST_EXTS = {".txt", ".lst"}


def list_inputs(spec: str | os.PathLike) -> list[str]:
    """Absolute, sorted, unique video paths from a folder (recursive, by extension), a list file
    (``.txt``/``.lst``, one path a line, ``#`` comments, relative to the list's folder) or one video.

    Listed paths must be existing files (any extension: the list is explicit); whether they decode is found
    out per video later (a manifest row ``rejected_by = "error: ..."``).

    Raises:
        FileNotFoundError: ``spec`` or a listed path does not exist (the message names it).
        ValueError: no videos found, a list that is not text or names a folder, or a single file whose
            extension is not a video's.
    """
    spec = Path(spec)
    if spec.is_dir():
        vids = [p for p in spec.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file()]
    elif spec.is_file() and spec.suffix.lower() in LIST_EXTS:
        vids = _read_list(spec)
    elif spec.is_file():
        if spec.suffix.lower() not in VIDEO_EXTS:
            raise ValueError(f"input {spec} is neither a video ({', '.join(sorted(VIDEO_EXTS))}) nor a "
                             f"{'/'.join(sorted(LIST_EXTS))} list of paths")
        vids = [spec]
    else:
        raise FileNotFoundError(f"input not found: {spec} (expected a folder, a .txt/.lst list or a video)")
    out = sorted({os.path.abspath(p) for p in vids})  # symlinks kept: the manifest names what the user gave
    if not out:
        raise ValueError(f"no videos ({', '.join(sorted(VIDEO_EXTS))}) found in {spec}")
    return out


def _read_list(spec: Path) -> list[Path]:
    try:
        lines = [ln.strip() for ln in spec.read_text().splitlines()]
    except UnicodeDecodeError:
        raise ValueError(f"input list {spec} is not a text file of paths") from None
    vids = [Path(ln) if Path(ln).is_absolute() else spec.parent / ln for ln in lines if ln and not ln.startswith("#")]
    missing = [str(v) for v in vids if not v.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(vids)} videos listed in {spec} do not exist: "
                                f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    folders = [str(v) for v in vids if not v.is_file()]
    if folders:
        raise ValueError(f"{spec} lists folders, not video files: {', '.join(folders[:3])}")
    return vids


def plan_shards(videos: list[str], out_dir: str | os.PathLike, cfg: CurationConfig) -> list[list[str]]:
    """Split videos into shards and record/check ``run.json`` so a rerun continues the same run.

    Raises:
        ValueError: ``out_dir`` holds a run with other inputs or another config.
    """
    out_dir = Path(out_dir)
    config = config_to_dict(cfg)
    config.pop("num_workers")  # how many processes ran does not change the result
    record = {"videos": videos, "config": config}
    run_file = out_dir / "run.json"
    if run_file.exists():
        try:
            old = json.loads(run_file.read_text())
        except ValueError as e:
            raise ValueError(f"{run_file} is not a run record ({e}); use another --output or delete it") from None
        if old != json.loads(json.dumps(record)):
            raise ValueError(f"{out_dir} holds a run with different inputs or config; use another --output "
                             "or delete it to start over")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, run_file)
    n = cfg.videos_per_shard
    return [videos[i:i + n] for i in range(0, len(videos), n)]


def _progress(total: int, done: int) -> tqdm:
    return tqdm(total=total, initial=done, unit="shard", desc="curate", dynamic_ncols=True)


def run_local(shards: list[list[str]], out_dir: str | os.PathLike, cfg: CurationConfig, num_workers: int) -> int:
    """Process unfinished shards with ``num_workers`` processes (spawned); returns clips processed now."""
    pending = [i for i in range(len(shards)) if not shard_path(out_dir, i).exists()]
    log.info("%d shards, %d already done, %d to process", len(shards), len(shards) - len(pending), len(pending))
    bar, clips, t0 = _progress(len(shards), len(shards) - len(pending)), 0, time.perf_counter()
    if num_workers <= 1:
        for i in pending:
            clips += process_shard(i, shards[i], str(out_dir), cfg)
            bar.update(1)
            bar.set_postfix(clips_per_s=f"{clips / (time.perf_counter() - t0):.2f}")
    else:
        with ProcessPoolExecutor(num_workers, mp_context=get_context("spawn")) as pool:
            futs = [pool.submit(process_shard, i, shards[i], str(out_dir), cfg) for i in pending]
            for f in as_completed(futs):
                clips += f.result()
                bar.update(1)
                bar.set_postfix(clips_per_s=f"{clips / (time.perf_counter() - t0):.2f}")
    bar.close()
    return clips


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (None starts a local instance of ``num_cpus`` CPUs) unless already
    connected; the CLI calls it before any work so a wrong address fails fast.

    Raises:
        ValueError: Ray Data is not installed, or the cluster cannot be reached (the message names the address).
    """
    try:
        import ray  # noqa: PLC0415
        import ray.data  # noqa: F401, PLC0415
    except ImportError as e:
        raise ValueError(f"--ray-address needs Ray Data (pip install 'ray[data]'): {e}") from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueError(f"cannot reach Ray at {address or 'a new local instance'}: {e}") from None


def run_ray(shards: list[list[str]], out_dir: str | os.PathLike, cfg: CurationConfig,
            address: str | None = None, num_cpus: int | None = None) -> int:
    """Process unfinished shards as Ray Data tasks (one shard per row, one CPU each); returns clips.

    Args:
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``); None starts a local instance.
        num_cpus: CPUs of a local instance (ignored with ``address``).

    Workers write shard files themselves, so ``out_dir`` must be on a filesystem all nodes share.
    """
    import ray  # noqa: PLC0415

    pending = [i for i in range(len(shards)) if not shard_path(out_dir, i).exists()]
    connect_ray(address, num_cpus)
    out = str(Path(out_dir).resolve())

    def work(row: dict) -> dict:
        return {"index": row["index"], "clips": process_shard(row["index"], list(row["videos"]), out, cfg)}

    ds = ray.data.from_items([{"index": i, "videos": shards[i]} for i in pending], override_num_blocks=max(1, len(pending)))
    bar, clips, t0 = _progress(len(shards), len(shards) - len(pending)), 0, time.perf_counter()
    for r in ds.map(work, num_cpus=1).iter_rows():
        clips += int(r["clips"])
        bar.update(1)
        bar.set_postfix(clips_per_s=f"{clips / (time.perf_counter() - t0):.2f}")
    bar.close()
    return clips


def finalize(out_dir: str | os.PathLike, num_shards: int, cfg: CurationConfig) -> dict[str, Path]:
    """Merge shards, cluster, de-duplicate within clusters, balance, write ``manifest.parquet`` and tiers.

    Duplicates get ``tier = ""``, ``rejected_by = "dedup"``, ``dup_of`` = the kept row and weight 0; the
    other clips get ``sample_weight`` from :func:`balance_weights` over the non-duplicates.

    Returns:
        ``{"manifest": path, "<tier>": path, ...}``.

    Raises:
        FileNotFoundError: a shard is missing (the run did not finish).
    """
    out_dir = Path(out_dir)
    missing = [i for i in range(num_shards) if not shard_path(out_dir, i).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards missing (first: {shard_path(out_dir, missing[0])}); rerun")
    table = pa.concat_tables([pq.read_table(shard_path(out_dir, i)) for i in range(num_shards)])
    table = table.sort_by([("path", "ascending"), ("start_frame", "ascending")])
    n = table.num_rows
    ok = np.array([e is not None for e in table.column("embedding").to_pylist()], bool)
    dup_of, cluster, weight = np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n)
    idx = np.nonzero(ok)[0]
    if len(idx):
        c = cfg.concepts
        emb = np.asarray(table.column("embedding").filter(pa.array(ok)).to_pylist(), np.float32)
        labels = kmeans_labels(emb, c.num_clusters, c.min_cluster_size, c.seed)
        d = deduplicate_by_cluster(emb, labels, c.dedup_cosine)
        dup_of[idx[d >= 0]] = idx[d[d >= 0]]
        cluster[idx] = labels
        weight[idx[d < 0]] = balance_weights(labels[d < 0], c.balance_alpha)
    tier = np.array(table.column("tier").to_pylist(), object)
    rejected = np.array(table.column("rejected_by").to_pylist(), object)
    tier[dup_of >= 0], rejected[dup_of >= 0] = "", "dedup"
    table = table.drop_columns(["embedding", "tier", "rejected_by"])
    for name, col in (("tier", tier), ("rejected_by", rejected)):
        table = table.append_column(name, pa.array(col.tolist(), pa.string()))
    for (name, typ), col in zip(FINAL_COLUMNS.items(), (dup_of, cluster, weight)):
        table = table.append_column(name, pa.array(col, typ))
    table = table.replace_schema_metadata(with_units(table.schema).metadata)
    paths = {"manifest": write_parquet_atomic(table, out_dir / "manifest.parquet")}
    rank = np.array([TIER_NAMES.index(t) if t else -1 for t in tier])
    for k, name in enumerate(TIER_NAMES):
        paths[name] = write_parquet_atomic(table.filter(pa.array(rank >= k)), out_dir / "tiers" / f"{name}.parquet")
    (out_dir / "units.json").write_text(json.dumps(COLUMN_UNITS, indent=1))
    return paths


def tier_counts(manifest: str | os.PathLike) -> dict[str, int]:
    """Clips per reached tier ("" = rejected) in a final manifest."""
    tiers = pq.read_table(manifest, columns=["tier"]).column("tier").to_pylist()
    return {t or "rejected": tiers.count(t) for t in ("", *TIER_NAMES)}


def rejection_counts(manifest: str | os.PathLike) -> dict[str, int]:
    """Rows per ``rejected_by`` of the rows that reached no tier, most frequent first; every ``error: ...`` is
    counted as ``error``. Whole-video rows (``too_short``, ``too_large``, ``extreme_aspect``, ``error``) count
    one per video."""
    cols = pq.read_table(manifest, columns=["rejected_by", "tier"]).to_pydict()
    reasons = ["error" if r.startswith("error:") else r for r, t in zip(cols["rejected_by"], cols["tier"]) if not t]
    return dict(sorted(Counter(reasons).items(), key=lambda kv: (-kv[1], kv[0])))
