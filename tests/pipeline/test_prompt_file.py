"""Batch sampling from a prompt file: per-line messages for bad lines, stable names, a killed run resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyvideo.prompt_file import read_prompt_file

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_bad_lines_get_one_message_each(tmp_path):
    long = "a red circle " * 200
    f = _write(tmp_path, "p.txt", f"a red circle moves left\n\n{long}\na blue star grows\na red circle moves left\n")
    entries, messages = read_prompt_file(f)
    assert [e.prompt for e in entries] == ["a red circle moves left", "a blue star grows"]
    assert [e.line for e in entries] == [1, 4]
    assert messages == ["p.txt line 2: blank prompt; skipped",
                        f"p.txt line 3: prompt of {len(long.strip())} characters is too long (max 2000; the text "
                        "encoder reads 256 tokens); skipped",
                        "p.txt line 5: duplicate of line 1; skipped"]
    assert entries[0].name == "00001_a_red_circle_moves_left"


def test_csv_and_jsonl_with_seeds(tmp_path):
    c = _write(tmp_path, "p.csv", "prompt,seed,name\na cat,3,cat\na dog,,\n")
    entries, _ = read_prompt_file(c)
    assert [(e.prompt, e.seed, e.name) for e in entries] == [("a cat", 3, "cat"), ("a dog", None, "00003_a_dog")]
    j = _write(tmp_path, "p.jsonl", '{"prompt": "a cat", "seed": 1}\nnot json\n{"prompt": "a cat", "seed": 2}\n')
    entries, messages = read_prompt_file(j)
    assert [(e.prompt, e.seed) for e in entries] == [("a cat", 1), ("a cat", 2)]
    assert messages and messages[0].startswith("p.jsonl line 2: invalid JSON")
    with pytest.raises(ValueError, match="needs a header with a 'prompt' column"):
        read_prompt_file(_write(tmp_path, "bad.csv", "text\nx\n"))
    with pytest.raises(ValueError, match="no usable prompt"):
        read_prompt_file(_write(tmp_path, "empty.txt", "\n\n"))


def _cmd(tiny_ckpts, prompts, out):
    return [sys.executable, str(ROOT / "sample_video.py"), "--model-base", str(tiny_ckpts), "--prompt-file",
            str(prompts), "--video-size", "32", "32", "--video-length", "5", "--infer-steps", "2", "--device", "cpu",
            "--save-path", str(out)]


def test_killed_batch_resumes_without_redoing_finished_videos(tiny_ckpts, tmp_path):
    prompts = _write(tmp_path, "p.txt", "\n".join(f"a {c} circle moves right" for c in
                                                  ("red", "green", "blue", "white", "pink", "cyan")) + "\n\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(tiny_ckpts, prompts, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert 2 <= len(done) < 6, sorted(done)  # killed mid-run
    r = subprocess.run(_cmd(tiny_ckpts, prompts, out), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "line 7: blank prompt; skipped" in r.stderr
    assert r.stdout.count("finished video(s) found") == len(done)
    sidecars = sorted(out.glob("*.json"))
    assert len(sidecars) == 6 and len(list(out.glob("*.mp4"))) == 6
    for p in sidecars:  # finished videos were not redone; names are stable: <line>_<slug>_seed0
        if p.name in done:
            assert p.stat().st_mtime_ns == done[p.name]
        assert p.name.endswith("_seed0.json") and json.loads(p.read_text())["prompt"].startswith("a ")
