"""Benchmark our DiT forward against diffusers' ``HunyuanVideoTransformer3DModel`` with the same weights.

Builds both models in one process from one random state dict (converted with
``hyvideo.checkpoint.convert``), checks the outputs agree, then times each (warm-up, repeats, median; CUDA
events on GPU) and prints time, ratio, peak memory (RSS high-water delta on CPU, ``max_memory_allocated``
on GPU) and achieved FLOP/s against the measured matmul peak of the machine.

    python scripts/bench/bench_dit.py                      # the acceptance size, bf16, CPU
    python scripts/bench/bench_dit.py --dtype fp32 --repeats 3
    python scripts/bench/bench_dit.py --device cuda --latent 1 16 33 68 120 --hidden 3072 --heads 24 \
        --double 20 --single 40 --rope 16 56 56 --compile

The helpers (``measure``, ``matmul_peak``, ``print_table``) are reused by bench_vae.py and bench_sample.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


# ----------------------------------------------------------------------------------------------------------
# measurement helpers
# ----------------------------------------------------------------------------------------------------------
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(device: torch.device) -> int:
    """Reset the peak-memory counter; returns the current usage in bytes."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    return _rss_kib("VmRSS") * 1024


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _rss_kib("VmHWM") * 1024


def measure(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 1,
            repeats: int = 3, count_flops_of: str | None = None) -> dict[str, dict]:
    """Median wall time (s), peak memory above the pre-call level (bytes) and the last result of each fn.

    The functions run interleaved (a, b, a, b, ...) so that load from other processes on a shared machine
    hits all of them alike. CPU: ``time.perf_counter`` and the RSS high-water mark (reset through
    ``/proc/self/clear_refs`` before each call). CUDA: events and ``max_memory_allocated``.
    ``count_flops_of``: count that function's FLOPs during its first warm-up call (``res[name]["flops"]``).
    """
    res = {name: {"times": [], "peak": 0} for name in fns}
    with torch.inference_mode():
        for i in range(warmup):
            for name, fn in fns.items():
                if i == 0 and name == count_flops_of:
                    with FlopCounterMode(display=False) as counter:
                        fn()
                    res[name]["flops"] = counter.get_total_flops()
                else:
                    fn()
        for _ in range(repeats):
            for name, fn in fns.items():
                res[name].pop("out", None)
                base = _reset_peak(device)
                if device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    out = fn()
                    end.record()
                    torch.cuda.synchronize(device)
                    dt = start.elapsed_time(end) / 1e3
                else:
                    t0 = time.perf_counter()
                    out = fn()
                    dt = time.perf_counter() - t0
                res[name]["times"].append(dt)
                res[name]["peak"] = max(res[name]["peak"], _peak(device) - base)
                res[name]["out"] = out
                del out
    for r in res.values():
        r["time"] = statistics.median(r["times"])
    return res


# glibc with its dynamic mmap threshold off, so that freed activations leave the RSS. Without it glibc raises the
# threshold after the first large free and keeps later activations in the heap, and the RSS high-water mark would
# hide most of a model's peak. It also makes every allocation above 128 KiB an ``mmap`` with fresh page faults,
# which slows code that allocates many mid-size tensors, so timing runs with glibc's defaults and only the
# memory child (peaks_in_child) uses this.
_FIXED_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
_MEMORY_CHILD = "HYVIDEO_BENCH_MEMORY_CHILD"


def is_memory_child() -> bool:
    """True in the child started by :func:`peaks_in_child` (it measures peak memory only)."""
    return os.environ.get(_MEMORY_CHILD) == "1"


def report_peaks(res: dict[str, dict]) -> None:
    """In the memory child: print the peaks of ``measure``'s result as the last stdout line (JSON)."""
    print(json.dumps({"peaks": {name: r["peak"] for name, r in res.items()}}), flush=True)


def peaks_in_child() -> dict[str, int]:
    """Peak RSS per implementation, measured by this script re-run in a child with ``_FIXED_MALLOC_ENV``.

    Timing runs in the parent with glibc's default allocator (what users run); the RSS high-water mark is
    only meaningful when freed memory leaves the RSS, so the child re-runs the same arguments with the fixed
    mmap threshold and reports the peaks (one warm-up and one measured call each).
    """
    env = {**os.environ, **_FIXED_MALLOC_ENV, _MEMORY_CHILD: "1"}
    out = subprocess.run([sys.executable, *sys.argv], env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peaks"]


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (matmuls, convolutions, SDPA) by ``torch.utils.flop_counter``."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured FLOP/s of an ``n x n`` matmul in ``dtype`` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    r = measure({"mm": lambda: a @ b}, device, warmup=2, repeats=repeats)["mm"]
    return 2 * n**3 / r["time"]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max|out - ref| / max|ref|`` in float32."""
    out, ref = out.float(), ref.float()
    return ((out - ref).abs().max() / ref.abs().max()).item()


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")), "cpu")
    return f"{name}, {torch.get_num_threads()} threads"


def print_table(rows: list[dict], peak_flops: float, ref_name: str = "diffusers") -> None:
    """rows: dicts with name, time, peak, flops (and optional err). Ratio is time / time of ``ref_name``."""
    ref = next((r for r in rows if r["name"] == ref_name), rows[0])
    print(f"{'impl':<28}{'time s':>10}{'ratio':>8}{'peak MiB':>11}{'mem ratio':>10}{'GFLOP/s':>10}"
          f"{'% peak':>8}{'rel err':>10}")
    for r in rows:
        gflops = r["flops"] / r["time"] / 1e9 if r.get("flops") else float("nan")
        err = f"{r['err']:.2e}" if r.get("err") is not None else "-"
        print(f"{r['name']:<28}{r['time']:>10.3f}{r['time'] / ref['time']:>8.2f}{r['peak'] / 2**20:>11.1f}"
              f"{r['peak'] / max(ref['peak'], 1):>10.2f}{gflops:>10.1f}{100 * gflops * 1e9 / peak_flops:>8.1f}"
              f"{err:>10}")


# ----------------------------------------------------------------------------------------------------------
# the DiT benchmark
# ----------------------------------------------------------------------------------------------------------
def build_pair(args, dtype: torch.dtype, device: torch.device):
    """(ours, diffusers) with identical random weights, plus ours in float32 as the accuracy reference."""
    import diffusers  # noqa: PLC0415

    from hyvideo.checkpoint.convert import diffusers_to_official_dit  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    torch.manual_seed(0)
    ref = diffusers.HunyuanVideoTransformer3DModel(
        in_channels=16, out_channels=16, num_attention_heads=args.heads, attention_head_dim=args.hidden // args.heads,
        num_layers=args.double, num_single_layers=args.single, num_refiner_layers=2, patch_size=2, patch_size_t=1,
        text_embed_dim=args.text_dim, pooled_projection_dim=768, rope_axes_dim=tuple(args.rope),
        guidance_embeds=True, rope_theta=256.0).eval()
    with torch.no_grad():
        for p in ref.parameters():  # the released init zeroes gates; random weights exercise every path
            p.normal_(0, 0.02)
    ours = HYVideoDiffusionTransformer(
        hidden_size=args.hidden, heads_num=args.heads, mm_double_blocks_depth=args.double,
        mm_single_blocks_depth=args.single, rope_dim_list=list(args.rope), text_states_dim=args.text_dim,
        attn_backend=args.attn_backend).eval()
    ours.load_state_dict(diffusers_to_official_dit(ref.state_dict()), strict=True)
    ours32 = None
    if dtype != torch.float32:
        import copy  # noqa: PLC0415

        ours32 = copy.deepcopy(ours).to(device)
    return ours.to(device, dtype), ref.to(device, dtype), ours32


def make_inputs(args, device):
    g = torch.Generator().manual_seed(1)
    b, n_txt = args.latent[0], args.text_tokens
    mask = torch.zeros(b, n_txt, dtype=torch.long)
    mask[:, : args.valid_tokens] = 1
    return dict(x=torch.randn(*args.latent, generator=g), t=torch.full((b,), 700.0),
                text_states=torch.randn(b, n_txt, args.text_dim, generator=g), text_mask=mask,
                text_states_2=torch.randn(b, 768, generator=g), guidance=torch.full((b,), 6016.0))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--latent", type=int, nargs=5, default=[1, 16, 5, 32, 32], metavar=("B", "C", "T", "H", "W"))
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--double", type=int, default=2)
    ap.add_argument("--single", type=int, default=4)
    ap.add_argument("--rope", type=int, nargs=3, default=[16, 24, 24])
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--text-tokens", type=int, default=64)
    ap.add_argument("--valid-tokens", type=int, default=40)
    ap.add_argument("--attn-backend", default="auto")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="torch.compile each of our blocks (GPU)")
    ap.add_argument("--no-accel", action="store_true", help="time the plain model (no hyvideo.accel.apply)")
    ap.add_argument("--skip-diffusers", action="store_true", help="time ours only (large GPU sizes)")
    args = ap.parse_args(argv)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    ours, ref, ours32 = build_pair(args, dtype, device)
    if args.compile:
        from hyvideo.parallel.fsdp import apply_compile  # noqa: PLC0415

        apply_compile(ours)
    plan = None
    if not args.no_accel:  # as sample_video.py does
        from hyvideo import accel  # noqa: PLC0415

        plan = accel.apply(ours, options=accel.AccelOptions(device=device, attn_backend=args.attn_backend))
    inp = {k: v.to(device) for k, v in make_inputs(args, device).items()}
    cast = {k: (v.to(dtype) if v.is_floating_point() and k not in ("t",) else v) for k, v in inp.items()}

    def run_ours():
        return ours(**cast)

    def run_ref():
        return ref(cast["x"], cast["t"], cast["text_states"], cast["text_mask"], cast["text_states_2"],
                   guidance=cast["guidance"], return_dict=False)[0]

    fns = {"hyvideo": run_ours} if args.skip_diffusers else {"hyvideo": run_ours, "diffusers": run_ref}
    if is_memory_child():
        report_peaks(measure(fns, device, 1, 1))
        return []
    with torch.inference_mode():
        gold = ours32(**inp).float() if ours32 is not None else None
    peak = matmul_peak(device, dtype)
    flops = count_flops(run_ours if args.skip_diffusers else run_ref)  # oneDNN fused linears are not counted
    res = measure(fns, device, args.warmup, args.repeats)
    if device.type == "cpu" and argv is None:  # RSS peaks need the fixed allocator; times are taken without it
        for name, p in peaks_in_child().items():
            res[name]["peak"] = p
    rows = [{"name": k, **r, "flops": flops, "err": rel_err(r["out"], gold) if gold is not None else None}
            for k, r in res.items()]
    if "diffusers" in res:
        print(f"ours vs diffusers (same dtype): rel err {rel_err(res['hyvideo']['out'], res['diffusers']['out']):.2e}")
    print(f"device: {machine(device)}; dtype {args.dtype}; latent {args.latent}; hidden {args.hidden} "
          f"({args.heads} heads), {args.double} double + {args.single} single blocks; text {args.text_tokens} "
          f"tokens ({args.valid_tokens} valid); {flops / 1e9:.1f} GFLOP per forward; measured {args.dtype} "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s; median of {args.repeats}")
    if plan is not None:
        from hyvideo.accel.cpu.linear import packed_bytes  # noqa: PLC0415

        print(f"hyvideo accel: {plan}; +{packed_bytes(ours) / 2**20:.1f} MiB of packed weight copies "
              f"(not in the peak column)")
    print("rel err = max|out - ours_fp32| / max|ours_fp32|; times with glibc's default malloc, peak RSS from a "
          "child run with the mmap threshold fixed at 128 KiB")
    print_table(rows, peak)
    return rows


if __name__ == "__main__":
    main()
