"""Plain-text tables for stdout and atomic JSON files for evaluation results."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path


def _cell(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4f}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A fixed-width text table of ``rows`` (dicts) with the given columns (missing cells are blank)."""
    cells = [list(columns)] + [[_cell(r[c]) if c in r else "" for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _finite(obj):
    """Replace non-finite floats (an infinite PSNR of identical frames) by None: strict JSON has no inf / nan."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` as strict JSON (non-finite floats become null) to ``path`` via a temporary file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path
