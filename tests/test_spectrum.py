"""Spectrum (hanjq17/Spectrum): the Chebyshev ridge forecast, its Newton-forward blend, its schedule, its config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tcpade_core import CacheRun, ConfigError, make_config
from tcpade_core import methods as M
from tcpade_core.engine import Step, StreamState
from tcpade_core.gates import spectrum_schedule
from tcpade_core.history import ResidualHistory
from tcpade_core.predictors import (
    SPECTRUM_TIME_MAPS,
    SpectrumPredictor,
    chebyshev_ridge_weights,
    newton_forward_weights,
    spectrum_weights,
)


class _Rec:
    order = None


def _stream(pred, entries, num_steps=50, dtype=torch.float32):
    """A stream whose history holds ``entries`` = [(step, value)] oldest first (computed steps)."""
    hist = ResidualHistory(pred.capacity)
    st = StreamState(hist, hist, pred.State(), None)
    for i, v in entries:
        hist.check_meta(v.to(dtype))
        hist.push(i, 1.0 - i / num_steps, v.to(dtype))
    return st


def _predict(pred, entries, index, num_steps=50, h=None):
    st = _stream(pred, entries, num_steps)
    h = torch.zeros_like(entries[0][1]) if h is None else h
    return pred.predict(Step(index, num_steps, 1.0 - index / num_steps), st, h, _Rec())


def _poly(coeffs, s):
    return sum(c * s**p for p, c in enumerate(coeffs))


@pytest.mark.parametrize("time_map", sorted(SPECTRUM_TIME_MAPS))
@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_exact_on_polynomials_of_degree_up_to_m_on_uneven_spacing(time_map, degree):
    """λ -> 0 with at least M + 1 points: the ridge fit is the least-squares polynomial, exact on degree <= M in the
    time variable (the step index for fixed50 / steps; t = 1 - index / steps, an affine map of it, for time)."""
    steps = [0, 1, 3, 5, 8, 12, 17]  # Spectrum's own uneven schedule
    g = torch.Generator().manual_seed(degree)
    coeffs = [torch.randn(3, 4, generator=g) for _ in range(degree + 1)]
    entries = [(s, _poly(coeffs, s / 10.0)) for s in steps]
    pred = SpectrumPredictor(degree, 1e-12, 1.0, 10, 1, time_map, "output")
    for target in (19, 23):
        got = _predict(pred, entries, target, num_steps=25)
        want = _poly(coeffs, target / 10.0)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (target, float((got - want).abs().max()))
    # a polynomial of degree M + 1 is not recovered: the test can fail
    over = [(s, _poly(coeffs, s / 10.0) + (s / 10.0) ** (degree + 1)) for s in steps]
    assert not torch.allclose(_predict(pred, over, 19, 25), _poly(coeffs, 1.9) + 1.9 ** (degree + 1), atol=1e-3)


def test_ridge_matches_a_direct_numpy_solve():
    """λ 0.1, the official fixed map of [0, 50]: x(τ*) (X^T X + λ I)^-1 X^T H, solved directly."""
    steps = [0, 1, 2, 3, 4, 6, 8, 11]
    rng = np.random.default_rng(0)
    H = rng.standard_normal((len(steps), 6))
    entries = [(s, torch.tensor(H[i], dtype=torch.float32)) for i, s in enumerate(steps)]
    pred = SpectrumPredictor(4, 0.1, 1.0, 10, 1, "fixed50", "output")
    got = _predict(pred, entries, 14).numpy()
    tau = (np.array(steps, dtype=float) - 25.0) / 25.0
    X = np.polynomial.chebyshev.chebvander(tau, 4)
    C = np.linalg.solve(X.T @ X + 0.1 * np.eye(5), X.T @ H)
    want = np.polynomial.chebyshev.chebvander(np.array([(14 - 25.0) / 25.0]), 4) @ C
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-6)
    # the ridge shrinks: it is not the unregularised fit
    C0 = np.linalg.lstsq(X, H, rcond=None)[0]
    assert np.abs(want - np.polynomial.chebyshev.chebvander(np.array([-11 / 25.0]), 4) @ C0).max() > 1e-3


def test_window_keeps_the_newest_k():
    """K = 3: the fit sees only the three newest computed values (older ones change nothing)."""
    pred = SpectrumPredictor(2, 0.1, 1.0, 3, 1, "fixed50", "output")
    a = [(s, torch.full((2,), float(v))) for s, v in ((0, 100.0), (1, 1.0), (3, 2.0), (5, 4.0))]
    b = [(s, torch.full((2,), float(v))) for s, v in ((0, -7.0), (1, 1.0), (3, 2.0), (5, 4.0))]
    assert torch.equal(_predict(pred, a, 7), _predict(pred, b, 7))
    assert not torch.equal(
        _predict(SpectrumPredictor(2, 0.1, 1.0, 4, 1, "fixed50", "output"), a, 7), _predict(pred, a, 7)
    )


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_a_single_computed_value_is_reused(w):
    pred = SpectrumPredictor(4, 0.1, w, 10, 1, "fixed50", "output")
    v = torch.tensor([1.5, -2.0, 3.0])
    assert torch.equal(_predict(pred, [(0, v)], 3), v)
    res = SpectrumPredictor(4, 0.1, w, 10, 1, "fixed50", "residual")
    h = torch.tensor([10.0, 20.0, 30.0])
    assert torch.equal(_predict(res, [(0, v)], 3, h=h), h + v)  # the residual on the current input


def test_newton_forward_weights_by_hand():
    """k = (t* - t1) / (t1 - t2): times 5, 3, 1, 0 (newest first), t* = 8 gives k = 1.5."""
    k = 1.5
    assert newton_forward_weights([5, 3], 8, 1) == [1 + k, -k]
    c2 = k * (k - 1) / 2  # C(k, 2) = 0.375, as the official code writes it
    assert newton_forward_weights([5, 3, 1], 8, 2) == pytest.approx([1 + k + c2, -k - 2 * c2, c2])
    c3 = k * (k - 1) * (k - 2) / 6  # C(k, 3) = -0.0625
    assert newton_forward_weights([5, 3, 1, 0], 8, 3) == pytest.approx(
        [1 + k + c2 + c3, -k - 2 * c2 - 3 * c3, c2 + 3 * c3, -c3]
    )
    assert newton_forward_weights([5, 3], 8, 3) == [1 + k, -k]  # the order is capped by the values there are
    assert newton_forward_weights([5], 8, 1) == [1.0]
    assert sum(newton_forward_weights([5, 3, 1, 0], 8, 3)) == pytest.approx(1.0)  # constants stay constant


def test_blend_is_the_convex_mixture_of_both_forecasts():
    steps, vals = (
        [0, 1, 3, 5],
        [torch.tensor([1.0, 2.0]), torch.tensor([2.0, 1.0]), torch.tensor([4.0, 0.0]), torch.tensor([3.0, 5.0])],
    )
    entries = list(zip(steps, vals))
    mk = lambda w: SpectrumPredictor(4, 0.1, w, 10, 1, "fixed50", "output")
    cheb, taylor, mix = _predict(mk(1.0), entries, 8), _predict(mk(0.0), entries, 8), _predict(mk(0.5), entries, 8)
    # w 0: h1 + k (h1 - h2) with k = (8 - 5) / (5 - 3) = 1.5
    assert torch.allclose(taylor, vals[3] + 1.5 * (vals[3] - vals[2]))
    assert torch.allclose(mix, 0.5 * cheb + 0.5 * taylor, atol=1e-6)
    assert not torch.allclose(cheb, taylor)


def test_spectrum_weights_order_and_time_maps():
    taus = [SPECTRUM_TIME_MAPS["fixed50"](s, 0.0, 20) for s in (5, 3, 1)]
    assert taus == [-0.8, -0.88, -0.96]
    assert SPECTRUM_TIME_MAPS["steps"](10, 0.0, 20) == 0.0 and SPECTRUM_TIME_MAPS["time"](0, 1.0, 20) == -1.0
    w = spectrum_weights(taus, -0.76, 4, 0.1, 0.5, 1)
    cheb = chebyshev_ridge_weights(taus, -0.76, 4, 0.1)
    assert w == pytest.approx([0.5 * c + 0.5 * t for c, t in zip(cheb, [1.5, -0.5, 0.0])])


def test_never_nan_and_a_failed_solve_is_guarded():
    assert all(math.isfinite(a) for a in chebyshev_ridge_weights([float("nan"), 0.1], 0.2, 4, 0.1))
    pred = SpectrumPredictor(4, 0.1, 0.5, 10, 2, "fixed50", "output")
    big = [(s, torch.full((3,), 1e38 * (-1) ** s)) for s in (0, 1, 2)]
    out = _predict(pred, big, 9)
    assert bool(torch.isfinite(out).all())
    half = SpectrumPredictor(4, 0.1, 1.0, 10, 1, "fixed50", "output")
    hh = _predict(half, [(s, torch.full((3,), float(s))) for s in (0, 1, 2)], 5, h=torch.zeros(3, dtype=torch.float16))
    assert hh.dtype == torch.float16 and bool(torch.isfinite(hh).all())


# ---------------------------------------------------------------- schedule


def test_schedule_as_its_code_counts():
    """Its ``our_flux_forward``: the first ``warmup_steps`` compute (configs/base.yaml: 5, not the window size);
    then (cached + 1) % floor(N) == 0, N += α on each such compute. The issue's 0, 1, 3, 5, 8, 12, 17 is the
    warm-up-2 schedule; its README's 14 and 10 passes at 50 steps are warm-up 5."""
    assert spectrum_schedule(20, 2, 2, 0.75) == [0, 1, 3, 5, 8, 12, 17]
    assert spectrum_schedule(20, 5, 2, 0.75) == [0, 1, 2, 3, 4, 6, 8, 11, 15]
    assert spectrum_schedule(50, 5, 2, 0.75) == [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 25, 31, 38, 46]  # 14 passes
    assert len(spectrum_schedule(50, 5, 2, 3.0)) == 10  # "10 network passes (≈ 5x)"
    assert spectrum_schedule(28, 5, 2, 0.75) == [0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 25]
    assert spectrum_schedule(28, 5, 2, 3.0) == [0, 1, 2, 3, 4, 6, 11, 19]
    assert spectrum_schedule(10, 1, 1, 0.0) == list(range(10))  # N 1 never grows: every step


def _run(cfg, steps=20):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 8, generator=g) * 0.3
    x = torch.randn(2, 8, generator=g)
    run = CacheRun(cfg)
    outs = []
    for i in range(steps):
        t = 1.0 - i / steps
        run.begin_step(i, steps, t)
        y = run("c", x, lambda h, t=t: torch.tanh(h @ w + t))
        outs.append(y)
        x = x + 0.2 * (y - x)
    return outs, run.end_run()


@pytest.mark.parametrize("steps,warmup,alpha", [(20, 2, 0.75), (20, 5, 0.75), (30, 2, 3.0), (50, 5, 0.75)])
def test_the_gate_runs_the_schedule_in_the_engine_and_keeps_no_state(steps, warmup, alpha):
    cfg = make_config("spectrum", warmup_steps=warmup, alpha=alpha)
    want = spectrum_schedule(steps, warmup, 2, alpha)
    for _ in range(2):  # a second run starts over
        outs, rep = _run(cfg, steps)
        assert [r.step for r in rep.steps if r.computed] == want
        assert all(bool(torch.isfinite(o).all()) for o in outs)


def test_a_compute_outside_the_window_restarts_the_count():
    """A step the engine computes for another reason (outside start/end) is not a cached step, and N grows only
    on the computes the schedule asked for."""
    cfg = make_config("spectrum", warmup_steps=1)
    run = CacheRun(cfg)
    x = torch.ones(2, 3)
    for i in range(12):
        run.begin_step(i, 12, 1.0 - i / 12, active=i != 4)
        run("c", x, lambda h: h * 0.9)
    got = [r.step for r in run.end_run().steps if r.computed]
    # 0 warm-up; N 2: 2; N 2.75: 4 (outside: no growth, count restarts), 6; N 3.5: 9; N 4.25: -
    assert got == [0, 2, 4, 6, 9]


@pytest.mark.parametrize("target,steps", [(2.0, 20), (2.5, 20), (3.0, 20), (2.8, 30)])
def test_a_speed_target_computes_exactly_its_budget(target, steps):
    _, rep = _run(make_config("spectrum", target_speedup=target), steps)
    assert rep.computed == round(steps / target)


# ---------------------------------------------------------------- config and descriptor


@pytest.mark.parametrize(
    "params,name,rng",
    [
        (dict(degree=9), "degree", "[0, 8]"),
        (dict(degree=2.5), "degree", "integer"),
        (dict(lam=0.0), "lam", "(0.0, 100.0]"),
        (dict(lam=float("nan")), "lam", "finite"),
        (dict(w=1.5), "w", "[0.0, 1.0]"),
        (dict(history=0), "history", "[1, 100]"),
        (dict(window_size=0), "window_size", "[1, 100]"),
        (dict(alpha=-0.1), "alpha", "[0.0, 100.0]"),
        (dict(warmup_steps=0), "warmup_steps", "[1, 100]"),
        (dict(taylor_order=4), "taylor_order", "[1, 3]"),
        (dict(mode="paper"), "mode", "'default', 'official'"),
        (dict(time_map="sigma"), "time_map", "'fixed50', 'steps', 'time'"),
        (dict(target="input"), "target", "'output', 'residual'"),
    ],
)
def test_config_errors_name_the_input_and_its_range(params, name, rng):
    with pytest.raises(ConfigError) as e:
        make_config("spectrum", **params)
    assert str(e.value).startswith(name) and rng in str(e.value)


def test_modes_fill_what_is_left_and_official_is_its_code():
    off = make_config("spectrum", mode="official")
    assert (off.time_map, off.target) == ("fixed50", "output")
    assert make_config("spectrum", mode="official", target="residual").target == "residual"
    d = make_config("spectrum")
    assert (d.degree, d.lam, d.w, d.history, d.window_size, d.alpha, d.warmup_steps, d.taylor_order) == (
        4,
        0.1,
        0.5,
        10,
        2,
        0.75,
        2,
        1,
    )
    assert (d.time_map, d.target) == ("time", "output")
    assert d.with_(mode="official").describe() == "spectrum(mode=official)"
    assert d.with_(w=1.0, time_map="steps").describe() == "spectrum(mode=default, w=1.0, time_map=steps)"


def test_descriptor_node_and_widgets():
    m = M.METHODS["spectrum"]
    assert (m.label, m.node_id) == ("Spectrum", "TCPade_Spectrum") and m in M.NODES
    names = {w.name for w in m.all_widgets()}
    assert {"degree", "lam", "w", "history", "window_size", "alpha", "warmup_steps", "mode"} <= names
    for w in m.all_widgets():
        assert w.tooltip and (w.kind in ("combo", "string") or (w.min is not None and w.max is not None)), w.name
        if w.param and w.min is not None:  # the widget's range is inside the config's
            make_config("spectrum", **{w.param: type(w.default)(w.max)})
    gate, pred = M.build(make_config("spectrum", history=7))
    assert pred.capacity == 7 and pred.stores == "output" and gate.needs_residuals == 0
