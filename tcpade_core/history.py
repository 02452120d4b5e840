"""Per-stream history of cached tensors (residuals or block-stack outputs).

A :class:`ResidualHistory` keeps the newest ``capacity`` entries of one stream (cond and uncond are
separate streams). It resets itself when the shape, dtype or device of what it is asked to store or
predict for changes, and can keep its tensors on another device (CPU offload).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Tuple

import torch


@dataclass
class Entry:
    step: int           # step index the value was observed at
    t: float            # normalised time (1 = noise, 0 = clean)
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

    def push(self, step: int, t: float, value: torch.Tensor, computed: bool = True) -> None:
        if not self.capacity:
            return
        v = value.detach()
        if self.store_device is not None and v.device != self.store_device:
            v = v.to(self.store_device, non_blocking=True)
        elif v.data_ptr() == value.data_ptr() or v._base is not None:
            v = v.clone()
        if self._entries and self._entries[-1].step == step:   # the same step recorded twice: keep the newest
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
