"""hyvideo: train and sample HunyuanVideo-class text-to-video models.

Shape glossary used in every docstring of this package:

- Pixels: ``[B, C, T, H, W]``, float values in [-1, 1], ``T = 4k + 1`` frames, H and W in pixels.
- Latents: ``[B, C_z, T_z, H_z, W_z]`` with ``C_z = 16``, ``T_z = (T - 1) / 4 + 1``, ``H_z = H / 8``.
- Tokens: ``[B, L, D]`` with ``L = L_img + L_txt`` and ``L_img = T_z * (H_z / 2) * (W_z / 2)``.
- Heads: ``[B, L, N_h, D_h]``.
- Text: ``[B, L_txt, D_txt]`` with a mask ``[B, L_txt]`` (1/True = token, 0/False = padding).

Conventions that cross APIs:

- Flow time sigma is in [0, 1]; sigma = 1 is pure noise. The DiT's ``t`` is ``sigma * 1000``.
- The DiT predicts the velocity ``noise - data`` (the released ``--flow-reverse`` convention).
- Embedded guidance enters the DiT as ``embedded_guidance_scale * 1000``.
- Token order in joint attention is ``[img, txt]`` (image first), unlike Flux's ``[txt, img]``.

The heavy classes are imported lazily, so ``import hyvideo`` stays cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    "HYVideoDiffusionTransformer": "hyvideo.models.dit",
    "AutoencoderKLCausal3D": "hyvideo.vae.autoencoder",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hyvideo' has no attribute {name!r}")
