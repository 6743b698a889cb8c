"""``scripts/curate.py`` on bad or edge-case inputs, as a careful user would try them.

Every bad argument must stop the run before any video is decoded with exit code 2 and one message that names
the bad value, never a traceback; bad *videos* are not bad arguments: they become manifest rows
(``rejected_by = "error: ..."`` or ``"too_short"``) and the run finishes (exit 0). :data:`CASES` is also
imported by the project-wide probe sweep.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from hyvideo.data.curation.config import DEFAULT_CONFIG
from hyvideo.data.curation.video import write_video
from tests.curation.conftest import real_frames

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``build(tmp, good_video) -> (argv, token)``; ``token`` must appear in the message."""

    name: str
    build: Callable[[Path, Path], tuple[list[str], str]]
    block_ray: bool = False  # run as if Ray were not installed


def _io(tmp: Path, good: Path, *extra: str) -> list[str]:
    return ["--input", str(good), "--output", str(tmp / "out"), *extra]


def _yaml(tmp: Path, text: str, name: str = "cfg.yaml") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _default_tree() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def _config_case(tmp: Path, good: Path, tree, token: str) -> tuple[list[str], str]:
    path = _yaml(tmp, yaml.safe_dump(tree) if not isinstance(tree, str) else tree)
    return _io(tmp, good, "--config", str(path)), token


def _without(tree: dict, key: str) -> dict:
    tree.pop(key)
    return tree


def _tier_key(tree: dict) -> dict:
    tree["tiers"][2]["min_sharpness"] = 5
    return tree


def _list(tmp: Path, lines: list[str], name: str = "videos.txt", data: bytes | None = None) -> Path:
    path = tmp / name
    path.write_bytes(data if data is not None else "\n".join(lines).encode())
    return path


def _folder(tmp: Path, files: dict[str, str]) -> Path:
    d = tmp / "folder"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _file(tmp: Path, name: str) -> Path:
    (tmp / name).write_text("not a folder")
    return tmp / name


def _other_run(tmp: Path, good: Path, text: str) -> tuple[list[str], str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "run.json").write_text(text)
    return _io(tmp, good), str(tmp / "out")


def _set(key_value: str, token: str | None = None) -> Callable[[Path, Path], tuple[list[str], str]]:
    return lambda tmp, good: (_io(tmp, good, "--set", key_value), token or key_value)


CASES = [
    # inputs
    Case("missing_input", lambda tmp, good: (["--input", str(tmp / "nope"), "--output", str(tmp / "out")], "nope")),
    Case("empty_folder", lambda tmp, good: (["--input", str(_folder(tmp, {})), "--output", str(tmp / "o")], "folder")),
    Case("folder_without_videos", lambda tmp, good: (
        ["--input", str(_folder(tmp, {"notes.txt": "x", "a.png": "y"})), "--output", str(tmp / "o")], "folder")),
    Case("input_is_not_a_video", lambda tmp, good: (["--input", str(_file(tmp, "notes.pdf")), "--output",
                                                     str(tmp / "o")], "notes.pdf")),
    Case("list_names_missing_files", lambda tmp, good: (
        ["--input", str(_list(tmp, [str(good), "gone1.mp4", "sub/gone2.mp4"])), "--output", str(tmp / "o")],
        "gone1.mp4")),
    Case("list_is_empty", lambda tmp, good: (["--input", str(_list(tmp, ["# nothing yet"])), "--output",
                                              str(tmp / "o")], "videos.txt")),
    Case("list_names_a_folder", lambda tmp, good: (["--input", str(_list(tmp, [str(_folder(tmp, {}))])), "--output",
                                                    str(tmp / "o")], "folder")),
    Case("list_is_binary", lambda tmp, good: (["--input", str(_list(tmp, [], data=bytes(range(256)))), "--output",
                                               str(tmp / "o")], "videos.txt")),
    # --set overrides
    Case("set_without_equals", _set("tiers.4.min_clarity")),
    Case("set_empty_key", _set("=3")),
    Case("set_unknown_key", _set("split.foo=1", "split.foo")),
    Case("set_unknown_section", _set("nosuch.x=1", "nosuch.x")),
    Case("set_key_below_a_value", _set("split.min_clip_s.x=1", "split.min_clip_s.x")),
    Case("set_tier_index_out_of_range", _set("tiers.9.min_clarity=1", "'9'")),
    Case("set_tier_index_not_a_number", _set("tiers.a.min_clarity=1", "'a'")),
    Case("set_text_for_a_number", _set("split.min_clip_s=abc", "'abc'")),
    Case("set_bool_for_an_integer", _set("measure.num_key_frames=yes", "num_key_frames")),
    Case("set_nan_threshold", _set("tiers.0.min_clarity=.nan", "nan")),
    Case("set_value_not_yaml", _set("split.min_clip_s=[1", "[1")),
    Case("set_unknown_tier_name", _set("tiers.4.name=sft", "sft")),
    Case("set_number_for_a_path", _set("measure.clip_model=3", "clip_model")),
    # thresholds
    Case("tiers_not_increasing", _set("tiers.4.min_clarity=1", "min_clarity")),
    Case("negative_duration", _set("tiers.0.min_duration_s=-1", "-1")),
    Case("negative_clarity_everywhere", lambda tmp, good: (
        _io(tmp, good, *[a for i in range(5) for a in ("--set", f"tiers.{i}.min_clarity=-5")]), "-5")),
    Case("text_area_above_one", _set("tiers.0.max_text_area=1.5", "1.5")),
    Case("min_motion_above_max_motion", _set("tiers.0.max_motion=0.01", "0.01")),
    Case("negative_clip_length", _set("split.min_clip_s=-1", "-1")),
    Case("min_clip_longer_than_max", _set("split.min_clip_s=20", "20")),
    Case("zero_detector_threshold", _set("split.detector_threshold=0", "detector_threshold")),
    Case("zero_videos_per_shard", _set("videos_per_shard=0", "videos_per_shard")),
    Case("zero_flow_resolution", _set("measure.flow_short_side_px=0", "flow_short_side_px")),
    Case("missing_model_path", _set("measure.clip_model=/nonexistent/clip", "/nonexistent/clip")),
    # --config files
    Case("config_missing", lambda tmp, good: (_io(tmp, good, "--config", str(tmp / "nope.yaml")), "nope.yaml")),
    Case("config_is_a_folder", lambda tmp, good: (_io(tmp, good, "--config", str(tmp)), str(tmp))),
    Case("config_bad_yaml", lambda tmp, good: _config_case(tmp, good, "split: [unclosed\n", "cfg.yaml")),
    Case("config_binary", lambda tmp, good: (
        _io(tmp, good, "--config", str(_list(tmp, [], "cfg.yaml", bytes(range(256))))), "cfg.yaml")),
    Case("config_not_a_mapping", lambda tmp, good: _config_case(tmp, good, "- 1\n- 2\n", "cfg.yaml")),
    Case("config_missing_section", lambda tmp, good: _config_case(tmp, good, _without(_default_tree(), "tiers"),
                                                                  "tiers")),
    Case("config_unknown_section", lambda tmp, good: _config_case(tmp, good, {**_default_tree(), "extra": 1},
                                                                  "extra")),
    Case("config_tiers_not_a_list", lambda tmp, good: _config_case(tmp, good, {**_default_tree(), "tiers": 5},
                                                                   "tiers")),
    Case("config_unknown_tier_key", lambda tmp, good: _config_case(tmp, good, _tier_key(_default_tree()),
                                                                   "min_sharpness")),
    # --output
    Case("output_is_a_file", lambda tmp, good: (["--input", str(good), "--output", str(_file(tmp, "o.txt"))],
                                                "o.txt")),
    Case("output_below_a_file", lambda tmp, good: (["--input", str(good), "--output",
                                                    str(_file(tmp, "o.txt") / "sub")], "o.txt")),
    Case("output_not_writable", lambda tmp, good: (["--input", str(good), "--output", "/sys/hyvideo_curate_out"],
                                                   "/sys/hyvideo_curate_out")),
    Case("output_holds_another_run", lambda tmp, good: _other_run(tmp, good, '{"videos": [], "config": {}}')),
    Case("output_run_record_corrupt", lambda tmp, good: _other_run(tmp, good, "{not json")),
    # --workers / Ray
    Case("workers_zero", lambda tmp, good: (_io(tmp, good, "--workers", "0"), "0")),
    Case("workers_negative", lambda tmp, good: (_io(tmp, good, "--workers", "-3"), "-3")),
    Case("workers_not_a_number", lambda tmp, good: (_io(tmp, good, "--workers", "two"), "two")),
    Case("missing_output_argument", lambda tmp, good: (["--input", str(good)], "--output")),
    Case("ray_address_without_ray", lambda tmp, good: (_io(tmp, good, "--ray-address", "auto"), "ray"),
         block_ray=True),
]


@pytest.fixture(scope="module")
def good_video(tmp_path_factory) -> Path:
    return write_video(real_frames("bikes", 0, 30), tmp_path_factory.mktemp("good") / "good.mp4", 25)


def _curate():
    sys.path.insert(0, str(ROOT / "scripts"))
    import curate  # noqa: PLC0415

    return curate


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_argument_exits_2_naming_the_value(case, tmp_path, good_video, capsys, caplog, monkeypatch):
    argv, token = case.build(tmp_path, good_video)
    if case.block_ray:
        monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError
    with pytest.raises(SystemExit) as e:
        _curate().main(argv)
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert e.value.code == 2, text
    assert token in out.err, f"message does not name {token!r}: {out.err}"
    assert "Traceback" not in text
    assert not list(tmp_path.glob("out/shards/*")), "work started before the bad argument was reported"


def test_bad_argument_in_a_real_process(tmp_path, good_video):
    """The same contract seen from the shell: exit status 2, a one-line message, nothing else."""
    bad = _yaml(tmp_path, "split: [unclosed\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "curate.py"), *_io(tmp_path, good_video),
                           "--config", str(bad)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("curate.py: error: curation config") and "cfg.yaml" in proc.stderr


def _bad_videos(root: Path, good: Path) -> dict[str, str]:
    """Files that are not decodable videos, and 1- and 2-frame videos; ``{name: expected rejected_by prefix}``."""
    import av  # noqa: PLC0415

    root.mkdir()
    data = good.read_bytes()
    (root / "good.mp4").write_bytes(data)
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    (root / "truncated.mov").write_bytes(data[: len(data) // 2])
    with av.open(str(root / "audio_only.mp4"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(__import__("numpy").zeros((1, 1024), "float32"), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode())
    frames = real_frames("bikes", 0, 2)
    write_video(frames[:1], root / "one_frame.mp4", 25)
    write_video(frames, root / "two_frames.mp4", 25)
    (root / "notes.txt").write_text("ignored: not a video extension")
    return {"empty.mp4": "error:", "text.mp4": "error:", "truncated.mov": "error:", "audio_only.mp4": "error:",
            "one_frame.mp4": "too_short", "two_frames.mp4": "too_short"}


def test_bad_videos_are_logged_skips_with_manifest_rows(tmp_path, good_video, capsys, caplog):
    expected = _bad_videos(tmp_path / "in", good_video)
    paths = _curate().main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--workers", "1",
                            "--set", "split.min_clip_s=0.5"])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err + caplog.text
    rows = pq.read_table(paths["manifest"]).to_pylist()
    by_file = {}
    for r in rows:
        by_file.setdefault(Path(r["path"]).name, []).append(r)
    assert set(by_file) == {"good.mp4", *expected}
    for name, prefix in expected.items():
        assert [r["rejected_by"][:len(prefix)] for r in by_file[name]] == [prefix], by_file[name]
        assert by_file[name][0]["tier"] == "" and by_file[name][0]["shot_index"] == -1
    assert not any(r["rejected_by"].startswith("error") for r in by_file["good.mp4"])
    summary = out.out[out.out.index("{"):]
    assert '"too_short": 2' in summary and '"error": 4' in summary
    assert "no video stream" in by_file["audio_only.mp4"][0]["rejected_by"]
