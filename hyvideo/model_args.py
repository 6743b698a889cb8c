"""The model-loading flags shared by ``sample_video.py`` and ``gradio_server.py``, and the one place that loads.

Both front ends add these flags with :func:`add_model_args`, fill the precision defaults with
:func:`resolve_precisions`, and load with :func:`load_models` (``hyvideo.checkpoint.loader.load_pipeline`` then
``hyvideo.accel.apply``), so a flag means the same in the CLI and the web UI. The default model tree
(:data:`DEFAULT_MODEL_BASE`, else the hyvideo-nano tree shipped in the package: :func:`resolve_model_base`) is
defined here only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL_BASE = "ckpts"  # the released layout (huggingface-cli download tencent/HunyuanVideo --local-dir ./ckpts)
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
ATTN_BACKENDS = ["auto", "sdpa", "flash", "gemm", "naive"]  # hyvideo.ops.attention.backends() (a test keeps them equal)
OFFLOAD_FLAGS = {"use_cpu_offload": "cpu", "model_cpu_offload": "model", "sequential_offload": "blocks"}


def add_model_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the model tree, precision, device, attention, FP8, offload and step-cache flags to ``p``; returns it."""
    g = p.add_argument_group("model")
    g.add_argument("--model-base", default=None, help="official ckpts/ tree or diffusers folder (default: "
                   f"./{DEFAULT_MODEL_BASE} if it exists, else the hyvideo-nano model shipped in the package)")
    g.add_argument("--dit-weight", default=None, help="DiT weight file/folder (default: the tree's)")
    g.add_argument("--model", default="HYVideo-T/2-cfgdistill",
                   help="DiT preset when no config.json is beside the weights")
    g.add_argument("--load-key", default="module", choices=["module", "ema"])
    g.add_argument("--text-len", type=int, default=None,
                   help="LLM text tokens kept (default: 256 as released; the nano model card's 32 for it)")
    g.add_argument("--precision", default=None,
                   help="DiT dtype (default: bf16 on CUDA and on CPUs with native bf16, else fp32)")
    g.add_argument("--vae-precision", default=None, help="VAE dtype (default: fp16 on CUDA, the DiT's on CPU)")
    g.add_argument("--text-encoder-precision", default=None,
                   help="text encoders' dtype (default: fp16 on CUDA, the DiT's on CPU)")
    g.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    g.add_argument("--attn-backend", default="auto", choices=ATTN_BACKENDS)
    # speed and memory (hyvideo.accel: step cache, FP8, offload)
    g.add_argument("--cache-threshold", type=float, default=0.0,
                   help="first-block step cache threshold (0 = off; 0.15 = hyvideo.accel.step_cache default, ~2.7x "
                        "fewer DiT evaluations on a trained model)")
    g.add_argument("--use-fp8", action="store_true",
                   help="FP8 e4m3 block weights (the released *_fp8.pt + *_fp8_map.pt if present, else quantised)")
    g.add_argument("--use-cpu-offload", action="store_true",
                   help="released meaning: DiT blocks streamed from CPU memory, text encoders and VAE moved to "
                        "the GPU only while they run (24 GB cards with --use-fp8)")
    g.add_argument("--model-cpu-offload", action="store_true",
                   help="each whole model moved to the GPU only while it runs (the DiT must fit at once)")
    g.add_argument("--sequential-offload", action="store_true",
                   help="stream only the DiT's blocks from CPU memory; the other models stay on the device")
    # LoRA (hyvideo.lora: diffusers / peft / musubi-tuner / ComfyUI files), applied at load time
    g.add_argument("--lora-path", action="append", default=[], help="LoRA file or folder (repeatable)")
    g.add_argument("--lora-scale", action="append", type=float, default=[],
                   help="scale per --lora-path (one value applies to all; default 1.0)")
    g.add_argument("--lora-fuse", action="store_true", help="merge the LoRAs into the weights (faster sampling)")
    return p


def resolve_model_base(args, log=print) -> dict | None:
    """Fill ``args.model_base`` when it was not given: ``./ckpts`` if that folder exists, else the hyvideo-nano tree
    shipped in the package (said in one ``log`` line). Returns the tree's nano model card (``nano.json``: its
    vocabulary, trained sizes and recommended settings; :mod:`hyvideo.nano`), or None for any other tree.

    Raises:
        ValueError: no ``--model-base``, no ``./ckpts`` and no nano tree in the package; a malformed ``nano.json``.
    """
    from hyvideo import nano  # noqa: PLC0415

    if args.model_base is None:
        base, is_nano = nano.default_model_base()
        if is_nano and not (base / nano.CARD_FILE).is_file():
            raise ValueError(f"no ./{DEFAULT_MODEL_BASE} folder and no hyvideo-nano tree in this installation ({base}); "
                             "pass --model-base (the released ckpts/ tree or a diffusers folder) or build the nano "
                             "model: python scripts/train_nano.py --out runs/nano --ship")
        args.model_base = str(base)
        if is_nano:
            log(f"no ./{DEFAULT_MODEL_BASE} folder: using the hyvideo-nano model shipped in the package ({base})")
    return nano.read_card(args.model_base) if Path(args.model_base).is_dir() else None


def lora_scales(args) -> list[float]:
    """One scale per ``--lora-path`` (a single ``--lora-scale`` applies to all).

    Raises:
        ValueError: a missing LoRA file, a count mismatch, a non-finite scale.
    """
    import math  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    for path in args.lora_path:
        if not Path(path).exists():
            raise ValueError(f"--lora-path {path} does not exist")
    scales = args.lora_scale or [1.0]
    if len(scales) == 1:
        scales = scales * len(args.lora_path)
    if len(scales) != len(args.lora_path):
        raise ValueError(f"got {len(args.lora_scale)} --lora-scale values for {len(args.lora_path)} --lora-path; "
                         "pass one per LoRA or a single one for all")
    bad = [s for s in scales if not math.isfinite(s)]
    if bad:
        raise ValueError(f"--lora-scale must be finite, got {bad[0]}")
    return scales


def apply_loras(args, dit, log=print) -> None:
    """Load every ``--lora-path`` into the DiT with its scale; merge them with ``--lora-fuse``.

    Raises:
        ValueError: a LoRA of another model size or of an unknown key style (``hyvideo.lora.LoraFormatError``).
    """
    if not args.lora_path:
        return
    from hyvideo.lora import fuse_lora, load_lora_weights  # noqa: PLC0415

    for path, scale in zip(args.lora_path, lora_scales(args)):
        log(f"LoRA {load_lora_weights(dit, path, scale=scale)}: {path} (scale {scale})")
    if args.lora_fuse:
        log(f"LoRA fused into {fuse_lora(dit)} linears")


def offload_mode(args) -> str:
    """``hyvideo.checkpoint.loader.OFFLOAD_MODES`` key of the offload flags.

    Raises:
        ValueError: more than one offload flag.
    """
    flags = [f for f in OFFLOAD_FLAGS if getattr(args, f)]
    if len(flags) > 1:
        raise ValueError(f"choose one offload flag, got {', '.join('--' + f.replace('_', '-') for f in flags)}")
    return OFFLOAD_FLAGS[flags[0]] if flags else "none"


def check_model_args(args) -> None:
    """Validate the model flags (cheap, before any model loads).

    Raises:
        ValueError: an unknown precision, a negative / NaN cache threshold, --text-len < 1, several offload flags,
            bad LoRA flags.
    """
    for flag in ("precision", "vae_precision", "text_encoder_precision"):
        value = getattr(args, flag)
        if value is not None and value not in PRECISIONS:
            raise ValueError(f"unknown --{flag.replace('_', '-')} {value!r}; allowed: {list(PRECISIONS)}")
    if not args.cache_threshold >= 0:
        raise ValueError(f"--cache-threshold must be >= 0, got {args.cache_threshold}")
    if args.text_len is not None and args.text_len < 1:
        raise ValueError(f"--text-len must be >= 1, got {args.text_len}")
    offload_mode(args)
    lora_scales(args)


def default_device(args) -> str:
    """``--device``, else ``cuda`` when available, else ``cpu``."""
    import torch  # noqa: PLC0415

    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precisions(args, device: str) -> str:
    """Fill the precision flags left at their default; returns a one-line reason for the log."""
    if device.startswith("cuda"):
        args.precision = args.precision or "bf16"
        args.vae_precision = args.vae_precision or "fp16"
        args.text_encoder_precision = args.text_encoder_precision or "fp16"
        return "CUDA"
    from hyvideo.accel.capability import cpu_info  # noqa: PLC0415

    info = cpu_info()
    reason = info.describe()
    if args.precision is None:
        args.precision = "bf16" if info.native_bf16 else "fp32"
        reason += f": default precision {args.precision}" + ("" if info.native_bf16 else
                                                              " (bf16 is emulated here, ~4x slower than fp32)")
    args.vae_precision = args.vae_precision or args.precision
    args.text_encoder_precision = args.text_encoder_precision or args.precision
    return reason


def dtypes(args) -> dict:
    """``{"dit", "vae", "text"}`` torch dtypes of the (resolved) precision flags."""
    import torch  # noqa: PLC0415

    dt = {k: getattr(torch, v) for k, v in PRECISIONS.items()}
    return {"dit": dt[args.precision], "vae": dt[args.vae_precision], "text": dt[args.text_encoder_precision]}


def load_models(args, device: str, sp_group=None, log=print):
    """Load the tree named by the flags, apply ``--lora-path``, then the accelerated paths: ``(pipeline, plan)``.

    Args:
        args: parsed flags of :func:`add_model_args` (precisions resolved by :func:`resolve_precisions`).
        device: compute device.
        sp_group: Ulysses process group (``sample_video.py`` under torchrun), or None.
        log: one-line progress messages.

    Raises:
        FileNotFoundError, hyvideo.checkpoint.io.WeightLoadError, ValueError: missing / unreadable / mismatched
            weights (see :func:`hyvideo.checkpoint.loader.load_pipeline`).
    """
    from hyvideo import accel  # noqa: PLC0415
    from hyvideo.checkpoint.loader import load_pipeline  # noqa: PLC0415

    dt = dtypes(args)
    mode = offload_mode(args)
    pipe = load_pipeline(args.model_base, dit_weight=args.dit_weight, model=args.model, load_key=args.load_key,
                         dit_dtype=dt["dit"], vae_dtype=dt["vae"], text_dtype=dt["text"], device=device,
                         fp8=args.use_fp8, offload=mode, log=log, i2v=getattr(args, "i2v_mode", False),
                         text_len=args.text_len)
    apply_loras(args, pipe.dit, log)
    plan = accel.apply(pipe.dit, pipe.vae, accel.AccelOptions(
        device=device, attn_backend=args.attn_backend, cache_threshold=args.cache_threshold,
        sequential_offload=mode in ("cpu", "blocks"), sp_group=sp_group))
    pipe.step_cache = plan.step_cache
    return pipe, plan
