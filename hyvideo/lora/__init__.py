"""LoRA for the hyvideo DiT: peft adapters for fine-tuning, and LoRA files in the ecosystem's formats.

Training: :func:`add_lora`, :func:`lora_parameters`, :func:`lora_state_dict` / :func:`set_lora_state_dict`
(exact resume), :func:`save_lora` (diffusers format + metadata; or musubi / ComfyUI style), :func:`count_parameters`.

Sampling: :func:`load_lora_weights` (diffusers, peft, musubi-tuner / kohya, ComfyUI key styles; several at once,
each with its scale), :func:`set_lora_scale`, :func:`fuse_lora` / :func:`unfuse_lora`, :func:`unload_lora`,
:func:`merge_and_unload`; :func:`convert_lora_file` rewrites a LoRA in another style.
"""

from hyvideo.lora.adapters import (
    DEFAULT_TARGETS,
    MODULATION_TARGETS,
    LoraSettings,
    add_lora,
    adapter_state,
    convert_lora_file,
    count_parameters,
    lora_parameters,
    lora_state_dict,
    resolve_targets,
    save_lora,
    set_lora_state_dict,
    write_lora,
)
from hyvideo.lora.apply import (
    adapter_names,
    fuse_lora,
    load_lora_weights,
    merge_and_unload,
    read_lora,
    set_lora_scale,
    unfuse_lora,
    unload_lora,
)
from hyvideo.lora.formats import LoraFormatError, LoraWeight

__all__ = [
    "DEFAULT_TARGETS", "MODULATION_TARGETS", "LoraFormatError", "LoraSettings", "LoraWeight", "adapter_names",
    "adapter_state", "add_lora", "convert_lora_file", "count_parameters", "fuse_lora", "load_lora_weights",
    "lora_parameters", "lora_state_dict", "merge_and_unload", "read_lora", "resolve_targets", "save_lora",
    "set_lora_scale", "set_lora_state_dict", "unfuse_lora", "unload_lora", "write_lora",
]
