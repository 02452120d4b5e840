"""Quality metrics against full compute: PSNR and SSIM (scikit-image), class agreement."""
from __future__ import annotations

import numpy as np
import torch


def _to_np(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, C) float64 in [0, 1]."""
    x = ((images.detach().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    return x.astype(np.float64)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean PSNR (dB) over the batch, data range [0, 1]; identical images give +inf."""
    from skimage.metrics import peak_signal_noise_ratio
    a, b = _to_np(images), _to_np(reference)
    vals = []
    for x, r in zip(a, b):
        if np.array_equal(x, r):
            vals.append(float("inf"))
        else:
            vals.append(peak_signal_noise_ratio(r, x, data_range=1.0))
    return float(np.mean(vals))


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM over the batch (scikit-image, 7x7 Gaussian-free window, channel axis last)."""
    from skimage.metrics import structural_similarity
    a, b = _to_np(images), _to_np(reference)
    win = min(7, a.shape[1], a.shape[2])
    win -= (win + 1) % 2
    return float(np.mean([structural_similarity(r, x, data_range=1.0, channel_axis=-1, win_size=win)
                          for x, r in zip(a, b)]))


def agreement(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred.cpu() == labels.cpu()).float().mean())
