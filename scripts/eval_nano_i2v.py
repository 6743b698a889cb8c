"""Evaluate the nano image-to-video model and video-to-video on held-out triples (issue 17 acceptance).

    python scripts/eval_nano_i2v.py --model-base runs/nano_i2v/tree            # tree of scripts/train_nano_i2v.py

For each held-out (colour, shape, motion) triple of configs/nano/dataset.yaml and each seed (0 and 1), the nano
data generator renders the ground-truth clip (render_eval_clip: plain background for even seeds, gradient for
odd ones); its frame 0 is the input image.

- Image-to-video (the tree's I2V DiT, fixed seeds, the card's sampling settings): PSNR of the first output frame
  against the input image, beside the PSNR of the nano VAE's own reconstruction of that image, two ways:
  encode + decode of the one frame, and frame 0 of the encode + decode of the rendered clip it starts. The two
  differ per image by up to ~1 dB with the shipped nano VAE: its GroupNorms pool statistics over all frames, so
  the later frames change how frame 0 decodes (hyvideo/vae/autoencoder.py). Per-image gaps are counted against
  both. The attribute detector's colour / shape / motion accuracy against the triple, and "colour
  kept" (the colour detected on the sample equals the one detected on the rendered clip).
- Video-to-video (the tree's text-to-video DiT, same prompts and seeds, the rendered clip as input): at strength
  0.3, colour kept and the shift of the object's centroid from the input's, pixels (mean over the frames where
  both show the object); at strength 1.0, the max absolute difference (0-1 pixel scale) from text-to-video
  sampled from the same noise (first batch of clips).

Prints one table and writes it with per-clip records as JSON (--out). PSNR is over 8-bit RGB frames
(hyvideo.eval.frame_metrics), means are over clips. Exit status 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

V2V_STRENGTH = 0.3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base", required=True, help="nano I2V tree (scripts/train_nano_i2v.py: OUT/tree)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--limit", type=int, default=None, help="first N held-out triples only (quick checks)")
    p.add_argument("--v2v-limit", type=int, default=None, help="video-to-video on the first N clips only")
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default: the tree's nano.json)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="results/eval_nano_i2v.json", help="JSON report")
    args = p.parse_args(argv)
    base, problems = Path(args.model_base), []
    if not (base / "nano.json").is_file():
        problems.append(f"--model-base {base} has no nano.json (not a nano model tree)")
    elif "i2v" not in json.loads((base / "nano.json").read_text()):
        problems.append(f"--model-base {base} has no image-to-video DiT (nano.json without 'i2v'; build it with "
                        "scripts/train_nano_i2v.py)")
    for name in ("limit", "v2v_limit", "steps", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if problems:
        p.error("; ".join(problems))
    return args


def psnr(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of ``[N, H, W, 3]`` uint8 images (inf where identical)."""
    import torch  # noqa: PLC0415

    from hyvideo.eval.frame_metrics import frame_metrics  # noqa: PLC0415

    return frame_metrics(torch.from_numpy(ref), torch.from_numpy(cand), metrics=("psnr",))["psnr"]


def vae_reconstruction(pipe, clips: np.ndarray, batch: int = 8) -> np.ndarray:
    """Frame 0 of the nano VAE's encode + decode of ``[N, T, H, W, 3]`` uint8 clips (T = 1: images), as
    ``[N, H, W, 3]`` uint8; ``batch`` clips at a time."""
    import torch  # noqa: PLC0415

    from hyvideo.data.synthetic.evaluation import to_clips  # noqa: PLC0415

    out = []
    for i in range(0, len(clips), batch):
        pixels = torch.from_numpy(clips[i: i + batch]).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1)
        with torch.no_grad():
            video = pipe.decode(pipe.encode_latents(pixels, vae_tiling=False), vae_tiling=False)
        out.append(to_clips(video)[:, 0])
    return np.concatenate(out)


def centroid_shift_px(ref: np.ndarray, cand: np.ndarray) -> float:
    """Mean distance (pixels) between the segmented object's centroids of two ``[T, H, W, 3]`` clips over the
    frames where both show it (NaN if none)."""
    from hyvideo.data.synthetic.segment import segment  # noqa: PLC0415

    a, b = segment(ref).centroids, segment(cand).centroids
    d = np.hypot(*((a - b) * np.array(ref.shape[2:0:-1])).T)  # (x, y) fractions -> pixels (W, H)
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) else float("nan")


def _gaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image |PSNR a - PSNR b| (dB); pairs that are both identical to the input (inf) count as 0."""
    both_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    with np.errstate(invalid="ignore"):
        return np.where(both_inf, 0.0, np.abs(a - b))


def _max_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-image |PSNR a - PSNR b| (dB), see ``_gaps``."""
    return float(_gaps(a, b).max())


def _motion_by_type(rows: list[dict]) -> dict[str, str]:
    """``{motion: "correct/total"}`` over the per-clip records (the prompted motion is ``truth[2]``)."""
    out: dict[str, list[int]] = {}
    for r in rows:
        n = out.setdefault(r["truth"][2], [0, 0])
        n[0], n[1] = n[0] + bool(r["motion_ok"]), n[1] + 1
    return {k: f"{a}/{b}" for k, (a, b) in out.items()}


def i2v_section(pipe, prompts, seeds, triples, real, s, log) -> tuple[dict, list[dict]]:
    """Image-to-video figures (module docstring) and per-clip records."""
    from PIL import Image  # noqa: PLC0415

    from hyvideo.data.synthetic import evaluation as ev  # noqa: PLC0415
    from hyvideo.data.synthetic.detect import detect  # noqa: PLC0415

    images = real[:, 0]
    recon, recon_clip = vae_reconstruction(pipe, real[:, :1]), vae_reconstruction(pipe, real)
    clips = ev.sample_clips(pipe, prompts, seeds, s, progress=log,
                            per_clip={"image": [Image.fromarray(im) for im in images]})
    first, vae, vae_clip = psnr(images, clips[:, 0]), psnr(images, recon), psnr(images, recon_clip)
    scores = ev.score_clips(clips, triples)
    rows = []
    for i, row in enumerate(scores.pop("clips")):
        ref_colour = detect(real[i]).colour
        rows.append({**row, "prompt": prompts[i], "seed": seeds[i], "first_frame_psnr": float(first[i]),
                     "vae_psnr": float(vae[i]), "vae_clip_psnr": float(vae_clip[i]), "rendered_colour": ref_colour,
                     "colour_kept": row["detected"][0] == ref_colour})
    out = {"first_frame_psnr": float(np.mean(first)), "vae_psnr": float(np.mean(vae)),
           "psnr_gap": float(np.mean(first) - np.mean(vae)), "psnr_gap_max": _max_gap(first, vae),
           "psnr_within_1db": int((_gaps(first, vae) <= 1.0).sum()),
           "vae_clip_psnr": float(np.mean(vae_clip)), "clip_gap_max": _max_gap(first, vae_clip),
           "clip_within_1db": int((_gaps(first, vae_clip) <= 1.0).sum()),
           "vae_refs_gap_max": _max_gap(vae, vae_clip),
           "motion_by_type": _motion_by_type(rows),
           "colour_kept": 100.0 * np.mean([r["colour_kept"] for r in rows]),
           **{k: v for k, v in scores.items() if k in ("colour_acc", "shape_acc", "motion_acc", "found")}}
    return out, rows


def v2v_section(pipe, prompts, seeds, real, s, batch: int, log) -> tuple[dict, list[dict]]:
    """Video-to-video figures (module docstring) and per-clip records (strength 0.3)."""
    import torch  # noqa: PLC0415

    from hyvideo.data.synthetic import evaluation as ev  # noqa: PLC0415
    from hyvideo.data.synthetic.detect import detect  # noqa: PLC0415

    video = torch.from_numpy(real).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1)  # [N, 3, T, H, W] in [-1, 1]
    low = ev.sample_clips(pipe, prompts, seeds, s, progress=log, per_clip={"video": video}, strength=V2V_STRENGTH)
    with torch.no_grad():  # the VAE round trip of the input: what any latent-space edit starts from
        trip = np.concatenate([ev.to_clips(pipe.decode(pipe.encode_latents(video[i: i + s.batch_size], False), False))
                               for i in range(0, len(video), s.batch_size)])
    rows = []
    for i in range(len(low)):
        got, want, rt = detect(low[i]).colour, detect(real[i]).colour, detect(trip[i]).colour
        rows.append({"prompt": prompts[i], "seed": seeds[i], "detected_colour": got, "input_colour": want,
                     "colour_kept": got == want, "centroid_shift_px": centroid_shift_px(real[i], low[i]),
                     "vae_colour": rt, "vae_colour_kept": rt == want,
                     "vae_shift_px": centroid_shift_px(real[i], trip[i])})
    n = min(batch, len(prompts))
    full = ev.sample_videos(pipe, prompts[:n], seeds[:n], s, per_clip={"video": video[:n]}, strength=1.0)
    t2v = ev.sample_videos(pipe, prompts[:n], seeds[:n], s)
    shifts = np.array([r["centroid_shift_px"] for r in rows])
    out = {"v2v_clips": len(rows), "v2v_colour_kept": 100.0 * np.mean([r["colour_kept"] for r in rows]),
           "v2v_shift_px": float(np.nanmean(shifts)), "v2v_shift_px_max": float(np.nanmax(shifts)),
           "vae_colour_kept": 100.0 * np.mean([r["vae_colour_kept"] for r in rows]),
           "vae_shift_px": float(np.nanmean([r["vae_shift_px"] for r in rows])),
           "v2v_t2v_clips": n, "v2v_t2v_max_abs": float((full - t2v).abs().max())}
    return out, rows


def table(summary: dict, settings) -> str:
    """One fixed-width table of the figures (see the module docstring)."""
    s = summary
    acc = "{:.1f} / {:.1f} / {:.1f} %".format
    gap = f"gap {s['psnr_gap']:+.3f} dB, per image <= {s['psnr_gap_max']:.3f} dB"
    rows = [
        ("I2V first frame vs input image, PSNR", f"{s['first_frame_psnr']:.2f} dB",
         f"VAE reconstruction {s['vae_psnr']:.2f} dB ({gap}; {s['psnr_within_1db']} of {s['clips']} within 1 dB)"),
        ("VAE reconstruction of the input clip, frame 0, PSNR", f"{s['vae_clip_psnr']:.2f} dB",
         f"I2V first frame per image within <= {s['clip_gap_max']:.3f} dB of it ({s['clip_within_1db']} of "
         f"{s['clips']} within 1 dB); the two VAE references differ per image by <= {s['vae_refs_gap_max']:.3f} dB"),
        ("I2V detector: colour / shape / motion", acc(s["colour_acc"], s["shape_acc"], s["motion_acc"]),
         f"found {s['found']:.1f} %; colour kept vs the input clip {s['colour_kept']:.1f} %"),
        ("rendered clips (detector ceiling)",
         acc(s["rendered_colour_acc"], s["rendered_shape_acc"], s["rendered_motion_acc"]), "same triples and seeds"),
        (f"V2V strength {V2V_STRENGTH}: colour kept", f"{s['v2v_colour_kept']:.1f} %",
         f"{s['v2v_clips']} clips; the VAE round trip of the input alone: {s['vae_colour_kept']:.1f} %"),
        (f"V2V strength {V2V_STRENGTH}: centroid shift", f"{s['v2v_shift_px']:.2f} px",
         f"max {s['v2v_shift_px_max']:.2f} px ({settings.width} px frames); "
         f"VAE round trip {s['vae_shift_px']:.2f} px"),
        ("V2V strength 1.0 vs T2V, same noise", f"{s['v2v_t2v_max_abs']:.3g}",
         f"max |diff|, {s['v2v_t2v_clips']} clips"),
    ]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    head = f"{s['clips']} clips ({s['triples']} held-out triples x seeds {s['seeds']}), {settings.infer_steps} steps"
    return "\n".join([head, *(f"{a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows)])


def evaluate(args) -> dict:
    """Render, sample, detect, score; returns the report (also written to ``args.out``)."""
    import torch  # noqa: PLC0415

    from hyvideo.data.synthetic import evaluation as ev  # noqa: PLC0415
    from hyvideo.data.synthetic.captions import heldout_prompts  # noqa: PLC0415
    from hyvideo.nano import read_card  # noqa: PLC0415

    torch.manual_seed(0)
    card = read_card(args.model_base)
    s = ev.SampleSettings.from_card(card, infer_steps=args.steps, batch_size=args.batch_size)
    pairs = heldout_prompts()[: args.limit]
    triples = [t for t, _ in pairs for _ in args.seeds]
    prompts = [p for _, p in pairs for _ in args.seeds]
    seeds = [x for _ in pairs for x in args.seeds]
    real = ev.render_reference(triples, seeds, s)
    t0 = time.perf_counter()

    def log(n, total=None):
        print(f"  {n}/{total or len(prompts)} ({time.perf_counter() - t0:.0f} s)", flush=True)

    text_len = card["sampling"].get("text_len")
    print(f"image-to-video: {len(prompts)} clips ({len(pairs)} held-out triples x seeds {args.seeds}): {s}", flush=True)
    i2v, i2v_rows = i2v_section(ev.load_eval_pipeline(args.model_base, text_len=text_len, i2v=True), prompts, seeds,
                                triples, real, s, log)
    i2v_s = time.perf_counter() - t0
    m = args.v2v_limit or len(prompts)
    print(f"video-to-video: {m} clips at strength {V2V_STRENGTH}, {min(s.batch_size, m)} at 1.0 and as T2V", flush=True)
    v2v, v2v_rows = v2v_section(ev.load_eval_pipeline(args.model_base, text_len=text_len), prompts[:m], seeds[:m],
                                real[:m], s, s.batch_size, lambda n: log(n, m))
    rendered = ev.score_clips(real, triples)
    summary = {"clips": len(prompts), "triples": len(pairs), "seeds": args.seeds, **i2v, **v2v,
               **{f"rendered_{k}": rendered[k] for k in ("colour_acc", "shape_acc", "motion_acc")},
               "i2v_seconds": round(i2v_s, 1), "v2v_seconds": round(time.perf_counter() - t0 - i2v_s, 1)}
    text = table(summary, s)
    report = {"model_base": str(args.model_base), "settings": ev.asdict(s), "summary": summary, "table": text,
              "i2v_clips": i2v_rows, "v2v_clips": v2v_rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float))
    tmp.replace(out)
    print(text)
    print(f"wrote {out} (I2V {i2v_s:.0f} s, V2V {summary['v2v_seconds']:.0f} s)")
    return report


def main(argv=None) -> dict:
    return evaluate(parse_args(argv))


if __name__ == "__main__":
    main()
