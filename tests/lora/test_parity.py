"""LoRA format parity with diffusers / peft / musubi-tuner / ComfyUI files, and fused vs unfused (fp32)."""

from __future__ import annotations

import copy

import pytest
import torch

from hyvideo import lora
from tests.lora.conftest import FP32_REL_TOL, dit_inputs, rel_err, run_diffusers, run_ours

# Adapt every kind of linear, including the ones whose rows the converter moves (final modulation halves) and
# the token refiner's fused qkv, so each row map is exercised.
ALL_KINDS = lora.DEFAULT_TARGETS + ("self_attn_qkv", "final_layer.adaLN_modulation.1", "final_layer.linear")
DIFFUSERS_TARGETS = ["to_q", "to_k", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                     "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp",
                     "proj_out", "norm1.linear", "norm.linear", "norm_out.linear"]  # no to_v: a missing q/k/v part


def _randomize_lora(module: torch.nn.Module, std: float = 0.3) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.normal_(0, std)


def _pipeline(transformer):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    return HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=transformer, vae=None,
                                scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder_2=None, tokenizer_2=None)


def test_saved_lora_gives_the_same_output_in_diffusers(pair, tmp_path):
    ref, ours = pair
    ref_copy = copy.deepcopy(ref)
    inp = dit_inputs()
    lora.add_lora(ours, rank=4, alpha=6.0, target_modules=ALL_KINDS, include_modulation=True)
    _randomize_lora(ours)
    expected = run_ours(ours, inp)
    path = lora.save_lora(ours, tmp_path / "pytorch_lora_weights.safetensors", config={"run": "test"})
    # 1. The pipeline's load_lora_weights (alpha 6 != rank 4: only right if diffusers reads our metadata).
    _pipeline(ref).load_lora_weights(str(tmp_path))
    got = run_diffusers(ref, inp)
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)
    assert rel_err(got, run_diffusers(ref_copy, inp)) > 0.1  # the LoRA does change the output
    # 2. The transformer's own load_lora_adapter.
    ref_copy.load_lora_adapter(str(tmp_path), weight_name=path.name, prefix="transformer")
    got2 = run_diffusers(ref_copy, inp)
    assert rel_err(got2, expected) <= FP32_REL_TOL, rel_err(got2, expected)


def test_diffusers_saved_lora_gives_the_same_output_in_ours(pair, tmp_path):
    from diffusers import HunyuanVideoPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    ref, ours = pair
    config = LoraConfig(r=4, lora_alpha=8, target_modules=DIFFUSERS_TARGETS,
                        rank_pattern={"^transformer_blocks.0.attn.to_q": 2},
                        alpha_pattern={"^single_transformer_blocks.1.proj_mlp": 3})
    ref.add_adapter(config)
    _randomize_lora(ref)
    inp = dit_inputs()
    expected = run_diffusers(ref, inp)
    HunyuanVideoPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(ref),
                                           transformer_lora_adapter_metadata=ref.peft_config["default"].to_dict())
    name = lora.load_lora_weights(ours, tmp_path / "pytorch_lora_weights.safetensors")
    got = run_ours(ours, inp)
    assert name == "pytorch_lora_weights"
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)
    # q and k had separate A's: our fused img_attn_qkv gets rank 4 + 4 (+0 for the missing v), v rows zero.
    layer = ours.double_blocks[1].img_attn_qkv
    assert layer.lora_A[name].weight.shape == (8, 32)
    assert layer.lora_B[name].weight[64:].abs().max() == 0


def test_peft_folder_with_rslora_gives_the_same_output_in_ours(pair, tmp_path):
    from peft import LoraConfig, get_peft_model

    ref, ours = pair
    peft_model = get_peft_model(ref, LoraConfig(r=3, lora_alpha=5, use_rslora=True,
                                                target_modules=["to_q", "to_k", "to_v", "proj_mlp", "proj_out"]))
    _randomize_lora(peft_model)
    inp = dit_inputs()
    expected = run_diffusers(peft_model.base_model.model, inp)
    peft_model.save_pretrained(tmp_path / "peft_lora")
    assert (tmp_path / "peft_lora" / "adapter_config.json").is_file()
    lora.load_lora_weights(ours, tmp_path / "peft_lora")
    got = run_ours(ours, inp)
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)


def _released_lora(modules, rank=4, std=0.3) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random (A, B) per released linear of the SMALL DiT."""
    shapes = {"img_attn_qkv": (96, 32), "txt_attn_qkv": (96, 32), "img_attn_proj": (32, 32),
              "txt_attn_proj": (32, 32), "img_mlp.fc1": (128, 32), "img_mlp.fc2": (32, 128),
              "txt_mlp.fc1": (128, 32), "txt_mlp.fc2": (32, 128), "img_mod.linear": (192, 32),
              "linear1": (224, 32), "linear2": (32, 160), "modulation.linear": (96, 32)}
    out = {}
    for module in modules:
        o, i = shapes[module.split(".", 2)[2]]
        out[module] = (torch.randn(rank, i) * std, torch.randn(o, rank) * std)
    return out


def _to_diffusers_inline(weights, scale):
    """Slow, obvious reference: split B by rows the way diffusers names the linears, fold the scale into B."""
    names = {"img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"], "img_attn_proj": ["attn.to_out.0"],
             "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
             "img_mlp.fc1": ["ff.net.0.proj"], "img_mod.linear": ["norm1.linear"],
             "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"], "linear2": ["proj_out"]}
    sd = {}
    for module, (a, b) in weights.items():
        kind, idx, rest = module.split(".", 2)
        prefix = {"double_blocks": "transformer_blocks", "single_blocks": "single_transformer_blocks"}[kind]
        parts = names[rest]
        sizes = [32] * 3 + [b.shape[0] - 96] if len(parts) == 4 else [b.shape[0] // len(parts)] * len(parts)
        for part, rows in zip(parts, (b * scale).split(sizes)):
            sd[f"transformer.{prefix}.{idx}.{part}.lora_A.weight"] = a.clone()
            sd[f"transformer.{prefix}.{idx}.{part}.lora_B.weight"] = rows.contiguous()
    return sd


MUSUBI_MODULES = ["double_blocks.0.img_attn_qkv", "double_blocks.1.txt_attn_qkv", "double_blocks.0.img_mlp.fc1",
                  "double_blocks.1.img_attn_proj", "double_blocks.0.img_mod.linear", "single_blocks.0.linear1",
                  "single_blocks.1.linear2"]


def test_musubi_keys_give_the_same_output_as_diffusers(pair, tmp_path):
    from safetensors.torch import save_file

    ref, ours = pair
    weights, alpha, rank = _released_lora(MUSUBI_MODULES), 2.0, 4
    musubi = {}
    for module, (a, b) in weights.items():  # musubi-tuner networks/lora.py: "lora_unet_" + name with . -> _
        name = "lora_unet_" + module.replace(".", "_")
        musubi |= {f"{name}.lora_down.weight": a, f"{name}.lora_up.weight": b, f"{name}.alpha": torch.tensor(alpha)}
    save_file(musubi, tmp_path / "musubi.safetensors")
    ref.load_lora_adapter(_to_diffusers_inline(weights, alpha / rank), prefix="transformer")
    inp = dit_inputs()
    name = lora.load_lora_weights(ours, tmp_path / "musubi.safetensors")
    got, expected = run_ours(ours, inp), run_diffusers(ref, inp)
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)
    assert ours.single_blocks[0].linear1.scaling[name] == pytest.approx(alpha / rank)


def test_comfyui_keys_match_diffusers_own_converter(pair, tmp_path):
    """diffusers converts ``diffusion_model.`` (ComfyUI / musubi "other") HunyuanVideo LoRAs itself; its single-block
    split assumes the 13B width, so this file leaves out ``linear1``."""
    from safetensors.torch import save_file

    ref, ours = pair
    modules = [m for m in MUSUBI_MODULES if not m.endswith("linear1")]
    comfy = {}
    for module, (a, b) in _released_lora(modules).items():
        comfy |= {f"diffusion_model.{module}.lora_A.weight": a, f"diffusion_model.{module}.lora_B.weight": b}
    save_file(comfy, tmp_path / "comfy.safetensors")
    _pipeline(ref).load_lora_weights(str(tmp_path), weight_name="comfy.safetensors")
    lora.load_lora_weights(ours, tmp_path / "comfy.safetensors")
    inp = dit_inputs()
    got, expected = run_ours(ours, inp), run_diffusers(ref, inp)
    assert rel_err(got, expected) <= FP32_REL_TOL, rel_err(got, expected)


@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute")  # diffusers' second adapter
def test_two_loras_with_scales_fused_and_unfused_match_diffusers(pair, tmp_path):
    ref, ours = pair
    base_weights = {k: v.clone() for k, v in ours.state_dict().items()}
    inp = dit_inputs()
    # Two LoRAs made by hyvideo (different targets and ranks), saved in two styles.
    for i, (style, targets) in enumerate([("diffusers", ALL_KINDS), ("musubi", ("img_attn_qkv", "linear1"))]):
        donor = copy.deepcopy(ours)
        lora.add_lora(donor, rank=3 + i, alpha=2.0 + i, target_modules=targets)
        _randomize_lora(donor)
        lora.save_lora(donor, tmp_path / f"l{i}.safetensors", style=style)
        lora.convert_lora_file(tmp_path / f"l{i}.safetensors", tmp_path / f"d{i}" / "w.safetensors", ours)
        ref.load_lora_adapter(str(tmp_path / f"d{i}"), weight_name="w.safetensors", prefix="transformer",
                              adapter_name=f"l{i}")
        lora.load_lora_weights(ours, tmp_path / f"l{i}.safetensors", scale=[0.7, -0.4][i])
    ref.set_adapters(["l0", "l1"], weights=[0.7, -0.4])
    unfused, expected = run_ours(ours, inp), run_diffusers(ref, inp)
    assert rel_err(unfused, expected) <= FP32_REL_TOL, rel_err(unfused, expected)
    assert lora.fuse_lora(ours) > 0
    fused = run_ours(ours, inp)
    assert rel_err(fused, unfused) <= FP32_REL_TOL, rel_err(fused, unfused)
    lora.unfuse_lora(ours)
    assert torch.equal(run_ours(ours, inp), unfused)
    lora.unload_lora(ours)
    restored = ours.state_dict()
    assert list(restored) == list(base_weights)  # released keys again, in order
    assert all(torch.equal(restored[k], v) for k, v in base_weights.items())  # bit-exact after fuse + unfuse
    ours.load_state_dict(base_weights, strict=True)
