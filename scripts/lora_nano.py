"""Teach hyvideo-nano a colour word it has never seen with a LoRA (issue 18); rerun the same command to resume.

    python scripts/lora_nano.py --model-base runs/nano/tree --out runs/lora_azure
    python sample_video.py --model-base runs/nano/tree --prompt "an azure star moves to the left" \\
        --lora-path runs/lora_azure/lora/export/lora.safetensors

The new word is "azure" (configs/nano/lora_azure.yaml: HSV hue 208 degrees, between cyan at 186 and blue at 224;
``--new-config`` takes another config with one new colour, e.g. configs/nano/lora_orange.yaml); the base model's
captions never contain it. Stages (a finished stage is skipped on a rerun; the trainer resumes from its newest
checkpoint):

 1. data    scripts/make_nano_dataset.py: --num-videos clips of the new-word config (one object, plain or gradient
            background, no camera; no curation needed: no negatives, no joined shots) + --replay-videos clips of
            configs/nano/dataset.yaml (the old words, held-out triples never rendered) so the adapters learn the
            word, not "paint everything azure"; of both, the clips captioned with one object's bare prompt, as the
            base model's last stage trained on (``--all-captions``: every clip) -> OUT/data/train.jsonl
 2. encode  scripts/encode_latents.py with the tree's VAE and frozen text encoders -> OUT/cache
 3. before  the base model on two prompt sets (fixed seeds): every valid new-word triple (the detector classifies
            colours against the base palette + the new colour) and eval_nano.py's old held-out triples (base
            palette)
 4. train   train_dit.py --config configs/nano/lora_dit.yaml (lora: rank 16 on the attention and MLP linears)
            from the tree's DiT -> OUT/lora/export/lora.safetensors (diffusers keys)
 5. after   the same two prompt sets with the LoRA applied (fused, as sample_video.py --lora-fuse)
 6. report  both tables, the acceptance checks and the wall time -> OUT/report.json (also printed)

Text side: the frozen tokenizers are byte-level BPE trained on the caption words, so they already cover any
word: "azure" becomes sub-word tokens ("a", "z", "ure" for the Llama; "a", "z", "u", "re" for CLIP) in a
sequence no base caption contains. Nothing in the tree changes; the LoRA file alone carries the word (report:
"text").

``--set KEY=VALUE`` overrides the LoRA training config; ``--quick`` runs every stage on a tiny setting (tests).
Exit status 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from train_nano import Recipe  # noqa: E402

NEW_CONFIG = ROOT / "configs" / "nano" / "lora_azure.yaml"
TRAIN_CONFIG = ROOT / "configs" / "nano" / "lora_dit.yaml"
STAGES = ("data", "encode", "before", "train", "after", "report")
ATTRS = ("colour_acc", "shape_acc", "motion_acc")
TARGET_NEW, MAX_DROP = 80.0, 5.0  # issue 18: new word >= 80 %, old attributes drop <= 5 points
QUICK_TRAIN = ["run.max_steps=2", "run.ckpt_every=1", "run.log_every=1", "data.video_batch_size=2",
               "data.image_batch_size=2", "data.num_frames=5", "optim.warmup_steps=1", "optim.decay_steps=0"]


def parse_args(argv=None) -> argparse.Namespace:
    from hyvideo.nano import NANO_TREE  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base", default=str(NANO_TREE), help="nano model tree (with nano.json); read only")
    p.add_argument("--out", required=True, help="output folder (created; rerun with the same folder to resume)")
    p.add_argument("--new-config", type=Path, default=NEW_CONFIG,
                   help="data set config with the new colour word (default configs/nano/lora_azure.yaml)")
    p.add_argument("--num-videos", type=int, default=None, help="clips with the new word (default 150; quick 6)")
    p.add_argument("--replay-videos", type=int, default=None,
                   help="clips of the old words (default 300; quick 8), of which the bare-prompt ones train")
    p.add_argument("--seed", type=int, default=7, help="data set seed (the replay set uses seed + 1)")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="evaluation seeds per triple")
    p.add_argument("--eval-steps", type=int, default=None, help="sampling steps (default: the tree's nano.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="LoRA training config override")
    p.add_argument("--all-captions", action="store_true",
                   help="train on every rendered clip (default: those captioned with one object's bare prompt)")
    p.add_argument("--quick", action="store_true", help="tiny setting: every stage in seconds (tests)")
    args = p.parse_args(argv)
    errors = []
    if not (Path(args.model_base) / "nano.json").is_file():
        errors.append(f"--model-base {args.model_base} has no nano.json (not a nano model tree)")
    for flag in ("num_videos", "replay_videos"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            errors.append(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.num_videos == 0:
        errors.append("--num-videos must be >= 1 (the clips with the new word)")
    if not args.new_config.is_file():
        errors.append(f"--new-config {args.new_config}: no such file")
    else:
        try:
            new_word(args.new_config)
        except (ValueError, KeyError, TypeError) as e:
            errors.append(f"--new-config {args.new_config}: {e}")
    if args.workers < 1:
        errors.append(f"--workers must be >= 1, got {args.workers}")
    if args.eval_steps is not None and args.eval_steps < 1:
        errors.append(f"--eval-steps must be >= 1, got {args.eval_steps}")
    errors += [f"--set {s!r}: expected KEY=VALUE" for s in args.set if "=" not in s]
    if Path(args.out).exists() and not Path(args.out).is_dir():
        errors.append(f"--out {args.out} is a file; give a folder")
    if errors:
        p.error("; ".join(errors))
    args.num_videos = args.num_videos or (6 if args.quick else 150)
    args.replay_videos = args.replay_videos if args.replay_videos is not None else (8 if args.quick else 300)
    if args.quick:
        args.seeds, args.eval_steps = args.seeds[:1], args.eval_steps or 2
    return args


# ---------------------------------------------------------------------------------------------------- the tree
def tree_paths(tree: Path) -> dict:
    """The tree's DiT weights and config, VAE folder and latent scale (the VAE config's ``scaling_factor``)."""
    from hyvideo.checkpoint.io import OFFICIAL_DIT_SUBDIR, OFFICIAL_VAE_SUBDIR  # noqa: PLC0415

    dit = tree / OFFICIAL_DIT_SUBDIR
    weights = sorted(dit.glob("*.safetensors")) or sorted(dit.glob("*.pt"))
    if not weights:
        raise FileNotFoundError(f"{dit} holds no DiT weights (.safetensors / .pt)")
    vae = tree / OFFICIAL_VAE_SUBDIR
    scale = json.loads((vae / "config.json").read_text()).get("scaling_factor")
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{vae / 'config.json'}: scaling_factor must be a finite number > 0, got {scale!r}")
    return {"dit": weights[0], "dit_config": dit / "config.json", "vae": vae, "latent_scale": float(scale)}


def text_tokens(tree: Path, word: str) -> dict:
    """How each frozen tokenizer splits ``word`` and whether any of its tokens occurs in the base captions."""
    from transformers import AutoTokenizer  # noqa: PLC0415

    vocab = json.loads((tree / "nano.json").read_text())["vocabulary"]
    out = {}
    for folder in ("text_encoder", "text_encoder_2"):
        tok = AutoTokenizer.from_pretrained(tree / folder)
        pieces = tok.tokenize(f"an {word} circle")[1:-1]
        seen = {t for w in vocab for t in tok.tokenize(f"a {w}")[1:]}
        out[folder] = {"tokens": pieces, "in_base_captions": sorted(set(pieces) & seen)}
    return out


# ---------------------------------------------------------------------------------------------------- runner
class Run(Recipe):
    """Runs the stages in order; times and summaries go to ``OUT/progress.json`` (a killed run resumes). The child
    processes, their logs, the stop on SIGTERM and the progress file are :class:`train_nano.Recipe`'s."""

    def __init__(self, args: argparse.Namespace):
        super().__init__(args, stages={})
        self.tree = Path(args.model_base).resolve()
        self.paths = tree_paths(self.tree)

    def main(self) -> dict:
        previous = signal.signal(signal.SIGTERM, self.stop_child)
        try:
            self.run_stages()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return json.loads((self.out / "report.json").read_text())

    def run_stages(self) -> None:
        for i, name in enumerate(STAGES, 1):
            entry = self.progress.setdefault(name, {"seconds": 0.0, "done": False})
            if entry["done"]:
                print(f"[{i}/{len(STAGES)}] {name:7s} done earlier ({entry['seconds']:.0f} s): {entry['line']}")
                continue
            t0 = time.perf_counter()
            try:
                summary = globals()[f"stage_{name}"](self)
            finally:
                entry["seconds"] = round(entry["seconds"] + time.perf_counter() - t0, 1)
                self.save_progress()
            entry.update(done=True, line=summary.pop("line"), summary=summary)
            self.save_progress()
            print(f"[{i}/{len(STAGES)}] {name:7s} {entry['seconds']:6.0f} s  {entry['line']}", flush=True)


# ---------------------------------------------------------------------------------------------------- stages
def train_sets(r: Run) -> list[str]:
    """``--set`` pairs shared by the encoder and the trainer: the tree's models and the data."""
    p = r.paths
    sets = [f"data.manifest={r.out / 'data' / 'train.jsonl'}", f"model.vae_weights={p['vae']}",
            f"model.vae_config={p['vae'] / 'config.json'}", f"model.text_encoder={r.tree}",
            f"model.dit_config={p['dit_config']}", f"model.latent_scale={p['latent_scale']}"]
    return [x for kv in [*sets, *(QUICK_TRAIN if r.args.quick else [])] for x in ("--set", kv)]


def new_word(config: Path) -> tuple[str, object]:
    """The new colour word of a LoRA data config and the base config with it added to the palette.

    Raises:
        ValueError: the config adds no colour, or more than one, to the base palette.
    """
    import dataclasses  # noqa: PLC0415

    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415
    from hyvideo.data.synthetic.word_eval import new_colours  # noqa: PLC0415

    base = load_nano_config()
    words, palette = new_colours(load_nano_config(config))
    if len(words) != 1:
        raise ValueError(f"{config}: expected one colour not in the base palette {sorted(base.colours)}, got {words}")
    return words[0], dataclasses.replace(base, colours=palette)


def stage_data(r: Run) -> dict:
    from hyvideo.data.manifest import write_manifest  # noqa: PLC0415
    from hyvideo.data.synthetic.vocab import caption_triple, training_caption  # noqa: PLC0415

    word, cfg = new_word(r.args.new_config)
    sets = {"new": (r.args.new_config, r.args.num_videos, r.args.seed),
            "replay": (ROOT / "configs" / "nano" / "dataset.yaml", r.args.replay_videos, r.args.seed + 1)}
    records, counts = [], {}
    for name, (config, n, seed) in sets.items():
        if n == 0:
            continue
        folder = r.out / "data" / name
        if not (folder / "dataset.json").is_file():
            r.run("data", [sys.executable, "scripts/make_nano_dataset.py", "--out", str(folder), "--config",
                            str(config), "--num-videos", str(n), "--seed", str(seed),
                            "--workers", str(r.args.workers)])
        rows = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines() if x.strip()]
        rows = [{**row, "path": str(folder / row["path"]), "caption": training_caption(row["caption"]),
                 "structured": row["caption"]} for row in rows]
        # as the base model's last stage (configs/nano/dit_stage4.yaml): one object's bare prompt only
        kept = rows if r.args.all_captions else [x for x in rows if caption_triple(x["caption"], cfg) is not None]
        records += kept
        counts[name] = len(kept)
    with_word = sum(word in rec["caption"].split() for rec in records)
    os.replace(write_manifest(records, r.out / "data" / "train.tmp"), r.out / "data" / "train.jsonl")
    return {"word": word, "clips": counts, "captions_with_word": with_word, "text": text_tokens(r.tree, word),
            "line": f"{counts.get('new', 0)} {word} + {counts.get('replay', 0)} replay clips -> "
                    f"{r.out / 'data' / 'train.jsonl'}"}


def stage_encode(r: Run) -> dict:
    from hyvideo.data.latent_cache import LatentCacheDataset  # noqa: PLC0415

    r.run("encode", [sys.executable, "scripts/encode_latents.py", "--config", str(TRAIN_CONFIG), *train_sets(r),
                      "--out", str(r.out / "cache")])
    n = len(LatentCacheDataset(r.out / "cache"))
    return {"entries": n, "line": f"{n} latents (videos + images) -> {r.out / 'cache'}"}


def stage_train(r: Run) -> dict:
    run_dir = r.out / "lora"
    r.run("train", [sys.executable, "train_dit.py", "--config", str(TRAIN_CONFIG), *train_sets(r),
                     "--set", f"data.latent_cache={r.out / 'cache'}", "--set", f"run.out_dir={run_dir}",
                     "--set", f"run.init_from={r.paths['dit']}", *[x for s in r.args.set for x in ("--set", s)]])
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    first, last = rows[0], rows[-1]
    return {"lora": str(run_dir / "export" / "lora.safetensors"), "steps": last["step"], "loss_first": first["loss"],
            "loss_last": last["loss"], "line": f"{last['step']} steps, loss {first['loss']:.4f} -> {last['loss']:.4f}"}


def _eval_setup(r: Run):
    from hyvideo.data.synthetic import evaluation as ev  # noqa: PLC0415
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415
    from hyvideo.data.synthetic.word_eval import prompt_sets  # noqa: PLC0415
    from hyvideo.nano import read_card  # noqa: PLC0415

    card = read_card(r.tree)
    settings = ev.SampleSettings.from_card(card, infer_steps=r.args.eval_steps)
    sets = prompt_sets(load_nano_config(r.args.new_config), r.args.seeds, limit=3 if r.args.quick else None)
    return card, settings, sets


def evaluate(r: Run, name: str, loras: tuple) -> dict:
    """Sample and score both prompt sets (base model, or with ``loras``) -> ``OUT/eval_<name>.json``."""
    import torch  # noqa: PLC0415

    from hyvideo.data.synthetic import evaluation as ev  # noqa: PLC0415
    from hyvideo.data.synthetic import word_eval  # noqa: PLC0415

    torch.manual_seed(0)
    card, settings, sets = _eval_setup(r)
    t0 = time.perf_counter()
    pipe = ev.load_eval_pipeline(r.tree, text_len=card["sampling"].get("text_len"), loras=loras)
    total = sum(len(ps.items) for ps in sets.values())
    print(f"  {name}: sampling {total} clips ({settings})", flush=True)
    scores = word_eval.score_model(pipe, sets, settings, progress=lambda s, n, k: print(
        f"  {name} {s}: {n}/{k} ({time.perf_counter() - t0:.0f} s)", flush=True))
    report = {"model_base": str(r.tree), "loras": [list(x) for x in loras], "settings": ev.asdict(settings),
              "seconds": round(time.perf_counter() - t0, 1), "scores": scores}
    if name == "before":
        report["reference"] = word_eval.score_reference(sets, settings)
    path = r.out / f"eval_{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)
    new, old = scores["new"], scores["old"]
    return {"new": {a: new[a] for a in ATTRS}, "old": {a: old[a] for a in ATTRS},
            "line": f"new word colour {new['colour_acc']:.1f} %; old held-out colour {old['colour_acc']:.1f} %, "
                    f"shape {old['shape_acc']:.1f} %, motion {old['motion_acc']:.1f} % ({report['seconds']:.0f} s)"}


def stage_before(r: Run) -> dict:
    return evaluate(r, "before", ())


def stage_after(r: Run) -> dict:
    return evaluate(r, "after", ((r.progress["train"]["summary"]["lora"], 1.0),))


def stage_report(r: Run) -> dict:
    """Both tables, the acceptance checks and the wall time (stage seconds) -> OUT/report.json, printed."""
    from hyvideo.data.synthetic import word_eval  # noqa: PLC0415

    _, _, sets = _eval_setup(r)
    before = json.loads((r.out / "eval_before.json").read_text())
    after = json.loads((r.out / "eval_after.json").read_text())
    tables = word_eval.tables(sets, before["scores"], after["scores"], before["reference"])
    check = word_eval.acceptance(before["scores"], after["scores"], target=TARGET_NEW, max_drop=MAX_DROP)
    seconds = {s: r.progress[s]["seconds"] for s in STAGES if s != "report"}
    report = {"model_base": str(r.tree), "lora": r.progress["train"]["summary"]["lora"], "tables": tables,
              "acceptance": check, "passed": check["passed"], "wall_seconds": round(sum(seconds.values()), 1),
              "stage_seconds": seconds, "train": r.progress["train"]["summary"],
              "data": r.progress["data"]["summary"], "quick": r.args.quick,
              "scores": {"before": word_eval.strip_clips(before["scores"]),
                         "after": word_eval.strip_clips(after["scores"]),
                         "rendered": word_eval.strip_clips(before["reference"])}}
    path = r.out / "report.json"
    path.with_suffix(".tmp").write_text(json.dumps(report, indent=1))
    os.replace(path.with_suffix(".tmp"), path)
    for title, table in tables.items():
        print(f"\n{title}\n{table}")
    drops = ", ".join(f"{a.removesuffix('_acc')} {d:+.1f}" for a, d in check["old_drop"].items())
    print(f"\nnew word colour {check['new_colour_before']:.1f} % -> {check['new_colour']:.1f} % (target >= "
          f"{TARGET_NEW:.0f} %); old held-out drop (points): {drops} (at most {MAX_DROP:.0f}); wall time "
          f"{report['wall_seconds']:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in seconds.items())})")
    return {"passed": check["passed"],
            "line": f"{path} (acceptance {'met' if check['passed'] else 'NOT met'})"}


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return Run(args).main()
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
