"""Calibration on the host: record one full-compute run, fingerprint the model, store and find results.

* :class:`Recorder` rides on a run's :class:`~.driver.StackDriver` and keeps, for the leading stream, a fixed
  subsample of the block stack's input/output tokens and of block 0's modulated input (fp32, CPU) at the
  first model call of every step; :mod:`tcpade_core.calibrate` fits the methods on it.
* :func:`model_key`: a fingerprint of the model as the sampler sees it: the diffusion model's class, every
  parameter's name, shape and dtype, the first values of a few of them, and the patches (LoRA) on the
  ModelPatcher with their strengths. It is computed once per cache node run and costs a few small reads.
* The store: ``<ComfyUI user directory>/tcpade/calibration.json``, one entry per model fingerprint and step
  count (the newest calibration wins). Delete the file to forget every calibration (README "Calibration").
  A file that cannot be read gives one error naming it, and the run goes on uncalibrated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Dict, Optional

import torch

from ..tcpade_core.calibrate import Calibration, Trajectory

log = logging.getLogger("tcpade")

TOKENS = 256  # stack tokens kept per step (a fixed random subset)
STORE_NAME = os.path.join("tcpade", "calibration.json")


class CalibrationFileError(RuntimeError):
    """The calibration store exists but cannot be used."""


# --------------------------------------------------------------------------------------- recording


class Recorder:
    """The leading stream's trajectory of one run (only the first model call of each step)."""

    def __init__(self, tokens: int = TOKENS):
        self.tokens = tokens
        self.traj = Trajectory()
        self._idx: Optional[torch.Tensor] = None
        self._pending = None

    def _sub(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        flat = x[:1].reshape(1, x.shape[1], -1) if x.ndim >= 3 else x[:1].reshape(1, 1, -1)
        if self._idx is None or self._idx.numel() > flat.shape[1] or int(self._idx.max()) >= flat.shape[1]:
            g = torch.Generator().manual_seed(0)
            n = flat.shape[1]
            self._idx = torch.randperm(n, generator=g)[: min(self.tokens, n)].sort().values
        return flat[:, self._idx.to(flat.device)].float().cpu()

    def enter(self, t: float, h: torch.Tensor, modulated) -> None:
        m = modulated() if modulated is not None else None
        self._pending = (
            t,
            self._sub(h),
            self._sub(m) if isinstance(m, torch.Tensor) and m.shape[:2] == h.shape[:2] else None,
        )

    def leave(self, y: torch.Tensor) -> None:
        if self._pending is None:
            return
        t, h, m = self._pending
        self.traj.t.append(t)
        self.traj.inputs.append(h)
        self.traj.outputs.append(self._sub(y))
        self.traj.modulated.append(m)
        self._pending = None


# --------------------------------------------------------------------------------------- fingerprint


def model_key(patcher) -> str:
    """A fingerprint of the model the sampler will run (weights and patches), hex, 16 characters."""
    h = hashlib.sha256()
    dm = patcher.get_model_object("diffusion_model")
    h.update(type(dm).__name__.encode())
    params = list(dm.state_dict().items())
    for name, p in params:
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
    for name, p in params[:: max(1, len(params) // 8)][:8]:
        h.update(_sample_bytes(p))
    for key, plist in sorted(getattr(patcher, "patches", {}).items()):
        for patch in plist:
            h.update(f"{key}:{patch[0]}:{patch[2] if len(patch) > 2 else ''}".encode())
    return h.hexdigest()[:16]


def _sample_bytes(p) -> bytes:
    """The first values of a weight, when they can be read here. Quantised (GGUF) or lazily loaded
    weights can live on the meta device or in a packed dtype: those add their storage type instead."""
    kind = f"{type(p).__name__}:{getattr(p, 'tensor_type', '')}".encode()
    if p.device.type == "meta" or not p.is_floating_point():
        return kind
    try:
        return kind + p.detach().flatten()[:64].float().cpu().numpy().tobytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return kind


# --------------------------------------------------------------------------------------- the store


def store_path() -> str:
    import folder_paths

    return os.path.join(folder_paths.get_user_directory(), STORE_NAME)


def _read(path: str) -> Dict[str, dict]:
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise ValueError("no 'entries' object")
        return data["entries"]
    except (OSError, ValueError) as e:
        raise CalibrationFileError(
            f"the calibration file {path} cannot be read ({e}); delete it to start over"
        ) from None


def _keep_unreadable(path: str) -> str:
    """Rename an unreadable calibration file to ``<name>.unreadable-<n>`` (the first free n); return the new name."""
    n = 1
    while os.path.exists(f"{path}.unreadable-{n}"):
        n += 1
    kept = f"{path}.unreadable-{n}"
    os.replace(path, kept)
    return kept


def entry_key(model_fingerprint: str, steps: int) -> str:
    return f"{model_fingerprint}|{int(steps)}"


def save(cal: Calibration, path: Optional[str] = None) -> str:
    path = path or store_path()
    try:
        entries = _read(path)
    except CalibrationFileError as e:
        kept = _keep_unreadable(path)  # never overwritten: what a user stored is kept under another name
        log.error(f"TC-Padé: {e}; it is kept as {kept} and a new file is started")
        entries = {}
    entries[entry_key(cal.model_key, cal.steps)] = cal.to_json()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "entries": entries}, f, indent=1)
    os.replace(tmp, path)
    return path


def lookup(model_fingerprint: str, steps: int, path: Optional[str] = None) -> Optional[Calibration]:
    """The stored calibration for this model and step count, or None. Raises CalibrationFileError."""
    path = path or store_path()
    d = _read(path).get(entry_key(model_fingerprint, steps))
    if d is None:
        return None
    try:
        return Calibration.from_json(d)
    except (TypeError, ValueError, KeyError) as e:
        raise CalibrationFileError(
            f"the calibration file {path} has an unusable entry ({e}); delete it to start over"
        ) from None
