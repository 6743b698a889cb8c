"""The official ckpts/ layout with safetensors weights (the shipped nano tree's format) loads like the .pt one."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file

from hyvideo.checkpoint.io import (OFFICIAL_DIT_FILE, OFFICIAL_DIT_SAFETENSORS, OFFICIAL_DIT_SUBDIR,
                                   OFFICIAL_VAE_SUBDIR, load_dit, load_vae, read_dit_state_dict, resolve_model_paths)


def _as_safetensors(src, dst, vae_name):
    shutil.copytree(src, dst)
    dit_dir, vae_dir = dst / OFFICIAL_DIT_SUBDIR, dst / OFFICIAL_VAE_SUBDIR
    sd = torch.load(dit_dir / OFFICIAL_DIT_FILE, weights_only=True)["module"]
    (dit_dir / OFFICIAL_DIT_FILE).unlink()
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(dit_dir / OFFICIAL_DIT_SAFETENSORS))
    vsd = torch.load(vae_dir / "pytorch_model.pt", weights_only=True)
    (vae_dir / "pytorch_model.pt").unlink()
    save_file({k: v.contiguous() for k, v in vsd.items()}, str(vae_dir / vae_name))
    return dst


@pytest.mark.parametrize("vae_name", ["pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"])
def test_official_tree_with_safetensors_loads_the_same_weights(tiny_ckpts, tmp_path, vae_name):
    tree = _as_safetensors(tiny_ckpts, tmp_path / "tree", vae_name)
    paths = resolve_model_paths(tree)
    assert paths.layout == "official" and paths.dit.name == OFFICIAL_DIT_SAFETENSORS
    ref = load_dit(resolve_model_paths(tiny_ckpts).dit, dtype=torch.float32)
    dit = load_dit(paths.dit, dtype=torch.float32)  # config.json beside the file, fp16 file -> fp32 model
    for (k, a), (_, b) in zip(ref.state_dict().items(), dit.state_dict().items()):
        torch.testing.assert_close(b, a.half().float(), msg=k)
    folder_sd = read_dit_state_dict(paths.dit.parent)  # a folder holding *_model_states.safetensors
    assert set(folder_sd) == set(ref.state_dict())
    vae_ref, vae = load_vae(tiny_ckpts / OFFICIAL_VAE_SUBDIR, dtype=torch.float32), load_vae(paths.vae, dtype=torch.float32)
    for (k, a), (_, b) in zip(vae_ref.state_dict().items(), vae.state_dict().items()):
        assert torch.equal(a, b), k


def test_missing_vae_weights_name_every_file_tried(tiny_ckpts, tmp_path):
    tree = _as_safetensors(tiny_ckpts, tmp_path / "tree", "pytorch_model.safetensors")
    (tree / OFFICIAL_VAE_SUBDIR / "pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_vae(tree / OFFICIAL_VAE_SUBDIR)
    for name in ("pytorch_model.pt", "pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"):
        assert name in str(e.value)
