"""The nano ablations (hyvideo/data/synthetic/ablation.py, scripts/ablate_nano.py): row plans, the parameter-matched
single-stream DiT, the final loss, the CLI's checks, and (opt-in) the whole command on a train_nano.py --quick run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hyvideo.data.synthetic import ablation as ab
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[3]
NANO_DIT = json.loads((ROOT / "configs/nano/dit.json").read_text())
RECIPE = {"dit1": 600, "dit2": 600, "dit3": 2000}


def test_stage_plan_keeps_the_recipe_proportions_and_the_budget():
    assert ab.stage_plan(320, True, RECIPE) == [("dit1", 60), ("dit2", 60), ("dit3", 200)]
    assert ab.stage_plan(320, False, RECIPE) == [("dit3", 320)]
    for total in (3, 4, 7, 101, 999):
        plan = ab.stage_plan(total, True, RECIPE)
        assert sum(n for _, n in plan) == total and all(n >= 1 for _, n in plan)
    with pytest.raises(ValueError, match="needs >= 3 steps .* got 2"):
        ab.stage_plan(2, True, RECIPE)


def test_schedule_sets_shorten_warmup_decay_and_ema_with_the_stage():
    sets = dict(s.split("=", 1) for s in ab.schedule_sets(200, warmup=50, decay=True, ema_decay=0.995))
    assert sets["run.max_steps"] == "200" and sets["optim.warmup_steps"] == "20" and sets["optim.decay_steps"] == "200"
    assert float(sets["optim.ema_decay"]) == pytest.approx(0.95)  # horizon 20 steps = 10 % of the stage
    sets = dict(s.split("=", 1) for s in ab.schedule_sets(3000, warmup=50, decay=False, ema_decay=0.99))
    assert sets["optim.warmup_steps"] == "50" and sets["optim.decay_steps"] == "0" and sets["optim.ema_decay"] == "0.99"
    sets = dict(s.split("=", 1) for s in ab.schedule_sets(1, warmup=50, decay=True, ema_decay=0.99))
    assert sets["optim.decay_steps"] == "0" and 0 < float(sets["optim.ema_decay"]) < 1  # a valid 1-step stage


def test_single_stream_config_is_parameter_matched_and_has_no_dual_stream_blocks():
    cfg, base, params = ab.single_stream_config(NANO_DIT)
    assert cfg["mm_double_blocks_depth"] == 0 and cfg["mm_single_blocks_depth"] > NANO_DIT["mm_single_blocks_depth"]
    assert base == ab.count_params(NANO_DIT) and params == ab.count_params(cfg)
    assert abs(params / base - 1) < 0.03
    for other in (cfg["mm_single_blocks_depth"] - 1, cfg["mm_single_blocks_depth"] + 1):  # the closest depth
        n = ab.count_params({**cfg, "mm_single_blocks_depth": other})
        assert abs(n - base) >= abs(params - base)


def test_rows_share_a_training_run_only_when_their_training_is_equal():
    keys = {name: row.train_key for name, row in ab.ROWS.items()}
    assert keys["baseline"] == keys["shift1"] == keys["shift7_sampling"]
    assert len({keys[n] for n in ("baseline", "single_stream", "clip_text", "shift7", "no_stages")}) == 5


def test_final_loss_averages_the_last_fifth_and_counts_a_resumed_step_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": float(s)} for s in range(1, 11)] + [{"step": 10, "loss": 20.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert ab.final_loss(path, 10) == (pytest.approx((9 + 20) / 2), 2)
    path.write_text(json.dumps({"step": 1, "loss": float("nan")}) + "\n")
    with pytest.raises(ValueError, match="not finite"):
        ab.final_loss(path, 10)


def test_table_has_every_row_and_dashes_for_missing_values():
    rows = {"baseline": {"train_steps": 9, "loss": 0.5, "colour_acc": 50.0}, "no_stages": {"train_steps": 9}}
    table = ab.ablation_table(rows, {"colour_acc": 100.0})
    lines = table.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["baseline", "no_stages", "rendered"]
    assert "0.5000" in lines[1] and "100.0" in lines[3] and lines[2].count("-") >= 10


def _fake_nano(tmp_path: Path) -> Path:
    """A folder holding the file names ablate_nano.py checks (empty files: preflight only)."""
    nano = tmp_path / "nano"
    for name in load_script("ablate_nano").NEEDED:
        (nano / name).parent.mkdir(parents=True, exist_ok=True)
        (nano / name).write_text("{}")
    return nano


@pytest.mark.parametrize("case, message", [
    ("missing", "not a train_nano.py run finished up to its tree stage: missing cache32/index.jsonl (encode stage)"),
    ("row", "--rows: unknown ['dual']; allowed: ['baseline'"),
    ("inside", "is inside --nano"),
    ("steps", "--steps must be >= 3 (one per stage), got 2"),
    ("settings", "holds rows made with steps=320 (now 400)"),
])
def test_cli_rejects_bad_input_with_status_2_before_any_work(tmp_path, capsys, case, message):
    nano = _fake_nano(tmp_path)
    args = ["--nano", str(nano), "--out", str(tmp_path / "out")]
    if case == "missing":
        (nano / "cache32" / "index.jsonl").unlink()
    elif case == "row":
        args += ["--rows", "baseline,dual"]
    elif case == "inside":
        args = ["--nano", str(nano), "--out", str(nano / "ablate")]
    elif case == "steps":
        args += ["--steps", "2"]
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "settings.json").write_text(json.dumps({"nano": str(nano.resolve()), "steps": 320,
                                                                   "limit": 16, "eval_steps": None, "seeds": [0, 1],
                                                                   "quick": False}))
        args += ["--steps", "400"]
    with pytest.raises(SystemExit) as e:
        load_script("ablate_nano").main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out" / "rows").exists()


@pytest.mark.slow
def test_ablate_nano_quick_end_to_end_on_a_quick_nano_run(tmp_path, capsys):
    """Opt-in (~3 min of CPU on 2 cores): ``train_nano.py --quick``, then ``ablate_nano.py --quick``: every row in
    the table with finite numbers; a rerun redoes nothing."""
    nano = tmp_path / "nano"
    out = subprocess.run([sys.executable, str(ROOT / "scripts/train_nano.py"), "--out", str(nano), "--quick",
                          "--num-videos", "8"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ablate = load_script("ablate_nano")
    args = ["--nano", str(nano), "--out", str(tmp_path / "ablate"), "--quick"]
    report = ablate.main(args)
    assert list(report["rows"]) == list(ab.ROWS)
    lines = {ln.split()[0]: ln for ln in report["table"].splitlines()[1:]}
    assert set(ab.ROWS) <= set(lines)
    for name, rec in report["rows"].items():
        for key in ("loss", "colour_acc", "shape_acc", "motion_acc", "found", "smoothness", "fd", "wall_s"):
            assert isinstance(rec[key], float) and math.isfinite(rec[key]), (name, key, rec[key])
        assert "-" not in lines[name].split()[1:], lines[name]
    rows = report["rows"]
    assert rows["shift1"]["shift"] == "1/1" and rows["shift7"]["shift"] == "7/7" and rows["baseline"]["shift"] == "1/3"
    assert abs(rows["single_stream"]["params"] / rows["baseline"]["params"] - 1) < 0.03
    clip_cache = json.loads((tmp_path / "ablate" / "caches" / "cache64_clip" / "meta.json").read_text())
    assert clip_cache["model"]["text_conditioning"] == "clip"
    saved = json.loads((tmp_path / "ablate" / "ablation.json").read_text())
    assert saved["table"] == report["table"]
    capsys.readouterr()
    again = ablate.main(args)  # resumable: every row done earlier, nothing retrained
    assert again["rows"] == report["rows"] and capsys.readouterr().out.count("done earlier") == len(ab.ROWS)
    assert [run["rows_run"] for run in again["invocations"]] == [list(ab.ROWS), []]
