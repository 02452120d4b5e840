"""Datasets for the benchmark models (research kit: digits need scikit-learn).

* ``digits``: scikit-learn's 8x8 handwritten digits (values 0..16), bilinearly upsampled to 16x16,
  scaled to [-1, 1], one channel, 10 classes.
* ``shapes``: a procedurally generated, seeded 32x32 RGB dataset of 10 classes
  (5 shapes x 2 colour schemes) with random position, size, rotation, hue jitter and a gradient
  background. Rendering is vectorised in torch and fully determined by a ``torch.Generator``.
* ``textures`` (model C): a procedurally generated, seeded 32x32 RGB dataset of 10 fine texture
  patterns (stripes in four orientations, checkers, dots, rings, waves, plaid, spokes) of random
  period (3.5-7 px), phase, sharpness and colours, occluded by up to 3 flat-coloured objects.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..models.zoo import (  # noqa: F401 (re-exported)
    DIGITS_CLASSES,
    SCHEME_NAMES,  # noqa: F401 (re-exported)
    SHAPE_NAMES,  # noqa: F401 (re-exported)
    SHAPES_CLASSES,  # noqa: F401 (re-exported)
    TEXTURE_NAMES,  # noqa: F401 (re-exported)
    TEXTURES_CLASSES,
)

__all__ = [
    "DIGITS_CLASSES",
    "SHAPES_CLASSES",
    "load_digits_8x8",
    "load_digits_16",
    "digits_to_8x8",
    "augment_shift",
    "render_shapes",
    "make_shapes_dataset",
    "shapes_batch",
    "TEXTURES_CLASSES",
    "render_textures",
    "make_textures_dataset",
    "textures_batch",
]


# ----------------------------------------------------------------------------- digits
def load_digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """Raw sklearn digits: images (N, 8, 8) float32 in 0..16, labels (N,) int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def load_digits_16() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 16, 16) float32 in [-1, 1] (bilinear upsampling) and labels (N,)."""
    imgs, labels = load_digits_8x8()
    x = torch.from_numpy(imgs).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1), torch.from_numpy(labels)


def digits_to_8x8(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`load_digits_16` for classification: (B,1,16,16) in [-1,1] -> (B,64) in 0..16."""
    x = (images.float().clamp(-1, 1) + 1) / 2
    if x.shape[-1] != 8:
        x = F.adaptive_avg_pool2d(x, (8, 8))
    return (x * 16.0).reshape(x.shape[0], -1)


def augment_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, fill: float = -1.0) -> torch.Tensor:
    """Random integer translation of each image by up to ``max_shift`` pixels (background fill)."""
    if max_shift <= 0:
        return x
    B, C, H, W = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=fill)
    dx = torch.randint(0, 2 * max_shift + 1, (B,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (B,), generator=generator)
    out = torch.empty_like(x)
    for i in range(B):
        out[i] = pad[i, :, dy[i] : dy[i] + H, dx[i] : dx[i] + W]
    return out


# ----------------------------------------------------------------------------- shapes
def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vectorised HSV -> RGB, inputs (...), output (..., 3), all in [0, 1]."""
    h = torch.remainder(h, 1.0)
    k = torch.stack([torch.remainder(n + h * 6, 6) for n in (5.0, 3.0, 1.0)], dim=-1)
    f = v.unsqueeze(-1) - v.unsqueeze(-1) * s.unsqueeze(-1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return f


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _shape_masks(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Masks (B, 5, S, S) of the five shapes in the shapes' own coordinates ``u``, ``v`` (radius 1)."""
    rad = torch.sqrt(u * u + v * v)
    return torch.stack(
        [
            rad < 1.0,  # circle
            torch.maximum(u.abs(), v.abs()) < 0.82,  # square
            (v < 0.65) & (u.abs() < (v + 1.0) * 0.62),  # triangle (apex up)
            (rad < 1.0) & (rad > 0.58),  # ring
            ((u.abs() < 0.3) & (v.abs() < 1.0)) | ((v.abs() < 0.3) & (u.abs() < 1.0)),  # cross
        ],
        dim=1,
    ).float()


def _shape_coverage(shape_id: torch.Tensor, g: torch.Generator, size: int, supersample: int) -> tuple:
    """Random position, size and rotation of each image's shape: its antialiased coverage (B, 1, size, size)
    and the shapes' centre y (B,) in [-1, 1]."""
    B = shape_id.shape[0]
    S = size * supersample
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) / S * 2 - 1  # pixel centres in [-1, 1]
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    cx = _u(g, B, -0.35, 0.35)
    cy = _u(g, B, -0.35, 0.35)
    r = _u(g, B, 0.38, 0.58)
    ang = _u(g, B, -0.45, 0.45)  # radians, ~ +-26 degrees
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    ca, sa = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
    u = (ca * dx + sa * dy) / r[:, None, None]
    v = (-sa * dx + ca * dy) / r[:, None, None]
    mask = _shape_masks(u, v)[torch.arange(B), shape_id]  # (B, S, S)
    return F.avg_pool2d(mask[:, None], supersample), cy  # antialiased coverage (B, 1, size, size)


def _paint_shapes(
    mask: torch.Tensor, cy: torch.Tensor, scheme: torch.Tensor, g: torch.Generator, size: int
) -> torch.Tensor:
    """Random colours of each image's scheme: the shape (coverage ``mask``, centre y ``cy``) shaded slightly
    vertically over a two-colour gradient background; (B, 3, size, size) in [0, 1]."""
    B = scheme.shape[0]
    warm = scheme == 0
    fg_h = torch.where(warm, _u(g, B, -0.03, 0.14), _u(g, B, 0.42, 0.68))
    fg_s = torch.where(warm, _u(g, B, 0.75, 1.0), _u(g, B, 0.6, 0.95))
    fg_v = torch.where(warm, _u(g, B, 0.85, 1.0), _u(g, B, 0.45, 0.75))
    bg_h = torch.where(warm, _u(g, B, 0.55, 0.75), _u(g, B, 0.0, 1.0))
    bg_s1 = torch.where(warm, _u(g, B, 0.4, 0.8), _u(g, B, 0.05, 0.3))
    bg_v1 = torch.where(warm, _u(g, B, 0.08, 0.25), _u(g, B, 0.78, 0.95))
    bg_v2 = torch.where(warm, _u(g, B, 0.25, 0.45), _u(g, B, 0.6, 0.8))
    bg_dh = _u(g, B, -0.08, 0.08)
    gang = _u(g, B, 0, 2 * math.pi)
    fg_shade = _u(g, B, 0.0, 0.25)  # slight vertical shading of the shape

    cs = torch.arange(size, dtype=torch.float32)
    cs = (cs + 0.5) / size * 2 - 1
    py, px = torch.meshgrid(cs, cs, indexing="ij")
    ramp = (torch.cos(gang)[:, None, None] * px + torch.sin(gang)[:, None, None] * py) * 0.5 + 0.5  # (B,H,W) ~ [0,1]
    ramp = ramp.clamp(0, 1)
    c1 = _hsv_to_rgb(bg_h, bg_s1, bg_v1)  # (B,3)
    c2 = _hsv_to_rgb(bg_h + bg_dh, bg_s1, bg_v2)
    bg = c1[:, :, None, None] * (1 - ramp[:, None]) + c2[:, :, None, None] * ramp[:, None]
    fg = _hsv_to_rgb(fg_h, fg_s, fg_v)[:, :, None, None]
    shade = 1 - fg_shade[:, None, None, None] * (py[None, None] - cy[:, None, None, None] + 1) * 0.5
    fg = (fg * shade).clamp(0, 1)
    return bg * (1 - mask) + fg * mask


def render_shapes(
    labels: torch.Tensor, generator: torch.Generator, size: int = 32, supersample: int = 2
) -> torch.Tensor:
    """Render one image per label, returns (B, 3, size, size) float32 in [-1, 1].

    Class ``k``: shape ``SHAPE_NAMES[k % 5]`` in colour scheme ``k // 5``. Scheme 0 draws a warm
    (red/orange/yellow) shape on a dark blue-ish gradient; scheme 1 draws a cool (cyan/blue/green)
    shape on a light gradient. All randomness comes from ``generator``: the geometry, then the colours, then
    a little pixel noise.
    """
    labels = labels.long().cpu()
    g = generator
    mask, cy = _shape_coverage(labels % 5, g, size, supersample)
    img = _paint_shapes(mask, cy, labels // 5, g, size)
    noise = torch.randn(img.shape, generator=g) * 0.01
    return ((img + noise).clamp(0, 1) * 2 - 1).float()


def _fixed_dataset(render, n: int, seed: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, class-balanced dataset of ``n`` images drawn by ``render``, determined by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    out = [render(labels[i : i + batch], g) for i in range(0, n, batch)]
    return torch.cat(out), labels


def _batch(render, batch_size: int, generator: torch.Generator, labels: Optional[torch.Tensor]):
    """An on-the-fly batch (images, labels) drawn by ``render``, for training."""
    if labels is None:
        labels = torch.randint(0, 10, (batch_size,), generator=generator)
    return render(labels, generator), labels


def make_shapes_dataset(n: int, seed: int, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, class-balanced shapes dataset of ``n`` images determined by ``seed``."""
    return _fixed_dataset(render_shapes, n, seed, batch)


def shapes_batch(batch_size: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
    """An on-the-fly shapes batch (images, labels) for training."""
    return _batch(render_shapes, batch_size, generator, labels)


# ----------------------------------------------------------------------------- textures
def _col(v: torch.Tensor) -> torch.Tensor:
    """A per-image value (B,) as (B, 1, 1), to broadcast over the pixels."""
    return v[:, None, None]


def _rand_colour(g: torch.Generator, B: int, vlo: float, vhi: float) -> torch.Tensor:
    """B random colours (B, 3): any hue, saturation 0.5-1, value ``vlo``-``vhi``."""
    return _hsv_to_rgb(_u(g, B, 0, 1), _u(g, B, 0.5, 1.0), _u(g, B, vlo, vhi))


def _texture_geometry(
    labels: torch.Tensor, g: torch.Generator, size: int, period, xx: torch.Tensor, yy: torch.Tensor
) -> SimpleNamespace:
    """Each image's random pattern parameters and the pixel coordinates the patterns need: ``u`` along the
    (jittered) wave vector, ``v`` across it, ``rx``, ``ry`` relative to a random centre; all (B, S, S)."""
    B = labels.shape[0]
    per = _u(g, B, period[0], period[1])
    k = 2 * math.pi / per
    phase = _u(g, B, 0, 2 * math.pi)
    jitter = _u(g, B, -math.pi / 18, math.pi / 18)
    sharp = _u(g, B, 1.5, 6.0)
    cx = _u(g, B, 0.25, 0.75) * size
    cy = _u(g, B, 0.25, 0.75) * size
    phase2 = _u(g, B, 0, 2 * math.pi)
    wave_amp = _u(g, B, 1.5, 3.0)
    wave_per = _u(g, B, 10.0, 18.0)
    n_spokes = torch.randint(5, 9, (B,), generator=g).float()

    base_ang = torch.tensor([0.0, 90.0, 45.0, 135.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])[labels] * math.pi / 180
    ang = base_ang + jitter
    ca, sa = _col(torch.cos(ang)), _col(torch.sin(ang))
    return SimpleNamespace(
        u=ca * xx + sa * yy,  # coordinate along the wave vector
        v=-sa * xx + ca * yy,
        kk=_col(k),
        ph=_col(phase),
        ph2=_col(phase2),
        rx=xx - _col(cx),
        ry=yy - _col(cy),
        sharp=sharp,
        wave_amp=wave_amp,
        wave_per=wave_per,
        n_spokes=n_spokes,
    )


def _texture_pattern(geo: SimpleNamespace, c: int, i: torch.Tensor) -> torch.Tensor:
    """Pattern of class ``c`` for the images ``i`` (only those are computed), ~[-1, 1]."""
    uu, vv, k_, p1, p2 = geo.u[i], geo.v[i], geo.kk[i], geo.ph[i], geo.ph2[i]
    rx, ry = geo.rx, geo.ry
    if c <= 3:  # stripes
        return torch.sin(k_ * uu + p1)
    if c == 4:  # checkers
        return torch.sin(k_ * uu + p1) * torch.sin(k_ * vv + p2)
    if c == 5:  # dots: peaks = lattice points
        return ((torch.cos(k_ * uu + p1) + torch.cos(k_ * vv + p2)) * 0.5 - 0.3) * 1.6
    if c == 6:  # rings
        return torch.sin(k_ * torch.sqrt(rx[i] * rx[i] + ry[i] * ry[i]) + p1)
    if c == 7:  # waves
        return torch.sin(
            k_ * (uu + _col(geo.wave_amp)[i] * torch.sin(2 * math.pi * vv / _col(geo.wave_per)[i] + p2)) + p1
        )
    if c == 8:  # plaid, first stripe family (the second is composited in _colour_textures)
        return torch.sin(k_ * uu + p1)
    return torch.sin(_col(geo.n_spokes)[i] * torch.atan2(ry[i], rx[i]) + p1)  # spokes


def _colour_textures(p: torch.Tensor, labels: torch.Tensor, geo: SimpleNamespace, g: torch.Generator) -> torch.Tensor:
    """The patterns ``p`` (B, S, S) in [0, 1] in two random colours each, the plaid's second stripe family in a
    third; (B, 3, S, S)."""
    B = labels.shape[0]
    c1 = _rand_colour(g, B, 0.75, 1.0)
    c2 = _rand_colour(g, B, 0.05, 0.35)
    c3 = _rand_colour(g, B, 0.4, 0.9)
    img = c1[:, :, None, None] * p[:, None] + c2[:, :, None, None] * (1 - p[:, None])
    # plaid: second stripe family in a third colour, half transparent
    i8 = (labels == 8).nonzero().flatten()
    if i8.numel():
        pb = torch.sigmoid(_col(geo.sharp)[i8] * torch.sin(geo.kk[i8] * 0.8 * geo.v[i8] + geo.ph2[i8]))[:, None] * 0.75
        img[i8] = img[i8] * (1 - pb) + c3[i8][:, :, None, None] * pb
    return img


def _occlude(
    img: torch.Tensor, g: torch.Generator, xx: torch.Tensor, yy: torch.Tensor, size: int, max_objects: int
) -> None:
    """Draw 0..``max_objects`` flat-coloured discs/squares over each image of ``img``, in place."""
    B = img.shape[0]
    n_obj = torch.randint(0, max_objects + 1, (B,), generator=g)
    for j in range(max_objects):
        ox = _u(g, B, 0.1, 0.9) * size
        oy = _u(g, B, 0.1, 0.9) * size
        orad = _u(g, B, 0.08, 0.2) * size
        is_sq = torch.rand(B, generator=g) < 0.5
        ocol = _rand_colour(g, B, 0.2, 1.0)
        i = (j < n_obj).nonzero().flatten()  # the images that draw an object j (all draw its parameters)
        if not i.numel():
            continue
        dx, dy = (xx - _col(ox)[i]).abs(), (yy - _col(oy)[i]).abs()
        m = torch.where(
            _col(is_sq)[i], torch.maximum(dx, dy) < _col(orad)[i] * 0.85, dx * dx + dy * dy < _col(orad)[i] ** 2
        )
        m = m.float()[:, None]
        img[i] = img[i] * (1 - m) + ocol[i][:, :, None, None] * m


def render_textures(
    labels: torch.Tensor,
    generator: torch.Generator,
    size: int = 32,
    supersample: int = 2,
    period=(3.5, 7.0),
    max_objects: int = 3,
) -> torch.Tensor:
    """Render one textured image per label, returns (B, 3, size, size) float32 in [-1, 1].

    Class ``k`` is the texture pattern ``TEXTURE_NAMES[k]``: stripes at 0/90/45/135 degrees,
    checkers, a dot lattice, concentric rings, sinusoidally warped stripes, a two-colour plaid and
    angular spokes around a random centre. Every image draws the pattern's period (``period``, in
    pixels), phase, a +-10 degree orientation jitter, the edge sharpness and two colours at random,
    then 0..``max_objects`` flat-coloured discs/squares (random colour, size, position) occlude it.
    All randomness comes from ``generator``.
    """
    labels = labels.long().cpu()
    B = labels.shape[0]
    g = generator
    S = size * supersample
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) / supersample  # pixel units
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    yy, xx = yy[None], xx[None]
    geo = _texture_geometry(labels, g, size, period, xx, yy)

    p = torch.empty(B, S, S)
    for c in range(10):
        i = (labels == c).nonzero().flatten()
        if i.numel():
            p[i] = _texture_pattern(geo, c, i)  # (B, S, S) in ~[-1, 1]
    p = torch.sigmoid(_col(geo.sharp) * p)  # soft -> near-binary edges
    img = _colour_textures(p, labels, geo, g)
    _occlude(img, g, xx, yy, size, max_objects)  # occluding flat objects
    img = F.avg_pool2d(img, supersample)
    return (img.clamp(0, 1) * 2 - 1).float()


def make_textures_dataset(n: int, seed: int, batch: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, class-balanced textures dataset of ``n`` images determined by ``seed``."""
    return _fixed_dataset(render_textures, n, seed, batch)


def textures_batch(batch_size: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None):
    """An on-the-fly textures batch (images, labels) for training."""
    return _batch(render_textures, batch_size, generator, labels)
