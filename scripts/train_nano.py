"""Train hyvideo-nano from nothing with the project's own entry points (issue 16); rerun the same command to resume.

    python scripts/train_nano.py --out runs/nano                 # the shipped model's recipe, CPU or one GPU
    python scripts/eval_nano.py --model-base runs/nano/tree      # held-out attribute accuracy
    python sample_video.py --model-base runs/nano/tree --prompt "a red circle moves to the right"

Stages (a finished stage is skipped on a rerun; a stage killed midway resumes: the generator keeps finished
videos, curation finished shards, and train_vae.py / train_dit.py their newest checkpoint, run.resume=auto):

 1. data      scripts/make_nano_dataset.py: rendered, captioned videos (configs/nano/dataset.yaml)
 2. curate    scripts/curate.py --config configs/curation/nano.yaml: shots, filters, tiers, structured captions
 3. manifest  the curated clips (tier >= 256p) with the prompt-form caption (vocab.training_caption)
 4. text      frozen tiny Llama + CLIP, tokenizers trained on the caption words -> tree/text_encoder{,_2}
 5. vae       train_vae.py --config configs/nano/vae.yaml
 6. encode    scripts/encode_latents.py: 32 px (9 frames + images) and 64 px (17 frames + images) caches;
              latent scale = 1 / std of the 64 px video latents
 7. dit1      train_dit.py --config configs/nano/dit_stage1.yaml: 1-frame images, 32 px, from scratch
 8. dit2      train_dit.py --config configs/nano/dit_stage2.yaml: joint 9-frame video + images, 32 px
 9. dit3      train_dit.py --config configs/nano/dit_stage3.yaml: joint 17-frame video + images, 64 px
10. dit4      train_dit.py --config configs/nano/dit_stage4.yaml: the high-quality fine-tune, 64 px, on the
              clips captioned with one object's bare prompt (OUT/cache64_plain: a view of cache64, written first)
11. tree      the official ckpts/ layout (safetensors, EMA DiT of dit4) + nano.json + metadata.json (web UI
              sizes) -> OUT/tree (--ship copies it to hyvideo/assets/nano)
12. eval      scripts/eval_nano.py on the held-out triples: the final model and the model after stage 1 only;
              the tables go to OUT/eval_*.json and into the model card OUT/tree/README.md

Each stage prints its loss and time; logs go to OUT/logs/<stage>.log, times and losses to OUT/progress.json.
``--set STAGE:KEY=VALUE`` passes a config override to a trainer stage (vae, encode, dit1 ... dit4), e.g.
``--set dit3:run.max_steps=2000``. ``--quick`` runs every stage on a tiny setting (tests, ~1 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STAGES = ("data", "curate", "manifest", "text", "vae", "encode", "dit1", "dit2", "dit3", "dit4", "tree", "eval")
TRAINERS = {"vae": "configs/nano/vae.yaml", "dit1": "configs/nano/dit_stage1.yaml",
            "dit2": "configs/nano/dit_stage2.yaml", "dit3": "configs/nano/dit_stage3.yaml",
            "dit4": "configs/nano/dit_stage4.yaml"}
FINAL_DIT = "dit4"  # the stage whose EMA weights the tree ships
# --quick: every stage on a handful of clips and steps (the kill/resume test and CI).
QUICK = {
    "vae": ["run.max_steps=3", "run.ckpt_every=1", "run.log_every=1", "data.video_batch_size=1",
            "data.image_batch_size=1", 'curriculum=[{start_step: 0, resolutions: ["32"], num_frames: 5}]',
            "optim.warmup_steps=1", "optim.decay_steps=0"],
    "dit": ["run.max_steps=2", "run.ckpt_every=1", "run.log_every=1", "data.video_batch_size=2",
            "data.image_batch_size=2", "optim.warmup_steps=1", "optim.decay_steps=0"],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (created; rerun with the same folder to resume)")
    p.add_argument("--num-videos", type=int, default=None, help="rendered videos (default 4000; --quick: 24)")
    p.add_argument("--seed", type=int, default=0, help="data set seed")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering and curation")
    p.add_argument("--quick", action="store_true", help="tiny setting: every stage in seconds (tests)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE:KEY=VALUE",
                   help="config override for a trainer stage (vae, encode, dit1 ... dit4); repeatable")
    p.add_argument("--ship", action="store_true", help="copy the finished tree to hyvideo/assets/nano")
    args = p.parse_args(argv)
    errors = []
    if args.num_videos is not None and args.num_videos < 8:
        errors.append(f"--num-videos must be >= 8, got {args.num_videos}")
    if args.workers < 1:
        errors.append(f"--workers must be >= 1, got {args.workers}")
    for item in args.set:
        stage = item.split(":", 1)[0]
        if ":" not in item or "=" not in item or stage not in (*TRAINERS, "encode"):
            errors.append(f"--set {item!r}: expected STAGE:KEY=VALUE with STAGE in {[*TRAINERS, 'encode']}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        errors.append(f"--out {out} is a file; give a folder")
    if errors:
        p.error("; ".join(errors))
    args.num_videos = args.num_videos or (24 if args.quick else 4000)
    return args


class Recipe:
    """Runs the stages in order, records their times and losses in ``OUT/progress.json``.

    ``stages`` maps each stage name, in order, to ``(done(recipe) -> bool, run(recipe) -> summary dict)``
    (default: this script's :data:`STAGE_FUNCS`; ``scripts/train_nano_i2v.py`` passes its own)."""

    def __init__(self, args: argparse.Namespace, stages: dict | None = None):
        self.stages = STAGE_FUNCS if stages is None else stages
        self.args, self.out = args, Path(args.out).resolve()
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.progress_file = self.out / "progress.json"
        self.progress = json.loads(self.progress_file.read_text()) if self.progress_file.is_file() else {}
        self.child: subprocess.Popen | None = None
        self.timing: tuple[dict, float, float] | None = None  # (stage entry, seconds before this run, start)

    # ------------------------------------------------------------------ plumbing
    def save_progress(self) -> None:
        tmp = self.progress_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.progress, indent=1))
        os.replace(tmp, self.progress_file)

    def overrides(self, stage: str) -> list[str]:
        """``--set`` pairs of a trainer stage: quick mode, then the user's."""
        quick = QUICK["vae" if stage == "vae" else "dit"] if self.args.quick and stage in TRAINERS else []
        user = [s.split(":", 1)[1] for s in self.args.set if s.split(":", 1)[0] == stage]
        return [x for kv in [*quick, *user] for x in ("--set", kv)]

    def run(self, stage: str, cmd: list[str]) -> None:
        """Run a child process (this repo on PYTHONPATH, output appended to the stage log); it is terminated
        with this process (SIGTERM / Ctrl-C; on Linux also when this process is killed outright)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        log = self.logs / f"{stage}.log"
        with log.open("a") as f:
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            self.child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                          preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            while True:  # record the stage's time every 30 s, so a kill -9 loses at most that much of it
                try:
                    code = self.child.wait(30)
                    break
                except subprocess.TimeoutExpired:
                    self.tick()
            self.child = None
        if code != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
            raise RuntimeError(f"stage {stage} failed (exit {code}); last lines of {log}:\n{tail}")

    def tick(self) -> None:
        """Write the running stage's seconds so far (its earlier runs' + this run's) to progress.json."""
        if self.timing is not None:
            entry, before, t0 = self.timing
            entry["seconds"] = round(before + time.perf_counter() - t0, 1)
            self.save_progress()

    def stop_child(self, *_):
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(30)
            except subprocess.TimeoutExpired:
                self.child.kill()
        raise SystemExit(f"stopped; rerun the same command to resume (progress: {self.progress_file})")

    # ------------------------------------------------------------------ driver
    def main(self) -> dict:
        signal.signal(signal.SIGTERM, self.stop_child)
        signal.signal(signal.SIGINT, self.stop_child)
        total = time.perf_counter()
        n = len(self.stages)
        for i, (name, (done, run)) in enumerate(self.stages.items(), 1):
            entry = self.progress.setdefault(name, {"seconds": 0.0, "done": False})
            if entry["done"] and done(self):
                print(f"[{i:2d}/{n}] {name:8s} done earlier ({entry['seconds']:.0f} s): "
                      f"{entry.get('summary_line', '')}", flush=True)
                continue
            if entry["seconds"]:
                print(f"[{i:2d}/{n}] {name:8s} resuming ...", flush=True)
            self.timing = (entry, entry["seconds"], time.perf_counter())
            try:
                summary = run(self)
            finally:
                self.tick()
            entry.update(done=True, summary=summary, summary_line=summary.pop("line", ""))
            self.save_progress()
            print(f"[{i:2d}/{n}] {name:8s} {entry['seconds']:7.0f} s  {entry['summary_line']}", flush=True)
        wall = sum(self.progress[s]["seconds"] for s in self.stages)
        print(f"trained in {wall:.0f} s of stage time ({time.perf_counter() - total:.0f} s this run); "
              f"tree: {self.out / 'tree'}")
        if getattr(self.args, "ship", False):
            dest = ROOT / "hyvideo" / "assets" / "nano"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(self.out / "tree", dest)
            print(f"shipped to {dest}")
        return self.progress


# ---------------------------------------------------------------------------------------------------- stages
def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _loss_line(run_dir: Path, extra: str = "") -> dict:
    """Summary of a trainer run from its metrics.jsonl: steps, first and last logged loss (+ ``extra`` key)."""
    rows = _metrics(run_dir)
    if not rows:
        return {"line": "no metrics logged"}
    first, last = rows[0], rows[-1]
    out = {"steps": last["step"], "loss_first": first["loss"], "loss_last": last["loss"]}
    line = f"{last['step']} steps, loss {first['loss']:.4f} (step {first['step']}) -> {last['loss']:.4f}"
    if extra and extra in last:
        out.update({f"{extra}_first": first[extra], f"{extra}_last": last[extra]})
        line += f", {extra} {first[extra]:.2f} -> {last[extra]:.2f}"
    return {**out, "line": line}


def data_done(r: Recipe) -> bool:
    return (r.out / "data" / "nano" / "dataset.json").is_file()


def data_run(r: Recipe) -> dict:
    r.run("data", [sys.executable, "scripts/make_nano_dataset.py", "--out", str(r.out / "data" / "nano"),
                   "--num-videos", str(r.args.num_videos), "--seed", str(r.args.seed),
                   "--workers", str(r.args.workers)])
    counts = json.loads((r.out / "data" / "nano" / "dataset.json").read_text())["counts"]
    return {"counts": counts, "line": f"{counts['videos']} videos, {counts['good_shots']} good shots, "
                                      f"{counts['frames']} frames"}


def curate_done(r: Recipe) -> bool:
    return (r.out / "data" / "curated" / "tiers" / "256p.parquet").is_file()


def curate_run(r: Recipe) -> dict:
    r.run("curate", [sys.executable, "scripts/curate.py", "--input", str(r.out / "data" / "nano" / "videos"),
                     "--output", str(r.out / "data" / "curated"), "--config", "configs/curation/nano.yaml",
                     "--workers", str(r.args.workers)])
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(r.out / "data" / "curated" / "manifest.parquet", columns=["tier", "rejected_by"])
    rejected = sum(1 for x in table.column("rejected_by").to_pylist() if x)
    kept = pq.read_metadata(r.out / "data" / "curated" / "tiers" / "256p.parquet").num_rows
    return {"clips": table.num_rows, "rejected": rejected, "kept": kept,
            "line": f"{table.num_rows} clips, {rejected} rejected (blur / static / text), {kept} kept (tier >= 256p)"}


def manifest_path(r: Recipe) -> Path:
    return r.out / "data" / "train.jsonl"


def manifest_done(r: Recipe) -> bool:
    return manifest_path(r).is_file()


def manifest_run(r: Recipe) -> dict:
    """The curated clips with the prompt-form caption (the structured caption stays in ``structured``)."""
    from hyvideo.data.manifest import write_manifest  # noqa: PLC0415
    from hyvideo.data.synthetic.vocab import training_caption  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    rows = pq.read_table(r.out / "data" / "curated" / "tiers" / "256p.parquet").to_pylist()
    keep = ("path", "start_frame", "end_frame", "num_frames", "fps", "width", "height", "tier")
    records = [{**{k: row[k] for k in keep if row.get(k) is not None}, "caption": training_caption(row["caption"]),
                "structured": row["caption"]} for row in rows if row.get("caption")]
    tmp = write_manifest(records, manifest_path(r).with_suffix(".tmp"))
    os.replace(tmp, manifest_path(r))
    return {"clips": len(records), "line": f"{len(records)} captioned clips -> {manifest_path(r)}"}


def text_done(r: Recipe) -> bool:
    return all((r.out / "tree" / d / "config.json").is_file() for d in ("text_encoder", "text_encoder_2"))


def text_run(r: Recipe) -> dict:
    from hyvideo.data.synthetic.text_models import save_nano_text_encoders  # noqa: PLC0415
    from hyvideo.data.synthetic.vocab import vocabulary  # noqa: PLC0415

    save_nano_text_encoders(r.out / "tree")
    return {"vocabulary": len(vocabulary()), "line": f"{len(vocabulary())} caption words, each one token"}


def vae_done(r: Recipe) -> bool:
    return (r.out / "vae" / "export" / "vae" / "config.json").is_file()


def vae_run(r: Recipe) -> dict:
    r.run("vae", [sys.executable, "train_vae.py", "--config", TRAINERS["vae"], "--set",
                  f"data.manifest={manifest_path(r)}", "--set", f"run.out_dir={r.out / 'vae'}", *r.overrides("vae")])
    return _loss_line(r.out / "vae", "psnr")


def _model_sets(r: Recipe) -> list[str]:
    return ["--set", f"data.manifest={manifest_path(r)}", "--set", f"model.vae_weights={r.out / 'vae/export/vae'}",
            "--set", f"model.text_encoder={r.out / 'tree'}"]


CACHES = {"cache32": "dit2", "cache64": "dit3"}  # cache -> the stage config whose data section it encodes


def encode_done(r: Recipe) -> bool:
    return all((r.out / c / "index.jsonl").is_file() for c in CACHES) and (r.out / "latent_scale.json").is_file()


def encode_run(r: Recipe) -> dict:
    from hyvideo.data.latent_cache import LatentCacheDataset  # noqa: PLC0415

    for cache, stage in CACHES.items():
        if not (r.out / cache / "index.jsonl").is_file():
            r.run("encode", [sys.executable, "scripts/encode_latents.py", "--config", TRAINERS[stage], *_model_sets(r),
                             *r.overrides("encode"), "--out", str(r.out / cache)])
    ds = LatentCacheDataset(r.out / "cache64")
    videos = [i for i, line in enumerate(ds.lines) if line["bucket"][-1] > 1]
    import torch  # noqa: PLC0415

    lat = torch.cat([ds[i]["latent"].flatten() for i in videos[:512]])
    scale = float(1.0 / lat.std())
    (r.out / "latent_scale.json").write_text(json.dumps({"latent_scale": scale, "std": float(lat.std()),
                                                         "mean": float(lat.mean()), "clips": len(videos[:512])}))
    n32 = len(LatentCacheDataset(r.out / "cache32"))
    return {"latent_scale": scale, "entries": {"cache32": n32, "cache64": len(ds)},
            "line": f"{n32} + {len(ds)} latents (32 px, 64 px), latent std {lat.std():.3f} -> scale {scale:.4f}"}


def _dit_done(stage: str):
    return lambda r: (r.out / stage / "export" / "dit.pt").is_file()


def plain_prompt_cache(r: Recipe) -> Path:
    """``OUT/cache64_plain``: the entries of ``OUT/cache64`` whose caption is one object's bare prompt
    (:func:`hyvideo.data.synthetic.vocab.caption_triple`); a view, no copy, rewritten on every call."""
    from hyvideo.data.latent_cache import write_subset  # noqa: PLC0415
    from hyvideo.data.synthetic.vocab import caption_triple  # noqa: PLC0415

    dst = r.out / "cache64_plain"
    n = write_subset(r.out / "cache64", dst, lambda line: caption_triple(line["caption"]) is not None)
    print(f"  {dst}: {n} entries of cache64 with a one-object bare-prompt caption", flush=True)
    return dst


DERIVED_CACHES = {"cache64_plain": plain_prompt_cache}


def _dit_run(stage: str, cache: str, init: str | None):
    def run(r: Recipe) -> dict:
        if cache in DERIVED_CACHES:
            DERIVED_CACHES[cache](r)
        scale = json.loads((r.out / "latent_scale.json").read_text())["latent_scale"]
        sets = [*_model_sets(r), "--set", f"data.latent_cache={r.out / cache}", "--set", f"run.out_dir={r.out / stage}",
                "--set", f"model.latent_scale={scale}"]
        if init:
            sets += ["--set", f"run.init_from={r.out / init / 'export' / 'dit.pt'}"]
        r.run(stage, [sys.executable, "train_dit.py", "--config", TRAINERS[stage], *sets, *r.overrides(stage)])
        return _loss_line(r.out / stage)
    return run


def tree_done(r: Recipe) -> bool:
    return (r.out / "tree" / "nano.json").is_file() and (r.out / "tree" / "metadata.json").is_file()


def tree_run(r: Recipe) -> dict:
    from hyvideo.data.synthetic.nano_tree import (  # noqa: PLC0415
        tree_size_mb,
        write_card,
        write_dit,
        write_metadata,
        write_vae,
    )
    from hyvideo.data.synthetic.vocab import vocabulary  # noqa: PLC0415

    tree = r.out / "tree"
    scale = json.loads((r.out / "latent_scale.json").read_text())["latent_scale"]
    write_dit(tree, r.out / FINAL_DIT / "export" / "dit.pt")
    write_vae(tree, r.out / "vae" / "export" / "vae", scale)
    card = json.loads((ROOT / "configs" / "nano" / "card.json").read_text())
    from hyvideo.checkpoint.io import read_state_dict  # noqa: PLC0415

    n_dit = sum(v.numel() for v in read_state_dict(next((tree / "hunyuan-video-t2v-720p" / "transformers").glob(
        "*.safetensors"))).values())
    card.update(vocabulary=vocabulary(), latent_scale=scale, parameters=f"{n_dit / 1e6:.2f} M",
                recipe={s: {k: v for k, v in self_summary(r, s).items()} for s in STAGES if s not in ("tree", "eval")})
    write_card(tree, card)
    write_metadata(tree, card)
    return {"size_mb": round(tree_size_mb(tree), 2), "line": f"{tree} ({tree_size_mb(tree):.1f} MB)"}


EVALS = {"final": None, "stage1": "dit1"}  # eval report -> the stage whose exported DiT replaces the tree's


def eval_done(r: Recipe) -> bool:
    return all((r.out / f"eval_{name}.json").is_file() for name in EVALS) and (r.out / "tree" / "README.md").is_file()


def eval_run(r: Recipe) -> dict:
    from hyvideo.data.synthetic.nano_tree import write_model_card  # noqa: PLC0415

    tables, out = {}, {}
    for name, stage in EVALS.items():
        report = r.out / f"eval_{name}.json"
        if not report.is_file():
            extra = ["--dit-weight", str(r.out / stage / "export" / "dit.pt"), "--load-key", "ema"] if stage else []
            limit = ["--limit", "4", "--steps", "2"] if r.args.quick else []
            r.run("eval", [sys.executable, "scripts/eval_nano.py", "--model-base", str(r.out / "tree"), *extra,
                           *limit, "--out", str(report)])
        rep = json.loads(report.read_text())
        title = "the shipped model" if stage is None else f"after stage {stage[-1]} only (same tree, {stage} DiT)"
        tables[f"{title}, {rep['num_clips']} clips"] = rep["table"]
        out[name] = {k: rep["model"][k] for k in ("colour_acc", "shape_acc", "motion_acc", "found", "fd")}
    card = json.loads((r.out / "tree" / "nano.json").read_text())
    done = {k: {**v, "summary_line": v.get("summary_line", "").replace(str(r.out), "OUT")}
            for k, v in r.progress.items() if k != "eval"}
    write_model_card(r.out / "tree", card, done, tables, "python scripts/train_nano.py --out OUT")
    f = out["final"]
    return {**out, "line": f"held-out colour {f['colour_acc']:.1f} %, shape {f['shape_acc']:.1f} %, motion "
                           f"{f['motion_acc']:.1f} % (stage 1 only: colour {out['stage1']['colour_acc']:.1f} %)"}


def self_summary(r: Recipe, stage: str) -> dict:
    entry = r.progress.get(stage, {})
    return {"seconds": entry.get("seconds"), **entry.get("summary", {})}


STAGE_FUNCS = {
    "data": (data_done, data_run), "curate": (curate_done, curate_run), "manifest": (manifest_done, manifest_run),
    "text": (text_done, text_run), "vae": (vae_done, vae_run), "encode": (encode_done, encode_run),
    "dit1": (_dit_done("dit1"), _dit_run("dit1", "cache32", None)),
    "dit2": (_dit_done("dit2"), _dit_run("dit2", "cache32", "dit1")),
    "dit3": (_dit_done("dit3"), _dit_run("dit3", "cache64", "dit2")),
    "dit4": (_dit_done("dit4"), _dit_run("dit4", "cache64_plain", "dit3")),
    "tree": (tree_done, tree_run),
    "eval": (eval_done, eval_run),
}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child receives SIGTERM when the recipe process dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    import ctypes  # noqa: PLC0415

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return Recipe(args).main()
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
