"""The nano model's text encoders: a tiny Llama and a tiny CLIP text model, random and frozen, whose tokenizers are
trained on the nano captions (every caption word is one token), written in the official ``ckpts/`` layout.

Why random and frozen: the DiT reads the text through its trainable token refiner and attention. With a
tokenizer in which each caption word is one token, a random embedding table maps the words to distinct vectors,
and nothing needs to be learned in the encoders: they cost nothing to build and the recipe keeps the released
rule (text encoders frozen). The Llama is initialised at unit gain (:func:`unit_gain_init`: embeddings N(0, 1),
linears N(0, 1/fan_in)) instead of the usual std 0.02, so its states are unit-scale (std ~1.2, not ~0.014) and
each one identifies its word (measured: the "red" and "blue" states of two prompts have cosine 0.02).

Limitation: the DiT's text tokens carry no position, and the causal attention of the random encoder mixes
almost nothing of the preceding words into a state (the 95-token template prefix dominates its context:
states after the first differing word keep cosine > 0.99). The text is therefore read as a bag of words: one
object is described exactly, but in a two-object caption ("a red star ... and a green circle ...") the model
cannot tell which colour goes with which shape.
"""

from __future__ import annotations

from pathlib import Path

NANO_TEXT_DIM = 64  # hidden size of both encoders -> the nano DiT's text_states_dim / text_states_dim_2
NANO_LLM_LAYERS = 4  # hidden_state_skip_layer 2 (released) reads the output of layer 2
NANO_CLIP_LAYERS = 2
NANO_TEXT_SEED = 0
CORPUS_REPEATS = 4  # caption lines outweigh the template text in the BPE statistics


def nano_corpus(cfg=None) -> list[str]:
    """Tokenizer training text: the prompt templates and the tiny corpus (so ``"{}"`` stays one token) plus
    the nano caption corpus (:func:`hyvideo.data.synthetic.vocab.caption_corpus`)."""
    from hyvideo.data.synthetic.vocab import caption_corpus  # noqa: PLC0415
    from hyvideo.testing.tiny_text import tiny_corpus  # noqa: PLC0415

    return [*tiny_corpus(), *caption_corpus(cfg) * CORPUS_REPEATS]


def build_nano_tokenizers(cfg=None):
    """``(llama_tokenizer, clip_tokenizer)`` trained on :func:`nano_corpus` (deterministic)."""
    from hyvideo.testing.tiny_text import build_clip_tokenizer, build_llama_tokenizer  # noqa: PLC0415

    corpus = nano_corpus(cfg)
    return build_llama_tokenizer(vocab_size=2048, corpus=corpus), build_clip_tokenizer(num_merges=1200,
                                                                                      corpus=corpus)


def unit_gain_init(model, seed: int, out_gain: float = 0.5) -> None:
    """Re-initialise a Llama at unit gain, in place and seeded: embeddings N(0, 1), every linear
    N(0, 1/fan_in), the residual-branch outputs (``o_proj``, ``down_proj``) scaled by ``out_gain``."""
    import torch  # noqa: PLC0415

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim != 2:
                continue  # RMSNorm weights stay 1
            std = 1.0 if "embed" in name else p.shape[1] ** -0.5
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                std *= out_gain
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def save_nano_text_encoders(root: str | Path, *, seed: int = NANO_TEXT_SEED, cfg=None) -> Path:
    """Write ``root/text_encoder`` (Llama decoder + its tokenizer) and ``root/text_encoder_2`` (CLIP text model +
    tokenizer), the official ``ckpts/`` layout that :func:`hyvideo.checkpoint.text.load_llm_text_encoder` and
    ``load_clip_text_encoder`` read (safetensors, float32; about 1 MB in all).

    Args:
        root: the model tree root (created).
        seed: weight seed; equal seeds give equal weights.
        cfg: data set config (default ``configs/nano/dataset.yaml``).

    Returns:
        ``root``.
    """
    from hyvideo.testing.tiny_text import build_tiny_clip, build_tiny_llm  # noqa: PLC0415

    root = Path(root)
    llama_tok, clip_tok = build_nano_tokenizers(cfg)
    llm = build_tiny_llm(llama_tok, hidden_size=NANO_TEXT_DIM, num_layers=NANO_LLM_LAYERS, seed=seed)
    unit_gain_init(llm, seed)
    llm.save_pretrained(root / "text_encoder")
    llama_tok.save_pretrained(root / "text_encoder")
    clip = build_tiny_clip(clip_tok, hidden_size=NANO_TEXT_DIM, num_layers=NANO_CLIP_LAYERS, seed=seed)
    clip.save_pretrained(root / "text_encoder_2")
    clip_tok.save_pretrained(root / "text_encoder_2")
    return root
