"""Tiny diffusers / hyvideo DiT pair with identical base weights (the sizes of tests/models/test_dit.py)."""

from __future__ import annotations

import pytest
import torch

from hyvideo import HYVideoDiffusionTransformer
from hyvideo.checkpoint.convert import diffusers_to_official_dit

FP32_REL_TOL = 1e-5  # fp32 end to end; only summation order differs between the two models
SMALL = dict(in_channels=16, out_channels=16, hidden_size=32, heads_num=2, rope_dim_list=[4, 6, 6],
             mm_double_blocks_depth=2, mm_single_blocks_depth=2, text_states_dim=24, text_states_dim_2=12)
DIFFUSERS_SMALL = dict(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                       num_single_layers=2, num_refiner_layers=2, patch_size=2, patch_size_t=1, text_embed_dim=24,
                       pooled_projection_dim=12, rope_axes_dim=(4, 6, 6), guidance_embeds=True, rope_theta=256.0)


def randomize(module: torch.nn.Module, std: float = 0.2) -> None:
    """Random weights everywhere (the released init zeroes gates and the final layer, hiding paths)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def dit_inputs() -> dict[str, torch.Tensor]:
    """Batch of 2, non-square latent grid, padded text (7 and 4 valid tokens)."""
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(2, 7, dtype=torch.long)
    mask[0, :7] = 1
    mask[1, :4] = 1
    return dict(x=torch.randn(2, 16, 3, 8, 12, generator=g), t=torch.tensor([900.0, 250.0]),
                text_states=torch.randn(2, 7, 24, generator=g), text_mask=mask,
                text_states_2=torch.randn(2, 12, generator=g), guidance=torch.tensor([6016.0, 3504.0]))


def run_ours(model, inp) -> torch.Tensor:
    with torch.no_grad():
        return model(**inp)


def run_diffusers(model, inp) -> torch.Tensor:
    with torch.no_grad():
        return model(inp["x"], inp["t"], inp["text_states"], inp["text_mask"], inp["text_states_2"],
                     guidance=inp["guidance"], return_dict=False)[0]


def small_dit(seed: int = 0) -> HYVideoDiffusionTransformer:
    torch.manual_seed(seed)
    model = HYVideoDiffusionTransformer(**SMALL).eval()
    randomize(model)
    return model


@pytest.fixture
def pair():
    """(diffusers HunyuanVideoTransformer3DModel, hyvideo DiT) with the same random fp32 weights."""
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    torch.manual_seed(0)
    ref = diffusers.HunyuanVideoTransformer3DModel(**DIFFUSERS_SMALL).eval()
    randomize(ref)
    ours = HYVideoDiffusionTransformer(**SMALL).eval()
    ours.load_state_dict(diffusers_to_official_dit(ref.state_dict()), strict=True)
    return ref, ours
