"""Export a training checkpoint folder to the inference layouts, on one process, on CPU, streaming.

    python -m hyvideo.training.export --checkpoint runs/dit/checkpoints/step_00010000 --out runs/dit/export
    python sample_video.py --model-base ckpts --dit-weight runs/dit/export/dit.pt [--load-key ema]

DiT checkpoints give ``dit.pt`` (``{"module": sd, "ema": sd}``), ``dit.safetensors`` (+ ``dit_ema.safetensors``)
and ``config.json``; VAE checkpoints give ``vae/{config.json, pytorch_model.pt, vae.safetensors}`` (EMA weights
when present, unless ``--no-ema``). The model kind is read from the checkpoint's ``train_state.json``. Neither
a GPU nor the checkpoint's world size is needed; peak memory is one stored chunk plus a bounded batch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .checkpointing import TRAIN_STATE, export_dit, export_vae


def main(argv=None) -> Path:
    """Run the export; returns the written ``dit.pt`` or VAE folder. Exit status 2 on a bad checkpoint path."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (<out_dir>/checkpoints/step_XXXXXXXX)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-ema", action="store_true", help="VAE: export the trained weights, not the EMA")
    args = p.parse_args(argv)
    state_file = Path(args.checkpoint) / TRAIN_STATE
    if not state_file.is_file():
        p.error(f"{args.checkpoint} is not a finished checkpoint folder (no {TRAIN_STATE})")
    model_config = json.loads(state_file.read_text())["model_config"]
    if "heads_num" in model_config:  # DiT constructor config
        out = export_dit(args.checkpoint, args.out, model_config)
    else:
        out = export_vae(args.checkpoint, Path(args.out) / "vae", model_config, prefer_ema=not args.no_ema)
    print(f"exported {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
