"""Loading the text encoders from local folders (no network): official ``ckpts/``, LLaVA, diffusers trees.

The loaders read the official ``ckpts/text_encoder`` and ``ckpts/text_encoder_2``, a full LLaVA checkpoint
(only its language model is read), or the ``text_encoder*/`` subfolders of a diffusers model tree, whose
tokenizers live in the sibling ``tokenizer*/`` folders. The models are
:class:`hyvideo.text.encoders.LLMTextEncoder` and :class:`hyvideo.text.encoders.CLIPTextEncoder`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from hyvideo.checkpoint.io import read_state_dict
from hyvideo.text.encoders import CLIPTextEncoder, LLMTextEncoder

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_LLAVA_LM_PREFIXES = ("language_model.model.", "model.language_model.")  # transformers <4.52 / >=4.52 layouts


def _dtype_kwargs(dtype: torch.dtype | None) -> dict:
    """``from_pretrained`` dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _resolve_folders(path, model_sub: str, tokenizer_sub: str, what: str) -> tuple[Path, Path]:
    """Finds ``(model_dir, tokenizer_dir)`` for a model folder, a ckpts root, or a diffusers tree.

    ``path`` may be (1) a model folder with ``config.json``: its tokenizer is the folder itself, else the
    sibling ``tokenizer_sub`` folder (diffusers: ``base/text_encoder`` -> ``base/tokenizer``); or (2) a root
    holding ``model_sub/`` (official ``ckpts/`` or a diffusers tree): the tokenizer is ``tokenizer_sub/`` when
    present, else ``model_sub/`` itself.

    Raises:
        FileNotFoundError: No model config, or no tokenizer files; the message lists every path tried.
    """
    path = Path(path)
    if (path / "config.json").is_file():
        model_dir = path
        candidates = [path, path.parent / tokenizer_sub]
        if path.name.startswith("text_encoder"):  # e.g. a renamed diffusers subfolder: text_encoder_3 -> tokenizer_3
            candidates.append(path.parent / path.name.replace("text_encoder", "tokenizer", 1))
    elif (path / model_sub / "config.json").is_file():
        model_dir = path / model_sub
        candidates = [path / tokenizer_sub, model_dir]
    else:
        if not path.exists():
            raise FileNotFoundError(f"No {what} found: the folder '{path}' does not exist.")
        raise FileNotFoundError(
            f"No {what} found at '{path}': tried '{path / 'config.json'}' and '{path / model_sub / 'config.json'}'. "
            f"Expected a model folder with config.json (the official ckpts/{model_sub} layout, a LLaVA checkpoint, "
            f"or a diffusers '{model_sub}/' subfolder with its tokenizer in '../{tokenizer_sub}/'), or a model tree "
            f"root holding '{model_sub}/'."
        )
    candidates = list(dict.fromkeys(candidates))  # drop duplicates, keep order
    for tokenizer_dir in candidates:
        if _has_tokenizer(tokenizer_dir):
            return model_dir, tokenizer_dir
    raise FileNotFoundError(
        f"No tokenizer for the {what} at '{model_dir}': none of {', '.join(_TOKENIZER_FILES)} found in "
        + ", ".join(f"'{c}'" for c in candidates) + "."
    )


def _check_loading_info(info: dict, folder: Path) -> None:
    """Raises when weights were missing (transformers would leave them randomly initialised)."""
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise RuntimeError(f"Checkpoint '{folder}' lacks {len(missing)} weights, e.g. {missing[:5]}.")


def _read_llava_language_model(folder: Path, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Reads only the language-model tensors of a LLaVA checkpoint (the vision tower is never loaded).

    Keys are ``language_model.model.*`` (checkpoints written by transformers < 4.52, e.g. xtuner's) or
    ``model.language_model.*`` (newer); ``lm_head`` is skipped. Both are mapped to ``LlamaModel`` keys.
    """
    from safetensors import safe_open

    def rename(key: str) -> str | None:
        for prefix in _LLAVA_LM_PREFIXES:
            if key.startswith(prefix):
                return key[len(prefix):]
        return None

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({f for k, f in weight_map.items() if rename(k) is not None})
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        files = []
    state_dict = {}
    for name in files:  # safe_open reads only the tensors asked for: the vision tower is never loaded
        with safe_open(str(folder / name), framework="pt") as f:
            for key in f.keys():
                new = rename(key)
                if new is not None:
                    t = f.get_tensor(key)
                    state_dict[new] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    if not files:  # PyTorch pickles: memory-mapped, so untouched vision weights are not read into memory
        bins = sorted(folder.glob("pytorch_model*.bin"))
        for path in bins:
            for key, t in read_state_dict(path).items():
                new = rename(key)
                if new is not None:
                    state_dict[new] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    if not state_dict:
        raise FileNotFoundError(
            f"No language-model weights (keys starting with {' or '.join(_LLAVA_LM_PREFIXES)}) found in the "
            f"LLaVA checkpoint '{folder}' (looked for model.safetensors[.index.json] and pytorch_model*.bin)."
        )
    return state_dict


def _load_llm_model(model_dir: Path, dtype: torch.dtype | None) -> nn.Module:
    """Loads the decoder as a bare base model (``LlamaModel``); LLaVA folders give their language model."""
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    text_config = getattr(config, "text_config", None)
    if text_config is not None:  # a LLaVA-style wrapper: read its language model only
        state_dict = _read_llava_language_model(model_dir, dtype)
        model_cls = MODEL_MAPPING[type(text_config)]
        model, info = model_cls.from_pretrained(
            None, config=text_config, state_dict=state_dict, output_loading_info=True, **_dtype_kwargs(dtype)
        )
    else:
        model, info = AutoModel.from_pretrained(
            model_dir, local_files_only=True, output_loading_info=True, **_dtype_kwargs(dtype)
        )
    _check_loading_info(info, model_dir)
    return model


def load_llm_text_encoder(
    path, dtype: torch.dtype | None = torch.float16, device: str | torch.device = "cpu", **encoder_kwargs
) -> LLMTextEncoder:
    """Loads the LLM text encoder from a local folder (no network).

    Accepted layouts:

    - the official ``ckpts/text_encoder`` folder (a saved ``LlamaModel`` or ``LlamaForCausalLM`` with its
      tokenizer), or the ``ckpts`` root that holds it;
    - a full LLaVA checkpoint (config ``model_type == "llava"``, e.g. ``xtuner/llava-llama-3-8b-v1_1-transformers``):
      only its language-model tensors are read, and its tokenizer is used. This replaces the release's
      preprocessing script (HV:hyvideo/utils/preprocess_text_encoder_tokenizer_utils.py);
    - a diffusers model tree: its root, or its ``text_encoder/`` subfolder (what
      :func:`hyvideo.checkpoint.io.resolve_model_paths` passes); the tokenizer is read from the sibling
      ``tokenizer/`` folder when the model folder holds none.

    Args:
        path: Folder of one of the layouts above.
        dtype: Weight dtype (the release runs the LLM in float16); None keeps the checkpoint's.
        device: Device to put the model on.
        **encoder_kwargs: Passed to :class:`LLMTextEncoder` (template, text_len, hidden_state_skip_layer, ...).

    Returns:
        An ``LLMTextEncoder`` in eval mode with frozen weights.

    Raises:
        FileNotFoundError: If the folder, its ``config.json``, its tokenizer or its weights are missing; the
            message names every path tried.
        RuntimeError: If the checkpoint lacks some of the model's weights.
    """
    from transformers import AutoTokenizer

    model_dir, tokenizer_dir = _resolve_folders(path, "text_encoder", "tokenizer", "LLM text encoder")
    model = _load_llm_model(model_dir, dtype).to(device).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True, padding_side="right")
    return LLMTextEncoder(model, tokenizer, **encoder_kwargs)


def load_clip_text_encoder(
    path, dtype: torch.dtype | None = torch.float16, device: str | torch.device = "cpu", **encoder_kwargs
) -> CLIPTextEncoder:
    """Loads the CLIP text encoder from a local folder (no network).

    Accepted layouts: the official ``ckpts/text_encoder_2`` (``openai/clip-vit-large-patch14``: a full CLIPModel
    or a CLIPTextModel, with its tokenizer), the ``ckpts`` root holding it, or a diffusers model tree (its root
    or its ``text_encoder_2/`` subfolder; the tokenizer then comes from the sibling ``tokenizer_2/``).

    Args:
        path: Folder of one of the layouts above.
        dtype: Weight dtype (the release uses float16); None keeps the checkpoint's.
        device: Device to put the model on.
        **encoder_kwargs: Passed to :class:`CLIPTextEncoder` (max_length, use_attention_mask).

    Returns:
        A ``CLIPTextEncoder`` in eval mode with frozen weights.

    Raises:
        FileNotFoundError: If the folder, its ``config.json`` or its tokenizer are missing; the message names
            every path tried.
        RuntimeError: If the checkpoint lacks some of the text model's weights.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    model_dir, tokenizer_dir = _resolve_folders(path, "text_encoder_2", "tokenizer_2", "CLIP text encoder")
    model, info = CLIPTextModel.from_pretrained(
        model_dir, local_files_only=True, output_loading_info=True, **_dtype_kwargs(dtype)
    )
    _check_loading_info(info, model_dir)
    model = model.to(device).eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    return CLIPTextEncoder(model, tokenizer, **encoder_kwargs)


def _image_processor_dir(model_dir: Path) -> Path:
    """The folder holding ``preprocessor_config.json``: the model folder (official) or ``../image_processor``
    (diffusers).

    Raises:
        FileNotFoundError: neither holds one (both paths named).
    """
    for folder in (model_dir, model_dir.parent / "image_processor"):
        if (folder / "preprocessor_config.json").is_file():
            return folder
    raise FileNotFoundError(f"No CLIP image processor for the LLaVA text encoder at '{model_dir}': no "
                            f"preprocessor_config.json in '{model_dir}' or '{model_dir.parent / 'image_processor'}'.")


def load_clip_image_processor(folder: Path):
    """``CLIPImageProcessor`` of a folder, PIL backend (transformers 5 ``CLIPImageProcessorPil``: no torchvision)."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls.from_pretrained(folder, local_files_only=True)


def load_llava_i2v_text_encoder(
    path, dtype: torch.dtype | None = torch.float16, device: str | torch.device = "cpu", **encoder_kwargs
):
    """Loads HunyuanVideo-I2V's text encoder (the full LLaVA: CLIP vision tower, projector, Llama) offline.

    Accepted layouts: the official ``ckpts/text_encoder_i2v`` (``xtuner/llava-llama-3-8b-v1_1-transformers`` as
    downloaded: model, tokenizer and ``preprocessor_config.json`` in one folder) or the ``ckpts`` root holding it;
    a diffusers I2V tree (its root or its ``text_encoder/`` subfolder; tokenizer in ``tokenizer/``, image
    processor in ``image_processor/``).

    Args:
        path: folder of one of the layouts above.
        dtype: weight dtype (the release runs it in float16); None keeps the checkpoint's.
        device: device to put the model on.
        **encoder_kwargs: passed to :class:`hyvideo.text.llava_i2v.LlavaI2VTextEncoder` (template, text_len,
            image_embed_interleave, ...).

    Returns:
        A ``LlavaI2VTextEncoder`` in eval mode with frozen weights.

    Raises:
        FileNotFoundError: a missing folder, config, tokenizer, image processor or weights (paths named).
        ValueError: the folder holds a text-only model (not a LLaVA with a vision tower).
        RuntimeError: the checkpoint lacks some of the model's weights.
    """
    from transformers import AutoConfig, AutoTokenizer, LlavaForConditionalGeneration

    from hyvideo.text.llava_i2v import LlavaI2VTextEncoder

    path = Path(path)
    if (path / "text_encoder_i2v" / "config.json").is_file():
        path = path / "text_encoder_i2v"
    model_dir, tokenizer_dir = _resolve_folders(path, "text_encoder", "tokenizer", "LLaVA I2V text encoder")
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    if getattr(config, "vision_config", None) is None:
        raise ValueError(f"'{model_dir}' holds a text-only {type(config).__name__}; image-to-video needs the full "
                         f"LLaVA (e.g. xtuner/llava-llama-3-8b-v1_1-transformers in ckpts/text_encoder_i2v)")
    model, info = LlavaForConditionalGeneration.from_pretrained(
        model_dir, local_files_only=True, output_loading_info=True, **_dtype_kwargs(dtype))
    _check_loading_info(info, model_dir)
    model = model.to(device).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True, padding_side="right")
    return LlavaI2VTextEncoder(model, tokenizer, load_clip_image_processor(_image_processor_dir(model_dir)),
                               **encoder_kwargs)


__all__ = ["load_llm_text_encoder", "load_clip_text_encoder", "load_llava_i2v_text_encoder"]
