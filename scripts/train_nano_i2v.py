"""Fine-tune the nano text-to-video model into image-to-video (issue 17); rerun the same command to resume.

    python scripts/train_nano.py --out runs/nano                                   # the nano T2V run (first)
    python scripts/train_nano_i2v.py --nano-run runs/nano --out runs/nano_i2v      # this script
    python sample_video.py --model-base runs/nano_i2v/tree --i2v-mode --i2v-image-path frame.png \\
        --prompt "a red circle moves to the right"

Conditioning: token replace (the released HunyuanVideo-I2V kind). Latent frame 0 carries the clean image latent
and is modulated with timestep 0; the DiT keeps its 16 input channels, so the text-to-video weights load as they
are and the fine-tune only has to learn to continue a given first frame (latent concat would widen ``img_in`` to
33 channels whose new weights start at zero, and drops 4 decoded frames). A share of text-to-video samples
(``flow.i2v_prob``) keeps the prompt's hold on the motion.

Text: the nano model has no vision-language encoder; ``train_dit.py`` trains I2V DiTs on the text-only states of
the latent cache, so the I2V tree's ``text_encoder_i2v/`` is the same text-only nano Llama and the prompt is
read without the image (:func:`hyvideo.checkpoint.loader.load_pipeline`): sampling matches training.

Stages (a finished stage is skipped on a rerun; a killed fine-tune resumes from its newest checkpoint):

 1. i2v    train_dit.py --config configs/nano/dit_i2v.yaml from NANO/dit4/export/dit.pt (the shipped text-to-video
           DiT) on NANO/cache64_plain (the stage-4 clips: one object's bare prompt)
 2. tree   NANO/tree (text-to-video, kept) + hunyuan-video-i2v-720p/{transformers,vae} + text_encoder_i2v/
           -> OUT/tree; nano.json gets the I2V settings (64p bucket family)
 3. eval   scripts/eval_nano_i2v.py on the held-out triples -> OUT/eval_i2v.json

``--set KEY=VALUE`` overrides the fine-tune's config (e.g. ``--set run.max_steps=2000``); ``--quick`` runs every
stage on a tiny setting (tests; NANO may be a ``train_nano.py --quick`` run). Exit status 2 on bad arguments,
including a nano run that has not finished its ``encode``, ``dit4`` and ``tree`` stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from train_nano import FINAL_DIT, QUICK, Recipe, _loss_line  # noqa: E402

CONFIG = "configs/nano/dit_i2v.yaml"
# what the nano run must hold: path under --nano-run -> the train_nano.py stage that writes it
NEEDED = {"cache64_plain/index.jsonl": FINAL_DIT, "latent_scale.json": "encode", "vae/export/vae/config.json": "vae",
          f"{FINAL_DIT}/export/dit.pt": FINAL_DIT, "tree/nano.json": "tree", "tree/text_encoder/config.json": "text"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nano-run", required=True, help="output folder of scripts/train_nano.py (read only)")
    p.add_argument("--out", required=True, help="output folder (created; rerun with the same folder to resume)")
    p.add_argument("--quick", action="store_true", help="tiny setting: every stage in seconds (tests)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the fine-tune (train_dit.py --set); repeatable")
    p.add_argument("--eval-seeds", type=int, nargs="+", default=None, help="seeds of the eval (default: its own)")
    args = p.parse_args(argv)
    nano, out = Path(args.nano_run).resolve(), Path(args.out).resolve()
    errors = [f"--nano-run {nano} lacks {rel} (its '{stage}' stage has not finished)"
              for rel, stage in NEEDED.items() if not (nano / rel).is_file()]
    errors += [f"--set {kv!r}: expected KEY=VALUE" for kv in args.set if "=" not in kv]
    if out.exists() and not out.is_dir():
        errors.append(f"--out {out} is a file; give a folder")
    if out == nano or nano in out.parents:
        errors.append(f"--out {out} is inside --nano-run {nano}; the nano run is read only, give another folder")
    if errors:
        p.error("; ".join(errors[:4]))
    return args


def nano(r: Recipe) -> Path:
    return Path(r.args.nano_run).resolve()


def i2v_done(r: Recipe) -> bool:
    return (r.out / "dit_i2v" / "export" / "dit.pt").is_file()


def i2v_run(r: Recipe) -> dict:
    src = nano(r)
    scale = json.loads((src / "latent_scale.json").read_text())["latent_scale"]
    sets = [f"data.latent_cache={src / 'cache64_plain'}", f"run.out_dir={r.out / 'dit_i2v'}",
            f"run.init_from={src / FINAL_DIT / 'export' / 'dit.pt'}", f"model.vae_weights={src / 'vae/export/vae'}",
            f"model.text_encoder={src / 'tree'}", f"model.latent_scale={scale}",
            *(QUICK["dit"] if r.args.quick else []), *r.args.set]
    r.run("i2v", [sys.executable, "train_dit.py", "--config", CONFIG, *[x for kv in sets for x in ("--set", kv)]])
    return _loss_line(r.out / "dit_i2v")


def tree_done(r: Recipe) -> bool:
    card = r.out / "tree" / "nano.json"
    return card.is_file() and "i2v" in json.loads(card.read_text())


def tree_run(r: Recipe) -> dict:
    """The nano tree with the I2V DiT beside the text-to-video one (official HunyuanVideo-I2V folders)."""
    from hyvideo.checkpoint.io import OFFICIAL_I2V_ROOT, OFFICIAL_I2V_TEXT_ENCODER  # noqa: PLC0415
    from hyvideo.data.synthetic.nano_tree import tree_size_mb, write_card, write_dit  # noqa: PLC0415

    src, tree = nano(r) / "tree", r.out / "tree"
    tmp = r.out / "tree.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    write_dit(tmp, r.out / "dit_i2v" / "export" / "dit.pt", subdir=Path(OFFICIAL_I2V_ROOT) / "transformers")
    shutil.copytree(tmp / "hunyuan-video-t2v-720p" / "vae", tmp / OFFICIAL_I2V_ROOT / "vae")
    shutil.copytree(tmp / "text_encoder", tmp / OFFICIAL_I2V_TEXT_ENCODER)
    card = json.loads((tmp / "nano.json").read_text())
    progress = r.progress.get("i2v", {})
    card["sampling"]["i2v_resolution"] = "64p"
    card["i2v"] = {"condition_type": "token_replace", "text": "text-only (the prompt is read without the image)",
                   "init_from": f"{FINAL_DIT} (EMA)", "config": CONFIG, "seconds": progress.get("seconds"),
                   **progress.get("summary", {})}
    write_card(tmp, card)
    shutil.rmtree(tree, ignore_errors=True)
    tmp.rename(tree)
    return {"size_mb": round(tree_size_mb(tree), 2), "line": f"{tree} ({tree_size_mb(tree):.1f} MB)"}


def eval_done(r: Recipe) -> bool:
    return (r.out / "eval_i2v.json").is_file()


def eval_run(r: Recipe) -> dict:
    report = r.out / "eval_i2v.json"
    extra = ["--limit", "2", "--steps", "2", "--v2v-limit", "2"] if r.args.quick else []
    extra += ["--seeds", *map(str, r.args.eval_seeds)] if r.args.eval_seeds else []
    r.run("eval", [sys.executable, "scripts/eval_nano_i2v.py", "--model-base", str(r.out / "tree"), *extra,
                   "--out", str(report)])
    s = json.loads(report.read_text())["summary"]
    return {**s, "line": f"first frame {s['first_frame_psnr']:.2f} dB (VAE {s['vae_psnr']:.2f} dB image, "
                         f"{s['vae_clip_psnr']:.2f} dB in its clip), colour "
                         f"{s['colour_acc']:.1f} %, motion {s['motion_acc']:.1f} %; V2V 0.3: colour kept "
                         f"{s['v2v_colour_kept']:.1f} %, shift {s['v2v_shift_px']:.2f} px; 1.0 vs T2V max "
                         f"|diff| {s['v2v_t2v_max_abs']:.3g}"}


STAGES = {"i2v": (i2v_done, i2v_run), "tree": (tree_done, tree_run), "eval": (eval_done, eval_run)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return Recipe(args, STAGES).main()
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
