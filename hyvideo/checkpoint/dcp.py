"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): safe reads, integrity checks, streaming export.

A DCP checkpoint is a folder: ``__<rank>_0.distcp`` (each rank's shards, written in parallel by that rank) and
``.metadata`` (the global layout: every tensor's full shape, dtype and which file/offset holds each chunk).
DCP reshards on load (any world size reads any checkpoint), so this is the format of every training checkpoint.

Safety: DCP's own reader unpickles ``.metadata`` with plain ``pickle`` and loads non-tensor items with
``weights_only=False``, so a crafted checkpoint could run code. :class:`SafeFileSystemReader` unpickles the
metadata with an allow-list of DCP's own metadata classes (plus ``torch.Size``, dtypes and paths) and
:class:`SafeLoadPlanner` refuses non-tensor items; tensor data are read by DCP with ``weights_only=True``.

Export: :func:`write_safetensors` copies chosen tensors of a checkpoint into a ``.safetensors`` file without a
process group or a GPU, one bounded batch at a time, straight into the memory-mapped output file, so the
consolidated model is never held in process memory (a 13B fp32 model is 52 GB).
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint import filesystem as dcp_filesystem
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

METADATA_FILE = ".metadata"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint's metadata or items reference Python objects outside the allow-list (refused unread)."""


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint folder lacks its metadata or a shard file, or a shard is shorter than the metadata says."""


# --------------------------------------------------------------------------------------------- safe reading
_SAFE_CLASSES = {
    ("torch", "Size"): torch.Size,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,  # str -> torch.layout lookup
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"): dcp_filesystem._StorageInfo,
    **{("pathlib", n): getattr(pathlib, n) for n in ("Path", "PosixPath", "WindowsPath", "PurePosixPath",
                                                      "PureWindowsPath")},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata: its dataclasses / enums, ``torch.Size``, dtypes, layouts and paths only."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_CLASSES:
            return _SAFE_CLASSES[(module, name)]
        if module == "torch.distributed.checkpoint.metadata" and isinstance(getattr(dcp_metadata, name, None), type):
            return getattr(dcp_metadata, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout,
                                                                         torch.memory_format)):
            return getattr(torch, name)
        raise UnsafeCheckpointError(f"checkpoint metadata references {module}.{name}, which is not part of a DCP "
                                    f"checkpoint; refusing to unpickle it (it could run code)")


def read_metadata(path: str | os.PathLike) -> dcp_metadata.Metadata:
    """The ``.metadata`` of a DCP checkpoint folder, unpickled with the allow-list.

    Raises:
        IncompleteCheckpointError: no metadata file, or it is empty / truncated.
        UnsafeCheckpointError: it references anything outside the allow-list.
    """
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        raise IncompleteCheckpointError(f"{path} has no {METADATA_FILE} (not a finished DCP checkpoint)")
    try:
        with open(file, "rb") as f:
            meta = _MetadataUnpickler(f).load()
    except UnsafeCheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure of a truncated file
        raise IncompleteCheckpointError(f"{file} ({file.stat().st_size} bytes) is unreadable: "
                                        f"{type(e).__name__}: {e}") from None
    if not isinstance(meta, dcp_metadata.Metadata):
        raise UnsafeCheckpointError(f"{file} holds a {type(meta).__name__}, not DCP metadata")
    return meta


class SafeFileSystemReader(FileSystemReader):
    """:class:`FileSystemReader` whose metadata is read by :func:`read_metadata` (allow-listed unpickling)."""

    def read_metadata(self, *args, **kwargs) -> dcp_metadata.Metadata:
        meta = read_metadata(self.path)
        if getattr(meta, "storage_meta", None) is None:
            meta.storage_meta = dcp_metadata.StorageMeta()
        meta.storage_meta.load_id = self.load_id
        return meta


class SafeLoadPlanner(DefaultLoadPlanner):
    """Loads tensors only: a non-tensor (pickled) item would be unpickled with ``weights_only=False`` by DCP."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        raise UnsafeCheckpointError(f"checkpoint item {read_item.dest_index.fqn!r} is a pickled object; "
                                    f"this trainer writes tensors only and refuses to unpickle it")


def check_complete(path: str | os.PathLike) -> dcp_metadata.Metadata:
    """Metadata of a checkpoint folder whose every shard file exists and is as long as the metadata says.

    Catches zero-byte and truncated shards (a kill during a copy, a full disk) before any load starts.

    Raises:
        IncompleteCheckpointError, UnsafeCheckpointError: see :func:`read_metadata`; a missing or short shard.
    """
    meta = read_metadata(path)
    need: dict[str, int] = {}
    for info in (meta.storage_data or {}).values():
        need[info.relative_path] = max(need.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(need.items()):
        file = Path(path) / name
        have = file.stat().st_size if file.is_file() else -1
        if have < size:
            raise IncompleteCheckpointError(f"shard {file} has {max(have, 0)} bytes, the metadata needs {size}"
                                            + (" (missing)" if have < 0 else ""))
    return meta


# --------------------------------------------------------------------------------------------- save / load
def save(state_dict: dict, path: str | os.PathLike, *, process_group=None, async_save: bool = False):
    """Write ``state_dict`` (nested dicts of tensors / DTensors) as a DCP checkpoint folder; collective.

    Every rank writes its own shards (replicated plain tensors once); files are fsynced. With ``async_save`` the
    state is copied to CPU memory and written by a background thread (returns its future; wait on it before
    trusting the folder), using ``process_group`` (give it a separate gloo group so that its collectives do
    not interleave with training's).

    Returns:
        None, or the future of an asynchronous save.
    """
    writer = FileSystemWriter(str(path), single_file_per_rank=True, sync_files=True)
    if async_save:
        return dcp.async_save(state_dict, storage_writer=writer, process_group=process_group)
    dcp.save(state_dict, storage_writer=writer, process_group=process_group)
    return None


def load(state_dict: dict, path: str | os.PathLike, *, process_group=None, no_dist: bool = False) -> None:
    """Fill ``state_dict`` in place from a DCP checkpoint (any world size: DCP reshards); collective unless
    ``no_dist``. Tensors only, metadata read with the allow-list.

    Raises:
        UnsafeCheckpointError, IncompleteCheckpointError: see :func:`read_metadata`.
        RuntimeError: a requested key is missing or its shape differs (DCP's message).
    """
    dcp.load(state_dict, storage_reader=SafeFileSystemReader(str(path)), planner=SafeLoadPlanner(),
             process_group=process_group, no_dist=no_dist)


def tensor_entries(path: str | os.PathLike, prefix: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """``{key without prefix: (full shape, dtype)}`` of the checkpoint's tensors whose key starts with ``prefix``."""
    meta = read_metadata(path)
    out = {}
    for key, md in meta.state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(md, dcp_metadata.TensorStorageMetadata):
            out[key[len(prefix):]] = (md.size, md.properties.dtype)
    return out


# --------------------------------------------------------------------------------------------- export
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
              torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL"}


def _safetensors_header(entries: dict[str, tuple[torch.Size, torch.dtype]], metadata: dict[str, str]):
    """``(header bytes, {key: (byte offset in the data section, nbytes)})`` of the safetensors format
    (https://github.com/huggingface/safetensors#format): an 8-byte little-endian header length, the JSON
    header padded with spaces to a multiple of 8, then the tensors back to back. Larger dtypes go first so
    every tensor starts at a multiple of its element size (needed to view it in place)."""
    order = sorted(entries, key=lambda k: (-entries[k][1].itemsize, k))
    header, offsets, pos = {"__metadata__": metadata}, {}, 0
    for key in order:
        shape, dtype = entries[key]
        nbytes = math.prod(shape) * dtype.itemsize
        header[key] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [pos, pos + nbytes]}
        offsets[key] = (pos, nbytes)
        pos += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % 8)
    return len(text).to_bytes(8, "little") + text, offsets, pos


def write_safetensors(path: str | os.PathLike, out_file: str | os.PathLike, prefix: str,
                      rename: Callable[[str], str] = lambda k: k, *, dtype: torch.dtype | None = None,
                      batch_bytes: int = 1 << 30, metadata: dict[str, str] | None = None) -> Path:
    """Consolidate the tensors ``prefix*`` of a DCP checkpoint into one ``.safetensors`` file, streaming.

    The output is created at its final size and memory-mapped; DCP reads each batch of at most ``batch_bytes``
    straight into its place (reading each stored chunk, copying the needed part), so the process holds one
    stored chunk at a time, never the consolidated model. Runs without a process group, on CPU. The file is
    written to ``out_file.tmp``, fsynced and renamed.

    Args:
        path: DCP checkpoint folder.
        out_file: the ``.safetensors`` to write.
        prefix: key prefix to export (e.g. ``"model."``); it is stripped, then ``rename`` maps the rest.
        dtype: cast to this dtype (default: as stored); casting reads each batch into a temporary first.
        batch_bytes: upper bound of one load call.
        metadata: string metadata for the header.

    Returns:
        ``out_file``.

    Raises:
        ValueError: no tensor has ``prefix``.
    """
    stored = tensor_entries(path, prefix)
    if not stored:
        raise ValueError(f"{path} holds no tensor whose key starts with {prefix!r}")
    names = {rename(k): k for k in stored}
    entries = {n: (stored[k][0], dtype or stored[k][1]) for n, k in names.items()}
    header, offsets, data_bytes = _safetensors_header(entries, metadata or {})
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)
    buf = torch.from_file(str(tmp), shared=True, size=len(header) + data_bytes, dtype=torch.uint8)
    batch, size = {}, 0
    for name in sorted(offsets, key=lambda n: offsets[n][0]):
        start, nbytes = offsets[name]
        shape, out_dtype = entries[name]
        view = buf[len(header) + start: len(header) + start + nbytes].view(out_dtype).view(shape)
        batch[name] = view
        size += nbytes
        if size >= batch_bytes:
            _load_into(path, prefix, names, batch, stored)
            batch, size = {}, 0
    if batch:
        _load_into(path, prefix, names, batch, stored)
    del buf, batch, view
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_file)
    return out_file


def _load_into(path, prefix: str, names: dict[str, str], views: dict[str, torch.Tensor], stored: dict) -> None:
    """DCP-load the stored tensors behind ``views`` (output name -> view of the mapped file) into the views."""
    targets, casts = {}, {}
    for name, view in views.items():
        key = prefix + names[name]
        shape, stored_dtype = stored[names[name]]
        if stored_dtype == view.dtype:
            targets[key] = view
        else:
            targets[key] = casts[name] = torch.empty(shape, dtype=stored_dtype)
    load(targets, path, no_dist=True)
    for name, tmp in casts.items():
        views[name].copy_(tmp)
