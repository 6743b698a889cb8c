"""Nano data set vocabulary, held-out triples, seeded specs and rendering geometry."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from hyvideo.data.synthetic.attributes import DEFAULT_CONFIG, ClipSpec, heldout_triples, load_nano_config
from hyvideo.data.synthetic.geometry import apply_h, camera_matrix
from hyvideo.data.synthetic.render import render_eval_clip, render_shot, render_video
from hyvideo.data.synthetic.sampling import eval_spec, sample_clip_spec, sample_video
from hyvideo.data.synthetic.segment import segment


def test_vocabulary_and_heldout_design():
    cfg = load_nano_config()
    assert len(cfg.shapes) >= 5 and len(cfg.colours) == 8 and len(cfg.motions) == 8
    held = heldout_triples()
    assert len(held) >= 48 and len(set(held)) == len(held)
    assert set(held) <= set(cfg.valid_triples())
    train = cfg.training_triples()
    # every word and every pair of words is still seen in training: only the triples are new
    for i, j in itertools.combinations(range(3), 2):
        assert {(t[i], t[j]) for t in held} <= {(t[i], t[j]) for t in train}
    with pytest.raises(ValueError, match="unknown word"):
        dataclasses.replace(cfg, heldout=(("red", "hexagon", "left"),))
    with pytest.raises(ValueError, match="removes colours"):
        dataclasses.replace(cfg, heldout=tuple(t for t in cfg.valid_triples() if t[0] == "red"))


def test_config_base_file_supplies_the_keys_a_config_does_not_set(tmp_path):
    base = load_nano_config()
    (tmp_path / "dataset.yaml").write_text(DEFAULT_CONFIG.read_text())
    (tmp_path / "lora.yaml").write_text("base: dataset.yaml\ncolours: {teal: [0, 128, 128]}\nheldout: []\n")
    cfg = load_nano_config(tmp_path / "lora.yaml")
    assert list(cfg.colours) == ["teal"] and cfg.heldout == ()        # set keys replace the whole value
    assert cfg.object_radius == base.object_radius and cfg.shapes == base.shapes  # the rest is the base's
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_nano_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: dataset.yaml\nobject_size: 3\n")
    with pytest.raises(ValueError, match="unknown keys \\['object_size'\\]"):
        load_nano_config(tmp_path / "c.yaml")


def test_specs_are_deterministic_and_never_use_heldout_triples():
    cfg = load_nano_config()
    held = set(cfg.heldout)
    a = [sample_video(np.random.default_rng([7, i])) for i in range(120)]
    b = [sample_video(np.random.default_rng([7, i])) for i in range(120)]
    assert a == b
    objs = [o for shots in a for s in shots for o in s.objects]
    assert not {o.triple for o in objs} & held
    assert {o.motion for o in objs} == set(cfg.motions) and {o.shape for o in objs} == set(cfg.shapes)
    kinds = {s.negative for shots in a for s in shots} | {"joined" for shots in a if len(shots) > 1}
    assert kinds == {"", "blur", "static", "text", "joined"}
    spec = a[0][0]
    assert ClipSpec.from_dict(spec.to_dict()) == spec
    fr1, fr2 = render_shot(spec), render_shot(spec)
    assert fr1.dtype == np.uint8 and fr1.shape == (spec.num_frames, cfg.size_px, cfg.size_px, 3)
    assert np.array_equal(fr1, fr2)


def test_every_shot_keeps_something_moving_unless_it_is_a_static_negative():
    for i in range(150):
        for s in sample_video(np.random.default_rng([11, i])):
            if s.negative != "static":
                assert s.camera != "none" or s.bg_drift_deg != 0 or any(o.motion != "still" for o in s.objects)


@pytest.mark.parametrize("motion", ["left", "right", "up", "down", "grow", "shrink", "rotate", "still"])
def test_eval_clip_motion_is_visible_at_64px_17_frames(motion):
    clip = render_eval_clip(("yellow", "square", motion), seed=3)
    assert clip.shape == (17, 64, 64, 3)
    seg = segment(clip)
    (x0, y0), (x1, y1) = seg.centroids[0], seg.centroids[-1]
    travel, growth = np.hypot(x1 - x0, y1 - y0), seg.areas[-1] / seg.areas[0]
    if motion in ("left", "right", "up", "down"):
        least = 16 * load_nano_config().motion_speed[0]  # the slowest move of the config over 16 frame steps
        assert least >= 0.2  # a fifth of the side (>= 12 px at 64 px), what the direction test needs
        assert travel >= 0.9 * least
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[motion]
        assert (x1 - x0) * dx + (y1 - y0) * dy > 0.85 * least
    else:
        assert travel < 0.02
    if motion in ("grow", "shrink"):
        assert (growth if motion == "grow" else 1 / growth) > 1.9
    elif motion in ("still", "rotate"):
        assert 0.85 < growth < 1.15


def test_camera_moves_follow_the_curation_conventions():
    centre = np.array([[0.5, 0.5]])
    edge = np.array([[0.7, 0.5]])
    assert apply_h(camera_matrix("pan_left", 0.01, 10), centre)[0, 0] > 0.5  # camera left: content right
    assert apply_h(camera_matrix("pan_right", 0.01, 10), centre)[0, 0] < 0.5
    assert apply_h(camera_matrix("tilt_up", 0.01, 10), centre)[0, 1] > 0.5  # camera up: content down
    assert apply_h(camera_matrix("tilt_down", 0.01, 10), centre)[0, 1] < 0.5
    assert apply_h(camera_matrix("zoom_in", 0.01, 10), edge)[0, 0] > 0.7
    assert apply_h(camera_matrix("zoom_out", 0.01, 10), edge)[0, 0] < 0.7
    with pytest.raises(ValueError, match="unknown camera"):
        camera_matrix("dolly_in", 0.01, 1)


def test_joined_video_ranges_and_negatives():
    rng = np.random.default_rng(0)
    shots = [sample_clip_spec(rng, background=b) for b in ("plain", "texture", "gradient")]
    frames, ranges = render_video(shots)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(frames)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    static = render_shot(dataclasses.replace(shots[0], negative="static"))
    assert all(np.array_equal(static[0], f) for f in static)
    sharp, blurred = render_shot(shots[0]), render_shot(dataclasses.replace(shots[0], negative="blur"))
    energy = [(np.diff(x.astype(float), axis=2) ** 2).mean() for x in (sharp, blurred)]  # blur spreads edges
    assert energy[1] < 0.2 * energy[0]
    with pytest.raises(ValueError, match="not a valid"):
        eval_spec(("red", "circle", "rotate"), 0)


def test_geometry_keys_set_angle_and_radii():
    """``object_angle_deg`` [0, 0] draws shapes upright, [0, 360] at random angles; ``object_radius`` /
    ``small_radius`` bound the size."""
    cfg = dataclasses.replace(load_nano_config(), object_angle_deg=(0.0, 0.0), object_radius=(0.2, 0.25),
                              small_radius=(0.12, 0.14), motion_speed=(0.013, 0.016))
    objs = [o for i in range(40) for o in sample_clip_spec(np.random.default_rng([3, i]), cfg).objects]
    assert all(o.angle_deg == 0.0 for o in objs)
    single = [o for i in range(40) for m in ("left", "grow")
              for o in eval_spec(("red", "star", m), i, cfg=cfg).objects]
    assert all(0.2 <= o.radius <= 0.25 for o in single if o.motion == "left")
    assert all(0.12 <= o.radius <= 0.14 for o in single if o.motion == "grow")
    turned = dataclasses.replace(cfg, object_angle_deg=(0.0, 360.0))
    turned_objs = [o for i in range(40) for o in sample_clip_spec(np.random.default_rng([3, i]), turned).objects]
    assert len({round(o.angle_deg) for o in turned_objs}) > 20
