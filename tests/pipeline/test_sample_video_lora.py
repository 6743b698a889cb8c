"""sample_video.py --lora-path / --lora-scale / --lora-fuse on the tiny tree; bad LoRA inputs exit 2."""

from __future__ import annotations

import pytest
import torch

PROMPT = "a red circle moves to the right"
BASE = ["--prompt", PROMPT, "--video-size", "32", "32", "--video-length", "5", "--infer-steps", "2", "--seed", "3",
        "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def lora_file(tiny_ckpts, tmp_path_factory):
    from hyvideo.checkpoint.io import load_dit
    from hyvideo.lora import add_lora, save_lora

    dit = load_dit(tiny_ckpts / "hunyuan-video-t2v-720p" / "transformers" / "mp_rank_00_model_states.pt",
                   dtype=torch.float32)
    add_lora(dit, rank=4)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # peft starts B at zero: make the LoRA change the output
    return save_lora(dit, tmp_path_factory.mktemp("lora") / "lora.safetensors")


def _latents(tiny_ckpts, tmp_path, capsys, *extra):
    import sample_video

    out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
    code = sample_video.main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(out), *extra])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    import imageio.v3 as iio

    (mp4,) = out.glob("*.mp4")
    return iio.imread(mp4, plugin="pyav").astype("float32"), cap.out


def test_lora_changes_the_video_fused_or_not(tiny_ckpts, lora_file, tmp_path, capsys):
    plain, _ = _latents(tiny_ckpts, tmp_path, capsys)
    unfused, out = _latents(tiny_ckpts, tmp_path, capsys, "--lora-path", str(lora_file), "--lora-scale", "1.5")
    assert "LoRA" in out and "scale 1.5" in out
    fused, out = _latents(tiny_ckpts, tmp_path, capsys, "--lora-path", str(lora_file), "--lora-scale", "1.5",
                          "--lora-fuse")
    assert "fused into" in out
    assert abs(unfused - plain).mean() > 1.0  # the LoRA changes the video ...
    assert abs(fused - unfused).max() <= 2.0  # ... and fusing it does not (8-bit frames, float rounding)


def test_bad_lora_inputs_exit_2(tiny_ckpts, lora_file, tmp_path, capsys):
    import sample_video

    from hyvideo.lora import add_lora, save_lora
    from hyvideo.models.dit import HYVideoDiffusionTransformer

    code = sample_video.main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(tmp_path),
                              "--lora-path", str(tmp_path / "missing.safetensors")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code = sample_video.main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(tmp_path),
                              "--lora-path", str(lora_file), "--lora-scale", "1", "--lora-scale", "2"])
    assert code == 2 and "2 --lora-scale values for 1 --lora-path" in capsys.readouterr().err
    other = HYVideoDiffusionTransformer(hidden_size=48, heads_num=2, rope_dim_list=[8, 8, 8], mm_double_blocks_depth=1,
                                        mm_single_blocks_depth=1, text_states_dim=32, text_states_dim_2=32,
                                        text_refiner_depth=1)
    add_lora(other, rank=2)
    wrong = save_lora(other, tmp_path / "wrong.safetensors")
    code = sample_video.main([*BASE, "--model-base", str(tiny_ckpts), "--save-path", str(tmp_path),
                              "--lora-path", str(wrong)])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this DiT" in err
