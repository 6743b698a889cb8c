"""Peak memory of one training step, LoRA vs full fine-tune (measured), and the 13B figures (analytic).

Each mode runs in its own process (peak RSS = VmHWM minus the RSS before the model is built, glibc's mmap
threshold fixed so freed buffers leave the RSS): build the mid-size DiT, one forward + backward + AdamW step
on random latents. Then the released 13B config on the ``meta`` device gives LoRA's trainable parameters and the
bytes of the frozen base in bf16 / FP8, with and without block swap.

    python scripts/bench/bench_lora_memory.py            # mid-size: hidden 1024, 4 double + 8 single blocks
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
MID = dict(hidden_size=1024, heads_num=8, rope_dim_list=[16, 56, 56], mm_double_blocks_depth=4,
           mm_single_blocks_depth=8, text_states_dim=1024, text_states_dim_2=768, text_refiner_depth=1)
MIB = 2**20


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def one_step(mode: str, rank: int, block_swap: bool) -> dict:
    """Build, then one training step; returns counts and the peak RSS delta (bytes)."""
    from hyvideo.accel.fp8 import convert_to_fp8
    from hyvideo.lora import add_lora
    from hyvideo.models.dit import HYVideoDiffusionTransformer

    torch.manual_seed(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss("VmRSS")
    dtype = torch.float32 if mode == "full" else torch.bfloat16
    dit = HYVideoDiffusionTransformer(**MID).to(dtype)
    if mode == "lora-fp8":
        convert_to_fp8(dit)
    if mode != "full":
        dit.requires_grad_(False)
        add_lora(dit, rank=rank)
        if block_swap:
            from hyvideo.accel.block_swap import enable_block_swap

            enable_block_swap(dit, "cpu")
    total = sum(p.numel() for p in dit.parameters())  # before a block swap leaves placeholders
    trainable = [p for p in dit.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, foreach=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 5, 32, 32, generator=g)
    text = dict(text_states=torch.randn(1, 64, MID["text_states_dim"], generator=g),
                text_mask=torch.ones(1, 64, dtype=torch.long), text_states_2=torch.randn(1, 768, generator=g),
                guidance=torch.tensor([6000.0]))
    with torch.autocast("cpu", torch.bfloat16, enabled=mode != "full"):
        loss = dit(x, torch.tensor([500.0]), **text).float().square().mean()
    loss.backward()
    opt.step()
    return {"mode": mode + (" + block swap" if block_swap else ""), "trainable": sum(p.numel() for p in trainable),
            "total": total, "peak": _rss("VmHWM") - base}


def analytic_13b(rank: int) -> list[dict]:
    """Trainable parameters and resident base bytes of LoRA on the released 13B config (meta device)."""
    from hyvideo.lora import add_lora
    from hyvideo.models.dit import HYVideoDiffusionTransformer

    with torch.device("meta"):
        dit = HYVideoDiffusionTransformer.from_config(ROOT / "hyvideo/configs/dit_13b.json")
    # (block swap on the CPU keeps the base in RAM either way: its measured effect here is the per-block activation
    # checkpointing; on a GPU the resident base shrinks to one block, the analytic column below)
    total = sum(p.numel() for p in dit.parameters())
    block = sum(p.numel() for b in [*dit.double_blocks, *dit.single_blocks] for p in b.parameters())
    linears = sum(m.weight.numel() for b in [*dit.double_blocks, *dit.single_blocks] for m in b.modules()
                  if isinstance(m, torch.nn.Linear))
    largest = max(sum(p.numel() for p in b.parameters()) for b in [*dit.double_blocks, *dit.single_blocks])
    dit.requires_grad_(False)
    add_lora(dit, rank=rank)
    trainable = sum(p.numel() for p in dit.parameters() if p.requires_grad)
    rows = []
    for base_name, bytes_block, bytes_rest in (("bf16", 2 * block, 2 * (total - block)),
                                               ("fp8", linears + 2 * (block - linears), 2 * (total - block))):
        per_param = bytes_block / block
        rows.append({"base": base_name, "trainable": trainable, "total": total,
                     "base_gib": (bytes_block + bytes_rest) / 2**30,
                     "swap_resident_gib": (bytes_rest + largest * per_param) / 2**30,
                     "adapter_and_adam_gib": trainable * 16 / 2**30})  # fp32 weight + grad + 2 Adam moments
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, swap = args.child.split(":")
        print(json.dumps(one_step(mode, args.rank, swap == "1")))
        return
    torch.set_num_threads(2)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "2"}
    rows = []
    for child in ("full:0", "lora:0", "lora-fp8:0", "lora:1"):
        out = subprocess.run([sys.executable, __file__, "--rank", str(args.rank), "--child", child], env=env,
                             capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    full = rows[0]["peak"]
    print(f"one training step on CPU, mid-size DiT {MID}, latent [1, 16, 5, 32, 32], 64 text tokens; LoRA rank "
          f"{args.rank} (attention + MLP linears of every block), bf16 base under autocast, fp32 adapters + AdamW")
    print(f"{'mode':<26}{'trainable':>14}{'total':>14}{'peak MiB':>10}{'vs full':>9}")
    for r in rows:
        print(f"{r['mode']:<26}{r['trainable']:>14,}{r['total']:>14,}{r['peak'] / MIB:>10.0f}{r['peak'] / full:>9.2f}")
    print(f"\nreleased 13B config, LoRA rank {args.rank} (analytic; meta device)")
    print(f"{'base':<6}{'trainable':>16}{'base GiB':>10}{'swap resident GiB':>19}{'adapters+AdamW GiB':>20}")
    for r in analytic_13b(args.rank):
        print(f"{r['base']:<6}{r['trainable']:>16,}{r['base_gib']:>10.1f}{r['swap_resident_gib']:>19.2f}"
              f"{r['adapter_and_adam_gib']:>20.2f}")


if __name__ == "__main__":
    main()
