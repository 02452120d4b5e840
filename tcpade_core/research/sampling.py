"""Deterministic samplers for the benchmark models (the class-agreement classifiers are in :mod:`.classifiers`).

``sample`` dispatches on ``model.kind``:

* ``"ddpm_eps"`` (model A, DiT): deterministic DDIM (eta = 0) on the linear-beta DDPM schedule
  (1000 steps, 1e-4..0.02) over ``steps`` evenly spaced timesteps from 999 down to 0; the predicted
  x0 is clipped to [-1, 1] at every step. ``t_norm = t / 999``.
* ``"flow"`` (model B, rectified flow): Euler from sigma = 1 to 0 over ``steps`` steps on a
  FLUX-like shifted schedule ``sigma' = shift * s / (1 + (shift - 1) * s)`` with
  ``shift = model.shift``; ``t_norm = sigma'`` of the current step.

With ``cfg_scale > 1`` the model is called twice per step, separately, on stream ``"cond"`` and on
stream ``"uncond"`` (null class ``model.null_class``), and combined as
``uncond + cfg_scale * (cond - uncond)``.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

__all__ = [
    "ddpm_alphas_cumprod",
    "ddim_timesteps",
    "flow_sigmas",
    "sample",
]

NUM_TRAIN_TIMESTEPS = 1000


def ddpm_alphas_cumprod(
    num_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """Cumulative alpha products of the linear-beta DDPM schedule (float64)."""
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(steps: int, num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """``steps`` evenly spaced integer timesteps from ``num_timesteps - 1`` down to 0."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if steps == 1:
        return [num_timesteps - 1]
    return [int(v) for v in np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(int)]


def flow_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """``steps + 1`` sigmas from 1 to 0 with the FLUX-like time shift (float64)."""
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift * s / (1 + (shift - 1) * s)


def _guided(model, x, t, y_cond, y_null, cfg_scale, cache, n_out):
    out_c = model(x, t, y_cond, stack=cache, stream="cond")[:, :n_out]
    if cfg_scale == 1.0:
        return out_c
    out_u = model(x, t, y_null, stack=cache, stream="uncond")[:, :n_out]
    return out_u + cfg_scale * (out_c - out_u)


@torch.no_grad()
def sample(
    model,
    labels: torch.Tensor,
    seed: int,
    steps: int,
    cfg_scale: float,
    cache=None,
    progress: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """Sample one image per label. Returns float32 images in [-1, 1], shape (B, C, H, W).

    The initial noise comes from ``torch.Generator().manual_seed(seed)``; the whole procedure is
    deterministic, so the same arguments give bit-identical output. ``cache`` (optional) is the
    block-stack engine: ``begin_step(i, steps, t_norm)`` is called before each step and
    ``end_run()`` at the end; it is passed to the model as ``stack``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
    B = labels.shape[0]
    C, S = model.in_channels, model.input_size
    cfg_scale = float(cfg_scale)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((B, C, S, S), generator=g, dtype=torch.float32)
    y_null = torch.full_like(labels, model.null_class)
    kind = getattr(model, "kind", None)
    try:
        if kind == "ddpm_eps":
            acp = ddpm_alphas_cumprod()
            ts = ddim_timesteps(steps)
            for i, t in enumerate(ts):
                t_norm = t / (NUM_TRAIN_TIMESTEPS - 1)
                if cache is not None:
                    cache.begin_step(i, steps, float(t_norm))
                tt = torch.full((B,), float(t), dtype=torch.float32)
                eps = _guided(model, x, tt, labels, y_null, cfg_scale, cache, C)
                a_t = float(acp[t])
                a_prev = float(acp[ts[i + 1]]) if i + 1 < len(ts) else 1.0
                x0 = ((x - (1 - a_t) ** 0.5 * eps) / a_t**0.5).clamp(-1, 1)
                eps = (x - a_t**0.5 * x0) / (1 - a_t) ** 0.5
                x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
                if progress is not None:
                    progress(i)
        elif kind == "flow":
            sig = flow_sigmas(steps, float(getattr(model, "shift", 1.0)))
            for i in range(steps):
                s, s_next = float(sig[i]), float(sig[i + 1])
                if cache is not None:
                    cache.begin_step(i, steps, s)
                tt = torch.full((B,), s, dtype=torch.float32)
                v = _guided(model, x, tt, labels, y_null, cfg_scale, cache, C)
                x = x + (s_next - s) * v
                if progress is not None:
                    progress(i)
        else:
            raise ValueError(f"model.kind must be 'ddpm_eps' or 'flow', got {kind!r}")
    finally:
        if cache is not None:
            cache.end_run()
    return x.clamp(-1, 1).float()
