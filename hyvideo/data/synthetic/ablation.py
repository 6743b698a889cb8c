"""The paper's ablations on the nano bed (``scripts/ablate_nano.py``): rows, their training plans and the table.

Every row is a short DiT training run from the same encoded nano latents (``scripts/train_nano.py``'s ``encode``
stage) with the same step budget, then ``scripts/eval_nano.py`` on the held-out triples. Rows differ from the
baseline (the nano recipe, shortened) in one thing each (HunyuanVideo paper, Sec. 4 / 5):

- ``single_stream``: no dual-stream phase: single-stream blocks only, as many as match the baseline's
  parameter count most closely (:func:`single_stream_config`);
- ``clip_text``: CLIP's per-token states as the DiT's text tokens instead of the LLM's (``model.text_conditioning:
  clip``; its latent caches are re-encoded for the text only: ``encode_latents.py --latents-from``);
- ``shift1`` / ``shift7_sampling`` / ``shift7``: the flow shift at sampling (1, 7; the baseline DiT, trained at the
  recipe's shift 1), and 7 in training and sampling;
- ``no_stages``: the same number of steps at the final resolution (64 px, 17 frames + images) from scratch
  instead of the staged schedule (32 px images -> 32 px 9 frames -> 64 px 17 frames).

Rows whose training settings are equal share one training run (:attr:`Row.train_key`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

STAGE_CONFIGS = {"dit1": "configs/nano/dit_stage1.yaml", "dit2": "configs/nano/dit_stage2.yaml",
                 "dit3": "configs/nano/dit_stage3.yaml"}
STAGE_CACHES = {"dit1": "cache32", "dit2": "cache32", "dit3": "cache64"}  # train_nano.py's encode stage
RECIPE_SHIFT = 1.0  # flow.shift of the three stage configs (checked by scripts/ablate_nano.py)


@dataclass(frozen=True)
class Row:
    """One ablation row.

    Args:
        what: one-line description for the table's legend.
        staged: the recipe's three stages (else every step at the final stage's setting, from scratch).
        single_stream: single-stream blocks only, parameter-matched.
        text: ``model.text_conditioning`` (``"llm+clip"`` released, ``"clip"`` ablation).
        train_shift: ``flow.shift`` in training (the SD3 shift of the training sigmas).
        sample_shift: Euler sampler shift; None = the nano card's (3.0).
    """

    what: str
    staged: bool = True
    single_stream: bool = False
    text: str = "llm+clip"
    train_shift: float = RECIPE_SHIFT
    sample_shift: float | None = None

    @property
    def train_key(self) -> str:
        """Name of the training run (rows with equal training settings share it)."""
        return (f"{'staged' if self.staged else 'final_only'}_{'single' if self.single_stream else 'dual'}_"
                f"{self.text.replace('+', '_')}_shift{self.train_shift:g}")


ROWS = {
    "baseline": Row("the nano recipe, short: 3 stages, dual- then single-stream blocks, LLM + CLIP text"),
    "single_stream": Row("no dual-stream phase: single-stream blocks only, parameter-matched", single_stream=True),
    "clip_text": Row("CLIP-only text: CLIP's token states as the DiT's text tokens (no LLM)", text="clip"),
    "shift1": Row("flow shift 1 at sampling (the baseline DiT)", sample_shift=1.0),
    "shift7_sampling": Row("flow shift 7 at sampling (the baseline DiT, trained at shift 1)", sample_shift=7.0),
    "shift7": Row("flow shift 7 in training and at sampling", train_shift=7.0, sample_shift=7.0),
    "no_stages": Row("no progressive stages: every step at 64 px, 17 frames + images, from scratch", staged=False),
}


def stage_plan(total_steps: int, staged: bool, recipe_steps: dict[str, int]) -> list[tuple[str, int]]:
    """``[(stage, steps)]`` summing to ``total_steps``: the recipe's stages in proportion to their
    ``run.max_steps`` (each >= 1), or all steps in the final stage.

    Raises:
        ValueError: ``total_steps`` below the number of stages.
    """
    stages = list(recipe_steps)
    if not staged:
        return [(stages[-1], total_steps)]
    if total_steps < len(stages):
        raise ValueError(f"a staged row needs >= {len(stages)} steps (one per stage), got {total_steps}")
    total = sum(recipe_steps.values())
    steps = [max(1, round(total_steps * recipe_steps[s] / total)) for s in stages[:-1]]
    return [*zip(stages[:-1], steps), (stages[-1], total_steps - sum(steps))]


def schedule_sets(steps: int, *, warmup: int, decay: bool, ema_decay: float) -> list[str]:
    """Config overrides that shorten a stage to ``steps`` keeping the recipe's shape: warmup at most 10 % of the
    stage, a cosine decay to the end where the recipe decays, an EMA horizon ``1 / (1 - decay)`` at most 10 % of
    the stage (an EMA without bias correction still holds mostly its initial weights after fewer steps than its
    horizon), ~40 logged losses and two checkpoints (resume within a stage)."""
    ema = min(ema_decay, max(0.5, 1.0 - 10.0 / steps))
    warmup = max(1, min(warmup, steps // 10))
    return [f"run.max_steps={steps}", f"run.log_every={max(1, steps // 40)}", f"run.ckpt_every={max(1, steps // 2)}",
            f"optim.warmup_steps={warmup}", f"optim.decay_steps={steps if decay and steps > warmup else 0}",
            f"optim.ema_decay={ema:.6g}"]


def count_params(dit_config: dict) -> int:
    """Parameters of the DiT built from ``dit_config`` (kwargs of :class:`HYVideoDiffusionTransformer`; keys
    starting with ``_`` ignored), on the meta device."""
    import torch  # noqa: PLC0415

    from hyvideo.models.dit import HYVideoDiffusionTransformer  # noqa: PLC0415

    with torch.device("meta"):
        model = HYVideoDiffusionTransformer(**{k: v for k, v in dit_config.items() if not k.startswith("_")})
    return sum(p.numel() for p in model.parameters())


def single_stream_config(dit_config: dict) -> tuple[dict, int, int]:
    """``(config, baseline params, its params)``: no dual-stream blocks and the number of single-stream blocks
    whose parameter count is closest to the baseline's (a dual-stream block holds ~2.4 single-stream blocks'
    parameters: two streams' attention and MLP, six modulation vectors each)."""
    base = count_params(dit_config)
    depth = dit_config["mm_single_blocks_depth"]
    best = None
    for n in range(depth, depth + 4 * dit_config["mm_double_blocks_depth"] + 2):
        cfg = {**dit_config, "mm_double_blocks_depth": 0, "mm_single_blocks_depth": n,
               "_name": f"{dit_config.get('_name', 'DiT')} -- ablation: {n} single-stream blocks, no dual-stream"}
        params = count_params(cfg)
        if best is None or abs(params - base) < abs(best[2] - base):
            best = (cfg, base, params)
    return best


def final_loss(metrics_path: Path, steps: int, tail: float = 0.2) -> tuple[float, int]:
    """``(mean loss, logged steps averaged)`` over the last ``tail`` of a stage's steps from its
    ``metrics.jsonl`` (a step logged twice across a resume counts once, its last record).

    Raises:
        ValueError: no logged loss in that window, or a non-finite mean.
    """
    rows = {}
    for line in Path(metrics_path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            rows[rec["step"]] = rec["loss"]
    window = ([v for s, v in rows.items() if s > steps * (1 - tail)] or [rows[max(rows)]]) if rows else []
    if not window:
        raise ValueError(f"{metrics_path}: no logged loss")
    mean = sum(window) / len(window)
    if not math.isfinite(mean):
        raise ValueError(f"{metrics_path}: the final loss is not finite ({mean})")
    return mean, len(window)


COLUMNS = [("train_steps", "steps", "{:d}"), ("params_m", "params M", "{:.3f}"), ("shift", "shift t/s", "{}"),
           ("loss", "loss", "{:.4f}"), ("colour_acc", "colour %", "{:.1f}"), ("shape_acc", "shape %", "{:.1f}"),
           ("motion_acc", "motion %", "{:.1f}"), ("found", "found %", "{:.1f}"), ("smoothness", "smooth", "{:.4f}"),
           ("fd", "FD", "{:.3f}"), ("train_s", "train s", "{:.0f}"), ("eval_s", "eval s", "{:.0f}"),
           ("wall_s", "wall s", "{:.0f}")]


def ablation_table(rows: dict[str, dict], reference: dict | None = None) -> str:
    """Fixed-width table of ``{row name: record}`` (:data:`COLUMNS`; ``-`` where a value is missing), with the
    rendered ground truth (``reference``, eval_nano's ``rendered`` scores) as the last line."""
    width = max([len(k) for k in rows] + [len("rendered (truth)")]) + 2
    lines = ["row".ljust(width) + "".join(h.rjust(10) for _, h, _ in COLUMNS)]
    for name, r in {**rows, **({"rendered (truth)": reference} if reference else {})}.items():
        lines.append(name.ljust(width) + "".join((f.format(r[k]) if r.get(k) is not None else "-").rjust(10)
                                                 for k, _, f in COLUMNS))
    return "\n".join(lines)


__all__ = ["Row", "ROWS", "STAGE_CONFIGS", "STAGE_CACHES", "RECIPE_SHIFT", "stage_plan", "schedule_sets",
           "count_params", "single_stream_config", "final_loss", "ablation_table"]
