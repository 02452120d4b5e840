"""Tests written against the survivors of a mutation run (issue 17 item 7, `.ci/mutation`): each one pins a
behaviour of the engine's core (history, gates, predictors, engine) that a plausible bug would change, with
values worked out by hand or equivalences that must hold exactly."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tcpade_core import (
    CacheRun,
    NoCacheConfig,
    ReuseConfig,
    TaylorSeerConfig,
    TCPadeConfig,
    TCPadeOfficialConfig,
    TeaCacheConfig,
    TraCacheConfig,
    make_config,
)
from tcpade_core import engine as E
from tcpade_core import gates as G
from tcpade_core import predictors as P
from tcpade_core.engine import Stack, Step, StreamState
from tcpade_core.history import ResidualHistory

META = torch.device("meta")


def vec(*xs, dtype=torch.float32):
    return torch.tensor(xs, dtype=dtype)


def hist_of(values, steps=None, capacity=None, computed=None):
    """A history holding ``values`` (oldest first) at ``steps`` (default 0, 1, 2, ...)."""
    steps = list(range(len(values))) if steps is None else steps
    h = ResidualHistory(capacity or len(values))
    for k, (s, v) in enumerate(zip(steps, values)):
        h.push(s, 1.0 - s / 20, v, computed=True if computed is None else computed[k])
    return h


# ================================================================ history


def test_history_stores_on_its_store_device_and_hands_out_where_asked():
    h = ResidualHistory(2, "meta")
    assert h.store_device == META
    h.push(0, 1.0, torch.ones(3))
    assert h.latest(1)[0].value.device == META and h.nbytes() == 12
    assert h.keep(torch.ones(2)).device == META
    plain = ResidualHistory(2)
    assert plain.store_device is None
    plain.push(0, 1.0, torch.ones(3))
    assert plain.latest(1)[0].value.device.type == "cpu"
    assert plain.latest(1, META)[0].value.device == META  # read onto the device asked for


def test_history_capacity_zero_keeps_nothing_and_a_negative_one_is_refused():
    h = ResidualHistory(0)
    h.push(0, 1.0, torch.ones(2))
    assert len(h) == 0 and h.nbytes() == 0 and h.latest(3) == []
    with pytest.raises(ValueError, match="capacity must be >= 0, got -1"):
        ResidualHistory(-1)
    one = ResidualHistory(1)
    for i in range(3):
        one.push(i, 0.0, torch.full((2,), float(i)))
    assert len(one) == 1 and one.latest(5)[0].step == 2


def test_history_meta_check_counts_each_reset_once_and_a_reset_history_takes_any_meta():
    h = ResidualHistory(3)
    assert h.check_meta(torch.zeros(2)) is False
    assert h.check_meta(torch.zeros(2)) is False and h.resets == 0
    h.push(0, 1.0, torch.ones(2))
    assert h.check_meta(torch.zeros(3)) is True and h.resets == 1 and len(h) == 0
    assert h.check_meta(torch.zeros(3)) is False and h.resets == 1  # the new meta is kept
    h.push(1, 1.0, torch.ones(3))
    h.reset()
    assert len(h) == 0
    assert h.check_meta(torch.zeros(5, dtype=torch.float16)) is False and h.resets == 1  # no meta after reset()
    assert h.store_dtype() == torch.float16


@pytest.mark.parametrize(
    "meta,like,want",
    [
        (None, None, torch.float32),
        (None, torch.float16, torch.float16),
        (None, torch.int64, torch.float32),
        (torch.bfloat16, torch.float16, torch.bfloat16),
        (torch.float64, None, torch.float64),
        (torch.int32, None, torch.float32),
        (torch.float16, torch.float64, torch.float16),
    ],
)
def test_history_store_dtype_rule(meta, like, want):
    h = ResidualHistory(1)
    if meta is not None:
        h.check_meta(torch.zeros(1, dtype=meta))
    assert h.store_dtype(None if like is None else torch.zeros(1, dtype=like)) == want


def test_history_keep_clamps_into_float16_detaches_and_never_shares_storage():
    h = ResidualHistory(2)
    h.check_meta(torch.zeros(3, dtype=torch.float16))
    v = h.keep(vec(1e6, -1e6, 1.5))
    assert v.dtype == torch.float16 and v.tolist() == [65504.0, -65504.0, 1.5]
    f = ResidualHistory(2)
    x = torch.arange(8.0, requires_grad=True)
    k = f.keep(x)
    assert not k.requires_grad and k.data_ptr() != x.data_ptr() and torch.equal(k, x.detach())
    view = torch.arange(8.0).view(2, 4)[1]
    kv = f.keep(view)
    assert kv._base is None and kv.tolist() == [4.0, 5.0, 6.0, 7.0]
    src = torch.ones(2)
    f.push(0, 1.0, src)
    src.add_(1.0)  # the caller's buffer changes: the history does not
    assert f.latest(1)[0].value.tolist() == [1.0, 1.0]


def test_history_push_replaces_a_repeated_step_and_keeps_t_and_computed():
    h = ResidualHistory(3)
    h.push(4, 0.5, torch.ones(2))
    h.push(4, 0.5, 2 * torch.ones(2), computed=False)
    h.push(5, 0.25, 3 * torch.ones(2))
    es = h.latest(3)
    assert [(e.step, e.t, e.computed, e.value.tolist()) for e in es] == [
        (5, 0.25, True, [3.0, 3.0]),
        (4, 0.5, False, [2.0, 2.0]),
    ]
    assert isinstance(es[0].t, float)


def test_history_reads_in_the_asked_dtype_and_counts_stored_bytes():
    h = ResidualHistory(2)
    h.check_meta(torch.zeros(3, dtype=torch.float16))
    h.push(0, 1.0, vec(1.0, 2.0, 3.0))
    h.push(1, 0.9, vec(4.0, 5.0, 6.0))
    assert h.nbytes() == 2 * 3 * 2
    assert h.latest(1)[0].value.dtype == torch.float32
    assert h.latest(1, dtype=torch.float64)[0].value.dtype == torch.float64
    assert [e.value.tolist() for e in h.latest(2)] == [[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]]


# ================================================================ gates


def step(i, n=20, t=None):
    return Step(i, n, 1.0 - i / n if t is None else t)


def test_base_gate_always_computes_forced_and_says_nothing():
    g = G.Gate()
    assert g.decide(step(3), None, None) == G.Decision(True, "full", None, forced=True)
    assert g.note(20) is None and g.step_done(0, True) is None
    assert G.GateState().tensors() == () and P.PredictorState().tensors() == ()


def test_interval_gate_decisions():
    g = G.IntervalGate(3, first=2, offset=1)
    got = [g.decide(step(i), None, None) for i in range(8)]
    fe, iv = G.Decision(True, "first_enhance", forced=True), G.Decision(True, "interval", forced=True)
    skip = G.Decision(False, "interval", forced=True)
    assert got == [fe, fe, skip, skip, iv, skip, skip, iv]
    s = G.IntervalGate(2, reason="stride")
    assert (s.name, s.rule) == ("stride", "fixed stride")
    assert [s.decide(step(i), None, None).reason for i in range(2)] == ["stride", "stride"]


def test_teacache_rescale_is_horner_in_numpy_order():
    assert G.RescaledL1Gate(0.5, [2.0, 3.0, 5.0]).rescale(2.0) == 2 * 4 + 3 * 2 + 5
    assert G.RescaledL1Gate(0.5, [7.0]).rescale(3.0) == 7.0


def test_teacache_gate_accumulates_resets_and_always_computes_first_and_last():
    g = G.RescaledL1Gate(0.25, [1.0, 0.0])
    st = SimpleNamespace(gate=g.State())
    m = [torch.full((4,), 1.1**i) for i in range(6)]  # each step a relative L1 change of 0.1
    got = [g.decide(step(i, 6), st, lambda i=i: m[i]) for i in range(6)]
    assert [(d.compute, d.reason, d.forced) for d in got] == [
        (True, "first", True),
        (False, "acc<delta", False),
        (False, "acc<delta", False),
        (True, "acc>=delta", False),
        (False, "acc<delta", False),
        (True, "last", True),
    ]
    assert [d.gate for d in got] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.1, 0.0], abs=1e-5)
    assert st.gate.acc == 0.0 and torch.equal(st.gate.prev_mod, m[5])


def test_teacache_gate_without_a_reference_computes_and_track_keeps_the_reference():
    g = G.RescaledL1Gate(10.0, [1.0, 0.0])
    st = SimpleNamespace(gate=g.State())
    a, b, c = torch.ones(4), torch.full((4,), 2.0), torch.full((4,), 3.0)
    assert g.decide(step(1), st, None) == G.Decision(True, "no reference", 0.0, forced=True)
    g.track(step(2), st, lambda: a)  # outside the window: the reference follows
    assert torch.equal(st.gate.prev_mod, a)
    d = g.decide(step(3), st, lambda: b)
    assert d == G.Decision(False, "acc<delta", pytest.approx(1.0))  # |2 - 1| / 1
    assert g.decide(step(4), st, lambda: torch.ones(5)).reason == "no reference"  # another shape
    # a speed target around it tracks the same way
    bg = G.BudgetGate(G.RescaledL1Gate(10.0, [1.0, 0.0]), 2.0)
    st2 = SimpleNamespace(gate=bg.State())
    bg.track(step(2), st2, lambda: c)
    assert torch.equal(st2.gate.prev_mod, c)


def test_teacache_state_reset_and_tensors():
    s = G.RescaledL1State(prev_mod=torch.ones(3), acc=0.7)
    assert len(s.tensors()) == 1
    s.reset()
    assert s.prev_mod is None and s.acc == 0.0 and s.tensors() == ()


@pytest.mark.parametrize(
    "tsi,scale,want",
    [
        (0.25, "reciprocal", 2.0),
        (0.005, "reciprocal", 100.0),
        (0.0051, "reciprocal", 1 / 0.0102),
        (0.0, "reciprocal", 100.0),
        (0.3, "literal", 0.3),
        (0.5, "cosine", 1.5),
        (0.6, "sum_norm", 1.6),
        (1.2, "sum_norm", 0.0),
    ],
)
def test_stability_scales_by_hand(tsi, scale, want):
    assert G.stability_score(tsi, scale) == pytest.approx(want, abs=1e-9)


def test_unknown_stability_scale_is_refused():
    with pytest.raises(ValueError, match="unknown tsi_scale 'cos'"):
        G.stability_score(0.1, "cos")


def _resid(*vals, steps=None):
    return SimpleNamespace(residuals=hist_of([torch.tensor(v) for v in vals], steps))


def test_tsi_gate_grids():
    spread = G.TSIGate(1.0, 4, "reciprocal", schedule="spread", warmup_steps=2)
    assert [spread.forced(i) for i in range(11)] == [
        "warmup",
        "warmup",
        None,
        None,
        None,
        "interval",
        None,
        None,
        None,
        "interval",
        None,
    ]
    inter = G.TSIGate(1.0, 3, "reciprocal", schedule="interval")
    assert [inter.forced(i) for i in range(7)] == ["interval", None, None, "interval", None, None, "interval"]
    assert spread.decide(step(9), None, None) == G.Decision(True, "interval", forced=True)


def test_tsi_gate_scores_the_three_newest_residuals():
    line = _resid([0.0, 0.0], [1.0, 0.0], [2.0, 0.0], steps=[2, 3, 4])
    turn = _resid([0.0, 0.0], [1.0, 0.0], [1.0, 1.0], steps=[2, 3, 4])
    g = G.TSIGate(1.0, 100, "reciprocal", schedule="interval")
    assert g.decide(step(6), line, None) == G.Decision(False, "tsi>=theta", 100.0)
    d = g.decide(step(6), turn, None)
    assert (d.compute, d.reason, d.forced) == (True, "tsi<theta", False) and d.gate == pytest.approx(1 / math.sqrt(2))
    assert G.TSIGate(0.7, 100, "reciprocal", schedule="interval").decide(step(6), turn, None).compute is False
    assert G.TSIGate(150.0, 100, "reciprocal", "interval").decide(step(6), line, None).compute is True
    lit = G.TSIGate(0.5, 100, "literal", schedule="interval").decide(step(6), turn, None)
    assert lit.gate == pytest.approx(math.sqrt(2) / 2) and lit.compute is False  # literal: skip when TSI >= theta


def test_tsi_gate_warmup_and_not_applicable():
    two = _resid([0.0], [1.0], steps=[0, 1])
    inter = G.TSIGate(1.0, 100, "reciprocal", schedule="interval")
    assert inter.decide(step(5), two, None) == G.Decision(True, "warmup", forced=True)
    spread = G.TSIGate(1.0, 100, "reciprocal", schedule="spread", warmup_steps=1)
    assert spread.decide(step(5), two, None) == G.Decision(False, "tsi n/a", 100.0)
    assert G.TSIGate(200.0, 100, "reciprocal", "spread", 1).decide(step(5), two, None) == G.Decision(
        True, "tsi n/a", 100.0
    )
    uneven = _resid([0.0, 0.0], [1.0, 0.0], [1.0, 1.0], steps=[0, 1, 4])
    assert spread.decide(step(5), uneven, None) == G.Decision(False, "tsi n/a", 100.0)
    # the interval schedule has no such rule: the same residuals are scored
    assert inter.decide(step(5), uneven, None).gate == pytest.approx(1 / math.sqrt(2))


def _own(err, k0, newest, values=2):
    pred = P.PadeState(self_error=None if err is None else (err, k0), newest_step=newest)
    return SimpleNamespace(pred=pred, history=[None] * values)


@pytest.mark.parametrize(
    "own,i,want",
    [
        (_own(0.01, 2, 4), 6, (False, "error<tol", 5.0)),  # k = 2 = k0: expected 0.01, score 0.05 / 0.01
        (_own(0.01, 2, 3), 6, (True, "error>=tol", 0.05 / 0.0225)),  # k = 3: expected 0.01 (3 / 2)^2
        (_own(0.04, 2, 5), 7, (True, "error>=tol", 1.25)),
        (_own(0.01, 0, 5), 6, (False, "error<tol", 5.0)),  # k0 = 0 counts as 1
        (_own(0.0, 1, 5), 6, (False, "error<tol", 100.0)),  # no error: the cap
        (_own(2e-4, 1, 5), 6, (False, "error<tol", 100.0)),  # below tolerance / 100: the cap
        (_own(0.02, 1, 1), 2, (True, "error>=tol", 0.05 / 0.02)),  # step 1 is not forced at warm-up 1
    ],
)
def test_error_gate_score_by_hand(own, i, want):
    g = G.ErrorGate(theta=2.6, interval=4, tolerance=0.05, schedule="spread", warmup_steps=1)
    d = g.decide(step(i), own, None)
    assert (d.compute, d.reason) == want[:2] and d.gate == pytest.approx(want[2], rel=1e-9) and not d.forced


def test_error_gate_grid_and_no_estimate():
    g = G.ErrorGate(theta=2.0, interval=4, tolerance=0.05, schedule="spread", warmup_steps=1)
    none = _own(None, None, None)
    assert g.decide(step(0), none, None) == G.Decision(True, "warmup", forced=True)
    assert g.decide(step(4), none, None) == G.Decision(True, "interval", forced=True)
    assert g.decide(step(1), none, None) == G.Decision(False, "no estimate")
    # one value: its own gate keeps the warm-up (the predictor could reuse it; a speed target or a plan may skip)
    assert g.decide(step(1), _own(None, None, 0, values=1), None) == G.Decision(True, "warmup", forced=True)
    assert g.decide(step(1), _own(None, None, 0, values=0), None) == G.Decision(True, "warmup", forced=True)
    assert g.decide(step(2), _own(0.01, 1, None), None) == G.Decision(False, "no estimate")  # estimate, no step
    inter = G.ErrorGate(theta=2.0, interval=4, tolerance=0.05, schedule="interval", warmup_steps=1)
    assert inter.decide(step(1), none, None) == G.Decision(True, "no estimate")
    assert (g.name, g.needs_residuals, g.reads) == ("self-error", 0, frozenset({"self_error"}))


def test_bend_score_is_the_turn_with_the_authors_guard():
    o, m, n = vec(0.0, 0.0), vec(1.0, 0.0), vec(1.0, 1.0)
    assert G.bend_score(o, m, n) == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    assert G.bend_score(o, m, m) == pytest.approx(0.5, abs=1e-6)  # a stop: eps keeps one unit vector (Eq. 1: 0)
    assert G.bend_score(o, m, vec(2.0, 0.0)) == pytest.approx(0.0, abs=1e-6)


def test_official_schedule_gate_decisions():
    g = G.OfficialScheduleGate(0.5, 4, 2)
    assert g.needs_residuals == 5  # the authors' test reads five residuals
    few = SimpleNamespace(residuals=hist_of([vec(float(k), 0.0) for k in range(4)]))
    got = {i: g.decide(step(i, 12), few, None) for i in range(12)}
    sched, iv = G.Decision(True, "schedule", forced=True), G.Decision(True, "interval", forced=True)
    assert [got[i] for i in (0, 1, 2, 11)] == [sched] * 4
    assert got[4] == got[8] == iv
    assert got[3] == G.Decision(False, "curvature<N", None)
    turn = SimpleNamespace(
        residuals=hist_of([vec(0.0, 0.0), vec(0.0, 0.0), vec(0.0, 0.0), vec(1.0, 0.0), vec(1.0, 1.0)])
    )
    d = g.decide(step(5, 12), turn, None)
    assert (d.compute, d.reason) == (True, "curvature>=N") and d.gate == pytest.approx(math.sqrt(2) / 2, abs=1e-6)


def test_budget_gate_note_and_early_count():
    bg = G.BudgetGate(G.TSIGate(1.0, 100, "reciprocal", "interval"), 1.5)
    assert bg.note(20) is None  # no plan before the first step
    assert (bg.name, bg.threshold, bg.needs_residuals, bg.State) == ("TSI stability", 1.0, 3, G.GateState)
    turn = _resid([0.0, 0.0], [1.0, 0.0], [1.0, 1.0], steps=[2, 3, 4])
    # step 0: 13 computes for 20 steps, spacing 20 / 13 > gap 1, and the TSI gate's own compute is forced
    assert bg.decide(step(0), turn, None) == G.Decision(False, "budget spacing", None)
    assert bg.note(20) == "target 1.5x: budget 13 of 20 computes, spaced evenly"
    bg.step_done(0, True)
    bg.step_done(1, False)
    assert (bg.used, bg.last) == (1, 0)
    # step 1: gap 1 < spacing 19 / 12, but >= half of it and the TSI turns: an early compute
    d1 = bg.decide(step(1), turn, None)
    assert (d1.compute, d1.reason, d1.forced, bg.early) == (True, "tsi<theta (early)", False, 1)
    assert d1.gate == pytest.approx(1 / math.sqrt(2))
    assert bg.note(20) == (
        "target 1.5x: budget 13 of 20 computes, spaced evenly; the TSI stability signal moved 1 earlier"
    )


# ================================================================ predictors: math


def test_lagrange_weights_and_repeated_times():
    assert P.lagrange_weights([0.0, 1.0], 2.0) == [-1.0, 2.0]
    assert P.lagrange_weights([0.5, 0.5], 0.2) == [0.0, 0.0]  # no division by a zero denominator
    a, b = vec(1.0, 2.0), vec(5.0, 7.0)
    assert torch.equal(P.lagrange([a, b], [0.5, 0.5], 0.2), a)  # repeated times: the newest value
    assert torch.equal(P.lagrange([a], [0.5], 0.2), a)
    assert P.lagrange([a, b], [1.0, 0.0], 2.0).tolist() == [-3.0, -3.0]  # the line through both, at 2


def test_lagrange_dynamic_orders_by_hand():
    b = vec(1.0, -2.0, 0.5)
    line = [2 * b, 1 * b, 0 * b]  # v(t) = t b at t = 2, 1, 0 (newest first)
    v, n = P.lagrange_dynamic(line[:1], [2.0], 3.0, 3)
    assert n == 0 and torch.equal(v, 2 * b)
    v, n = P.lagrange_dynamic(line[:2], [2.0, 1.0], 3.0, 1)
    assert n == 1 and torch.allclose(v, 3 * b)
    # phi_2 - phi_1 = 0 on a line: order 2 (the sum phi_2 + phi_1 would choose 1)
    v, n = P.lagrange_dynamic(line, [2.0, 1.0, 0.0], 3.0, 2)
    assert n == 2 and torch.allclose(v, 3 * b)
    v, n = P.lagrange_dynamic(line, [2.0, 1.0, 0.0], 3.0, 4)  # capped by the values there are
    assert n == 2 and torch.allclose(v, 3 * b)
    # max_order 1 with three values: the line through the newest two, whatever the third
    par = [4 * b, 1 * b, 0 * b]  # v(t) = t^2 b
    v, n = P.lagrange_dynamic(par, [2.0, 1.0, 0.0], 3.0, 1)
    assert n == 1 and torch.allclose(v, 7 * b)


def test_normalized_denominator_by_hand():
    r = vec(3.0, -4.0, dtype=torch.float64)
    rms = math.sqrt((9 + 16) / 2)
    out, s = P.pade_residual(r, r.clone(), None, lam=2.0, numerator="recent", denominator="normalized")
    assert s == 1.0  # identical residuals
    assert out.tolist() == pytest.approx([3.0 / (1 + 0.5 * 3 / rms), -4.0 / (1 - 0.5 * 4 / rms)], abs=1e-7)
    z = torch.zeros(2)
    out, _ = P.pade_residual(z, z, None, lam=2.0, numerator="recent", denominator="normalized")
    assert out.tolist() == [0.0, 0.0]
    re = vec(3.0, -1.9, -4.0, dtype=torch.float64)
    el, _ = P.pade_residual(re, re.clone(), None, lam=2.0, numerator="recent", denominator="elementwise")
    assert el.tolist() == pytest.approx([3.0 / 2.5, -1.9 / 0.1, -4.0 / -1.0], abs=1e-9)  # 0.05 is guarded to 0.1
    with pytest.raises(ValueError, match="unknown numerator 'x'"):
        P.pade_residual(r, r, None, lam=2.0, numerator="x", denominator="none")
    with pytest.raises(ValueError, match="unknown denominator 'x'"):
        P.pade_residual(r, r, None, lam=2.0, numerator="recent", denominator="x")
    with pytest.raises(ValueError, match="needs three residuals"):
        P.pade_residual(r, r, None, lam=2.0, numerator="literal", denominator="none")


def test_predictor_states_reset_to_their_defaults():
    t = torch.ones(2)
    ts = P.TaylorState(factors=[t, t], factor_step=3)
    assert len(ts.tensors()) == 2
    ts.reset()
    assert (ts.factors, ts.factor_step, ts.tensors()) == (None, None, ())
    ps = P.PadeState(prev_input=t, last_pred_residual=t, self_error=(0.1, 2), newest_step=4)
    assert len(ps.tensors()) == 2
    ps.reset()
    assert (ps.prev_input, ps.last_pred_residual, ps.self_error, ps.newest_step, ps.tensors()) == (None,) * 4 + ((),)
    os_ = P.OfficialState(last_input=t, last_pred_residual=t, order=4, stability=0.9)
    assert len(os_.tensors()) == 2
    os_.reset()
    assert (os_.last_input, os_.last_pred_residual, os_.order, os_.stability) == (None, None, None, 1.0)


def test_tracache_keeps_max_order_plus_one_outputs_and_reaches_it():
    cfg = TraCacheConfig(stride=4, max_order=2)
    run = CacheRun(cfg, measure_error=True)
    x = torch.linspace(-1.0, 1.0, 6)
    for i in range(16):
        t = 1.0 - i / 16
        run.begin_step(i, 16, t)
        run("c", x, lambda h, t=t: h * 0 + (0.5 + 2.0 * t) * torch.arange(6.0))
    rep = run.end_run()
    assert rep.cache_bytes == 3 * 6 * 4  # four computes, the newest three kept
    assert rep.strip() == "#...#...#...#..."
    # on a line phi_2 - phi_1 = 0: order 2 as soon as three computes are kept, and exact
    assert [r.order for r in rep.steps if not r.computed] == [0, 0, 0, 1, 1, 1] + [2] * 6
    assert all(r.error < 1e-5 for r in rep.steps[5:] if not r.computed)


# ================================================================ predictors: TC-Padé's error estimate


def _error_cfg(**kw):
    base = dict(gate="error", numerator="recent", denominator="none", spacing="steps", lam=2.0, theta=2.0)
    base.update(kw)
    return TCPadeConfig(**base)


def _pade_stream(cfg):
    p = P.PadePredictor(cfg)
    p.serve(frozenset({"self_error"}))
    hist = ResidualHistory(3)
    return p, StreamState(hist, hist, p.State(), G.GateState())


def test_self_check_measures_the_prediction_of_each_computed_step_by_hand():
    p, st = _pade_stream(_error_cfg(target="output"))
    y0, y2, y4 = vec(0.1, 0.0), vec(0.2, 0.0), vec(0.25, 0.0)  # small: the error is relative to ||y|| < 1
    h = vec(1.0, 1.0)
    p.observe(step(0), st, h, y0)
    p.observe(step(2), st, h, y2)
    assert st.pred.self_error is None and st.pred.newest_step == 2  # one value before: nothing to measure
    p.observe(step(4), st, h, y4)
    s = math.exp(-2.0 * 0.1 / 0.3)  # sigma_stab of y2, y0
    guess = 0.2 + s * 1.0 * 0.1  # ratio (4 - 2) / (2 - 0) = 1
    err, k0 = st.pred.self_error
    assert err == pytest.approx(abs(guess - 0.25) / 0.25, rel=1e-5) and k0 == 2
    assert st.pred.newest_step == 4


def test_self_check_on_residuals_is_relative_to_the_residual():
    p, st = _pade_stream(_error_cfg(target="residual", reconstruct="current_input"))
    h = [vec(1.0, 0.0), vec(0.5, 0.0), vec(0.0, 0.5)]
    y = [vec(1.1, 0.0), vec(0.7, 0.0), vec(0.3, 0.5)]  # residuals 0.1, 0.2, 0.3 along x
    for i in range(3):
        p.observe(step(i), st, h[i], y[i])
    s = math.exp(-2.0 * 0.1 / 0.3)
    guess = 0.2 + s * 0.1
    err, k0 = st.pred.self_error
    assert err == pytest.approx(abs(guess - 0.3) / 0.3, rel=1e-5) and k0 == 1  # truth: the residual (0.3, 0)


def test_self_check_is_off_unless_a_gate_reads_it():
    p = P.PadePredictor(_error_cfg(target="output"))
    hist = ResidualHistory(3)
    st = StreamState(hist, hist, p.State(), G.GateState())
    for i in range(4):
        p.observe(step(i), st, vec(0.0), vec(float(i)))
    assert st.pred.self_error is None and st.pred.newest_step == 3


# ================================================================ predictors: the authors' code


def _ref_pade(a, b, curve_ok):
    """The authors' Padé step on one element (their utils/predict.py, written out for scalars)."""
    delta, avg = abs(a - b), 0.5 * (abs(a) + abs(b))
    sf = math.exp(-5.0 * delta / (avg + 1e-7))
    res = (2.0 * sf * a - sf * b) / (1.0 - 0.1 * sf if curve_ok else 1.0)
    recent, md = 0.6 * a + 0.4 * b, max(0.5 * delta, 0.1 * avg)
    res = recent + max(min(res - recent, md), -md)
    bl = 0.7 * sf + 0.3
    return bl * res + (1.0 - bl) * recent


R1 = (1.0, 2.0, -1.0, 0.5, 3.0)  # element by element: inside the clamp, below it, negative, above it, equal
R2 = (0.99, 1.0, -0.99, 1.0, 3.0)


@pytest.mark.parametrize("curve_ok", [True, False])
def test_official_pade_by_hand(curve_ok):
    p = P.OfficialPadePredictor(TCPadeOfficialConfig(order=2))
    r1, r2 = torch.tensor(R1, dtype=torch.float64), torch.tensor(R2, dtype=torch.float64)
    r3 = torch.full((5,), 100.0, dtype=torch.float64)  # never read by the step itself
    out = p._pade([r1, r2, r3], P.OfficialState(), curve_ok)
    assert out.tolist() == pytest.approx([_ref_pade(a, b, curve_ok) for a, b in zip(R1, R2)], abs=1e-12)


def test_official_pade_order_comes_from_the_state_first():
    p = P.OfficialPadePredictor(TCPadeOfficialConfig(order=2))
    r = [vec(1.0), vec(2.0), vec(4.0)]
    # the stream's adaptive order 3 needs four residuals: the weighted mean (0.4, 0.3, 0.2) times the stability
    out = p._pade(r, P.OfficialState(order=3, stability=1.1), True)
    assert float(out) == pytest.approx((0.4 * 1 + 0.3 * 2 + 0.2 * 4) / 0.9 * 1.1, rel=1e-6)
    assert float(p._pade(r, P.OfficialState(), True)) == pytest.approx(_ref_pade(1.0, 2.0, True), rel=1e-6)


def test_official_pade_falls_back_when_the_step_overflows():
    p = P.OfficialPadePredictor(TCPadeOfficialConfig(order=2))
    r1, r2 = vec(3.3e38), vec(3.2e38)  # float32: 2 sf R1 overflows
    out = p._pade([r1, r2, r2], P.OfficialState(), True)
    assert torch.isfinite(out).all() and float(out) == pytest.approx(3.3e38 + 0.5 * 1e37, rel=1e-6)


def _official_stream(cfg, residuals, last_input, steps=None):
    p = P.OfficialPadePredictor(cfg)
    hist = hist_of(residuals, steps, capacity=cfg.history_size)
    st = StreamState(hist, hist, p.State(), G.GateState())
    st.pred.last_input = last_input
    return p, st


@pytest.mark.parametrize("phase", ["early", "mid", "late"])
def test_official_predict_by_hand(phase):
    cfg = TCPadeOfficialConfig(order=2)
    r = [vec(0.0, 0.0), torch.tensor(R2[:2]), torch.tensor(R1[:2])]  # oldest first: R1 newest
    h, h_prev = vec(0.5, -0.5), vec(0.4, -0.3)
    p, st = _official_stream(cfg, r, h_prev)
    rec = SimpleNamespace()
    out = p.predict(Step(10, 20, 0.5, phase), st, h, rec)
    want = []
    for k in range(2):
        a, b = R1[k], R2[k]
        res = 0.9 * a + 0.1 * b if phase == "early" else _ref_pade(a, b, True)  # < 5 residuals: the test passes
        if phase == "late":
            res += 0.3 * (a - b)
        res += 0.2 * (float(h[k]) - float(h_prev[k]))
        want.append(float(h[k]) + res)
    assert out.tolist() == pytest.approx(want, abs=1e-6) and out.dtype == torch.float32
    assert (st.pred.last_pred_residual + h).tolist() == pytest.approx(want, abs=1e-6)
    h16 = h.to(torch.bfloat16)
    assert p.predict(Step(10, 20, 0.5, phase), st, h16, rec).dtype == torch.bfloat16


def test_official_predict_uses_the_curvature_test_of_the_stream():
    cfg = TCPadeOfficialConfig(order=2, threshold=0.5)
    # five residuals turning at a right angle: the test fails (score ~0.71 >= 0.5), the denominator is 1
    turn = [vec(0.0, 0.0), vec(0.0, 0.0), vec(0.0, 0.0), vec(1.0, 0.0), vec(1.0, 1.0)]
    p, st = _official_stream(cfg, turn, vec(0.0, 0.0))
    out = p.predict(Step(10, 20, 0.5, "mid"), st, vec(0.0, 0.0), SimpleNamespace())
    assert out.tolist() == pytest.approx([_ref_pade(1.0, 1.0, False), _ref_pade(1.0, 0.0, False)], abs=1e-6)


@pytest.mark.parametrize("order,need", [(1, 2), (2, 2), (3, 3), (4, 3)])
def test_official_ready_needs_two_or_three_residuals_and_an_input(order, need):
    cfg = TCPadeOfficialConfig(order=order)
    p, st = _official_stream(cfg, [vec(1.0)] * need, vec(0.0))
    assert p.ready(step(5), st)
    st.pred.last_input = None
    assert not p.ready(step(5), st)
    p2, st2 = _official_stream(cfg, [vec(1.0)] * (need - 1), vec(0.0))
    assert not p2.ready(step(5), st2)


@pytest.mark.parametrize(
    "rs,cfg_order,want",
    [
        ([(1.0, 0.0), (2.0, 0.0), (3.0, 0.0)], 4, 4),  # parallel (the oldest of unit norm): 4
        ([(1.0, 0.0), (1.0, 0.3), (1.0, 0.6)], 4, 3),  # similarity ~0.96: 3
        ([(1.0, 0.0), (1.0, 0.3), (1.0, 0.6)], 2, 2),
        ([(1.0, 0.0), (0.0, 0.0), (1.0, 0.0)], 4, 2),  # a zero residual has similarity 0
        ([(3.0, 0.0), (2.0, 0.0), (1.0, 0.0)], 4, 4),  # the newest of unit norm
    ],
)
def test_official_adaptive_order_by_hand(rs, cfg_order, want):
    p = P.OfficialPadePredictor(TCPadeOfficialConfig(order=cfg_order))
    hist = ResidualHistory(6)
    st = StreamState(hist, hist, p.State(), G.GateState())
    for i, r in enumerate(rs):
        p.observe(step(i), st, vec(0.0, 0.0), vec(*r))
    assert st.pred.order == want


# ================================================================ engine


def test_eager_wrappers_use_torch_compiler_disable(monkeypatch):
    calls = []

    def fake(fn, **kw):
        calls.append((fn, kw))
        return ("eager", fn)

    f = lambda: 1
    monkeypatch.setattr(E, "_disable", fake)
    assert E.eager(f) == ("eager", f) and calls[-1] == (f, {})  # recursive: all it calls
    assert E.eager_frame(f) == ("eager", f) and calls[-1] == (f, {"recursive": False})  # its own frame only

    def old(fn, **kw):  # a torch whose disable has no ``recursive``
        if kw:
            raise TypeError("unexpected keyword argument 'recursive'")
        return ("eager", fn)

    monkeypatch.setattr(E, "_disable", old)
    assert E.eager_frame(f) is f
    monkeypatch.setattr(E, "_disable", None)  # a torch without torch.compiler
    assert E.eager(f) is f and E.eager_frame(f) is f


def test_the_base_stack_computes_every_call_and_hands_it_to_observe():
    class Probe(Stack):
        def __init__(self):
            self.seen = []

        def observe(self, stream, h, y, modulated_fn):
            self.seen.append((stream, h, y, modulated_fn))

    p, h, mod = Probe(), vec(1.0, 2.0), (lambda: None)
    y = p("c", h, lambda x: 2 * x, mod)
    assert y.tolist() == [2.0, 4.0] and len(p.seen) == 1
    stream, h_seen, y_seen, mod_seen = p.seen[0]
    assert stream == "c" and h_seen is h and y_seen is y and mod_seen is mod
    assert p.end_run() is None and Stack().observe("c", h, y, None) is None


def test_stream_state_clear_and_byte_count():
    hist, res = ResidualHistory(3), ResidualHistory(3)
    hist.push(0, 1.0, torch.ones(3))
    res.push(0, 1.0, torch.ones(3))
    st = StreamState(
        hist,
        res,
        P.PadeState(prev_input=torch.ones(4), newest_step=0),
        G.RescaledL1State(prev_mod=torch.ones(2), acc=0.5),
    )
    assert st.nbytes() == 12 + 12 + 16 + 8
    st.clear()
    assert len(res) == 0 and st.pred.newest_step is None and st.pred.prev_input is None
    assert st.gate.acc == 0.0 and st.gate.prev_mod is None and st.nbytes() == 12
    shared = StreamState(hist, hist, P.PredictorState(), G.GateState())
    assert shared.nbytes() == 12  # one history counted once


def stack(h):
    return h + torch.tanh(2.0 * h)


def test_hold_computes_every_step_with_its_reason_and_one_note():
    run = CacheRun(ReuseConfig(interval=3))
    run.hold("sampler noise", "held: the sampler adds noise")
    run.hold("sampler noise", "held: the sampler adds noise")
    for i in range(4):
        run.begin_step(i, 4, 1 - i / 4)
        run("c", torch.full((3,), 1.0 - i / 4), stack)
    rep = run.end_run()
    assert rep.strip() == "####" and {r.reason for r in rep.steps} == {"sampler noise"}
    assert rep.notes == ["held: the sampler adds noise"]


@pytest.mark.parametrize(
    "index,num,msg", [(-1, 4, r"\[0, 3\], got -1"), (4, 4, r"\[0, 3\], got 4"), (0, 0, r"\[0, -1\], got 0")]
)
def test_begin_step_refuses_an_index_outside_the_run(index, num, msg):
    with pytest.raises(ValueError, match="step index must be in " + msg):
        CacheRun(ReuseConfig()).begin_step(index, num)


def test_the_stack_needs_a_step_and_leave_without_one_does_nothing():
    run = CacheRun(ReuseConfig())
    with pytest.raises(RuntimeError, match="begin_step"):
        run("c", torch.ones(2), stack)
    assert run.leave(["c"], [torch.ones(2)], [torch.ones(2)]) is None and run.streams == {}
    assert run.end_run().target_note == "" and run.report.steps == []


def test_end_run_sums_the_resets_of_every_stream_and_notes_the_target():
    run = CacheRun(ReuseConfig(interval=1), target_speedup=2.0)
    assert run.report.target_speedup == 2.0 and isinstance(run.gate, G.BudgetGate)
    for i in range(4):
        run.begin_step(i, 4, 1 - i / 4)
        n = 2 if i < 2 else 3  # both streams change shape at step 2
        run("c", torch.ones(n), stack)
        run("u", -torch.ones(n), stack)
    rep = run.end_run()
    assert rep.stream_resets == 2
    assert rep.target_note == "target 2x: budget 2 of 4 computes, spaced evenly"
    assert CacheRun(ReuseConfig()).report.target_speedup is None


def test_reset_drops_the_streams_and_keeps_the_report():
    run = CacheRun(ReuseConfig(interval=2))
    run.begin_step(0, 4, 1.0)
    run("c", torch.ones(2), stack)
    run.reset()
    assert run.streams == {} and run.cache_bytes() == 0
    run.begin_step(1, 4, 0.75)
    calls = []
    run("c", torch.ones(2), lambda h: calls.append(1) or stack(h))  # no history left: the predictor's warm-up
    rep = run.end_run()
    assert calls == [1] and [r.step for r in rep.steps] == [0, 1] and rep.steps[1].reason == "warmup"


def test_measured_error_is_the_worst_stream_of_the_step():
    run = CacheRun(ReuseConfig(interval=2), measure_error=True)
    sq = lambda h: h * h
    run.begin_step(0, 4, 1.0)
    run("c", torch.full((2,), 0.1), sq)  # residual 0.01 - 0.1 = -0.09 on both streams
    run("u", torch.full((2,), 0.1), sq)
    run.begin_step(1, 4, 0.75)
    # c: predicted 0.2 - 0.09 = 0.11 against 0.04 (error 0.07 / 0.04), u: 0.06 against 0.0225 (0.0375 / 0.0225);
    # relative to outputs of norm < 1
    out_c = run("c", torch.full((2,), 0.2), sq)
    out_u = run("u", torch.full((2,), 0.15), sq)
    rep = run.end_run()
    assert out_c.tolist() == pytest.approx([0.11, 0.11]) and out_u.tolist() == pytest.approx([0.06, 0.06])
    assert rep.steps[1].error == pytest.approx(0.07 / 0.04, rel=1e-5) and rep.steps[0].error is None


def test_the_lead_stream_decides_the_step():
    def one_step(lead):
        run = CacheRun(TeaCacheConfig(threshold=10.0, coefficients=(1.0, 0.0)))
        mod = lambda: torch.ones(2)
        run.begin_step(0, 4, 1.0)
        run.leave(["c"], [torch.ones(2)], [stack(torch.ones(2))]) if run.enter(
            ["c"], [torch.ones(2)], mod
        ) is None else None
        run.begin_step(1, 4, 0.75)
        xs = [torch.ones(2), torch.ones(2)]
        assert run.enter(["c", "u"], xs, mod, lead=lead) is None
        run.leave(["c", "u"], xs, [stack(x) for x in xs])
        return run.end_run().steps[1]

    # "u" has no reference input yet: it computes; "c" would skip (then "u", with no history, forces a compute)
    assert one_step(1).reason == "no reference" and one_step(1).forced_streams == []
    assert one_step(0).reason == "forced (acc<delta)" and one_step(0).forced_streams == ["u"]
    assert one_step(5).reason == one_step(2).reason == "forced (acc<delta)"  # a lead out of range: the first


def _stream_of(cfg, store_device="cpu"):
    run = CacheRun(cfg, store_device=store_device)
    run.begin_step(0, 10, 1.0)
    run("c", torch.ones(2), stack)
    return run.streams["c"]


@pytest.mark.parametrize(
    "cfg,shared,caps",
    [
        (TCPadeConfig(), False, (3, 3)),  # outputs: the gate's residuals apart
        (TCPadeConfig(mode="paper_literal"), True, (3, 3)),  # residuals: shared
        (TCPadeConfig(gate="error"), True, (3, 3)),  # the error gate reads no residuals
        (make_config("tcpade", mode="official"), True, (6, 6)),  # reads 5 of the 6 it keeps
        (make_config("composed", gate=TCPadeConfig(), predictor=ReuseConfig()), False, (1, 3)),
        (
            make_config(
                "composed", gate=TCPadeConfig(), predictor=TaylorSeerConfig(order=2, form="newton", target="residual")
            ),
            True,
            (3, 3),
        ),
        (
            make_config(
                "composed", gate=make_config("tcpade", mode="official"), predictor=TCPadeConfig(mode="paper_literal")
            ),
            False,
            (3, 5),
        ),
        (NoCacheConfig(), True, (0, 0)),
    ],
)
def test_a_new_stream_shares_the_history_with_the_gate_when_it_fits(cfg, shared, caps):
    st = _stream_of(cfg)
    assert (st.residuals is st.history) == shared
    assert (st.history.capacity, st.residuals.capacity) == caps
    assert st.history.store_device == st.residuals.store_device == torch.device("cpu")


def test_the_run_stores_on_its_store_device():
    run = CacheRun(ReuseConfig(interval=1), store_device="meta")
    for i in range(3):
        run.begin_step(i, 3, 1 - i / 3)
        run("c", torch.full((4,), float(i)), stack)
    rep = run.end_run()
    assert run.streams["c"].history.latest(1)[0].value.device == META
    assert rep.store_device == "meta" and rep.cache_bytes == 16


def test_warmup_keeps_the_gates_value_and_the_gate_residuals_are_the_computed_ones():
    run = CacheRun(TCPadeConfig(theta=0.0), measure_error=False)
    hs, ys = {}, {}
    for i in range(10):
        run.begin_step(i, 10, 1 - i / 10)
        hs[i] = torch.full((3,), 1.0 - i / 10) * vec(1.0, 2.0, 3.0)
        ys[i] = run("c", hs[i], lambda h, i=i: ys.setdefault(("y", i), stack(h)))
    rep = run.end_run()
    assert (rep.steps[1].reason, rep.steps[1].gate) == ("warmup", 100.0)  # the gate skips, the predictor is not ready
    computed = [r.step for r in rep.steps if r.computed]
    st = run.streams["c"]
    es = st.residuals.latest(3)
    assert [e.step for e in es] == computed[::-1][:3]
    for e in es:
        assert torch.allclose(e.value, ys[("y", e.step)] - hs[e.step])


def test_cache_bytes_is_the_peak():
    run = CacheRun(ReuseConfig(interval=1))
    for i in range(4):
        run.begin_step(i, 4, 1 - i / 4)
        run("c", torch.ones(4 if i < 2 else 2), stack)
    assert run.end_run().cache_bytes == 16 and run.cache_bytes() == 8


# ================================================================ second round: boundaries, budget, Taylor, spacing


def test_teacache_computes_when_the_sum_reaches_delta_exactly():
    g = G.RescaledL1Gate(0.5, [0.0, 0.5])  # rescale(x) = 0.5 whatever x
    st = SimpleNamespace(gate=g.State())
    g.decide(step(0, 6), st, lambda: torch.ones(2))
    assert g.decide(step(1, 6), st, lambda: torch.ones(2)) == G.Decision(True, "acc>=delta", 0.5)


def test_error_gate_skips_when_the_score_equals_theta():
    g = G.ErrorGate(theta=2.0, interval=100, tolerance=0.5, schedule="spread", warmup_steps=1)
    assert g.decide(step(6), _own(0.25, 2, 4), None) == G.Decision(False, "error<tol", 2.0)


def test_guard_pole_keeps_the_sign_and_zero_counts_as_positive():
    d = vec(0.0, -0.05, 0.05, -0.5, 0.1, 2.0)
    assert P.guard_pole(d, 0.1).tolist() == pytest.approx([0.1, -0.1, 0.1, -0.5, 0.1, 2.0])


def test_normalized_denominator_of_a_vanishing_residual_is_one():
    r = vec(1e-13, -1e-13, dtype=torch.float64)  # rms below EPS: q = 0, not r / rms
    out, _ = P.pade_residual(r, r.clone(), None, lam=2.0, numerator="recent", denominator="normalized")
    assert out.tolist() == pytest.approx([1e-13, -1e-13], rel=1e-9, abs=0.0)


class _Fixed(G.Gate):
    """A base gate that always answers ``d`` and records the signal it was given."""

    name = "fixed"

    def __init__(self, d):
        self.d, self.seen = d, []

    def decide(self, step, st, signal_fn):
        self.seen.append(signal_fn)
        return self.d


def test_budget_gate_decisions_by_hand():
    own = G.Decision(True, "own", 0.7)
    bg = G.BudgetGate(_Fixed(own), 2.0)  # 10 steps: 5 computes
    sig = lambda: None
    e = lambda reason: G.Decision(True, reason, 0.7, forced=True)
    skip = G.Decision(False, "budget spacing", 0.7)
    got = []
    for i in range(10):
        d = bg.decide(step(i, 10), None, sig)
        got.append(d)
        bg.step_done(i, d.compute)
    # step 0: gap 1 (no compute yet), spacing 10 / 5 = 2: the signal moves it early (gap >= 1);
    # step 5: spacing 5 / 2, gap 1 < 1.25: no early compute; the budget is spent at step 9
    assert got == [
        G.Decision(True, "own (early)", 0.7),
        skip,
        e("budget spacing"),
        skip,
        e("budget spacing"),
        skip,
        e("budget spacing"),
        skip,
        e("budget spacing"),
        G.Decision(False, "budget spent", 0.7),
    ]
    assert bg.early == 1 and bg.used == 5 and bg.base.seen == [sig] * 10
    # at half the spacing exactly the signal may compute: 8 steps left, 4 computes, one step since the last
    half = G.BudgetGate(_Fixed(own), 2.0)
    half.step_done(1, True)
    assert half.decide(step(2, 10), None, sig) == G.Decision(True, "own (early)", 0.7)
    # as many computes left as steps: every step computes
    rest = G.BudgetGate(_Fixed(own), 2.0)
    assert rest.decide(step(5, 10), None, sig) == e("budget: every step left")
    # every early compute is counted
    many = G.BudgetGate(_Fixed(own), 1.25)  # 8 of 10
    for i in range(2):
        assert many.decide(step(i, 10), None, sig).reason == "own (early)"
        many.step_done(i, True)
    assert many.early == 2


def test_taylorseer_official_factors_on_residuals_and_from_first_enhance():
    p = P.TaylorPredictor(2, "official", "residual", first_enhance=3)
    assert p.capacity == 0 and _stream_of(TaylorSeerConfig(order=2)).history.capacity == 0
    hist = ResidualHistory(0)
    st = StreamState(hist, hist, p.State(), G.GateState())
    h = vec(1.0, -1.0)
    lens = []
    for i in range(4):  # residual at step i: (i, 2i)
        p.observe(step(i), st, h, h + vec(float(i), 2.0 * i))
        lens.append(len(st.pred.factors))
    # orders >= 1 only from step first_enhance - 1 = 2 on
    assert lens == [1, 1, 2, 3] and st.pred.factor_step == 3
    assert st.pred.factors[0].tolist() == [3.0, 6.0] and st.pred.factors[1].tolist() == [1.0, 2.0]
    assert st.pred.factors[2].tolist() == [0.0, 0.0]
    assert p.ready(step(4), st) and not p.ready(step(0), StreamState(hist, hist, p.State(), G.GateState()))
    rec = SimpleNamespace()
    out = p.predict(step(5), st, vec(0.5, 0.5), rec)
    assert out.tolist() == pytest.approx([0.5 + 3 + 2 * 1, 0.5 + 6 + 2 * 2]) and rec.order == 2


def test_taylorseer_eq10_is_ready_with_one_value_and_reports_the_order_it_used():
    p = P.TaylorPredictor(3, "eq10", "output")
    hist = ResidualHistory(p.capacity)
    st = StreamState(hist, hist, p.State(), G.GateState())
    assert not p.ready(step(1), st)
    p.observe(step(0), st, vec(0.0), vec(1.0))
    assert p.ready(step(1), st)
    p.observe(step(2), st, vec(0.0), vec(2.0))
    rec = SimpleNamespace()
    assert p.predict(step(3), st, vec(0.0), rec).tolist() == pytest.approx([2.5]) and rec.order == 1


def test_taylor_factors_eval_by_hand():
    f = [vec(1.0), vec(2.0), vec(6.0), vec(12.0)]
    # 1 + 2 k + 6 k^2 / 2 + 12 k^3 / 6 at k = 3
    assert float(P.taylor_factors_eval(f, 3.0)) == pytest.approx(1 + 6 + 27 + 54)


def _pade_value(spacing, steps, at, **kw):
    cfg = TCPadeConfig(numerator="recent", denominator="none", spacing=spacing, lam=2.0, **kw)
    p = P.PadePredictor(cfg)
    es = hist_of([vec(1.0, 0.0), vec(2.0, 0.0)], steps).latest(2)
    return p.value(at, "mid", es)


def test_pade_spacing_scales_the_step_by_the_distance():
    s = math.exp(-2.0 * 1.0 / 3.0)  # sigma_stab of (2, 0), (1, 0)
    assert _pade_value("steps", [2, 4], 6).tolist() == pytest.approx([2 + s * 1.0, 0.0])  # (6 - 4) / (4 - 2)
    assert _pade_value("steps", [2, 4], 5).tolist() == pytest.approx([2 + s * 0.5, 0.0])
    assert _pade_value("steps", [3, 4], 6).tolist() == pytest.approx([2 + s * 2.0, 0.0])
    assert _pade_value("uniform", [3, 4], 6).tolist() == pytest.approx([2 + s * 1.0, 0.0])  # as printed: 1


def test_pade_pole_guard_reaches_the_denominator():
    cfg = TCPadeConfig(numerator="recent", denominator="elementwise", lam=1.0, pole_guard=0.5)
    p = P.PadePredictor(cfg)
    es = hist_of([vec(-0.7), vec(-0.7)]).latest(2)
    # sigma 1, a1 = 1: 1 - 0.7 = 0.3 is kept 0.5 away from the pole
    assert p.value(5, "mid", es).tolist() == pytest.approx([-0.7 / 0.5])


def test_planned_gate_computes_exactly_the_planned_steps_and_says_which():
    base = G.RescaledL1Gate(0.3, [1.0, 0.0])
    pg = G.PlannedGate(base, [0, 3, 7, 12])
    assert [pg.decide(step(i, 10), None, None) for i in (0, 1, 3)] == [
        G.Decision(True, "planned", None, forced=True),
        G.Decision(False, "planned", None, forced=True),
        G.Decision(True, "planned", None, forced=True),
    ]
    assert (pg.name, pg.threshold, pg.signal, pg.State) == (base.name, 0.3, True, G.RescaledL1State)
    assert pg.note(10) == "planned schedule: 3 of 10 computes at steps 0, 3, 7"
    st = SimpleNamespace(gate=pg.State())
    pg.track(step(2, 10), st, lambda: torch.ones(2))  # the method's own gate stays current
    assert torch.equal(st.gate.prev_mod, torch.ones(2))


def test_the_report_names_the_method_its_gate_and_each_steps_time():
    cfg = TCPadeConfig(theta=0.7)
    run = CacheRun(cfg)
    assert (run.report.method, run.report.settings, run.report.gate_name, run.report.threshold) == (
        "tcpade",
        cfg.describe(),
        "TSI stability",
        0.7,
    )
    assert run.report.store_device == "same" and run.report.target_speedup is None
    run.begin_step(0, 4, 0.9)
    run.begin_step(1, 4, 0.8)  # step 0 never reached the stack: not reported
    run("c", torch.ones(2), stack)
    rep = run.end_run()
    assert [(r.step, r.t, r.phase) for r in rep.steps] == [(1, pytest.approx(0.8), "mid")]


def test_teacache_outside_the_window_keeps_its_reference_current():
    run = CacheRun(TeaCacheConfig(threshold=0.15, coefficients=(1.0, 0.0)))
    for i in range(5):
        run.begin_step(i, 5, 1 - i / 5, active=i not in (1, 2))
        m = torch.full((2,), 1.1**i)  # a relative L1 change of 0.1 a step
        run("c", torch.ones(2), stack, lambda m=m: m)
    rep = run.end_run()
    # steps 1 and 2 compute outside the window but move the reference (and the sum: 0.1, then 0.2 >= 0.15 resets
    # it), so step 3 is 0.1 from step 2 and skips; without them it would be 0.33 from step 0
    assert [r.reason for r in rep.steps] == ["first", "outside start/end", "outside start/end", "acc<delta", "last"]
    assert rep.steps[3].gate == pytest.approx(0.1, abs=1e-5)


def test_a_forced_step_computes_every_later_call_of_the_step():
    run = CacheRun(ReuseConfig(interval=2))
    run.begin_step(0, 4, 1.0)
    run("c", torch.ones(2), stack)
    run.begin_step(1, 4, 0.75)
    assert run.enter(["c", "u"], [torch.ones(2), torch.ones(2)]) is None  # "u" has no history
    run.leave(["c", "u"], [torch.ones(2), torch.ones(2)], [stack(torch.ones(2))] * 2)
    assert run.enter(["c"], [torch.ones(2)]) is None  # an extra call: computes too
    assert run.end_run().steps[1].forced_streams == ["u"]


# ================================================================ third round: the [1/1] approximant, TC-Padé's ready/predict


def _rational(steps, values, target, **kw):
    out, c = P.rational_extrapolate([vec(v, dtype=torch.float64) for v in values], steps, target, **kw)
    return float(out), c


def _on_curve(c, ks):
    """v(k) = k / (1 + c k) at the offsets ks from the newest step (v = 0 there, slope 1)."""
    return [k / (1 + c * k) for k in ks]


def test_rational_extrapolate_fits_the_pole_by_hand():
    # v(s) = k / (1 + 0.25 k), k = s - 2, through s = 2, 1, 0: c = 0.25 is recovered and v(4) is exact
    v, c = _rational([2, 1, 0], _on_curve(0.25, [0, -1, -2]), 4)
    assert c == pytest.approx(0.25) and v == pytest.approx(2 / 1.5)
    # a straight line: c = 0, the linear extrapolation; a constant: c = 0, the value
    assert _rational([3, 2, 1], [3.0, 2.0, 1.0], 5) == (pytest.approx(5.0), pytest.approx(0.0))
    assert _rational([3, 2, 1], [7.0, 7.0, 7.0], 5) == (7.0, 0.0)
    assert _rational([3, 2, 1], [7.0, 6.0, 4.0], 3) == (7.0, pytest.approx(0.25))  # at the newest step: v1


def test_rational_extrapolate_keeps_the_points_and_the_target_off_the_pole():
    # c = 0.6 fitted: 1 - c d3 < 0.1, so c = (1 - 0.1) / d3 = 0.45
    v, c = _rational([2, 1, 0], _on_curve(0.6, [0, -1, -2]), 4)
    d = 1 / 0.4  # the newest secant slope (v1 - v2) / d2
    assert c == pytest.approx(0.45) and v == pytest.approx(d * (1 - 0.45) * 2 / (1 + 0.9))
    # c = -1.2 fitted, target one step ahead: 1 + c k >= 0.1 makes c = -0.9
    v, c = _rational([2, 1, 0], _on_curve(-1.2, [0, -1, -2]), 3)
    d = 1 / 2.2
    assert c == pytest.approx(-0.9) and v == pytest.approx(d * 1.9 * 1 / 0.1)
    # saturate_only keeps c >= 0: the line
    v, c = _rational([2, 1, 0], _on_curve(-1.2, [0, -1, -2]), 3, saturate_only=True)
    assert c == 0.0 and v == pytest.approx(d)
    # a pole guard of 0.5: c >= (0.5 - 1) / 1
    assert _rational([2, 1, 0], _on_curve(-1.2, [0, -1, -2]), 3, pole_guard=0.5)[1] == pytest.approx(-0.5)


@pytest.mark.parametrize("steps", [[2, 2, 0], [3, 2, 2], [3, 4, 0]])
def test_rational_extrapolate_on_bad_spacing_reuses_the_newest_value(steps):
    assert _rational(steps, [5.0, 1.0, 0.0], 6) == (5.0, 0.0)


def test_rational_extrapolate_with_a_unit_step():
    assert _rational([3, 2, 0], [3.0, 2.0, 0.0], 4) == (pytest.approx(4.0), pytest.approx(0.0))


def _mid_rational(numerator, steps, values, at, **kw):
    p = P.PadePredictor(TCPadeConfig(numerator=numerator, lam=2.0, **kw))
    return float(p.value(at, "mid", hist_of([vec(v) for v in values], steps).latest(3)))


def test_rational_mid_value_with_two_values_scales_by_the_spacing():
    s = math.exp(-2.0 * 1.0 / 3.0)  # sigma_stab of 2, 1
    assert _mid_rational("rational", [2, 4], [1.0, 2.0], 6) == pytest.approx(2 + s * 1.0)
    assert _mid_rational("rational", [2, 4], [1.0, 2.0], 5) == pytest.approx(2 + s * 0.5)
    assert _mid_rational("rational", [3, 4], [1.0, 2.0], 6) == pytest.approx(2 + s * 2.0)


def test_rational_mid_value_damps_the_approximants_increment_by_sigma():
    vals = _on_curve(-1.2, [-2, -1, 0])  # oldest first, at steps 0, 1, 2
    s = math.exp(-2.0)  # sigma_stab of 0 and -1 / 2.2: ||R1 - R2|| = ||R1 + R2||
    d = 1 / 2.2
    assert _mid_rational("rational", [0, 1, 2], vals, 3) == pytest.approx(s * d * 1.9 / 0.1, rel=1e-5)
    assert _mid_rational("rational_damped", [0, 1, 2], vals, 3) == pytest.approx(s * d, rel=1e-5)
    assert _mid_rational("rational", [0, 1, 2], vals, 3, pole_guard=0.5) == pytest.approx(s * d * 1.5 / 0.5, rel=1e-5)


@pytest.mark.parametrize("phase", ["early", "mid", "late"])
@pytest.mark.parametrize("numerator", ["literal", "recent", "rational", "rational_damped"])
def test_pade_is_ready_with_one_value_and_reuses_it(phase, numerator):
    """Single-value readiness: one computed value is predicted as it is, in every phase and form."""
    p = P.PadePredictor(TCPadeConfig(numerator=numerator, alpha1=0.7, beta=0.5))
    hist = hist_of([], capacity=3)
    st = StreamState(hist, hist, p.State(), G.GateState())
    assert not p.ready(Step(1, 20, 0.5, phase), st)
    hist.push(0, 1.0, vec(1.5, -2.0))
    assert p.ready(Step(7, 20, 0.5, phase), st)
    rec = SimpleNamespace()
    assert p.value(7, phase, hist.latest(3), rec).tolist() == [1.5, -2.0] and rec.order == 0
    assert p.predict(Step(7, 20, 0.5, phase), st, vec(10.0, 10.0), rec).tolist() == [1.5, -2.0]  # target output


def test_pade_ready_needs_the_previous_input_where_eq6_adds_it():
    lit = P.PadePredictor(TCPadeConfig(mode="paper_literal"))
    hist = hist_of([vec(1.0)], capacity=3)
    st = StreamState(hist, hist, lit.State(), G.GateState())
    assert not lit.ready(Step(10, 20, 0.5, "mid"), st)  # Eq. 6's base is the previous input: not there yet
    st.pred.prev_input = vec(0.0)
    assert lit.ready(Step(10, 20, 0.5, "mid"), st)


def test_the_printed_numerator_with_two_values_takes_the_two_value_form():
    lit = P.PadePredictor(TCPadeConfig(mode="paper_literal", denominator="none", lam=2.0))
    rec = P.PadePredictor(TCPadeConfig(mode="paper_literal", denominator="none", lam=2.0, numerator="recent"))
    two = hist_of([vec(1.0, 2.0), vec(2.0, 2.5)], [3, 5], capacity=3).latest(3)
    assert torch.equal(lit.value(7, "mid", two), rec.value(7, "mid", two))
    r1, r2 = vec(2.0, 2.5), vec(1.0, 2.0)
    s = P.sigma_stab(r1, r2, 2.0)
    assert lit.value(7, "mid", two).tolist() == pytest.approx((r1 + s * 1.0 * (r1 - r2)).tolist())


@pytest.mark.parametrize("phase", ["early", "mid", "late"])
def test_pade_predict_adds_the_previous_input_as_eq6_prints_it(phase):
    cfg = TCPadeConfig(mode="paper_literal", alpha1=0.8)
    p = P.PadePredictor(cfg)
    hist = hist_of([vec(0.5, 0.1), vec(1.0, 0.2), vec(1.2, 0.3)], [4, 5, 6])
    st = StreamState(hist, hist, p.State(), G.GateState())
    st.pred.prev_input = vec(10.0, 20.0)
    rec = SimpleNamespace()
    out = p.predict(Step(7, 20, 0.5, phase), st, vec(-5.0, -5.0), rec)
    want = p.value(7, phase, hist.latest(3)) + vec(10.0, 20.0)
    assert torch.allclose(out, want)
    if phase == "early":  # alpha1 R1 + (1 - alpha1) R2
        assert out.tolist() == pytest.approx([0.8 * 1.2 + 0.2 * 1.0 + 10, 0.8 * 0.3 + 0.2 * 0.2 + 20])
        assert not hasattr(rec, "sigma_stab")
    else:
        assert rec.sigma_stab == pytest.approx(P.sigma_stab(vec(1.2, 0.3), vec(1.0, 0.2), 10.0))


def test_tsi_gate_skips_at_a_score_equal_to_theta():
    line = _resid([0.0, 0.0], [1.0, 0.0], [2.0, 0.0], steps=[2, 3, 4])
    assert G.TSIGate(100.0, 100, "reciprocal", "interval").decide(step(6), line, None) == G.Decision(
        False, "tsi>=theta", 100.0
    )
    two = _resid([0.0], [1.0], steps=[0, 1])
    assert G.TSIGate(100.0, 100, "reciprocal", "spread", 1).decide(step(5), two, None) == G.Decision(
        False, "tsi n/a", 100.0
    )


def test_planned_schedule_note_lists_only_steps_of_the_run():
    pg = G.PlannedGate(G.Gate(), [0, 3, 10])
    assert pg.note(10) == "planned schedule: 2 of 10 computes at steps 0, 3"


def test_what_each_predictor_declares_for_the_planner():
    assert (P.ReusePredictor().warmup, P.ReusePredictor().plan_order) == (1, 0)
    assert [P.TaylorPredictor(o, "eq10", "output").plan_order for o in (0, 1, 2, 3)] == [0, 1, 2, 2]
    assert P.LagrangePredictor(3, "output").plan_order == 1
    assert [P.PadePredictor(TCPadeConfig(numerator=n)).warmup for n in ("literal", "recent")] == [1, 1]
    assert [
        (
            P.OfficialPadePredictor(TCPadeOfficialConfig(order=o)).warmup,
            P.OfficialPadePredictor(TCPadeOfficialConfig(order=o)).plan_order,
        )
        for o in (1, 3, 4)
    ] == [(2, 1), (3, 1), (3, 1)]


def test_rational_extrapolate_with_an_uneven_step():
    # v = k / (1 + 0.1 k) at k = 0, -2, -4 (steps 4, 2, 0): c = 0.1 and v(6) = 2 / 1.2, exact
    v, c = _rational([4, 2, 0], _on_curve(0.1, [0, -2, -4]), 6)
    assert c == pytest.approx(0.1) and v == pytest.approx(2 / 1.2)


def test_tsi_gate_default_schedule_is_the_papers_interval_and_the_spread_warmup_is_two():
    assert [G.TSIGate(1.0, 4, "reciprocal").forced(i) for i in range(5)] == ["interval", None, None, None, "interval"]
    assert [G.TSIGate(1.0, 4, "reciprocal", "spread").forced(i) for i in range(3)] == ["warmup", "warmup", None]


@pytest.mark.parametrize("history", ["all", "computed"])
def test_pade_history_all_keeps_each_prediction_as_an_uncomputed_entry(history):
    p = P.PadePredictor(TCPadeConfig(history=history, numerator="recent", denominator="none", target="output"))
    hist = ResidualHistory(3)
    st = StreamState(hist, hist, p.State(), G.GateState())
    h = vec(0.0, 0.0)
    p.observe(step(0), st, h, vec(1.0, 0.0))
    p.observe(step(1), st, h, vec(2.0, 0.5))
    y_hat = p.predict(Step(2, 20, 0.9, "mid"), st, h, SimpleNamespace())
    p.observe_skip(Step(2, 20, 0.9, "mid"), st, h, y_hat)
    es = hist.latest(3)
    assert st.pred.last_pred_residual is None
    if history == "all":
        assert [(e.step, e.computed) for e in es] == [(2, False), (1, True), (0, True)]
        assert es[0].t == 0.9 and torch.allclose(es[0].value, y_hat) and st.pred.newest_step == 2
    else:
        assert [e.step for e in es] == [1, 0] and st.pred.newest_step == 1


# ================================================================ survivors of the last batch (written after it)


def test_late_phase_adds_beta_times_the_newest_difference():
    """Late phase: the mid value plus beta (R1 - R2); early: alpha1 R1 + (1 - alpha1) R2."""
    cfg = TCPadeConfig(mode="paper_literal", beta=0.25, alpha1=0.75, numerator="recent", denominator="none")
    p = P.PadePredictor(cfg)
    es = hist_of([vec(1.0, 2.0), vec(3.0, 1.0)], steps=[4, 5]).latest(2)  # newest first: R1 = (3, 1)
    mid = p.value(6, "mid", es)
    late = p.value(6, "late", es)
    assert torch.allclose(late - mid, 0.25 * (vec(3.0, 1.0) - vec(1.0, 2.0)))
    assert torch.allclose(p.value(6, "early", es), 0.75 * vec(3.0, 1.0) + 0.25 * vec(1.0, 2.0))


def test_finite_replaces_nan_and_infinities_by_zero():
    out = P._finite(torch.tensor([float("nan"), float("inf"), -float("inf"), 2.5]))
    assert out.tolist() == [0.0, 0.0, 0.0, 2.5]


def test_a_one_step_run_computes_its_step():
    run = CacheRun(TaylorSeerConfig(interval=2))
    run.begin_step(0, 1, 1.0)
    y = run("c", vec(1.0), lambda h: h * 2)
    rep = run.end_run()
    assert y.tolist() == [2.0] and rep.computed == 1 and rep.num_steps == 1
    with pytest.raises(ValueError, match="step index"):
        run.begin_step(1, 1, 0.0)
