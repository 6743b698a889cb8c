"""gradio_server.py through a real client (gradio_client): jobs, queue order, errors, cancel, LoRA, uploads."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from tests.ui.conftest import JOB, job_args

pytest.importorskip("gradio_client")


def _client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)  # a new session (empty history) per client


def _frames(path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path, plugin="pyav")


def test_job_returns_mp4_of_requested_frames_and_size_with_parameters(ui_server):
    video, text, params, table = _client(ui_server).predict(
        *job_args("A red ball bounces on the grass.", aspect="16:9", seed=7), api_name="/generate")
    frames = _frames(video)
    assert frames.shape == (9, 64, 112, 3) and frames.std() > 0  # 16:9 of the tiny tree's 64px tier is 64x112
    assert params["seed"] == 7 and params["frames"] == 9 and (params["height"], params["width"]) == (64, 112)
    args = params["args"]
    assert args["prompt"] == "A red ball bounces on the grass." and args["infer_steps"] == 2
    assert args["resolution"] == "64px" and args["aspect"] == "16:9" and args["source"] == "gradio_server.py"
    saved = json.loads((ui_server.save_dir / params["video"].split("/")[-1]).with_suffix(".json").read_text())
    assert saved == params  # the page shows the sidecar written beside the mp4
    assert table["data"][-1][1] == 7 and table["data"][-1][3] == "64x112"
    assert "Seed **7**, 9 frames at 64x112" in text


def test_three_jobs_submitted_at_once_all_finish_in_order(ui_server):
    client = _client(ui_server)
    jobs, ranks = [], set()
    for i in range(3):  # submitted back to back; each is in the queue before the next is sent
        # job 0 runs 40 denoising steps, so that it is still running when job 2 is queued behind job 1: a 2-step
        # job 0 sometimes finished first, and job 2 was then only ever told rank 0
        steps = 40 if i == 0 else JOB["infer_steps"]
        jobs.append(client.submit(*job_args(f"job {i}", seed=100 + i, infer_steps=steps), api_name="/generate"))
        end = time.monotonic() + 30
        while jobs[-1].status().code.name in ("STARTING",) and time.monotonic() < end:
            time.sleep(0.05)
    while not jobs[2].done():  # the last one waits behind the others and is told its queue position
        status = jobs[2].status()
        if status.code.name == "IN_QUEUE" and status.rank is not None:
            ranks.add(status.rank)
        time.sleep(0.05)
    results = [j.result(timeout=300) for j in jobs]
    assert max(ranks, default=0) >= 1, ranks
    for i, (video, _, params, table) in enumerate(results):
        assert params["seed"] == 100 + i and _frames(video).shape == (9, 64, 64, 3)
        # the session history when job i finished holds jobs 0..i in order: the jobs ran in submission order
        assert [row[1] for row in table["data"]] == [100 + k for k in range(i + 1)]


BAD_VALUES = [  # checked by hyvideo (sampling / engine) or by gradio's components: each is a message
    (dict(video_length=10), "video length 10 is not 4n+1 frames; allowed: 1, 5, 9, ..., 129"),
    (dict(seed=-5), "seed -5 is outside 0.."),
    (dict(video_length=133), "Value 133 is greater than maximum value 129"),
    (dict(flow_shift=0.0), "Value 0.0 is less than minimum value 1.0"),
    (dict(aspect="7:3"), "7:3 is not in the list of choices"),
    (dict(lora="absent.safetensors"), "absent.safetensors is not in the list of choices: ['(none)', 'style"),
]


def test_bad_values_are_messages_and_the_server_keeps_serving(ui_server):
    from gradio_client.exceptions import AppError

    client = _client(ui_server)
    for change, message in BAD_VALUES:
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(*job_args("A cat.", **change), api_name="/generate")
    _, _, params, _ = client.predict(*job_args("A cat."), api_name="/generate")
    assert params["frames"] == 9


def test_cancel_stops_the_running_job_and_the_next_job_runs(ui_server):
    client = _client(ui_server)
    before = set(ui_server.save_dir.glob("*.mp4"))
    job = client.submit(*job_args("cancel me", resolution="128px", video_length=33, infer_steps=60),
                        api_name="/generate")
    end = time.monotonic() + 120
    while time.monotonic() < end:  # wait until it is denoising
        units = job.status().progress_data or []
        if any(u.desc == "denoising" and (u.index or 0) >= 1 for u in units):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the job never reached denoising: {job.status()}")
    job.cancel()
    t0 = time.perf_counter()
    _, _, params, _ = client.predict(*job_args("after the cancel", seed=5), api_name="/generate")
    assert params["seed"] == 5
    assert time.perf_counter() - t0 < 60  # did not wait for the 60 steps of the cancelled job
    assert not any("cancel me" in p.name for p in set(ui_server.save_dir.glob("*.mp4")) - before)
    assert "cancelled at denoising" in ui_server.output() or "JobCancelled" in ui_server.output()


def test_lora_is_applied_for_its_job_only(ui_server):
    client = _client(ui_server)
    plain = _frames(client.predict(*job_args("A cat.", seed=11), api_name="/generate")[0]).astype(float)
    video, _, params, _ = client.predict(*job_args("A cat.", seed=11, lora="style.safetensors", lora_scale=1.0),
                                      api_name="/generate")
    assert params["args"]["lora"] == "style.safetensors" and params["args"]["lora_scale"] == 1.0
    assert np.abs(_frames(video).astype(float) - plain).mean() > 1.0  # the adapter changed the video
    again = _frames(client.predict(*job_args("A cat.", seed=11), api_name="/generate")[0]).astype(float)
    assert np.array_equal(again, plain)  # and was removed after its job


def test_non_image_upload_is_refused_with_a_message(ui_server, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "photo.png"
    fake.write_text("this is not an image")
    client = _client(ui_server)
    with pytest.raises(AppError, match=r"photo.png is not a readable image .*accepted: PNG, JPEG"):
        client.predict(*job_args("A cat.", image=handle_file(str(fake))), api_name="/generate")
    gif = tmp_path / "anim.gif"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(gif)
    with pytest.raises(AppError, match=r"anim.gif is a GIF image; accepted: PNG, JPEG"):
        client.predict(*job_args("A cat.", image=handle_file(str(gif))), api_name="/generate")


def test_oversized_upload_is_refused_with_a_message(ui_server, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(2 * 2**20))  # 2 MiB > --max-upload-mb 1
    with big.open("rb") as f:  # what the page's upload does (gradio_client refuses it before sending)
        r = httpx.post(ui_server.url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")})
    assert r.status_code == 413 and "maximum allowed size of 1048576 bytes" in r.text
