"""Web UI for text-to-video (and image-to-video with I2V weights), served by gradio.

    pip install -e ".[ui]"
    python gradio_server.py                      # the default model tree, http://127.0.0.1:8080
    python gradio_server.py --model-base tiny_ckpts --precision fp32    # tiny random models, CPU, seconds per video

One model in memory; jobs queue (each user sees their position) and run one at a time through the same sampling
function as ``sample_video.py`` (:func:`hyvideo.sampling.run_request`); videos and their sidecar JSON go to
``--save-path``. The model flags (``--model-base``, ``--dit-weight``, precisions, offload, FP8, step cache) are
``sample_video.py``'s. The server listens on the loopback address unless ``--server-name`` says otherwise; an
exposed server without ``--auth`` / ``--auth-file`` logs a warning. Bad flags exit with status 2 and a message
before any model is loaded.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from hyvideo.model_args import (
    add_model_args,
    check_model_args,
    default_device,
    load_models,
    offload_mode,
    resolve_model_base,
    resolve_precisions,
)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server-name", default="127.0.0.1",
                   help="address to listen on (default loopback only; 0.0.0.0 exposes the server: use --auth)")
    p.add_argument("--server-port", type=int, default=8080)
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require this login (gradio's authentication; repeat for more users)")
    p.add_argument("--auth-file", default=None, help="file of USER:PASS lines (# comments allowed)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (image-to-video)")
    p.add_argument("--max-queue", type=int, default=64, help="jobs waiting at most; more are refused")
    p.add_argument("--lora-dir", default=None, help="folder of LoRA files offered in the page (one per job)")
    p.add_argument("--save-path", default="./results", help="where the videos and sidecar JSON files go")
    p.add_argument("--fps", type=int, default=24)
    return add_model_args(p)


def parse_auth(args) -> list[tuple[str, str]]:
    """``(user, password)`` pairs from ``--auth`` and ``--auth-file``.

    Raises:
        ValueError: an entry without ``:``, an empty user or password, an unreadable file.
    """
    entries = [(a, "--auth") for a in args.auth]
    if args.auth_file:
        try:
            text = Path(args.auth_file).read_text()
        except OSError as e:
            raise ValueError(f"--auth-file {args.auth_file} cannot be read: {e.strerror or e}") from None
        entries += [(line.strip(), f"{args.auth_file}:{i}") for i, line in enumerate(text.splitlines(), 1)
                    if line.strip() and not line.strip().startswith("#")]
        if not any(src != "--auth" for _, src in entries):
            raise ValueError(f"--auth-file {args.auth_file} holds no USER:PASS line")
    pairs = []
    for entry, src in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{src}: expected USER:PASS with both parts non-empty, got {entry.split(':')[0]!r}:...")
        pairs.append((user, password))
    return pairs


def is_loopback(server_name: str) -> bool:
    if server_name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(server_name).is_loopback
    except ValueError:
        return False


def exposure_warning(server_name: str, auth: list) -> str | None:
    """The warning for a server reachable from other machines without a login, else None."""
    if is_loopback(server_name) or auth:
        return None
    return (f"the server listens on {server_name} (reachable from other machines) without a login: anyone who can "
            "reach it can run jobs; pass --auth USER:PASS or --auth-file FILE")


def check_args(args) -> list[tuple[str, str]]:
    """Every cheap check; returns the auth pairs.

    Raises:
        ValueError: the message names the bad value.
    """
    from hyvideo.utils.outputs import prepare_output_dir  # noqa: PLC0415

    check_model_args(args)
    if not 0 <= args.server_port <= 65535:
        raise ValueError(f"--server-port must be 0..65535, got {args.server_port}")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    if args.max_queue < 1:
        raise ValueError(f"--max-queue must be >= 1, got {args.max_queue}")
    if args.fps < 1:
        raise ValueError(f"--fps must be >= 1, got {args.fps}")
    if args.lora_dir is not None and not Path(args.lora_dir).is_dir():
        raise ValueError(f"--lora-dir {args.lora_dir} is not a folder")
    resolve_model_base(args)
    if not Path(args.model_base).is_dir():
        raise ValueError(f"--model-base folder not found: {args.model_base} (pass the released ckpts/ tree or a "
                         "diffusers folder)")
    prepare_output_dir(args.save_path)
    return parse_auth(args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        auth = check_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    warning = exposure_warning(args.server_name, auth)
    if warning:
        logging.getLogger("gradio_server").warning(warning)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home
    from hyvideo.checkpoint.io import WeightLoadError  # noqa: PLC0415
    from hyvideo.webui.engine import Engine  # noqa: PLC0415
    from hyvideo.webui.sizes import load_size_table  # noqa: PLC0415

    device = default_device(args)
    reason = resolve_precisions(args, device)
    print(f"precision on {reason}: DiT {args.precision}, VAE {args.vae_precision}, text {args.text_encoder_precision}")
    try:
        sizes = load_size_table(args.model_base, args.dit_weight)
        pipe, plan = load_models(args, device)
    except (FileNotFoundError, WeightLoadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = {"model_base": str(args.model_base), "dit_weight": args.dit_weight, "precision": args.precision,
            "vae_precision": args.vae_precision, "accel": str(plan), "source": "gradio_server.py"}
    engine = Engine(pipe, sizes=sizes, save_dir=args.save_path, device=device, lora_dir=args.lora_dir,
                    fps=args.fps, max_image_bytes=int(args.max_upload_mb * 2**20), offload=offload_mode(args),
                    info=info)
    serve(engine, args, auth)
    return 0


def serve(engine, args, auth: list[tuple[str, str]]) -> None:
    """Build the page and serve it until interrupted."""
    from hyvideo.webui.app import build_demo, theme  # noqa: PLC0415

    note = (f"Model `{args.model_base}`" + (f" (DiT `{args.dit_weight}`)" if args.dit_weight else "") +
            f" on {engine.device}, DiT {args.precision}. Sizes: " +
            ("the released buckets" if engine.sizes.source == "released" else f"from `{engine.sizes.source}`") +
            f". Videos are saved to `{args.save_path}`.")
    demo = build_demo(engine, title="hyvideo", model_note=note, default_cache_threshold=args.cache_threshold)
    demo.queue(default_concurrency_limit=1, max_size=args.max_queue)
    print(f"serving on http://{args.server_name}:{args.server_port} (videos in {args.save_path})", flush=True)
    demo.launch(server_name=args.server_name, server_port=args.server_port, auth=auth or None,
                max_file_size=int(args.max_upload_mb * 2**20), allowed_paths=[str(Path(args.save_path).resolve())],
                ssr_mode=False, share=False, show_error=True, theme=theme(), mcp_server=False,
                enable_monitoring=False, footer_links=["api", "settings"])


if __name__ == "__main__":
    sys.exit(main())
