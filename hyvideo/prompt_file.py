"""Prompt files for batch sampling (``sample_video.py --prompt-file``): one video per prompt and seed, resumable.

Formats, by suffix:

- ``.txt``: one prompt per line;
- ``.csv``: a header with a ``prompt`` column, optional ``seed``, ``negative_prompt``, ``name``;
- ``.jsonl``: one object per line with ``prompt`` and the same optional keys.

Every entry gets a stable output name ``<line>_<prompt slug>`` (no time stamp), so a rerun of the same command
finds the finished videos and skips them. Bad lines are reported one by one (blank, too long, duplicate,
unparsable) and skipped; the other lines still run.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

MAX_PROMPT_CHARS = 2000  # the LLM reads 256 tokens (~1000 characters of English); longer is surely a mistake
NAME_SLUG_CHARS = 60


@dataclass(frozen=True)
class PromptEntry:
    """One line of a prompt file: the prompt, its optional seed and negative prompt, and its output name."""

    line: int
    prompt: str
    seed: int | None = None
    negative_prompt: str | None = None
    name: str = ""


def _slug(text: str) -> str:
    s = re.sub(r"[^\w\-]+", "_", text, flags=re.UNICODE).strip("_")
    return s[:NAME_SLUG_CHARS] or "prompt"


def _rows(path: Path) -> list[tuple[int, dict | None, str]]:
    """``(line number, fields or None, error)`` per line of the file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for i, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                rows.append((i, {"prompt": ""}, ""))
                continue
            try:
                obj = json.loads(raw)
                rows.append((i, obj if isinstance(obj, dict) else None, "" if isinstance(obj, dict) else "not an object"))
            except json.JSONDecodeError as e:
                rows.append((i, None, f"invalid JSON ({e.msg})"))
        return rows
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise ValueError(f"{path}: a CSV prompt file needs a header with a 'prompt' column, got {reader.fieldnames}")
        return [(reader.line_num, dict(row), "") for row in reader]
    return [(i, {"prompt": raw}, "") for i, raw in enumerate(text.splitlines(), 1)]


def read_prompt_file(path: str | Path) -> tuple[list[PromptEntry], list[str]]:
    """The usable entries of a prompt file and one message per skipped line.

    Raises:
        ValueError: the file does not exist, has an unknown suffix, a CSV without a ``prompt`` column, or no usable
            line at all.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--prompt-file {path} does not exist")
    if path.suffix not in (".txt", ".csv", ".jsonl"):
        raise ValueError(f"--prompt-file {path}: unknown format {path.suffix!r}; allowed: .txt, .csv, .jsonl")
    entries, messages, seen = [], [], {}
    for line, fields, error in _rows(path):
        where = f"{path.name} line {line}"
        if fields is None:
            messages.append(f"{where}: {error}; skipped")
            continue
        prompt = str(fields.get("prompt") or "").strip()
        if not prompt:
            messages.append(f"{where}: blank prompt; skipped")
            continue
        if len(prompt) > MAX_PROMPT_CHARS:
            messages.append(f"{where}: prompt of {len(prompt)} characters is too long (max {MAX_PROMPT_CHARS}; the "
                            f"text encoder reads 256 tokens); skipped")
            continue
        try:
            seed = None if fields.get("seed") in (None, "") else int(fields["seed"])
        except (TypeError, ValueError):
            messages.append(f"{where}: seed {fields.get('seed')!r} is not an integer; skipped")
            continue
        key = (prompt, seed)
        if key in seen:
            messages.append(f"{where}: duplicate of line {seen[key]}; skipped")
            continue
        seen[key] = line
        name = str(fields.get("name") or "").strip() or f"{line:05d}_{_slug(prompt)}"
        entries.append(PromptEntry(line, prompt, seed, (fields.get("negative_prompt") or None), _slug(name)))
    if not entries:
        raise ValueError(f"--prompt-file {path} has no usable prompt" + (f": {messages[0]}" if messages else ""))
    return entries, messages
