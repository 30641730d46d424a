import math

import numpy as np
import pytest

from anyir_edge.metrics import psnr, quantize, ssim


def test_psnr_by_hand():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 100))
    assert psnr(a, a) == math.inf


def test_quantize_rounds():
    assert quantize(np.array([0.0, 0.5 / 255, 1.6 / 255, 1.2])).tolist() == [0, 0, 2, 255]


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=2)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((3, 3, 3)), np.zeros((3, 4, 3)))
