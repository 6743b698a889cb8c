"""Validate the attribute detector on rendered ground-truth clips of the evaluation conditions.

Clips: one object, no camera move, plain or gradient background, ``train_size_px`` (64) px, ``train_frames``
(17) frames, rendered at the source resolution and area-downscaled (:func:`render_eval_clip`), optionally
down-up blurred by ``blur_factor`` (:func:`hyvideo.data.synthetic.detect.degrade`, a stand-in for a lossy VAE).
Triples cycle through every valid colour x shape x motion triple (held-out ones included), so each word is
equally represented.
"""

from __future__ import annotations

import time
from collections import Counter

from tqdm import tqdm

from hyvideo.data.synthetic.attributes import load_nano_config
from hyvideo.data.synthetic.detect import degrade, detect
from hyvideo.data.synthetic.render import render_eval_clip

ATTRIBUTES = ("colour", "shape", "motion")


def accuracy(truth: list[tuple[str, str, str]], predicted: list[tuple[str, str, str]]) -> dict[str, float]:
    """Per-attribute accuracy (0-1) of predicted triples against true ones.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(truth) != len(predicted) or not truth:
        raise ValueError(f"need equally long non-empty lists, got {len(truth)} and {len(predicted)}")
    return {a: sum(t[i] == p[i] for t, p in zip(truth, predicted)) / len(truth) for i, a in enumerate(ATTRIBUTES)}


def validate_detector(num_clips: int, seed: int = 0, blur_factor: int = 1, progress: bool = False) -> dict:
    """Render ``num_clips`` ground-truth clips, detect, and report per-attribute accuracy.

    Returns:
        ``{"accuracy": {colour, shape, motion}, "errors": Counter of (attribute, true, predicted),
        "num_clips", "blur_factor", "seconds"}``.
    """
    cfg = load_nano_config()
    triples = cfg.valid_triples()
    truth, pred, t0 = [], [], time.perf_counter()
    for i in tqdm(range(num_clips), desc=f"detector x{blur_factor}", unit="clip", disable=not progress):
        triple = triples[(i * 7919 + seed) % len(triples)]
        background = ("plain", "gradient")[i % 2]
        clip = degrade(render_eval_clip(triple, seed * 1_000_003 + i, background=background), blur_factor)
        truth.append(triple)
        pred.append(detect(clip).as_triple())
    errors = Counter((a, t[k], p[k]) for t, p in zip(truth, pred) for k, a in enumerate(ATTRIBUTES) if t[k] != p[k])
    return {"accuracy": accuracy(truth, pred), "errors": errors, "num_clips": num_clips, "blur_factor": blur_factor,
            "seconds": round(time.perf_counter() - t0, 1)}
