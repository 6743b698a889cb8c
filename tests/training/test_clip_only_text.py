"""The CLIP-only text conditioning ablation (``model.text_conditioning: clip``): CLIP token states as the DiT's
text tokens, in training on the fly, in latent caches, and the cache / DiT checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import train_dit
from hyvideo.testing import tiny_text as tiny
from hyvideo.text.encoders import CLIPTextEncoder, CLIPTokenEncoder
from hyvideo.training.config import ConfigError, DiTModelConfig
from hyvideo.training.conditioning import TextConditioner

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs/train/tiny.yaml")


def test_clip_mode_gives_clip_token_states_and_the_released_mode_llm_states():
    ctok = tiny.build_clip_tokenizer()
    clip = CLIPTextEncoder(tiny.build_tiny_clip(ctok), ctok)
    states, mask = CLIPTokenEncoder(clip)(["a red circle", "a blue star moves up"], 17)
    assert states.shape == (2, 77, clip.model.config.hidden_size) and mask.shape == (2, 77)
    assert mask.sum(1).tolist()[0] < mask.sum(1).tolist()[1]  # padding mask follows the prompt length
    full = clip.model(**ctok(["a red circle"], max_length=77, padding="max_length", return_tensors="pt"))
    torch.testing.assert_close(states[:1], full.last_hidden_state)

    ours = TextConditioner(DiTModelConfig(text_conditioning="clip"), torch.device("cpu"))(["a red circle"], 5)
    released = TextConditioner(DiTModelConfig(text_max_length=16), torch.device("cpu"))(["a red circle"], 5)
    assert ours["text_states"].shape[1] == 77 and released["text_states"].shape[1] == 16
    torch.testing.assert_close(ours["text_states_2"], released["text_states_2"])  # the pooled vector is CLIP's


def test_unknown_text_conditioning_is_a_config_error():
    with pytest.raises(ConfigError, match="model.text_conditioning must be one of .*'llm\\+clip'.*got 't5'"):
        DiTModelConfig(text_conditioning="t5")


def test_clip_only_run_trains_on_the_fly_and_refuses_a_cache_of_the_other_kind(tmp_path, manifest, latent_cache):
    train_dit.main(["--config", TINY, "--set", f"run.out_dir={tmp_path / 'run'}", "--set", "run.max_steps=2",
                    "--set", f"data.manifest={manifest}", "--set", "model.text_conditioning=clip"])
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    with pytest.raises(ConfigError, match="encoded with model.text_conditioning='llm\\+clip', this run sets 'clip'"):
        train_dit.main(["--config", TINY, "--set", f"run.out_dir={tmp_path / 'run2'}",
                        "--set", f"data.latent_cache={latent_cache}", "--set", "model.text_conditioning=clip"])
    wide = tmp_path / "dit_wide_text.json"
    wide.write_text(json.dumps({**json.loads((ROOT / "hyvideo/configs/dit_tiny.json").read_text()),
                                "text_states_dim": 48}))
    with pytest.raises(ConfigError, match="text states of width 32, the DiT .* takes text_states_dim=48"):
        train_dit.main(["--config", TINY, "--set", f"run.out_dir={tmp_path / 'run3'}",
                        "--set", f"data.latent_cache={latent_cache}", "--set", f"model.dit_config={wide}"])


def test_latents_from_re_encodes_only_the_text_and_the_clip_cache_trains(tmp_path, latent_cache):
    """``encode_latents.py --latents-from``: same latents, buckets and captions, CLIP token states; the CLIP-only
    run accepts the new cache (the released-conditioning one it refuses, above)."""
    from encode_latents import main as encode
    from hyvideo.data.latent_cache import LatentCacheDataset

    out = encode(["--config", TINY, "--set", "model.text_conditioning=clip", "--latents-from", str(latent_cache),
                  "--out", str(tmp_path / "clip_cache")])
    src, new = LatentCacheDataset(latent_cache), LatentCacheDataset(out)
    assert len(new) == len(src) > 0 and new.meta["model"]["text_conditioning"] == "clip"
    assert [x["bucket"] for x in new.lines] == [x["bucket"] for x in src.lines]
    for i in range(len(src)):
        a, b = src[i], new[i]
        assert torch.equal(a["latent"], b["latent"]) and a["caption"] == b["caption"]
        assert b["text_states"].shape[0] == 77 and a["text_states"].shape[0] != 77
        torch.testing.assert_close(a["text_states_2"], b["text_states_2"])  # the pooled vector is CLIP's in both
    assert new.null_text["video"]["text_states"].shape[0] == 77
    train_dit.main(["--config", TINY, "--set", f"run.out_dir={tmp_path / 'run'}", "--set", "run.max_steps=2",
                    "--set", f"data.latent_cache={out}", "--set", "model.text_conditioning=clip"])
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)


def test_latents_from_needs_a_finished_cache(tmp_path, capsys):
    from encode_latents import main as encode

    with pytest.raises(SystemExit) as e:
        encode(["--config", TINY, "--latents-from", str(tmp_path), "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "not a finished latent cache (no index.jsonl)" in capsys.readouterr().err
