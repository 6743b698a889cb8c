"""Tiny random models in the on-disk formats the evaluation loads, and small synthetic videos.

- ``tiny_i3d``: a TorchScript file with the call signature of StyleGAN-V's ``i3d_torchscript.pt``
  (``model(x, rescale=, resize=, return_features=)``, 400 logits).
- ``tiny_videomae``: a ``VideoMAEForVideoClassification`` folder (``save_pretrained``) with a preprocessor config.
- ``tiny_clip``: a full ``CLIPModel`` folder with a ``CLIPProcessor`` (offline tiny tokenizer).
- ``tiny_vit``: a ``ViTModel`` folder (the layout of ``facebook/dino-vitb16``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class TinyI3D(nn.Module):
    """Same call signature and output (400 logits, or softmax without ``return_features``) as the I3D port."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=(3, 7, 7), stride=(2, 4, 4))
        self.fc = nn.Linear(8 * 2, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        if rescale:
            x = x / 127.5 - 1.0
        h = torch.relu(self.conv(x))
        h = torch.cat([h.mean((2, 3, 4)), h.amax((2, 3, 4))], dim=1)
        logits = self.fc(h)
        return logits if return_features else torch.softmax(logits, dim=1)


@pytest.fixture(scope="session")
def tiny_i3d(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(TinyI3D().eval()).save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_videomae(tmp_path_factory):
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    folder = tmp_path_factory.mktemp("videomae")
    cfg = VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=32,
                         num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=5,
                         use_mean_pooling=True)
    torch.manual_seed(0)
    VideoMAEForVideoClassification(cfg).eval().save_pretrained(folder)
    # ImageNet mean / std, as MCG-NJU/videomae-base's preprocessor_config.json
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                           image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def build_tiny_clip_folder(folder, seed: int = 2):
    """Seed 2: random frames get positive cosines with some tiny-corpus captions and negative with others."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPVisionConfig,
    )

    from hyvideo.testing.tiny_text import build_clip_tokenizer

    tok = build_clip_tokenizer()
    text = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, projection_dim=16)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)).eval() \
        .save_pretrained(folder)
    image_proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_proc, tokenizer=tok).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip_folder(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory):
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
    ViTModel(cfg, add_pooling_layer=False).eval().save_pretrained(folder)
    return folder


def moving_square(num_frames: int = 13, size: int = 64, side: int = 16, step: int = 3, seed: int = 0) -> torch.Tensor:
    """``[T, size, size, 3]`` uint8: a textured square moving ``step`` px right per frame on a textured background."""
    assert 2 + (num_frames - 1) * step + side <= size, "the square must stay inside the frame"
    rng = np.random.default_rng(seed)
    bg = (rng.random((size, size, 3)) * 60 + 40).astype(np.uint8)
    tex = (rng.random((side, side, 3)) * 120 + 120).astype(np.uint8)
    frames = []
    for t in range(num_frames):
        f = bg.copy()
        x = 2 + t * step
        f[size // 2 - side // 2: size // 2 + side // 2, x:x + side] = tex
        frames.append(f)
    return torch.from_numpy(np.stack(frames))


def static_video(num_frames: int = 17, size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    frame = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    return torch.from_numpy(np.repeat(frame[None], num_frames, axis=0))
