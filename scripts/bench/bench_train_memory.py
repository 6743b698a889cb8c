"""Measure per-rank host memory (RSS) of DiT training start-up, checkpoint writes and weight loading, at world
size 1 and 2 (torchrun, CPU, gloo), for the meta-device start-up and the single-file path it replaces.

    python scripts/bench/bench_train_memory.py                        # mid-size DiT (~170M params, 0.66 GB fp32)
    python scripts/bench/bench_train_memory.py --hidden 384 --double 3 --single 6 --out runs/bench_mem_small

Each rank samples its own ``/proc/self/status`` every millisecond in a thread and reports, per phase, the peak
anonymous RSS (process memory; file-backed pages of memory-mapped weight files are page cache and reported
apart as RssFile) above the phase's start, and the resident anonymous memory after the phase; plus the kernel's
whole-process peak RSS ``VmHWM`` (reset at each phase's start through ``/proc/self/clear_refs``), which no sampling
can miss:

- ``build``: DiT on meta -> FSDP2 -> ``to_empty`` -> seeded init (``eager``: the earlier start-up, the full
  fp32 DiT built and initialised on every rank, then sharded; a separate process);
- ``step1``: AdamW + EMA + one training step (the parameter + optimizer + EMA state is resident after it);
- ``dcp_save``: a sharded checkpoint (``hyvideo.training.checkpointing.Checkpointer``: every rank writes its
  shards); ``full_save``: the earlier single-file checkpoint (gathered on rank 0, one ``torch.save``);
- ``load``: a released-layout ``{"module": sd}`` fp32 file into the sharded model (rank 0 maps it, broadcast).

A tiny DiT runs one step first (warm-up), so lazily loaded code and caches are in the baseline.

Prints a table and writes ``<out>/memory.json``. CPU only; GPU memory and step time are not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1 << 20


class PeakRSS:
    """Context manager sampling this process's RssAnon / RssFile (bytes) every ``interval`` s in a thread."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak_anon, self.peak_file = interval, 0, 0
        self._stop = threading.Event()

    @staticmethod
    def read() -> tuple[int, int]:
        fields = dict(re.findall(r"(RssAnon|RssFile):\s+(\d+) kB", Path("/proc/self/status").read_text()))
        return int(fields["RssAnon"]) * 1024, int(fields["RssFile"]) * 1024

    def _run(self):
        while not self._stop.is_set():
            anon, file = self.read()
            self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)
            time.sleep(self.interval)

    @staticmethod
    def reset_hwm() -> bool:
        """Reset the kernel's peak-RSS mark ``VmHWM`` (``/proc/self/clear_refs`` = 5, Linux >= 4.0)."""
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    @staticmethod
    def hwm() -> int:
        """The kernel's peak RSS (anonymous + file-backed, bytes) since the last :meth:`reset_hwm`."""
        return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

    def __enter__(self):
        self.hwm_ok = self.reset_hwm()
        self.start_anon, self.start_file = self.read()
        self.peak_anon, self.peak_file = self.start_anon, self.start_file
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        anon, file = self.read()
        self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)
        self.peak_rss = self.hwm() if self.hwm_ok else None  # exact, unlike the sampled peaks
        _malloc_trim()  # resident = live memory, not heap that glibc keeps after frees
        self.end_anon = self.read()[0]

    def report(self, baseline: int) -> dict:
        """MiB: peak above the phase start, peak file-backed RSS, anon resident after (above ``baseline``)."""
        return {"peak_anon_increase_mib": (self.peak_anon - self.start_anon) / MiB,
                "peak_anon_above_baseline_mib": (self.peak_anon - baseline) / MiB,
                "resident_after_mib": (self.end_anon - baseline) / MiB,
                "peak_file_mib": self.peak_file / MiB,
                "peak_rss_kernel_mib": None if self.peak_rss is None else self.peak_rss / MiB}


def _malloc_trim() -> None:
    """Return freed heap memory to the OS (glibc); a no-op elsewhere."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def dit_config(hidden: int, double: int, single: int) -> dict:
    """A DiT config with 64-dim heads (released RoPE split 16/24/24) and the released block structure."""
    return {"hidden_size": hidden, "heads_num": hidden // 64, "rope_dim_list": [16, 24, 24],
            "mm_double_blocks_depth": double, "mm_single_blocks_depth": single, "text_states_dim": 256,
            "text_states_dim_2": 256, "text_refiner_depth": 1, "guidance_embed": True}


# --------------------------------------------------------------------------------------------- worker
def _train_step(model, optimizer, ema, cfg: dict) -> None:
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 1, 8, 8, generator=g)
    out = model(x, torch.tensor([500.0]), torch.randn(1, 8, cfg["text_states_dim"], generator=g),
                torch.ones(1, 8, dtype=torch.long), torch.randn(1, cfg["text_states_dim_2"], generator=g),
                torch.tensor([6000.0]))
    out.float().pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema.update(model)


def worker(args) -> None:
    """One rank (launched by torchrun): run the phases, write ``result_<rank>.json``."""
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415

    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415
    from hyvideo.parallel.fsdp import parallelize  # noqa: PLC0415
    from hyvideo.parallel.mesh import init_distributed  # noqa: PLC0415
    from hyvideo.training.checkpointing import Checkpointer  # noqa: PLC0415
    from hyvideo.training.config import OptimConfig  # noqa: PLC0415
    from hyvideo.training.meta_init import build_on_meta, init_sharded, load_full_weights, materialize  # noqa
    from hyvideo.training.optim import build_optimizer, build_scheduler  # noqa: PLC0415
    from hyvideo.training.state import EMA, model_state, read_weights, save_training_state  # noqa: PLC0415

    torch.set_num_threads(1)
    cfg = json.loads(Path(args.config_json).read_text())
    env = init_distributed(1, "gloo")
    out, result = Path(args.out), {"rank": env.rank, "world": env.world}

    def factory(config=cfg):
        return HYVideoDiffusionTransformer.from_config(config)

    # warm-up: one step of a tiny DiT through the same code, so that lazy imports, kernels and caches are
    # loaded before the baseline (they are a fixed cost, not the model's)
    tiny = {**cfg, "hidden_size": 64, "heads_num": 1, "mm_double_blocks_depth": 1, "mm_single_blocks_depth": 1}
    warm = parallelize(build_on_meta(lambda: factory(tiny)), env.mesh, engine="fsdp")
    materialize(warm, env.device)
    init_sharded(warm, lambda: factory(tiny), 0)
    opt = build_optimizer(warm.parameters(), OptimConfig(lr=1e-4))
    _train_step(warm, opt, EMA(warm, 0.99), tiny)
    del warm, opt
    _malloc_trim()
    baseline, _ = PeakRSS.read()
    result["baseline_mib"] = baseline / MiB

    if args.eager:  # the earlier start-up: the full fp32 model on every rank, then sharded
        with PeakRSS() as m:
            torch.manual_seed(0)
            dit = factory()
            dit.init_weights()
            model = parallelize(dit, env.mesh, engine="fsdp")
            del dit
        result["build"] = m.report(baseline)
    else:
        with PeakRSS() as m:
            model = parallelize(build_on_meta(factory), env.mesh, engine="fsdp")
            materialize(model, env.device)
            init_sharded(model, factory, 0)
        result["build"] = m.report(baseline)
        if args.dump_init:  # the initialised model, gathered (checks that the init ignores the world size)
            sd = model_state(model)
            if env.is_main:
                torch.save(sd, args.dump_init)
            del sd
        if {"step1", "dcp_save", "full_save"} & set(args.phases.split(",")):
            with PeakRSS() as m:
                optimizer = build_optimizer(model.parameters(), OptimConfig(lr=1e-4))
                scheduler = build_scheduler(optimizer, OptimConfig(lr=1e-4))
                ema = EMA(model, 0.99)
                _train_step(model, optimizer, ema, cfg)
            result["step1"] = m.report(baseline)
            common = dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=ema, config={},
                          model_config=cfg)
        if "dcp_save" in args.phases:
            with PeakRSS() as m:
                Checkpointer(out / f"ckpt_w{env.world}", is_main=env.is_main).save(1, **common)
            result["dcp_save"] = m.report(baseline)
        if "full_save" in args.phases:
            with PeakRSS() as m:
                save_training_state(out / f"full_w{env.world}", 1, is_main=env.is_main, **common)
            result["full_save"] = m.report(baseline)
        if "load" in args.phases and args.released:
            with PeakRSS() as m:
                load_full_weights(model, lambda: read_weights(args.released), args.released)
            result["load"] = m.report(baseline)
            local = {k: v.to_local() for k, v in model.state_dict().items()}
            ref = read_weights(args.released)  # memory-mapped
            from torch.distributed.tensor import DTensor  # noqa: PLC0415
            from torch.distributed.tensor._utils import compute_local_shape_and_global_offset  # noqa: PLC0415

            ok = True
            for k, p in model.state_dict().items():
                shape, off = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
                want = ref[k][tuple(slice(o, o + s) for s, o in zip(shape, off))]
                ok &= isinstance(p, DTensor) and torch.equal(local[k], want.to(local[k].dtype))
            result["load_equal"] = bool(ok)
    (out / f"result_{'eager_' if args.eager else ''}{env.world}_{env.rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


# --------------------------------------------------------------------------------------------- driver
def launch(args, world: int, eager: bool, dump_init: str | None = None) -> list[dict]:
    """Run the worker under torchrun with ``world`` processes; returns the per-rank results."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
           __file__, "--worker", "--out", args.out, "--config-json", str(Path(args.out) / "dit_config.json"),
           "--released", str(Path(args.out) / "released_dit.pt"), "--phases", args.phases]
    if eager:
        cmd.append("--eager")
    if dump_init:
        cmd += ["--dump-init", dump_init]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HYVIDEO_NATIVE": "0"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    prefix = "result_eager_" if eager else "result_"
    return [json.loads((Path(args.out) / f"{prefix}{world}_{r}.json").read_text()) for r in range(world)]


def prepare(out: Path, cfg: dict) -> dict:
    """Write ``out/dit_config.json`` and a released-layout ``out/released_dit.pt`` (``{"module": sd}``, fp32,
    seeded random weights); returns ``{"params", "fp32_mib", "config"}``."""
    import torch  # noqa: PLC0415

    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    (out / "dit_config.json").write_text(json.dumps(cfg))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        dit = HYVideoDiffusionTransformer.from_config(cfg)
    n = sum(p.numel() for p in dit.parameters())
    torch.save({"module": dit.state_dict()}, out / "released_dit.pt")
    return {"params": n, "fp32_mib": n * 4 / MiB, "config": cfg}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_train_memory")
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--double", type=int, default=4)
    p.add_argument("--single", type=int, default=8)
    p.add_argument("--phases", default="step1,dcp_save,full_save,load")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config-json", help=argparse.SUPPRESS)
    p.add_argument("--released", help=argparse.SUPPRESS)
    p.add_argument("--dump-init", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    out = Path(args.out)
    summary = prepare(out, dit_config(args.hidden, args.double, args.single))
    for world in (1, 2):
        summary[f"world{world}"] = launch(args, world, eager=False)
        summary[f"eager_world{world}"] = launch(args, world, eager=True)
    (out / "memory.json").write_text(json.dumps(summary, indent=1))
    print_table(summary)
    return summary


def print_table(s: dict) -> None:
    """The per-rank table with the ratio (largest world-2 rank) / (world 1) per row, and the issue-21 check:
    the parameter + optimizer (+ EMA) state resident after step 1 at world 2 is at most 0.6x world 1's."""
    print(f"DiT {s['params'] / 1e6:.1f}M parameters = {s['fp32_mib']:.0f} MiB fp32 (CPU, gloo, torchrun; "
          f"MiB of anonymous RSS above each rank's baseline after a warm-up step; baseline "
          f"{s['world1'][0]['baseline_mib']:.0f} MiB)")
    print("| phase | world 1: rank 0 | world 2: rank 0 | world 2: rank 1 | world 2 / world 1 |")
    print("|---|---|---|---|---|")
    rows = [("eager_world", "build", "peak_anon_above_baseline_mib", "start-up peak, earlier path (full fp32 model "
             "on every rank, then sharded)"),
            ("world", "build", "peak_anon_above_baseline_mib", "start-up peak, meta path (meta -> shard -> "
             "to_empty -> init)"),
            ("world", "step1", "peak_anon_above_baseline_mib", "peak through step 1 (optimizer state created)"),
            ("world", "step1", "resident_after_mib", "resident after step 1 (params + AdamW + EMA)"),
            ("world", "dcp_save", "peak_anon_increase_mib", "checkpoint write, DCP (each rank its shards)"),
            ("world", "full_save", "peak_anon_increase_mib", "checkpoint write, single file (gather on rank 0)"),
            ("world", "load", "peak_anon_increase_mib", "released-layout fp32 file load (rank 0 maps, broadcast)"),
            ("world", "load", "peak_file_mib", "  same, peak file-backed RSS (mapped file + libraries)"),
            ("eager_world", "build", "peak_rss_kernel_mib", "whole-process peak RSS (kernel VmHWM): start-up, earlier "
             "path"),
            ("world", "build", "peak_rss_kernel_mib", "  same: start-up, meta path"),
            ("world", "dcp_save", "peak_rss_kernel_mib", "  same: DCP checkpoint write"),
            ("world", "full_save", "peak_rss_kernel_mib", "  same: single-file checkpoint write")]
    for prefix, phase, key, label in rows:
        vals = [s[f"{prefix}1"][0].get(phase, {}).get(key), *[s[f"{prefix}2"][r].get(phase, {}).get(key)
                                                              for r in (0, 1)]]
        ratio = "-" if None in vals or vals[0] < 50 else f"{max(vals[1:]) / vals[0]:.2f}"
        print(f"| {label} | " + " | ".join("-" if v is None else f"{v:.0f}" for v in vals) + f" | {ratio} |")
    state = [s["world1"][0].get("step1", {}).get("resident_after_mib"),
             *[r.get("step1", {}).get("resident_after_mib") for r in s["world2"]]]
    if None not in state:
        ratio = max(state[1:]) / state[0]
        print(f"parameter + optimizer + EMA state per rank, world 2 / world 1: {ratio:.2f} "
              f"({'within' if ratio <= 0.6 else 'ABOVE'} the 0.6 target)")


if __name__ == "__main__":
    main(sys.argv[1:])
