"""Text-area ratio from a real text detector: PP-OCRv4 detection (DB) shipped in ``rapidocr-onnxruntime``.

Only the detector runs (no recognition): its quadrilaterals are filled into a mask and the ratio of
masked to total pixels is the score. The ONNX model sits inside the wheel, so this works offline.
Reference: Liao et al., "Real-time Scene Text Detection with Differentiable Binarization", AAAI 2020.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from hyvideo.data.curation.video import shrink_long_side


class TextDetector:
    """PP-OCRv4 text detector, single-threaded (workers are processes).

    Args:
        box_thresh: DB box score threshold (0-1); raise it to cut false positives on texture.
        max_side_px: frames are downscaled (never upscaled) so their long side is at most this many pixels;
            the detector then runs at that size (rapidocr's ``limit_type="max"``). Upscaling small frames
            (the wheel's default ``limit_type="min"``, 736 px) multiplies false positives and run time.

    Raises:
        ImportError: ``rapidocr-onnxruntime`` is not installed (``pip install hyvideo[curation]``).
    """

    def __init__(self, box_thresh: float = 0.6, max_side_px: int = 960):
        import rapidocr_onnxruntime  # noqa: PLC0415
        import yaml  # noqa: PLC0415
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as _Det  # noqa: PLC0415

        root = Path(rapidocr_onnxruntime.__file__).parent
        cfg = yaml.safe_load((root / "config.yaml").read_text())["Det"]
        cfg.update(model_path=str(root / cfg["model_path"]), box_thresh=box_thresh, limit_side_len=max_side_px,
                   limit_type="max", intra_op_num_threads=1, inter_op_num_threads=1)
        self._det = _Det(cfg)
        self.max_side_px = max_side_px

    def boxes(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Text quadrilaterals ``[N, 4, 2]`` float32 in the pixels of the (downscaled) frame; N may be 0."""
        boxes, _ = self._det(shrink_long_side(frame_bgr, self.max_side_px))
        if boxes is None or len(boxes) == 0:
            return np.zeros((0, 4, 2), np.float32)
        return np.asarray(boxes, np.float32)

    def area_ratio(self, frame_bgr: np.ndarray) -> float:
        """Fraction (0-1) of the frame's pixels inside detected text boxes (overlaps counted once)."""
        frame_bgr = shrink_long_side(frame_bgr, self.max_side_px)
        boxes = self.boxes(frame_bgr)
        if len(boxes) == 0:
            return 0.0
        mask = np.zeros(frame_bgr.shape[:2], np.uint8)
        cv2.fillPoly(mask, [b.round().astype(np.int32) for b in boxes], 1)
        return float(mask.mean())


@functools.lru_cache(maxsize=4)
def get_text_detector(box_thresh: float, max_side_px: int) -> TextDetector:
    """One detector per process and setting (the ONNX session takes ~0.3 s to build)."""
    return TextDetector(box_thresh, max_side_px)


def clip_text_area(frames_bgr: list[np.ndarray], detector: TextDetector) -> float:
    """Median text-area ratio (0-1) over the given frames of a clip.

    The median keeps burned-in text (present in most frames) and drops one-frame false positives.
    """
    if not frames_bgr:
        raise ValueError("clip_text_area needs at least one frame")
    return float(np.median([detector.area_ratio(f) for f in frames_bgr]))
