"""Benchmark sampling: our Euler loop vs diffusers' transformer + FlowMatchEulerDiscreteScheduler (same weights,
same noise), then the first-block step cache at several thresholds: DiT evaluations saved, time, and PSNR of
the decoded video against the uncached one (same seed).

    python scripts/bench/bench_sample.py                                   # random weights (cache numbers: not
                                                                     # meaningful for quality, see docs)
    python scripts/bench/bench_sample.py --dit-weights RUN/ema.pt --dit-config RUN/config.json \
        --vae-weights VAE_DIR --thresholds 0.05 0.1 0.15             # a trained checkpoint

Text conditioning is random (fixed seed) unless ``--text-states`` points to a ``.pt`` with ``states``,
``mask`` and ``pooled`` tensors, or to a latent-cache ``.safetensors`` entry (``text_states``, ``text_mask``,
``text_states_2``), e.g. the one the DiT was trained on.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_dit import DTYPES, machine, rel_err  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIT = dict(hidden_size=768, heads_num=12, mm_double_blocks_depth=2, mm_single_blocks_depth=4,
                 rope_dim_list=[16, 24, 24], text_states_dim=4096, text_states_dim_2=768)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of videos in [0, 1]."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def build_dit(args, dtype):
    from hyvideo.checkpoint.io import read_dit_state_dict  # noqa: PLC0415
    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    cfg = json.loads(Path(args.dit_config).read_text()) if args.dit_config else dict(BENCH_DIT)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    torch.manual_seed(0)
    dit = HYVideoDiffusionTransformer(**cfg).eval()
    if args.dit_weights:
        dit.load_state_dict(read_dit_state_dict(args.dit_weights, args.load_key), strict=True)
    else:
        with torch.no_grad():
            for p in dit.parameters():
                p.normal_(0, 0.02)
    return dit.to(dtype)


def build_diffusers_dit(dit, dtype):
    import diffusers  # noqa: PLC0415

    from hyvideo.checkpoint.convert import official_to_diffusers_dit  # noqa: PLC0415

    c = dit.config
    ref = diffusers.HunyuanVideoTransformer3DModel(
        in_channels=c["in_channels"], out_channels=c["out_channels"], num_attention_heads=c["heads_num"],
        attention_head_dim=c["hidden_size"] // c["heads_num"], num_layers=c["mm_double_blocks_depth"],
        num_single_layers=c["mm_single_blocks_depth"], num_refiner_layers=c["text_refiner_depth"],
        mlp_ratio=c["mlp_width_ratio"], patch_size=c["patch_size"][1], patch_size_t=c["patch_size"][0],
        text_embed_dim=c["text_states_dim"], pooled_projection_dim=c["text_states_dim_2"],
        rope_axes_dim=tuple(c["rope_dim_list"]), guidance_embeds=c["guidance_embed"], rope_theta=c["rope_theta"])
    ref.load_state_dict(official_to_diffusers_dit(dit.state_dict(), hidden_size=c["hidden_size"]), strict=True)
    return ref.eval().to(dtype)


def build_vae(args):
    from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: PLC0415

    if args.vae_weights:
        from hyvideo.checkpoint.io import load_vae  # noqa: PLC0415

        return load_vae(args.vae_weights, dtype=torch.float32).eval()
    torch.manual_seed(0)
    return AutoencoderKLCausal3D.from_config(args.vae_config).eval()


def conditioning(args, dit, dtype):
    if args.text_states and args.text_states.endswith(".safetensors"):  # a latent-cache entry
        from safetensors.torch import load_file  # noqa: PLC0415

        d = load_file(args.text_states)
        return d["text_states"][None].to(dtype), d["text_mask"][None], d["text_states_2"][None].to(dtype)
    if args.text_states:
        d = torch.load(args.text_states, map_location="cpu")
        return d["states"][:1].to(dtype), d["mask"][:1], d["pooled"][:1].to(dtype)
    g = torch.Generator().manual_seed(2)
    mask = torch.zeros(1, args.text_tokens, dtype=torch.long)
    mask[:, : args.valid_tokens] = 1
    return (torch.randn(1, args.text_tokens, dit.text_states_dim, generator=g).to(dtype), mask,
            torch.randn(1, dit.text_states_dim_2, generator=g).to(dtype))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--dit-config", help="JSON of DiT constructor kwargs (default: the bench_dit.py size)")
    ap.add_argument("--dit-weights", help="trained DiT weights (read_dit_state_dict formats)")
    ap.add_argument("--load-key", default="module")
    ap.add_argument("--vae-config", default=str(ROOT / "hyvideo" / "configs" / "vae_tiny.json"))
    ap.add_argument("--vae-weights", help="VAE folder (config.json + weights) for load_vae")
    ap.add_argument("--text-states", help=".pt with states / mask / pooled")
    ap.add_argument("--latent", type=int, nargs=5, default=[1, 16, 5, 16, 16], metavar=("B", "C", "T", "H", "W"))
    ap.add_argument("--text-tokens", type=int, default=64)
    ap.add_argument("--valid-tokens", type=int, default=40)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--flow-shift", type=float, default=7.0)
    ap.add_argument("--guidance", type=float, default=6.0)
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.1, 0.15, 0.2])
    ap.add_argument("--skip-diffusers", action="store_true")
    args = ap.parse_args()
    from hyvideo import accel  # noqa: PLC0415
    from hyvideo.accel.step_cache import disable_step_cache, enable_step_cache  # noqa: PLC0415
    from hyvideo.diffusion.flow_matching import get_sigmas  # noqa: PLC0415
    from hyvideo.diffusion.sampler import euler_sample  # noqa: PLC0415

    dtype = DTYPES[args.dtype]
    dit = build_dit(args, dtype)
    print(f"hyvideo accel: {accel.apply(dit, options=accel.AccelOptions(device='cpu'))}")  # as sample_video.py does
    states, mask, pooled = conditioning(args, dit, dtype)
    guidance = torch.tensor([args.guidance * 1000.0], dtype=dtype) if dit.guidance_embed else None
    noise = torch.randn(args.latent, generator=torch.Generator().manual_seed(42))
    sigmas = get_sigmas(args.steps, args.flow_shift)

    def ours() -> torch.Tensor:
        def fn(x, t):
            return dit(x.to(dtype), t, states, mask, pooled, guidance)
        return euler_sample(fn, noise, sigmas, progress=False)

    rows = []
    with torch.inference_mode():
        dit(noise.to(dtype), sigmas[:1] * 1000, states, mask, pooled, guidance)  # warm-up
        t0 = time.perf_counter()
        lat = ours()
        rows.append(("hyvideo (no cache)", time.perf_counter() - t0, args.steps, 0.0, None))
        if not args.skip_diffusers:
            ref = build_diffusers_dit(dit, dtype)
            ref(noise.to(dtype), sigmas[:1] * 1000, states, mask, pooled, guidance=guidance)  # warm-up
            t0 = time.perf_counter()
            ref_lat = diffusers_sample(ref, noise, states, mask, pooled, guidance, args)
            t_ref = time.perf_counter() - t0
            print(f"final latents, ours vs diffusers: rel err {rel_err(lat, ref_lat):.2e}")
            rows.append(("diffusers", t_ref, args.steps, 0.0, None))
            del ref
        vae = build_vae(args)
        vae.enable_tiling()
        video = decode(vae, lat)
        for thr in args.thresholds:
            cache = enable_step_cache(dit, thr)
            t0 = time.perf_counter()
            lat_c = ours()
            dt = time.perf_counter() - t0
            rows.append((f"hyvideo cache {thr:g}", dt, cache.num_full, cache.speedup, psnr(decode(vae, lat_c), video)))
            disable_step_cache(dit)
    kind = "TRAINED " + args.dit_weights if args.dit_weights else "RANDOM weights (cache quality not meaningful)"
    print(f"device: {machine(torch.device('cpu'))}; dtype {args.dtype}; DiT {kind}; latent {args.latent}; "
          f"{args.steps} steps, flow shift {args.flow_shift}")
    base = rows[0][1]
    print(f"{'run':<24}{'time s':>9}{'vs ours':>9}{'full evals':>12}{'evals saved x':>15}{'PSNR dB':>10}")
    for name, t, n_full, speed, p in rows:
        ps = "-" if p is None else f"{p:.2f}"
        sp = "-" if not speed else f"{speed:.2f}"
        print(f"{name:<24}{t:>9.2f}{t / base:>9.2f}{n_full:>12}{sp:>15}{ps:>10}")


def diffusers_sample(ref, noise, states, mask, pooled, guidance, args) -> torch.Tensor:
    """diffusers' HunyuanVideoPipeline denoising loop (FlowMatchEulerDiscreteScheduler, shift = flow shift)."""
    import numpy as np  # noqa: PLC0415
    from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: PLC0415

    sched = FlowMatchEulerDiscreteScheduler(shift=args.flow_shift)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, args.steps + 1)[:-1])
    x = noise.clone()
    for t in sched.timesteps:
        v = ref(x.to(states.dtype), t.expand(x.shape[0]).to(states.dtype), states, mask, pooled,
                guidance=guidance, return_dict=False)[0]
        x = sched.step(v.float(), t, x, return_dict=False)[0]
    return x


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    z = (latents / vae.config["scaling_factor"]).to(next(vae.parameters()).dtype)
    return (vae.decode(z).sample.float() / 2 + 0.5).clamp(0, 1)


if __name__ == "__main__":
    main()
