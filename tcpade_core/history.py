"""Per-stream history of cached tensors (residuals or block-stack outputs).

A :class:`ResidualHistory` keeps the newest ``capacity`` entries of one stream (cond and uncond are
separate streams). It resets itself when the shape, dtype or device of what it is asked to store or
predict for changes, and can keep its tensors on another device (CPU offload).

Precision. Every value is computed in float32 by the caller (residuals as ``y.float() - h``, Taylor
factors, predictions) and *stored* in the stream's dtype, the dtype of the block-stack input the
stream works on (:meth:`ResidualHistory.store_dtype`: float32 for a float32 model, bfloat16 / float16
for a model that computes in those; float32 for anything narrower, e.g. float8). Reading a value
(:meth:`ResidualHistory.latest`) gives float32 again. A 16-bit model's activations carry 16-bit rounding
already, so storing at that precision loses nothing the model had and halves the cache. The byte count
(:meth:`ResidualHistory.nbytes`) is that of the stored tensors.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Tuple

import torch


@dataclass
class Entry:
    step: int  # step index the value was observed at
    t: float  # normalised time (1 = noise, 0 = clean)
    value: torch.Tensor  # stored on the history's store device
    computed: bool = True


class ResidualHistory:
    """The newest ``capacity`` entries of one stream, newest first via :meth:`latest`."""

    def __init__(self, capacity: int, store_device: Optional[torch.device | str] = None):
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.store_device = torch.device(store_device) if store_device is not None else None
        self._entries: Deque[Entry] = deque(maxlen=max(capacity, 1))
        self._meta: Optional[Tuple] = None  # (shape, dtype, device) of the tensors the stream works on
        self.resets = 0

    def __len__(self) -> int:
        return len(self._entries) if self.capacity else 0

    def reset(self) -> None:
        self._entries.clear()
        self._meta = None

    def check_meta(self, x: torch.Tensor) -> bool:
        """Reset if ``x``'s shape, dtype or device differ from what the history holds. True if it reset."""
        meta = (tuple(x.shape), x.dtype, x.device)
        if self._meta is not None and meta != self._meta:
            self.reset()
            self.resets += 1
            self._meta = meta
            return True
        self._meta = meta
        return False

    STORE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

    def store_dtype(self, like: Optional[torch.Tensor] = None) -> torch.dtype:
        """The dtype values are kept in: the stream's (meta) dtype if it is float32/bfloat16/float16/float64,
        else float32. Without a meta yet, ``like``'s dtype under the same rule."""
        dt = self._meta[1] if self._meta is not None else (like.dtype if like is not None else torch.float32)
        return dt if dt in self.STORE_DTYPES else torch.float32

    def keep(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` as the history keeps it: detached, in :meth:`store_dtype` (float16: clamped to its finite
        range first), on the store device, never sharing storage with ``value``."""
        v = value.detach()
        dt = self.store_dtype(v)
        if v.dtype != dt:
            if dt == torch.float16 and v.is_floating_point():
                fmax = torch.finfo(torch.float16).max
                v = v.clamp(-fmax, fmax)
            v = v.to(dt)
        if self.store_device is not None and v.device != self.store_device:
            v = v.to(self.store_device, non_blocking=True)
        if v.data_ptr() == value.data_ptr() or v._base is not None:
            v = v.clone()
        return v

    def push(self, step: int, t: float, value: torch.Tensor, computed: bool = True) -> None:
        if not self.capacity:
            return
        v = self.keep(value)
        if self._entries and self._entries[-1].step == step:  # the same step recorded twice: keep the newest
            self._entries.pop()
        self._entries.append(Entry(step, float(t), v, computed))

    def latest(self, n: int, device: Optional[torch.device] = None, dtype=torch.float32) -> List[Entry]:
        """The newest ``n`` entries (newest first), values moved to ``device`` and cast to ``dtype``."""
        out = []
        for e in list(self._entries)[::-1][:n]:
            v = e.value
            if device is not None and v.device != device:
                v = v.to(device, non_blocking=True)
            out.append(Entry(e.step, e.t, v.to(dtype), e.computed))
        return out

    def nbytes(self) -> int:
        return sum(e.value.numel() * e.value.element_size() for e in self._entries) if self.capacity else 0
