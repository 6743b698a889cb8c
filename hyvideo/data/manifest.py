"""Training manifests: one record per clip or image, in JSONL or Parquet.

Fields (only ``path`` is required):

- ``path``: video or image file; relative paths are relative to the manifest's directory.
- ``start_frame`` / ``end_frame`` (end exclusive) or ``start_time`` / ``end_time`` (seconds): the clip span.
- ``caption``: a string, or a structured caption (mapping; see :func:`caption_text`).
- ``width``, ``height`` (px), ``fps`` (frames per second), ``num_frames``: probed from the file when absent.
- ``tier``: data quality tier such as ``"360p"``; a stage at resolution R uses records whose tier >= R.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# Keys of the paper's structured captions (the literal spellings are not published; these are ours).
STRUCTURED_KEYS = ("short_description", "dense_description", "background", "style", "shot_type",
                   "lighting", "atmosphere", "camera_movement")


@dataclass(frozen=True)
class ClipRecord:
    path: str
    caption: str | dict = ""
    start_frame: int = 0
    end_frame: int | None = None  # exclusive; None = end of file
    start_time: float | None = None  # seconds; converted with fps when given
    end_time: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    num_frames: int | None = None  # frames in the file
    tier: str = ""
    extra: dict = field(default_factory=dict, compare=False)  # other manifest columns (curation scores, ...)

    @property
    def is_image(self) -> bool:
        return Path(self.path).suffix.lower() in IMAGE_EXTS


class ManifestError(ValueError):
    """A manifest cannot be used: missing, unreadable, a bad line (the message names ``file:line``)."""


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """``(line number, row)`` pairs of a JSONL (1-based file lines; blank lines skipped) or Parquet file."""
    if path.suffix == ".jsonl":
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ManifestError(f"cannot read manifest {path}: {e}") from None
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno}): {line[:80]!r}") from None
        return rows
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            return list(enumerate(pq.read_table(path).to_pylist(), start=1))
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise ManifestError(f"cannot read Parquet manifest {path}: {e}") from None
    raise ManifestError(f"manifest must be .jsonl or .parquet, got {path}")


def read_manifest(path: str | Path) -> list[ClipRecord]:
    """Read a ``.jsonl`` (one JSON object per line) or ``.parquet`` manifest.

    Columns that are not :class:`ClipRecord` fields (the curation scores ``clarity``, ``motion``,
    ``rejected_by``, ...) are kept in ``record.extra``.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: unreadable file, unknown file type, or a bad record (invalid JSON, not an object, no
            ``path``, a non-integer frame/size field): the message names ``file:line`` (Parquet: row number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    fields = set(ClipRecord.__dataclass_fields__) - {"extra"}
    records = []
    for i, row in _read_rows(path):
        if not isinstance(row, dict):
            raise ManifestError(f"{path}:{i}: a record must be a JSON object, got {type(row).__name__}")
        row = {k: v for k, v in row.items() if v is not None}
        if "path" not in row:
            raise ManifestError(f"{path}:{i}: record without 'path'")
        if not isinstance(row["path"], str) or not row["path"]:
            raise ManifestError(f"{path}:{i}: 'path' must be a non-empty string, got {row['path']!r}")
        extra = {k: row.pop(k) for k in set(row) - fields}
        caption = row.get("caption")
        if isinstance(caption, str) and caption.lstrip().startswith("{"):
            try:  # a structured caption serialised as JSON text (Parquet string column)
                caption = json.loads(caption)
            except json.JSONDecodeError:
                pass
        if isinstance(caption, dict):
            row["caption"] = {k: v for k, v in caption.items() if v is not None}
        elif caption is not None and not isinstance(caption, str):
            row["caption"] = str(caption)
        for key in ("start_frame", "end_frame", "width", "height", "num_frames"):
            if key in row:
                try:
                    row[key] = int(row[key])
                except (TypeError, ValueError):
                    raise ManifestError(f"{path}:{i}: '{key}' must be an integer, got {row[key]!r}") from None
        for key in ("start_time", "end_time", "fps"):
            if key in row and (isinstance(row[key], bool) or not isinstance(row[key], (int, float))):
                raise ManifestError(f"{path}:{i}: '{key}' must be a number, got {row[key]!r}")
        row["tier"] = str(row.get("tier", ""))
        p = Path(row["path"])
        row["path"] = str(p if p.is_absolute() else path.parent / p)
        records.append(ClipRecord(**row, extra=extra))
    return records


def write_manifest(records: list[dict], path: str | Path) -> Path:
    """Write records (dicts) as JSONL; used by scripts and tests."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def caption_text(caption: str | dict, rng: random.Random | None = None, drop_p: float = 0.0) -> str:
    """Flatten a caption to text.

    A structured caption (mapping of :data:`STRUCTURED_KEYS` and others to strings) becomes
    ``"value. value. ..."``. With ``rng``, fields other than the first description are dropped with
    probability ``drop_p`` and their order is permuted (the paper's caption synthesis), deterministically
    for a given ``rng`` state.
    """
    if isinstance(caption, str):
        return caption
    keys = [k for k in STRUCTURED_KEYS if caption.get(k)] + sorted(k for k in caption if k not in STRUCTURED_KEYS)
    if rng is not None and len(keys) > 1:
        head, rest = keys[:1], [k for k in keys[1:] if rng.random() >= drop_p]
        rng.shuffle(rest)
        keys = head + rest
    return " ".join(str(caption[k]).strip().rstrip(".") + "." for k in keys)


def tier_value(tier: str) -> int:
    """``"540p"`` -> 540; ``""`` -> a large number (untiered records pass every filter)."""
    digits = "".join(c for c in str(tier) if c.isdigit())
    return int(digits) if digits else 1 << 30
