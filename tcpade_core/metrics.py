"""Quality metrics against full compute, in torch (no scikit-image at run time): PSNR, SSIM, class agreement.

Both follow scikit-image's definitions (``skimage.metrics.peak_signal_noise_ratio`` and
``structural_similarity`` with its defaults: a uniform 7x7 window, sample covariance, K1 = 0.01,
K2 = 0.03, the mean over the window positions that fit inside the image, channels averaged), computed
in float64; a test checks them against scikit-image when it is installed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _unit(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> float64 in [0, 1] (the clamp and shift in float32, as the images are)."""
    return ((images.detach().float().clamp(-1, 1) + 1) / 2).double().cpu()


# An image whose PSNR against its reference is below this shows other content rather than a cached copy of it: the
# Compare node marks it. Set from `python -m tcpade_core.research.content_floor` (docs/content_floor.txt).
CHANGED_FLOOR_DB = 15.0


def psnr_per_image(images: torch.Tensor, reference: torch.Tensor) -> list:
    """PSNR (dB) of each image against its reference, data range [0, 1]; an identical image gives +inf."""
    a, b = _unit(images), _unit(reference)
    vals = []
    for x, r in zip(a, b):
        mse = float((r - x).pow(2).mean())
        vals.append(math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse))
    return vals


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean PSNR (dB) over the batch, data range [0, 1]; identical images give +inf."""
    vals = psnr_per_image(images, reference)
    return sum(vals) / len(vals)


def ssim_window(height: int, width: int) -> int:
    """The odd window size used for an image: 7, or the largest odd size that fits a smaller image."""
    win = min(7, height, width)
    return win - (win + 1) % 2


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM over the batch (per channel, then averaged over channels and images)."""
    x, y = _unit(images), _unit(reference)
    win = ssim_window(x.shape[-2], x.shape[-1])
    np_ = win * win
    cov_norm = np_ / (np_ - 1)
    c1, c2 = 0.01**2, 0.03**2
    pool = lambda t: F.avg_pool2d(t, win, stride=1)
    ux, uy = pool(x), pool(y)
    vx = cov_norm * (pool(x * x) - ux * ux)
    vy = cov_norm * (pool(y * y) - uy * uy)
    vxy = cov_norm * (pool(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dim=(2, 3)).mean(dim=1).mean())


def agreement(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred.cpu() == labels.cpu()).float().mean())
