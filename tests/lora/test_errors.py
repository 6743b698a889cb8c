"""Bad LoRA input fails early with a message that names the problem."""

from __future__ import annotations

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer, lora
from tests.lora.conftest import SMALL, small_dit

pytest.importorskip("peft")


def _trained(tmp_path, **model_over):
    model = HYVideoDiffusionTransformer(**{**SMALL, **model_over}).eval()
    lora.add_lora(model, rank=4)
    return lora.save_lora(model, tmp_path / "l.safetensors")


def test_lora_for_another_model_size_lists_keys_and_shapes(tmp_path):
    path = _trained(tmp_path, hidden_size=48, rope_dim_list=[8, 8, 8])  # 2 heads x 24
    model = small_dit()
    with pytest.raises(lora.LoraFormatError, match="does not fit this DiT") as err:
        lora.load_lora_weights(model, path)
    msg = str(err.value)
    assert "34 modules differ" in msg
    first = "transformer.single_transformer_blocks.0.attn.to_q: A [4, 48], B [48, 4]; this DiT's linear is [32, 32]"
    assert first in msg
    assert not hasattr(model, "peft_config")  # nothing was injected


def test_lora_with_blocks_the_model_lacks(tmp_path):
    path = _trained(tmp_path, mm_double_blocks_depth=3)
    with pytest.raises(lora.LoraFormatError, match=r"1\d modules this DiT does not have .*transformer_blocks\.2\."):
        lora.load_lora_weights(small_dit(), path)


@pytest.mark.parametrize("rank", [0, -2])
def test_rank_must_be_positive(rank):
    with pytest.raises(ValueError, match=f"LoRA rank must be an integer >= 1, got {rank}"):
        lora.add_lora(small_dit(), rank=rank)


def test_target_that_matches_nothing_suggests_names():
    model = small_dit()
    with pytest.raises(ValueError, match=r"'img_attn_qvk' matches no linear of the DiT; did you mean \['img_attn_qkv'"):
        lora.add_lora(model, target_modules=("img_attn_qkv", "img_attn_qvk"))
    assert not hasattr(model, "peft_config")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="LoRA file not found: .*nope.safetensors"):
        lora.load_lora_weights(small_dit(), tmp_path / "nope.safetensors")


def test_unknown_key_style_names_keys():
    sd = {"blocks.0.attn.q.weight_a": torch.zeros(2, 32), "blocks.0.attn.q.weight_b": torch.zeros(32, 2)}
    with pytest.raises(lora.LoraFormatError, match=r"unknown LoRA key style; first keys: \['blocks.0.attn.q.weight_a'"):
        lora.load_lora_weights(small_dit(), sd)


def test_unsupported_entries_half_pairs_and_non_finite_values():
    a, b = torch.zeros(2, 32), torch.zeros(96, 2)
    dora = {"diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight": a,
            "diffusion_model.double_blocks.0.img_attn_qkv.lora_B.weight": b,
            "diffusion_model.double_blocks.0.img_attn_qkv.dora_scale": torch.zeros(96, 1)}
    with pytest.raises(lora.LoraFormatError, match="unsupported LoRA entries .*dora_scale"):
        lora.load_lora_weights(small_dit(), dora)
    with pytest.raises(lora.LoraFormatError, match="1 broken entries.*img_attn_qkv: has .'down'., needs both A"):
        lora.load_lora_weights(small_dit(), {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": a})
    nan = {"double_blocks.0.img_attn_qkv.lora_A.weight": a, "double_blocks.0.img_attn_qkv.lora_B.weight": b / 0}
    with pytest.raises(lora.LoraFormatError, match="double_blocks.0.img_attn_qkv: non-finite values"):
        lora.load_lora_weights(small_dit(), nan)


def test_scale_and_state_misuse():
    model = small_dit()
    lora.add_lora(model, rank=2)
    name = lora.load_lora_weights(model, lora.lora_state_dict(model), scale=0.5)
    lora.fuse_lora(model)
    with pytest.raises(ValueError, match="fused LoRAs; call unfuse_lora"):
        lora.set_lora_scale(model, name, 1.0)
    with pytest.raises(ValueError, match="fused LoRAs; call unfuse_lora"):
        lora.load_lora_weights(model, lora.lora_state_dict(model))
    with pytest.raises(ValueError, match=r"no adapters named \['x'\] on the DiT \(have \['default', 'lora'\]\)"):
        lora.unload_lora(model, ["x"])
    bad = {k: v[:1] for k, v in lora.lora_state_dict(model).items()}
    with pytest.raises(ValueError, match=r"shape \(file vs model\) \['double_blocks.0.img_attn_qkv.lora_A.weight"):
        lora.set_lora_state_dict(model, bad)


def test_fuse_that_overflows_leaves_the_dit_unfused():
    model = small_dit()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    huge = {"single_blocks.1.linear1.lora_A.weight": torch.full((2, 32), 1e30),  # the last adapted layer:
            "single_blocks.1.linear1.lora_B.weight": torch.full((224, 2), 1e30)}  # the others fuse first
    lora.load_lora_weights(model, lora.lora_state_dict(_with_lora(small_dit())))
    lora.load_lora_weights(model, huge)
    with pytest.raises(ValueError, match="NaNs detected"):
        lora.fuse_lora(model)
    assert not any(layer.merged for _, layer in lora.apply.lora_layers(model))
    lora.unload_lora(model)
    assert all(torch.equal(v, base[k]) for k, v in model.state_dict().items())


def _with_lora(model):
    lora.add_lora(model, rank=2)
    return model
