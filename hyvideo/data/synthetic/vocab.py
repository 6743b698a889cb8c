"""The words of the nano model: its training captions, the tokenizer corpus and the vocabulary check.

The nano model is trained on the *prompt form* of the curated structured captions (:func:`training_caption`):
the short description, then the camera move and a photographed background when there is one, e.g.
``"a red circle moves to the left. the camera pans right."``. Sampling prompts are short sentences of this
kind, so training on them (rather than the flattened dense caption, ~60 tokens) keeps prompts in distribution;
a clip without a camera sentence has a still camera, one without a background sentence a plain or gradient
background, which is what a bare prompt then asks for.

:func:`caption_corpus` lists every phrase those captions can contain (the tokenizers are trained on it, so every
caption word is one token) and :func:`vocabulary` the set of words; :func:`unknown_words` is the check
``sample_video.py`` runs on a prompt for the nano model.
"""

from __future__ import annotations

import re

from hyvideo.data.synthetic.captions import CAMERA_SENTENCES, MOTION_PHRASES, prompt_for

WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
# The structured caption's camera_movement field ("pan left", ...) -> the sentence of the prompt form.
_CAMERA_BY_FIELD = {k.replace("_", " "): v for k, v in CAMERA_SENTENCES.items() if k != "none"}
PHOTO_PREFIX = "a dimmed still photograph of "


def _background_sentence(background: str) -> str:
    """``"on a photograph of a city street."`` for a photographed background, "" for plain / gradient ones."""
    if not background.startswith(PHOTO_PREFIX):
        return ""
    return f"on a photograph of {background.removeprefix(PHOTO_PREFIX)}."


def training_caption(caption: dict | str) -> str:
    """The prompt-form caption the nano model trains on, from a structured caption (a string passes through).

    Args:
        caption: a structured caption (:func:`hyvideo.data.synthetic.captions.structured_caption` keys) or text.

    Returns:
        Lower-case sentences: the short description, the camera move (if the camera moves) and the background
        (if it is a photograph), each ending with a full stop.

    Raises:
        KeyError: a structured caption without ``short_description``.
    """
    if isinstance(caption, str):
        return caption
    parts = [caption["short_description"].strip().rstrip(".") + "."]
    camera = _CAMERA_BY_FIELD.get(str(caption.get("camera_movement", "static")))
    if camera:
        parts.append(camera.lower())
    background = _background_sentence(str(caption.get("background", "")))
    if background:
        parts.append(background)
    return " ".join(parts)


def caption_corpus(cfg=None) -> list[str]:
    """Every phrase of the training captions: one prompt per valid triple (held-out ones included: their
    words all occur in training), two-object joins, the camera and background sentences.

    Args:
        cfg: :class:`hyvideo.data.synthetic.attributes.NanoConfig` (default: the data set config).
    """
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415

    cfg = cfg or load_nano_config()
    prompts = [prompt_for(t) for t in cfg.valid_triples()]
    lines = [p + "." for p in prompts]
    lines += [f"{a} and {b}." for a, b in zip(prompts, prompts[7:] + prompts[:7])]
    lines += [v.lower() for k, v in CAMERA_SENTENCES.items() if k != "none"]
    lines += [f"on a photograph of {d.removeprefix('a ').removeprefix('an ')}." for d in cfg.textures.values()]
    return lines


def vocabulary(cfg=None) -> list[str]:
    """The sorted words of :func:`caption_corpus` (what the nano model has seen in its captions)."""
    words = {w for line in caption_corpus(cfg) for w in WORD.findall(line.lower())}
    words |= {w for phrase in MOTION_PHRASES.values() for w in phrase.split()}
    return sorted(words)


def unknown_words(prompt: str, vocab) -> list[str]:
    """Words of ``prompt`` (lower-cased, in order, once each) that are not in ``vocab``."""
    known = set(vocab)
    out = []
    for w in WORD.findall(prompt.lower()):
        if w not in known and w not in out:
            out.append(w)
    return out


_PHRASE_MOTION = {v: k for k, v in MOTION_PHRASES.items()}  # "moves to the left" -> "left"


def caption_triple(caption: str, cfg=None) -> tuple[str, str, str] | None:
    """The (colour, shape, motion) of a caption that is exactly one object's prompt (``"a red circle moves to the
    left."``, full stop optional: :func:`hyvideo.data.synthetic.captions.prompt_for`), else None: two objects, a
    camera or background sentence, or other words. ``cfg``: data set config (default configs/nano/dataset.yaml)."""
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415

    cfg = cfg or load_nano_config()
    words = caption.strip().removesuffix(".").split(" ", 3)
    if len(words) != 4 or words[1] not in cfg.colours or words[2] not in cfg.shapes:
        return None
    motion = _PHRASE_MOTION.get(words[3])
    triple = (words[1], words[2], motion)
    return triple if motion is not None and prompt_for(triple) == caption.strip().removesuffix(".") else None
