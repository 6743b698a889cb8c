"""Training at scale (issue 21): meta-device build with a seeded init that ignores the world size, released
weights loaded without any rank holding the full model, DCP checkpoints (exact resume, resharding between world
sizes, asynchronous writes, old single-file checkpoints), streaming export equal to the trained model."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest
import torch

import train_dit
from hyvideo.training import checkpointing
from hyvideo.training.cli import run_cli
from tests.training.conftest import ROOT, metrics, set_args, torchrun
from tests.training.conftest import TINY_DIT as TINY
from tests.training.conftest import run_tiny_dit as _run


@pytest.fixture(scope="module")
def reference(tmp_path_factory, latent_cache):
    """An uninterrupted 4-step run on one process with the 2-rank global batch (2 accumulation micro-steps)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    return _run(out, f"data.latent_cache={latent_cache}", "run.max_steps=4", "optim.grad_accum=2")["losses"]


def test_meta_init_follows_the_model_init_and_ignores_sharding():
    from hyvideo.models.dit import HYVideoDiffusionTransformer
    from hyvideo.parallel.fsdp import apply_fsdp
    from hyvideo.parallel.mesh import destroy, init_distributed
    from hyvideo.training.meta_init import build_on_meta, init_sharded, materialize
    from hyvideo.training.state import model_state

    def factory():
        return HYVideoDiffusionTransformer.from_config(ROOT / "hyvideo/configs/dit_tiny.json")

    plain = build_on_meta(factory)
    materialize(plain, torch.device("cpu"))
    init_sharded(plain, factory, seed=3)
    sd = plain.state_dict()
    assert all(torch.isfinite(v).all() for v in sd.values())
    assert sd["final_layer.linear.weight"].abs().sum() == 0  # the model's init_weights (zero final layer) ran
    assert torch.equal(sd["double_blocks.0.img_attn_q_norm.weight"], torch.ones(16))  # RMSNorm reset_parameters
    assert sd["time_in.mlp.0.weight"].std() == pytest.approx(0.02, rel=0.2)  # normal(0.02) embedders
    env = init_distributed(1, "gloo")
    try:
        sharded = apply_fsdp(build_on_meta(factory), env.mesh)
        materialize(sharded, env.device)
        init_sharded(sharded, factory, seed=3)
        assert all(torch.equal(v, sd[k]) for k, v in model_state(sharded).items())
    finally:
        destroy()
    other = build_on_meta(factory)
    materialize(other, torch.device("cpu"))
    init_sharded(other, factory, seed=4)
    assert not torch.equal(other.state_dict()["img_in.proj.weight"], sd["img_in.proj.weight"])


@pytest.mark.dist
def test_two_ranks_load_released_weights_without_the_full_model_and_init_like_one(tmp_path):
    """Per-rank anonymous memory measured while rank 0 maps a released-layout fp32 file and broadcasts it."""
    from bench_train_memory import dit_config, launch, prepare

    from hyvideo.models.dit import HYVideoDiffusionTransformer
    from hyvideo.training.meta_init import build_on_meta, init_sharded, materialize

    cfg = dit_config(384, 3, 6)
    info = prepare(tmp_path, cfg)
    assert info["fp32_mib"] > 90  # big enough that holding it is unmistakable
    ranks = launch(argparse.Namespace(out=str(tmp_path), phases="load"), 2, eager=False,
                   dump_init=str(tmp_path / "init_w2.pt"))
    for r in ranks:
        assert r["load_equal"], r  # every shard equals its slice of the file
        assert r["load"]["peak_anon_increase_mib"] < 0.25 * info["fp32_mib"], r  # no full copy on any rank
        assert r["build"]["peak_anon_above_baseline_mib"] < 0.8 * info["fp32_mib"], r  # half + one block
    one = build_on_meta(lambda: HYVideoDiffusionTransformer.from_config(cfg))
    materialize(one, torch.device("cpu"))
    init_sharded(one, lambda: HYVideoDiffusionTransformer.from_config(cfg), 0)
    two = torch.load(tmp_path / "init_w2.pt", weights_only=True)
    assert all(torch.equal(two[k], v) for k, v in one.state_dict().items())  # same init at world 1 and 2


@pytest.mark.dist
def test_saved_at_two_ranks_resumes_at_one(tmp_path, latent_cache, reference):
    common = [f"data.latent_cache={latent_cache}", "run.max_steps=4", f"run.out_dir={tmp_path}"]
    torchrun("train_dit.py", ["--config", TINY, *set_args(*common, "run.stop_after=2")])
    ckpt = tmp_path / "checkpoints" / "step_00000002"
    assert json.loads((ckpt / "train_state.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in ckpt.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    resumed = train_dit.main(["--config", TINY, *set_args(*common, "optim.grad_accum=2")])["losses"]
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert abs(resumed[step] - reference[step]) < 1e-5, (step, resumed[step], reference[step])


@pytest.mark.dist
def test_saved_at_one_rank_resumes_at_two(tmp_path, latent_cache, reference):
    common = [f"data.latent_cache={latent_cache}", "run.max_steps=4", f"run.out_dir={tmp_path}"]
    _run(tmp_path, *common, "optim.grad_accum=2", "run.stop_after=2")
    torchrun("train_dit.py", ["--config", TINY, *set_args(*common)])
    two = metrics(tmp_path)
    for step in (3, 4):
        assert abs(two[step]["loss"] - reference[step]) < 1e-5, (step, two[step]["loss"], reference[step])
    assert (tmp_path / "export" / "dit.pt").is_file()


def test_dcp_resume_is_exact_also_with_async_writes(tmp_path, latent_cache, reference):
    common = [f"data.latent_cache={latent_cache}", "run.max_steps=4", "optim.grad_accum=2",
              "run.async_checkpoint=true", "run.ckpt_every=1"]
    first = _run(tmp_path, *common, "run.stop_after=2")["losses"]
    assert (tmp_path / "checkpoints" / "step_00000002" / "train_state.json").is_file()
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    resumed = _run(tmp_path, *common)["losses"]
    assert {**first, **resumed} == reference  # fp32 on CPU: identical


def test_old_single_file_checkpoint_resumes(tmp_path, latent_cache, reference, monkeypatch):
    from hyvideo.training.state import save_training_state

    def legacy_save(self, step, **kw):
        save_training_state(self.dir.parent, step, is_main=self.is_main, **kw)

    common = [f"data.latent_cache={latent_cache}", "run.max_steps=4", "optim.grad_accum=2"]
    with monkeypatch.context() as m:
        m.setattr(checkpointing.Checkpointer, "save", legacy_save)
        _run(tmp_path, *common, "run.stop_after=2")
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["step_00000002.pt"]
    resumed = _run(tmp_path, *common)["losses"]
    assert resumed == {s: reference[s] for s in (3, 4)}
    assert (tmp_path / "checkpoints" / "step_00000004").is_dir()  # continues in the sharded format


def test_export_from_the_checkpoint_equals_the_trained_model(tmp_path, latent_cache, monkeypatch):
    from safetensors.torch import load_file

    from hyvideo.checkpoint.io import load_dit
    from hyvideo.training.export import main as export_main
    from hyvideo.training.state import model_state

    held = {}
    real_save = checkpointing.Checkpointer.save

    def capture(self, step, *, model, ema, **kw):
        held["module"], held["ema"] = model_state(model), ema.full_state_dict()
        return real_save(self, step, model=model, ema=ema, **kw)

    monkeypatch.setattr(checkpointing.Checkpointer, "save", capture)
    _run(tmp_path, f"data.latent_cache={latent_cache}", "run.max_steps=2")
    exported = torch.load(tmp_path / "export" / "dit.pt", weights_only=True)
    for key in ("module", "ema"):
        assert exported[key].keys() == held[key].keys()
        assert all(torch.equal(exported[key][k], v) for k, v in held[key].items())  # bit for bit
    st = load_file(tmp_path / "export" / "dit.safetensors")
    assert all(torch.equal(st[k], v) for k, v in held["module"].items())
    dit = load_dit(tmp_path / "export" / "dit.pt", load_key="ema", dtype=torch.float32)  # sample_video.py's loader
    assert all(torch.equal(dit.state_dict()[k], v) for k, v in held["ema"].items())
    again = export_main(["--checkpoint", str(tmp_path / "checkpoints" / "step_00000002"),
                         "--out", str(tmp_path / "cli")])  # offline, no process group
    assert torch.load(again, weights_only=True)["module"].keys() == held["module"].keys()
    assert all(torch.equal(load_file(tmp_path / "cli" / "dit.safetensors")[k], v) for k, v in st.items())


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_pickle_payload_in_checkpoint_metadata_is_refused(tmp_path, latent_cache, capsys):
    common = [f"data.latent_cache={latent_cache}", f"run.out_dir={tmp_path}", "run.max_steps=3"]
    _run(tmp_path, *common[:1], *common[2:], "run.stop_after=1")
    marker = tmp_path / "PAYLOAD_RAN"
    (tmp_path / "checkpoints" / "step_00000001" / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    rc = run_cli(train_dit.main, ["--config", TINY, *set_args(*common)], "train_dit.py")
    err = capsys.readouterr().err
    assert rc == 2 and "refusing to load" in err and "posix.system" in err and "Traceback" not in err
    assert not marker.exists()


def test_changed_hyper_parameters_on_resume_are_logged_and_the_config_wins(tmp_path, latent_cache, caplog):
    common = [f"data.latent_cache={latent_cache}", "run.max_steps=3", "optim.betas=[0.9, 0.99]"]
    _run(tmp_path, *common, "run.stop_after=2")
    _run(tmp_path, *common, "optim.lr=5.0e-4", "optim.betas=[0.8, 0.9]")
    assert "optim.lr changed since step_00000002: 0.001 -> 0.0005 (the new value is used)" in caplog.text
    assert "optim.betas changed" in caplog.text
    assert metrics(tmp_path)[3]["lr"] == pytest.approx(5e-4)  # not the checkpoint's 1e-3


def test_sample_video_loads_the_export_of_a_dcp_checkpoint(tmp_path, latent_cache, tiny_ckpts, monkeypatch):
    """``python -m hyvideo.training.export`` from a checkpoint folder, then ``sample_video.py --dit-weight`` with
    it: the DiT the sampler builds holds exactly the checkpoint's EMA weights, and a video is written."""
    import sample_video
    from hyvideo.checkpoint import loader
    from hyvideo.training.export import main as export_main

    _run(tmp_path, f"data.latent_cache={latent_cache}", "run.max_steps=3", "run.stop_after=2")  # no final export
    assert not (tmp_path / "export").exists()
    pt = export_main(["--checkpoint", str(tmp_path / "checkpoints" / "step_00000002"), "--out", str(tmp_path / "x")])
    built = []
    real = loader.load_dit

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(loader, "load_dit", spy)
    rc = sample_video.main(["--model-base", str(tiny_ckpts), "--dit-weight", str(pt), "--load-key", "ema",
                            "--precision", "fp32", "--prompt", "A cat walks on the grass.", "--video-size", "32",
                            "32", "--video-length", "5", "--infer-steps", "1", "--seed", "0",
                            "--save-path", str(tmp_path / "videos")])
    assert rc in (0, None) and len(list((tmp_path / "videos").glob("*.mp4"))) == 1
    ema = torch.load(pt, weights_only=True)["ema"]
    assert ema.keys() == built[0].state_dict().keys()
    assert all(torch.equal(built[0].state_dict()[k], v) for k, v in ema.items())
