"""Clip embeddings, de-duplication by cosine similarity, and K-means concept balancing.

HunyuanVideo (arXiv 2412.03603, data filtering): embeddings of clips are used to remove duplicates and
to balance concepts with k-means over the embeddings (the paper used ~10k centres). Embeddings come from a
local CLIP model (``transformers.CLIPModel`` image tower, mean over key frames) when ``clip_model`` is
given; otherwise from a colour thumbnail (16x9 pixels of the mean key frame, Lab, zero-mean, unit norm),
which finds near-duplicates but carries little semantics (logged once).
"""

from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)


def thumbnail_embedding(frames_bgr: list[np.ndarray]) -> np.ndarray:
    """``[432]`` float32 unit vector: Lab thumbnail (16x9x3) of the mean key frame, mean removed."""
    if not frames_bgr:
        raise ValueError("thumbnail_embedding needs at least one frame")
    small = [cv2.resize(f, (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32) / 255 for f in frames_bgr]
    lab = cv2.cvtColor(np.mean(small, 0).astype(np.float32), cv2.COLOR_BGR2Lab).ravel()
    lab = lab - lab.mean()
    return (lab / max(float(np.linalg.norm(lab)), 1e-6)).astype(np.float32)


class ClipEmbedder:
    """CLIP image embeddings from a local ``transformers`` checkpoint (no download: ``local_files_only``).

    Args:
        model_path: directory with a ``CLIPModel`` (config, weights, image processor).

    Raises:
        OSError: the directory does not hold a loadable CLIP model.
    """

    def __init__(self, model_path: str):
        import torch  # noqa: PLC0415
        from transformers import CLIPImageProcessor, CLIPModel  # noqa: PLC0415

        self.model = CLIPModel.from_pretrained(model_path, local_files_only=True).eval()
        self.processor = CLIPImageProcessor.from_pretrained(model_path, local_files_only=True)
        self._torch = torch

    def __call__(self, frames_bgr: list[np.ndarray]) -> np.ndarray:
        """``[D]`` float32 unit vector: normalised mean of the frames' CLIP image embeddings."""
        rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_bgr]
        with self._torch.no_grad():
            pix = self.processor(images=rgb, return_tensors="pt")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pix)
            feats = out if isinstance(out, self._torch.Tensor) else out.pooler_output
            feats = self._torch.nn.functional.normalize(feats.float(), dim=-1).mean(0)
        e = feats.numpy()
        return (e / max(float(np.linalg.norm(e)), 1e-6)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def get_clip_embedder(model_path: str) -> ClipEmbedder:
    """One embedder per process and path."""
    return ClipEmbedder(model_path)


def deduplicate(emb: np.ndarray, threshold: float, block: int = 4096) -> np.ndarray:
    """Greedy near-duplicate removal: a clip is a duplicate of the first earlier clip with cosine >= threshold.

    Args:
        emb: ``[N, D]`` float32 unit vectors, in a deterministic order (the first of a group is kept).
        threshold: cosine similarity in [-1, 1].
        block: rows compared at once (memory ``block x N`` floats).

    Returns:
        ``[N]`` int64: ``-1`` for kept clips, otherwise the index of the kept clip it duplicates.
    """
    n = len(emb)
    dup_of = np.full(n, -1, np.int64)
    for s in range(0, n, block):
        sims = emb[s:s + block] @ emb.T  # [b, N]
        for r in range(sims.shape[0]):
            i = s + r
            if dup_of[i] != -1:
                continue
            later = np.nonzero(sims[r, i + 1:] >= threshold)[0] + i + 1
            later = later[dup_of[later] == -1]
            dup_of[later] = i
    return dup_of


def kmeans_labels(emb: np.ndarray, num_clusters: int, min_cluster_size: int, seed: int = 0) -> np.ndarray:
    """K-means concept clusters ``[N]`` int64 (scikit-learn ``KMeans``; ``MiniBatchKMeans`` above 50k clips).

    K is ``num_clusters`` reduced to ``max(1, N // min_cluster_size)``.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans  # noqa: PLC0415

    n = len(emb)
    k = max(1, min(num_clusters, n // max(1, min_cluster_size)))
    if n == 0 or k == 1:
        return np.zeros(n, np.int64)
    if n > 50_000:
        km = MiniBatchKMeans(n_clusters=k, batch_size=8192, n_init=3, random_state=seed)
    else:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed)
    return km.fit_predict(emb).astype(np.int64)


def deduplicate_by_cluster(emb: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`deduplicate` inside each K-means cluster (SemDeDup, Abbas et al. 2023): ``O(sum n_c^2)``
    instead of ``O(N^2)``; near-duplicates split across two clusters are missed. Returns ``dup_of [N]``
    with indices into ``emb`` (-1 = kept)."""
    dup_of = np.full(len(emb), -1, np.int64)
    for c in np.unique(labels):
        members = np.nonzero(labels == c)[0]  # ascending, so "first of a group" keeps the global order
        d = deduplicate(emb[members], threshold)
        dup_of[members[d >= 0]] = members[d[d >= 0]]
    return dup_of


def balance_weights(labels: np.ndarray, alpha: float) -> np.ndarray:
    """Per-clip resampling weights that flatten large clusters.

    A cluster of size ``n_c`` is drawn with probability proportional to ``n_c ** alpha``, shared equally by
    its clips, so a clip's weight is ``n_c ** (alpha - 1)``; weights are scaled to mean 1 (sampling with them
    keeps the epoch length). ``alpha = 1`` keeps natural frequencies, ``alpha = 0`` makes every concept
    equally likely.

    Args:
        labels: ``[N]`` cluster ids (>= 0).
        alpha: flattening exponent in [0, 1].

    Returns:
        ``[N]`` float64.
    """
    if len(labels) == 0:
        return np.zeros(0)
    sizes = np.bincount(labels).astype(np.float64)
    w = sizes[labels] ** (alpha - 1.0)
    return w * (len(labels) / w.sum())


def concept_weights(emb: np.ndarray, num_clusters: int, min_cluster_size: int, alpha: float,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K-means over embeddings and balancing weights: ``(cluster_id [N] int64, weight [N] float64)``.

    See :func:`kmeans_labels` and :func:`balance_weights`.
    """
    labels = kmeans_labels(emb, num_clusters, min_cluster_size, seed)
    return labels, balance_weights(labels, alpha)
