"""torchrun worker for tests/parallel/test_sp_sampling.py: sample latents with the CLI's loader and Ulysses SP.

    torchrun --nproc_per_node 2 tests/parallel/sp_sample_worker.py MODEL_BASE OUT.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def sample_latents(model_base: str, sp_group=None):
    """fp32 latents ``[1, 16, 3, 8, 8]`` of a 3-step, 9-frame 64x64 sample of the tiny model tree."""
    import torch  # noqa: PLC0415

    from hyvideo import accel  # noqa: PLC0415
    from hyvideo.checkpoint.loader import load_pipeline  # noqa: PLC0415

    pipe = load_pipeline(model_base, dit_dtype=torch.float32, vae_dtype=torch.float32, text_dtype=torch.float32,
                         device="cpu", log=lambda *_: None)
    accel.apply(pipe.dit, pipe.vae, accel.AccelOptions(device="cpu", sp_group=sp_group))
    return pipe(["A cat walks on the grass, realistic style."], height=64, width=64, video_length=9, seeds=[7],
                infer_steps=3, output_type="latent", progress=False)


def main() -> None:
    import torch  # noqa: PLC0415

    from hyvideo.parallel.mesh import destroy, init_distributed  # noqa: PLC0415

    torch.set_num_threads(1)
    env = init_distributed(sp_degree=int(sys.argv[3]) if len(sys.argv) > 3 else 2, backend="gloo")
    latents = sample_latents(sys.argv[1], env.sp_group)
    if env.is_main:
        torch.save(latents, sys.argv[2])
    destroy()


if __name__ == "__main__":
    main()
