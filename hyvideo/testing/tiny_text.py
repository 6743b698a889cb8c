"""Tiny, offline, deterministic text encoders for tests and ``scripts/make_tiny_checkpoints.py``.

Nothing here touches a model hub. The tokenizers are trained on a small built-in corpus (the prompt templates,
the negative prompt and a few English captions), and the models are randomly initialised from a seed. Each
folder is well under a megabyte and uses the same file layout as the released checkpoints:

- :func:`save_tiny_llm`: ``ckpts/text_encoder`` (Llama decoder + Llama-3-style tokenizer).
- :func:`save_tiny_clip`: ``ckpts/text_encoder_2`` (CLIPTextModel + CLIPTokenizer).
- :func:`save_tiny_llava`: a full ``LlavaForConditionalGeneration`` folder, like
  ``xtuner/llava-llama-3-8b-v1_1-transformers``, whose language model equals :func:`save_tiny_llm`'s.
- :func:`save_tiny_diffusers_text`: the ``text_encoder/``, ``tokenizer/``, ``text_encoder_2/``,
  ``tokenizer_2/`` subfolders of a diffusers model tree.

A tiny DiT paired with these encoders uses ``text_states_dim = TINY_LLM_DIM`` and
``text_states_dim_2 = TINY_CLIP_DIM``.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from hyvideo.text.templates import NEGATIVE_PROMPT, PROMPT_TEMPLATE

TINY_LLM_DIM = 32  # hidden size of the tiny Llama -> the tiny DiT's text_states_dim
TINY_CLIP_DIM = 32  # hidden size of the tiny CLIP text model -> the tiny DiT's text_states_dim_2
TINY_LLM_LAYERS = 4
TINY_CLIP_LAYERS = 2
TINY_SEED = 0

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
#: Llama-3 special tokens used by the templates, plus a pad token (Llama-3 itself has none).
LLAMA3_SPECIAL_TOKENS = (BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", PAD)

# Llama-3's pre-tokenizer split pattern (tokenizer.json of Meta-Llama-3-8B).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# CLIP's word pattern (openai/CLIP simple_tokenizer.py), applied to lower-cased text.
_CLIP_WORDS = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+")

_CAPTIONS = (
    "A cat walks on the grass, realistic style.",
    "A dog runs along the beach at sunset, waves crashing in the background.",
    "A red car drives through a rainy city street at night, neon lights reflecting on the wet road.",
    "Close-up of a woman smiling, soft warm light, shallow depth of field.",
    "An astronaut rides a horse on the moon, cinematic, 4k.",
    "Timelapse of clouds moving over snowy mountains, wide angle shot.",
    "A chef slices vegetables in a busy kitchen; the camera slowly pans to the left.",
    "Two people dance in an empty ballroom with golden chandeliers.",
    "A small boat sails across a calm blue lake surrounded by green trees.",
    "The quick brown fox jumps over the lazy dog.",
)


def tiny_corpus() -> list[str]:
    """Returns the built-in training corpus of the tiny tokenizers (templates, negative prompt, captions)."""
    # The raw templates are included so that "{}" becomes one token, as in Llama-3 (diffusers' crop_start
    # formula assumes it).
    raw = [t["template"] for t in PROMPT_TEMPLATE.values()]
    filled = [t["template"].format(c) for t in PROMPT_TEMPLATE.values() for c in _CAPTIONS[:3]]
    return [*raw, *filled, NEGATIVE_PROMPT, *_CAPTIONS]


# --------------------------------------------------------------------------------------------------------------
# Tokenizers


def build_llama_tokenizer(vocab_size: int = 1024, extra_corpus: tuple[str, ...] = (),
                          extra_special_tokens: tuple[str, ...] = (), corpus: Sequence[str] | None = None):
    """Builds a tiny byte-level BPE tokenizer that behaves like Llama-3's.

    Same pre-tokenizer split pattern and byte-level alphabet as Llama-3, the Llama-3 special tokens, a
    ``<|begin_of_text|>`` post-processor (BOS prepended to every sequence), a ``<|pad|>`` token and right
    padding. ``model_max_length`` is left unset, as for Llama-3, so ``padding="max_length"`` without a
    ``max_length`` does not pad (diffusers relies on this when it computes ``crop_start``).

    Args:
        vocab_size: Upper bound on the vocabulary size; the corpus is small, so the trained vocabulary may be
            smaller.
        extra_corpus: More training text (e.g. the I2V templates); empty keeps the text-to-video tokenizer.
        extra_special_tokens: More special tokens, appended after the Llama-3 ones (e.g. LLaVA's ``<image>``).
        corpus: Training text replacing :func:`tiny_corpus` (None keeps it). Pass the templates too
            (``tiny_corpus()`` plus your captions) so that ``"{}"`` stays one token.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``. It round-trips through ``save_pretrained`` and
        ``AutoTokenizer.from_pretrained`` offline. Training is deterministic.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*LLAMA3_SPECIAL_TOKENS, *extra_special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*(tiny_corpus() if corpus is None else corpus), *extra_corpus], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tok.token_to_id(BOS))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="right"
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@functools.lru_cache(maxsize=4)
def _learn_clip_bpe(num_merges: int, corpus: tuple[str, ...] | None = None) -> tuple[tuple[str, str], ...]:
    """Learns CLIP-style BPE merges (``</w>`` marks the end of a word) on a corpus (None = the tiny corpus);
    ties break by pair. Cached per (num_merges, corpus) (about 0.3 s to learn on the tiny corpus)."""
    byte_map = _bytes_to_unicode()
    words: Counter[tuple[str, ...]] = Counter()
    for line in tiny_corpus() if corpus is None else corpus:
        for word in _CLIP_WORDS.findall(" ".join(line.lower().split())):
            chars = [byte_map[b] for b in word.encode("utf-8")]
            words[(*chars[:-1], chars[-1] + "</w>")] += 1
    merges = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return tuple(merges)


def build_clip_tokenizer(num_merges: int = 400, corpus: Sequence[str] | None = None):
    """Builds a tiny ``CLIPTokenizer`` from a generated CLIP-format vocab and merges.

    The vocabulary has the layout of openai's ``vocab.json``: 256 byte characters, the same with ``</w>``, one
    entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>`` (the last id, as in CLIP). The pad token is
    ``<|endoftext|>``, as in ``openai/clip-vit-large-patch14``.

    Args:
        num_merges: Number of BPE merges to learn (fewer when the corpus runs out of pairs).
        corpus: Training text; None = :func:`tiny_corpus`.

    Returns:
        A ``transformers.CLIPTokenizer`` (the tokenizers-backed one in transformers v5) that round-trips through
        ``save_pretrained`` / ``from_pretrained`` offline.
    """
    from transformers import CLIPTokenizer

    merges = _learn_clip_bpe(num_merges, None if corpus is None else tuple(corpus))
    base = list(_bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        # The on-disk format of openai/clip-vit-large-patch14: vocab.json and merges.txt with a version header.
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
        lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
        (Path(tmp) / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(tmp, local_files_only=True)


# --------------------------------------------------------------------------------------------------------------
# Models


@contextmanager
def _seeded(seed: int):
    """Forks the CPU RNG and seeds it, so building a tiny model does not disturb the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_tiny_llm(tokenizer, *, hidden_size: int = TINY_LLM_DIM, num_layers: int = TINY_LLM_LAYERS,
                   num_heads: int = 2, num_kv_heads: int = 1, seed: int = TINY_SEED):
    """Builds a random tiny ``LlamaModel`` (grouped-query attention, RoPE theta 500000 like Llama-3).

    Args:
        tokenizer: Tokenizer whose size sets the vocabulary and whose special tokens set the config ids.
        hidden_size: Model width ``D_txt``.
        num_layers: Number of decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads.
        seed: Seed of the weight initialisation.

    Returns:
        A ``transformers.LlamaModel`` in float32 and eval mode.
    """
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        rope_theta=500000.0,  # accepted by transformers 4.x and 5.x (v5 folds it into rope_parameters)
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with _seeded(seed):
        model = LlamaModel(config)
    return model.eval()


def build_tiny_clip(tokenizer, *, hidden_size: int = TINY_CLIP_DIM, num_layers: int = TINY_CLIP_LAYERS,
                    num_heads: int = 2, seed: int = TINY_SEED):
    """Builds a random tiny ``CLIPTextModel`` (77 positions, quick-GELU, like clip-vit-large-patch14).

    Args:
        tokenizer: CLIP tokenizer; its size and ``<|endoftext|>`` id set the config (the pooled output is
            read at the first ``eos_token_id``).
        hidden_size: Model width (the pooled vector size ``D_txt_2``).
        num_layers: Number of encoder layers.
        num_heads: Attention heads.
        seed: Seed of the weight initialisation.

    Returns:
        A ``transformers.CLIPTextModel`` in float32 and eval mode.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with _seeded(seed):
        model = CLIPTextModel(config)
    return model.eval()


def save_tiny_llm(directory, *, hidden_size: int = TINY_LLM_DIM, num_layers: int = TINY_LLM_LAYERS,
                  seed: int = TINY_SEED, causal_lm: bool = False) -> Path:
    """Writes a tiny LLM text encoder in the official ``ckpts/text_encoder`` layout.

    The folder holds ``config.json``, ``model.safetensors`` and the tokenizer files, and loads with
    ``AutoModel`` / ``AutoTokenizer`` (and :func:`hyvideo.checkpoint.text.load_llm_text_encoder`).

    Args:
        directory: Output folder (created).
        hidden_size: Model width (``TINY_LLM_DIM`` by default).
        num_layers: Number of decoder layers.
        seed: Seed of the weights; equal seeds give equal weights.
        causal_lm: Save a ``LlamaForCausalLM`` (what the release's extraction script actually writes: keys
            ``model.*`` plus ``lm_head.weight``) instead of a bare ``LlamaModel``. Both load to the same
            ``LlamaModel``.

    Returns:
        The folder path.
    """
    directory = Path(directory)
    tokenizer = build_llama_tokenizer()
    model = build_tiny_llm(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    if causal_lm:
        from transformers import LlamaForCausalLM

        with _seeded(seed + 1):
            wrapper = LlamaForCausalLM(model.config)
        wrapper.model.load_state_dict(model.state_dict())
        model = wrapper
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_clip(directory, *, hidden_size: int = TINY_CLIP_DIM, num_layers: int = TINY_CLIP_LAYERS,
                   seed: int = TINY_SEED, full_clip: bool = False) -> Path:
    """Writes a tiny CLIP text encoder in the official ``ckpts/text_encoder_2`` layout (model + tokenizer).

    Args:
        directory: Output folder (created).
        hidden_size: Model width (``TINY_CLIP_DIM`` by default).
        num_layers: Number of encoder layers.
        seed: Seed of the weights; equal seeds give equal text weights.
        full_clip: Save a full ``CLIPModel`` (text + vision towers), which is what the release's
            ``text_encoder_2`` (``openai/clip-vit-large-patch14``) holds, instead of a ``CLIPTextModel``.

    Returns:
        The folder path.
    """
    directory = Path(directory)
    tokenizer = build_clip_tokenizer()
    model = build_tiny_clip(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    if full_clip:
        from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

        vision = CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8, projection_dim=hidden_size,
        )
        config = CLIPConfig(
            text_config=model.config.to_dict(), vision_config=vision.to_dict(), projection_dim=hidden_size
        )
        with _seeded(seed + 1):
            full = CLIPModel(config)
        # transformers v5: CLIPModel.text_model is a CLIPTextModel; v4: both wrap a CLIPTextTransformer.
        full.text_model.load_state_dict(getattr(model, "text_model", model).state_dict())
        model = full.eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_llava(directory, *, hidden_size: int = TINY_LLM_DIM, num_layers: int = TINY_LLM_LAYERS,
                    seed: int = TINY_SEED, max_shard_size: str | int | None = None) -> Path:
    """Writes a tiny ``LlavaForConditionalGeneration`` folder (CLIP vision tower + projector + Llama).

    Its language model has exactly the weights of :func:`save_tiny_llm` with the same arguments, so loading
    either folder with :func:`hyvideo.checkpoint.text.load_llm_text_encoder` gives the same embeddings. The
    tokenizer files sit at the top of the folder, as in ``xtuner/llava-llama-3-8b-v1_1-transformers``.

    Args:
        directory: Output folder (created).
        hidden_size: Language model width.
        num_layers: Language model layers.
        seed: Seed of the language model weights (the vision tower uses ``seed + 1``).
        max_shard_size: Split the weights into shards of this size (e.g. ``"30KB"``) with a
            ``model.safetensors.index.json``, as the 8B release checkpoint is; None writes one file.

    Returns:
        The folder path.
    """
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    directory = Path(directory)
    tokenizer = build_llama_tokenizer()
    llm = build_tiny_llm(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=llm.config, image_token_index=tokenizer.pad_token_id,
        image_seq_length=16, tie_word_embeddings=False,
    )
    with _seeded(seed + 1):
        llava = LlavaForConditionalGeneration(config)
    llava.get_decoder().load_state_dict(llm.state_dict())
    shard_kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    llava.eval().save_pretrained(directory, **shard_kwargs)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_diffusers_text(root, *, seed: int = TINY_SEED) -> Path:
    """Writes the text parts of a diffusers ``HunyuanVideoPipeline`` tree under ``root``.

    Creates ``text_encoder/`` (LlamaModel), ``tokenizer/``, ``text_encoder_2/`` (CLIPTextModel) and
    ``tokenizer_2/`` with the same weights as :func:`save_tiny_llm` / :func:`save_tiny_clip` for ``seed``.
    ``model_index.json`` and the other components are left to the caller.

    Args:
        root: Root folder of the model tree (created).
        seed: Seed of the weights.

    Returns:
        The root path.
    """
    root = Path(root)
    llama_tok, clip_tok = build_llama_tokenizer(), build_clip_tokenizer()
    build_tiny_llm(llama_tok, seed=seed).save_pretrained(root / "text_encoder")
    llama_tok.save_pretrained(root / "tokenizer")
    build_tiny_clip(clip_tok, seed=seed).save_pretrained(root / "text_encoder_2")
    clip_tok.save_pretrained(root / "tokenizer_2")
    return root


__all__ = [
    "TINY_LLM_DIM", "TINY_CLIP_DIM", "TINY_SEED", "LLAMA3_SPECIAL_TOKENS", "tiny_corpus",
    "build_llama_tokenizer", "build_clip_tokenizer", "build_tiny_llm", "build_tiny_clip",
    "save_tiny_llm", "save_tiny_clip", "save_tiny_llava", "save_tiny_diffusers_text",
]
