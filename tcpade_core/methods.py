"""Every method is a gate (*when*, :mod:`tcpade_core.gates`) plus a predictor (*how*,
:mod:`tcpade_core.predictors`), declared in one table. Not every gate can drive every predictor yet: the error
gate reads a self-estimate that only the TC-Padé predictor writes, and the official schedule gate needs more
stored residuals than it declares; the engine still names the budget gate for its report note. (Open issue:
one descriptor per method, with declared capabilities.)
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from . import gates as G
from . import predictors as P

# method name -> (gate factory, predictor factory), each called with the method's config
METHODS: Dict[str, Tuple[Callable, Callable]] = {
    "none": (lambda c: G.Gate(), lambda c: P.NoPredictor()),
    "reuse": (lambda c: G.IntervalGate(c.interval), lambda c: P.ReusePredictor()),
    "taylorseer": (lambda c: G.IntervalGate(c.interval, first=c.first_enhance, offset=c.first_enhance - 1),
                   lambda c: P.TaylorPredictor(c.order, c.form, c.target, c.first_enhance)),
    "teacache": (lambda c: G.RescaledL1Gate(c.threshold, c.coefficients), lambda c: P.ReusePredictor()),
    "tracache": (lambda c: G.IntervalGate(c.stride, reason="stride"), lambda c: P.LagrangePredictor(c.max_order, c.target)),
    "tcpade": (lambda c: (G.ErrorGate(c.theta, c.interval, c.error_tolerance, c.schedule, c.warmup_steps)
                          if c.gate == "error" else G.TSIGate(c.theta, c.interval, c.tsi_scale, c.schedule, c.warmup_steps)),
               lambda c: P.PadePredictor(c)),
    "tcpade_official": (lambda c: G.OfficialScheduleGate(c.threshold, c.interval, c.start_step),
                        lambda c: P.OfficialPadePredictor(c)),
}


METHODS["composed"] = (lambda c: build(c.gate)[0], lambda c: build(c.predictor)[1])


def build(cfg) -> Tuple[G.Gate, P.Predictor]:
    """The (gate, predictor) pair of a method config."""
    make_gate, make_predictor = METHODS[cfg.method]
    return make_gate(cfg), make_predictor(cfg)
