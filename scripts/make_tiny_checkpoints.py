"""Write a tiny random HunyuanVideo model tree (a few MB) for CPU smoke runs and tests.

Official ``ckpts/`` layout (default)::

    OUT/hunyuan-video-t2v-720p/transformers/{mp_rank_00_model_states.pt, config.json}
    OUT/hunyuan-video-t2v-720p/vae/{config.json, pytorch_model.pt}
    OUT/text_encoder/     tiny LLaMA + tokenizer (built offline)
    OUT/text_encoder_2/   tiny CLIP text model + tokenizer
    OUT/metadata.json     the sizes the web UI offers for it (hyvideo.webui.sizes), small enough for a CPU

``--layout diffusers`` writes the same weights as a diffusers ``HunyuanVideoPipeline`` folder instead.

Usage::

    python scripts/make_tiny_checkpoints.py --out tiny_ckpts [--layout official|diffusers] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hyvideo.checkpoint.convert import official_to_diffusers_dit  # noqa: E402
from hyvideo.checkpoint.io import OFFICIAL_DIT_FILE, OFFICIAL_DIT_SUBDIR, OFFICIAL_VAE_SUBDIR, save_atomic  # noqa: E402
from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: E402
from hyvideo.testing import tiny_text as tiny  # noqa: E402
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: E402

DIT_CONFIG = ROOT / "hyvideo" / "configs" / "dit_tiny.json"
VAE_CONFIG = ROOT / "hyvideo" / "configs" / "vae_tiny.json"


def build_tiny_models(seed: int = 0):
    """The tiny DiT and VAE with seeded random weights (no zero-initialised gates, so outputs are non-trivial)."""
    torch.manual_seed(seed)
    dit_cfg = {k: v for k, v in json.loads(DIT_CONFIG.read_text()).items() if not k.startswith("_")}
    vae_cfg = {k: v for k, v in json.loads(VAE_CONFIG.read_text()).items() if not k.startswith("_")}
    return HYVideoDiffusionTransformer(**dit_cfg).eval(), dit_cfg, AutoencoderKLCausal3D(**vae_cfg).eval(), vae_cfg


# Sizes (H, W) the web UI offers for the tiny tree (any multiple of 16 works; these keep CPU runs at seconds).
UI_METADATA = {"resolutions": {"64px": [[64, 64], [64, 112], [112, 64]], "128px": [[128, 128], [128, 224], [224, 128]]},
               "defaults": {"video_length": 9, "infer_steps": 4}}


def write_official(out: Path, seed: int = 0) -> Path:
    """Write the official ``ckpts/`` layout into ``out``; returns ``out``."""
    dit, dit_cfg, vae, vae_cfg = build_tiny_models(seed)
    dit_dir = out / OFFICIAL_DIT_SUBDIR
    save_atomic({"module": dit.state_dict()}, dit_dir / OFFICIAL_DIT_FILE)
    (dit_dir / "config.json").write_text(json.dumps(dit_cfg, indent=1))
    vae_dir = out / OFFICIAL_VAE_SUBDIR
    save_atomic(vae.state_dict(), vae_dir / "pytorch_model.pt")
    (vae_dir / "config.json").write_text(json.dumps(vae_cfg, indent=1))
    tiny.save_tiny_llm(out / "text_encoder", seed=seed)
    tiny.save_tiny_clip(out / "text_encoder_2", seed=seed)
    (out / "metadata.json").write_text(json.dumps(UI_METADATA, indent=1))
    return out


def write_diffusers(out: Path, seed: int = 0) -> Path:
    """Write a diffusers ``HunyuanVideoPipeline`` folder holding the same tiny weights; returns ``out``."""
    from diffusers import (  # noqa: PLC0415
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )

    dit, c, vae, v = build_tiny_models(seed)
    df_dit = HunyuanVideoTransformer3DModel(
        in_channels=c["in_channels"], out_channels=c["out_channels"], num_attention_heads=c["heads_num"],
        attention_head_dim=c["hidden_size"] // c["heads_num"], num_layers=c["mm_double_blocks_depth"],
        num_single_layers=c["mm_single_blocks_depth"], num_refiner_layers=c["text_refiner_depth"],
        mlp_ratio=c["mlp_width_ratio"], patch_size=c["patch_size"][1], patch_size_t=c["patch_size"][0],
        guidance_embeds=c["guidance_embed"], text_embed_dim=c["text_states_dim"],
        pooled_projection_dim=c["text_states_dim_2"], rope_theta=float(c["rope_theta"]),
        rope_axes_dim=tuple(c["rope_dim_list"]))
    df_dit.load_state_dict(official_to_diffusers_dit(dit.state_dict(), c["hidden_size"]), strict=True)
    df_dit.save_pretrained(out / "transformer")
    n = len(v["block_out_channels"])
    df_vae = AutoencoderKLHunyuanVideo(
        in_channels=v["in_channels"], out_channels=v["out_channels"], latent_channels=v["latent_channels"],
        down_block_types=("HunyuanVideoDownBlock3D",) * n, up_block_types=("HunyuanVideoUpBlock3D",) * n,
        block_out_channels=tuple(v["block_out_channels"]), layers_per_block=v["layers_per_block"],
        norm_num_groups=v["norm_num_groups"], scaling_factor=v["scaling_factor"],
        spatial_compression_ratio=v["spatial_compression_ratio"],
        temporal_compression_ratio=v["time_compression_ratio"], mid_block_add_attention=v["mid_block_add_attention"])
    df_vae.load_state_dict(vae.state_dict(), strict=True)
    df_vae.save_pretrained(out / "vae")
    tiny.save_tiny_diffusers_text(out, seed=seed)
    FlowMatchEulerDiscreteScheduler(shift=7.0).save_pretrained(out / "scheduler")  # released flow shift
    (out / "model_index.json").write_text(json.dumps({
        "_class_name": "HunyuanVideoPipeline", "transformer": ["diffusers", "HunyuanVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLHunyuanVideo"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "LlamaModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "text_encoder_2": ["transformers", "CLIPTextModel"], "tokenizer_2": ["transformers", "CLIPTokenizer"]},
        indent=1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write a tiny random HunyuanVideo model tree.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--layout", choices=["official", "diffusers"], default="official")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    (write_official if args.layout == "official" else write_diffusers)(out, args.seed)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote tiny {args.layout} model tree to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
