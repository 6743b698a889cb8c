"""Fixtures of the web UI tests: one server on the tiny checkpoints for the session, a LoRA for the tiny DiT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import load_script

# tiny sizes keep a job at seconds on a CPU: 9 frames, 2 steps
JOB = dict(negative_prompt="", resolution="64px", aspect="1:1", video_length=9, infer_steps=2, seed=1,
           flow_shift=7.0, embedded_guidance_scale=6.0, cfg_scale=1.0, cache_threshold=0.0, vae_tiling=True,
           image=None, lora="(none)", lora_scale=1.0)


def job_args(prompt: str, **change) -> list:
    """Positional inputs of the ``/generate`` endpoint (page order)."""
    values = {**JOB, **change}
    return [prompt, *values.values()]


def write_tiny_lora(path: Path, seed: int = 0) -> Path:
    """A rank-4 LoRA for the tiny DiT of ``make_tiny_checkpoints`` with non-zero up weights (it changes the video)."""
    from hyvideo.lora import add_lora, save_lora

    dit = load_script("make_tiny_checkpoints").build_tiny_models(0)[0]
    add_lora(dit, rank=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return save_lora(dit, path)


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    write_tiny_lora(folder / "style.safetensors")
    return folder


@pytest.fixture(scope="session")
def ui_server(tiny_ckpts, lora_dir, tmp_path_factory):
    """``gradio_server.py`` on the tiny tree (fp32, 1 MiB uploads, the LoRA folder), on a free port."""
    pytest.importorskip("gradio")
    pytest.importorskip("gradio_client")
    from hyvideo.testing.webui import Server

    out = tmp_path_factory.mktemp("ui_results")
    with Server("--model-base", str(tiny_ckpts), "--precision", "fp32", "--save-path", str(out), "--lora-dir",
                str(lora_dir), "--max-upload-mb", "1", log_dir=out.parent) as server:
        server.save_dir = out
        yield server
