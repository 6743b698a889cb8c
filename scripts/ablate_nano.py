"""The paper's ablations at nano scale, one command (issue 20): short DiT runs from the same nano latents, one table.

    python scripts/train_nano.py --out runs/nano                           # once: data, VAE, latent caches, tree
    python scripts/ablate_nano.py --nano runs/nano --out runs/ablate        # the table (rerun resumes)
    python scripts/ablate_nano.py --nano runs/nano --out runs/ablate --rows baseline,no_stages --steps 800

Rows (hyvideo/data/synthetic/ablation.py): baseline (the nano recipe's three stages, shortened to --steps),
single_stream (no dual-stream phase, parameter-matched), clip_text (CLIP-only text conditioning), shift1 /
shift7_sampling (the baseline DiT sampled at flow shift 1 / 7), shift7 (trained and sampled at shift 7), no_stages
(the same steps at the final resolution only). Each trained row is a train_dit.py run (--set overrides of
configs/nano/dit_stage*.yaml) on the latent caches of the nano run's encode stage, with the same step budget;
rows with equal training settings share one run. Each row is scored by eval_nano.py (held-out colour / shape /
motion accuracy, found rate, smoothness, Frechet distance to the renders) and by its final training loss (the
mean over the last 20 % of the final stage's steps; at another training shift it weighs other noise levels, so
it is comparable only between rows trained at the same shift).

Outputs under --out: train/<run>/<stage>/ (train_dit.py runs, logs/), rows/<row>/{eval,row}.json,
ablation.json (every row, the table, settings) and the table on stdout. A finished row is not redone; a killed
training stage resumes from its last checkpoint. Exit status 2 on bad arguments, 1 when a run fails.

On a CPU shared with other jobs, run it with OMP_NUM_THREADS=1: with three other PyTorch jobs on 2 cores, stage 1
measured 0.4 images/s with the default two threads (their spin-waits collide) and 30 images/s with one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from hyvideo.data.synthetic import ablation as ab  # noqa: E402

NEEDED = {  # what a finished train_nano.py run (up to its tree stage) provides, and the stage that writes it
    "cache32/index.jsonl": "encode", "cache64/index.jsonl": "encode", "latent_scale.json": "encode",
    "tree/nano.json": "tree", "tree/hunyuan-video-t2v-720p/vae/config.json": "tree",
    "tree/text_encoder/config.json": "text", "tree/text_encoder_2/config.json": "text"}
QUICK_SETS = ["data.video_batch_size=2", "data.image_batch_size=2"]  # as train_nano.py --quick
PREFIX = re.compile(r"^\[rank\d+\] \w+ [\w.]+: ")  # train_dit.py's log prefix, dropped on the console
SETTINGS = ("nano", "steps", "limit", "eval_steps", "seeds", "quick")  # a rerun must match them


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nano", required=True, help="a scripts/train_nano.py output folder (read only)")
    p.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    p.add_argument("--rows", default=",".join(ab.ROWS), help=f"comma-separated subset of {list(ab.ROWS)}")
    p.add_argument("--steps", type=int, default=None, help="DiT steps per trained row (default 240; --quick 3)")
    p.add_argument("--limit", type=int, default=None,
                   help="held-out triples evaluated, spread over the 53 (default 16; --quick 1)")
    p.add_argument("--eval-steps", type=int, default=None, help="Euler steps at evaluation (default: the card's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds per triple")
    p.add_argument("--quick", action="store_true", help="tiny setting (tests): 3 steps, 1 triple, batches of 2")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.steps = args.steps if args.steps is not None else (3 if args.quick else 240)
    args.limit = args.limit if args.limit is not None else (1 if args.quick else 16)
    args.eval_steps = args.eval_steps if args.eval_steps is not None else (2 if args.quick else None)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    problems = preflight(args)
    if problems:
        p.error("; ".join(problems))
    return args


def preflight(args) -> list[str]:
    """Every input check before any work; returns the problems (empty = fine)."""
    from hyvideo.training.config import DiTTrainConfig, load_config  # noqa: PLC0415

    nano, out, problems = Path(args.nano).resolve(), Path(args.out).resolve(), []
    unknown = [r for r in args.rows if r not in ab.ROWS]
    if unknown or not args.rows:
        problems.append(f"--rows: unknown {unknown or 'empty'}; allowed: {list(ab.ROWS)}")
    missing = [f"{name} ({stage} stage)" for name, stage in NEEDED.items() if not (nano / name).is_file()]
    if missing:
        problems.append(f"--nano {args.nano} is not a train_nano.py run finished up to its tree stage: missing "
                        f"{', '.join(missing)} (python scripts/train_nano.py --out {args.nano})")
    if out == nano or nano in out.parents:
        problems.append(f"--out {args.out} is inside --nano {args.nano}; the nano run is read only, give another "
                        "folder")
    if args.steps < 3 and any(ab.ROWS[r].staged for r in args.rows if r in ab.ROWS):
        problems.append(f"--steps must be >= 3 (one per stage), got {args.steps}")
    if args.limit < 1 or args.eval_steps is not None and args.eval_steps < 1:
        problems.append(f"--limit and --eval-steps must be >= 1, got {args.limit} and {args.eval_steps}")
    for stage, path in ab.STAGE_CONFIGS.items():
        shift = load_config(DiTTrainConfig, str(ROOT / path), []).flow.shift
        if shift != ab.RECIPE_SHIFT:
            problems.append(f"{path} trains at flow.shift={shift}, the rows assume {ab.RECIPE_SHIFT}")
    settings = out / "settings.json"
    if settings.is_file() and not problems:
        old, new = json.loads(settings.read_text()), _settings(args)
        changed = [f"{k}={old.get(k)!r} (now {new[k]!r})" for k in SETTINGS if old.get(k) != new[k]]
        if changed:
            problems.append(f"--out {args.out} holds rows made with {', '.join(changed)}; rerun with those settings "
                            "or give another --out")
    return problems


def _settings(args) -> dict:
    return {"nano": str(Path(args.nano).resolve()), "steps": args.steps, "limit": args.limit,
            "eval_steps": args.eval_steps, "seeds": list(args.seeds), "quick": args.quick}


class _Tee(io.TextIOBase):
    """A stream writing everything to ``f`` and the lines matching ``show`` to the console (progress), at most one
    every ``every`` seconds."""

    def __init__(self, f, show: re.Pattern, console, every: float = 20.0):
        self.f, self.show, self.console, self.buf = f, show, console, ""
        self.every, self.last = every, float("-inf")

    def write(self, s: str) -> int:
        if self.f.closed:
            return len(s)
        self.f.write(s)
        self.buf += s
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if self.show.search(line) and time.monotonic() - self.last >= self.every:
                self.last = time.monotonic()
                self.console.write(f"      {PREFIX.sub('', line.strip())[:110]}\n")
                self.console.flush()
        return len(s)

    def flush(self) -> None:
        if not self.f.closed:
            self.f.flush()


@contextlib.contextmanager
def logged(log: Path, show: str = r"monitor: step|^\s+\d+/\d+ \("):
    """Run the block with stdout / stderr (and train_dit.py's log handler, made inside) going to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    with log.open("a") as f:
        tee = _Tee(f, re.compile(show), console)
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
                yield
        finally:
            root = logging.getLogger()
            for h in [h for h in root.handlers if h.get_name() == "hyvideo.training"]:
                root.removeHandler(h)  # it writes to this (now closed) log


class Ablation:
    """Runs the rows in order; see the module docstring."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.nano, self.out = args, Path(args.nano).resolve(), Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "settings.json").write_text(json.dumps(_settings(args), indent=1))
        from hyvideo.training.config import DiTTrainConfig, load_config  # noqa: PLC0415

        self.recipe = {s: load_config(DiTTrainConfig, str(ROOT / p), []) for s, p in ab.STAGE_CONFIGS.items()}
        self.scale = json.loads((self.nano / "latent_scale.json").read_text())["latent_scale"]
        self.dit_config = json.loads((ROOT / "configs/nano/dit.json").read_text())
        self.ran: list[str] = []  # rows computed by this invocation (the others were done earlier)

    # ------------------------------------------------------------------ training
    def dit_config_path(self, row: ab.Row) -> tuple[Path, int]:
        """The row's DiT config file and its parameter count."""
        if not row.single_stream:
            return ROOT / "configs/nano/dit.json", ab.count_params(self.dit_config)
        cfg, _, params = ab.single_stream_config(self.dit_config)
        path = self.out / "configs" / "dit_single_stream.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg, indent=1))
        return path, params

    def cache(self, stage: str, row: ab.Row) -> Path:
        """The latent cache of a stage; for CLIP-only text, its text re-encoded (once; no VAE)."""
        name = ab.STAGE_CACHES[stage]
        if row.text == "llm+clip":
            return self.nano / name
        dest = self.out / "caches" / f"{name}_{row.text.replace('+', '_')}"
        if not (dest / "index.jsonl").is_file():
            import encode_latents  # noqa: PLC0415

            print(f"    re-encoding the text of {self.nano / name} for text_conditioning={row.text} -> {dest}",
                  flush=True)
            t0 = time.perf_counter()
            shutil.rmtree(dest, ignore_errors=True)
            stage_cfg = ab.STAGE_CONFIGS["dit2" if name == "cache32" else "dit3"]
            with logged(self.out / "logs" / f"{dest.name}.log", show=r"$^"):
                encode_latents.main(["--config", str(ROOT / stage_cfg), "--set",
                                     f"model.text_encoder={self.nano / 'tree'}", "--set",
                                     f"model.text_conditioning={row.text}", "--latents-from", str(self.nano / name),
                                     "--out", str(dest)])
            (dest / "seconds.json").write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
        return dest

    def stage_argv(self, row: ab.Row, stage: str, steps: int, run_dir: Path, init: Path | None, dit_cfg: Path,
                   from_scratch: bool) -> list[str]:
        cfg = self.recipe[stage]
        warmup = self.recipe["dit1"].optim.warmup_steps if from_scratch else cfg.optim.warmup_steps
        sets = [f"run.out_dir={run_dir}", f"data.latent_cache={self.cache(stage, row)}",
                f"model.latent_scale={self.scale}", f"model.dit_config={dit_cfg}", f"flow.shift={row.train_shift}",
                f"model.text_conditioning={row.text}", f"model.text_encoder={self.nano / 'tree'}",
                "run.tensorboard=false", "run.tqdm=false",
                *ab.schedule_sets(steps, warmup=warmup, decay=cfg.optim.decay_steps > 0, ema_decay=cfg.optim.ema_decay),
                *(QUICK_SETS if self.args.quick else []), *([f"run.init_from={init}"] if init else [])]
        return ["--config", str(ROOT / ab.STAGE_CONFIGS[stage]), *[a for s in sets for a in ("--set", s)]]

    def train(self, row: ab.Row) -> dict:
        """Train (or resume, or reuse) the row's run; returns its summary (``run.json``)."""
        import train_dit  # noqa: PLC0415

        base = self.out / "train" / row.train_key
        summary_path = base / "run.json"
        if summary_path.is_file():
            return json.loads(summary_path.read_text())
        dit_cfg, params = self.dit_config_path(row)
        plan = ab.stage_plan(self.args.steps, row.staged, {s: c.run.max_steps for s, c in self.recipe.items()})
        stages, init = [], None
        for i, (stage, steps) in enumerate(plan):
            run_dir, timing = base / stage, base / stage / "seconds.json"
            if not (run_dir / "export" / "dit.pt").is_file():
                print(f"    {row.train_key} {stage}: {steps} steps (log: {base / 'logs' / f'{stage}.log'})", flush=True)
                t0 = time.perf_counter()
                with logged(base / "logs" / f"{stage}.log"):
                    train_dit.main(self.stage_argv(row, stage, steps, run_dir, init, dit_cfg, i == 0))
                timing.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the export holds the weights
            seconds = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
            loss, points = ab.final_loss(run_dir / "metrics.jsonl", steps)
            stages.append({"stage": stage, "steps": steps, "seconds": seconds, "loss": loss})
            init = run_dir / "export" / "dit.pt"
        cache_s = sum(json.loads(f.read_text())["seconds"] for f in (self.out / "caches").glob(
            f"*_{row.text.replace('+', '_')}/seconds.json")) if row.text != "llm+clip" else 0.0
        summary = {"train_key": row.train_key, "stages": stages, "steps": self.args.steps, "params": params,
                   "loss": stages[-1]["loss"], "loss_points": points, "dit": str(init), "text_cache_s": cache_s,
                   "seconds": round(sum(s["seconds"] or 0 for s in stages) + cache_s, 1)}
        summary_path.write_text(json.dumps(summary, indent=1))
        return summary

    # ------------------------------------------------------------------ evaluation and rows
    def evaluate(self, name: str, row: ab.Row, dit: str) -> tuple[dict, float]:
        import eval_nano  # noqa: PLC0415

        report = self.out / "rows" / name / "eval.json"
        argv = ["--model-base", str(self.nano / "tree"), "--dit-weight", dit, "--load-key", "ema", "--limit",
                str(self.args.limit), "--pick", "spread", "--seeds", *map(str, self.args.seeds),
                "--text-conditioning", row.text, "--out", str(report),
                *(["--flow-shift", str(row.sample_shift)] if row.sample_shift is not None else []),
                *(["--steps", str(self.args.eval_steps)] if self.args.eval_steps else [])]
        print(f"    evaluating {name} (log: {report.parent / 'eval.log'})", flush=True)
        t0 = time.perf_counter()
        with logged(report.parent / "eval.log"):
            rep = eval_nano.evaluate(eval_nano.parse_args(argv))
        return rep, round(time.perf_counter() - t0, 1)

    def run_row(self, name: str) -> dict:
        path = self.out / "rows" / name / "row.json"
        if path.is_file():
            print(f"  {name}: done earlier ({path})", flush=True)
            return json.loads(path.read_text())
        row = ab.ROWS[name]
        print(f"  {name}: {row.what}", flush=True)
        run = self.train(row)
        rep, eval_s = self.evaluate(name, row, run["dit"])
        model = rep["model"]
        rec = {"what": row.what, "train_key": row.train_key, "train_steps": run["steps"],
               "stages": run["stages"], "params": run["params"], "params_m": run["params"] / 1e6,
               "shift": f"{row.train_shift:g}/{rep['settings']['flow_shift']:g}", "text": row.text,
               "loss": run["loss"], "loss_points": run["loss_points"],
               **{k: model[k] for k in ("colour_acc", "shape_acc", "motion_acc", "found", "smoothness",
                                        "centroid_accel", "fd")},
               "num_clips": rep["num_clips"], "eval_settings": rep["settings"], "train_s": run["seconds"],
               "eval_s": eval_s, "wall_s": round(run["seconds"] + eval_s, 1),
               "reference": {k: rep["rendered"][k] for k in ("colour_acc", "shape_acc", "motion_acc", "found",
                                                             "smoothness", "centroid_accel", "fd")}}
        bad = [k for k in ("loss", "colour_acc", "shape_acc", "motion_acc", "smoothness", "fd")
               if not isinstance(rec[k], (int, float)) or rec[k] != rec[k] or abs(rec[k]) == float("inf")]
        if bad:
            raise RuntimeError(f"row {name}: non-finite {bad} (see {path.parent})")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=1))
        os.replace(tmp, path)
        self.ran.append(name)
        print(f"  {name}: loss {rec['loss']:.4f}, colour {rec['colour_acc']:.1f} %, shape {rec['shape_acc']:.1f} %, "
              f"motion {rec['motion_acc']:.1f} %, {rec['wall_s']:.0f} s", flush=True)
        return rec

    def main(self) -> dict:
        t0 = time.perf_counter()
        base_params = ab.count_params(self.dit_config)
        _, _, single = ab.single_stream_config(self.dit_config)
        print(f"ablations on {self.nano}: {self.args.steps} DiT steps per trained row, eval {self.args.limit} held-out "
              f"triples x seeds {self.args.seeds}; DiT parameters: baseline {base_params / 1e6:.3f} M, single-stream "
              f"{single / 1e6:.3f} M ({100 * (single / base_params - 1):+.1f} %)", flush=True)
        rows = {name: self.run_row(name) for name in self.args.rows}
        reference = next(iter(rows.values()))["reference"]
        table = ab.ablation_table(rows, reference)
        legend = "\n".join(f"  {name}: {rec['what']}" for name, rec in rows.items())
        runs = {rec["train_key"]: rec["train_s"] for rec in rows.values()}
        total = round(sum(runs.values()) + sum(rec["eval_s"] for rec in rows.values()), 1)
        path = self.out / "ablation.json"
        runs = json.loads(path.read_text()).get("invocations", []) if path.is_file() else []
        runs.append({"command": "python scripts/ablate_nano.py " + " ".join(self.args.argv), "rows_run": self.ran,
                     "seconds": round(time.perf_counter() - t0, 1)})
        report = {"settings": _settings(self.args), "rows": rows, "reference": reference, "table": table,
                  "recorded_seconds": total, "this_run_seconds": runs[-1]["seconds"], "invocations": runs}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, path)
        print(table)
        print(legend)
        print(f"shift t/s: flow shift in training / at sampling. wall s = the row's training run (shared by rows with "
              f"the same training) + its evaluation; all rows: {total:.0f} s recorded "
              f"({report['this_run_seconds']:.0f} s this run). The shipped model trains "
              f"{sum(c.run.max_steps for c in self.recipe.values())} DiT steps.")
        print(f"wrote {self.out / 'ablation.json'}")
        return report


def _stop(*_):
    raise KeyboardInterrupt


def main(argv=None) -> dict:
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _stop)  # finished rows, stages, checkpoints are on disk: rerun resumes
    try:
        return Ablation(args).main()
    except KeyboardInterrupt:
        raise SystemExit(f"stopped; rerun the same command to resume ({args.out})") from None
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
