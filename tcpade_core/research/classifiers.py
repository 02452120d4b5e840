"""Class-agreement classifiers of the benchmark models (scikit-learn), fitted on each model's training data."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["classifier_features", "fit_classifier", "classify", "class_agreement"]

_CLASSIFIERS: dict = {}
CLASSIFIER_SEED = 1234


def _data_key(model_name: str) -> str:
    """The model whose training data (and classifier) ``model_name``'s are: D to G are trained on C's textures, H on
    A's digits."""
    from ..models.zoo import canonical_name

    key = canonical_name(model_name)
    return "c" if key in ("d", "e", "f", "g") else "a" if key == "h" else key


def classifier_features(images, model_name: str) -> np.ndarray:
    """Feature vectors used by the class-agreement classifiers.

    * digits: images (B,1,16,16) in [-1,1] are area-downsampled to 8x8 and mapped to 0..16 (the
      sklearn digits scale); 8x8 input is used as is.
    * shapes: 16x16 area-downsampled RGB pixels, plus translation-invariant magnitudes of the 2-D
      FFT of each 32x32 channel (low frequencies), plus per-channel mean/std.
    * textures (models C and D): the full (real-input) 2-D FFT magnitude spectrum of the mean-removed
      luminance, ``log1p(4 |F|)``, plus per-channel mean/std (translation- and phase-invariant: the
      class is the texture's orientation/lattice/frequency structure).
    """
    from .datasets import digits_to_8x8

    key = _data_key(model_name)
    x = torch.as_tensor(images).float()
    if key == "a":
        return digits_to_8x8(x).numpy().astype(np.float64)
    x = x.clamp(-1, 1)
    if key == "c":
        lum = x.mean(dim=1)
        lum = lum - lum.mean(dim=(1, 2), keepdim=True)
        mag = torch.fft.rfft2(lum).abs() / x.shape[-1]
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return torch.cat([torch.log1p(4 * mag).reshape(x.shape[0], -1), stats], dim=1).numpy().astype(np.float64)
    pix = F.adaptive_avg_pool2d(x, (16, 16)).reshape(x.shape[0], -1)
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    mag = torch.fft.fft2(xc).abs() / x.shape[-1]
    k = 8
    low = torch.cat([mag[..., :k, :k], mag[..., -k:, :k]], dim=-2).reshape(x.shape[0], -1)
    stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
    return torch.cat([pix, torch.log1p(low), stats], dim=1).numpy().astype(np.float64)


def fit_classifier(model_name: str):
    """Fit (once per process) the scikit-learn classifier for a model's training distribution."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    key = _data_key(model_name)
    if key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    if key == "a":
        from .datasets import load_digits_16

        # fit on exactly what the model saw (16x16 in [-1,1]) mapped back through the same
        # feature transform that is applied to samples
        imgs, labels_t = load_digits_16()
        feats = classifier_features(imgs, "a")
        labels = labels_t.numpy()
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    elif key == "c":
        from .datasets import make_textures_dataset

        # 98.1% accurate on a held-out set of 2000 real textures (make_textures_dataset(2000, seed=99))
        imgs, labels_t = make_textures_dataset(6000, seed=CLASSIFIER_SEED)
        feats = classifier_features(imgs, "c")
        labels = labels_t.numpy()
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    else:
        from .datasets import make_shapes_dataset

        imgs, labels_t = make_shapes_dataset(6000, seed=CLASSIFIER_SEED)
        feats = classifier_features(imgs, "b")
        labels = labels_t.numpy()
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    clf.fit(feats, labels)
    _CLASSIFIERS[key] = clf
    return clf


def classify(images: torch.Tensor, model_name: str) -> torch.Tensor:
    """Predicted class of each image (LongTensor (B,)) using the model's dataset classifier."""
    clf = fit_classifier(model_name)
    return torch.as_tensor(clf.predict(classifier_features(images, model_name)), dtype=torch.long)


def class_agreement(images: torch.Tensor, labels: torch.Tensor, model_name: str) -> float:
    """Fraction of images classified as their conditioning label."""
    pred = classify(images, model_name)
    return float((pred == torch.as_tensor(labels).long().cpu()).float().mean())
