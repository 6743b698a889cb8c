"""Scoring a nano model taught a new word (the LoRA fine-tune of ``scripts/lora_nano.py``, issue 18).

Two prompt sets, each sampled with fixed noise (one clip per triple and seed) and read back by the attribute
detector (:func:`hyvideo.data.synthetic.detect.detect`):

- ``new``: every valid triple of the new-word config (e.g. ``configs/nano/lora_orange.yaml``: "an orange star
  moves to the left"); the detector classifies colours against the base palette plus the new colour, so a model
  that paints a red or yellow object scores 0 on colour. Chance on colour = 1 / (palette size).
- ``old``: the base data set's held-out triples (``scripts/eval_nano.py``'s set), base palette: what the
  fine-tune must not break. ``colour_acc_with_new`` also scores their colour against the extended palette (an old
  colour drifting towards the new one shows there).

Both sets are rendered as ground truth with other seeds (the "rendered" rows: the detector's own accuracy, and
the floor of the Fréchet distance; see :mod:`hyvideo.data.synthetic.evaluation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hyvideo.data.synthetic import evaluation as ev

ATTRS = ("colour_acc", "shape_acc", "motion_acc")


@dataclass(frozen=True)
class PromptSet:
    """Triples x seeds to sample, the detector palette (word -> RGB 0-255) and the data config that renders them."""

    name: str
    title: str
    triples: tuple
    seeds: tuple
    palette: dict
    cfg: object  # hyvideo.data.synthetic.attributes.NanoConfig

    @property
    def items(self) -> list[tuple[tuple[str, str, str], int]]:
        return [(t, s) for t in self.triples for s in self.seeds]


def new_colours(new_cfg) -> tuple[list[str], dict]:
    """The colour words of a new-word data config that the base config (configs/nano/dataset.yaml) lacks, in
    config order (possibly none), and the detector palette base + those words (word -> RGB 0-255)."""
    from hyvideo.data.synthetic.attributes import load_nano_config  # noqa: PLC0415

    base = load_nano_config()
    words = [w for w in new_cfg.colours if w not in base.colours]
    return words, {**base.colours, **{w: new_cfg.colours[w] for w in words}}


def prompt_sets(new_cfg, seeds, limit: int | None = None) -> dict[str, PromptSet]:
    """``{"new": ..., "old": ...}`` for a new-word data config (module docstring); ``limit``: first N triples."""
    from hyvideo.data.synthetic.attributes import heldout_triples, load_nano_config  # noqa: PLC0415

    base = load_nano_config()
    words, palette = new_colours(new_cfg)
    if not words:
        raise ValueError(f"the new-word config adds no colour to the base palette {sorted(base.colours)}")
    new = tuple(t for t in new_cfg.valid_triples() if t[0] in words)[:limit]
    old = tuple(heldout_triples())[:limit]
    return {"new": PromptSet("new", f"new word {'/'.join(words)}: {len(new)} triples x {len(seeds)} seeds, "
                                    f"palette base + new ({len(palette)} colours, chance {100 / len(palette):.1f} %)",
                             new, tuple(seeds), palette, new_cfg),
            "old": PromptSet("old", f"old held-out triples: {len(old)} x {len(seeds)} seeds, base palette",
                             old, tuple(seeds), dict(base.colours), base)}


def _score_set(clips, ps: PromptSet, settings: ev.SampleSettings, palette_new: dict) -> dict:
    """Scores of one set's clips: :func:`ev.score_clips` keys, ``fd`` against the renders of the same triples and
    seeds, and for the old set ``colour_acc_with_new`` (its colours read with the new word's palette)."""
    triples, seeds = [t for t, _ in ps.items], [s for _, s in ps.items]
    scores = ev.score_clips(clips, triples, ps.palette)
    real = ev.render_reference(triples, seeds, settings, cfg=ps.cfg)
    scores["fd"] = ev.frechet_distance(ev.frame_features(clips), ev.frame_features(real))
    if ps.name == "old":
        scores["colour_acc_with_new"] = ev.score_clips(clips, triples, palette_new)["colour_acc"]
    return scores


def score_model(pipe, sets: dict[str, PromptSet], settings: ev.SampleSettings, progress=None) -> dict:
    """Sample every set with ``pipe`` and score it: ``{set name: scores}`` (:func:`ev.score_clips` keys + ``fd``
    against the renders of the same triples and seeds, + ``colour_acc_with_new`` for the old set).

    Raises:
        ValueError: a non-finite score (a broken model must not pass as a number).
    """
    from hyvideo.data.synthetic.captions import prompt_for  # noqa: PLC0415

    out, palette_new = {}, sets["new"].palette
    for name, ps in sets.items():
        triples, seeds = [t for t, _ in ps.items], [s for _, s in ps.items]
        clips = ev.sample_clips(pipe, [prompt_for(t) for t in triples], seeds, settings,
                                progress=(lambda n, name=name, k=len(triples): progress(name, n, k)) if progress else None)
        out[name] = _score_set(clips, ps, settings, palette_new)
    check_finite(out)
    return out


def score_reference(sets: dict[str, PromptSet], settings: ev.SampleSettings) -> dict:
    """The "rendered" rows: ground-truth renders with seeds + 100 scored like a model (FD: the floor)."""
    out, palette_new = {}, sets["new"].palette
    for name, ps in sets.items():
        triples, seeds = [t for t, _ in ps.items], [s for _, s in ps.items]
        other = ev.render_reference(triples, [s + 100 for s in seeds], settings, cfg=ps.cfg)
        out[name] = _score_set(other, ps, settings, palette_new)
    check_finite(out)
    return out


def check_finite(scores: dict) -> None:
    """Raises ValueError naming the first non-finite accuracy or FD of ``{set: scores}``."""
    for name, s in scores.items():
        for k in (*ATTRS, "found", "fd"):
            if not math.isfinite(float(s[k])):
                raise ValueError(f"{name}: {k} is {s[k]} (not finite)")


def acceptance(before: dict, after: dict, *, target: float = 80.0, max_drop: float = 5.0) -> dict:
    """Issue 18's checks: the new word's colour accuracy after >= ``target`` %, and each old attribute's accuracy
    drops by at most ``max_drop`` points. Returns ``{"new_colour", "old_drop": {attr: points}, "passed"}``."""
    drop = {a: round(before["old"][a] - after["old"][a], 2) for a in ATTRS}
    new = after["new"]["colour_acc"]
    return {"new_colour": new, "new_colour_before": before["new"]["colour_acc"], "target": target,
            "old_drop": drop, "max_drop": max_drop,
            "passed": bool(new >= target and all(d <= max_drop for d in drop.values()))}


def tables(sets: dict[str, PromptSet], before: dict, after: dict, reference: dict) -> dict[str, str]:
    """``{set title: fixed-width table}`` with the rows base model / base + LoRA / rendered."""
    out = {}
    for name, ps in sets.items():
        rows = {"base model": before[name], "base + LoRA": after[name], "rendered (other seeds)": reference[name]}
        text = ev.summary_table(rows)
        if name == "old":
            text += "\ncolour % against base + new palette: " + ", ".join(
                f"{k} {v['colour_acc_with_new']:.1f}" for k, v in rows.items())
        out[ps.title] = text
    return out


def strip_clips(scores: dict) -> dict:
    """``{set: scores}`` without the per-clip records (for summaries)."""
    return {k: {a: v for a, v in s.items() if a != "clips"} for k, s in scores.items()}


__all__ = ["PromptSet", "new_colours", "prompt_sets", "score_model", "score_reference", "acceptance", "tables",
           "check_finite", "strip_clips"]
