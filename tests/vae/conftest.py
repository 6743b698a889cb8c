"""Fixtures of the VAE tests."""

from __future__ import annotations

import pytest
import torch

from hyvideo.vae.autoencoder import AutoencoderKLCausal3D
from vae_twin import RELEASED_CONFIG, TINY_CONFIG


@pytest.fixture(scope="module")
def tiny_vae() -> AutoencoderKLCausal3D:
    """The tiny VAE (hyvideo/configs/vae_tiny.json), seeded random weights, eval mode."""
    torch.manual_seed(0)
    return AutoencoderKLCausal3D.from_config(TINY_CONFIG).eval()


@pytest.fixture(scope="session")
def released_vae() -> AutoencoderKLCausal3D:
    """The released-config VAE (246,478,803 parameters), seeded random weights, eval mode."""
    torch.manual_seed(0)
    return AutoencoderKLCausal3D.from_config(RELEASED_CONFIG).eval()


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Run VAE tests on one intra-op thread (restored afterwards).

    The tiny VAE's convs are small and overhead-bound; on a busy 2-core machine two OpenMP threads spent ~4x
    more CPU time (barrier spinning) and ~5x more wall time than one thread for the same tests.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
