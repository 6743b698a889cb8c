"""HunyuanVideo-I2V DiT variants: parity with diffusers (both condition types), key names, token replace."""

from __future__ import annotations

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.checkpoint.convert import diffusers_to_official_dit, official_to_diffusers_dit
from hyvideo.checkpoint.io import dit_config_from_diffusers, dit_config_to_diffusers

FP32_REL_TOL = 1e-5
SMALL = dict(out_channels=16, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6], mm_double_blocks_depth=2,
             mm_single_blocks_depth=2, text_states_dim=24, text_states_dim_2=12)
IN_CHANNELS = {"latent_concat": 33, "token_replace": 16}


def _randomize(module: torch.nn.Module, std: float = 0.2) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def _diffusers_model(condition_type: str):
    diffusers = pytest.importorskip("diffusers")
    model = diffusers.HunyuanVideoTransformer3DModel(
        in_channels=IN_CHANNELS[condition_type], out_channels=16, num_attention_heads=2, attention_head_dim=16,
        num_layers=2, num_single_layers=2, num_refiner_layers=2, patch_size=2, patch_size_t=1, text_embed_dim=24,
        pooled_projection_dim=12, rope_axes_dim=(4, 6, 6), guidance_embeds=True, rope_theta=256.0,
        image_condition_type=condition_type).eval()
    _randomize(model)
    return model


def _inputs(c_in: int, b=2, t=3, h=8, w=12, n_txt=7, valid=(7, 4)):
    mask = torch.zeros(b, n_txt, dtype=torch.long)
    for i, n in enumerate(valid[:b]):
        mask[i, :n] = 1
    return dict(x=torch.randn(b, c_in, t, h, w), t=torch.tensor([900.0, 250.0][:b]),
                text_states=torch.randn(b, n_txt, 24), text_mask=mask, text_states_2=torch.randn(b, 12),
                guidance=torch.tensor([6016.0, 3504.0][:b]))


@pytest.mark.parametrize("condition_type", ["latent_concat", "token_replace"])
def test_parity_with_diffusers_batch2_padded_nonsquare(condition_type):
    ref_model = _diffusers_model(condition_type)
    cfg = dit_config_from_diffusers(dict(ref_model.config))
    assert cfg["i2v_condition_type"] == condition_type and cfg["in_channels"] == IN_CHANNELS[condition_type]
    model = HYVideoDiffusionTransformer(**cfg).eval()
    model.load_state_dict(diffusers_to_official_dit(ref_model.state_dict()), strict=True)
    inp = _inputs(IN_CHANNELS[condition_type])
    with torch.no_grad():
        ref = ref_model(inp["x"], inp["t"], inp["text_states"], inp["text_mask"], inp["text_states_2"],
                        guidance=inp["guidance"], return_dict=False)[0]
        out = model(**inp)
    assert out.shape == (2, 16, 3, 8, 12)
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    print(f"{condition_type}: DiT max relative error vs diffusers {rel:.2e}")
    assert rel <= FP32_REL_TOL, rel


@pytest.mark.parametrize("condition_type", ["latent_concat", "token_replace"])
def test_config_and_weights_convert_both_ways(condition_type):
    ref_model = _diffusers_model(condition_type)
    df_cfg = dict(ref_model.config)
    ours = dit_config_from_diffusers(df_cfg)
    back = dit_config_to_diffusers(ours)
    for key in ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers",
                "num_single_layers", "num_refiner_layers", "patch_size", "patch_size_t", "guidance_embeds",
                "text_embed_dim", "pooled_projection_dim", "image_condition_type"):
        assert back[key] == df_cfg[key], key
    assert tuple(back["rope_axes_dim"]) == tuple(df_cfg["rope_axes_dim"])
    sd = ref_model.state_dict()
    round_trip = official_to_diffusers_dit(diffusers_to_official_dit(sd), hidden_size=32)
    assert set(round_trip) == set(sd) and all(torch.equal(round_trip[k], sd[k]) for k in sd)


def test_token_replace_keeps_the_t2v_key_set_and_latent_concat_only_widens_img_in():
    t2v = HYVideoDiffusionTransformer(in_channels=16, **SMALL).state_dict()
    tr = HYVideoDiffusionTransformer(in_channels=16, i2v_condition_type="token_replace", **SMALL).state_dict()
    lc = HYVideoDiffusionTransformer(in_channels=33, i2v_condition_type="latent_concat", **SMALL).state_dict()
    assert {k: v.shape for k, v in tr.items()} == {k: v.shape for k, v in t2v.items()}
    assert set(lc) == set(t2v)
    assert [k for k in lc if lc[k].shape != t2v[k].shape] == ["img_in.proj.weight"]
    assert lc["img_in.proj.weight"].shape[1] == 33


def test_token_replace_first_frame_uses_timestep_zero_and_t2v_samples_are_plain():
    torch.manual_seed(0)
    tr = HYVideoDiffusionTransformer(in_channels=16, i2v_condition_type="token_replace", **SMALL).eval()
    _randomize(tr)
    t2v = HYVideoDiffusionTransformer(in_channels=16, **SMALL).eval()
    t2v.load_state_dict(tr.state_dict())
    inp = _inputs(16)
    with torch.no_grad():
        plain = t2v(**inp)
        replaced = tr(**inp)
        mixed = tr(**inp, first_frame_clean=torch.tensor([True, False]))
    # the first-frame tokens see timestep 0 without the guidance term: at t = 0 a model without guidance
    # embedding gives the plain model's output
    cfg = {**SMALL, "guidance_embed": False}
    tr0 = HYVideoDiffusionTransformer(in_channels=16, i2v_condition_type="token_replace", **cfg).eval()
    _randomize(tr0)
    t2v0 = HYVideoDiffusionTransformer(in_channels=16, **cfg).eval()
    t2v0.load_state_dict(tr0.state_dict())
    at_zero = {**inp, "t": torch.zeros(2), "guidance": None}
    with torch.no_grad():
        torch.testing.assert_close(tr0(**at_zero), t2v0(**at_zero), rtol=1e-5, atol=1e-5)
    assert (replaced - plain).abs().max() > 1e-3
    torch.testing.assert_close(mixed[0], replaced[0], rtol=1e-5, atol=1e-5)  # sample 0: image-to-video
    torch.testing.assert_close(mixed[1], plain[1], rtol=1e-5, atol=1e-5)  # sample 1: text-to-video
    with pytest.raises(ValueError, match="first_frame_clean must be"):
        tr(**inp, first_frame_clean=torch.tensor([True]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=16, i2v_condition_type="latent_concat"), "needs in_channels = 33"),
    (dict(in_channels=33, i2v_condition_type="token_replace"), "needs in_channels = 16"),
    (dict(in_channels=16, i2v_condition_type="first_frame"), "not supported; allowed"),
])
def test_bad_i2v_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HYVideoDiffusionTransformer(**SMALL, **kwargs)


def test_token_replace_gradients_equal_under_activation_checkpointing():
    from hyvideo.parallel.fsdp import apply_activation_checkpointing

    torch.manual_seed(0)
    plain = HYVideoDiffusionTransformer(in_channels=16, i2v_condition_type="token_replace", **SMALL)
    _randomize(plain)
    ckpt = HYVideoDiffusionTransformer(in_channels=16, i2v_condition_type="token_replace", **SMALL)
    ckpt.load_state_dict(plain.state_dict())
    apply_activation_checkpointing(ckpt)
    inp = {**_inputs(16), "first_frame_clean": torch.tensor([True, False])}
    grads = []
    for m in (plain, ckpt):
        m(**inp).square().mean().backward()
        grads.append({k.replace("_checkpoint_wrapped_module.", ""): p.grad for k, p in m.named_parameters()})
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("condition_type", ["latent_concat", "token_replace"])
def test_t2v_weights_initialise_an_i2v_model_that_starts_as_the_t2v_one(condition_type):
    from hyvideo.checkpoint.convert import t2v_to_i2v_dit

    torch.manual_seed(0)
    t2v = HYVideoDiffusionTransformer(in_channels=16, **SMALL).eval()
    _randomize(t2v)
    i2v = HYVideoDiffusionTransformer(in_channels=IN_CHANNELS[condition_type], i2v_condition_type=condition_type,
                                      **SMALL).eval()
    i2v.load_state_dict(t2v_to_i2v_dit(t2v.state_dict(), condition_type), strict=True)
    if condition_type == "latent_concat":
        inp = _inputs(16)
        cond = torch.randn(2, 17, 3, 8, 12)
        with torch.no_grad():
            torch.testing.assert_close(i2v(**{**inp, "x": torch.cat([inp["x"], cond], 1)}), t2v(**inp))
    with pytest.raises(ValueError, match="unknown I2V condition type"):
        t2v_to_i2v_dit(t2v.state_dict(), "concat")
