"""LoRA fine-tuning in train_dit.py: frozen base, exact kill-and-resume, an exported file that reproduces the
trained adapters, FP8 base and block swap, clear errors."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import run_tiny_dit as _run


@pytest.fixture(scope="module")
def base(tmp_path_factory, latent_cache):
    """A trained tiny base DiT export (the LoRA starts from it)."""
    out = tmp_path_factory.mktemp("base")
    _run(out, f"data.latent_cache={latent_cache}", "run.max_steps=2", "run.ckpt_every=0")
    return out / "export" / "dit.pt"


def _lora(base, cache, *extra):
    return [f"data.latent_cache={cache}", f"run.init_from={base}", "lora.rank=4", "lora.dropout=0.1",
            "optim.lr=1e-2", "run.max_steps=4", "run.ckpt_every=0", *extra]


def test_kill_and_resume_gives_identical_losses_and_a_bit_identical_lora(tmp_path, base, latent_cache):
    from safetensors.torch import load_file

    full = _run(tmp_path / "full", *_lora(base, latent_cache))["losses"]
    first = _run(tmp_path / "split", *_lora(base, latent_cache, "run.stop_after=2"))
    assert first["last_step"] == 2
    resumed = _run(tmp_path / "split", *_lora(base, latent_cache))["losses"]
    assert sorted(resumed) == [3, 4] and all(resumed[s] == full[s] for s in (3, 4)), (resumed, full)
    a, b = (load_file(tmp_path / d / "export" / "lora.safetensors") for d in ("full", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(k.startswith("transformer.") and ".lora_" in k for k in a)  # diffusers keys
    assert (tmp_path / "full" / "export" / "lora_ema.safetensors").is_file()
    assert not (tmp_path / "full" / "export" / "dit.pt").exists()  # no full-model export for a LoRA run


def test_exported_lora_reproduces_the_trained_model_and_the_base_is_untouched(tmp_path, base, latent_cache):
    from hyvideo.checkpoint.io import load_dit
    from hyvideo.lora import load_lora_weights
    from hyvideo.training.checkpointing import list_checkpoints

    _run(tmp_path, *_lora(base, latent_cache, "optim.ema_decay=0"))
    dit = load_dit(base, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    inp = dict(x=torch.randn(1, 16, 2, 8, 8, generator=g), t=torch.tensor([600.0]),
               text_states=torch.randn(1, 5, 32, generator=g), text_mask=torch.ones(1, 5, dtype=torch.long),
               text_states_2=torch.randn(1, 32, generator=g), guidance=torch.tensor([6000.0]))
    with torch.no_grad():
        before = dit(**inp)
        load_lora_weights(dit, tmp_path / "export" / "lora.safetensors")
        after = dit(**inp)
    assert (after - before).abs().max() > 1e-4  # the adapters learned something
    # the checkpoint holds the adapters only (the frozen base is not copied into every checkpoint)
    ckpt = list_checkpoints(tmp_path)[-1]
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    assert size < 0.5 * base.stat().st_size, (size, base.stat().st_size)


def test_fp8_base_and_block_swap_train(tmp_path, base, latent_cache):
    plain = _run(tmp_path / "plain", *_lora(base, latent_cache, "lora.base_dtype=fp32", "optim.ema_decay=0",
                                            "parallel.activation_checkpointing=false"))["losses"]
    swap = _run(tmp_path / "swap", *_lora(base, latent_cache, "lora.base_dtype=fp32", "optim.ema_decay=0",
                                          "lora.block_swap=true"))["losses"]
    assert all(abs(swap[s] - plain[s]) <= 1e-6 * max(1.0, abs(plain[s])) for s in plain), (swap, plain)
    fp8 = _run(tmp_path / "fp8", *_lora(base, latent_cache, "lora.base_dtype=fp8", "lora.block_swap=true"))["losses"]
    assert all(torch.isfinite(torch.tensor(v)) for v in fp8.values())


@pytest.mark.parametrize("setting, message", [
    ("lora.rank=-1", "lora.rank must be an integer >= 0"),
    ("lora.target_modules=[img_attn_qvk]", "matches no linear of the DiT"),
    ("lora.base_dtype=int4", "lora.base_dtype 'int4' is not one of"),
])
def test_bad_lora_settings_are_clear(setting, message, tmp_path, latent_cache):
    with pytest.raises(Exception, match=message):
        _run(tmp_path, f"data.latent_cache={latent_cache}", "lora.rank=4", setting, "run.max_steps=1")
