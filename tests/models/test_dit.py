"""HYVideoDiffusionTransformer: released key set, parity with diffusers, invariances, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.checkpoint.convert import diffusers_to_official_dit, official_to_diffusers_dit
from hyvideo.models.rope import apply_rope, rope_freqs_3d

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets"
FP32_REL_TOL = 1e-5  # fp32 end to end; only summation order differs from diffusers
RELEASED_PARAMS = 12_821_012_544

SMALL = dict(in_channels=16, out_channels=16, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6],
             mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=24, text_states_dim_2=12)


def _randomize(module: torch.nn.Module, std: float = 0.2) -> None:
    # The released init zeroes the gates and final layer; random weights make every path observable.
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def _small_model(**over) -> HYVideoDiffusionTransformer:
    m = HYVideoDiffusionTransformer(**{**SMALL, **over}).eval()
    _randomize(m)
    return m


def _inputs(b=2, t=3, h=8, w=12, n_txt=7, valid=(7, 4)):
    x = torch.randn(b, 16, t, h, w)
    mask = torch.zeros(b, n_txt, dtype=torch.long)
    for i, n in enumerate(valid[:b]):
        mask[i, :n] = 1
    return dict(x=x, t=torch.tensor([900.0, 250.0][:b]), text_states=torch.randn(b, n_txt, 24), text_mask=mask,
                text_states_2=torch.randn(b, 12), guidance=torch.tensor([6016.0, 3504.0][:b]))


def test_13b_on_meta_has_released_keys_shapes_and_param_count():
    with torch.device("meta"):
        model = HYVideoDiffusionTransformer.from_config(ROOT / "hyvideo" / "configs" / "dit_13b.json")
    ours = {k: [int(s) for s in v.shape] for k, v in model.state_dict().items()}
    released = {}
    for line in (ASSETS / "dit_13b_keys.tsv").read_text().splitlines():
        key, shape = line.split("\t")
        released[key] = json.loads(shape)
    assert set(ours) == set(released), (set(ours) ^ set(released))
    assert {k: v for k, v in ours.items() if released[k] != v} == {}
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMS
    assert len(released) == 856


def test_default_constructor_is_the_released_config():
    with torch.device("meta"):
        model = HYVideoDiffusionTransformer()
    cfg = json.loads((ROOT / "hyvideo" / "configs" / "dit_13b.json").read_text())
    assert {k: v for k, v in model.config.items() if k in cfg} == {k: v for k, v in cfg.items() if not k.startswith("_")}


def test_parity_with_diffusers_padded_batch2_nonsquare():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref_model = diffusers.HunyuanVideoTransformer3DModel(
        in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        num_single_layers=2, num_refiner_layers=2, patch_size=2, patch_size_t=1, text_embed_dim=24,
        pooled_projection_dim=12, rope_axes_dim=(4, 6, 6), guidance_embeds=True, rope_theta=256.0).eval()
    _randomize(ref_model)
    model = HYVideoDiffusionTransformer(**SMALL).eval()
    model.load_state_dict(diffusers_to_official_dit(ref_model.state_dict()), strict=True)
    inp = _inputs()
    with torch.no_grad():
        ref = ref_model(inp["x"], inp["t"], inp["text_states"], inp["text_mask"], inp["text_states_2"],
                        guidance=inp["guidance"], return_dict=False)[0]
        out = model(**inp)
    assert out.shape == (2, 16, 3, 8, 12)
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel <= FP32_REL_TOL, rel


def test_converter_round_trip_is_exact():
    diffusers = pytest.importorskip("diffusers")
    ref_model = diffusers.HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), guidance_embeds=True)
    sd = ref_model.state_dict()
    back = official_to_diffusers_dit(diffusers_to_official_dit(sd), hidden_size=20)
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    with pytest.raises(KeyError, match="no official counterpart"):
        diffusers_to_official_dit({"not.a.key": torch.zeros(1)})


def test_padded_text_tokens_do_not_change_the_output():
    model = _small_model()
    inp = _inputs()
    with torch.no_grad():
        a = model(**inp)
        inp["text_states"][1, 4:] = torch.randn(3, 24) * 100  # sample 1 has 4 valid tokens
        b = model(**inp)
    assert (a - b).abs().max().item() == 0.0


def test_batch_elements_are_independent():
    model = _small_model()
    inp = _inputs()
    with torch.no_grad():
        full = model(**inp)
        single = model(**{k: v[1:] for k, v in inp.items()})
    torch.testing.assert_close(full[1:], single, atol=1e-5, rtol=1e-5)


def test_backward_reaches_every_parameter():
    model = _small_model()
    model.train()
    model(**_inputs()).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_rope_matches_complex_reference_and_position_zero_is_identity():
    grid, dims, theta = (2, 3, 4), (4, 6, 6), 256.0
    cos, sin = rope_freqs_3d(grid, dims, theta)
    x = torch.randn(1, 24, 2, 16)
    out = apply_rope(x, cos, sin)
    # Slow reference: complex rotation of interleaved pairs, axis by axis.
    ref = torch.empty_like(x)
    idx = 0
    for t in range(grid[0]):
        for h in range(grid[1]):
            for w in range(grid[2]):
                angles = []
                for pos, d in zip((t, h, w), dims):
                    angles += [pos / theta ** (2 * j / d) for j in range(d // 2)]
                rot = torch.polar(torch.ones(len(angles)), torch.tensor(angles, dtype=torch.float64).float())
                pairs = torch.view_as_complex(x[0, idx].reshape(2, -1, 2).contiguous())
                ref[0, idx] = torch.view_as_real(pairs * rot).reshape(2, -1)
                idx += 1
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 0], x[:, 0])  # position (0, 0, 0) is the identity


def test_apply_rope_builds_no_tensor_from_python_data():
    """No sign / constant tensor is made from a Python list per call (on CUDA: a host-to-device copy in every
    block of every step); only ops on the inputs and the precomputed tables run."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    cos, sin = rope_freqs_3d((2, 3, 4), (4, 6, 6), 256.0)
    x = torch.randn(1, 30, 2, 16, dtype=torch.bfloat16)
    with Ops() as mode:
        out = apply_rope(x, cos, sin)
    assert mode.ops and not [op for op in mode.ops if "lift_fresh" in op or "scalar_tensor" in op], mode.ops
    assert out.dtype == torch.bfloat16 and torch.equal(out[:, 24:], x[:, 24:])  # text tokens pass unchanged


def test_unpatchify_inverts_patchify_layout():
    model = HYVideoDiffusionTransformer(**SMALL)
    x = torch.randn(2, 16, 3, 8, 12)
    # Patchify by hand with c outermost, tokens t-major then h then w (spec 1.3).
    tokens = x.reshape(2, 16, 3, 1, 4, 2, 6, 2).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(2, 72, 64)
    assert torch.equal(model.unpatchify(tokens, (3, 4, 6)), x)


def test_attention_backends_agree_with_key_mask():
    from hyvideo.ops.attention import attention

    q, k, v = (torch.randn(2, 9, 2, 8) for _ in range(3))
    key_mask = torch.ones(2, 9, dtype=torch.bool)
    key_mask[1, 6:] = False
    fast = attention(q, k, v, key_mask=key_mask, backend="sdpa")
    slow = attention(q, k, v, key_mask=key_mask, backend="naive")
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention(q, k, v, backend="xformers")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_size=30, heads_num=4), "divisible by heads_num"),
        (dict(rope_dim_list=[4, 4, 4]), "must equal the head dim"),
        (dict(qk_norm_type="group"), "unknown qk_norm_type"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HYVideoDiffusionTransformer(**{**SMALL, **kwargs})


def test_bad_inputs_raise_clear_errors():
    model = _small_model()
    inp = _inputs()
    with pytest.raises(ValueError, match="guidance must be"):
        model(**{**inp, "guidance": None})
    with pytest.raises(ValueError, match="divisible by patch"):
        model(**{**inp, "x": torch.randn(2, 16, 3, 7, 12)})
    with pytest.raises(ValueError, match="text_states_2"):
        model(**{**inp, "text_states_2": torch.randn(2, 5)})
