"""Module-name helpers shared by training, checkpoints and LoRA."""

from __future__ import annotations

# Prefixes that wrappers insert into module / parameter names: activation checkpointing
# (torch.distributed.algorithms._checkpoint.checkpoint_wrapper), torch.compile, FSDP1.
WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module.")


def clean_name(name: str) -> str:
    """A module / parameter name without wrapper prefixes (= the released state-dict name)."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name
