"""FVD: Fréchet distance vs cd-fvd's formula (scipy) and torchmetrics' FID math; feature models in their formats."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from hyvideo.eval.fvd import (
    frechet_distance,
    fvd,
    fvd_from_features,
    gaussian_stats,
    load_feature_model,
    video_features,
)

REL_TOL = 1e-3  # acceptance bound (relative); measured ~1e-12 vs scipy, ~1e-9 vs torchmetrics' eigenvalue route


def cdfvd_reference(real: np.ndarray, fake: np.ndarray) -> float:
    """cd-fvd's ``FeatureStats.get_mean_cov`` + ``compute_fvd_from_stats``, written out (cd-fvd itself imports
    torchvision, which does not install beside our torch)."""
    def mean_cov(x):
        x64 = x.astype(np.float64)
        mean = x64.sum(0) / len(x)
        return mean, x64.T @ x64 / len(x) - np.outer(mean, mean)

    mu_f, s_f = mean_cov(fake)
    mu_r, s_r = mean_cov(real)
    m = np.square(mu_r - mu_f).sum()
    s = scipy.linalg.sqrtm(np.dot(s_r, s_f))  # cd-fvd: sqrtm(..., disp=False), deprecated in SciPy 1.17
    return float(np.real(m + np.trace(s_f + s_r - s * 2)))


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(96, 24))
    mix = np.eye(24) + 0.3 * rng.normal(size=(24, 24))
    fake = rng.normal(size=(80, 24)) @ mix + 0.5
    return real.astype(np.float32), fake.astype(np.float32)


def test_frechet_matches_cdfvd_formula_and_torchmetrics(features):
    from torchmetrics.image.fid import _compute_fid

    real, fake = features
    ours = fvd_from_features(real, fake)
    ref = cdfvd_reference(real, fake)
    assert abs(ours - ref) <= REL_TOL * abs(ref)
    mu_r, s_r = gaussian_stats(real)
    mu_f, s_f = gaussian_stats(fake)
    tm = _compute_fid(*(torch.from_numpy(v) for v in (mu_r, s_r, mu_f, s_f))).item()
    assert abs(ours - tm) <= REL_TOL * abs(tm)
    assert ours > 1.0


def test_frechet_known_values(features):
    # Diagonal Gaussians: FD = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    real, _ = features
    assert abs(fvd_from_features(real, real)) < 1e-6


def test_feature_stats_match_cdfvd_when_installed(features):
    """cd-fvd's own FeatureStats (numpy only), loaded by file path: ``import cdfvd`` needs torchvision."""
    spec = importlib.util.find_spec("cdfvd")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("cd-fvd is not installed (it requires torchvision; install with --no-deps to run this)")
    path = Path(spec.submodule_search_locations[0]) / "utils" / "metric_utils.py"
    mod_spec = importlib.util.spec_from_file_location("cdfvd_metric_utils", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    real = features[0]
    stats = mod.FeatureStats(capture_mean_cov=True)
    stats.append(real[:50])
    stats.append(real[50:])
    mu, cov = stats.get_mean_cov()
    ours_mu, ours_cov = gaussian_stats(real)
    np.testing.assert_allclose(ours_mu, mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours_cov, cov, rtol=0, atol=1e-12)


def _videos(n, t, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (t, h, w, 3), generator=g, dtype=torch.uint8) for _ in range(n)]


def test_i3d_torchscript_protocol(tiny_i3d):
    model = load_feature_model(tiny_i3d.parent)  # a folder holding i3d_torchscript.pt works too
    assert (model.kind, model.clip_frames, model.size) == ("i3d", 16, 224)
    real = _videos(4, 18, 40, 56, seed=0)  # longer than 16 frames: only the first 16 are used
    fake = [v // 2 + 64 for v in _videos(3, 16, 48, 48, seed=1)]
    got = fvd(real, fake, model, batch_size=3)
    # Reference: cd-fvd's preprocess_i3d (bilinear to 224x224, [-1, 1]) and the I3D call of StyleGAN-V.
    net = torch.jit.load(str(tiny_i3d))

    def ref_feats(videos):
        out = []
        for v in videos:
            x = F.interpolate(v[:16].permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear",
                              align_corners=False)
            x = 2.0 * x.permute(1, 0, 2, 3)[None] / 255.0 - 1
            with torch.no_grad():
                out.append(net(x, rescale=False, resize=False, return_features=True).double())
        return torch.cat(out).numpy()

    ref = cdfvd_reference(ref_feats(real), ref_feats(fake))
    assert got["feature_dim"] == 400 and got["num_real"] == 4 and got["num_fake"] == 3
    assert abs(got["fvd"] - ref) <= REL_TOL * abs(ref)


def test_videomae_folder(tiny_videomae):
    from transformers import VideoMAEForVideoClassification

    model = load_feature_model(tiny_videomae)
    assert (model.kind, model.clip_frames, model.size) == ("videomae", 4, 32)
    videos = _videos(2, 5, 40, 40, seed=2)
    feats = video_features(videos, model)
    net = VideoMAEForVideoClassification.from_pretrained(tiny_videomae).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)  # the fixture's preprocessor_config.json
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    x = torch.stack([F.interpolate(v[:4].permute(0, 3, 1, 2).float(), size=(32, 32), mode="bilinear",
                                   align_corners=False) for v in videos]) / 255.0  # [B, T, C, H, W]
    with torch.no_grad():
        ref = net.fc_norm(net.videomae(pixel_values=(x - mean) / std).last_hidden_state.mean(1)).double().numpy()
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-5)


def test_errors(tmp_path, tiny_i3d):
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        load_feature_model(tmp_path / "missing")
    (tmp_path / "weights.pt").write_bytes(b"not torchscript")
    with pytest.raises(FileNotFoundError, match="not a TorchScript file"):
        load_feature_model(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="needs 16"):
        video_features(_videos(1, 9, 32, 32, seed=0), load_feature_model(tiny_i3d))
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 4)))
