"""Automatic evaluation of a nano model on held-out attribute combinations (``scripts/eval_nano.py``).

For each held-out (colour, shape, motion) triple and seed, the model samples the prompt ("a red circle moves to
the left") and the detector (:func:`hyvideo.data.synthetic.detect.detect`, validated on rendered clips) reads
back the three attributes. The same triples and seeds are rendered as ground truth
(:func:`~hyvideo.data.synthetic.render.render_eval_clip`, plain background for even seeds, gradient for odd
ones), which gives the reference for the two other figures:

- motion smoothness: (1) VBench's motion-smoothness formula with a linear frame interpolator,
  ``(255 - mean MAE(frame_t, (frame_t-1 + frame_t+1) / 2)) / 255`` over odd t (1.0 = a frame is the average of
  its neighbours; VBench uses a learned interpolator, so values are lower here on moving edges); (2) the RMS
  acceleration of the detected object's centroid track, in percent of the frame side per frame^2 (0 = uniform
  motion; the renders move at constant speed).
- visual quality: a Fréchet distance (the FID / FVD formula) between Gaussian fits of per-frame features of the
  samples and of the renders. The features are simple and documented rather than learned (no feature network
  is available offline): a 4x4 RGB thumbnail (48 values, 0-1) and a 2x2-cell, 8-bin gradient-orientation
  histogram (32 values, magnitude-weighted, normalised per cell) of every frame. Its floor is the distance
  between two render sets of the same triples with other seeds (reported beside it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from hyvideo.data.synthetic.detect import detect
from hyvideo.data.synthetic.segment import segment

ATTRIBUTES = ("colour", "shape", "motion")


@dataclass(frozen=True)
class SampleSettings:
    """Sampling settings (pixels, frames, Euler steps, schedule shift, real CFG scale, negative prompt)."""

    height: int = 64
    width: int = 64
    video_length: int = 17
    infer_steps: int = 30
    flow_shift: float = 3.0
    cfg_scale: float = 1.0
    negative_prompt: str | None = None
    batch_size: int = 8

    @classmethod
    def from_card(cls, card: dict, **overrides) -> "SampleSettings":
        """Settings from a nano model card's ``sampling`` section, then ``overrides`` (None values ignored)."""
        rec = card["sampling"]
        base = dict(height=rec["video_size"][0], width=rec["video_size"][1], video_length=rec["video_length"],
                    infer_steps=rec["infer_steps"], flow_shift=rec["flow_shift"], cfg_scale=rec["cfg_scale"],
                    negative_prompt=rec.get("negative_prompt"))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def load_eval_pipeline(model_base, *, dit_weight=None, load_key: str = "module", text_len: int | None = None,
                       i2v: bool = False, loras: tuple = (), text_conditioning: str = "llm+clip"):
    """The float32 CPU pipeline of a model tree (accelerated paths applied), quietly; ``i2v`` loads the tree's
    image-to-video DiT (``hunyuan-video-i2v-720p/``).

    Args:
        loras: ``(path, scale)`` LoRA files (:func:`hyvideo.lora.load_lora_weights`, any key style) applied to the
            DiT and fused before the accelerated paths, as ``sample_video.py --lora-path --lora-fuse`` does.

    ``text_conditioning="clip"`` gives the DiT CLIP's per-token states in the place of the LLM's
    (:class:`hyvideo.text.encoders.CLIPTokenEncoder`): a DiT trained with ``model.text_conditioning: clip``, the
    text-encoder ablation of ``scripts/ablate_nano.py``.

    Raises:
        FileNotFoundError, WeightLoadError, ValueError: see :func:`hyvideo.checkpoint.loader.load_pipeline`;
            ``hyvideo.lora.LoraFormatError`` (a ValueError): a LoRA of another model or of an unknown key style;
            ValueError: an unknown ``text_conditioning``, or CLIP states whose width is not the DiT's
            ``text_states_dim``.
    """
    from hyvideo.text.encoders import CLIPTokenEncoder  # noqa: PLC0415
    from hyvideo.training.config import TEXT_CONDITIONINGS  # noqa: PLC0415

    if text_conditioning not in TEXT_CONDITIONINGS:
        raise ValueError(f"text_conditioning must be one of {list(TEXT_CONDITIONINGS)}, got {text_conditioning!r}")
    from hyvideo import accel  # noqa: PLC0415
    from hyvideo.checkpoint.loader import load_pipeline  # noqa: PLC0415

    pipe = load_pipeline(model_base, dit_weight=dit_weight, load_key=load_key, dit_dtype=torch.float32,
                         vae_dtype=torch.float32, text_dtype=torch.float32, device="cpu", text_len=text_len,
                         i2v=i2v, log=lambda *_: None)
    if loras:
        from hyvideo import lora  # noqa: PLC0415

        for path, scale in loras:
            lora.load_lora_weights(pipe.dit, path, scale=scale)
        lora.fuse_lora(pipe.dit)
    if text_conditioning == "clip":
        width = pipe.text_encoder_2.model.config.hidden_size
        if width != pipe.dit.text_states_dim:
            raise ValueError(f"text_conditioning='clip': CLIP states have width {width}, the DiT takes "
                             f"text_states_dim={pipe.dit.text_states_dim}")
        pipe.text_encoder = CLIPTokenEncoder(pipe.text_encoder_2)
    accel.apply(pipe.dit, pipe.vae, accel.AccelOptions(device="cpu"))
    return pipe


def sample_videos(pipe, prompts: list[str], seeds: list[int], s: SampleSettings, progress=None,
                  per_clip: dict | None = None, **fixed) -> torch.Tensor:
    """Sample one video per (prompt, seed) in batches of ``s.batch_size``.

    Args:
        per_clip: pipeline arguments with one entry per clip, sliced with the batch (``image``: N PIL images,
            ``video``: ``[N, 3, T, H, W]`` in [-1, 1]).
        fixed: pipeline arguments for every batch (e.g. ``strength``).

    Returns:
        ``[N, 3, T, H, W]`` float32 in [0, 1] (what the pipeline returns).
    """
    out = []
    for i in range(0, len(prompts), s.batch_size):
        sl = slice(i, i + s.batch_size)
        extra = {k: v[sl] for k, v in (per_clip or {}).items()}
        out.append(pipe(prompts[sl], height=s.height, width=s.width, video_length=s.video_length, seeds=seeds[sl],
                        infer_steps=s.infer_steps, flow_shift=s.flow_shift, embedded_guidance_scale=None,
                        cfg_scale=s.cfg_scale, negative_prompt=s.negative_prompt, vae_tiling=False, progress=False,
                        **extra, **fixed))
        if progress is not None:
            progress(min(i + s.batch_size, len(prompts)))
    return torch.cat(out)


def to_clips(videos: torch.Tensor) -> np.ndarray:
    """``[N, 3, T, H, W]`` float in [0, 1] -> ``[N, T, H, W, 3]`` uint8 RGB (rounded)."""
    return (videos.permute(0, 2, 3, 4, 1) * 255).round().to(torch.uint8).numpy()


def sample_clips(pipe, prompts: list[str], seeds: list[int], s: SampleSettings, progress=None,
                 per_clip: dict | None = None, **fixed) -> np.ndarray:
    """:func:`sample_videos` as ``[N, T, H, W, 3]`` uint8 RGB."""
    return to_clips(sample_videos(pipe, prompts, seeds, s, progress, per_clip, **fixed))


def interpolation_smoothness(clip: np.ndarray) -> float:
    """VBench's motion-smoothness formula with a linear interpolator (module docstring); ``clip`` ``[T, H, W, 3]``."""
    x = clip.astype(np.float32)
    mid = (x[:-2:2] + x[2::2]) / 2
    return float((255.0 - np.abs(x[1:-1:2] - mid).mean()) / 255.0)


def centroid_acceleration(clip: np.ndarray) -> float:
    """RMS second difference of the segmented object's centroid, % of the frame side per frame^2 (NaN if fewer
    than 3 consecutive frames show the object)."""
    c = segment(clip).centroids
    acc = c[2:] - 2 * c[1:-1] + c[:-2]
    acc = acc[~np.isnan(acc).any(1)]
    return float(np.sqrt((acc ** 2).sum(1).mean()) * 100) if len(acc) else float("nan")


def frame_features(clips: np.ndarray) -> np.ndarray:
    """Per-frame features of ``[N, T, H, W, 3]`` uint8 clips: ``[N * T, 80]`` float64 (module docstring)."""
    feats = []
    for frame in clips.reshape(-1, *clips.shape[2:]):
        thumb = cv2.resize(frame, (4, 4), interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
        bins = np.minimum((ang / np.pi * 8).astype(int), 7)
        h, w = grey.shape
        hist = []
        for cy in range(2):
            for cx in range(2):
                sl = (slice(cy * h // 2, (cy + 1) * h // 2), slice(cx * w // 2, (cx + 1) * w // 2))
                cell = np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=8)
                hist.append(cell / max(cell.sum(), 1e-6))
        feats.append(np.concatenate([thumb, *hist]))
    return np.array(feats)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b))`` of two ``[N, D]`` feature sets (float64)."""
    from scipy import linalg  # noqa: PLC0415

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def detector_view(clip: np.ndarray) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 -> the same clip area-downscaled to the data set's ``train_size_px`` (64) px when it is
    larger and square (a 128 px sample of a 128 px model, as the renders are made: 128 px source, area downscale);
    other clips unchanged."""
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415
    from hyvideo.data.synthetic.render import downscale  # noqa: PLC0415

    size = load_nano_config().train_size_px
    if clip.shape[1] == clip.shape[2] > size:
        return downscale(clip, size)
    return clip


def score_clips(clips: np.ndarray, triples: list[tuple[str, str, str]], palette: dict | None = None) -> dict:
    """Detector accuracy per attribute (%), found rate (%), and the two smoothness figures (means), plus the
    per-clip records under ``"clips"`` (with the detector's measurements, ``stats``: hue in degrees, saturation,
    travel, ...). ``palette`` (colour word -> RGB 0-255; default the data set config's) is what the detector
    classifies colours against (:func:`~hyvideo.data.synthetic.detect.detect`). Clips larger than the data set's
    ``train_size_px`` (64) are area-downscaled to it first (:func:`detector_view`): the size the detector's shape
    classifier was fitted and validated at; the smoothness figures are measured on the clips as given."""
    rows = []
    for clip, truth in zip(clips, triples):
        d = detect(detector_view(clip), palette)
        row = {"truth": list(truth), "detected": list(d.as_triple()), "found": d.found, "stats": d.stats,
               "smoothness": interpolation_smoothness(clip), "centroid_accel": centroid_acceleration(clip)}
        row.update({f"{a}_ok": got == want for a, got, want in zip(ATTRIBUTES, d.as_triple(), truth)})
        rows.append(row)
    n = len(rows)
    out = {f"{a}_acc": 100.0 * sum(r[f"{a}_ok"] for r in rows) / n for a in ATTRIBUTES}
    out["found"] = 100.0 * sum(r["found"] for r in rows) / n
    out["smoothness"] = float(np.mean([r["smoothness"] for r in rows]))
    out["centroid_accel"] = float(np.nanmean([r["centroid_accel"] for r in rows]))
    out["clips"] = rows
    return out


def breakdown(scores: dict) -> dict:
    """Accuracy per prompted word, from :func:`score_clips`'s per-clip records.

    Returns:
        ``{attribute: {word: [correct, total]}}`` for colour, shape and motion (keyed by the prompt's word, in
        first-seen order), ``"shape_by_motion"``: ``{motion word: [shape correct, total]}`` (whether the shape
        holds when the object moves), and ``"shape_read_as"``: ``{detected shape: count}``.
    """
    out = {a: {} for a in (*ATTRIBUTES, "shape_by_motion")}
    read_as: dict[str, int] = {}
    for r in scores["clips"]:
        for i, a in enumerate(ATTRIBUTES):
            cell = out[a].setdefault(r["truth"][i], [0, 0])
            cell[0] += int(r[f"{a}_ok"])
            cell[1] += 1
        cell = out["shape_by_motion"].setdefault(r["truth"][2], [0, 0])
        cell[0] += int(r["shape_ok"])
        cell[1] += 1
        read_as[r["detected"][1]] = read_as.get(r["detected"][1], 0) + 1
    out["shape_read_as"] = dict(sorted(read_as.items(), key=lambda kv: -kv[1]))
    return out


def breakdown_lines(b: dict) -> str:
    """:func:`breakdown` as text, one line per attribute: ``"  shape: circle 8/20, square 7/22, ..."``."""
    lines = [f"  {a.replace('_', ' ')}: " + ", ".join(f"{w} {c}/{n}" for w, (c, n) in b[a].items())
             for a in (*ATTRIBUTES, "shape_by_motion")]
    lines.append("  shape read as: " + ", ".join(f"{w or '(none)'} {n}" for w, n in b["shape_read_as"].items()))
    return "\n".join(lines)


def render_reference(triples: list[tuple[str, str, str]], seeds: list[int], s: SampleSettings,
                     cfg=None) -> np.ndarray:
    """Ground-truth renders ``[N, T, H, W, 3]`` of the (triple, seed) pairs: plain background for even seeds,
    gradient for odd ones, at the sampling size and length (square sizes only). ``cfg``: the data set config
    whose words the triples use (default ``configs/nano/dataset.yaml``)."""
    from hyvideo.data.synthetic.render import render_eval_clip  # noqa: PLC0415

    return np.stack([render_eval_clip(t, seed, size_px=s.height, num_frames=s.video_length,
                                      background=("plain", "gradient")[seed % 2], cfg=cfg)
                     for t, seed in zip(triples, seeds)])


def summary_table(rows: dict[str, dict]) -> str:
    """A fixed-width table of ``{name: scores}`` (accuracies %, found %, smoothness, centroid accel, FD)."""
    cols = [("colour_acc", "colour %", "{:.1f}"), ("shape_acc", "shape %", "{:.1f}"), ("motion_acc", "motion %", "{:.1f}"),
            ("found", "found %", "{:.1f}"), ("smoothness", "smooth", "{:.4f}"), ("centroid_accel", "accel %", "{:.3f}"),
            ("fd", "FD", "{:.3f}")]
    width = max(len(k) for k in rows) + 2
    lines = ["".ljust(width) + "".join(h.rjust(10) for _, h, _ in cols)]
    for name, r in rows.items():
        lines.append(name.ljust(width) + "".join((f.format(r[k]) if k in r else "-").rjust(10) for k, _, f in cols))
    return "\n".join(lines)


__all__ = ["SampleSettings", "load_eval_pipeline", "sample_videos", "sample_clips", "to_clips", "score_clips",
           "render_reference", "frame_features", "frechet_distance", "interpolation_smoothness",
           "centroid_acceleration", "summary_table", "breakdown", "breakdown_lines", "asdict"]
