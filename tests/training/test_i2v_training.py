"""train_dit.py trains the HunyuanVideo-I2V variants: token replace (mixed with T2V samples by flow.i2v_prob) and
latent concat, initialised from text-to-video weights; the export loads and samples image-to-video."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training.conftest import ROOT
from tests.training.conftest import run_tiny_dit as _run


@pytest.fixture(scope="module")
def t2v_export(tmp_path_factory, latent_cache):
    out = tmp_path_factory.mktemp("t2v")
    _run(out, f"data.latent_cache={latent_cache}", "run.max_steps=1", "run.ckpt_every=0")
    return out / "export" / "dit.pt"


@pytest.mark.parametrize("condition_type, prob", [("token_replace", 0.5), ("latent_concat", 1.0)])
def test_i2v_variant_trains_from_t2v_weights_and_exports(condition_type, prob, tmp_path, latent_cache, t2v_export):
    from hyvideo.checkpoint.io import load_dit

    cfg = json.loads((ROOT / "hyvideo/configs/dit_tiny.json").read_text())
    cfg["i2v_condition_type"] = condition_type
    if condition_type == "latent_concat":
        cfg["in_channels"] = 33
    (tmp_path / "dit_i2v.json").write_text(json.dumps(cfg))
    res = _run(tmp_path / "run", f"data.latent_cache={latent_cache}", f"model.dit_config={tmp_path / 'dit_i2v.json'}",
               f"run.init_from={t2v_export}", f"flow.i2v_prob={prob}", "run.max_steps=2", "run.ckpt_every=0")
    assert all(torch.isfinite(torch.tensor(v)) for v in res["losses"].values())
    dit = load_dit(tmp_path / "run" / "export" / "dit.pt", dtype=torch.float32)
    assert dit.i2v_condition_type == condition_type and dit.img_in.proj.weight.shape[1] == cfg["in_channels"]


def test_token_replace_frame_zero_is_out_of_the_loss():
    """An I2V sample's clean first frame is not predicted: changing the model's frame-0 output there changes
    nothing, while for a T2V sample it does."""
    from hyvideo.training.config import FlowConfig
    from hyvideo.training.objectives import draw_flow, flow_matching_loss

    lat = torch.randn(2, 16, 3, 4, 4)
    draws = draw_flow(tuple(lat.shape), [0, 1], step=0, seed=0, cfg=FlowConfig(i2v_prob=1.0))
    text = dict(text_states=torch.zeros(2, 3, 8), text_mask=torch.ones(2, 3), text_states_2=torch.zeros(2, 8))

    def model(x, t, *args, first_frame_clean=None, bump=0.0):
        out = torch.zeros(x.shape[0], 16, *x.shape[2:])
        out[:, :, 0] += bump
        return out

    base = flow_matching_loss(model, lat, draws, text, condition_type="token_replace")
    bumped = flow_matching_loss(lambda *a, **k: model(*a, **k, bump=5.0), lat, draws, text,
                                condition_type="token_replace")
    assert draws.i2v.all() and torch.equal(base, bumped)
    draws.i2v[:] = False
    assert not torch.equal(flow_matching_loss(model, lat, draws, text, condition_type="token_replace"),
                           flow_matching_loss(lambda *a, **k: model(*a, **k, bump=5.0), lat, draws, text,
                                              condition_type="token_replace"))
