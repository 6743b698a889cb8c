"""hyvideo-nano, the model shipped inside the package: where it is, its recommended settings, and the checks
``sample_video.py`` runs when it samples with it.

The tree (``hyvideo/assets/nano``) has the official ``ckpts/`` layout plus ``nano.json``, the model card's
machine-readable part: the vocabulary of its captions, the sizes and lengths it was trained on, and the
recommended sampling settings. ``sample_video.py`` without ``--model-base`` samples ``./ckpts`` when that folder
exists, else this tree (:func:`default_model_base`); with the nano tree, flags the user did not give take the
card's values (:func:`apply_card_defaults`), a prompt with words outside the vocabulary gets one warning
(:func:`prompt_warning`), and a size or length it was not trained on another (:func:`size_warning`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hyvideo.data.synthetic.vocab import unknown_words

NANO_TREE = Path(__file__).resolve().parent / "assets" / "nano"
CARD_FILE = "nano.json"
# sample_video.py flags (argparse dests) that the card's "sampling" section may set, and the card's keys.
CARD_FLAGS = {"video_size": "video_size", "video_length": "video_length", "infer_steps": "infer_steps",
              "flow_shift": "flow_shift", "cfg_scale": "cfg_scale", "embedded_cfg_scale": "embedded_cfg_scale",
              "neg_prompt": "negative_prompt", "text_len": "text_len", "fps": "fps",
              "i2v_resolution": "i2v_resolution"}  # the I2V bucket family (nano I2V tree: 64p)


def read_card(tree: str | os.PathLike) -> dict | None:
    """The ``nano.json`` of a model tree, or None when the tree has none (any other model).

    Raises:
        ValueError: the file exists but is not a JSON object with ``vocabulary``, ``trained`` and ``sampling``.
    """
    path = Path(tree) / CARD_FILE
    if not path.is_file():
        return None
    card = json.loads(path.read_text())
    missing = [k for k in ("vocabulary", "trained", "sampling") if k not in card] if isinstance(card, dict) else []
    if not isinstance(card, dict) or missing:
        raise ValueError(f"{path} is not a nano model card (missing {missing or 'a JSON object'})")
    return card


def default_model_base(cwd: str | os.PathLike = ".") -> tuple[Path, bool]:
    """``(tree, is_nano)``: ``./ckpts`` when it exists, else the shipped nano tree."""
    ckpts = Path(cwd) / "ckpts"
    if ckpts.exists():
        return ckpts, False
    return NANO_TREE, True


def apply_card_defaults(args, card: dict, given: set[str]) -> list[str]:
    """Set every flag of :data:`CARD_FLAGS` that the user did not give (``given``: argparse dests) to the card's
    recommended value, in place on ``args``; returns ``["name=value", ...]`` of what was set (for the log)."""
    rec = card["sampling"]
    changed = []
    for dest, key in CARD_FLAGS.items():
        if dest in given or key not in rec or not hasattr(args, dest):
            continue
        value = rec[key]
        setattr(args, dest, list(value) if isinstance(value, (list, tuple)) else value)
        changed.append(f"{dest}={value}")
    return changed


def prompt_warning(prompt: str, card: dict) -> str | None:
    """One line naming the words of ``prompt`` that the nano captions never contain and what the model knows,
    or None when every word is known."""
    unknown = unknown_words(prompt, card["vocabulary"])
    if not unknown:
        return None
    return (f"the nano model never saw the word(s) {', '.join(repr(w) for w in unknown)}; they are sampled as "
            f"untrained tokens. It knows: {' '.join(card['vocabulary'])} (e.g. \"{card['sampling']['example']}\")")


def size_warning(height: int, width: int, video_length: int, card: dict) -> str | None:
    """One line when ``height x width`` px or ``video_length`` frames is outside what the nano model was
    trained on (it runs, but the result is unreliable), else None."""
    sizes = [tuple(s) for s in card["trained"]["sizes"]]
    frames = card["trained"]["frames"]
    problems = []
    if (height, width) not in sizes:
        problems.append(f"size {height}x{width} (trained: {', '.join(f'{h}x{w}' for h, w in sizes)})")
    if video_length not in frames:
        problems.append(f"length {video_length} frames (trained: {', '.join(map(str, frames))})")
    if not problems:
        return None
    main = card["sampling"]
    return (f"the nano model was not trained for {' and '.join(problems)}; it will run, but expect broken "
            f"objects and motion. Its size is --video-size {main['video_size'][0]} {main['video_size'][1]} "
            f"--video-length {main['video_length']}")
