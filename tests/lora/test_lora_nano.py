"""scripts/lora_nano.py (issue 18's learning check): the new-word scoring and one --quick run end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from hyvideo.data.synthetic import word_eval
from hyvideo.data.synthetic.attributes import load_nano_config
from hyvideo.data.synthetic.vocab import caption_triple

ROOT = Path(__file__).resolve().parents[2]
NEW = ROOT / "configs" / "nano" / "lora_orange.yaml"
CARD = {"vocabulary": ["a", "circle", "moves", "red", "right", "the", "to"],
        "trained": {"sizes": [[32, 32]], "frames": [1, 5]},
        "sampling": {"video_size": [32, 32], "video_length": 5, "infer_steps": 2, "flow_shift": 3.0, "cfg_scale": 1.0,
                     "negative_prompt": None, "text_len": 16, "fps": 24, "example": "a red circle moves to the right"}}


def _scores(colour, shape, motion, extra=None):
    return {"colour_acc": colour, "shape_acc": shape, "motion_acc": motion, "found": 100.0, "fd": 1.0,
            **({"colour_acc_with_new": extra} if extra is not None else {})}


def test_prompt_sets_and_acceptance():
    """The new set holds only orange triples, scored against base + orange; the checks use both bounds."""
    sets = word_eval.prompt_sets(load_nano_config(NEW), [0, 1])
    new, old = sets["new"], sets["old"]
    assert {t[0] for t in new.triples} == {"orange"} and len(new.items) == 2 * len(new.triples) == 78
    assert "orange" in new.palette and "orange" not in old.palette and set(old.palette) < set(new.palette)
    assert all(t[0] != "orange" for t in old.triples) and len(old.triples) == len(load_nano_config().heldout)
    before = {"new": _scores(10.0, 50, 50), "old": _scores(90.0, 70.0, 80.0, 88.0)}
    ok = word_eval.acceptance(before, {"new": _scores(85.0, 50, 50), "old": _scores(86.0, 70.0, 81.0, 80.0)})
    assert ok["passed"] and ok["old_drop"] == {"colour_acc": 4.0, "shape_acc": 0.0, "motion_acc": -1.0}
    assert not word_eval.acceptance(before, {"new": _scores(79.0, 50, 50), "old": before["old"]})["passed"]
    assert not word_eval.acceptance(before, {"new": _scores(95.0, 50, 50),
                                             "old": _scores(90.0, 64.0, 80.0, 88.0)})["passed"]
    text = word_eval.tables(sets, before, before, before)
    assert len(text) == 2 and "base + LoRA" in text[old.title] and "base + new palette" in text[old.title]
    with pytest.raises(ValueError, match="fd is nan"):
        word_eval.check_finite({"new": {**_scores(1, 1, 1), "fd": float("nan")}})
    with pytest.raises(ValueError, match="adds no colour"):
        word_eval.prompt_sets(load_nano_config(), [0])


def test_lora_nano_quick_end_to_end(tiny_ckpts, tmp_path, capsys):
    """--quick on the tiny random tree (with a nano card): every stage runs, the LoRA file is written, the report
    holds both tables, finite scores, acceptance fields and the wall time; a rerun skips every stage."""
    from tests.conftest import load_script

    tree = tmp_path / "tree"
    shutil.copytree(tiny_ckpts, tree)
    (tree / "nano.json").write_text(json.dumps(CARD))
    mod = load_script("lora_nano")
    argv = ["--model-base", str(tree), "--out", str(tmp_path / "run"), "--quick", "--num-videos", "2",
            "--replay-videos", "6", "--workers", "1"]
    report = mod.main(argv)
    assert Path(report["lora"]).is_file()
    assert len(report["tables"]) == 2 and all("base + LoRA" in t for t in report["tables"].values())
    for when in ("before", "after", "rendered"):
        for name in ("new", "old"):
            s = report["scores"][when][name]
            assert all(math.isfinite(s[k]) and 0 <= s[k] <= 100 for k in word_eval.ATTRS), (when, name, s)
            assert math.isfinite(s["fd"]) and s["fd"] >= 0
    acc = report["acceptance"]
    assert set(acc["old_drop"]) == set(word_eval.ATTRS) and isinstance(report["passed"], bool)
    assert report["wall_seconds"] > 0 and set(report["stage_seconds"]) == set(mod.STAGES) - {"report"}
    data = report["data"]
    assert data["word"] == "azure" and data["captions_with_word"] == data["clips"]["new"] == 2
    assert 1 <= data["clips"]["replay"] < 6  # the bare-prompt ones of the replay clips (as the base's stage 4)
    train = [json.loads(x) for x in (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines()]
    _, cfg = mod.new_word(mod.NEW_CONFIG)
    assert len(train) == 2 + data["clips"]["replay"]
    assert all(caption_triple(x["caption"], cfg) is not None for x in train), [x["caption"] for x in train]
    assert set(report["data"]["text"]) == {"text_encoder", "text_encoder_2"}
    out = capsys.readouterr().out
    assert "new word azure" in out and "wall time" in out
    mod.main(argv)  # resume: nothing left to do
    assert out.count("done earlier") == 0 and capsys.readouterr().out.count("done earlier") == len(mod.STAGES)


def test_bad_arguments_exit_2(tmp_path, capsys):
    from tests.conftest import load_script

    mod = load_script("lora_nano")
    with pytest.raises(SystemExit) as e:
        mod.main(["--model-base", str(tmp_path), "--out", str(tmp_path / "o"), "--num-videos", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "has no nano.json" in err and "--num-videos must be >= 1" in err
    with pytest.raises(SystemExit) as e:  # a config that adds no new colour to the base palette
        mod.main(["--model-base", str(tmp_path), "--out", str(tmp_path / "o"),
                  "--new-config", str(ROOT / "configs" / "nano" / "dataset.yaml")])
    assert e.value.code == 2 and "expected one colour not in the base palette" in capsys.readouterr().err
