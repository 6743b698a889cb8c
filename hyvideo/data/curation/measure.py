"""Per-video stage: probe, split into shots and clips, measure every clip, assign its tier.

One call of :func:`process_video` is the unit of work of every engine (local processes, Ray Data). It is a
pure function of the file and the config, so reruns give identical rows. Manifest columns and units are
listed in :data:`COLUMN_UNITS`.

Memory: frames are streamed, never collected per video. Each decoded frame is turned right away into the
small *views* its clip's measurements use (:func:`frame_views`: clarity at ``clarity_max_short_side_px``,
text at ``text_det_max_side_px``, flow at ``flow_short_side_px``, camera at 180 px, 16x9 thumbnails, model
inputs at :data:`MODEL_SHORT_SIDE_PX`) and dropped; a clip's views are released once it is measured. Each
view is exactly the resize its measurement applied to the full frame before, so scores are unchanged. Per
worker this bounds memory to: the imports and models, the decoder's full-size YUV frames, one BGR frame of at
most ``video.MAX_CONVERT_PIXELS``, and one clip's views (a few MB at any source size). Sizes the decoder
itself cannot hold within that (``video.size_problem``) are rejected before decoding.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator

import cv2
import numpy as np

from hyvideo.data.curation.camera import classify_camera
from hyvideo.data.curation.clarity import clip_clarity
from hyvideo.data.curation.config import CurationConfig, MeasureConfig
from hyvideo.data.curation.embeddings import get_clip_embedder, thumbnail_embedding
from hyvideo.data.curation.motion import clip_flows, flow_pairs, motion_score
from hyvideo.data.curation.scorers import get_aesthetic_head, get_watermark_detector, log_skip
from hyvideo.data.curation.shots import Clip, detect_shots, shots_to_clips
from hyvideo.data.curation.text_area import clip_text_area, get_text_detector
from hyvideo.data.curation.tiers import assign_tier
from hyvideo.data.curation.video import (VideoInfo, evenly_spaced, iter_frames, probe, resize_short_side,
                                         shrink_long_side, size_problem)

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
    "caption": "structured caption (struct of STRUCTURED_KEYS strings) from frames downscaled to "
               "MODEL_SHORT_SIDE_PX (512) short side; null = no captioner",
    "embedding_kind": "'clip' or 'thumbnail'",
    "tier": "highest tier passed: 256p|360p|540p|720p|finetune, '' = rejected",
    "rejected_by": "'<tier>:<filter>' that stopped the clip, 'dedup', 'error: ...', or '' (reached finetune); "
                   "a whole-video row (shot_index -1): 'too_short' (no clip of split.min_clip_s and 3 frames), "
                   "'too_large' (over video.MAX_SOURCE_PIXELS), 'extreme_aspect' (over video.MAX_ASPECT)",
    "dup_of": "row index (in manifest.parquet) of the kept clip this one duplicates, -1 = not a duplicate",
    "cluster_id": "K-means concept cluster, -1 = no embedding (whole-video or error row)",
    "sample_weight": "relative concept-balancing sampling weight (mean 1 over all non-duplicates; 0 = duplicate); "
                     "normalise within the manifest you train on",
}


CAMERA_SHORT_SIDE_PX = 180  # camera tracking resolution (camera.classify_camera's default)
# CLIP embeddings, the watermark classifier and the captioner get key / caption frames downscaled (never
# upscaled) to this short side. CLIP and the watermark classifier then resize to their 224-256 px inputs
# themselves; a VLM sees at most this resolution.
MODEL_SHORT_SIDE_PX = 512
THUMB_SIZE = (16, 9)  # embeddings.thumbnail_embedding's (width, height)


def _clip_indices(clip: Clip, cfg: CurationConfig, with_caption: bool) -> dict[str, list]:
    m = cfg.measure
    key = evenly_spaced(clip.start_frame, clip.end_frame, m.num_key_frames)
    pairs = flow_pairs(clip.start_frame, clip.end_frame, m.num_flow_pairs, m.flow_stride_frames)
    gap = max(1, min(4, (clip.num_frames - 1) // 8))
    cam = list(range(clip.start_frame, min(clip.end_frame, clip.start_frame + 8 * gap + 1), gap))
    cap = evenly_spaced(clip.start_frame, clip.end_frame, m.num_caption_frames) if with_caption else []
    return {"key": key, "pairs": pairs, "camera": cam, "camera_gap": gap, "caption": cap}


def view_needs(plan: dict, m: MeasureConfig) -> dict[int, set[str]]:
    """Source frame index -> the views (:func:`frame_views` kinds) a clip's plan measures on it."""
    needs: dict[int, set[str]] = defaultdict(set)
    for k, i in enumerate(plan["key"]):
        needs[i] |= {"clarity", "model" if m.clip_model else "thumb"}
        if k < m.num_text_frames:
            needs[i].add("text")
        if m.watermark_model:
            needs[i].add("model")
    for i in [j for pair in plan["pairs"] for j in pair]:
        needs[i].add("flow")
    for i in plan["camera"]:
        needs[i].add("camera")
    for i in plan["caption"]:
        needs[i].add("model")
    return dict(needs)


def frame_views(frame_bgr: np.ndarray, kinds: set[str], m: MeasureConfig) -> dict[str, np.ndarray]:
    """The downscaled copies of one ``[H, W, 3]`` uint8 BGR frame that the measurements use.

    Kinds: ``clarity`` (short side <= ``clarity_max_short_side_px``), ``text`` (long side <=
    ``text_det_max_side_px``), ``flow`` (short side ``flow_short_side_px``), ``camera`` (short side
    :data:`CAMERA_SHORT_SIDE_PX`), ``thumb`` (:data:`THUMB_SIZE`), ``model`` (short side <=
    :data:`MODEL_SHORT_SIDE_PX`). Each is the resize its measurement applies itself, so measuring the view
    gives the full frame's score bit for bit (their own resize is then a no-op); ``model`` is the exception.

    Raises:
        KeyError: an unknown kind.
    """
    make = {
        "clarity": lambda f: resize_short_side(f, m.clarity_max_short_side_px, allow_upscale=False),
        "text": lambda f: shrink_long_side(f, m.text_det_max_side_px),
        "flow": lambda f: resize_short_side(f, m.flow_short_side_px),
        "camera": lambda f: resize_short_side(f, CAMERA_SHORT_SIDE_PX),
        "thumb": lambda f: cv2.resize(f, THUMB_SIZE, interpolation=cv2.INTER_AREA),
        "model": lambda f: resize_short_side(f, MODEL_SHORT_SIDE_PX, allow_upscale=False),
    }
    return {k: make[k](frame_bgr) for k in kinds}


def measure_clip(frames: dict[int, np.ndarray], clip: Clip, info: VideoInfo, cfg: CurationConfig,
                 captioner=None) -> dict:
    """Scores of one clip (see :data:`COLUMN_UNITS`) plus its ``embedding`` (list of float32), from frames.

    Args:
        frames: ``{source index: [H, W, 3] uint8 BGR}`` holding every frame the clip's plan needs.
        clip: the span ``[start_frame, end_frame)``.
        info: the source video's stream facts.
        cfg: measurement settings.
        captioner: see :func:`measure_views`.

    Returns:
        Column -> value; skipped model scores are None.
    """
    needs = view_needs(_clip_indices(clip, cfg, captioner is not None), cfg.measure)
    views = {i: frame_views(frames[i], kinds, cfg.measure) for i, kinds in needs.items() if i in frames}
    return measure_views(views, clip, info, cfg, captioner)


def measure_views(views: dict[int, dict[str, np.ndarray]], clip: Clip, info: VideoInfo, cfg: CurationConfig,
                  captioner=None) -> dict:
    """Scores of one clip (see :data:`COLUMN_UNITS`) plus its ``embedding`` (list of float32), from views.

    Args:
        views: ``{source index: frame_views(...)}`` with the kinds :func:`view_needs` lists for the clip.
        clip: the span ``[start_frame, end_frame)``.
        info: the source video's stream facts.
        cfg: measurement settings.
        captioner: callable ``(frames_bgr, *, source: str, span: tuple[int, int]) -> structured caption dict``
            (e.g. ``captions.VLMCaptioner``) or None; ``frames_bgr`` are ``[h, w, 3]`` uint8 BGR caption frames
            with short side <= :data:`MODEL_SHORT_SIDE_PX`, ``source`` the video path, ``span`` the clip's
            ``(start_frame, end_frame)``.

    Returns:
        Column -> value; skipped model scores are None.

    Raises:
        ValueError: a key or camera frame of the clip was not decoded (the file ended early).
    """
    m = cfg.measure
    idx = _clip_indices(clip, cfg, captioner is not None)
    missing = sorted(i for i in idx["key"] + idx["camera"] if i not in views)
    if missing:
        raise ValueError(f"frames {missing[:4]} of clip [{clip.start_frame}, {clip.end_frame}) could not be "
                         f"decoded (the file has {info.num_frames} frames by its header)")
    key = [views[i] for i in idx["key"]]
    flow = {i: v["flow"] for i, v in views.items() if "flow" in v}
    row = {
        "clarity_lapvar": clip_clarity([v["clarity"] for v in key], m.clarity_grid, m.clarity_max_short_side_px),
        "motion_px_per_frame": (motion_score(clip_flows(flow, idx["pairs"], m.flow_short_side_px))
                                if idx["pairs"] else 0.0),
        "text_area_ratio": clip_text_area([v["text"] for v in key[:m.num_text_frames]],
                                          get_text_detector(m.text_det_box_thresh, m.text_det_max_side_px)),
        "watermark_prob": None, "aesthetic_score": None,
    }
    if m.watermark_model:
        row["watermark_prob"] = get_watermark_detector(m.watermark_model).clip_score([v["model"] for v in key])
    else:
        log_skip("watermark_prob", "measure.watermark_model is not set")
    if m.clip_model:
        emb, kind = get_clip_embedder(m.clip_model)([v["model"] for v in key]), "clip"
        if m.aesthetic_head:
            row["aesthetic_score"] = get_aesthetic_head(m.aesthetic_head)(emb)
        else:
            log_skip("aesthetic_score", "measure.aesthetic_head is not set")
    else:
        emb, kind = thumbnail_embedding([v["thumb"] for v in key]), "thumbnail"
        log_skip("aesthetic_score", "measure.clip_model is not set (the regressor needs CLIP embeddings)")
        log_skip("CLIP embeddings", "measure.clip_model is not set; dedup/concepts use colour thumbnails")
    cam = classify_camera([views[i]["camera"] for i in idx["camera"]], idx["camera_gap"], CAMERA_SHORT_SIDE_PX)
    row.update(camera_movement=cam.label, camera_confidence=float(cam.confidence), embedding=emb.tolist(),
               embedding_kind=kind, caption=None)
    if captioner is not None:
        _add_caption(row, captioner, [views[i]["model"] for i in idx["caption"] if i in views], clip, info, cam,
                     m.camera_min_confidence)
    return row


def _add_caption(row: dict, captioner, frames: list[np.ndarray], clip: Clip, info: VideoInfo, cam,
                 min_confidence: float) -> None:
    from hyvideo.data.curation.captions import add_camera_movement, validate_caption  # noqa: PLC0415

    try:  # a malformed answer costs this clip its caption, not the video its rows
        cap = captioner(frames, source=info.path, span=(clip.start_frame, clip.end_frame))
        if getattr(captioner, "camera_is_ground_truth", False):  # the classifier's label stays in its column
            row["caption"] = validate_caption(cap)
        else:
            row["caption"] = add_camera_movement(cap, cam.label, cam.confidence, min_confidence)
    except ValueError as e:
        log.warning("no caption for %s [%d, %d): %s", info.path, clip.start_frame, clip.end_frame, e)


def stream_clip_views(path: str | os.PathLike, clips: list[Clip], cfg: CurationConfig,
                      with_caption: bool) -> Iterator[tuple[Clip, dict[int, dict[str, np.ndarray]]]]:
    """Decode a video once and yield each clip with its views (see :func:`frame_views`) as soon as its last
    needed frame is decoded; a frame lives only while its views are made.

    Args:
        path: video file.
        clips: disjoint clips in source order (as :func:`shots.shots_to_clips` gives them).
        cfg: measurement settings.
        with_caption: also make the captioner's frames.

    Yields:
        ``(clip, {index: {kind: view}})`` in source order; clips whose frames run past the end of the file
        come last with the views that could be made.
    """
    needs = [view_needs(_clip_indices(c, cfg, with_caption), cfg.measure) for c in clips]
    owner = {i: k for k, need in enumerate(needs) for i in need}
    last = [max(need) for need in needs]
    views: list[dict] = [{} for _ in clips]
    done = 0
    for i, frame in iter_frames(path, sorted(owner)):
        k = owner[i]
        views[k][i] = frame_views(frame, needs[k][i], cfg.measure)
        if i == last[k]:
            for j in range(done, k + 1):  # earlier clips are complete too (indices arrive in order)
                yield clips[j], views[j]
                views[j] = {}
            done = k + 1
    for j in range(done, len(clips)):
        yield clips[j], views[j]


def _video_row(info: VideoInfo, rejected_by: str) -> dict:
    """One row standing for a whole video that gives no measured clip."""
    return {"path": info.path, "shot_index": -1, "start_frame": 0, "end_frame": info.num_frames,
            "num_frames": info.num_frames, "fps": info.fps, "width": info.width, "height": info.height,
            "short_side_px": min(info.width, info.height),
            "duration_s": info.num_frames / info.fps if info.fps > 0 else None, "tier": "",
            "rejected_by": rejected_by}


def process_video(path: str | os.PathLike, cfg: CurationConfig, captioner=None) -> list[dict]:
    """All clip rows of one source video, in source order, tiers assigned (dedup/concepts come later).

    A video that gives no clip at all is one row with ``shot_index = -1``: ``rejected_by = "too_short"`` (no
    clip of ``split.min_clip_s`` and ``shots.MIN_CLIP_FRAMES`` after splitting, e.g. a 1- or 2-frame video),
    ``"too_large"`` / ``"extreme_aspect"`` (``video.size_problem``: not decoded). A video that cannot be read
    adds one row with ``rejected_by = "error: <message>"`` to the clips measured before the failure, so a rerun
    does not retry it forever and the failure is visible in the manifest. Frames are streamed (see the module
    docstring), so memory does not grow with the video's length or resolution.
    """
    path = os.path.abspath(path)
    rows = []
    try:
        info = probe(path)
        problem = size_problem(info.width, info.height)
        if problem:
            log.warning("not decoding %s: %dx%d is %s", path, info.width, info.height, problem)
            return [_video_row(info, problem)]
        clips = shots_to_clips(detect_shots(path, cfg.split), info.fps, cfg.split)
        if not clips:
            log.info("rejected %s (too_short): %d frames give no clip of %.2f s", path, info.num_frames,
                     cfg.split.min_clip_s)
            return [_video_row(info, "too_short")]
        for clip, views in stream_clip_views(path, clips, cfg, captioner is not None):
            row = {"path": path, "shot_index": clip.shot_index, "start_frame": clip.start_frame,
                   "end_frame": clip.end_frame, "num_frames": info.num_frames, "fps": info.fps,
                   "width": info.width, "height": info.height, "short_side_px": min(info.width, info.height),
                   "duration_s": clip.num_frames / info.fps, **measure_views(views, clip, info, cfg, captioner)}
            row["tier"], row["rejected_by"] = assign_tier(row, cfg.tiers)
            rows.append(row)
        return rows
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a million-video run
        log.warning("failed on %s: %s", path, e)
        return rows + [{"path": path, "shot_index": -1, "start_frame": 0, "end_frame": 0, "tier": "",
                        "rejected_by": f"error: {type(e).__name__}: {e}"}]
