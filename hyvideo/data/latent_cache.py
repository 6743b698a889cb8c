"""Pre-encoded latent and text caches for DiT training (written by ``scripts/encode_latents.py``).

Layout of a cache directory:

- ``index.jsonl``: one line per sample ``{"file", "bucket", "caption", "latent_shape"}``;
- ``NNNNNNNN.safetensors``: ``latent`` ``[C_z, T_z, H_z, W_z]`` float32 **unscaled** (``latent_dist.mode()``;
  the trainer multiplies by the scaling factor 0.476986, as the released I2V cache), ``text_states``
  ``[L_txt, D_txt]``, ``text_mask`` ``[L_txt]`` int64, ``text_states_2`` ``[D_txt2]``;
- ``null_text.safetensors``: the same three text tensors for the empty caption (CFG text dropout), once per
  prompt template: keys ``video.<name>`` and ``image.<name>`` (the image template gives another ``L_txt``);
- ``meta.json``: the VAE/text config the cache was made with.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

TEXT_KEYS = ("text_states", "text_mask", "text_states_2")


def write_entry(cache_dir: str | Path, i: int, latent: torch.Tensor, text: dict, *, bucket: tuple,
                caption: str) -> dict:
    """Write sample ``i`` (atomically) and return its index line (see the module docstring)."""
    cache_dir = Path(cache_dir)
    name = f"{i:08d}.safetensors"
    tensors = {"latent": latent.float().contiguous(), **{k: text[k].contiguous() for k in TEXT_KEYS}}
    tmp = cache_dir / (name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(cache_dir / name)
    return {"file": name, "bucket": list(bucket), "caption": caption, "latent_shape": list(latent.shape)}


def write_index(cache_dir: str | Path, lines: list[dict], null_text: dict[str, dict], meta: dict) -> None:
    """Write ``index.jsonl`` (last, so a cache without it is incomplete), ``meta.json`` and the empty-caption
    text ``null_text[kind][name]`` for kind ``"video"`` and ``"image"``."""
    cache_dir = Path(cache_dir)
    save_file({f"{kind}.{k}": null_text[kind][k].contiguous() for kind in ("video", "image") for k in TEXT_KEYS},
              str(cache_dir / "null_text.safetensors"))
    (cache_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    (cache_dir / "index.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


class LatentCacheDataset(Dataset):
    """Reads a latent cache; keys are ``(index, step, slot)`` as for :class:`VideoClipDataset`.

    Raises:
        FileNotFoundError: the directory has no ``index.jsonl``.
    """

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        index = self.dir / "index.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"no latent cache index at {index}; run scripts/encode_latents.py first")
        self.lines = [json.loads(x) for x in index.read_text().splitlines() if x.strip()]
        self.meta = json.loads((self.dir / "meta.json").read_text())
        flat = load_file(str(self.dir / "null_text.safetensors"))
        self.null_text = {kind: {k: flat[f"{kind}.{k}"] for k in TEXT_KEYS} for kind in ("video", "image")}

    def bucket_keys(self) -> list[tuple]:
        return [tuple(x["bucket"]) for x in self.lines]

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, key) -> dict:
        idx, _, slot = key if isinstance(key, tuple) else (key, 0, -1)
        line = self.lines[idx]
        t = load_file(str(self.dir / line["file"]))
        return {**t, "caption": line["caption"], "index": idx, "slot": slot, "bucket": tuple(line["bucket"])}


def write_subset(src_dir: str | Path, dst_dir: str | Path, keep) -> int:
    """A cache that holds the entries of ``src_dir`` for which ``keep(index_line)`` is true, without copying them:
    its ``index.jsonl`` names the files relative to ``dst_dir`` (``../<src>/NNNNNNNN.safetensors``), its
    ``meta.json`` and ``null_text.safetensors`` are copies (the index is written last, as by :func:`write_index`).

    Returns:
        The number of entries kept.

    Raises:
        FileNotFoundError: ``src_dir`` is not a cache (no ``index.jsonl``).
        ValueError: no entry kept (a cache with no samples cannot train).
    """
    import os  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    src, dst = Path(src_dir).resolve(), Path(dst_dir).resolve()
    lines = LatentCacheDataset(src).lines
    rel = Path(os.path.relpath(src, dst))
    kept = [{**line, "file": (rel / line["file"]).as_posix()} for line in lines if keep(line)]
    if not kept:
        raise ValueError(f"write_subset: no entry of the {len(lines)} in {src} was kept")
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("meta.json", "null_text.safetensors"):
        shutil.copyfile(src / name, dst / name)
    tmp = dst / "index.jsonl.tmp"
    tmp.write_text("".join(json.dumps(line) + "\n" for line in kept))
    tmp.replace(dst / "index.jsonl")
    return len(kept)


def collate_latents(batch: list[dict]) -> dict:
    """Stack cache samples: ``latent`` ``[B, C_z, T_z, H_z, W_z]`` and the text tensors with a batch dim."""
    out = {k: torch.stack([b[k] for b in batch]) for k in ("latent", *TEXT_KEYS)}
    out.update(caption=[b["caption"] for b in batch], index=torch.tensor([b["index"] for b in batch]),
               slot=torch.tensor([b["slot"] for b in batch]), bucket=batch[0]["bucket"])
    return out
