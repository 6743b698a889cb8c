"""Write a tiny random HunyuanVideo model tree (a few MB) for CPU smoke runs and tests.

Official ``ckpts/`` layout (default)::

    OUT/hunyuan-video-t2v-720p/transformers/{mp_rank_00_model_states.pt, config.json}
    OUT/hunyuan-video-t2v-720p/vae/{config.json, pytorch_model.pt}
    OUT/text_encoder/     tiny LLaMA + tokenizer (built offline)
    OUT/text_encoder_2/   tiny CLIP text model + tokenizer
    OUT/metadata.json     the sizes the web UI offers for it (hyvideo.webui.sizes), small enough for a CPU

``--layout diffusers`` writes the same weights as a diffusers ``HunyuanVideoPipeline`` folder instead.

``--i2v`` writes a HunyuanVideo-I2V tree instead (``--i2v-condition-type token_replace`` (default, the released
model) or ``latent_concat``)::

    OUT/hunyuan-video-i2v-720p/transformers/{mp_rank_00_model_states.pt, config.json}   (i2v_condition_type)
    OUT/hunyuan-video-i2v-720p/vae/{config.json, pytorch_model.pt}
    OUT/text_encoder_i2v/  tiny LlavaForConditionalGeneration + tokenizer + preprocessor_config.json
    OUT/text_encoder_2/    tiny CLIP text model + tokenizer

and with ``--layout diffusers`` its ``HunyuanVideoImageToVideoPipeline`` twin (``transformer/`` with
``image_condition_type``, ``text_encoder/`` = the LLaVA, ``tokenizer/``, ``image_processor/``, ...).

Usage::

    python scripts/make_tiny_checkpoints.py --out tiny_ckpts [--layout official|diffusers] [--seed 0]
    python scripts/make_tiny_checkpoints.py --out tiny_i2v --i2v [--i2v-condition-type latent_concat]
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
from hyvideo.checkpoint.io import (  # noqa: E402
    OFFICIAL_DIT_FILE,
    OFFICIAL_DIT_SUBDIR,
    OFFICIAL_I2V_ROOT,
    OFFICIAL_I2V_TEXT_ENCODER,
    OFFICIAL_VAE_SUBDIR,
    dit_config_to_diffusers,
    save_atomic,
)
from hyvideo.models.dit import I2V_CONDITION_TYPES, HYVideoDiffusionTransformer  # noqa: E402
from hyvideo.testing import tiny_i2v  # noqa: E402
from hyvideo.testing import tiny_text as tiny  # noqa: E402
from hyvideo.vae.autoencoder import AutoencoderKLCausal3D  # noqa: E402

DIT_CONFIG = ROOT / "hyvideo" / "configs" / "dit_tiny.json"
VAE_CONFIG = ROOT / "hyvideo" / "configs" / "vae_tiny.json"


def build_tiny_models(seed: int = 0, condition_type: str | None = None):
    """The tiny DiT and VAE with seeded random weights (no zero-initialised gates, so outputs are non-trivial).

    ``condition_type`` makes the DiT a HunyuanVideo-I2V variant (``latent_concat``: 33 input channels).
    """
    torch.manual_seed(seed)
    dit_cfg = {k: v for k, v in json.loads(DIT_CONFIG.read_text()).items() if not k.startswith("_")}
    if condition_type is not None:
        dit_cfg["i2v_condition_type"] = condition_type
        dit_cfg["in_channels"] = 2 * dit_cfg["out_channels"] + 1 if condition_type == "latent_concat" \
            else dit_cfg["out_channels"]
    vae_cfg = {k: v for k, v in json.loads(VAE_CONFIG.read_text()).items() if not k.startswith("_")}
    return HYVideoDiffusionTransformer(**dit_cfg).eval(), dit_cfg, AutoencoderKLCausal3D(**vae_cfg).eval(), vae_cfg


# Sizes (H, W) the web UI offers for the tiny tree (any multiple of 16 works; these keep CPU runs at seconds).
UI_METADATA = {"resolutions": {"64px": [[64, 64], [64, 112], [112, 64]], "128px": [[128, 128], [128, 224], [224, 128]]},
               "defaults": {"video_length": 9, "infer_steps": 4}}


def write_official(out: Path, seed: int = 0, condition_type: str | None = None) -> Path:
    """Write the official ``ckpts/`` layout into ``out`` (the I2V tree for a ``condition_type``); returns ``out``."""
    dit, dit_cfg, vae, vae_cfg = build_tiny_models(seed, condition_type)
    root = OFFICIAL_DIT_SUBDIR.parent if condition_type is None else Path(OFFICIAL_I2V_ROOT)
    dit_dir = out / root / "transformers"
    save_atomic({"module": dit.state_dict()}, dit_dir / OFFICIAL_DIT_FILE)
    (dit_dir / "config.json").write_text(json.dumps(dit_cfg, indent=1))
    vae_dir = out / root / OFFICIAL_VAE_SUBDIR.name
    save_atomic(vae.state_dict(), vae_dir / "pytorch_model.pt")
    (vae_dir / "config.json").write_text(json.dumps(vae_cfg, indent=1))
    if condition_type is None:
        tiny.save_tiny_llm(out / "text_encoder", seed=seed)
    else:
        tiny_i2v.save_tiny_llava_i2v(out / OFFICIAL_I2V_TEXT_ENCODER, seed=seed)
    tiny.save_tiny_clip(out / "text_encoder_2", seed=seed)
    (out / "metadata.json").write_text(json.dumps(UI_METADATA, indent=1))
    return out


def write_official_i2v(out: Path, seed: int = 0, condition_type: str = "token_replace") -> Path:
    """The HunyuanVideo-I2V official tree (see :func:`write_official`)."""
    return write_official(out, seed, condition_type)


def write_diffusers(out: Path, seed: int = 0, condition_type: str | None = None) -> Path:
    """Write a diffusers ``HunyuanVideoPipeline`` folder holding the same tiny weights (for a ``condition_type``:
    a ``HunyuanVideoImageToVideoPipeline`` folder); returns ``out``."""
    from diffusers import (  # noqa: PLC0415
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )

    dit, c, vae, v = build_tiny_models(seed, condition_type)
    df_dit = HunyuanVideoTransformer3DModel(**dit_config_to_diffusers(c))
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
    FlowMatchEulerDiscreteScheduler(shift=7.0).save_pretrained(out / "scheduler")  # released flow shift
    index = {"transformer": ["diffusers", "HunyuanVideoTransformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLHunyuanVideo"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder_2": ["transformers", "CLIPTextModel"], "tokenizer_2": ["transformers", "CLIPTokenizer"]}
    if condition_type is None:
        tiny.save_tiny_diffusers_text(out, seed=seed)
        index.update(_class_name="HunyuanVideoPipeline", text_encoder=["transformers", "LlamaModel"],
                     tokenizer=["transformers", "PreTrainedTokenizerFast"])
    else:
        tiny_i2v.save_tiny_llava_i2v(out, seed=seed, split=True)
        clip_tok = tiny.build_clip_tokenizer()
        tiny.build_tiny_clip(clip_tok, seed=seed).save_pretrained(out / "text_encoder_2")
        clip_tok.save_pretrained(out / "tokenizer_2")
        index.update(_class_name="HunyuanVideoImageToVideoPipeline",
                     text_encoder=["transformers", "LlavaForConditionalGeneration"],
                     tokenizer=["transformers", "PreTrainedTokenizerFast"],
                     image_processor=["transformers", "CLIPImageProcessor"])
    (out / "model_index.json").write_text(json.dumps(dict(sorted(index.items())), indent=1))
    return out


def write_diffusers_i2v(out: Path, seed: int = 0, condition_type: str = "token_replace") -> Path:
    """The ``HunyuanVideoImageToVideoPipeline`` twin of :func:`write_official_i2v`."""
    return write_diffusers(out, seed, condition_type)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write a tiny random HunyuanVideo model tree.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--layout", choices=["official", "diffusers"], default="official")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--i2v", action="store_true", help="write a HunyuanVideo-I2V tree")
    p.add_argument("--i2v-condition-type", choices=I2V_CONDITION_TYPES, default="token_replace")
    args = p.parse_args(argv)
    out = Path(args.out)
    ctype = args.i2v_condition_type if args.i2v else None
    (write_official if args.layout == "official" else write_diffusers)(out, args.seed, ctype)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    kind = f"HunyuanVideo-I2V ({ctype}) " if ctype else ""
    print(f"wrote tiny {kind}{args.layout} model tree to {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
