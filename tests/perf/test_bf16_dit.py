"""The bf16 inference paths of the DiT (fused norms/modulation, bf16 RoPE, split linear2, text trimming)
stay within bf16 tolerance of the float32 model and keep padded text exact."""

from __future__ import annotations

import copy

import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.models.rope import apply_rope, extend_rope_identity, rope_freqs_3d

BF16_REL_TOL = 2e-2  # bf16 keeps 8 mantissa bits and accumulates over K (same bound as the acceptance)
CFG = dict(in_channels=16, out_channels=16, hidden_size=64, heads_num=4, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=24, text_states_dim_2=12)


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


@torch.no_grad()
def test_bf16_forward_within_tolerance_of_fp32():
    model = HYVideoDiffusionTransformer(**CFG).eval()
    for p in model.parameters():
        p.normal_(0, 0.05)
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0, :7], mask[1, :4] = 1, 1  # cols 7..9 are padding in every row: trimmed away
    inp = dict(x=torch.randn(2, 16, 3, 8, 12), t=torch.tensor([900.0, 250.0]), text_states=torch.randn(2, 10, 24),
               text_mask=mask, text_states_2=torch.randn(2, 12), guidance=torch.tensor([6016.0, 3504.0]))
    ref = model(**inp)
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    cast = {k: v.to(torch.bfloat16) if v.is_floating_point() and k != "t" else v for k, v in inp.items()}
    out = model16(**cast)
    assert out.dtype == torch.bfloat16
    assert _rel(out, ref) <= BF16_REL_TOL, _rel(out, ref)
    # trimming the all-padding text columns is exact (same bf16 output as the untrimmed call sees)
    short = {**cast, "text_states": cast["text_states"][:, :7], "text_mask": mask[:, :7]}
    torch.testing.assert_close(model16(**short), out, rtol=0, atol=0)


def test_bf16_rope_and_identity_extension():
    cos, sin = rope_freqs_3d((2, 3, 4), (4, 6, 6))
    x = torch.randn(2, 24, 3, 16)
    ref = apply_rope(x, cos, sin)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16 and _rel(out, ref) <= BF16_REL_TOL
    txt = torch.randn(2, 5, 3, 16)
    joint = apply_rope(torch.cat([x, txt], 1), *extend_rope_identity(cos, sin, 5))
    torch.testing.assert_close(joint[:, :24], ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(joint[:, 24:], txt)  # identity rows leave the text tokens untouched
