"""The engine: one :class:`CacheRun` per sampling run wraps a block stack.

The sampler (or the ComfyUI patcher) calls, per step::

    run.begin_step(step_index, num_steps, t_norm)
    h_out = run(stream, h, run_fn, modulated_fn)   # once per stream (cond / uncond)
    ...
    report = run.end_run()

``run`` decides once per step (the first stream of the step decides, as the host's EasyCache does),
then either calls ``run_fn(h)`` and records what the method needs, or returns a prediction.
*When* lives in each method's ``decide``, *how* in :mod:`tcpade_core.predictors`, *where* in the caller.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from . import predictors as P
from .config import (NoCacheConfig, ReuseConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig,
                     TraCacheConfig, _Common)
from .history import ResidualHistory
from .report import RunReport, StepRecord

log = logging.getLogger("tcpade")

_no_compile = getattr(getattr(torch, "compiler", None), "disable", lambda f=None, **k: f)


@dataclass
class Step:
    index: int
    num_steps: int
    t: float
    phase: str = "-"


@dataclass
class Decision:
    compute: bool
    reason: str
    gate: Optional[float] = None


@dataclass
class StreamState:
    history: ResidualHistory
    extras: Dict[str, object] = field(default_factory=dict)


def phase_of(index: int, num_steps: int, early: float, late: float) -> str:
    """Eq. 9's phases with t = T - index counting down: early t > early*T, late t < late*T."""
    t = num_steps - index
    if t > early * num_steps:
        return "early"
    if t < late * num_steps:
        return "late"
    return "mid"


class Method:
    """Base: full compute. Subclasses say when to skip and how to predict."""

    gate_name = ""
    threshold: Optional[float] = None

    def __init__(self, cfg: _Common):
        self.cfg = cfg

    capacity = 0

    def phase(self, index: int, num_steps: int) -> str:
        return "-"

    def in_window(self, step: Step) -> bool:
        frac = step.index / max(step.num_steps, 1)
        return self.cfg.start <= frac < self.cfg.end or (self.cfg.end >= 1.0 and frac >= self.cfg.start)

    def decide(self, step: Step, st: StreamState, modulated_fn) -> Decision:
        return Decision(True, "full")

    def can_predict(self, step: Step, st: StreamState) -> bool:
        return False

    def predict(self, step: Step, st: StreamState, h: torch.Tensor, rec: StepRecord) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, step: Step, st: StreamState, h: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def observe_skip(self, step: Step, st: StreamState, h: torch.Tensor, y_hat: torch.Tensor) -> None:
        pass


class _ResidualMethod(Method):
    """Stores residuals y - h (or outputs y) of computed steps."""

    store_output = False

    def observe(self, step, st, h, y):
        st.history.push(step.index, step.t, y if self.store_output else y - h)

    def can_predict(self, step, st):
        return len(st.history) >= 1


class Reuse(_ResidualMethod):
    capacity = 1
    gate_name = "interval"

    def decide(self, step, st, modulated_fn):
        if step.index % self.cfg.interval == 0:
            return Decision(True, "interval")
        return Decision(False, "interval")

    def predict(self, step, st, h, rec):
        (r1,) = st.history.latest(1, h.device)
        return (h.float() + r1.value).to(h.dtype)


class TaylorSeer(_ResidualMethod):
    gate_name = "interval"

    def __init__(self, cfg: TaylorSeerConfig):
        super().__init__(cfg)
        self.capacity = cfg.order + 1
        self.store_output = cfg.target == "output"

    def decide(self, step, st, modulated_fn):
        c = self.cfg
        if step.index < c.first_enhance:
            return Decision(True, "first_enhance")
        if (step.index - c.first_enhance) % c.interval == 0:
            return Decision(True, "interval")
        return Decision(False, "interval")

    def predict(self, step, st, h, rec):
        es = st.history.latest(self.capacity, h.device)
        vals, steps = [e.value for e in es], [e.step for e in es]
        fn = P.taylor_eq10 if self.cfg.form == "eq10" else P.newton
        v = fn(vals, steps, step.index, self.cfg.order)
        rec.order = min(self.cfg.order, len(vals) - 1)
        return (v if self.store_output else h.float() + v).to(h.dtype)


class TraCache(_ResidualMethod):
    gate_name = "stride"

    def __init__(self, cfg: TraCacheConfig):
        super().__init__(cfg)
        self.capacity = cfg.max_order + 1
        self.store_output = cfg.target == "output"

    def decide(self, step, st, modulated_fn):
        return Decision(step.index % self.cfg.stride == 0, "stride")

    def predict(self, step, st, h, rec):
        es = st.history.latest(self.capacity, h.device)
        v, order = P.lagrange_dynamic([e.value for e in es], [e.t for e in es], step.t, self.cfg.max_order)
        rec.order = order
        return (v if self.store_output else h.float() + v).to(h.dtype)


class TeaCache(_ResidualMethod):
    capacity = 1
    gate_name = "accumulated rel. L1"

    def __init__(self, cfg: TeaCacheConfig):
        super().__init__(cfg)
        self.threshold = cfg.threshold
        self._poly = list(cfg.coefficients)

    def rescale(self, x: float) -> float:
        out = 0.0
        for c in self._poly:
            out = out * x + c
        return out

    def decide(self, step, st, modulated_fn):
        ex = st.extras
        mod = modulated_fn() if modulated_fn is not None else None
        prev = ex.get("prev_mod")
        if mod is not None:
            mod = mod.detach()
            ex["prev_mod"] = mod.clone()
        first, last = step.index == 0, step.index == step.num_steps - 1
        if prev is None or mod is None or prev.shape != mod.shape or first or last:
            ex["acc"] = 0.0
            return Decision(True, "first" if first else "last" if last else "no reference", 0.0)
        m, p = mod.float(), prev.float()
        rel = float((m - p).abs().mean() / p.abs().mean().clamp_min(1e-12))
        acc = float(ex.get("acc", 0.0)) + self.rescale(rel)
        if acc < self.cfg.threshold:
            ex["acc"] = acc
            return Decision(False, "acc<delta", acc)
        ex["acc"] = 0.0
        return Decision(True, "acc>=delta", acc)

    def predict(self, step, st, h, rec):
        (r1,) = st.history.latest(1, h.device)
        return (h.float() + r1.value).to(h.dtype)


class TCPade(Method):
    """TC-Padé: TSI gate (Eq. 1) inside cache intervals of N steps, step-phase Padé residual (Eq. 5-9)."""

    capacity = 3
    gate_name = "TSI stability"

    def __init__(self, cfg: TCPadeConfig):
        super().__init__(cfg)
        self.threshold = cfg.theta

    def phase(self, index, num_steps):
        return phase_of(index, num_steps, self.cfg.early_boundary, self.cfg.late_boundary)

    def decide(self, step, st, modulated_fn):
        c = self.cfg
        if step.index % c.interval == 0:
            return Decision(True, "interval")
        if len(st.history) < 3:
            return Decision(True, "warmup")
        r1, r2, r3 = (e.value for e in st.history.latest(3))
        score = P.stability_score(P.tsi_literal(r1, r2, r3), c.tsi_scale)
        return Decision(score < c.theta, "tsi<theta" if score < c.theta else "tsi>=theta", score)

    def can_predict(self, step, st):
        need = 3 if self.cfg.numerator == "literal" and step.phase != "early" else 2
        if self.cfg.reconstruct == "previous_input" and "prev_input" not in st.extras:
            return False
        return len(st.history) >= need

    def predict(self, step, st, h, rec):
        c = self.cfg
        es = st.history.latest(3, h.device)
        r1, r2 = es[0].value, es[1].value
        r3 = es[2].value if len(es) > 2 else None
        if step.phase == "early":
            r = c.alpha1 * r1 + (1.0 - c.alpha1) * r2
        else:
            ratio = 1.0
            if c.spacing == "steps" and es[0].step != es[1].step:
                ratio = (step.index - es[0].step) / (es[0].step - es[1].step)
            r, rec.sigma_stab = P.pade_residual(r1, r2, r3, lam=c.lam, numerator=c.numerator,
                                                denominator=c.denominator, ratio=ratio, pole_guard=c.pole_guard)
            if step.phase == "late":
                r = r + c.beta * (r1 - r2)
        base = h if c.reconstruct == "current_input" else st.extras["prev_input"].to(h.device)
        out = base.float() + r
        if c.history == "all":
            st.extras["last_pred_residual"] = r
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).to(h.dtype)

    def observe(self, step, st, h, y):
        st.history.push(step.index, step.t, y - h)
        self._keep_input(st, h)

    def observe_skip(self, step, st, h, y_hat):
        if self.cfg.history == "all":
            st.history.push(step.index, step.t, st.extras["last_pred_residual"], computed=False)
        self._keep_input(st, h)

    def _keep_input(self, st, h):
        if self.cfg.reconstruct == "previous_input":
            st.extras["prev_input"] = h.detach().clone()


METHODS = {"none": Method, "reuse": Reuse, "taylorseer": TaylorSeer, "teacache": TeaCache,
           "tracache": TraCache, "tcpade": TCPade}


def make_method(cfg: _Common) -> Method:
    return METHODS[cfg.method](cfg)


class CacheRun:
    """Per-run state of one cache method over one block stack. Create one per sampling run."""

    def __init__(self, cfg: _Common, store_device: Optional[str] = None, measure_error: bool = False):
        self.cfg = cfg
        self.method = make_method(cfg)
        self.store_device = store_device
        self.measure_error = measure_error
        self.streams: Dict[str, StreamState] = {}
        self.report = RunReport(cfg.method, cfg.describe(), self.method.gate_name,
                                self.method.threshold, store_device=store_device or "same")
        self.step: Optional[Step] = None
        self._decision: Optional[Decision] = None
        self._rec: Optional[StepRecord] = None
        self._active: Optional[bool] = None
        self._recorded: set = set()

    # -- sampler side ---------------------------------------------------------------------------
    def begin_step(self, index: int, num_steps: int, t: float = 0.0, active: Optional[bool] = None) -> None:
        """Start step ``index`` of ``num_steps`` at normalised time ``t`` (1 = noise, 0 = clean).

        ``active`` overrides the config's start/end window for this step (the host knows it in sigma).
        """
        if index < 0 or num_steps <= 0 or index >= num_steps:
            raise ValueError(f"step index must be in [0, {num_steps - 1}], got {index}")
        self._finish_step()
        self.step = Step(index, num_steps, float(t), self.method.phase(index, num_steps))
        self._active = active
        self._decision = None
        self._recorded = set()
        self._rec = StepRecord(index, float(t), self.step.phase, True, "")

    def end_run(self) -> RunReport:
        self._finish_step()
        self.report.stream_resets = sum(s.history.resets for s in self.streams.values())
        return self.report

    def reset(self) -> None:
        """Drop all cached tensors (e.g. between runs, or when the host restarts sampling)."""
        self.streams.clear()

    # -- model side: one closure around the whole stack -------------------------------------------
    def __call__(self, stream: str, h: torch.Tensor, run_fn: Callable[[torch.Tensor], torch.Tensor],
                 modulated_fn: Optional[Callable[[], torch.Tensor]] = None) -> torch.Tensor:
        pred = self.enter([stream], [h], modulated_fn)
        if pred is None:
            y = run_fn(h)
            self.leave([stream], [h], [y])
            return y
        if self.measure_error:
            y = run_fn(h)
            err = float(torch.linalg.vector_norm((pred[0] - y).float()) / torch.linalg.vector_norm(y.float()).clamp_min(1e-12))
            self._rec.error = err if self._rec.error is None else max(self._rec.error, err)
        return pred[0]

    # -- model side: split API for hosts that enter the stack at its first block and leave at its last
    def enter(self, streams: Sequence[str], inputs: Sequence[torch.Tensor],
              modulated_fn: Optional[Callable[[], torch.Tensor]] = None, lead: int = 0) -> Optional[List[torch.Tensor]]:
        """At the stack's entry, for the streams of one forward call (batched together or one alone).

        Decides once per step (stream ``lead`` of the step's first call decides; ``modulated_fn`` is
        its block-0 modulated input). Returns None when the stack must run for these streams (then
        call :meth:`leave` with its outputs), else the predicted stack outputs, one per stream. A
        stream that cannot be predicted yet (no history) makes the whole call compute; the step is
        then reported as computed with reason ``forced (...)``.
        """
        if self.step is None:
            raise RuntimeError("CacheRun: call begin_step() before the block stack")
        states = [self._stream(s, h) for s, h in zip(streams, inputs)]
        if self._decision is None:
            d = self._decide(states[lead if 0 <= lead < len(states) else 0], modulated_fn)
            self._decision = d
            self._rec.computed, self._rec.reason, self._rec.gate = d.compute, d.reason, d.gate
        if self._decision.compute:
            return None
        cannot = [s for s, st in zip(streams, states) if not self.method.can_predict(self.step, st)]
        if cannot:
            # the stack runs in this step after all: report it as computed (never over-claim a skip)
            self._rec.forced_streams.extend(cannot)
            self._rec.computed = True
            if not self._rec.reason.startswith("forced"):
                self._rec.reason = f"forced ({self._rec.reason})"
            self._decision = Decision(True, self._rec.reason, self._decision.gate)  # later calls of the step compute
            return None
        out = []
        for s, st, h in zip(streams, states, inputs):
            y = self._predict(st, h)
            if s not in self._recorded:
                self.method.observe_skip(self.step, st, h, y)
                self._recorded.add(s)
            out.append(y)
        return out

    def leave(self, streams: Sequence[str], inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor]) -> None:
        """At the stack's exit of a computed call: record each stream once per step."""
        if self.step is None:
            return
        for s, h, y in zip(streams, inputs, outputs):
            if s in self._recorded:
                continue
            self._observe(self._stream(s, h), h, y)
            self._recorded.add(s)

    # -- internals --------------------------------------------------------------------------------
    def _stream(self, stream: str, h: torch.Tensor) -> StreamState:
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = StreamState(ResidualHistory(self.method.capacity, self.store_device))
        if st.history.check_meta(h):
            st.extras.clear()
        return st

    @_no_compile
    def _decide(self, st: StreamState, modulated_fn) -> Decision:
        active = self._active if self._active is not None else self.method.in_window(self.step)
        if not active:
            if isinstance(self.method, TeaCache):
                self.method.decide(self.step, st, modulated_fn)  # keep its reference input current
            return Decision(True, "outside start/end")
        d = self.method.decide(self.step, st, modulated_fn)
        if not d.compute and not self.method.can_predict(self.step, st):
            return Decision(True, "warmup", d.gate)
        return d

    @_no_compile
    def _predict(self, st: StreamState, h: torch.Tensor) -> torch.Tensor:
        return self.method.predict(self.step, st, h, self._rec)

    @_no_compile
    def _observe(self, st: StreamState, h: torch.Tensor, y: torch.Tensor) -> None:
        self.method.observe(self.step, st, h, y)
        self.report.cache_bytes = max(self.report.cache_bytes, self.cache_bytes())

    def cache_bytes(self) -> int:
        total = 0
        for s in self.streams.values():
            total += s.history.nbytes()
            total += sum(v.numel() * v.element_size() for v in s.extras.values() if isinstance(v, torch.Tensor))
        return total

    def _finish_step(self) -> None:
        if self._rec is not None and self._decision is not None:
            self.report.steps.append(self._rec)
        self._rec = None
