"""Write the hyvideo-nano data set: mp4 videos, ground-truth sidecars, a summary and a direct training manifest.

Layout of ``out_dir``::

    videos/nano_NNNNNN.mp4    H.264, 24 fps, 128x128 (config size_px); 1 shot, or 2-3 joined shots
    videos/nano_NNNNNN.json   ground-truth sidecar (:data:`SIDECAR_VERSION`): per shot its frame range
                              [start_frame, end_frame), ClipSpec, structured caption and prompt; negatives marked
    summary.jsonl             one line per video: path, negative, shots, frames, prompts, triples
    manifest.jsonl            the good shots as training records (``hyvideo.data.manifest.read_manifest``),
                              for training without curation; curation (scripts/curate.py) reads videos/
    dataset.json              config snapshot, seed, counts, held-out triples

Video ``i`` is a pure function of ``(seed, i)`` (``numpy.random.default_rng([seed, i])``), so the set is
deterministic whatever the number of workers, and a rerun keeps the videos whose sidecar already exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hyvideo.data.synthetic.attributes import ClipSpec, NanoConfig, load_nano_config
from hyvideo.data.synthetic.captions import prompt_for, sidecar_path, structured_caption
from hyvideo.data.synthetic.render import render_video
from hyvideo.data.synthetic.sampling import sample_video

SIDECAR_VERSION = 1
CRF = 10  # x264 quality: a frozen clip then decodes with < 0.002 px/frame of flow noise (static filter margin)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def video_name(index: int) -> str:
    """File stem of video ``index``: ``nano_NNNNNN``."""
    return f"nano_{index:06d}"


def video_sidecar(shots: list[ClipSpec], ranges: list[tuple[int, int]], name: str, seed: int, index: int) -> dict:
    """The ground-truth sidecar of one video (schema version :data:`SIDECAR_VERSION`)."""
    return {
        "version": SIDECAR_VERSION, "video": f"{name}.mp4", "seed": [seed, index],
        "fps": shots[0].fps, "size_px": shots[0].size_px, "num_frames": ranges[-1][1],
        "negative": shots[0].negative if len(shots) == 1 else "",
        "shots": [{"start_frame": a, "end_frame": b, "negative": s.negative, "spec": s.to_dict(),
                   "caption": structured_caption(s), "prompts": [prompt_for(o) for o in s.objects]}
                  for s, (a, b) in zip(shots, ranges)],
    }


def make_video(out_dir: str | os.PathLike, index: int, seed: int, cfg: NanoConfig | None = None) -> dict:
    """Render, encode and describe video ``index`` (skipped when its mp4 and sidecar exist); returns its sidecar."""
    cfg = cfg or load_nano_config()
    videos = Path(out_dir) / "videos"
    name = video_name(index)
    mp4, side = videos / f"{name}.mp4", sidecar_path(videos / f"{name}.mp4")
    if mp4.is_file() and side.is_file():
        return json.loads(side.read_text())
    return write_shots(videos, name, sample_video(np.random.default_rng([seed, index]), cfg), seed, index, cfg)


def write_shots(videos_dir: str | os.PathLike, name: str, shots: list[ClipSpec], seed: int = -1, index: int = -1,
                cfg: NanoConfig | None = None) -> dict:
    """Render shots back to back into ``<videos_dir>/<name>.mp4`` plus its sidecar; returns the sidecar.

    Raises:
        ValueError: a shot renders to frames of another size than ``cfg.size_px``.
    """
    from hyvideo.data.curation.video import write_video  # noqa: PLC0415

    cfg = cfg or load_nano_config()
    mp4 = Path(videos_dir) / f"{name}.mp4"
    frames, ranges = render_video(shots, cfg)
    if frames.dtype != np.uint8 or frames.shape[1:] != (cfg.size_px, cfg.size_px, 3):
        raise ValueError(f"{name}: rendered {frames.dtype} frames of shape {frames.shape}")
    write_video(list(frames[..., ::-1]), mp4, fps=shots[0].fps, crf=CRF)
    sidecar = video_sidecar(shots, ranges, name, seed, index)
    _write_json(sidecar_path(mp4), sidecar)  # written last: a sidecar means the video is complete
    return sidecar


def _worker_init() -> None:
    import av  # noqa: PLC0415
    import cv2  # noqa: PLC0415

    av.logging.set_libav_level(av.logging.ERROR)  # no x264 banner per video
    cv2.setNumThreads(1)


def _make_range(out_dir: str, indices: list[int], seed: int, cfg: NanoConfig) -> list[dict]:
    return [make_video(out_dir, i, seed, cfg) for i in indices]


def summary_record(sidecar: dict) -> dict:
    """One ``summary.jsonl`` line."""
    return {"path": f"videos/{sidecar['video']}", "negative": sidecar["negative"], "num_shots": len(sidecar["shots"]),
            "num_frames": sidecar["num_frames"],
            "shots": [[s["start_frame"], s["end_frame"]] for s in sidecar["shots"]],
            "prompts": [p for s in sidecar["shots"] for p in s["prompts"]],
            "triples": [[o["colour"], o["shape"], o["motion"]] for s in sidecar["shots"] for o in s["spec"]["objects"]]}


def manifest_records(sidecar: dict) -> list[dict]:
    """Training records (``hyvideo.data.manifest`` fields) of the good shots of one video."""
    return [{"path": f"videos/{sidecar['video']}", "start_frame": s["start_frame"], "end_frame": s["end_frame"],
             "caption": s["caption"], "fps": sidecar["fps"], "width": sidecar["size_px"],
             "height": sidecar["size_px"], "num_frames": sidecar["num_frames"]}
            for s in sidecar["shots"] if not s["negative"]]


def generate(out_dir: str | os.PathLike, num_videos: int, seed: int, workers: int = 1,
             cfg: NanoConfig | None = None) -> dict[str, Path]:
    """Write ``num_videos`` videos and the index files into ``out_dir`` (see the module docstring).

    Args:
        out_dir: output folder (created; existing complete videos are kept).
        num_videos: videos to write, >= 1.
        seed: data set seed.
        workers: processes (spawned); 1 = in this process.
        cfg: data set config (default ``configs/nano/dataset.yaml``).

    Returns:
        ``{"videos", "summary", "manifest", "dataset"}`` paths.

    Raises:
        ValueError: ``num_videos`` or ``workers`` < 1.
    """
    if num_videos < 1 or workers < 1:
        raise ValueError(f"need num_videos >= 1 and workers >= 1, got {num_videos}, {workers}")
    cfg = cfg or load_nano_config()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    _worker_init()
    chunks = [list(range(i, min(i + 8, num_videos))) for i in range(0, num_videos, 8)]
    sidecars: list[dict] = []
    bar, t0 = tqdm(total=num_videos, unit="video", desc="nano data set", dynamic_ncols=True), time.perf_counter()
    if workers == 1:
        results = (_make_range(str(out), c, seed, cfg) for c in chunks)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init)
        results = pool.map(_make_range, [str(out)] * len(chunks), chunks, [seed] * len(chunks), [cfg] * len(chunks))
    for got in results:
        sidecars += got
        bar.update(len(got))
        bar.set_postfix(videos_per_s=f"{len(sidecars) / (time.perf_counter() - t0):.1f}")
    bar.close()
    if workers > 1:
        pool.shutdown()
    return _write_index(out, sidecars, seed, cfg, time.perf_counter() - t0)


def _write_index(out: Path, sidecars: list[dict], seed: int, cfg: NanoConfig, seconds: float) -> dict[str, Path]:
    summary = [summary_record(s) for s in sidecars]
    records = [r for s in sidecars for r in manifest_records(s)]
    for name, rows in (("summary.jsonl", summary), ("manifest.jsonl", records)):
        tmp = out / f".{name}.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, out / name)
    counts = {k: sum(r["negative"] == k for r in summary) for k in ("blur", "static", "text")}
    counts.update(videos=len(summary), joined=sum(r["num_shots"] > 1 for r in summary), good_shots=len(records),
                  frames=sum(r["num_frames"] for r in summary))
    _write_json(out / "dataset.json", {"seed": seed, "counts": counts, "seconds": round(seconds, 1),
                                       "config": json.loads(json.dumps(dataclasses.asdict(cfg)))})
    return {"videos": out / "videos", "summary": out / "summary.jsonl", "manifest": out / "manifest.jsonl",
            "dataset": out / "dataset.json"}
