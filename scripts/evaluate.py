"""Evaluate videos: VAE reconstruction, paired frame metrics, FVD, CLIP score, VBench-style dimensions.

Every subcommand prints a table on stdout and writes the full result (per video, per frame, settings) as JSON.
Models are read from local paths only; nothing is downloaded. Protocols, units and where we differ from the
reference implementations: ``docs/evaluation.md``.

Usage::

    python scripts/evaluate.py vae --vae ckpts --inputs clips/ --frames 33 --size 256 256 [--tiled] \
        --lpips-vgg vgg16-397923af.pth --lpips-lin vgg.pth --json vae.json
    python scripts/evaluate.py pairs --reference DIR_A --candidate DIR_B --no-lpips --json pairs.json
    python scripts/evaluate.py fvd --real real/ --fake fake/ --model i3d_torchscript.pt --json fvd.json
    python scripts/evaluate.py clip --videos results/ --clip-dir clip-vit-large-patch14 --json clip.json
    python scripts/evaluate.py vbench --videos results/ --dino-dir dino-vitb16 --clip-dir clip-vit-base-patch32 \
        --json vbench.json

Bad arguments and missing files exit with status 2 and a message before any model runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyvideo.eval import report  # noqa: E402

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class UsageError(Exception):
    """Bad input found before the heavy work: printed, exit status 2."""


def _device(name: str) -> str:
    import torch  # noqa: PLC0415

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _metrics(text: str) -> tuple[str, ...]:
    from hyvideo.eval.frame_metrics import METRICS  # noqa: PLC0415

    names = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UsageError(f"--metrics {text!r}: allowed names are {','.join(METRICS)}")
    return names


def _lpips(args, metrics: tuple[str, ...], device: str):
    """The LPIPS module, or None with ``--no-lpips`` (then 'lpips' is dropped from the metrics)."""
    from hyvideo.eval.frame_metrics import load_lpips  # noqa: PLC0415

    if args.no_lpips or "lpips" not in metrics:
        return None, tuple(m for m in metrics if m != "lpips")
    for p in (args.lpips_vgg, args.lpips_lin):
        if p and not Path(p).is_file():
            raise UsageError(f"LPIPS weight file not found: {p}")
    try:
        return load_lpips(args.lpips_vgg, args.lpips_lin, allow_random=args.lpips_random, device=device), metrics
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e


def _media(source: str, flag: str, videos_only: bool = False):
    from hyvideo.eval.media import list_media  # noqa: PLC0415

    try:
        return list_media(source, videos_only=videos_only)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"{flag}: {e}") from e


def _frame_table(result: dict, extra: tuple[str, ...] = ()) -> str:
    metrics = [m for m in ("psnr", "ssim", "lpips") if m in result["mean"]]
    rows = [{k: v for k, v in r.items() if k != "per_frame"} for r in result["videos"]]
    mean = {"name": "mean over videos", "frames": result["mean"]["num_frames"], **result["mean"]}
    return report.format_table([*rows, mean], ["name", "frames", *extra, *metrics])


# ------------------------------------------------------------------------------------------------ subcommands


def cmd_vae(args) -> dict:
    """VAE reconstruction of every clip / image of --inputs."""
    import torch  # noqa: PLC0415

    from hyvideo.eval.vae_recon import check_inputs, load_eval_vae, vae_reconstruction  # noqa: PLC0415

    metrics = _metrics(args.metrics)
    items = _media(args.inputs, "--inputs")[: args.max_items]
    device = _device(args.device)
    lpips, metrics = _lpips(args, metrics, device)
    try:
        vae = load_eval_vae(args.vae, dtype=getattr(torch, DTYPES[args.dtype]), device=device, impl=args.impl,
                            tiled=args.tiled)
        check_inputs(vae, items, args.frames)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from e
    size = tuple(args.size) if args.size else None
    if size and (size[0] % vae.spatial or size[1] % vae.spatial):
        raise UsageError(f"--size {size[0]} {size[1]} must be multiples of the VAE's spatial factor {vae.spatial}")
    result = vae_reconstruction(vae, items, num_frames=args.frames, size=size, lpips=lpips, metrics=metrics,
                                save_dir=args.save_recon, progress=not args.quiet)
    settings = {"vae": vae.source, "class": vae.class_name, "impl": vae.impl, "tiled": args.tiled,
                "dtype": args.dtype, "device": device, "frames": args.frames, "size": size,
                "lpips": _lpips_desc(args, lpips)}
    print(f"VAE {vae.class_name} ({vae.impl}) from {vae.source}; {args.frames} frames, "
          f"{f'size {size[0]}x{size[1]}' if size else 'native size'}, {'tiled' if args.tiled else 'untiled'}, {args.dtype}")
    print(_frame_table(result, ("height", "width", "seconds")))
    return {"settings": settings, **result}


def _lpips_desc(args, lpips) -> str:
    if lpips is None:
        return "off"
    return "random weights (not perceptual)" if args.lpips_random and not args.lpips_vgg else \
        f"vgg={args.lpips_vgg}, lin={args.lpips_lin}"


def cmd_pairs(args) -> dict:
    """Frame metrics of each candidate video against the reference video of the same file name."""
    from hyvideo.eval.frame_metrics import aggregate, frame_metrics, summarize  # noqa: PLC0415
    from hyvideo.eval.media import read_frames  # noqa: PLC0415

    metrics = _metrics(args.metrics)
    refs = _media(args.reference, "--reference")
    cands = {it.name: it for it in _media(args.candidate, "--candidate")}
    missing = [r.name for r in refs if r.name not in cands]
    if missing:
        raise UsageError(f"{len(missing)} reference file(s) have no candidate of the same name in "
                         f"{args.candidate}: {missing[:10]}")
    device = _device(args.device)
    lpips, metrics = _lpips(args, metrics, device)
    rows, per_frame_all = [], []
    for ref_item in refs:
        ref, cand = read_frames(ref_item, args.frames), read_frames(cands[ref_item.name], args.frames)
        if ref.shape != cand.shape:
            raise UsageError(f"{ref_item.name}: reference {tuple(ref.shape)} and candidate {tuple(cand.shape)} "
                             "([T, H, W, 3]) differ; use --frames N to compare the first N frames")
        per_frame = frame_metrics(ref, cand, lpips=lpips, metrics=metrics)
        per_frame_all.append(per_frame)
        rows.append({"name": ref_item.name, "frames": int(ref.shape[0]), **summarize(per_frame),
                     "per_frame": {m: v.tolist() for m, v in per_frame.items()}})
    result = {"videos": rows, "mean": aggregate([{m: r[m] for m in metrics} for r in rows], per_frame_all)}
    print(_frame_table(result))
    return {"settings": {"reference": args.reference, "candidate": args.candidate, "frames": args.frames,
                         "lpips": _lpips_desc(args, lpips)}, **result}


def cmd_fvd(args) -> dict:
    """FVD between the videos of --real and --fake."""
    from hyvideo.eval.fvd import fvd_from_features, load_feature_model, video_features  # noqa: PLC0415
    from hyvideo.eval.media import count_frames, read_frames  # noqa: PLC0415

    real, fake = _media(args.real, "--real", True), _media(args.fake, "--fake", True)
    if len(real) < 2 or len(fake) < 2:
        raise UsageError(f"FVD needs at least 2 videos per set, got {len(real)} real and {len(fake)} fake")
    try:
        model = load_feature_model(args.model, device=_device(args.device))
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e
    short = [it.name for it in real + fake if count_frames(it) < model.clip_frames]
    if short:
        raise UsageError(f"{len(short)} video(s) have fewer than {model.clip_frames} frames: {short[:10]}")
    feats = {}
    for key, items in (("real", real), ("fake", fake)):
        videos = (read_frames(it, model.clip_frames) for it in items)
        feats[key] = video_features(videos, model, batch_size=args.batch_size, names=[it.name for it in items])
    value = fvd_from_features(feats["real"], feats["fake"])
    out = {"fvd": value, "num_real": len(real), "num_fake": len(fake), "feature_dim": int(feats["real"].shape[1]),
           "clip_frames": model.clip_frames, "size": model.size, "model": f"{model.kind}:{model.source}"}
    print(report.format_table([out], ["fvd", "num_real", "num_fake", "feature_dim", "clip_frames", "model"]))
    return {"settings": {"real": args.real, "fake": args.fake}, **out}


def load_prompts(items, prompts_file: str | None) -> list[str]:
    """One prompt per video: from ``prompts_file`` (.json mapping name or stem -> prompt, .jsonl rows with
    ``name`` / ``video`` / ``path`` and ``prompt``, .txt one line per video in name order) or from each video's
    ``sample_video.py`` sidecar ``<stem>.json`` (``prompt``, else ``args.prompt``).

    Raises:
        UsageError: a video without prompt (all are listed), or an unreadable prompt file.
    """
    table: dict[str, str] = {}
    if prompts_file:
        path = Path(prompts_file)
        if not path.is_file():
            raise UsageError(f"--prompts file not found: {path}")
        if path.suffix == ".txt":
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            if len(lines) != len(items):
                raise UsageError(f"{path} has {len(lines)} prompts for {len(items)} videos")
            table = {it.name: ln for it, ln in zip(items, lines)}
        elif path.suffix == ".jsonl":
            for row in (json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()):
                key = row.get("name") or row.get("video") or row.get("path")
                table[Path(str(key)).name] = row.get("prompt")
        else:
            table = json.loads(path.read_text())
    prompts, missing = [], []
    for it in items:
        p = table.get(it.name) or table.get(Path(it.name).stem)
        sidecar = it.path.with_suffix(".json")
        if not p and not prompts_file and sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            p = meta.get("prompt") or (meta.get("args") or {}).get("prompt")
        (prompts if p else missing).append(p or it.name)
    if missing:
        raise UsageError(f"no prompt for {len(missing)} video(s): {missing[:10]} (give --prompts, or keep "
                         "sample_video.py's <name>.json sidecars beside the videos)")
    return prompts


def cmd_clip(args) -> dict:
    """CLIP score of every video against its prompt."""
    from hyvideo.eval.clip_score import CLIPScorer, clip_score  # noqa: PLC0415
    from hyvideo.eval.media import read_frames  # noqa: PLC0415

    items = _media(args.videos, "--videos")
    prompts = load_prompts(items, args.prompts)
    try:
        scorer = CLIPScorer(args.clip_dir, device=_device(args.device))
    except (FileNotFoundError, OSError) as e:
        raise UsageError(str(e)) from e
    result = clip_score([read_frames(it) for it in items], prompts, scorer, max_frames=args.max_frames,
                        names=[it.name for it in items])
    rows = [{"name": r["name"], "frames": len(r["frames"]), "clip_score": r["clip_score"]} for r in result["videos"]]
    rows.append({"name": "mean over videos", "clip_score": result["clip_score"]})
    print(report.format_table(rows, ["name", "frames", "clip_score"]))
    return {"settings": {"videos": args.videos, "clip_dir": args.clip_dir, "max_frames": args.max_frames},
            **result}


def cmd_vbench(args) -> dict:
    """VBench-style dimensions of every video."""
    from hyvideo.data.curation.video import probe  # noqa: PLC0415
    from hyvideo.eval import vbench  # noqa: PLC0415
    from hyvideo.eval.media import read_frames  # noqa: PLC0415

    dims = [d.strip() for d in args.dimensions.split(",") if d.strip()]
    bad = [d for d in dims if d not in vbench.DIMENSIONS]
    if bad or not dims:
        raise UsageError(f"--dimensions {args.dimensions!r}: allowed {','.join(vbench.DIMENSIONS)}")
    need = {"subject_consistency": ("dino_dir", "--dino-dir"), "background_consistency": ("clip_dir", "--clip-dir")}
    models = {}
    for dim, (attr, flag) in need.items():
        if dim in dims:
            if not getattr(args, attr):
                raise UsageError(f"{dim} needs {flag} (a local transformers model folder)")
            try:
                models[dim] = vbench.FrameFeatures(getattr(args, attr), device=_device(args.device))
            except (FileNotFoundError, OSError) as e:
                raise UsageError(str(e)) from e
    items = _media(args.videos, "--videos", True)
    per = {d: [] for d in dims}
    rows = []
    for it in items:
        frames = read_frames(it)
        row = {"name": it.name, "frames": int(frames.shape[0])}
        for d in dims:
            if d == "dynamic_degree":
                r = vbench.dynamic_degree(frames, args.fps or probe(it.path).fps)
                row[d], row["dynamic_degree_detail"] = r["dynamic"], r
            elif d in models:
                s, n = getattr(vbench, d)(frames, models[d])
                r, row[d] = (s, n), s / n
            else:
                r = row[d] = getattr(vbench, d)(frames)
            per[d].append(r)
        rows.append(row)
    mean = {d: vbench.aggregate(d, per[d]) for d in dims}
    print(report.format_table([*rows, {"name": "VBench aggregate", **mean}], ["name", "frames", *dims]))
    return {"settings": {"videos": args.videos, "dimensions": dims, "fps": args.fps,
                         "models": {d: m.source for d, m in models.items()}}, "videos": rows, "mean": mean}


# ------------------------------------------------------------------------------------------------ argparse


def _add_lpips(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", default="psnr,ssim,lpips", help="comma list of psnr,ssim,lpips")
    p.add_argument("--lpips-vgg", default=None, help="torchvision vgg16 state dict (vgg16-397923af.pth)")
    p.add_argument("--lpips-lin", default=None, help="lpips package weights/v0.1/vgg.pth")
    p.add_argument("--lpips-random", action="store_true", help="allow random LPIPS weights (smoke tests only)")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", required=True, help="write the full result here (JSON)")
    common.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    common.add_argument("--quiet", action="store_true", help="no progress bar")

    v = sub.add_parser("vae", parents=[common], help="VAE reconstruction PSNR / SSIM / LPIPS")
    v.add_argument("--vae", required=True, help="VAE folder (official or diffusers) or a model tree holding one")
    v.add_argument("--inputs", required=True, help="folder of videos / images, or a JSONL / Parquet manifest")
    v.add_argument("--frames", type=int, default=33, help="frames per clip (1 + 4k for causal video VAEs)")
    v.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize-to-cover + centre crop (px)")
    v.add_argument("--tiled", action="store_true", help="VAE spatial + temporal tiling")
    v.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    v.add_argument("--impl", choices=["auto", "ours", "diffusers"], default="auto")
    v.add_argument("--max-items", type=int, default=None, help="only the first N inputs")
    v.add_argument("--save-recon", default=None, help="also write the reconstructions here")
    _add_lpips(v)

    q = sub.add_parser("pairs", parents=[common], help="frame metrics of same-named videos in two folders")
    q.add_argument("--reference", required=True)
    q.add_argument("--candidate", required=True)
    q.add_argument("--frames", type=int, default=None, help="compare the first N frames (default: all)")
    _add_lpips(q)

    f = sub.add_parser("fvd", parents=[common], help="Fréchet video distance")
    f.add_argument("--real", required=True, help="folder or manifest of real videos")
    f.add_argument("--fake", required=True, help="folder or manifest of generated videos")
    f.add_argument("--model", required=True, help="i3d_torchscript.pt (or its folder), or a VideoMAE folder")
    f.add_argument("--batch-size", type=int, default=8)

    c = sub.add_parser("clip", parents=[common], help="CLIP score of videos against their prompts")
    c.add_argument("--videos", required=True)
    c.add_argument("--clip-dir", required=True, help="local transformers CLIPModel folder with its processor")
    c.add_argument("--prompts", default=None, help=".json / .jsonl / .txt prompts (default: sidecar JSONs)")
    c.add_argument("--max-frames", type=int, default=None, help="score N evenly spaced frames per video")

    b = sub.add_parser("vbench", parents=[common], help="VBench-style motion / quality dimensions")
    b.add_argument("--videos", required=True)
    b.add_argument("--dimensions", default="temporal_flickering,dynamic_degree,motion_smoothness")
    b.add_argument("--dino-dir", default=None, help="DINO ViT folder for subject_consistency")
    b.add_argument("--clip-dir", default=None, help="CLIP folder for background_consistency")
    b.add_argument("--fps", type=float, default=None, help="frame rate for dynamic_degree (default: the file's)")
    return p


COMMANDS = {"vae": cmd_vae, "pairs": cmd_pairs, "fvd": cmd_fvd, "clip": cmd_clip, "vbench": cmd_vbench}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = COMMANDS[args.command](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = report.write_json({"command": args.command, **result}, args.json)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
