"""LoRA injection for training: targets, frozen base, gradients, exact state round trip, save / export styles."""

from __future__ import annotations

import json

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer, lora
from tests.lora.conftest import FP32_REL_TOL, SMALL, dit_inputs, rel_err, run_ours, small_dit

pytest.importorskip("peft")


def _randomize_lora(model, std=0.3):
    with torch.no_grad():
        for _, p in lora.lora_parameters(model):
            p.normal_(0, std)


def test_default_targets_freeze_the_base_and_start_as_the_base_model():
    model = small_dit()
    inp = dit_inputs()
    base = run_ours(model, inp)
    targets = lora.add_lora(model, rank=4)
    kinds = {t.split(".", 2)[2] for t in targets}
    assert kinds == {"img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2", "txt_attn_qkv",
                     "txt_attn_proj", "txt_mlp.fc1", "txt_mlp.fc2", "linear1", "linear2"}
    assert len(targets) == 2 * 8 + 2 * 2
    assert all(p.abs().max() == 0 for n, p in lora.lora_parameters(model) if ".lora_B." in n)
    # B = 0: the base output (single blocks' linear2 then runs one GEMM on the concat, so not bit-equal)
    assert rel_err(run_ours(model, inp), base) <= FP32_REL_TOL
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in lora.lora_parameters(model)}
    assert lora.count_parameters(model)[0] == sum(p.numel() for _, p in lora.lora_parameters(model))
    with_mod = lora.resolve_targets(model, lora.LoraSettings(include_modulation=True).targets)
    assert len(with_mod) == len(targets) + 2 * 2 + 2


def test_backward_reaches_only_the_adapters():
    model = small_dit()
    lora.add_lora(model, rank=4, dropout=0.1)
    _randomize_lora(model)
    model.train()
    model(**dit_inputs()).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == {n for n, _ in lora.lora_parameters(model)}
    assert all(torch.isfinite(g).all() and g.abs().max() > 0 for g in grads.values())


def test_adapter_state_is_deterministic_and_restores_exactly():
    states = []
    for _ in range(2):
        model = small_dit()
        torch.manual_seed(123)
        lora.add_lora(model, rank=4)
        states.append(lora.lora_state_dict(model))
    assert list(states[0]) == list(states[1])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert list(states[0])[:2] == ["double_blocks.0.img_attn_qkv.lora_A.weight",
                                   "double_blocks.0.img_attn_qkv.lora_B.weight"]
    trained = small_dit()
    lora.add_lora(trained, rank=4)
    _randomize_lora(trained)
    saved = {k: v.clone() for k, v in lora.lora_state_dict(trained).items()}
    resumed = small_dit()
    lora.add_lora(resumed, rank=4)
    lora.set_lora_state_dict(resumed, saved)
    inp = dit_inputs()
    assert torch.equal(run_ours(resumed, inp), run_ours(trained, inp))
    assert all(torch.equal(v, saved[k]) for k, v in lora.lora_state_dict(resumed).items())


@pytest.mark.parametrize("style", ["diffusers", "musubi", "comfyui"])
def test_saved_file_reloads_to_the_same_output(tmp_path, style):
    trained = small_dit()
    lora.add_lora(trained, rank=4, alpha=2.0, include_modulation=True)
    _randomize_lora(trained)
    inp = dit_inputs()
    expected = run_ours(trained, inp)
    path = lora.save_lora(trained, tmp_path / f"{style}.safetensors", style=style, config={"optim": {"lr": 1e-4}})
    fresh = small_dit()
    lora.load_lora_weights(fresh, path)
    got = run_ours(fresh, inp)
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["hyvideo_lora"])
    assert meta["format"] == "hyvideo-lora" and meta["style"] == style
    assert (meta["rank"], meta["alpha"], meta["dropout"]) == (4, 2.0, 0.0)
    assert meta["config"] == {"optim": {"lr": 1e-4}} and meta["base_model"]["hidden_size"] == 32
    assert "double_blocks.0.img_mod.linear" in meta["target_modules"]


def test_merge_and_unload_bakes_the_lora_into_a_plain_dit():
    model = small_dit()
    lora.add_lora(model, rank=4)
    _randomize_lora(model)
    inp = dit_inputs()
    expected = run_ours(model, inp)
    lora.merge_and_unload(model)
    assert not hasattr(model, "peft_config")
    assert set(model.state_dict()) == set(small_dit().state_dict())  # released keys, no base_layer / lora_
    got = run_ours(model, inp)
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)


def test_lora_on_an_fp8_base_trains_and_refuses_to_fuse():
    from hyvideo.accel.fp8 import convert_to_fp8

    model = small_dit()
    convert_to_fp8(model)
    lora.add_lora(model, rank=4)
    _randomize_lora(model)
    model.train()
    model(**dit_inputs()).square().mean().backward()
    assert all(p.grad is not None and p.dtype == torch.float32 for _, p in lora.lora_parameters(model))
    with pytest.raises(ValueError, match="cannot fuse LoRAs into FP8 weights"):
        lora.fuse_lora(model)


def test_convert_with_a_meta_dit_keeps_the_lora(tmp_path):
    from safetensors.torch import load_file

    trained = small_dit()
    lora.add_lora(trained, rank=4, alpha=3.0)
    _randomize_lora(trained)
    src = lora.save_lora(trained, tmp_path / "d.safetensors", dtype=torch.bfloat16)
    with torch.device("meta"):
        meta_dit = HYVideoDiffusionTransformer(**SMALL)
    dst = lora.convert_lora_file(src, tmp_path / "m.safetensors", meta_dit, style="musubi")
    tensors = load_file(dst)
    assert all(k.startswith("lora_unet_") for k in tensors)
    assert tensors["lora_unet_single_blocks_1_linear1.alpha"].item() == 3.0
    assert tensors["lora_unet_single_blocks_1_linear1.lora_up.weight"].dtype == torch.bfloat16
    inp = dit_inputs()
    outs = []
    for path in (src, dst):
        model = small_dit()
        lora.load_lora_weights(model, path)
        outs.append(run_ours(model, inp))
    assert torch.equal(outs[0], outs[1])
