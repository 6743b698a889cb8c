"""Shared tiny DiT for the accelerated-path tests."""

from __future__ import annotations

import torch

from hyvideo import HYVideoDiffusionTransformer

CFG = dict(in_channels=16, out_channels=16, hidden_size=64, heads_num=4, rope_dim_list=[4, 6, 6],
           mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=24, text_states_dim_2=12)


def tiny_dit_and_inputs():
    """A tiny random DiT (weights ~ N(0, 0.05), eval mode) and float32 inputs for a batch of 2 with uneven text
    padding (7 and 4 valid tokens of 10)."""
    model = HYVideoDiffusionTransformer(**CFG).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0, :7], mask[1, :4] = 1, 1
    inp = dict(x=torch.randn(2, 16, 3, 8, 12), t=torch.tensor([900.0, 250.0]), text_states=torch.randn(2, 10, 24),
               text_mask=mask, text_states_2=torch.randn(2, 12), guidance=torch.tensor([6016.0, 3504.0]))
    return model, inp
