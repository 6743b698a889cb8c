"""LPIPS perceptual distance (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), VGG16.

No torchvision and no download: the VGG16 trunk is rebuilt here with torchvision's module indices, so
``torchvision.models.vgg16`` state dicts (``vgg16-397923af.pth``, keys ``features.N.weight``) load as they are,
and the linear heads load from the ``lpips`` package's shipped ``weights/v0.1/vgg.pth`` (keys
``linN.model.1.weight``). Without files the weights are random (tests); LPIPS is then a fixed random-feature
distance, which is still a valid, differentiable (if less perceptual) training signal.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# torchvision vgg16 "D" config up to relu5_3 (features[0:30]); "M" is a 2x2 max pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_CHANNELS = (64, 128, 256, 512, 512)


def _vgg16_features() -> nn.Sequential:
    layers, c_in = [], 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
            c_in = v
    return nn.Sequential(*layers)


class _Lin(nn.Module):
    """LPIPS head ``model = [Dropout, Conv2d(C, 1, 1, bias=False)]`` (key names as in the lpips package)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.0), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


def _load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class LPIPS(nn.Module):
    """LPIPS-VGG distance between images or videos in [-1, 1]; frozen (no parameter requires grad).

    Args:
        vgg_weights: torchvision ``vgg16`` state dict file, or None for a random trunk (seeded, tests only).
        lin_weights: lpips ``vgg.pth`` file, or None for random non-negative heads.

    Raises:
        FileNotFoundError: a given weight file is missing.
        RuntimeError: a weight file does not match (missing/unexpected keys listed).
    """

    def __init__(self, vgg_weights: str | Path | None = None, lin_weights: str | Path | None = None):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features()
        self.lins = nn.ModuleList([_Lin(c) for c in _CHANNELS])
        if vgg_weights:
            sd = {k: v for k, v in _load(vgg_weights).items()
                  if k.startswith("features.") and int(k.split(".")[1]) < len(self.features)}
            missing, unexpected = nn.Module.load_state_dict(self, sd, strict=False)
            missing = [k for k in missing if k.startswith("features.")]
            if missing or unexpected:
                raise RuntimeError(f"{vgg_weights}: missing {missing}, unexpected {unexpected}")
        else:
            log.warning("LPIPS: random VGG16 trunk (no vgg_weights given); for tests only")
            g = torch.Generator().manual_seed(0)
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, generator=g)
                    nn.init.zeros_(m.bias)
        if lin_weights:
            sd = {f"lins.{k[3:]}" if k.startswith("lin") else k: v for k, v in _load(lin_weights).items()}
            missing, unexpected = nn.Module.load_state_dict(self, sd, strict=False)
            missing = [k for k in missing if k.startswith("lins.")]
            if missing or unexpected:
                raise RuntimeError(f"{lin_weights}: missing {missing}, unexpected {unexpected}")
        else:
            for lin in self.lins:
                nn.init.constant_(lin.model[1].weight, 1.0 / lin.model[1].in_channels)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):  # always eval: no dropout, frozen
        return super().train(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # unit-normalise channels
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image.

        Args:
            x, y: ``[B, 3, H, W]`` images or ``[B, 3, T, H, W]`` videos in [-1, 1] (videos are scored per frame).

        Returns:
            ``[B]`` (images) or ``[B, T]`` (videos) float distances (>= 0 with the released heads).
        """
        video = x.ndim == 5
        if video:
            b, _, t = x.shape[:3]
            x, y = (v.transpose(1, 2).flatten(0, 1) for v in (x, y))  # [B*T, 3, H, W]
        fx, fy = self._taps(x), self._taps(y)
        d = sum(lin((a - b_).pow(2)).mean((1, 2, 3)) for lin, a, b_ in zip(self.lins, fx, fy))
        return d.view(b, t) if video else d
