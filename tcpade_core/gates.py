"""Gates: *when* to compute. Each gate decides per step, for the stream that leads the step.

A gate returns a :class:`Decision` with its reason and the value it compared (the TSI stability
score, TeaCache's accumulated distance, ...), so the run report can say why a step was computed or
skipped. Gates never predict, and meet predictors only through what they declare
(:mod:`tcpade_core.methods` refuses a pairing that cannot work).

Protocol (:class:`Gate` is the base):

* ``name`` / ``threshold``: for the report; ``rule`` / ``axis``: how the UI explains the gate's signal;
* what it reads, declared: ``needs_residuals`` (how many computed residuals of the stream; 0: none),
  ``reads`` (capabilities of the predictor, e.g. ``"self_error"``), ``signal`` (block 0's modulated input),
  ``leading_residual`` (the leading blocks' input and output: then ``signal_fn`` returns that pair instead);
* ``State``: its per-stream state class (``reset()``), made by the engine for each stream;
* ``decide(step, st, signal_fn) -> Decision``: ``st`` is the stream (``st.gate``: this gate's state;
  ``st.residuals``: the residuals it declared; ``st.pred``: the predictor's state, read only for a declared
  capability); ``signal_fn()`` returns the block-0 modulated input of the leading stream (TeaCache's
  signal), computed only if the gate calls it;
* ``track(step, st, signal_fn)``: called instead of ``decide`` on steps outside the active window,
  so that a gate with a running reference (TeaCache) stays current;
* ``commit(st, computed)``: once per stream and step, when the engine knows whether the stack ran for it;
* ``step_done(index, computed)`` when a step is over; ``note(num_steps)``: a line for the run report, or None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import shape as _shape
from .config import budget, placement_for
from .signals import curvature_test, rel_l1, turn

EPS = 1e-12
RECIPROCAL_CAP = 100.0


class GateState:
    """A gate's per-stream state (base: none)."""

    def reset(self) -> None:
        pass

    def tensors(self) -> Tuple[torch.Tensor, ...]:
        return ()


@dataclass
class Decision:
    compute: bool
    reason: str
    gate: Optional[float] = None
    forced: bool = False  # decided by the schedule (grid, warm-up, first/last step), not by the signal


class Gate:
    """Base: compute every step."""

    name = ""
    threshold: Optional[float] = None
    rule = ""  # how the gate decides, in a few words (the UI's legend)
    axis: Optional[Tuple[str, str, str, str]] = None  # its signal's axis: name, short name, threshold symbol, skip side
    axis_scale = "linear"  # how the UI plots its signal: "linear", or "log" for a score spanning decades
    needs_residuals = 0
    reads: FrozenSet[str] = frozenset()  # predictor capabilities the gate reads
    signal = False  # it reads block 0's modulated input
    # it reads the leading blocks' (input, output) of the deciding stream instead: the caller runs the method's
    # leading blocks ahead of the cached stack and hands that pair (only to a gate that declares it)
    leading_residual = False
    State = GateState

    def decide(self, step, st, signal_fn) -> Decision:
        return Decision(True, "full", forced=True)

    def track(self, step, st, signal_fn) -> None:
        pass

    def commit(self, st, computed: bool) -> None:
        """Called once per stream and step with whether the stack ran for it (whoever decided: a speed target, a
        warm-up or a hold may overrule the gate)."""

    def step_done(self, index: int, computed: bool) -> None:
        """Called once per step when it is over (a speed target counts its computes)."""

    def note(self, num_steps: int) -> Optional[str]:
        """A line for the run's report (None: nothing to say)."""
        return None


class IntervalGate(Gate):
    """Compute the first ``first`` steps, then step ``i`` when ``(i - offset) % interval == 0``.

    Reuse / FORA and TraCache: first 0, offset 0 (steps 0, N, 2N, ...; reasons "interval" / "stride").
    TaylorSeer as its official code schedules it (``cal_type``: full while ``i < first_enhance``, then
    after every ``N - 1`` predicted steps): first = first_enhance, offset = first_enhance - 1.
    """

    def __init__(self, interval: int, first: int = 0, offset: int = 0, reason: str = "interval"):
        self.interval, self.first, self.offset, self.reason = interval, first, offset, reason
        self.name = reason
        self.rule = f"fixed {reason}"

    def decide(self, step, st, signal_fn) -> Decision:
        if step.index < self.first:
            return Decision(True, "first_enhance", forced=True)
        return Decision((step.index - self.offset) % self.interval == 0, self.reason, forced=True)


@dataclass
class RescaledL1State(GateState):
    prev_mod: Optional[torch.Tensor] = None  # the last step's modulated input
    acc: float = 0.0  # the accumulated rescaled distance

    def reset(self) -> None:
        self.prev_mod, self.acc = None, 0.0

    def tensors(self):
        return (self.prev_mod,) if self.prev_mod is not None else ()


class RescaledL1Gate(Gate):
    """TeaCache: accumulate ``poly(mean|m_t - m_prev| / mean|m_prev|)`` over the block-0 modulated input
    ``m``; skip while the sum stays below ``threshold`` (delta), reset it on every computed step. The first
    and last steps always compute. ``coefficients``: numpy ``poly1d`` order, highest power first."""

    name = "accumulated rel. L1"
    rule = "skip while distance < δ"
    axis = ("distance", "dist.", "δ", "skip below")
    signal = True
    State = RescaledL1State

    def __init__(self, threshold: float, coefficients: Sequence[float]):
        self.threshold = threshold
        self._poly = list(coefficients)

    def rescale(self, x: float) -> float:
        out = 0.0
        for c in self._poly:
            out = out * x + c
        return out

    def decide(self, step, st, signal_fn) -> Decision:
        g: RescaledL1State = st.gate
        mod = signal_fn() if signal_fn is not None else None
        prev = g.prev_mod
        if mod is not None:
            mod = mod.detach()
            g.prev_mod = mod.clone()
        first, last = step.index == 0, step.index == step.num_steps - 1
        if prev is None or mod is None or prev.shape != mod.shape or first or last:
            g.acc = 0.0
            return Decision(True, "first" if first else "last" if last else "no reference", 0.0, forced=True)
        acc = float(g.acc) + self.rescale(rel_l1(mod, prev))
        if acc < self.threshold:
            g.acc = acc
            return Decision(False, "acc<delta", acc)
        g.acc = 0.0
        return Decision(True, "acc>=delta", acc)

    def track(self, step, st, signal_fn) -> None:
        self.decide(step, st, signal_fn)  # keep the reference input (and the sum) current


@dataclass
class MagCacheState(GateState):
    """MagCache's accumulators since the last computed step, float32 as in its node (its ratios are a float32
    tensor, so every product and sum is float32)."""

    ratio: np.float32 = np.float32(1.0)
    err: np.float32 = np.float32(0.0)
    steps: int = 0

    def reset(self) -> None:
        self.ratio, self.err, self.steps = np.float32(1.0), np.float32(0.0), 0


class MagCacheGate(Gate):
    """MagCache (Zehong-Ma/ComfyUI-MagCache ``nodes.py``): from step ``int(N * retention)`` on, per step
    ``acc_ratio *= ratios[j]``, ``acc_steps += 1``, ``acc_err += |1 - acc_ratio|``; skip while
    ``acc_err < threshold`` and ``acc_steps <= K``, else reset all three and compute. ``j`` is the calibration step
    of step ``i`` (:func:`tcpade_core.magcache_tables.calibration_step`); a ``j`` in ``always_compute`` computes
    without touching the accumulators (its FLUX forward's step 11). Before the retention step every step computes
    and the accumulators stay as they are.

    Streams: its FLUX forward keeps one set of accumulators for the whole batch (cond and uncond together), as
    the engine's first stream of a step decides here. Its Wan forward keeps one set per stream (reading the
    interleaved ratios) and skips when either stream may skip; the pack reads the first stream's ratios and lets
    that stream decide for both. Where the engine or a speed target computes a step the gate would skip (no
    cached residual yet, the budget's spacing), the cached residual is new: the accumulators restart from it.
    """

    name = "accumulated magnitude error"
    rule = "skip while error < δ and skipped ≤ K"
    axis = ("accumulated error", "err.", "δ", "skip below")

    State = MagCacheState

    def __init__(
        self,
        threshold: float,
        K: int,
        retention_ratio: float,
        ratios: Sequence[float],
        always_compute: Sequence[int] = (),
    ):
        self.threshold, self.K, self.retention_ratio = threshold, int(K), retention_ratio
        self.ratios = np.asarray(ratios, dtype=np.float32)
        self.always_compute = frozenset(int(j) for j in always_compute)
        self._skipped_state: Optional[MagCacheState] = None  # the state that decided to skip the current step

    def start_step(self, num_steps: int) -> int:
        """The first step the gate may skip: ``int(N * retention_ratio)``."""
        return int(num_steps * self.retention_ratio)

    def decide(self, step, st, signal_fn) -> Decision:
        from .magcache_tables import calibration_step

        self._skipped_state = None
        if step.index < self.start_step(step.num_steps):
            return Decision(True, "retention", forced=True)
        j = calibration_step(step.index, step.num_steps, len(self.ratios))
        if j in self.always_compute:
            return Decision(True, "always computed", forced=True)
        g: MagCacheState = st.gate
        g.ratio = np.float32(g.ratio * self.ratios[j])
        g.steps += 1
        g.err = np.float32(g.err + np.abs(np.float32(1.0) - g.ratio))
        err = float(g.err)
        if err < self.threshold and g.steps <= self.K:
            self._skipped_state = g
            return Decision(False, "err<δ", err)
        g.reset()
        return Decision(True, "err>=δ" if err >= self.threshold else "K reached", err)

    def step_done(self, index: int, computed: bool) -> None:
        if computed and self._skipped_state is not None:  # computed after all: the accumulators restart
            self._skipped_state.reset()
        self._skipped_state = None


class FirstBlockState(GateState):
    ref: Optional[torch.Tensor] = None  # the leading blocks' residual (or output) of the last computed step
    pending: Optional[torch.Tensor] = None  # this step's, kept as ``ref`` if the step computes
    hits: int = 0  # cached steps in a row

    def reset(self) -> None:
        self.ref, self.pending, self.hits = None, None, 0

    def tensors(self):
        return tuple(t for t in (self.ref, self.pending) if t is not None)


class FirstBlockGate(Gate):
    """First Block Cache / DBCache: the leading blocks run on every step; with ``r`` their residual
    ``H_after_Fn - H_in`` (``compare="output"``: ``H_after_Fn``), a step is skipped while
    ``mean|r - r_ref| / mean|r_ref| < threshold`` and fewer than ``max_consecutive`` steps in a row were cached
    (-1: no limit). ``r_ref`` is ``r`` of the last *computed* step (a cached step leaves it alone), so the change
    accumulates over a run of cached steps. The first step, the first ``warmup_steps`` steps, and a step without a
    reference (or with a reference of another shape) compute."""

    name = "first-block rel. L1"
    rule = "skip while change < threshold"
    axis = ("leading-block change", "change", "thr.", "skip below")
    axis_scale = "log"  # the change spans decades (1e-3 late in a run, ~1 early)
    leading_residual = True
    State = FirstBlockState

    def __init__(self, threshold: float, max_consecutive: int = -1, warmup_steps: int = 0, compare: str = "residual"):
        self.threshold, self.max_consecutive = threshold, max_consecutive
        self.warmup_steps, self.compare = warmup_steps, compare

    def _signal(self, st, signal_fn) -> Optional[torch.Tensor]:
        pair = signal_fn() if signal_fn is not None else None
        g: FirstBlockState = st.gate
        if pair is None:
            g.pending = None
            return None
        h_in, h_lead = pair
        r = h_lead.detach().clone() if self.compare == "output" else (h_lead - h_in).detach()  # the stream's dtype
        g.pending = r
        return r

    def decide(self, step, st, signal_fn) -> Decision:
        g: FirstBlockState = st.gate
        r, ref = self._signal(st, signal_fn), g.ref
        if step.index < max(self.warmup_steps, 1):
            return Decision(True, "first" if step.index == 0 else "warmup", forced=True)
        if r is None or ref is None or r.shape != ref.shape:
            return Decision(True, "no reference", forced=True)
        change = rel_l1(r, ref)
        if change >= self.threshold:
            return Decision(True, "change>=thr", change)
        if 0 <= self.max_consecutive <= g.hits:
            return Decision(True, "max consecutive", change, forced=True)
        return Decision(False, "change<thr", change)

    def track(self, step, st, signal_fn) -> None:
        self._signal(st, signal_fn)  # outside the window the step computes: its residual becomes the reference

    def commit(self, st, computed: bool) -> None:
        g: FirstBlockState = st.gate
        if computed:
            if g.pending is not None:
                g.ref = g.pending
            g.hits = 0
        else:
            g.hits += 1
        g.pending = None


# ---------------------------------------------------------------- TSI (TC-Padé Eq. 1)


def tsi_literal(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor) -> float:
    """Eq. 1 as printed: 1/2 ||u_{t+1} - u_{t+2}||, u_{t+1} = unit(R_{t+1} - R_{t+2}),
    u_{t+2} = unit(R_{t+2} - R_{t+3}). 0 on a straight line, sqrt(2)/2 at a right angle, 1 at a
    reversal. If either difference has zero norm the residual is not moving: TSI = 0 (steady).
    (:func:`tcpade_core.signals.turn`.)"""
    return turn(r1, r2, r3, guard="zero")


# Eq. 1's TSI -> the score compared against theta (skip when score >= theta):
STABILITY_SCALES: Dict[str, Callable[[float], float]] = {
    # 1 / (2 TSI) = 1 / ||u_{t+1} - u_{t+2}||, in [0.5, 100] (capped so reports stay finite JSON): 100 on a
    # straight line, 1/sqrt(2) at a right angle, 0.5 at a reversal; theta = 1.3 / 1.0 / 0.7 then skip while the
    # direction turns by less than 45 / 60 / 91 degrees
    "reciprocal": lambda tsi: RECIPROCAL_CAP if tsi <= 0.5 / RECIPROCAL_CAP else 1.0 / (2.0 * tsi),
    # TSI itself (in [0, 1]; as printed, larger means *less* steady)
    "literal": lambda tsi: tsi,
    # 1 + cos(angle between u_{t+1} and u_{t+2}) = 2 - 2 TSI^2, in [0, 2]: 2 on a straight line, 1 at a right
    # angle, 0 at a reversal
    "cosine": lambda tsi: 2.0 - 2.0 * tsi * tsi,
    # ||u_{t+1} + u_{t+2}|| = 2 sqrt(1 - TSI^2): 2, sqrt(2), 0
    "sum_norm": lambda tsi: 2.0 * math.sqrt(max(0.0, 1.0 - tsi * tsi)),
}


def stability_score(tsi: float, scale: str) -> float:
    """Map Eq. 1's TSI to the score compared against theta (skip when score >= theta); the scales are
    :data:`STABILITY_SCALES`."""
    fn = STABILITY_SCALES.get(scale)
    if fn is None:
        raise ValueError(f"unknown tsi_scale {scale!r}")
    return fn(tsi)


# TC-Padé's own gates skip nothing before two values exist: Eq. 1 and the Padé form read two or more. Its
# predictor predicts from one (reuse), so a speed target or a planned schedule may skip step 1; its own gate
# keeps the warm-up it was measured with.
WARM_VALUES = 2


class TSIGate(Gate):
    """TC-Padé's gate: forced computes on a grid, the stability score (Eq. 1, mapped by ``scale``) of the three
    newest residuals decides in between: a step is skipped when the score is >= ``theta``.

    ``schedule="interval"``: the first step of every ``interval``-step interval computes, and every step
    until three residuals exist ("warmup"). ``schedule="spread"``: the first ``warmup_steps`` compute,
    then every ``interval``-th step counted from the last of them (TaylorSeer's grid); with fewer than
    three residuals, or three that are not equally spaced (the warm-up ones), the trajectory counts as steady.
    """

    name = "TSI stability"
    rule = "skip when stability ≥ θ"
    axis = ("stability score", "score", "θ", "skip above")
    axis_scale = "log"  # the default reading's score 1/(2 TSI) runs up to 100
    needs_residuals = 3

    def __init__(self, theta: float, interval: int, scale: str, schedule: str = "interval", warmup_steps: int = 2):
        self.threshold, self.interval, self.scale = theta, interval, scale
        self.schedule, self.warmup_steps = schedule, warmup_steps
        self.forced = {"spread": self._forced_spread, "interval": self._forced_interval}[schedule]

    def _forced_spread(self, i: int) -> Optional[str]:
        if i < self.warmup_steps:
            return "warmup"
        return "interval" if (i - self.warmup_steps + 1) % self.interval == 0 else None

    def _forced_interval(self, i: int) -> Optional[str]:
        return "interval" if i % self.interval == 0 else None

    def decide(self, step, st, signal_fn) -> Decision:
        why = self.forced(step.index)
        if why is not None:
            return Decision(True, why, forced=True)
        hist = st.residuals
        if len(hist) < 3 and self.schedule != "spread":
            return Decision(True, "warmup", forced=True)
        es = hist.latest(3)
        if len(es) < 3 or (self.schedule == "spread" and es[0].step - es[1].step != es[1].step - es[2].step):
            # Eq. 1 compares equally spaced differences (the warm-up ones are not): no evidence of a turn,
            # so the step counts as steady (the score of a straight line)
            steady = stability_score(0.0, self.scale)
            if len(es) < WARM_VALUES:
                return Decision(True, "warmup", steady, forced=True)
            return Decision(steady < self.threshold, "tsi n/a", steady)
        r1, r2, r3 = (e.value for e in es)
        score = stability_score(tsi_literal(r1, r2, r3), self.scale)
        skip = score >= self.threshold
        return Decision(not skip, "tsi>=theta" if skip else "tsi<theta", score)


class ErrorGate(TSIGate):
    """A gate that estimates its own error: on every computed step the predictor reports how far its
    prediction of that step was from the truth (the capability ``"self_error"``: the predictor's state holds
    ``self_error`` = (relative error e, distance k0 from the previous compute), and ``newest_step``, the step
    of its newest history entry). A step k steps after that entry is expected to be off by e (k / k0)^2 (a
    linear extrapolation's error grows with the square of the distance); the score ``tolerance / expected``
    is compared with theta: skip while it is >= theta. The forced grid is :class:`TSIGate`'s."""

    name = "self-error"
    rule = "skip while expected error < tolerance"
    axis = ("tolerance / expected error", "score", "θ", "skip above")
    needs_residuals = 0
    reads = frozenset({"self_error"})

    def __init__(self, theta: float, interval: int, tolerance: float, schedule: str, warmup_steps: int):
        super().__init__(theta, interval, "reciprocal", schedule, warmup_steps)
        self.tolerance = tolerance

    def decide(self, step, st, signal_fn) -> Decision:
        why = self.forced(step.index)
        if why is not None:
            return Decision(True, why, forced=True)
        own, last = st.pred.self_error, st.pred.newest_step
        if own is None or last is None:  # no estimate yet: the grid alone decides on a spread schedule
            if len(st.history) < WARM_VALUES:
                return Decision(True, "warmup", forced=True)
            return Decision(self.schedule != "spread", "no estimate")
        err, k0 = own
        k = step.index - last
        expected = err * (k / max(k0, 1)) ** 2
        score = (
            RECIPROCAL_CAP
            if expected <= self.tolerance / RECIPROCAL_CAP
            else min(RECIPROCAL_CAP, self.tolerance / expected)
        )
        skip = score >= self.threshold
        return Decision(not skip, "error<tol" if skip else "error>=tol", score)


def bend_score(r_old: torch.Tensor, r_mid: torch.Tensor, r_new: torch.Tensor, eps: float = 1e-12) -> float:
    """The authors' curvature score: 0.5 ||u1 - u2||, u1 = unit(r_mid - r_old), u2 = unit(r_new - r_mid), with
    ``eps`` added to each norm (Eq. 1's TSI with their guard, :func:`tcpade_core.signals.turn`); in [0, 1]."""
    return turn(r_new, r_mid, r_old, guard="add", eps=eps)


class OfficialScheduleGate(Gate):
    """The authors' schedule: predict when ``start_step < i < num_steps - 1``, ``i % interval != 0`` and the
    curvature test over the stored residuals (predicted ones included where the predictor stores them) passes;
    the test needs five residuals (:data:`tcpade_core.signals.CURVATURE_MIN_ENTRIES`)."""

    name = "curvature (official)"
    rule = "skip when curvature < N"
    axis = ("curvature", "curv.", "N", "skip below")

    def __init__(self, threshold: float, interval: int, start_step: int, history: int = 5):
        """``history``: the residuals it reads; the authors' method reads its predictor's store of
        ``history_size`` (with fewer than five the test always passes, as in their code)."""
        self.threshold, self.interval, self.start_step = threshold, interval, start_step
        self.needs_residuals = history

    def decide(self, step, st, signal_fn) -> Decision:
        i = step.index
        if not (self.start_step < i < step.num_steps - 1):
            return Decision(True, "schedule", forced=True)
        if i % self.interval == 0:
            return Decision(True, "interval", forced=True)
        ok, score = curvature_test(st.residuals, self.threshold)
        return Decision(not ok, "curvature<N" if ok else "curvature>=N", score)


def spectrum_schedule(num_steps: int, warmup: int, window: float, alpha: float) -> List[int]:
    """The steps Spectrum's own schedule computes (its ``our_flux_forward``): the first ``warmup`` steps, then a
    step computes when (cached steps since the last compute + 1) % floor(N) == 0, N starting at ``window`` and
    growing by ``alpha`` (``flex_window``, rounded to 3 decimals) on each of those computes. At 50 steps, warm-up
    5, N 2, alpha 0.75 it computes 14 steps (its README's "14 full network passes"); alpha 3.0: 10."""
    out, cached, ws = [], 0, float(window)
    for i in range(num_steps):
        compute = i < warmup or (cached + 1) % math.floor(ws) == 0
        if compute and i >= warmup:
            ws = round(ws + alpha, 3)
        cached = 0 if compute else cached + 1
        if compute:
            out.append(i)
    return out


class SpectrumGate(Gate):
    """Spectrum's schedule, content-blind, its gaps widening (:func:`spectrum_schedule`), counted on the run:
    the cached steps are those this run really skipped (a step the engine computed for another reason, e.g.
    outside the start/end window, restarts the count), and N grows on each compute the schedule itself asked
    for. Its counters belong to one run (the engine builds a gate per run)."""

    name = "Spectrum window"
    rule = "fixed widening window"

    def __init__(self, warmup: int, window: float, alpha: float):
        self.warmup, self.window, self.alpha = warmup, float(window), alpha
        self.cached, self.ws, self._grow = 0, float(window), False

    def decide(self, step, st, signal_fn) -> Decision:
        if step.index < self.warmup:
            self._grow = False
            return Decision(True, "warmup", forced=True)
        compute = (self.cached + 1) % math.floor(self.ws) == 0
        self._grow = compute
        return Decision(compute, f"window {math.floor(self.ws)}", forced=True)

    def step_done(self, index: int, computed: bool) -> None:
        if computed and self._grow:
            self.ws = round(self.ws + self.alpha, 3)
        self._grow = False
        self.cached = 0 if computed else self.cached + 1


class WrappedGate(Gate):
    """A schedule around the method's own gate (a speed target, a plan): it reports, declares and keeps per-stream
    state as that gate does, and keeps it current on the steps outside the start/end window."""

    # what a wrapper takes over from the gate it wraps
    _SHARED = (
        "name",
        "threshold",
        "needs_residuals",
        "axis_scale",
        "rule",
        "axis",
        "reads",
        "signal",
        "leading_residual",
        "State",
    )

    def __init__(self, base: Gate):
        self.base = base
        for attr in self._SHARED:
            setattr(self, attr, getattr(base, attr))

    def track(self, step, st, signal_fn) -> None:
        self.base.track(step, st, signal_fn)

    def step_done(self, index: int, computed: bool) -> None:
        self.base.step_done(index, computed)

    def commit(self, st, computed: bool) -> None:
        self.base.commit(st, computed)


class BudgetGate(WrappedGate):
    """A speed target: the run computes ``budget`` steps (exactly, as long as the warm-up fits in it).

    The method's own gate keeps its signal, not its schedule: at step i with b computes left for the r steps
    from here, the step computes when b >= r (the budget must be spent) or when the gap since the last
    compute reaches the spacing; it computes early, from half that spacing on, when the method's own signal asks
    for it (TSI turning, TeaCache's accumulated distance, ...); it never computes once the budget is spent. The
    engine's warm-up computes (a predictor that is not ready) count against it.

    ``placement="auto"`` is resolved at the first step (:func:`tcpade_core.config.placement_for`, from
    ``prediction`` and the run's step count). ``"even"``: the spacing is the even one, r / b. ``"shape"``: the
    computes go where the default shape puts them (:func:`tcpade_core.shape.schedule` for the run's steps and
    budget, the first ``warm`` steps, the predictor's warm-up, among them); the spacing is the gap from the last
    compute to the next planned step still ahead. A compute the schedule did not plan (early by the signal, or
    forced by the engine) takes the place of the next planned one, so the budget stays exact.
    """

    def __init__(self, base: Gate, target: float, placement: str = "even", warm: int = 1, prediction=None):
        super().__init__(base)
        self.target = float(target)
        self.placement, self.warm = placement, int(warm)
        self.prediction = prediction  # placement "auto" reads it (with the step count) at the first step
        self.used, self.last, self.budget = 0, None, None
        self.early = 0  # computes the method's signal moved earlier than the even spacing
        self.shape: Optional[List[int]] = None  # placement "shape": the planned steps

    def plan(self, num_steps: int) -> int:
        return budget(num_steps, self.target)

    def note(self, num_steps: int) -> Optional[str]:
        if self.budget is None:
            return None
        where = "spaced evenly" if self.placement == "even" else "placed by the default shape"
        return f"target {self.target:g}x: budget {self.budget} of {num_steps} computes, {where}" + (
            f"; the {self.base.name} signal moved {self.early} earlier" if self.early else ""
        )

    def _spacing(self, index: int, b: int, r: int) -> float:
        """The gap from the last compute at which step ``index`` must compute."""
        if self.shape is None:
            return r / b
        ahead = [s for s in self.shape if s >= index]
        ahead = ahead[max(0, len(ahead) - b) :]  # an unplanned compute took the place of the next planned one
        if not ahead:
            return r / b
        last = self.last if self.last is not None else -1
        return ahead[0] - last

    def decide(self, step, st, signal_fn) -> Decision:
        if self.budget is None:
            self.budget = self.plan(step.num_steps)
            self.placement = placement_for(self.placement, self.prediction, self.target, step.num_steps)
            if self.placement == "shape":
                # imported with the module: a submodule imported lazily is not found where the host loads the
                # pack under a path-like name (ComfyUI's custom_nodes loader)
                self.shape = _shape.schedule(step.num_steps, self.budget, self.warm)
        own = self.base.decide(step, st, signal_fn)
        b, r = self.budget - self.used, step.num_steps - step.index
        gap = step.index - self.last if self.last is not None else step.index + 1
        if b <= 0:
            return Decision(False, "budget spent", own.gate)
        if b >= r:
            return Decision(True, "budget: every step left", own.gate, forced=True)
        spacing = self._spacing(step.index, b, r)
        if gap >= spacing - 1e-9:
            return Decision(True, "budget spacing" if self.shape is None else "budget shape", own.gate, forced=True)
        if own.compute and not own.forced and gap >= spacing / 2:
            self.early += 1
            return Decision(True, f"{own.reason} (early)", own.gate)
        return Decision(False, "budget spacing" if self.shape is None else "budget shape", own.gate)

    def step_done(self, index: int, computed: bool) -> None:
        super().step_done(index, computed)
        if computed:
            self.used += 1
            self.last = index


class PlannedGate(WrappedGate):
    """A planned schedule (:mod:`tcpade_core.planner`): compute exactly the planned steps. The method's own gate
    keeps its name in the report; its signal is not read.

    ``tsi_theta`` (None: off, the plan alone decides): an online correction by TC-Padé's TSI. The gate keeps the
    stream's three newest computed residuals (whatever the method), and between two planned computes c < d the
    step i computes early when ``i - last >= (d - last) / 2`` (from half the gap on, as
    :class:`BudgetGate` lets a signal move a compute) and the stability score of those residuals, 1 / (2 TSI)
    (Eq. 1 on their chords, any spacing), is below ``tsi_theta``: the trajectory turned at the last compute. A
    compute the plan did not place (early, or forced by the engine) takes the place of the next planned one, so the
    run computes exactly the planned number of steps."""

    def __init__(self, base: Gate, steps: Sequence[int], tsi_theta: Optional[float] = None):
        super().__init__(base)
        self.steps = frozenset(int(s) for s in steps)
        self.tsi_theta = None if tsi_theta is None else float(tsi_theta)
        self.early = 0  # computes the TSI moved earlier
        if self.tsi_theta is not None:
            self.needs_residuals = max(self.needs_residuals, 3)
            self.queue: List[int] = sorted(self.steps)  # the planned computes not yet made or replaced
            self.last: Optional[int] = None

    def decide(self, step, st, signal_fn) -> Decision:
        if self.tsi_theta is None:
            return Decision(step.index in self.steps, "planned", None, forced=True)
        i = step.index
        while self.queue and self.queue[0] < i:  # a planned step that did not compute (cannot happen in a run)
            self.queue.pop(0)
        if not self.queue:
            return Decision(False, "planned", None, forced=True)
        nxt = self.queue[0]
        if i == nxt:
            return Decision(True, "planned", None, forced=True)
        score = None
        if len(st.residuals) >= 3:
            r1, r2, r3 = (e.value for e in st.residuals.latest(3))
            score = stability_score(tsi_literal(r1, r2, r3), "reciprocal")
        last = self.last if self.last is not None else -1
        if score is not None and score < self.tsi_theta and i - last >= (nxt - last) / 2:
            self.early += 1
            return Decision(True, "tsi<theta (early)", score)
        return Decision(False, "planned", score, forced=score is None)

    def step_done(self, index: int, computed: bool) -> None:
        super().step_done(index, computed)
        if self.tsi_theta is None or not computed:
            return
        self.last = index
        if self.queue and self.queue[0] >= index:
            self.queue.pop(0)  # made, or replaced by this earlier compute

    def note(self, num_steps: int) -> Optional[str]:
        mine = sorted(s for s in self.steps if s < num_steps)
        return f"planned schedule: {len(mine)} of {num_steps} computes at steps {', '.join(map(str, mine))}" + (
            f"; the TSI moved {self.early} earlier (θ {self.tsi_theta:g})" if self.early else ""
        )
