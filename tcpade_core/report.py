"""What a run did, step by step: computed or predicted, why, the gate's value, the phase, the error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class StepRecord:
    step: int
    t: float
    phase: str
    computed: bool
    reason: str  # why it computed or skipped ("interval", "tsi", "warmup", ...)
    gate: Optional[float] = None  # TSI stability score, TeaCache accumulated distance, ...
    sigma_stab: Optional[float] = None
    order: Optional[int] = None  # TraCache's chosen interpolation order
    error: Optional[float] = None  # relative L2 error of the prediction, where the truth was computed
    forced_streams: List[str] = field(default_factory=list)  # streams that computed although the step skipped


@dataclass
class RunReport:
    method: str
    settings: str
    gate_name: str = ""
    threshold: Optional[float] = None
    steps: List[StepRecord] = field(default_factory=list)
    cache_bytes: int = 0  # peak bytes held by all stream histories
    store_device: str = "same"
    stream_resets: int = 0
    notes: List[str] = field(default_factory=list)  # what changes what the run means (a fallback, ...)
    planned_steps: Optional[int] = None  # the schedule's step count
    interrupted: bool = False  # the run stopped before its last step
    target_speedup: Optional[float] = None  # the speed target the run was given (None: off)
    target_note: str = ""  # how the target was met
    schedule: str = ""  # where a target's computes came from (a calibration's plan, or not calibrated)
    model_calls: Optional[int] = None  # with several model calls per step: how many ...
    stack_calls: Optional[int] = None  # ... and how many of them ran the block stack
    inactive: str = ""  # why the cache did not run at all ("": it ran)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def computed(self) -> int:
        return sum(1 for r in self.steps if r.computed)

    @property
    def skipped_steps(self) -> List[int]:
        return [r.step for r in self.steps if not r.computed]

    @property
    def speedup(self) -> float:
        return self.num_steps / max(self.computed, 1)

    def strip(self) -> str:
        """One character a step: '#' computed, '.' predicted."""
        return "".join("#" if r.computed else "." for r in self.steps)

    def summary(self, label: Optional[str] = None) -> str:
        mb = self.cache_bytes / 2**20
        where = "offload cpu" if self.store_device == "cpu" else "same device"
        head = f"{label or self.method}: "
        if self.inactive:
            calls = f"; {self.model_calls} model calls computed in full" if self.model_calls else ""
            return f"{head}cache inactive: {self.inactive}{calls}" + "".join(f"; {n}" for n in self.notes)
        if self.interrupted:
            head += f"interrupted at step {self.num_steps}/{self.planned_steps or self.num_steps}, "
        line = (
            f"{head}computed {self.computed}/{self.num_steps} steps ({self.speedup:.2f}x), "
            f"{where}, cache {mb:.1f} MB [{self.strip()}]"
        )
        if self.target_note:
            line += f"; {self.target_note}"
        if self.model_calls is not None:
            line += f"; the stack ran on {self.stack_calls} of {self.model_calls} model calls"
        return line + "".join(f"; {n}" for n in self.notes)


def finite_or_none(v: Optional[float]) -> Optional[float]:
    """A number for JSON: NaN and +-Inf become None (the browser's JSON.parse rejects them)."""
    return None if v is None or not math.isfinite(v) else float(v)
