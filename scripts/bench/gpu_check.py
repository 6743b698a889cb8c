"""One prepared GPU check (~10 minutes on one GPU): every GPU path the CPU suite cannot run, one table at the end.

    bash scripts/gpu_check.sh              # run everything (needs CUDA)
    bash scripts/gpu_check.sh --dry-run    # print what would run (works anywhere)
    python scripts/bench/gpu_check.py --only attention,dit13b

Sections (each in its own process with a time limit, so one failure does not stop the rest):
gpu-tests (pytest -m gpu), sample flags (every sample_video.py speed / memory flag on tiny weights), attention
(backends vs a float32 reference, timings), dit13b (random 13B DiT forward at 544x960x129, bf16: time, peak
memory, finite), fp8 (the same with FP8 block weights), vae720 (tiled fp16 VAE decode 720p x 129), bench-dit /
bench-vae (vs diffusers, same weights), compile (per-block torch.compile), train (1-GPU FSDP2 + compile + bf16
run, then resume). Results go to ``docs/benchmarks.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = "{tmp}/tiny"
SAMPLE = [PY, "sample_video.py", "--model-base", TINY, "--prompt", "a red circle moves to the right",
          "--video-size", "64", "64", "--video-length", "9", "--infer-steps", "4", "--seed", "1",
          "--save-path", "{tmp}/out", "--device", "cuda"]
# Every speed / memory flag of sample_video.py (tests/accel/test_gpu.py keeps this list complete). Not here:
# --attn-backend gemm (the CPU bf16 backend), --lora-fuse (needs a LoRA file; tests/lora cover it), --ulysses-degree
# (needs 2+ GPUs: torchrun --nproc_per_node 2 sample_video.py --ulysses-degree 2 ...).
SAMPLE_FLAGS = {
    "bf16": [], "fp16": ["--precision", "fp16"], "fp32": ["--precision", "fp32", "--vae-precision", "fp32"],
    "text-bf16": ["--text-encoder-precision", "bf16"],
    "flash": ["--attn-backend", "flash"], "sdpa": ["--attn-backend", "sdpa"], "naive": ["--attn-backend", "naive"],
    "fp8": ["--use-fp8"], "cpu-offload": ["--use-cpu-offload"], "model-offload": ["--model-cpu-offload"],
    "block-offload": ["--sequential-offload"], "fp8+cpu-offload": ["--use-fp8", "--use-cpu-offload"],
    "fp8+block-offload": ["--use-fp8", "--sequential-offload"],
    "step-cache": ["--cache-threshold", "0.15"], "cfg": ["--cfg-scale", "5.0"], "no-tiling": ["--no-vae-tiling"],
    "batch-2": ["--batch-size", "2", "--num-videos", "2"],
}
# A section passes only if the output of its command number i holds the text (the resumed training run).
EXPECT = {"train": (2, "at step 4")}

_PROBE = r'''
import json, sys, time, torch
sys.path.insert(0, "{root}")
from hyvideo import accel
from hyvideo.models.dit import HYVideoDiffusionTransformer
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
dev = torch.device("cuda")

def peak(fn):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t = time.perf_counter()
    out = fn(); torch.cuda.synchronize()
    return out, time.perf_counter() - t, torch.cuda.max_memory_allocated() / 2**30

def dit13b(fp8):
    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config("{root}/hyvideo/configs/dit_13b.json").to(torch.bfloat16)
    dit = dit.to_empty(device=dev)  # bf16 straight away (no 52 GB fp32 copy first)
    with torch.no_grad():
        for p in dit.parameters(): p.normal_(0, 0.02)
    if fp8:
        from hyvideo.accel.fp8 import convert_to_fp8; convert_to_fp8(dit)
    plan = accel.apply(dit, options=accel.AccelOptions(device=dev))
    x = torch.randn(1, 16, 33, 68, 120, device=dev, dtype=torch.bfloat16)
    args = (torch.tensor([900.0], device=dev), torch.randn(1, 256, 4096, device=dev, dtype=torch.bfloat16),
            torch.ones(1, 256, dtype=torch.long, device=dev), torch.randn(1, 768, device=dev, dtype=torch.bfloat16),
            torch.tensor([6016.0], device=dev, dtype=torch.bfloat16))
    with torch.inference_mode():
        out, s, gib = peak(lambda: dit(x, *args))
    return dict(seconds=round(s, 2), peak_gib=round(gib, 2), finite=bool(torch.isfinite(out).all()), plan=str(plan))

def vae720():
    vae = AutoencoderKLCausal3D.from_config("{root}/hyvideo/configs/vae_884_16c_hy.json").to(dev, torch.float16)
    accel.apply(vae=vae, options=accel.AccelOptions(device=dev)); vae.enable_tiling()
    z = torch.randn(1, 16, 33, 90, 160, device=dev, dtype=torch.float16)
    with torch.inference_mode():
        out, s, gib = peak(lambda: vae.decode(z).sample)
    return dict(seconds=round(s, 2), peak_gib=round(gib, 2), finite=bool(torch.isfinite(out).all()),
                shape=list(out.shape))

def attention():
    from hyvideo.ops.attention import attention, backends, flash_usable
    torch.manual_seed(0); res = {{}}
    q, k, v = (torch.randn(2, 4096, 24, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(2, 4096, dtype=torch.bool, device=dev); mask[0, 3900:] = False
    ref = attention(q.float(), k.float(), v.float(), key_mask=mask, backend="naive")
    for b in [b for b in backends() if b not in ("gemm",)]:
        if b == "flash" and not flash_usable(q): res[b] = "flash-attn not importable"; continue
        fn = lambda: attention(q, k, v, key_mask=mask, backend=b)
        fn(); out, s, gib = peak(fn)
        err = ((out.float() - ref)[1].abs().max() / ref[1].abs().max()).item()
        res[b] = dict(ms=round(s * 1e3, 2), rel_err=float(f"{{err:.2e}}"), peak_gib=round(gib, 2))
    return res

print(json.dumps({{"dit13b": lambda: dit13b(False), "fp8": lambda: dit13b(True), "vae720": vae720,
                   "attention": attention}}[sys.argv[1]]()))
'''


def sections(tmp: str) -> dict[str, list[list[str]]]:
    """Section name -> the commands it runs (``{tmp}`` replaced)."""
    probe = str(Path(tmp) / "probe.py")
    train = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "train_dit.py",
             "--config", "configs/train/tiny.yaml", "--set", f"data.manifest={tmp}/clips.jsonl",
             "--set", f"run.out_dir={tmp}/train", "--set", "parallel.precision=bf16", "--set", "parallel.compile=true",
             "--set", "run.max_steps=4", "--set", "run.ckpt_every=2"]
    out = {
        "gpu-tests": [[PY, "-m", "pytest", "-q", "-m", "gpu", "tests"]],
        "sample-flags": [[c.replace("{tmp}/out", f"{tmp}/out/{name}").replace("{tmp}", tmp) for c in SAMPLE + flags]
                         for name, flags in SAMPLE_FLAGS.items()],  # one output folder per flag set
        "attention": [[PY, probe, "attention"]],
        "dit13b": [[PY, probe, "dit13b"]],
        "fp8": [[PY, probe, "fp8"]],
        "vae720": [[PY, probe, "vae720"]],
        "bench-dit": [[PY, "scripts/bench/bench_dit.py", "--device", "cuda", "--repeats", "10"],
                      [PY, "scripts/bench/bench_dit.py", "--device", "cuda", "--latent", "1", "16", "9", "68", "120",
                       "--hidden", "3072", "--heads", "24", "--double", "4", "--single", "8", "--rope", "16", "56",
                       "56", "--repeats", "5"]],
        "bench-vae": [[PY, "scripts/bench/bench_vae.py", "--device", "cuda", "--repeats", "3"]],
        "compile": [[PY, "scripts/bench/bench_dit.py", "--device", "cuda", "--compile", "--repeats", "10"]],
        "train": [[PY, "scripts/make_clip_manifest.py", "--out", f"{tmp}/clips.jsonl"], train,
                  [c.replace("run.max_steps=4", "run.max_steps=6") for c in train]],
    }
    return out


def run(name: str, commands: list[list[str]], timeout: int) -> dict:
    t0, notes, status = time.perf_counter(), [], "ok"
    for i, cmd in enumerate(commands):
        try:
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
            notes.append(f"{' '.join(cmd[:4])}...: timed out after {timeout} s")
            continue
        tail = (r.stdout.strip().splitlines() or [""])[-1]
        want = EXPECT.get(name, (None, ""))
        if r.returncode != 0:
            status = "FAIL"
            notes.append(f"{' '.join(cmd[1:4])}: exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}")
        elif want[0] == i and want[1] not in r.stdout + r.stderr:
            status = "FAIL"
            notes.append(f"{' '.join(cmd[1:4])}: output lacks {want[1]!r}")
        elif tail.startswith("{"):
            notes.append(tail)
        elif name in ("bench-dit", "bench-vae", "compile"):
            notes.append(" | ".join(r.stdout.strip().splitlines()[-3:]))
    return {"section": name, "status": status, "seconds": round(time.perf_counter() - t0, 1), "notes": notes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--only", default="", help="comma-separated section names")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per command")
    args = ap.parse_args(argv)
    tmp = "<tmp>" if args.dry_run else tempfile.mkdtemp(prefix="gpu_check_")
    todo = sections(tmp)
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(todo))
        if unknown:
            print(f"error: unknown section(s) {unknown}; allowed: {list(todo)}", file=sys.stderr)
            return 2
        todo = {k: v for k, v in todo.items() if k in args.only.split(",")}
    if args.dry_run:
        for name, commands in todo.items():
            for cmd in commands:
                print(f"[{name}] {shlex.join(cmd)}")  # quoted: each line can be pasted into a shell
        return 0
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device (use --dry-run to see the plan)", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    subprocess.run([PY, "scripts/make_tiny_checkpoints.py", "--out", f"{tmp}/tiny"], cwd=ROOT, check=True)
    Path(tmp, "probe.py").write_text(_PROBE.format(root=ROOT))
    results = [run(name, commands, args.timeout) for name, commands in todo.items()]
    print(f"\n{'section':<14}{'status':<9}{'seconds':>9}  notes")
    for r in results:
        print(f"{r['section']:<14}{r['status']:<9}{r['seconds']:>9}  {r['notes'][0] if r['notes'] else ''}")
        for note in r["notes"][1:]:
            print(f"{'':<32}  {note}")
    Path(tmp, "gpu_check.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {tmp}/gpu_check.json")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
