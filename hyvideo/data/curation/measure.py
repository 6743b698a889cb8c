"""Per-video stage: probe, split into shots and clips, measure every clip, assign its tier.

One call of :func:`process_video` is the unit of work of every engine (local processes, Ray Data). It is a
pure function of the file and the config, so reruns give identical rows. Manifest columns and units are
listed in :data:`COLUMN_UNITS`.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from hyvideo.data.curation.camera import classify_camera
from hyvideo.data.curation.clarity import clip_clarity
from hyvideo.data.curation.config import CurationConfig
from hyvideo.data.curation.embeddings import get_clip_embedder, thumbnail_embedding
from hyvideo.data.curation.motion import clip_flows, flow_pairs, motion_score
from hyvideo.data.curation.scorers import get_aesthetic_head, get_watermark_detector, log_skip
from hyvideo.data.curation.shots import Clip, detect_shots, shots_to_clips
from hyvideo.data.curation.text_area import clip_text_area, get_text_detector
from hyvideo.data.curation.tiers import assign_tier
from hyvideo.data.curation.video import VideoInfo, evenly_spaced, probe, read_frames

log = logging.getLogger(__name__)

COLUMN_UNITS = {
    "path": "source video file (absolute)",
    "shot_index": "index of the shot in the source video",
    "start_frame": "first frame of the clip in the source video (0-based, decode order)",
    "end_frame": "end frame, exclusive",
    "num_frames": "frames in the source video file",
    "fps": "source frame rate, frames/second",
    "width": "source width, pixels",
    "height": "source height, pixels",
    "short_side_px": "min(width, height), pixels",
    "duration_s": "clip duration, seconds",
    "clarity_lapvar": "median over key frames of the variance of the 3x3 Laplacian of the sharpest tile, "
                      "grey levels^2, after downscaling to measure.clarity_max_short_side_px",
    "motion_px_per_frame": "mean DIS optical-flow magnitude, pixels/frame at measure.flow_short_side_px",
    "text_area_ratio": "median over text frames of the fraction (0-1) of pixels inside PP-OCRv4 text boxes",
    "watermark_prob": "max over key frames of the watermark detector probability (0-1); null = skipped",
    "aesthetic_score": "aesthetic regressor on CLIP embeddings (regressor's scale); null = skipped",
    "camera_movement": "camera class (camera.CAMERA_CLASSES)",
    "camera_confidence": "classifier confidence 0-1; the caption carries the label only above the threshold",
    "caption": "structured caption (struct of STRUCTURED_KEYS strings); null = no captioner",
    "embedding_kind": "'clip' or 'thumbnail'",
    "tier": "highest tier passed: 256p|360p|540p|720p|finetune, '' = rejected",
    "rejected_by": "'<tier>:<filter>' that stopped the clip, 'dedup', 'error: ...', or '' (reached finetune)",
    "dup_of": "row index (in manifest.parquet) of the kept clip this one duplicates, -1 = not a duplicate",
    "cluster_id": "K-means concept cluster, -1 = no embedding (error row)",
    "sample_weight": "relative concept-balancing sampling weight (mean 1 over all non-duplicates; 0 = duplicate); "
                     "normalise within the manifest you train on",
}


def _clip_indices(clip: Clip, cfg: CurationConfig, with_caption: bool) -> dict[str, list]:
    m = cfg.measure
    key = evenly_spaced(clip.start_frame, clip.end_frame, m.num_key_frames)
    pairs = flow_pairs(clip.start_frame, clip.end_frame, m.num_flow_pairs, m.flow_stride_frames)
    gap = max(1, min(4, (clip.num_frames - 1) // 8))
    cam = list(range(clip.start_frame, min(clip.end_frame, clip.start_frame + 8 * gap + 1), gap))
    cap = evenly_spaced(clip.start_frame, clip.end_frame, m.num_caption_frames) if with_caption else []
    return {"key": key, "pairs": pairs, "camera": cam, "camera_gap": gap, "caption": cap}


def measure_clip(frames: dict[int, np.ndarray], clip: Clip, info: VideoInfo, cfg: CurationConfig,
                 captioner=None) -> dict:
    """Scores of one clip (see :data:`COLUMN_UNITS`) plus its ``embedding`` (list of float32).

    Args:
        frames: ``{source index: [H, W, 3] uint8 BGR}`` holding every frame the clip's plan needs.
        clip: the span ``[start_frame, end_frame)``.
        info: the source video's stream facts.
        cfg: measurement settings.
        captioner: callable ``frames -> structured caption dict`` (e.g. ``captions.VLMCaptioner``) or None.

    Returns:
        Column -> value; skipped model scores are None.
    """
    m = cfg.measure
    idx = _clip_indices(clip, cfg, captioner is not None)
    key = [frames[i] for i in idx["key"]]
    row = {
        "clarity_lapvar": clip_clarity(key, m.clarity_grid, m.clarity_max_short_side_px),
        "motion_px_per_frame": (motion_score(clip_flows(frames, idx["pairs"], m.flow_short_side_px))
                                if idx["pairs"] else 0.0),
        "text_area_ratio": clip_text_area(key[:m.num_text_frames],
                                          get_text_detector(m.text_det_box_thresh, m.text_det_max_side_px)),
        "watermark_prob": None, "aesthetic_score": None,
    }
    if m.watermark_model:
        row["watermark_prob"] = get_watermark_detector(m.watermark_model).clip_score(key)
    else:
        log_skip("watermark_prob", "measure.watermark_model is not set")
    if m.clip_model:
        emb, kind = get_clip_embedder(m.clip_model)(key), "clip"
        if m.aesthetic_head:
            row["aesthetic_score"] = get_aesthetic_head(m.aesthetic_head)(emb)
        else:
            log_skip("aesthetic_score", "measure.aesthetic_head is not set")
    else:
        emb, kind = thumbnail_embedding(key), "thumbnail"
        log_skip("aesthetic_score", "measure.clip_model is not set (the regressor needs CLIP embeddings)")
        log_skip("CLIP embeddings", "measure.clip_model is not set; dedup/concepts use colour thumbnails")
    cam = classify_camera([frames[i] for i in idx["camera"]], idx["camera_gap"], short_side_px=180)
    row.update(camera_movement=cam.label, camera_confidence=float(cam.confidence), embedding=emb.tolist(),
               embedding_kind=kind, caption=None)
    if captioner is not None:
        from hyvideo.data.curation.captions import add_camera_movement  # noqa: PLC0415

        try:  # a malformed answer costs this clip its caption, not the video its rows
            cap = captioner([frames[i] for i in idx["caption"]])
            row["caption"] = add_camera_movement(cap, cam.label, cam.confidence, m.camera_min_confidence)
        except ValueError as e:
            log.warning("no caption for %s [%d, %d): %s", info.path, clip.start_frame, clip.end_frame, e)
    return row


def process_video(path: str | os.PathLike, cfg: CurationConfig, captioner=None) -> list[dict]:
    """All clip rows of one source video, in source order, tiers assigned (dedup/concepts come later).

    A video that cannot be read gives one row with ``rejected_by = "error: <message>"``, so a rerun does not
    retry it forever and the failure is visible in the manifest.
    """
    path = os.path.abspath(path)
    try:
        info = probe(path)
        clips = shots_to_clips(detect_shots(path, cfg.split), info.fps, cfg.split)
        plans = [_clip_indices(c, cfg, captioner is not None) for c in clips]
        wanted = {i for p in plans for i in p["key"] + p["camera"] + p["caption"] + [j for q in p["pairs"] for j in q]}
        frames = read_frames(path, sorted(wanted))
        rows = []
        for clip in clips:
            base = {"path": path, "shot_index": clip.shot_index, "start_frame": clip.start_frame,
                    "end_frame": clip.end_frame, "num_frames": info.num_frames, "fps": info.fps,
                    "width": info.width, "height": info.height, "short_side_px": min(info.width, info.height),
                    "duration_s": clip.num_frames / info.fps}
            row = {**base, **measure_clip(frames, clip, info, cfg, captioner)}
            row["tier"], row["rejected_by"] = assign_tier(row, cfg.tiers)
            rows.append(row)
        return rows
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a million-video run
        log.warning("failed on %s: %s", path, e)
        return [{"path": path, "shot_index": -1, "start_frame": 0, "end_frame": 0, "tier": "",
                 "rejected_by": f"error: {type(e).__name__}: {e}"}]
