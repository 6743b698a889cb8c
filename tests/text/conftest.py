"""Tiny offline text-encoder checkpoints, written once per test session in every supported layout.

All folders share the same weights (seed ``TINY_SEED``), so every layout must give identical embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

tiny = pytest.importorskip("hyvideo.testing.tiny_text")
pytest.importorskip("transformers")


def _rewrite_llava_keys_to_v5(folder: Path) -> None:
    """Renames a legacy LLaVA checkpoint's keys (``language_model.model.*``) to the layout of transformers
    >= 4.52 (``model.language_model.*``), so both key layouts are exercised whatever version saved it."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    renamed = {}
    for key, value in load_file(path).items():
        if key.startswith("language_model.model."):
            key = "model.language_model." + key[len("language_model.model."):]
        elif key.startswith("language_model.lm_head."):
            key = key[len("language_model."):]
        elif key.startswith(("vision_tower.", "multi_modal_projector.")):
            key = "model." + key
        renamed[key] = value
    save_file(renamed, path, metadata={"format": "pt"})


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Runs the tiny models single-threaded (restored after each module): on 2 shared, loaded cores, two
    OpenMP threads make a 4-layer, 32-wide Llama forward ~30x slower (0.9 s instead of 0.03 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory) -> dict[str, Path]:
    """Paths of the tiny text checkpoints, keyed by layout name."""
    root = tmp_path_factory.mktemp("tiny_text")
    paths = {
        "llm": tiny.save_tiny_llm(root / "ckpts" / "text_encoder"),
        "clip": tiny.save_tiny_clip(root / "ckpts" / "text_encoder_2"),
        "ckpts_root": root / "ckpts",
        "llm_causal": tiny.save_tiny_llm(root / "llm_causal", causal_lm=True),
        "clip_full": tiny.save_tiny_clip(root / "clip_full", full_clip=True),
        "llava": tiny.save_tiny_llava(root / "llava"),
        "llava_v5": tiny.save_tiny_llava(root / "llava_v5"),
        "llava_sharded": tiny.save_tiny_llava(root / "llava_sharded", max_shard_size="30KB"),
        "diffusers": tiny.save_tiny_diffusers_text(root / "diffusers"),
    }
    from safetensors import safe_open

    with safe_open(str(paths["llava_v5"] / "model.safetensors"), "pt") as f:
        legacy = any(k.startswith("language_model.") for k in f.keys())
    if legacy:
        _rewrite_llava_keys_to_v5(paths["llava_v5"])
    (paths["diffusers"] / "model_index.json").write_text(json.dumps({"_class_name": "HunyuanVideoPipeline"}))
    return paths


@pytest.fixture(scope="session")
def llm(tiny_ckpts):
    """Tiny LLM encoder in float32 (official layout)."""
    from hyvideo.checkpoint.text import load_llm_text_encoder

    return load_llm_text_encoder(tiny_ckpts["llm"], dtype=torch.float32)


@pytest.fixture(scope="session")
def clip(tiny_ckpts):
    """Tiny CLIP encoder in float32 (official layout)."""
    from hyvideo.checkpoint.text import load_clip_text_encoder

    return load_clip_text_encoder(tiny_ckpts["clip"], dtype=torch.float32)


@pytest.fixture
def prompts() -> list[str]:
    """A batch of two prompts of different lengths (so the first one is padded more)."""
    return [
        "A cat walks on the grass, realistic style.",
        "A red car drives through a rainy city street at night, neon lights reflecting on the wet road.",
    ]


@pytest.fixture(scope="session")
def df_pipe(tiny_ckpts):
    """diffusers' ``HunyuanVideoPipeline`` (text parts only) holding the official-layout tiny models, loaded
    with plain ``transformers`` (not our loaders), as the reference for ``encode_prompt``."""
    pipeline = pytest.importorskip("diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video")
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer, LlamaModel

    llm_dir, clip_dir = tiny_ckpts["llm"], tiny_ckpts["clip"]
    return pipeline.HunyuanVideoPipeline(
        text_encoder=LlamaModel.from_pretrained(llm_dir, local_files_only=True).eval(),
        tokenizer=AutoTokenizer.from_pretrained(llm_dir, local_files_only=True),
        transformer=None,
        vae=None,
        scheduler=None,
        text_encoder_2=CLIPTextModel.from_pretrained(clip_dir, local_files_only=True).eval(),
        tokenizer_2=CLIPTokenizer.from_pretrained(clip_dir, local_files_only=True),
    )
