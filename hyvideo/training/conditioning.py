"""Frozen conditioning models for DiT training: the two text encoders and the VAE (on-the-fly latents).

``text_encoder: "tiny"`` builds the offline tiny Llama + CLIP of :mod:`hyvideo.testing.tiny_text` (tests, demos);
any other value is a folder with the released ``text_encoder/`` and ``text_encoder_2/`` (or a diffusers tree).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import DiTModelConfig


class TextConditioner:
    """Encodes captions to the DiT's text inputs, with CFG text dropout (dropped captions become ``""``).

    ``cfg.text_conditioning == "clip"`` (ablation) gives CLIP's per-token states as ``text_states``
    (``[B, 77, D_2]``) instead of the LLM's.

    Args:
        cfg: model section of the run config (``text_encoder``, ``text_max_length``).
        device: where the encoders run.
    """

    def __init__(self, cfg: DiTModelConfig, device: torch.device):
        from hyvideo.text.encoders import CLIPTextEncoder, CLIPTokenEncoder, LLMTextEncoder  # noqa: PLC0415

        if cfg.text_encoder == "tiny":
            from hyvideo.testing import tiny_text as tiny  # noqa: PLC0415

            tok, ctok = tiny.build_llama_tokenizer(), tiny.build_clip_tokenizer()
            self.llm = LLMTextEncoder(tiny.build_tiny_llm(tok).to(device), tok, text_len=cfg.text_max_length)
            self.clip = CLIPTextEncoder(tiny.build_tiny_clip(ctok).to(device), ctok)
        else:
            from hyvideo.checkpoint.text import load_clip_text_encoder, load_llm_text_encoder  # noqa: PLC0415

            root = Path(cfg.text_encoder)
            if not root.exists():
                raise FileNotFoundError(f"model.text_encoder folder not found: {root} (use 'tiny' for tests)")
            self.llm = load_llm_text_encoder(root, dtype=torch.bfloat16, device=device, text_len=cfg.text_max_length)
            self.clip = load_clip_text_encoder(root, dtype=torch.bfloat16, device=device)
        if cfg.text_conditioning == "clip":  # ablation: no LLM, CLIP's token states in its place
            self.llm = CLIPTokenEncoder(self.clip)

    @torch.no_grad()
    def __call__(self, captions: list[str], num_frames: int, drop: torch.Tensor | None = None) -> dict:
        """Text inputs for ``B`` captions.

        Args:
            captions: ``B`` strings.
            num_frames: frames of the batch (1 selects the image prompt template).
            drop: ``[B]`` bool; True replaces the caption by the empty string.

        Returns:
            ``text_states`` ``[B, L_txt, D_txt]`` float32, ``text_mask`` ``[B, L_txt]`` int64,
            ``text_states_2`` ``[B, D_2]`` float32.
        """
        if drop is not None:
            captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        states, mask = self.llm(captions, num_frames, allow_empty=True)
        pooled = self.clip(captions, allow_empty=True)
        return {"text_states": states.float(), "text_mask": mask.long(), "text_states_2": pooled.float()}


def frozen_vae_precision(device: torch.device) -> torch.dtype:
    """Weight / compute dtype of the frozen VAE on ``device``: bf16 on CUDA (fp16 where the GPU has no bf16),
    float32 on CPU (bf16 convs are not fast on every CPU; exact reference numerics for CPU tests)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def build_frozen_vae(cfg: DiTModelConfig, device: torch.device, seed: int = 0):
    """The VAE used to encode training clips and decode sample latents, tiled (``model.vae_tiling``, default on)
    and in :func:`frozen_vae_precision` (bf16 on CUDA).

    Tiling (spatial and temporal, the released sampler's ``--vae-tiling``) bounds the activation memory: untiled,
    the first encoder conv of one 720p x 129-frame clip is a [1, 128, 129, 720, 1280] fp32 tensor (~57 GiB).
    Weights from ``model.vae_weights`` (a ``vae/`` folder or a state dict file), or seeded random weights when
    empty (tests only: the same on every rank).

    Raises:
        FileNotFoundError: ``vae_weights`` is set but missing.
    """
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    dtype = frozen_vae_precision(device)
    path = Path(cfg.vae_weights) if cfg.vae_weights else None
    if path is not None and path.is_dir():
        from hyvideo.checkpoint.io import load_vae  # noqa: PLC0415

        vae = load_vae(path, dtype=dtype, device=device)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = AutoencoderKLCausal3D.from_config(cfg.vae_config)
        if path is not None:
            from hyvideo.checkpoint.io import load_into  # noqa: PLC0415
            from hyvideo.training.state import read_weights  # noqa: PLC0415

            load_into(vae, read_weights(path), path)
        vae = vae.to(device=device, dtype=dtype)
    vae.enable_tiling(cfg.vae_tiling)
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Unscaled latent means ``[B, C_z, T_z, H_z, W_z]`` float32 of pixels ``[B, 3, T, H, W]`` (uint8 in
    [0, 255] or float in [-1, 1]; ``latent_dist.mode()``, as the released I2V latent cache; multiply by
    ``latent_scale`` to train)."""
    from hyvideo.data.buckets import pixels_to_unit  # noqa: PLC0415

    dtype = next(vae.parameters()).dtype
    return vae.encode(pixels_to_unit(pixels).to(dtype)).latent_dist.mode().float()
