"""Model-based scores that need weights from a local path: watermark/logo probability and aesthetics.

Both are skipped (score None, reason logged once per process) when the config gives no path; the tier
filters then ignore them. Nothing is downloaded.

- Watermark/logo: an ONNX image classifier (e.g. an export of the LAION watermark detector) run with
  onnxruntime. Input ``[1, 3, S, S]`` float32 RGB in [0, 1] (S read from the model), output ``[1, 2]``
  logits (class 1 = watermark) or ``[1, 1]`` a logit; the clip score is the max probability over frames.
- Aesthetics: a linear (or MLP) regressor on L2-normalised CLIP image embeddings, as the LAION aesthetic
  predictor; stored as safetensors/torch state dict of ``torch.nn.Linear(D, 1)`` keys ``weight``, ``bias``.
"""

from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def log_skip(name: str, reason: str) -> None:
    """Log once per process why a score is skipped."""
    log.warning("%s skipped: %s", name, reason)


class WatermarkDetector:
    """ONNX watermark/logo classifier from a local file.

    Args:
        model_path: ``.onnx`` file.

    Raises:
        FileNotFoundError / onnxruntime errors: the model cannot be loaded.
    """

    def __init__(self, model_path: str):
        import onnxruntime as ort  # noqa: PLC0415

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        size = inp.shape[-1]
        self.size = size if isinstance(size, int) else 224

    def probability(self, frame_bgr: np.ndarray) -> float:
        """Watermark probability (0-1) of one ``[H, W, 3]`` uint8 BGR frame."""
        x = cv2.resize(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), (self.size, self.size), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float32) / 255).transpose(2, 0, 1)[None]
        out = np.asarray(self.session.run(None, {self.input_name: x})[0], np.float64).reshape(-1)
        if out.size == 1:
            return float(1 / (1 + np.exp(-out[0])))
        e = np.exp(out - out.max())
        return float(e[1] / e.sum())

    def clip_score(self, frames_bgr: list[np.ndarray]) -> float:
        """Max probability over the frames (a logo in any key frame counts)."""
        return max(self.probability(f) for f in frames_bgr)


class AestheticHead:
    """Linear aesthetic regressor on unit CLIP image embeddings, from a local safetensors/.pt state dict.

    Args:
        path: file with ``weight [1, D]`` and ``bias [1]``.

    Raises:
        KeyError: the state dict lacks ``weight``/``bias``.
    """

    def __init__(self, path: str):
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file  # noqa: PLC0415

            sd = load_file(path)
        else:
            import torch  # noqa: PLC0415

            sd = {k: v.float().numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
        self.weight = np.asarray(sd["weight"], np.float32).reshape(-1)
        self.bias = float(np.asarray(sd["bias"]).reshape(-1)[0])

    def __call__(self, clip_embedding: np.ndarray) -> float:
        """Score of a ``[D]`` unit CLIP embedding (the regressor's scale, e.g. 1-10 for LAION's)."""
        if clip_embedding.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"embedding dim {clip_embedding.shape[-1]} != aesthetic head dim {self.weight.shape[0]}")
        return float(clip_embedding @ self.weight + self.bias)


@functools.lru_cache(maxsize=2)
def get_watermark_detector(path: str) -> WatermarkDetector:
    """One detector per process and path."""
    return WatermarkDetector(path)


@functools.lru_cache(maxsize=2)
def get_aesthetic_head(path: str) -> AestheticHead:
    """One head per process and path."""
    return AestheticHead(path)
