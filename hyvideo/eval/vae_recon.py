"""VAE reconstruction quality: encode -> posterior mode -> decode, scored with PSNR / SSIM / LPIPS on 8-bit RGB.

Any VAE loads through :func:`load_eval_vae`: our :class:`~hyvideo.vae.autoencoder.AutoencoderKLCausal3D` from the
official ``ckpts/hunyuan-video-t2v-720p/vae`` layout, or a diffusers ``AutoencoderKL*`` folder (``vae/`` of a
diffusers pipeline, e.g. ``AutoencoderKLHunyuanVideo``, ``AutoencoderKLWan``, the image ``AutoencoderKL``) with
diffusers' own class. The reference frames are the clip's frames after the resize / crop to the evaluation size,
in 8 bits; the reconstruction is clamped to [-1, 1] and rounded to 8 bits before scoring. Latents are not scaled
(scaling is a no-op round trip).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .frame_metrics import METRICS, aggregate, frame_metrics, summarize
from .media import MediaItem, count_frames, read_frames, resize_frames, to_uint8, to_unit

log = logging.getLogger(__name__)


@dataclass
class EvalVAE:
    """A loaded VAE and what the evaluation needs to know about it.

    Attributes:
        module: the model (eval mode, no grad).
        impl: ``"ours"`` or ``"diffusers"``.
        class_name: the model class.
        source: the folder it came from.
        spatial: spatial compression factor (H and W must be multiples of it).
        temporal: temporal compression factor r (frames must be ``1 + r k``), or None for an image VAE (frames are
            encoded one by one) or a video VAE whose config does not state it.
        image_vae: True for a 2D VAE.
    """

    module: torch.nn.Module
    impl: str
    class_name: str
    source: str
    spatial: int
    temporal: int | None
    image_vae: bool

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def check_frames(self, num_frames: int) -> None:
        """Raise ValueError unless ``num_frames`` suits the VAE (``1 + r k`` for a causal video VAE)."""
        if num_frames < 1:
            raise ValueError(f"frame count must be >= 1, got {num_frames}")
        if not self.image_vae and self.temporal and (num_frames - 1) % self.temporal:
            raise ValueError(f"{self.class_name} needs 1 + {self.temporal}k frames (1, {1 + self.temporal}, "
                             f"{1 + 2 * self.temporal}, ...), got {num_frames}")

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode to the posterior mode and decode.

        Args:
            x: ``[B, 3, T, H, W]`` float in [-1, 1].

        Returns:
            ``[B, 3, T, H, W]`` float32 (not clamped).

        Raises:
            ValueError: the VAE returned another shape or non-finite values.
        """
        b, _, t = x.shape[:3]
        inp = x.to(self.device, self.dtype)
        if self.image_vae:
            inp = inp.transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
        z = self.module.encode(inp).latent_dist.mode()
        y = self.module.decode(z).sample.float()
        if self.image_vae:
            y = y.view(b, t, *y.shape[1:]).transpose(1, 2)
        if y.shape != x.shape:
            raise ValueError(f"{self.class_name} returned {tuple(y.shape)} for input {tuple(x.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError(f"{self.class_name} returned non-finite pixels (dtype {self.dtype}; try fp32)")
        return y.cpu()


def resolve_vae_folder(path: str | os.PathLike) -> Path:
    """The VAE folder of ``path``: itself, or its ``hunyuan-video-t2v-720p/vae`` / ``vae`` subfolder (model trees).

    Raises:
        FileNotFoundError: no ``config.json`` found (the message names where it looked).
    """
    from hyvideo.checkpoint.io import OFFICIAL_VAE_SUBDIR  # noqa: PLC0415

    base = Path(path)
    for cand in (base, base / OFFICIAL_VAE_SUBDIR, base / "vae"):
        if (cand / "config.json").is_file():
            return cand
    raise FileNotFoundError(f"no VAE at {base}: expected config.json + pytorch_model.pt (official layout) or "
                            f"config.json + diffusion_pytorch_model.safetensors (diffusers) in {base}, "
                            f"{base / OFFICIAL_VAE_SUBDIR} or {base / 'vae'}")


def load_eval_vae(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", impl: str = "auto", tiled: bool = False) -> EvalVAE:
    """Load a VAE for evaluation.

    Args:
        path: a VAE folder or a model tree holding one (see :func:`resolve_vae_folder`).
        dtype: weight / compute dtype.
        device: where it runs.
        impl: ``"auto"`` (official layout -> ours, diffusers folder -> diffusers' class), ``"ours"`` (also for a
            diffusers ``AutoencoderKLHunyuanVideo`` folder, via the key converter) or ``"diffusers"``.
        tiled: turn on the VAE's spatial and temporal tiling (``enable_tiling()``).

    Raises:
        FileNotFoundError: no VAE at ``path``.
        ValueError: unknown ``impl`` or a class that is not an ``AutoencoderKL*``.
    """
    if impl not in ("auto", "ours", "diffusers"):
        raise ValueError(f"impl must be auto, ours or diffusers, got {impl!r}")
    folder = resolve_vae_folder(path)
    cfg = json.loads((folder / "config.json").read_text())
    cls = cfg.get("_class_name") or "AutoencoderKLCausal3D"
    official = cls == "AutoencoderKLCausal3D" or (folder / "pytorch_model.pt").is_file()
    if official and impl == "diffusers":
        raise ValueError(f"{folder} is in the official layout; load it with impl 'ours' or 'auto'")
    if official or (impl == "ours" and cls == "AutoencoderKLHunyuanVideo"):
        from hyvideo import accel  # noqa: PLC0415
        from hyvideo.checkpoint.io import load_vae  # noqa: PLC0415

        vae = load_vae(folder, dtype=dtype, device=device)
        accel.apply(vae=vae, options=accel.AccelOptions(device=device))  # the sampler's decode paths
        vae.enable_tiling(tiled)
        return EvalVAE(vae.requires_grad_(False), "ours", "AutoencoderKLCausal3D", str(folder),
                       vae.spatial_compression_ratio, vae.time_compression_ratio, False)
    import diffusers  # noqa: PLC0415

    if not cls.startswith("AutoencoderKL") or not hasattr(diffusers, cls):
        raise ValueError(f"{folder}: config _class_name {cls!r} is not a diffusers AutoencoderKL* class")
    vae = getattr(diffusers, cls).from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    vae = vae.to(device).eval().requires_grad_(False)
    if tiled:
        vae.enable_tiling()
    spatial = cfg.get("spatial_compression_ratio") or 2 ** (len(cfg.get("block_out_channels", [0] * 4)) - 1)
    return EvalVAE(vae, "diffusers", cls, str(folder), int(spatial), cfg.get("temporal_compression_ratio"),
                   cls == "AutoencoderKL")


def check_inputs(vae: EvalVAE, items: list[MediaItem], num_frames: int) -> None:
    """Fail before any model work when a clip is too short or the frame count does not suit the VAE.

    Raises:
        ValueError: listing every clip that is too short.
    """
    vae.check_frames(num_frames)
    short = [(it.name, n) for it in items if not it.is_image and (n := count_frames(it)) < num_frames]
    if short:
        raise ValueError(f"{len(short)} clip(s) have fewer than {num_frames} frames: "
                         + ", ".join(f"{name} ({n})" for name, n in short[:10]))


def reconstruct_frames(vae: EvalVAE, frames: torch.Tensor) -> torch.Tensor:
    """8-bit reconstruction of 8-bit frames: ``[T, H, W, 3]`` uint8 -> ``[T, H, W, 3]`` uint8 (clamped, rounded);
    a batch of clips ``[B, T, H, W, 3]`` goes through the VAE as one batch and comes back ``[B, T, H, W, 3]``.

    T must suit the VAE (``1 + 4k`` for ours) and H, W be multiples of ``vae.spatial``. Score the result with
    :func:`hyvideo.eval.frame_metrics.frame_metrics` ``(frames, reconstruct_frames(vae, frames))``.
    """
    clips = frames if frames.dim() == 5 else frames[None]
    out = to_uint8(vae.reconstruct(torch.cat([to_unit(c) for c in clips])).permute(0, 2, 3, 4, 1).clamp(-1, 1))
    return out if frames.dim() == 5 else out[0]


def vae_reconstruction(vae: EvalVAE, items: list[MediaItem], *, num_frames: int,
                       size: tuple[int, int] | None = None, lpips: torch.nn.Module | None = None,
                       metrics=METRICS, save_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Reconstruct each clip and score it against its input.

    Args:
        vae: from :func:`load_eval_vae`.
        items: clips and images (:func:`hyvideo.eval.media.list_media`); images are one frame.
        num_frames: frames per video clip, from the item's start frame.
        size: ``(h, w)`` px to resize-to-cover and centre-crop to; None = native size cropped to a multiple of
            ``vae.spatial``.
        lpips: LPIPS module (required if ``"lpips"`` in ``metrics``).
        metrics: subset of ``("psnr", "ssim", "lpips")``.
        save_dir: also write each reconstruction as ``<name>.mp4`` (24 fps) / ``.png`` here.
        progress: show a tqdm bar (clips/s) on stderr.

    Returns:
        ``{"videos": [{"name", "frames", "height", "width", "seconds", <metric>: mean, "per_frame": {...}}],
        "mean": aggregate(...)}`` (see :func:`hyvideo.eval.frame_metrics.aggregate`); ``seconds`` is the
        encode + decode wall time of the clip.

    Raises:
        ValueError: a clip is too short, the frame count does not suit the VAE, or a metric is not finite.
    """
    from tqdm import tqdm  # noqa: PLC0415

    metrics = tuple(metrics)
    check_inputs(vae, items, num_frames)
    rows, frames_all = [], []
    for item in tqdm(items, desc="vae reconstruction", unit="clip", disable=not progress):
        ref = resize_frames(read_frames(item, None if item.is_image else num_frames), size, vae.spatial)
        t0 = time.perf_counter()
        cand = reconstruct_frames(vae, ref)
        seconds = time.perf_counter() - t0
        per_frame = frame_metrics(ref, cand, lpips=lpips, metrics=metrics)
        if save_dir is not None:
            _save(cand, Path(save_dir), item)
        frames_all.append(per_frame)
        rows.append({"name": item.name, "frames": int(ref.shape[0]), "height": int(ref.shape[1]),
                     "width": int(ref.shape[2]), "seconds": round(seconds, 3), **summarize(per_frame),
                     "per_frame": {m: v.tolist() for m, v in per_frame.items()}})
    return {"videos": rows, "mean": aggregate([{m: r[m] for m in metrics} for r in rows], frames_all)}


def _save(frames: torch.Tensor, folder: Path, item: MediaItem) -> Path:
    from hyvideo.utils.video_io import save_video  # noqa: PLC0415

    if item.is_image:
        from PIL import Image  # noqa: PLC0415

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{Path(item.name).stem}.png"
        Image.fromarray(frames[0].numpy()).save(path)
        return path
    # save_video truncates x * 255; the half step makes that return the same 8-bit values.
    video = (frames.permute(3, 0, 1, 2).float() + 0.5) / 255.0
    return save_video(video, folder / f"{Path(item.name).stem}.mp4", fps=24)
