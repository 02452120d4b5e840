"""Engine tests: exact values on constructed curves, gate rules, guards, config errors."""

import math
import pathlib
import subprocess
import sys

import pytest
import torch

from tcpade_core import (
    CacheRun,
    ConfigError,
    NoCacheConfig,
    ReuseConfig,
    TaylorSeerConfig,
    TCPadeConfig,
    TeaCacheConfig,
    TraCacheConfig,
    make_config,
)
from tcpade_core import gates as G
from tcpade_core import predictors as P
from tcpade_core.history import ResidualHistory

ROOT = pathlib.Path(__file__).resolve().parents[1]


def poly_values(coeffs, times, shape=(3, 5), seed=0):
    """Vector-valued polynomial sum_k c_k * A_k * t^k with random directions A_k."""
    g = torch.Generator().manual_seed(seed)
    dirs = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in coeffs]
    return [sum(c * d * t**k for k, (c, d) in enumerate(zip(coeffs, dirs))) for t in times], dirs


def poly_at(coeffs, dirs, t):
    return sum(c * d * t**k for k, (c, d) in enumerate(zip(coeffs, dirs)))


# ------------------------------------------------------------------ Taylor / Lagrange exactness


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_newton_taylor_exact_on_polynomials_up_to_order(order, degree):
    coeffs = [0.7, -1.3, 0.4, 0.25][: degree + 1]
    steps = [9.0, 6.0, 3.0, 0.0]  # newest first, computed every 3 steps
    vals, dirs = poly_values(coeffs, steps)
    pred = P.newton(vals, steps, 11.0, order)
    err = float((pred - poly_at(coeffs, dirs, 11.0)).abs().max())
    if degree <= order:
        assert err < 1e-9
    else:
        assert err > 1e-3  # a lower order cannot follow a higher-degree curve


@pytest.mark.parametrize("degree", [0, 1])
def test_taylorseer_eq10_exact_on_lines(degree):
    coeffs = [0.7, -1.3][: degree + 1]
    steps = [8.0, 4.0, 0.0]
    vals, dirs = poly_values(coeffs, steps)
    for order in (1, 2):
        pred = P.taylor_eq10(vals, steps, 10.0, order)
        assert float((pred - poly_at(coeffs, dirs, 10.0)).abs().max()) < 1e-9


def official_taylor(values, steps, target, order, first_enhance=0):
    """Drive TaylorSeer's recursive factors through computed (step, value) pairs, oldest first."""
    factors, last = None, None
    for s, v in zip(steps, values):
        keep = factors is not None and s >= first_enhance - 1
        factors = P.taylor_factors_update(factors if keep else None, v, float(s - last) if keep else 1.0, order)
        last = s
    return P.taylor_factors_eval(factors, float(target - last))


@pytest.mark.parametrize("degree", [0, 1])
def test_taylorseer_official_exact_on_lines_even_with_uneven_spacing(degree):
    coeffs = [0.7, -1.3][: degree + 1]
    steps = [0.0, 1.0, 4.0, 7.0]  # first_enhance 2, interval 3: uneven first spacing
    vals, dirs = poly_values(coeffs, steps)
    for order in (1, 2, 3):
        pred = official_taylor(vals, steps, 9.0, order)
        assert float((pred - poly_at(coeffs, dirs, 9.0)).abs().max()) < 1e-9


def test_taylorseer_official_recursion_by_hand():
    # F = t^2 computed at steps 0, 1, 4 (spacings 1 then 3), order 2, predicted at step 6 (k = 2):
    # after step 1: f0 = 1, f1 = (1 - 0) / 1 = 1
    # after step 4: f0 = 16, f1 = (16 - 1) / 3 = 5, f2 = (5 - 1) / 3 = 4/3
    # prediction: 16 + 5 * 2 + (4/3) * 2^2 / 2 = 26 + 8/3
    one = lambda x: torch.tensor([x], dtype=torch.float64)
    pred = official_taylor([one(0.0), one(1.0), one(16.0)], [0, 1, 4], 6, 2)
    assert float(pred) == pytest.approx(26 + 8 / 3, abs=1e-12)
    # Eq. 10 on the same values uses the newest spacing (3) for both differences: a different number
    eq10 = P.taylor_eq10([one(16.0), one(1.0), one(0.0)], [4.0, 1.0, 0.0], 6.0, 2)
    assert float(eq10) == pytest.approx(16 + 15 / 3 * 2 + (16 - 2 + 0) / (2 * 9) * 4, abs=1e-12)
    assert abs(float(eq10) - float(pred)) > 0.4
    # on evenly spaced computes the two coincide
    vals = [one(float(s) ** 2) for s in (0, 3, 6)]
    assert float(official_taylor(vals, [0, 3, 6], 8, 2)) == pytest.approx(
        float(P.taylor_eq10(vals[::-1], [6.0, 3.0, 0.0], 8.0, 2)), abs=1e-12
    )


def test_taylorseer_official_first_enhance_holds_back_derivatives():
    # official: order >= 1 factors are only updated from step first_enhance - 1 on
    one = lambda x: torch.tensor([x], dtype=torch.float64)
    pred = official_taylor([one(0.0), one(1.0), one(5.0)], [0, 1, 2], 3, 1, first_enhance=3)
    assert float(pred) == pytest.approx(5 + (5 - 1) * 1)  # the step-0 value never made a derivative
    pred = official_taylor([one(0.0), one(1.0)], [0, 1], 3, 1, first_enhance=3)
    assert float(pred) == 1.0  # step 1 < first_enhance - 1: no derivative yet


def test_taylorseer_official_in_the_engine_matches_the_recursion():
    cfg = TaylorSeerConfig(interval=3, order=2, first_enhance=2)
    run = CacheRun(cfg)
    seq = [torch.full((1, 2, 3), float(i) ** 2) for i in range(10)]
    outs = []
    for i in range(10):
        run.begin_step(i, 10, 1 - i / 10)
        outs.append(run("c", torch.zeros(1, 2, 3), lambda h, i=i: seq[i]))
    rep = run.end_run()
    assert rep.strip() == "##..#..#.."
    want = official_taylor([seq[s] for s in (0, 1, 4)], [0, 1, 4], 6, 2, first_enhance=2)
    assert torch.allclose(outs[6], want.float())
    assert rep.cache_bytes == 3 * 6 * 4  # order + 1 factors of one stream, fp32


def test_taylorseer_eq10_matches_its_formula_on_a_parabola():
    # F = t^2 sampled at 4, 2, 0 (N=2); Eq. 10 at t=5 (k=1): F + D1/N*k + D2/(2 N^2)*k^2
    vals = [
        torch.tensor([16.0], dtype=torch.float64),
        torch.tensor([4.0], dtype=torch.float64),
        torch.tensor([0.0], dtype=torch.float64),
    ]
    pred = P.taylor_eq10(vals, [4.0, 2.0, 0.0], 5.0, 2)
    d1, d2 = 16 - 4, 16 - 2 * 4 + 0
    assert float(pred) == pytest.approx(16 + d1 / 2 * 1 + d2 / (2 * 4) * 1)
    assert float(pred) != pytest.approx(25.0)  # Eq. 10 is not the exact extrapolation for degree 2


@pytest.mark.parametrize("n", [1, 2, 3])
def test_lagrange_exact_on_polynomials_up_to_n(n):
    times = [0.35, 0.5, 0.65, 0.8][: n + 1]
    for degree in range(0, 4):
        coeffs = [0.3, 1.1, -0.6, 0.2][: degree + 1]
        vals, dirs = poly_values(coeffs, times, seed=degree)
        err = float((P.lagrange(vals, times, 0.2) - poly_at(coeffs, dirs, 0.2)).abs().max())
        assert (err < 1e-9) == (degree <= n)


def test_lagrange_dynamic_picks_exact_order_on_a_line():
    times = [0.4, 0.5, 0.6]
    vals, dirs = poly_values([0.5, 2.0], times)
    pred, order = P.lagrange_dynamic(vals, times, 0.3, max_order=2)
    # phi_2 - phi_1 == 0 on a line, so std is minimal at n = 2; both are exact
    assert order == 2
    assert float((pred - poly_at([0.5, 2.0], dirs, 0.3)).abs().max()) < 1e-9


# ------------------------------------------------------------------ TSI


def _traj(d1, d2):
    r3 = torch.zeros(4)
    r2 = r3 + torch.tensor(d2, dtype=torch.float32)
    r1 = r2 + torch.tensor(d1, dtype=torch.float32)
    return r1, r2, r3


def test_tsi_straight_line():
    r1, r2, r3 = _traj([1.0, 2.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0])
    assert G.tsi_literal(r1, r2, r3) == pytest.approx(0.0, abs=1e-6)
    assert G.stability_score(0.0, "cosine") == 2.0
    assert G.stability_score(0.0, "sum_norm") == 2.0
    assert G.stability_score(0.0, "reciprocal") == G.RECIPROCAL_CAP


def test_tsi_reversal():
    r1, r2, r3 = _traj([-1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0])
    tsi = G.tsi_literal(r1, r2, r3)
    assert tsi == pytest.approx(1.0, abs=1e-6)
    assert G.stability_score(tsi, "cosine") == pytest.approx(0.0, abs=1e-6)
    assert G.stability_score(tsi, "sum_norm") == pytest.approx(0.0, abs=1e-3)
    assert G.stability_score(tsi, "reciprocal") == pytest.approx(0.5, abs=1e-6)


def test_tsi_right_angle():
    r1, r2, r3 = _traj([0.0, 2.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0])
    tsi = G.tsi_literal(r1, r2, r3)
    assert tsi == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    assert G.stability_score(tsi, "cosine") == pytest.approx(1.0, abs=1e-6)
    assert G.stability_score(tsi, "sum_norm") == pytest.approx(math.sqrt(2), abs=1e-6)
    assert G.stability_score(tsi, "reciprocal") == pytest.approx(1 / math.sqrt(2), abs=1e-6)


@pytest.mark.parametrize("theta,max_angle", [(1.3, 45.2), (1.0, 60.0), (0.7, 91.0)])
def test_reciprocal_scale_turning_angles(theta, max_angle):
    # skip while the residual-difference direction turns by less than max_angle degrees
    for angle in (max_angle - 1.0, max_angle + 1.0):
        a = math.radians(angle)
        r1, r2, r3 = _traj([math.cos(a), math.sin(a), 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])
        score = G.stability_score(G.tsi_literal(r1, r2, r3), "reciprocal")
        assert (score >= theta) == (angle < max_angle)


def test_tsi_constant_residual_is_steady():
    r = torch.ones(4)
    assert G.tsi_literal(r, r, r) == 0.0


# ------------------------------------------------------------------ Padé guards


def _finite(x):
    return bool(torch.isfinite(x).all())


@pytest.mark.parametrize("numerator", ["literal", "recent"])
@pytest.mark.parametrize("denominator", ["elementwise", "normalized", "none"])
def test_pade_pole_is_guarded(numerator, denominator):
    lam = 10.0
    r = torch.full((64,), -lam)  # R1 == R2 -> sigma = 1 -> a1 = 1/lam -> 1 + a1*R1 == 0
    out, s = P.pade_residual(r, r.clone(), r.clone(), lam=lam, numerator=numerator, denominator=denominator)
    assert s == 1.0
    assert _finite(out)
    if denominator == "elementwise":
        # the guard keeps |1 + a1 R| >= 0.1
        assert float(out.abs().max()) <= float(r.abs().max()) / 0.1 + 1e-3


def test_pade_zero_norm_differences_and_sigma_to_zero():
    z = torch.zeros(32)
    for num in ("literal", "recent"):
        out, s = P.pade_residual(z, z, z, lam=10.0, numerator=num, denominator="elementwise")
        assert _finite(out) and s == 1.0 and float(out.abs().max()) == 0.0
    a = torch.randn(32)
    out, s = P.pade_residual(a, -a, a, lam=10.0, numerator="literal", denominator="elementwise")
    assert s == 0.0 and _finite(out)
    assert float(out.abs().max()) == 0.0  # literal Eq. 5 with sigma -> 0 predicts a zero residual
    out, s = P.pade_residual(a, -a, a, lam=10.0, numerator="recent", denominator="elementwise")
    assert torch.allclose(out, a)  # the default reading falls back to reuse of R1


def test_pade_non_finite_inputs_give_zero_not_nan():
    nanin = torch.tensor([float("nan"), 1.0, float("inf")])
    out, _ = P.pade_residual(nanin, nanin, nanin, lam=10.0, numerator="recent", denominator="none")
    # a NaN residual makes sigma_stab NaN, so the whole prediction is NaN before the guard: it becomes 0, never NaN
    assert out.tolist() == [0.0, 0.0, 0.0]
    big = torch.full((4,), 1e15)
    out, s = P.pade_residual(big, -big * 0.5, big, lam=10.0, numerator="recent", denominator="none")
    assert s == pytest.approx(math.exp(-30.0))  # ||R1 - R2|| / ||R1 + R2|| = 1.5 / 0.5
    assert torch.equal(out, big + s * (big - (-big * 0.5)))


def test_early_returns_are_guarded_too():
    bad = [torch.tensor([float("nan"), 2.0])]
    assert P.taylor_eq10(bad, [3.0], 4.0, 1).tolist() == [0.0, 2.0]
    assert P.lagrange(bad, [0.5], 0.4).tolist() == [0.0, 2.0]
    assert P.lagrange_dynamic(bad, [0.5], 0.4, 2)[0].tolist() == [0.0, 2.0]


def test_pade_recent_is_linear_extrapolation_when_stable():
    r2 = torch.ones(8)
    r1 = r2 * 1.001  # tiny change -> sigma close to 1
    out, s = P.pade_residual(r1, r2, None, lam=10.0, numerator="recent", denominator="none")
    assert torch.allclose(out, r1 + s * (r1 - r2))
    assert s > 0.99


# ------------------------------------------------------------------ engine rules on a synthetic stack

W = torch.randn(16, 16, generator=torch.Generator().manual_seed(1)) * 0.2


def stack(h):
    return h + torch.tanh(h @ W)


def run_cfg(cfg, steps=20, streams=("cond", "uncond"), measure_error=False, store_device=None, shape=(2, 8, 16)):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(shape, generator=g)
    calls = []
    run = CacheRun(cfg, store_device=store_device, measure_error=measure_error)
    outs = []

    def counted(h):
        calls.append(run.step.index)
        return stack(h)

    for i in range(steps):
        t = 1 - i / steps
        run.begin_step(i, steps, t)
        for k, s in enumerate(streams):
            h = x0 * (0.3 + 0.7 * t) + 0.05 * k
            outs.append(run(s, h, counted, lambda: h * 0.5))
    return run.end_run(), outs, calls


def test_never_skipping_theta_reproduces_full_compute_bit_for_bit():
    ref, ref_out, _ = run_cfg(NoCacheConfig())
    rep, out, _ = run_cfg(TCPadeConfig(theta=1000.0))
    assert rep.computed == 20
    assert all(torch.equal(a, b) for a, b in zip(ref_out, out))


def test_tcpade_interval_schedule_and_warmup_rules():
    # the paper's schedule: every N-th step from 0, and every step until three residuals exist
    rep, _, calls = run_cfg(TCPadeConfig(theta=0.0, interval=4, schedule="interval"))
    expected = [i for i in range(20) if i < 3 or i % 4 == 0]
    assert [r.step for r in rep.steps if r.computed] == expected
    assert rep.skipped_steps == [i for i in range(20) if i not in expected]
    # the block stack really ran exactly on the computed steps, once per stream
    assert sorted(set(calls)) == expected and len(calls) == 2 * len(expected)
    assert all(r.gate is not None for r in rep.steps if not r.computed)


def test_tcpade_phases_follow_eq9_boundaries():
    rep, _, _ = run_cfg(TCPadeConfig(theta=0.0, mode="paper_literal"))
    phases = [r.phase for r in rep.steps]
    assert phases == ["early"] * 6 + ["mid"] * 11 + ["late"] * 3
    rep, _, _ = run_cfg(TCPadeConfig(theta=0.0))  # the default reading has no phases
    assert {r.phase for r in rep.steps} == {"mid"}


def test_tcpade_default_spread_schedule_and_tsi_spacing_rule():
    # warm-up 1 (+ one forced compute: the predictor needs two values), then every 4th step from step 0;
    # the TSI gate only compares equally spaced computes, so the uneven warm-up ones count as steady
    rep, _, calls = run_cfg(TCPadeConfig(theta=1.0))
    assert rep.strip() == "##..#...#...#...#..."
    assert [r.reason for r in rep.steps[:6]] == ["warmup", "warmup", "tsi n/a", "tsi n/a", "interval", "tsi n/a"]
    assert rep.steps[9].reason == "tsi n/a"  # computes 1, 4, 8: uneven
    assert rep.steps[13].reason in ("tsi>=theta", "tsi<theta") and rep.steps[13].gate is not None  # 4, 8, 12
    assert sorted(set(calls)) == [0, 1, 4, 8, 12, 16]
    # a theta no score reaches never skips, also where the TSI cannot be evaluated
    assert run_cfg(TCPadeConfig(theta=1000.0))[0].computed == 20


def test_teacache_first_and_last_always_compute():
    rep, _, _ = run_cfg(TeaCacheConfig(threshold=10.0))
    assert [r.step for r in rep.steps if r.computed] == [0, 19]


def test_taylorseer_schedule_is_the_official_one():
    # cal_type: full while i < first_enhance, then after every interval - 1 predicted steps
    rep, _, _ = run_cfg(TaylorSeerConfig(interval=3, order=1, first_enhance=2))
    assert [r.step for r in rep.steps if r.computed] == [0, 1, 4, 7, 10, 13, 16, 19]
    rep, _, _ = run_cfg(TaylorSeerConfig(interval=4, order=1, first_enhance=1))
    assert [r.step for r in rep.steps if r.computed] == [0, 4, 8, 12, 16]
    rep, _, _ = run_cfg(TaylorSeerConfig(interval=6, order=1, first_enhance=3))  # the FLUX defaults
    assert rep.strip() == "###.....#.....#....."


def test_tracache_and_reuse_stride():
    rep, _, _ = run_cfg(TraCacheConfig(stride=3, max_order=2))
    assert [r.step for r in rep.steps if r.computed] == [0, 3, 6, 9, 12, 15, 18]
    rep, _, _ = run_cfg(ReuseConfig(interval=2))
    assert rep.computed == 10


def test_no_state_carries_between_runs():
    a = run_cfg(TCPadeConfig(theta=0.5))
    b = run_cfg(TCPadeConfig(theta=0.5))
    assert a[0].strip() == b[0].strip()
    assert all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize(
    "cfg,bound",
    [
        (TCPadeConfig(theta=0.0), 0.15),
        (TCPadeConfig(theta=0.0, mode="paper_literal"), 0.5),
        (TaylorSeerConfig(order=2), 0.06),
        (TraCacheConfig(max_order=3), 0.05),
        (ReuseConfig(interval=3), 0.12),
    ],
)
def test_prediction_errors_are_measured_and_bounded(cfg, bound):
    """On the smooth synthetic stack every method's relative prediction error is reported on each skipped
    step and stays below a bound measured for it (a wrong sign or a stale history would break it)."""
    rep, outs, _ = run_cfg(cfg, measure_error=True)
    errs = [r.error for r in rep.steps if not r.computed]
    assert len(errs) == 20 - rep.computed >= 10
    assert all(e is not None and 0.0 < e < bound for e in errs), errs
    assert all(r.error is None for r in rep.steps if r.computed)


def test_higher_order_predicts_better_on_a_smooth_stack():
    mean = lambda cfg: sum(e for e in (r.error for r in run_cfg(cfg, measure_error=True)[0].steps) if e is not None)
    assert (
        mean(TaylorSeerConfig(order=2, interval=3, form="newton"))
        < mean(TaylorSeerConfig(order=1, interval=3))
        < mean(TaylorSeerConfig(order=0, interval=3))
    )


def test_cache_memory_is_what_tcpade_needs_and_offload_works():
    per_stream = 2 * 8 * 16 * 4
    rep, _, _ = run_cfg(TCPadeConfig(theta=0.0, target="residual", reconstruct="current_input"), store_device="cpu")
    assert rep.cache_bytes == 2 * 3 * per_stream  # three residuals per stream, two streams
    assert rep.store_device == "cpu"
    rep, _, _ = run_cfg(TCPadeConfig(theta=0.0, mode="paper_literal"))
    assert rep.cache_bytes == 2 * 4 * per_stream  # + the previous block-stack input (Eq. 6, x_{t+1})
    rep, _, _ = run_cfg(TCPadeConfig(theta=0.0))
    # the default: three outputs for the predictor, three residuals for the TSI gate, per stream
    assert rep.cache_bytes == 2 * 6 * per_stream


def test_stream_forced_to_compute_when_it_has_no_history():
    run = CacheRun(ReuseConfig(interval=2))
    h = torch.ones(1, 2, 16)
    run.begin_step(0, 4, 1.0)
    run("cond", h, stack)
    run.begin_step(1, 4, 0.75)
    run("cond", h, stack)
    calls = []
    run("uncond", h, lambda x: calls.append(1) or stack(x))  # new stream on a skip step: must compute
    rep = run.end_run()
    assert calls == [1]
    # the stack ran in step 1, so the step is reported computed: a skip is never over-claimed
    assert rep.steps[1].computed is True and rep.steps[1].forced_streams == ["uncond"]
    assert rep.steps[1].reason == "forced (interval)"


def test_split_api_batched_streams_decide_once_and_record_once():
    run = CacheRun(TCPadeConfig(theta=0.0, schedule="interval"))
    a, b = torch.ones(1, 2, 16), -torch.ones(1, 2, 16)
    for i in range(6):
        run.begin_step(i, 6, 1 - i / 6)
        xs = [a * (1 - i / 6), b * (1 - i / 6)]
        pred = run.enter(["c", "u"], xs)
        if pred is None:
            ys = [stack(x) for x in xs]
            run.leave(["c", "u"], xs, ys)
            run.leave(["c", "u"], xs, ys)  # a second (extra) call of the same step records nothing
        else:
            assert len(pred) == 2 and all(torch.isfinite(p).all() for p in pred)
    rep = run.end_run()
    assert rep.strip() == "###.#."
    assert [len(st.history) for st in run.streams.values()] == [3, 3]


def test_active_flag_overrides_window():
    run = CacheRun(TCPadeConfig(theta=0.0, schedule="interval"))
    h = torch.ones(1, 2, 16)
    for i in range(8):
        run.begin_step(i, 8, 1 - i / 8, active=i < 4)
        run("c", h * (1 - i / 8), stack)
    rep = run.end_run()
    assert rep.strip() == "###.####"
    assert rep.steps[5].reason == "outside start/end"


def test_history_resets_on_shape_dtype_device_change():
    h = ResidualHistory(3)
    h.check_meta(torch.zeros(2, 3))
    h.push(0, 1.0, torch.zeros(2, 3))
    assert len(h) == 1 and h.nbytes() == 24
    assert h.check_meta(torch.zeros(2, 4)) is True and len(h) == 0
    h.push(0, 1.0, torch.zeros(2, 4))
    assert h.check_meta(torch.zeros(2, 4, dtype=torch.float16)) is True and len(h) == 0
    for i in range(5):
        h.push(i, 0.0, torch.full((2, 4), float(i)))
    assert [e.step for e in h.latest(3)] == [4, 3, 2]


def test_shape_change_between_steps_resets_and_computes():
    run = CacheRun(TCPadeConfig(theta=0.0))
    for i in range(8):
        run.begin_step(i, 8, 1 - i / 8)
        shape = (1, 4, 16) if i < 5 else (1, 6, 16)
        y = run("cond", torch.ones(shape) * (1 - i / 8), stack)
        assert y.shape == shape
    rep = run.end_run()
    assert rep.stream_resets == 1
    assert rep.steps[5].computed


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize(
    "method,params,needle",
    [
        ("tcpade", dict(theta=-0.1), "theta must be in [0.0, 1000.0]"),
        ("tcpade", dict(lam=0.0), "lam must be in (0.0, 100.0]"),
        ("tcpade", dict(alpha1=1.5), "alpha1 must be in [0.0, 1.0]"),
        ("tcpade", dict(interval=0), "interval must be in [1, 100]"),
        ("tcpade", dict(interval=2.5), "interval must be an integer"),
        ("tcpade", dict(mode="fast"), "mode must be one of 'default', 'paper_literal'"),
        ("tcpade", dict(late_boundary=0.8, early_boundary=0.7), "late_boundary must be <= early_boundary"),
        ("tcpade", dict(theta=float("nan")), "theta must be finite"),
        ("taylorseer", dict(order=7), "order must be in [0, 4]"),
        ("teacache", dict(threshold=-1), "threshold must be in [0.0, 10.0]"),
        ("teacache", dict(coefficients=()), "coefficients must be 1 to 10 finite numbers"),
        ("tracache", dict(max_order=0), "max_order must be in [1, 4]"),
        ("reuse", dict(interval=-2), "interval must be in [1, 100]"),
        ("tcpade", dict(thetaa=1.0), "unknown parameter(s) for tcpade: thetaa"),
        ("no_such_method", dict(), "method must be one of"),
    ],
)
def test_config_errors_name_the_parameter_and_range(method, params, needle):
    with pytest.raises(ConfigError) as e:
        make_config(method, **params)
    assert needle in str(e.value)


def test_paper_literal_mode_sets_every_switch():
    c = TCPadeConfig(mode="paper_literal")
    assert (c.tsi_scale, c.numerator, c.denominator, c.reconstruct) == (
        "literal",
        "literal",
        "elementwise",
        "previous_input",
    )
    d = TCPadeConfig(mode="paper_literal", numerator="recent")
    assert d.numerator == "recent" and d.tsi_scale == "literal"


def test_engine_never_imports_comfy():
    code = (
        "import sys, tcpade_core, tcpade_core.engine, tcpade_core.metrics, tcpade_core.predictors; "
        "bad = [m for m in sys.modules if m == 'comfy' or m.startswith('comfy.') or m.startswith('comfy_')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for path in (ROOT / "tcpade_core").rglob("*.py"):
        text = path.read_text()
        assert "import comfy" not in text and "from comfy" not in text, path


# ------------------------------------------------------------------ the default predictor: [1/1] in the step variable


def test_rational_extrapolation_is_exact_on_lines_and_on_saturating_rationals():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    line = lambda s: a + b * s
    steps = [8.0, 4.0, 1.0]  # newest first, uneven spacing
    pred, c = P.rational_extrapolate([line(s) for s in steps], steps, 11.0)
    assert c == pytest.approx(0.0, abs=1e-9) and torch.allclose(pred, line(11.0), atol=1e-9)
    # v(s) = a + b (s - 8) / (1 + 0.2 (s - 8)): a [1/1] approximant in s is exact on it, c = 0.2 recovered
    rat = lambda s: a + b * (s - 8.0) / (1 + 0.2 * (s - 8.0))
    pred, c = P.rational_extrapolate([rat(s) for s in steps], steps, 11.0)
    # the slope the approximant uses is the newest secant, so it is exact through the three points and at
    # the target only when written in that slope: check the three-point fit and the saturation
    assert c > 0.0
    assert float((pred - rat(11.0)).abs().max()) < float(
        (P.rational_extrapolate([line(s) for s in steps], steps, 11.0)[0] - rat(11.0)).abs().max()
    )


def test_rational_damped_never_amplifies_the_slope_and_keeps_off_the_pole():
    v = lambda s: torch.tensor([s * s], dtype=torch.float64)  # accelerating: a free c would be < 0
    steps = [6.0, 4.0, 2.0]
    free, c_free = P.rational_extrapolate([v(s) for s in steps], steps, 8.0)
    damped, c = P.rational_extrapolate([v(s) for s in steps], steps, 8.0, saturate_only=True)
    assert c_free < 0 and c == 0.0
    assert float(damped) == pytest.approx(36 + (36 - 16) / 2 * 2)  # the newest slope, linearly
    assert float(free) > float(damped)
    far, c = P.rational_extrapolate([v(s) for s in steps], steps, 100.0, pole_guard=0.1)
    assert 1.0 + c * 94.0 >= 0.1 - 1e-12 and torch.isfinite(far).all()


def test_default_predictor_is_sigma_damped_rational_on_the_output():
    cfg = TCPadeConfig(theta=0.0)
    run = CacheRun(cfg)
    vals = {0: 1.0, 1: 2.0, 4: 4.0}
    outs = []
    for i in range(6):
        run.begin_step(i, 6, 1 - i / 6)
        outs.append(run("c", torch.zeros(1, 1), lambda h, i=i: torch.full((1, 1), vals[i])))
    assert run.end_run().strip() == "##..#."
    hist = [torch.full((1, 1), vals[s], dtype=torch.float32) for s in (4, 1, 0)]
    ext, _ = P.rational_extrapolate(hist, [4, 1, 0], 5, saturate_only=True)
    s = P.sigma_stab(hist[0], hist[1], cfg.lam)
    assert float(outs[5]) == pytest.approx(float(hist[0] + s * (ext - hist[0])), rel=1e-6)


# ------------------------------------------------------------------ speed targets


@pytest.mark.parametrize("target", [1.5, 2.0, 2.5, 3.0])
@pytest.mark.parametrize("steps", [10, 20, 30])
@pytest.mark.parametrize(
    "cfg",
    [TCPadeConfig(), TaylorSeerConfig(), TraCacheConfig(), TeaCacheConfig(threshold=0.3), ReuseConfig()],
    ids=lambda c: c.method,
)
def test_speed_target_computes_exactly_round_steps_over_target(cfg, steps, target):
    run = CacheRun(cfg, target_speedup=target)
    for i in range(steps):
        run.begin_step(i, steps, 1 - i / steps)
        h = torch.ones(1, 2, 16) * (1 - i / steps) + 0.1 * i**2 / steps
        run("c", h, stack, lambda: h * (1 + (i % 3)))
    rep = run.end_run()
    assert rep.computed == int(steps / target + 0.5)
    assert rep.target_speedup == target and f"budget {rep.computed} of {steps}" in rep.target_note


@pytest.mark.parametrize(
    "cfg",
    [TCPadeConfig(), TCPadeConfig(mode="paper_literal"), TaylorSeerConfig(), TraCacheConfig(), ReuseConfig()],
    ids=lambda c: c.describe()[:40],
)
def test_single_value_readiness_a_speed_target_skips_step_one(cfg):
    """Every predictor predicts from one computed value: on a steady trajectory a 2x target computes the even
    grid from step 0 (no compute forced by a predictor that is not ready); the authors' code (official mode)
    keeps its own readiness and is not in this list."""
    run = CacheRun(cfg, target_speedup=2.0)
    for i in range(10):
        run.begin_step(i, 10, 1 - i / 10)
        run("c", torch.ones(1, 2, 16) * (1 - i / 10), stack, lambda: None)
    rep = run.end_run()
    assert rep.strip() == "#.#.#.#.#." and not any(r.reason.startswith("forced") for r in rep.steps)


def test_speed_target_spacing_and_an_early_compute_by_the_signal():
    # a residual trajectory that keeps turning (0.6 rad a step): the TSI signal moves computes earlier,
    # and the budget still comes out exact
    def turning(i):
        return torch.tensor([[[math.cos(0.6 * i), math.sin(0.6 * i), 0.0, 0.0]]])

    run = CacheRun(TCPadeConfig(theta=1.0, interval=100), target_speedup=3.0)
    plain = CacheRun(ReuseConfig(), target_speedup=3.0)
    for r in (run, plain):
        for i in range(20):
            r.begin_step(i, 20, 1 - i / 20)
            r("c", torch.zeros(1, 1, 4), lambda h, i=i: turning(i))
    rep, prep = run.end_run(), plain.end_run()
    assert prep.strip() == "#..#..#..#..#..#..#." and prep.computed == 7  # even spacing
    assert rep.computed == 7 and "moved" not in prep.target_note
    early = [r for r in rep.steps if r.reason.endswith("(early)")]
    assert early and all(r.computed and r.gate < 1.0 for r in early)
    assert "TSI stability signal moved" in rep.target_note and rep.strip() != prep.strip()


@pytest.mark.parametrize("bad", [0.5, -1.0, 101.0, float("nan"), True])
def test_speed_target_out_of_range_names_the_input(bad):
    with pytest.raises(ConfigError, match=r"target_speedup must be 0 \(off\) or a number in \[1.0, 100.0\]"):
        CacheRun(ReuseConfig(), target_speedup=bad)


@pytest.mark.parametrize(
    "cfg",
    [TaylorSeerConfig(interval=4, order=2, first_enhance=3, form="eq10"), TCPadeConfig(theta=0.0)],
    ids=["taylorseer-eq10", "tcpade"],
)
def test_16bit_stream_computes_in_float32_and_stores_in_its_dtype(cfg):
    """A bfloat16 stream: every prediction is the float32 formula on the stored values, cast back once (what the
    same run gives on float32 copies of the same numbers), and the history holds bfloat16 (half the bytes)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, 64, generator=g)
    ys = [(base * (1 + 0.3 * i + 0.05 * i * i) + 3.0).to(torch.bfloat16) for i in range(12)]
    hs = [(base * (0.5 - 0.02 * i)).to(torch.bfloat16) for i in range(12)]

    def go(dtype):
        run, outs = CacheRun(cfg), []
        for i in range(12):
            run.begin_step(i, 12, 1 - i / 12)
            outs.append(run("c", hs[i].to(dtype), lambda h, i=i: ys[i].to(dtype)))
        return run, run.end_run(), outs

    run16, rep16, out16 = go(torch.bfloat16)
    _, rep32, out32 = go(torch.float32)
    assert rep16.strip() == rep32.strip() and rep16.strip().count(".") >= 4
    assert all(o.dtype == torch.bfloat16 for o in out16)
    assert all(torch.equal(a, b.to(torch.bfloat16)) for a, b in zip(out16, out32))
    assert rep16.cache_bytes * 2 == rep32.cache_bytes > 0
    st = run16.streams["c"]
    assert {e.value.dtype for e in st.history._entries} == {torch.bfloat16}
    if isinstance(cfg, TaylorSeerConfig):
        # the same formula in bfloat16 arithmetic rounds differently: what storing-and-computing in 16 bits would give
        i = rep16.skipped_steps[-1]
        es = [e for e in rep16.steps if e.computed and e.step < i][-3:][::-1]
        vals = [ys[e.step] for e in es]
        in_bf16 = P.taylor_eq10(vals, [e.step for e in es], i, 2)
        assert in_bf16.dtype == torch.bfloat16 and not torch.equal(in_bf16, out16[i])


def test_history_keeps_float16_finite_and_computes_from_float32():
    h = ResidualHistory(2)
    h.check_meta(torch.zeros(3, dtype=torch.float16))
    h.push(0, 1.0, torch.tensor([1e6, -1e6, 0.1]))  # a float32 value beyond float16's range
    (e,) = h.latest(1)
    assert e.value.dtype == torch.float32 and h.nbytes() == 3 * 2
    assert e.value.tolist()[:2] == [65504.0, -65504.0]
