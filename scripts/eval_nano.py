"""Evaluate a nano model on the held-out attribute combinations of the data set (issue 16).

    python scripts/eval_nano.py                                        # the shipped model (hyvideo/assets/nano)
    python scripts/eval_nano.py --model-base runs/nano/tree            # a tree written by scripts/train_nano.py
    python scripts/eval_nano.py --model-base runs/nano/tree --dit-weight runs/nano/dit1/export/dit.pt  # stage 1

For each held-out (colour, shape, motion) triple of configs/nano/dataset.yaml (53; --triples training: 53 seen
triples spread over the vocabulary, for the generalisation gap) and each seed (0 and 1), the model samples
"a <colour> <shape> <motion phrase>" with fixed noise; the attribute detector reads the clip back.
The same triples rendered as ground truth with other seeds give the reference row, and the same renders
encoded and decoded by the tree's VAE the ceiling row (what any DiT decoding through this VAE can reach; see
hyvideo/data/synthetic/evaluation.py for every figure). Prints one table, then the model's accuracy per prompted
word (and its shape accuracy per motion: does the shape hold while the object moves), and writes them, with
per-clip records, as JSON (--out). Sampling settings default to the tree's nano.json (--steps, --flow-shift,
--cfg-scale, --size override).
Exit status 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    from hyvideo.nano import NANO_TREE  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base", default=str(NANO_TREE), help="nano model tree (with nano.json)")
    p.add_argument("--dit-weight", default=None,
                   help="DiT weights overriding the tree's (e.g. a stage's export/dit.pt)")
    p.add_argument("--load-key", default="ema", choices=["module", "ema"], help="for export/dit.pt files")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--triples", default="heldout", choices=["heldout", "training"],
                   help="the held-out triples (the figure of merit), or as many training triples spread over the "
                        "vocabulary (seen combinations: the generalisation gap)")
    p.add_argument("--limit", type=int, default=None, help="N triples only (quick checks)")
    p.add_argument("--pick", default="first", choices=["first", "spread"],
                   help="with --limit: the first N triples, or N spread evenly over the list (every colour)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--flow-shift", type=float, default=None)
    p.add_argument("--cfg-scale", type=float, default=None)
    p.add_argument("--size", type=int, default=None,
                   help="frame side in pixels (default the card's); clips over 64 px are detected area-downscaled to 64")
    p.add_argument("--text-conditioning", default="llm+clip", choices=["llm+clip", "clip"],
                   help="the DiT's text tokens: the LLM's (released) or CLIP's (a model.text_conditioning=clip DiT)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="results/eval_nano.json", help="JSON report")
    p.add_argument("--save-videos", default=None, help="folder for the sampled clips as mp4 (optional)")
    args = p.parse_args(argv)
    problems = []
    if not (Path(args.model_base) / "nano.json").is_file():
        problems.append(f"--model-base {args.model_base} has no nano.json (not a nano model tree)")
    if args.dit_weight is not None and not Path(args.dit_weight).exists():
        problems.append(f"--dit-weight {args.dit_weight} does not exist")
    if args.steps is not None and args.steps < 1:
        problems.append(f"--steps must be >= 1, got {args.steps}")
    if args.limit is not None and args.limit < 1:
        problems.append(f"--limit must be >= 1, got {args.limit}")
    from hyvideo.pipeline import SIZE_MULTIPLE  # noqa: PLC0415  (the pipeline's own rule for frame sizes)

    if args.size is not None and (args.size <= 0 or args.size % SIZE_MULTIPLE):
        problems.append(f"--size must be a positive multiple of {SIZE_MULTIPLE} pixels, got {args.size}")
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if problems:
        p.error("; ".join(problems))
    return args


def evaluate(args) -> dict:
    """Sample, detect, score; returns the report (also written to ``args.out``)."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from hyvideo.data.synthetic import evaluation as ev  # noqa: PLC0415
    from hyvideo.data.synthetic.captions import heldout_prompts, training_prompts  # noqa: PLC0415
    from hyvideo.eval.vae_recon import load_eval_vae, reconstruct_frames  # noqa: PLC0415
    from hyvideo.nano import read_card  # noqa: PLC0415

    torch.manual_seed(0)
    card = read_card(args.model_base)
    settings = ev.SampleSettings.from_card(card, infer_steps=args.steps, flow_shift=args.flow_shift,
                                           cfg_scale=args.cfg_scale, batch_size=args.batch_size,
                                           height=args.size, width=args.size)
    pairs = heldout_prompts()
    if args.triples == "training":
        pairs = training_prompts(len(pairs))
    if args.limit is not None and args.pick == "spread" and args.limit < len(pairs):  # the list is sorted by colour
        pairs = [pairs[round(i * len(pairs) / args.limit)] for i in range(args.limit)]
    pairs = pairs[: args.limit]
    triples = [t for t, _ in pairs for _ in args.seeds]
    prompts = [p for _, p in pairs for _ in args.seeds]
    seeds = [s for _ in pairs for s in args.seeds]
    t0 = time.perf_counter()
    pipe = ev.load_eval_pipeline(args.model_base, dit_weight=args.dit_weight,
                                 load_key=args.load_key if args.dit_weight else "module",
                                 text_len=card["sampling"].get("text_len"), text_conditioning=args.text_conditioning)
    print(f"sampling {len(prompts)} clips ({len(pairs)} {args.triples} triples x seeds {args.seeds}): {settings}",
          flush=True)
    clips = ev.sample_clips(pipe, prompts, seeds, settings,
                            progress=lambda n: print(f"  {n}/{len(prompts)} ({time.perf_counter() - t0:.0f} s)",
                                                     flush=True))
    sample_s = time.perf_counter() - t0
    real = ev.render_reference(triples, seeds, settings)
    real_b = ev.render_reference(triples, [s + 100 for s in seeds], settings)
    vae = load_eval_vae(args.model_base)  # the tree's VAE as the pipeline has it (fp32, accelerated paths)
    bs = settings.batch_size
    round_trip = np.concatenate([reconstruct_frames(vae, torch.from_numpy(real_b[i:i + bs])).numpy()
                                 for i in range(0, len(real_b), bs)])
    model, reference = ev.score_clips(clips, triples), ev.score_clips(real, triples)
    ceiling = ev.score_clips(round_trip, triples)
    feats_real = ev.frame_features(real)
    model["fd"] = ev.frechet_distance(ev.frame_features(clips), feats_real)
    reference["fd"] = ev.frechet_distance(ev.frame_features(real_b), feats_real)
    ceiling["fd"] = ev.frechet_distance(ev.frame_features(round_trip), feats_real)
    if args.save_videos:
        from hyvideo.utils.video_io import save_video  # noqa: PLC0415

        for i, (clip, prompt, seed) in enumerate(zip(clips, prompts, seeds)):
            save_video(torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 255,
                       Path(args.save_videos) / f"{i:03d}_seed{seed}_{prompt.replace(' ', '_')}.mp4",
                       fps=card["sampling"].get("fps", 24))
    name = "model" + (f" ({Path(args.dit_weight).parent.parent.name})" if args.dit_weight else "")
    table = ev.summary_table({f"{name}": model, "rendered (other seeds)": reference,
                              "rendered -> VAE round trip": ceiling})
    model["by_word"] = ev.breakdown(model)
    report = {"model_base": str(args.model_base), "dit_weight": args.dit_weight, "triples": args.triples,
              "settings": ev.asdict(settings), "text_conditioning": args.text_conditioning,
              "num_clips": len(prompts), "seeds": args.seeds, "sampling_seconds": round(sample_s, 1),
              "model": model, "rendered": reference, "vae_round_trip": ceiling, "table": table}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table)
    print(f"{name} by prompted word (correct / clips):\n{ev.breakdown_lines(model['by_word'])}")
    print(f"wrote {out} ({len(prompts)} clips, sampling {sample_s:.0f} s)")
    return report


def main(argv=None) -> dict:
    return evaluate(parse_args(argv))


if __name__ == "__main__":
    main()
