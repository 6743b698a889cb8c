"""A latent-cache view (hyvideo.data.latent_cache.write_subset): the kept entries load, nothing is copied."""

from __future__ import annotations

import json

import pytest
import torch

from hyvideo.data.latent_cache import LatentCacheDataset, write_entry, write_index, write_subset


def _cache(root, captions):
    root.mkdir()
    text = {"text_states": torch.zeros(4, 8), "text_mask": torch.ones(4, dtype=torch.int64),
            "text_states_2": torch.zeros(8)}
    lines = [write_entry(root, i, torch.full((16, 1, 2, 2), float(i)), text, bucket=("image", "64", 16, 16, 1),
                         caption=c) for i, c in enumerate(captions)]
    null = {kind: {k: v.clone() for k, v in text.items()} for kind in ("video", "image")}
    write_index(root, lines, null, {"made_by": "test"})


def test_subset_names_the_source_files_and_loads_them(tmp_path):
    _cache(tmp_path / "full", ["one", "two and", "three", "four and"])
    n = write_subset(tmp_path / "full", tmp_path / "view", lambda line: " and " not in line["caption"] + " ")
    assert n == 2
    ds = LatentCacheDataset(tmp_path / "view")
    assert [ds[i]["caption"] for i in range(len(ds))] == ["one", "three"]
    assert [float(ds[i]["latent"][0, 0, 0, 0]) for i in range(len(ds))] == [0.0, 2.0]  # the source's tensors
    assert [f.name for f in (tmp_path / "view").glob("*.safetensors")] == ["null_text.safetensors"]  # no copies
    assert json.loads((tmp_path / "view" / "meta.json").read_text()) == {"made_by": "test"}


def test_empty_subset_is_an_error(tmp_path):
    _cache(tmp_path / "full", ["one"])
    with pytest.raises(ValueError, match="no entry of the 1"):
        write_subset(tmp_path / "full", tmp_path / "view", lambda line: False)
    with pytest.raises(FileNotFoundError):
        write_subset(tmp_path / "nothing", tmp_path / "view2", lambda line: True)
