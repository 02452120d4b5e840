"""The engine: one :class:`CacheRun` per sampling run wraps a block stack.

The sampler (or the ComfyUI patcher) calls, per step::

    run.begin_step(step_index, num_steps, t_norm, active)
    h_out = run(stream, h, run_fn, modulated_fn)   # once per stream (cond / uncond)
    # a method with leading blocks (run.leading_blocks > 0): the caller runs them first, hands their output as h
    # and, for a gate that reads them, leading_fn() -> (their input, their output); with trailing blocks
    # (run.trailing_blocks > 0) it runs them after, on h_out. run.split_blocks(depth) says where to cut a model.
    ...
    report = run.end_run()

``run`` decides once per step (the first stream of the step decides, as the host's EasyCache does),
then either calls ``run_fn(h)`` and records what the predictor needs, or returns a prediction.
*When* is the method's gate (:mod:`.gates`), *how* its predictor (:mod:`.predictors`), both from the
method's descriptor in :mod:`.methods`; *where* is the caller's business. The engine knows no method: it
reads what the gate and predictor declare (the residuals the gate needs, the history the predictor keeps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .config import _Common
from .gates import Decision, GateState
from .history import ResidualHistory
from .methods import build, leading_blocks, split_blocks, trailing_blocks
from .predictors import PredictorState, residual
from .report import RunReport, StepRecord

_disable = getattr(getattr(torch, "compiler", None), "disable", None)


def eager(fn):
    """Run ``fn`` and everything it calls eager under torch.compile (a graph break; nothing in eager mode): the
    engine's decisions and bookkeeping, and the host's, read per-run objects that must not become guards."""
    return _disable(fn) if _disable is not None else fn


def eager_frame(fn):
    """Only ``fn``'s own frame runs eager; the frames it calls are compiled as usual (the model's blocks)."""
    if _disable is None:
        return fn
    try:
        return _disable(fn, recursive=False)
    except TypeError:  # a torch without non-recursive disable: let Dynamo trace it (more recompiles, same result)
        return fn


@dataclass
class Step:
    index: int
    num_steps: int
    t: float
    phase: str = "-"


@dataclass
class StreamState:
    """One stream's state: the predictor's history and state, and the gate's residuals and state."""

    history: ResidualHistory
    residuals: ResidualHistory  # the residuals the gate reads (``history`` itself when it fits)
    pred: PredictorState
    gate: GateState

    def clear(self) -> None:
        self.pred.reset()
        self.gate.reset()
        if self.residuals is not self.history:
            self.residuals.reset()

    def nbytes(self) -> int:
        n = self.history.nbytes()
        if self.residuals is not self.history:
            n += self.residuals.nbytes()
        for t in (*self.pred.tensors(), *self.gate.tensors()):
            n += t.numel() * t.element_size()
        return n


class Stack:
    """The protocol a sampler drives per run (:class:`CacheRun`, or a probe that only watches the stack):
    ``begin_step(index, num_steps, t)`` per step, ``run(stream, h, run_fn, modulated_fn)`` per stream at the
    stack, ``end_run()`` at the end. This base computes every call and hands each one to :meth:`observe`."""

    def begin_step(self, index: int, num_steps: int, t: float = 0.0, active: bool = True) -> None:
        pass

    leading_blocks = 0  # blocks the caller runs ahead of the stack on every step (a probe: none)
    trailing_blocks = 0  # blocks the caller runs after the stack on every step (a probe: none)

    def split_blocks(self, depth: int) -> tuple:
        """(leading, trailing) blocks of a model of ``depth`` blocks, clamped to leave one block cached
        (:func:`tcpade_core.methods.split_blocks`)."""
        return split_blocks(depth, self.leading_blocks, self.trailing_blocks)[:2]

    def __call__(
        self,
        stream: str,
        h: torch.Tensor,
        run_fn: Callable[[torch.Tensor], torch.Tensor],
        modulated_fn: Optional[Callable[[], torch.Tensor]] = None,
        leading_fn: Optional[Callable[[], tuple]] = None,
    ) -> torch.Tensor:
        y = run_fn(h)
        self.observe(stream, h, y, modulated_fn)
        return y

    def observe(self, stream: str, h: torch.Tensor, y: torch.Tensor, modulated_fn) -> None:
        pass

    def end_run(self):
        return None


class CacheRun:
    """Per-run state of one cache method over one block stack. Create one per sampling run."""

    def __init__(
        self,
        cfg: _Common,
        store_device: Optional[str] = None,
        measure_error: bool = False,
        target_speedup: Optional[float] = None,
        prediction: Optional[str] = None,
    ):
        """The config's ``target_speedup`` > 0: compute round(steps / target) steps
        (:class:`~tcpade_core.gates.BudgetGate` around the method's gate) instead of following the method's own
        schedule. ``target_speedup`` here, when given, replaces the config's (checked by the config).
        ``prediction``: what the model predicts ("flow" or "eps"), which placement ``"auto"`` reads
        (:func:`tcpade_core.config.placement_for`, with the run's step count; None: even spacing)."""
        if target_speedup is not None:
            cfg = cfg.with_(target_speedup=target_speedup)
        target_speedup = cfg.target_speedup
        self.cfg = cfg
        # "auto" is resolved by the speed target's gate when the run's step count is known (its first step)
        self.gate, self.predictor = build(cfg, prediction)
        # the blocks ahead of the cached stack that run on every step (Method.leading_blocks): the caller runs them
        self.leading_blocks = leading_blocks(cfg)
        # the blocks after it that run on every step, on its computed or predicted output (Method.trailing_blocks)
        self.trailing_blocks = trailing_blocks(cfg)
        self.store_device = store_device
        self.measure_error = measure_error
        self.streams: Dict[str, StreamState] = {}
        self.report = RunReport(
            cfg.method,
            cfg.describe(),
            self.gate.name,
            self.gate.threshold,
            store_device=store_device or "same",
            target_speedup=float(target_speedup) or None,
        )
        self.step: Optional[Step] = None
        self._decision: Optional[Decision] = None
        self._rec: Optional[StepRecord] = None
        self._active = True
        self._hold: Optional[str] = None
        self._recorded: set = set()

    def split_blocks(self, depth: int) -> tuple:
        """(leading, trailing) blocks of this run on a model of ``depth`` blocks: the cached stack is the blocks
        ``[leading, depth - trailing)``. Clamped to leave one block cached; what was clamped is noted in the report."""
        lead, trail, note = split_blocks(depth, self.leading_blocks, self.trailing_blocks)
        if note and note not in self.report.notes:
            self.report.notes.append(note)
        return lead, trail

    def hold(self, reason: str, note: str) -> None:
        """Compute every step of this run (reason in each step's record, ``note`` in the report): a fallback
        the caller decides, e.g. a sampler that injects noise the predictor cannot see."""
        self._hold = reason
        if note not in self.report.notes:
            self.report.notes.append(note)

    # -- sampler side ---------------------------------------------------------------------------
    def begin_step(self, index: int, num_steps: int, t: float = 0.0, active: bool = True) -> None:
        """Start step ``index`` of ``num_steps`` at normalised time ``t`` (1 = noise, 0 = clean).

        ``active``: the step lies in the caller's start/end window (the host decides it in sigma);
        outside it the step always computes.
        """
        if index < 0 or num_steps <= 0 or index >= num_steps:
            raise ValueError(f"step index must be in [0, {num_steps - 1}], got {index}")
        self._finish_step()
        self.step = Step(index, num_steps, float(t), self.predictor.phase(index, num_steps))
        self._active = active
        self._decision = None
        self._recorded = set()
        self._rec = StepRecord(index, float(t), self.step.phase, True, "")

    def end_run(self) -> RunReport:
        self._finish_step()
        self.report.stream_resets = sum(s.history.resets for s in self.streams.values())
        note = self.gate.note(self.step.num_steps) if self.step is not None else None
        if note:
            self.report.target_note = note
        return self.report

    def reset(self) -> None:
        """Drop all cached tensors (stream histories and states). The budget, the step and the report are kept:
        this ends a run's memory use, it does not start a new run (a new run needs a new CacheRun)."""
        self.streams.clear()

    # -- model side: one closure around the whole stack -------------------------------------------
    def __call__(
        self,
        stream: str,
        h: torch.Tensor,
        run_fn: Callable[[torch.Tensor], torch.Tensor],
        modulated_fn: Optional[Callable[[], torch.Tensor]] = None,
        leading_fn: Optional[Callable[[], tuple]] = None,
    ) -> torch.Tensor:
        pred = self.enter([stream], [h], modulated_fn, leading_fn=leading_fn)
        if pred is None:
            y = run_fn(h)
            self.leave([stream], [h], [y])
            return y
        if self.measure_error:
            y = run_fn(h)
            err = float(
                torch.linalg.vector_norm((pred[0] - y).float()) / torch.linalg.vector_norm(y.float()).clamp_min(1e-12)
            )
            self._rec.error = err if self._rec.error is None else max(self._rec.error, err)
        return pred[0]

    # -- model side: split API for hosts that enter the stack at its first block and leave at its last
    def enter(
        self,
        streams: Sequence[str],
        inputs: Sequence[torch.Tensor],
        modulated_fn: Optional[Callable[[], torch.Tensor]] = None,
        lead: int = 0,
        leading_fn: Optional[Callable[[], tuple]] = None,
    ) -> Optional[List[torch.Tensor]]:
        """At the stack's entry, for the streams of one forward call (batched together or one alone).

        Decides once per step (stream ``lead`` of the step's first call decides; ``modulated_fn`` is
        its block-0 modulated input; ``leading_fn``: the (input, output) of the leading blocks for that stream, read
        only by a gate that declares ``leading_residual``). Returns None when the stack must run for these streams (then
        call :meth:`leave` with its outputs), else the predicted stack outputs, one per stream. A
        stream that cannot be predicted yet (no history) makes the whole call compute; the step is
        then reported as computed with reason ``forced (...)``.
        """
        if self.step is None:
            raise RuntimeError("CacheRun: call begin_step() before the block stack")
        states = [self._stream(s, h) for s, h in zip(streams, inputs)]
        if self._decision is None:
            signal_fn = leading_fn if self.gate.leading_residual else modulated_fn
            d = self._decide(states[lead if 0 <= lead < len(states) else 0], signal_fn)
            self._decision = d
            self._rec.computed, self._rec.reason, self._rec.gate = d.compute, d.reason, d.gate
        if self._decision.compute:
            return None
        cannot = [s for s, st in zip(streams, states) if not self.predictor.ready(self.step, st)]
        if cannot:
            # the stack runs in this step after all: report it as computed (never over-claim a skip)
            self._rec.forced_streams.extend(cannot)
            self._rec.computed = True
            self._rec.reason = f"forced ({self._rec.reason})"
            self._decision = Decision(True, self._rec.reason, self._decision.gate)  # later calls of the step compute
            return None
        out = []
        for s, st, h in zip(streams, states, inputs):
            y = self._predict(st, h)
            if s not in self._recorded:
                self.predictor.observe_skip(self.step, st, h, y)
                self.gate.commit(st, False)
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
            st = self.streams[stream] = self._new_stream()
        if st.history.check_meta(h):
            st.clear()
        if st.residuals is not st.history:
            st.residuals.check_meta(h)  # same stream, same storage dtype
        return st

    def _new_stream(self) -> StreamState:
        """The gate's residuals share the predictor's history when it stores residuals and keeps enough of them."""
        p, need = self.predictor, self.gate.needs_residuals
        states = (p.State(), self.gate.State())
        if need and (p.stores != "residual" or p.capacity < need):
            hist = ResidualHistory(p.capacity, self.store_device)
            return StreamState(hist, ResidualHistory(need, self.store_device), *states)
        hist = ResidualHistory(max(p.capacity, need), self.store_device)
        return StreamState(hist, hist, *states)

    @eager
    def _decide(self, st: StreamState, signal_fn) -> Decision:
        if self._hold is not None:
            return Decision(True, self._hold)
        if not self._active:
            self.gate.track(self.step, st, signal_fn)
            return Decision(True, "outside start/end")
        d = self.gate.decide(self.step, st, signal_fn)
        if not d.compute and not self.predictor.ready(self.step, st):
            return Decision(True, "warmup", d.gate)
        return d

    @eager
    def _predict(self, st: StreamState, h: torch.Tensor) -> torch.Tensor:
        return self.predictor.predict(self.step, st, h, self._rec)

    @eager
    def _observe(self, st: StreamState, h: torch.Tensor, y: torch.Tensor) -> None:
        self.predictor.observe(self.step, st, h, y)
        self.gate.commit(st, True)
        if st.residuals is not st.history:
            st.residuals.push(self.step.index, self.step.t, residual(y, h))
        self.report.cache_bytes = max(self.report.cache_bytes, self.cache_bytes())

    def cache_bytes(self) -> int:
        return sum(s.nbytes() for s in self.streams.values())

    def _finish_step(self) -> None:
        if self._rec is not None and self._decision is not None:
            self.report.steps.append(self._rec)
            self.gate.step_done(self._rec.step, self._rec.computed)
        self._rec = None
