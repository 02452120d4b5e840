"""The schedule planner (tcpade_core.planner) and calibrated_run: exact optimum, exact budget, determinism, and
predictors that are right on uneven spacing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tcpade_core import ConfigError, make_config
from tcpade_core import predictors as P
from tcpade_core.calibrate import Trajectory, calibrated_run
from tcpade_core.planner import errors, plan, plan_trajectory, segment_costs


def _traj(values, t=None) -> Trajectory:
    tr = Trajectory()
    n = len(values)
    for i, v in enumerate(values):
        tr.t.append(t[i] if t is not None else 1.0 - i / n)
        tr.inputs.append(torch.zeros_like(v))
        tr.outputs.append(v)
        tr.modulated.append(None)
    return tr


def _kinked(n=20, kink=10):
    """Piecewise linear in the step index, one kink: up to ``kink``, then down twice as fast."""
    d = torch.linspace(-1, 1, 24).reshape(1, 4, 6)
    return [d * (j if j <= kink else kink - 2 * (j - kink)) + 3.0 for j in range(n)]


def test_a_kink_is_computed_and_the_linear_parts_cost_nothing(monkeypatch):
    """On the open-loop objective: the plan computes at the kink and O=1 is exact on both lines. The closed-loop
    term (planner.CLOSED_LOOP, on by default) still computes at the kink, and trades some open-loop error for
    shorter reaches of each line."""
    from tcpade_core import planner

    traj = _traj(_kinked())
    assert any(10 <= s <= 11 for s in plan_trajectory(traj, 4, order=1)[0])
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin over even spacing
    steps, err = plan_trajectory(traj, 4, order=1)
    assert len(steps) == 4 and steps[0] == 0 and err == pytest.approx(0.0, abs=1e-12)
    assert any(10 <= s <= 11 for s in steps)  # a compute at (or just after) the kink
    run = calibrated_run("taylorseer", traj, 5.0, order=1)
    run.measure_error = True
    for i in range(20):
        run.begin_step(i, 20, traj.t[i])
        run("c", traj.inputs[i], lambda h, i=i: traj.outputs[i])
    rep = run.end_run()
    assert rep.computed == 4 and [r.step for r in rep.steps if r.computed] == steps
    assert max(r.error for r in rep.steps if r.error is not None) < 1e-6  # O=1 is exact on each line


def _brute(Y, dt, k, order, warm, objective):
    n, cost = len(Y), segment_costs(Y, dt, order, objective)
    best = (np.inf, None)
    for rest in itertools.combinations(range(warm, n), k - warm):
        s = sorted(set(range(warm)) | set(rest))
        total = sum(cost[s[i - 1] if i else b, b, s[i + 1] if i + 1 < len(s) else n] for i, b in enumerate(s))
        if total < best[0] - 1e-12:
            best = (total, s)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_plan_is_the_exact_minimum_and_deterministic(seed, monkeypatch):
    from tcpade_core import planner

    monkeypatch.setattr(planner, "SEG_POWER", 1.0)  # the plain sum (the power: the test below)
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)  # open loop (the closed-loop term: its own test)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin over even spacing
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 9))
    Y, dt = rng.normal(size=(n, 5)).cumsum(0), rng.random(n)
    for order, warm in ((0, 1), (1, 1), (1, 2)):
        for objective in ("coherent", "independent"):
            k = int(rng.integers(warm, n + 1))
            steps, value = plan(Y, dt, k, order, warm, objective)
            best, best_steps = _brute(Y, dt, k, order, warm, objective)
            assert len(steps) == k and steps[:warm] == list(range(warm)) and value == pytest.approx(best, abs=1e-9)
            assert plan(Y, dt, k, order, warm, objective) == (steps, value)


def _quadratic_cost_by_hand(Y, dt, s, power=1.0):
    """The coherent cost of computing exactly ``s`` with TaylorSeer's exact-on-uneven form at order 2 (the
    predictor's own :func:`tcpade_core.predictors.newton` on the newest three computed values), summed by hand
    (each segment's cost to ``power``)."""
    n, scale, total = len(Y), float((Y**2).sum(axis=1).mean()), 0.0
    T = torch.tensor(Y)
    for i, c in enumerate(s):
        hist = list(reversed(s[max(0, i - 2) : i + 1]))  # newest first, as the history gives them
        end = s[i + 1] if i + 1 < len(s) else n
        acc = np.zeros(Y.shape[1])
        for j in range(c + 1, end):
            pred = P.newton([T[h] for h in hist], [float(h) for h in hist], float(j), 2).double().numpy()
            acc += dt[j] * (pred - Y[j])
        total += (float((acc**2).sum()) / scale) ** power
    return total


@pytest.mark.parametrize("seed", range(4))
def test_an_order_2_plan_is_the_exact_minimum_of_its_predictor_s_error(seed, monkeypatch):
    """Order 2 is planned over the newest three computed steps: the plan is the minimum, over every schedule, of
    the error of the predictor's own quadratic (a line with two values, reuse with one)."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    monkeypatch.setattr(planner, "SEG_POWER", 1.0)
    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)  # open loop: the predictor's own error
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 9))
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    for warm in (1, 2, 3):
        k = int(rng.integers(warm, n + 1))
        steps, value = plan(Y, dt, k, 2, warm)
        costs = {
            tuple(s): _quadratic_cost_by_hand(Y, dt, s)
            for rest in itertools.combinations(range(warm, n), k - warm)
            for s in [sorted(set(range(warm)) | set(rest))]
        }
        best = min(costs.values())
        assert len(steps) == k and steps[:warm] == list(range(warm))
        assert value == pytest.approx(best, rel=1e-9, abs=1e-12) and costs[tuple(steps)] == pytest.approx(
            best, rel=1e-9, abs=1e-12
        )
        assert plan(Y, dt, k, 2, warm) == (steps, value)


def test_order_2_is_exact_on_a_parabola_and_computes_after_its_kink(monkeypatch):
    """Two parabolas meeting at step 10: an order-2 plan of 6 computes costs nothing (three on each piece), and an
    order-1 plan of the same budget cannot (open loop: the closed-loop terms trade some of that for robustness)."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)
    d = np.linspace(-1, 1, 6)
    Y = np.stack([d * (0.05 * j * j if j <= 10 else 5.0 - 0.1 * (j - 10) ** 2) + 2.0 for j in range(20)])
    dt = np.ones(20)
    steps, err = plan(Y, dt, 6, order=2)
    assert err == pytest.approx(0.0, abs=1e-12) and len(steps) == 6
    assert sum(s > 10 for s in steps) == 3 and steps[:3] == [0, 1, 2]
    assert plan(Y, dt, 6, order=1)[1] > 1e-3


def test_the_coherent_objective_adds_a_gap_s_errors_as_vectors():
    """Three skipped steps, each off by +1 from a line: coherent cost (3 dt)^2 / mean|y|^2, independent 3 dt^2."""
    Y = np.array([[0.0], [1.0], [3.0], [4.0], [5.0], [6.0]])  # the line through steps 0, 1 overshoots 2.. by 1
    dt = np.full(6, 0.5)
    scale = float((Y**2).mean())
    coh, ind = segment_costs(Y, dt, 1, "coherent"), segment_costs(Y, dt, 1, "independent")
    assert coh[0, 1, 5] == pytest.approx((3 * 0.5) ** 2 / scale)
    e = errors(Y, 1)
    assert ind[0, 1, 5] == pytest.approx(0.25 * (e[0, 1, 2] + e[0, 1, 3] + e[0, 1, 4]))


@pytest.mark.parametrize("method", ["taylorseer", "tcpade", "teacache", "tracache", "reuse"])
@pytest.mark.parametrize("target", [1.25, 2.0, 3.0])
def test_a_planned_run_computes_exactly_its_budget(method, target):
    g = torch.Generator().manual_seed(1)
    traj = _traj([torch.randn(1, 8, 4, generator=g).cumsum(1) * (1 + j / 10) for j in range(20)])
    run = calibrated_run(method, traj, target)
    for i in range(20):
        run.begin_step(i, 20, traj.t[i])
        run("c", traj.inputs[i], lambda h, i=i: traj.outputs[i])
    rep = run.end_run()
    assert rep.computed == max(1, round(20 / target)) and "planned schedule" in rep.target_note
    assert any(n.startswith("planned from calibration") for n in rep.notes)


def test_planning_fifty_steps_is_fast():
    import time

    g = torch.Generator().manual_seed(0)
    traj = _traj([torch.randn(1, 256, 64, generator=g) for _ in range(50)])
    t0 = time.perf_counter()
    steps, _ = plan_trajectory(traj, 17, order=1, warm=2)
    assert len(steps) == 17 and time.perf_counter() - t0 < 5.0  # about 0.3 s here; the bound leaves room
    t0 = time.perf_counter()
    steps, _ = plan_trajectory(traj, 17, order=2, warm=1)
    assert len(steps) == 17 and time.perf_counter() - t0 < 5.0  # about 0.6 s here


def test_flow_weights_are_the_kept_step_sizes():
    """flow_keep_steps: each step's integral of s / sqrt(s^2 (1-t)^2 + t^2) (checked against a midpoint sum); the
    pack's flow weights stay the plain step sizes (S_FLOW None) and follow S_FLOW where it is set."""
    from tcpade_core import planner

    t = [1.0, 0.8, 0.55, 0.3, 0.1]
    for s in (0.5, 3.0):
        w = planner.flow_keep_steps(t, s)
        edges = t + [0.0]
        for j in range(len(t)):
            x = np.linspace(edges[j + 1], edges[j], 20001)
            mid = (x[1:] + x[:-1]) / 2
            ref = float((s / np.sqrt(s * s * (1 - mid) ** 2 + mid**2)).sum() * (x[1] - x[0]))
            assert w[j] == pytest.approx(ref, rel=1e-6)
    assert planner.S_FLOW is None  # not adopted: it lost held out (docs/flow_weights.txt)
    assert list(planner.step_weights(t)) == pytest.approx([0.2, 0.25, 0.25, 0.2, 0.1])
    old, planner.S_FLOW = planner.S_FLOW, 3.0
    try:
        assert list(planner.step_weights(t)) == pytest.approx(list(planner.flow_keep_steps(t, 3.0)))
    finally:
        planner.S_FLOW = old


def test_a_plan_is_a_checked_setting():
    assert make_config("reuse", plan=[0, 2, 5]).plan == (0, 2, 5)
    for bad in ([1, 2], [0, 0, 3], [0, 3, 2], "abc"):
        with pytest.raises(ConfigError, match="plan"):
            make_config("reuse", plan=bad)


def test_predictors_are_exact_on_uneven_spacing():
    steps = [9.0, 5.0, 4.0]  # newest first, uneven gaps
    quad = lambda s: torch.tensor([2.0 * s * s - 3.0 * s + 1.0, -s * s])
    vals = [quad(s) for s in steps]
    assert torch.allclose(P.newton(vals, steps, 12.0, 2), quad(12.0), atol=1e-4)
    assert torch.allclose(P.lagrange(vals, steps, 12.0), quad(12.0), atol=1e-4)
    lin = lambda s: torch.tensor([0.5 * s - 2.0, 3.0 - s])
    # the official recursion is exact to order 1 on uneven spacing (order 2 is not: the planner uses newton)
    f = P.taylor_factors_update(None, lin(4.0), 1.0, 1)
    f = P.taylor_factors_update(f, lin(9.0), 5.0, 1)
    assert torch.allclose(P.taylor_factors_eval(f, 3.0), lin(12.0), atol=1e-5)
    assert torch.allclose(P.rational_extrapolate([lin(s) for s in steps], steps, 12.0)[0], lin(12.0), atol=1e-4)


def test_step_weights_flow_are_step_sizes_and_eps_are_asinh_steps():
    from tcpade_core import planner as PL

    t = [1.0, 0.6, 0.25]
    assert PL.step_weights(t).tolist() == pytest.approx([0.4, 0.35, 0.25])
    assert PL.step_weights(t, [9.0, 2.0, 0.5, 0.0], "flow").tolist() == pytest.approx([0.4, 0.35, 0.25])
    kept = PL.flow_keep_steps(t, 3.0).tolist()
    assert kept[0] / 0.4 > 2 * kept[2] / 0.25  # s = 3: per unit of t, the noisy start weighs over twice the end
    sig = [9.0, 2.0, 0.5, 0.0]
    u = [np.arcsinh(s / PL.S_DATA) for s in sig]
    assert PL.step_weights(t, sig, "eps").tolist() == pytest.approx([u[0] - u[1], u[1] - u[2], u[2] - u[3]])
    with pytest.raises(ValueError, match="steps \\+ 1 = 4"):
        PL.step_weights(t, sig[:3], "eps")
    with pytest.raises(ValueError, match="'flow' or 'eps'"):
        PL.step_weights(t, sig, "v")


def test_an_eps_trajectory_is_planned_with_its_sampler_weights():
    """The same outputs planned with DDIM's noise levels: the weights differ from step sizes in t, and so may the
    plan; what is asserted is that the trajectory's sigmas are read (the planned value changes)."""
    traj = _traj(_kinked(12, 5), t=[1.0 - i / 12 for i in range(12)])
    _, err_t = plan_trajectory(traj, 4, order=0)
    traj.sigmas, traj.prediction = [2.0 ** (6 - i) for i in range(12)] + [0.0], "eps"
    _, err_eps = plan_trajectory(traj, 4, order=0)
    assert err_eps != pytest.approx(err_t)


@pytest.mark.parametrize("seed", range(4))
def test_a_segment_power_plans_the_exact_minimum_of_its_aggregate_and_reports_the_plain_error(seed, monkeypatch):
    """planner.SEG_POWER = p: the plan minimises the sum over segments of each segment's cost to the p-th power
    (orders 0, 1 and 2, against every schedule), and reports that schedule's plain error (the sum, p = 1)."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    rng = np.random.default_rng(10 + seed)
    n = int(rng.integers(6, 9))
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)  # open loop (the closed-loop term: its own test)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin over even spacing
    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)  # and order 2 open loop
    monkeypatch.setattr(planner, "SEG_POWER", 2.0)
    for order, warm in ((0, 1), (1, 1), (1, 2), (2, 1), (2, 3)):
        k = int(rng.integers(warm + 1, n))
        steps, value = plan(Y, dt, k, order, warm)
        scheds = [sorted(set(range(warm)) | set(r)) for r in itertools.combinations(range(warm, n), k - warm)]
        if order == 2:
            agg = {tuple(s): _quadratic_cost_by_hand(Y, dt, s, 2.0) for s in scheds}
            plain = _quadratic_cost_by_hand(Y, dt, steps)
        else:
            cost = segment_costs(Y, dt, order)
            seg = lambda s: [cost[s[i - 1] if i else b, b, s[i + 1] if i + 1 < len(s) else n] for i, b in enumerate(s)]
            agg = {tuple(s): sum(c**2 for c in seg(s)) for s in scheds}
            plain = sum(seg(steps))
        assert len(steps) == k and agg[tuple(steps)] == pytest.approx(min(agg.values()), rel=1e-9, abs=1e-15)
        assert value == pytest.approx(plain, rel=1e-9, abs=1e-12)
        monkeypatch.setattr(planner, "SEG_POWER", 1.0)
        sum_steps, sum_value = plan(Y, dt, k, order, warm)
        assert sum_value <= value + 1e-12 and agg[tuple(sum_steps)] >= agg[tuple(steps)] - 1e-15
        monkeypatch.setattr(planner, "SEG_POWER", 2.0)


def test_a_tail_limit_keeps_the_last_compute_near_the_end(monkeypatch):
    """planner.TAIL = T (a study, off by default): no plan leaves more than T steps predicted after its last
    compute, at every order and budget, the budget stays exact; a budget too small to reach the end plans as
    without the limit."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # the study predates the margin over even spacing
    rng = np.random.default_rng(3)
    n = 12
    Y, dt = rng.normal(size=(n, 8)).cumsum(0), rng.random(n) + 0.1
    free = {order: planner.plan_table(Y, dt, order, 1) for order in (0, 1, 2)}
    assert any(v[0][-1] < n - 2 for t in free.values() for k, v in t.items() if k >= 2)  # the limit binds somewhere
    for tail in (0, 1, 2):
        monkeypatch.setattr(planner, "TAIL", tail)
        for order in (0, 1, 2):
            table = planner.plan_table(Y, dt, order, 1)
            for k, (steps, _) in table.items():
                assert len(steps) == k and steps[0] == 0
                assert steps[-1] >= n - 1 - tail or k == 1
                assert (steps, table[k][1]) == tuple(planner.plan(Y, dt, k, order, 1))
        assert planner.plan(Y, dt, 3, 1, 3)[0] == [0, 1, 2]  # warm-up only: nothing to move


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_schedule_error_is_what_a_plan_reports_for_its_own_schedule(power, monkeypatch):
    """planner.schedule_error (any schedule, orders 0-2) gives a plan's own schedule the error the plan reports,
    at either segment power; a schedule the plain sum prefers is never above the plan's at power 1."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "SEG_POWER", power)
    rng = np.random.default_rng(7)
    Y, dt = rng.normal(size=(14, 6)).cumsum(0), rng.random(14) + 0.1
    for order, warm in ((0, 1), (1, 1), (1, 3), (2, 1)):
        for k in (3, 6, 9):
            steps, value = plan(Y, dt, k, order, warm)
            assert planner.schedule_error(Y, dt, steps, order) == pytest.approx(value, rel=1e-12, abs=1e-15)
            other = sorted(set(range(warm)) | set(range(warm, 14, 2)))[:k]
            if power == 1.0 and len(other) == k:
                assert planner.schedule_error(Y, dt, other, order) >= value - 1e-12


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_nested_plans_only_add_the_best_compute_above_their_anchor(power, monkeypatch):
    """planner.NEST_TARGET = T (a study, off by default): up to T's budget every plan is the free optimum; above it
    each plan is the plan of one compute fewer and the one step that lowers the (powered) objective most, the
    earliest of equals, checked against every single addition; the table and plan() agree; the error reported is
    the plain one."""
    from tcpade_core import planner
    from tcpade_core.config import budget

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)  # open loop (the closed-loop term: its own test)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin over even spacing
    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)  # and order 2 open loop
    monkeypatch.setattr(planner, "SEG_POWER", power)
    rng = np.random.default_rng(20)
    n = 12
    Y, dt = rng.normal(size=(n, 6)).cumsum(0), rng.random(n) + 0.1
    free = {(o, w): planner.plan_table(Y, dt, o, w) for o in (0, 1, 2) for w in (1, 2)}
    monkeypatch.setattr(planner, "NEST_TARGET", 2.0)
    anchor = budget(n, 2.0)
    assert planner.nest_anchor(n, 1) == anchor == 6 and planner.nest_anchor(n, 8) == 8
    moved = 0
    for (order, warm), loose in free.items():
        table = planner.plan_table(Y, dt, order, warm)
        assert sorted(table) == sorted(loose)
        if order == 2:
            cost, term = planner.quadratic_costs(Y, dt), planner._term2
            top = max(float(x.max()) for row in cost for x in row if x is not None)
            powered = [[None if x is None else planner._powered(x, top) for x in row] for row in cost]
        else:
            cost, term = segment_costs(Y, dt, order), planner._term1
            powered = planner._powered(cost, float(cost.max()))
        for k, (steps, err) in table.items():
            assert (steps, err) == tuple(planner.plan(Y, dt, k, order, warm))
            assert err == pytest.approx(planner.schedule_error(Y, dt, steps, order), rel=1e-12)
            if k <= anchor:
                assert steps == loose[k][0]
                continue
            before = table[k - 1][0]
            (added,) = set(steps) - set(before)
            totals = {
                c: sum(term(powered, sorted(before + [c]), i) for i in range(k)) for c in range(n) if c not in before
            }
            best = min(totals.values())
            assert totals[added] == pytest.approx(best, rel=1e-12, abs=1e-15)
            assert all(totals[c] > best * (1 + 1e-12) + 1e-15 for c in totals if c < added)
            moved += steps != loose[k][0]
    assert moved  # nesting changes some plan


def test_a_closed_loop_term_adds_each_base_value_s_reach_through_the_prediction(monkeypatch):
    """planner.CLOSED_LOOP = lambda (0.1, measured): the planner adds to a coherent segment cost lambda times the
    mean one-step change (relative to the mean squared output) times (sum dt (1 + r))^2 + (sum dt r)^2 over the gap,
    r = (j - b) / (b - a) the line's reach (0 for a reuse and for a lone b); zero at lambda 0; it changes plans, the
    error a plan reports stays the open-loop one, order 0 (reuse) is planned without it, order 2 with its own
    (CLOSED_LOOP2), untouched by this one, and the stored plan key of order 1 names it."""
    from tcpade_core import planner
    from tcpade_core.calibrate import plan_key

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    rng = np.random.default_rng(5)
    n = 10
    Y, dt = rng.normal(size=(n, 5)).cumsum(0), rng.random(n) + 0.1
    assert planner.CLOSED_LOOP == 0.1 and plan_key(1, 1) == "1/1/p2/cl0.1/ct0.1/mg1.5"
    assert plan_key(0, 1) == "0/1/p2" and plan_key(2, 1) == "2/1/p2/cl0.1"  # order 2: its own (CLOSED_LOOP2)
    scale = (Y**2).sum(axis=1).mean()
    noise = 0.5 * (np.diff(Y, axis=0) ** 2).sum(axis=1).mean() / scale
    for order in (0, 1):
        extra = planner.closed_loop_costs(Y, dt, order, 0.5)
        for a, b, c in ((2, 5, 9), (3, 3, 7), (0, 1, 10), (4, 6, 8)):
            js = np.arange(b + 1, c)
            r = (js - b) / (b - a) if order and a < b else np.zeros(len(js))
            want = noise * ((dt[js] * (1 + r)).sum() ** 2 + (dt[js] * r).sum() ** 2)
            assert extra[a, b, c] == pytest.approx(want, rel=1e-9)
        assert np.all(extra[:, :, :2] == 0) and np.all(planner.closed_loop_costs(Y, dt, order, 0.0) == 0)
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.5)
    table = planner.plan_table(Y, dt, 1, 1)
    two, zero = planner.plan_table(Y, dt, 2, 1), planner.plan_table(Y, dt, 0, 1)
    for k, (steps, err) in table.items():
        assert err == pytest.approx(planner.schedule_error(Y, dt, steps, 1), rel=1e-12)
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin over even spacing
    assert plan_key(1, 1) == "1/1/p2"
    assert any(table[k][0] != v[0] for k, v in planner.plan_table(Y, dt, 1, 1).items())
    assert planner.plan_table(Y, dt, 2, 1) == two and planner.plan_table(Y, dt, 0, 1) == zero


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_with_the_closed_loop_term_the_plan_is_the_exact_minimum_of_its_objective(power, monkeypatch):
    """At the default lambda, against every schedule: an order-1 plan minimises the sum over its gaps of (open-loop
    cost + closed-loop term)^p, an order-0 plan the open-loop cost^p, and each reports its open-loop error."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "SEG_POWER", power)
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # the exact minimum, before the margin over even spacing
    rng = np.random.default_rng(8)
    n = 8
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    for order, warm in ((0, 1), (1, 1), (1, 2)):
        plain = segment_costs(Y, dt, order)
        full = plain + planner.closed_loop_costs(Y, dt, order) if order == 1 else plain
        for k in range(warm + 1, n):
            steps, value = plan(Y, dt, k, order, warm)

            def agg(s, c=full):
                return sum(
                    c[s[i - 1] if i else b, b, s[i + 1] if i + 1 < len(s) else n] ** power for i, b in enumerate(s)
                )

            scheds = [sorted(set(range(warm)) | set(r)) for r in itertools.combinations(range(warm, n), k - warm)]
            assert agg(steps) == pytest.approx(min(agg(s) for s in scheds), rel=1e-9, abs=1e-15)
            assert value == pytest.approx(agg(steps, plain) if power == 1.0 else planner.schedule_cost(plain, steps))


def test_a_contraction_plans_the_exact_minimum_of_its_objective(monkeypatch):
    """planner.CONTRACT = rho: for an order-1 predictor each computed step j multiplies the powered cost of every
    gap before it by (1 - rho w_j / sum_(i >= j) w_i)^(2p) (for a flow model's step sizes: 1 - rho h_j / t_j); the
    DP minimises that exactly, against every schedule; the reported error stays the plain open-loop one; orders 0
    and 2 plan without it; at rho 0 the factors are None."""
    from tcpade_core import planner
    from tcpade_core.calibrate import plan_key

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    assert planner.CONTRACT == 0.1 and plan_key(1, 3) == "1/3/p2/cl0.1/ct0.1/mg1.5" and plan_key(2, 1) == "2/1/p2/cl0.1"
    t = np.array([1.0, 0.8, 0.5, 0.25, 0.1])
    assert planner.contraction(planner.step_sizes(t), 0.5) == pytest.approx(
        (1 - 0.5 * np.array([0.2 / 1.0, 0.3 / 0.8, 0.25 / 0.5, 0.15 / 0.25, 1.0])) ** 4
    )
    rng = np.random.default_rng(11)
    n = 8
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    monkeypatch.setattr(planner, "CONTRACT", 0.0)
    flat = {order: planner.plan_table(Y, dt, order, 1) for order in (0, 2)}
    monkeypatch.setattr(planner, "CONTRACT", 0.5)
    assert [planner.contraction_rho(o) for o in (0, 1, 2)] == [0.0, 0.5, 0.0]
    assert planner.contraction_rho(1, "independent") == 0.0
    assert {order: planner.plan_table(Y, dt, order, 1) for order in (0, 2)} == flat
    keep = planner.contraction(dt, 0.5)
    for warm in (1, 2):
        plain, full = planner.gap_costs(Y, dt, 1, "coherent", planner.CLOSED_LOOP)
        cost, term = (full / full.max()) ** 2, planner._term1
        for k in range(warm + 1, n):
            steps, value = plan(Y, dt, k, 1, warm)

            def agg(s):
                return sum(term(cost, s, i) * np.prod(keep[s[i + 1 :]]) for i in range(len(s)))

            scheds = [sorted(set(range(warm)) | set(r)) for r in itertools.combinations(range(warm, n), k - warm)]
            assert agg(steps) == pytest.approx(min(agg(s) for s in scheds), rel=1e-9, abs=1e-15)
            assert value == pytest.approx(planner._total(term, plain, steps))
    monkeypatch.setattr(planner, "CONTRACT", 0.0)
    assert planner.contraction(dt, 0.0) is None
    today = plan(Y, dt, 4, 1)[0]
    monkeypatch.setattr(planner, "CONTRACT", 0.9)
    late = plan(Y, dt, 4, 1)[0]
    assert today[-1] < n - 1 and late[-1] == n - 1  # a strong contraction computes the last step


def test_proxy_rank_variations_keep_the_budget_and_the_warm_up():
    """The study's candidate schedules (research.proxy_rank.variations): each has the bases' number of computes,
    sorted, distinct, within the run, the warm-up kept, none equal to a base or to another; the same seed gives the
    same list, another seed another."""
    from tcpade_core.research.proxy_rank import variations

    bases = [(0, 1, 4, 7, 10, 13, 16), (0, 1, 3, 6, 10, 14, 18)]
    out = variations(bases, 20, 2, 15, seed=3)
    assert len(out) == 15 and len(set(out)) == 15
    for st in out:
        assert len(st) == 7 and st[:2] == (0, 1) and list(st) == sorted(set(st)) and st[-1] < 20
        assert st not in bases
    assert out == variations(bases, 20, 2, 15, seed=3)
    assert out != variations(bases, 20, 2, 15, seed=4)
    assert variations([(0, 1)], 2, 2, 5) == []  # nothing after the warm-up to move


def test_proxy_rank_spearman_is_exact():
    """Lower predicted error ranks higher: a proxy that orders the PSNRs exactly scores +1, the reverse -1, a
    constant 0; ties take their mean rank."""
    from tcpade_core.research.proxy_rank import spearman

    psnr = [30.0, 20.0, 25.0, 35.0]
    assert spearman([3.0, 9.0, 5.0, 1.0], psnr) == pytest.approx(1.0)
    assert spearman([-3.0, -9.0, -5.0, -1.0], psnr) == pytest.approx(-1.0)
    assert spearman([1.0, 1.0, 1.0, 1.0], psnr) == 0.0
    # predicted ranks (mean for the tie) 2.5, 0, 2.5, 1 against PSNR ranks 2, 0, 1, 3
    a, b = np.array([2.5, 0.0, 2.5, 1.0]), np.array([2.0, 0.0, 1.0, 3.0])
    assert spearman([1.0, 9.0, 1.0, 5.0], psnr) == pytest.approx(float(np.corrcoef(a, b)[0, 1]))


def test_proxy_rank_proxies_are_the_planners_objectives():
    """The study's "planner" proxy is what planner.plan minimises (the plan scores lowest among every schedule; the
    proxy before the contraction scores it otherwise) and "open loop (reported)" is planner.schedule_error, the error
    a node shows."""
    from tcpade_core import planner
    from tcpade_core.research.proxy_rank import PROXIES, variations

    rng = np.random.default_rng(5)
    Y = np.cumsum(rng.normal(size=(16, 8)), axis=0) + 0.2 * np.arange(16)[:, None] ** 2
    w = planner.step_sizes(1.0 - np.arange(16) / 16)
    steps, _ = planner.plan(Y, w, 6, 1, 1)
    obj = PROXIES["planner (p2, cl 0.1, ct 0.1)"](Y, w, 16, 6)
    every = [[0, *r] for r in itertools.combinations(range(1, 16), 5)]
    assert obj(steps) == pytest.approx(min(obj(s) for s in every), rel=1e-12)
    before = PROXIES["planner (p2, cl 0.1)"](Y, w, 16, 6)
    assert before(steps) > min(before(s) for s in every)  # the contraction moves this plan
    reported = PROXIES["open loop (reported)"](Y, w, 16, 6)
    for v in [tuple(steps)] + variations([tuple(steps)], 16, 1, 5):
        assert reported(list(v)) == pytest.approx(planner.schedule_error(Y, w, v, 1))


def test_per_sample_plans_are_exact_and_one_sample_is_the_default(monkeypatch):
    """planner.PER_SAMPLE (a study knob): "max" and "sum" plan the exact minimum, over every schedule, of the gaps'
    per-sample costs combined (the largest, or the sum, each sample relative to its own largest, to the segment
    power); with one sample both are the default plan; with the knob off a per-sample array plans as the batch."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # the study predates the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin
    rng = np.random.default_rng(23)
    n, k = 10, 4
    scales = np.array([1.0, 10.0, 100.0])[None, :, None]  # samples of unlike sizes: the three modes plan apart
    Y = np.cumsum(rng.normal(size=(n, 3, 6)), axis=0) * scales + 0.3 * np.arange(n)[:, None, None] ** 2
    w = planner.step_sizes(1.0 - np.arange(n) / n)
    assert planner.PER_SAMPLE is None
    assert planner.plan(Y, w, k) == planner.plan(Y.reshape(n, -1), w, k)
    each = []
    for i in range(3):
        f = planner.segment_costs(Y[:, i], w, 1) + planner.closed_loop_costs(Y[:, i], w, 1)
        each.append(f / f.max())
    for mode, cost in (
        ("max", np.max(np.stack(each), axis=0) ** planner.SEG_POWER),
        ("sum", sum(e**planner.SEG_POWER for e in each)),
    ):
        monkeypatch.setattr(planner, "PER_SAMPLE", mode)
        steps, err = planner.plan(Y, w, k)
        best = min(
            ([0, *rest] for rest in itertools.combinations(range(1, n), k - 1)),
            key=lambda s: planner._total(planner._term1, cost, s),
        )
        assert planner._total(planner._term1, cost, steps) == pytest.approx(planner._total(planner._term1, cost, best))
        assert err == pytest.approx(planner.schedule_error(Y.reshape(n, -1), w, steps, 1))  # the batch's error
        assert steps == {"max": [0, 3, 6, 8], "sum": [0, 3, 5, 7]}[mode]
        one = planner.plan(Y[:, :1], w, k)
        monkeypatch.setattr(planner, "PER_SAMPLE", None)
        assert one[0] == planner.plan(Y[:, 0], w, k)[0]
    assert planner.plan(Y, w, k)[0] == [0, 2, 4, 7]  # the batch as one vector


def test_calibrated_run_plans_per_sample_with_the_knob(monkeypatch):
    """With planner.PER_SAMPLE set, calibrated_run plans on each sample's sketch (planner.project_samples)."""
    from tcpade_core import planner

    g = torch.Generator().manual_seed(15)  # a trajectory whose batch sketch plans otherwise
    outs = [torch.randn(2, 3, 4, generator=g) * (1 + j) + j * j for j in range(12)]
    tr = _traj(outs)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # the study predates the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin
    monkeypatch.setattr(planner, "PER_SAMPLE", "max")
    run = calibrated_run("taylorseer", tr, 3.0)
    Ys = planner.project_samples(outs)
    assert Ys.shape == (12, 2, 12)
    assert list(run.cfg.plan) == planner.plan(Ys, planner.step_sizes(tr.t), 4)[0] == [0, 5, 8, 10]


def test_even_steps_are_what_a_speed_target_spaces_without_a_plan():
    """planner.even_steps(n, k, warm): the steps the budget gate computes at a target with even spacing and no
    signal moving a compute (TaylorSeer O=1 replayed through the engine), for every step count to 24 and a range of
    targets; the warm-up first, exactly k of them, clamped as a plan's budget is."""
    import torch

    from tcpade_core import planner
    from tcpade_core.config import budget, make_config
    from tcpade_core.engine import CacheRun

    for n in range(2, 25):
        for target in (1.1, 1.25, 1.5, 2, 2.5, 3, 5):
            run = CacheRun(make_config("taylorseer", order=1, target_speedup=target))
            for i in range(n):
                run.begin_step(i, n, 1 - i / n)
                run("c", torch.zeros(1, 2), lambda h, i=i: torch.full((1, 2), float(i)), None)
            got = [r.step for r in run.end_run().steps if r.computed]
            assert planner.even_steps(n, budget(n, target), 1) == got
    assert planner.even_steps(10, 4, 3) == [0, 1, 2, 6]
    assert planner.even_steps(6, 9, 1) == list(range(6)) and planner.even_steps(6, 0, 2) == [0, 1]


def test_an_order2_margin_keeps_even_spacing_unless_order_2s_objective_rates_a_plan_better(monkeypatch):
    """planner.MARGIN2 = R (docs/order2_margin.txt): an order-2 plan replaces the even spacing of its budget only
    where order 2's objective (the powered quadratic costs with the closed-loop term, summed over the gaps) rates it
    at least R times lower; orders 0 and 1 are untouched; the stored plan's key names R."""
    from tcpade_core import planner
    from tcpade_core.calibrate import plan_key

    assert planner.MARGIN2 == 2.0 and planner.margin_ratio(2) == 2.0 and plan_key(2, 1).endswith("/mg2")
    monkeypatch.setattr(planner, "MARGIN2", 1.0)
    assert "mg" not in plan_key(2, 1)
    rng = np.random.default_rng(7)
    n = 10
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    opt = {order: planner.plan_table(Y, dt, order, 1) for order in (0, 1, 2)}
    plain, full = planner.quadratic_cost_pair(Y, dt, planner.closed_loop_lambda(2, "coherent"))
    top = max(float(x.max()) for row in full for x in row if x is not None)
    cost = [[None if x is None else planner._powered(x, top) for x in row] for row in full]
    value = lambda s: planner._total(planner._term2, cost, s)  # noqa: E731
    ratio = {k: value(planner.even_steps(n, k)) / value(s) for k, (s, _) in opt[2].items() if value(s) > 0}
    assert any(r > 1.2 for r in ratio.values()) and any(1.0 < r < 1.2 for r in ratio.values()), ratio
    for r_margin in (1.2, 1e9):
        monkeypatch.setattr(planner, "MARGIN2", r_margin)
        assert [planner.margin_ratio(o) for o in (0, 1, 2, 3)] == [1.0, planner.MARGIN, r_margin, 1.0]
        assert planner.margin_ratio(2, "independent") == 1.0 and plan_key(2, 1).endswith(f"/mg{r_margin:g}")
        table = planner.plan_table(Y, dt, 2, 1)
        for k, (steps, err) in table.items():
            want = opt[2][k][0] if k in ratio and ratio[k] > r_margin else planner.even_steps(n, k)
            if k not in ratio:  # an exact plan (value 0): kept
                want = opt[2][k][0]
            assert steps == want, (k, steps, want)
            assert err == pytest.approx(planner._total(planner._term2, plain, steps))
        assert {o: planner.plan_table(Y, dt, o, 1) for o in (0, 1)} == {o: opt[o] for o in (0, 1)}


def test_a_margin_keeps_even_spacing_unless_a_plan_beats_it(monkeypatch):
    """planner.MARGIN = R: an order-1 plan replaces the even spacing of its budget only where the objective
    (objective_value: the powered, contracted sum the DP minimises) rates it at least R times lower, else the plan
    is the even spacing, with its plain error; orders 0 and 2 are untouched; R 1 is the optimum; the stored plan's
    key names R; a calibrated run says when its plan is the even spacing."""
    import torch

    from tcpade_core import planner
    from tcpade_core.calibrate import Trajectory, calibrated_run, plan_key

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    assert planner.MARGIN == 1.5 and planner.margin_ratio(1) == 1.5 and plan_key(1, 1) == "1/1/p2/cl0.1/ct0.1/mg1.5"
    monkeypatch.setattr(planner, "MARGIN", 1.0)
    assert plan_key(1, 1) == "1/1/p2/cl0.1/ct0.1"
    rng = np.random.default_rng(5)
    n = 9
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    opt = {order: planner.plan_table(Y, dt, order, 1) for order in (0, 1, 2)}
    plain, full = planner.gap_costs(Y, dt, 1, "coherent", planner.CLOSED_LOOP)
    cost, keep = (full / full.max()) ** 2, planner.contraction(dt, planner.CONTRACT)
    for k in range(2, n):  # objective_value is what the DP minimises: the optimum is no worse than any schedule
        scheds = [[0, *r] for r in itertools.combinations(range(1, n), k - 1)]
        best = min(planner.objective_value(cost, s, keep) for s in scheds)
        assert planner.objective_value(cost, opt[1][k][0], keep) == pytest.approx(best, rel=1e-9, abs=1e-15)
    ratio = {}  # even spacing's objective over the optimum's (inf: the optimum is exact and even is not)
    for k, (s, _) in opt[1].items():
        e, p = planner.objective_value(cost, planner.even_steps(n, k), keep), planner.objective_value(cost, s, keep)
        ratio[k] = e / p if p > 0 else (np.inf if e > 0 else 1.0)
    assert any(r > 1.3 for r in ratio.values()) and any(1.0 < r < 1.3 for r in ratio.values())
    for r_margin in (1.3, 1e9):
        monkeypatch.setattr(planner, "MARGIN", r_margin)
        assert [planner.margin_ratio(o) for o in (0, 1, 2)] == [1.0, r_margin, 1.0]
        assert planner.margin_ratio(1, "independent") == 1.0
        assert plan_key(1, 1) == f"1/1/p2/cl0.1/ct0.1/mg{r_margin:g}" and plan_key(0, 1) == "0/1/p2"
        table = planner.plan_table(Y, dt, 1, 1)
        for k, (steps, err) in table.items():
            want = opt[1][k][0] if ratio[k] > r_margin else planner.even_steps(n, k)
            assert steps == want and err == pytest.approx(planner._total(planner._term1, plain, steps))
            assert planner.plan(Y, dt, k, 1) == (steps, err)
        assert {o: planner.plan_table(Y, dt, o, 1) for o in (0, 2)} == {o: opt[o] for o in (0, 2)}
    traj = Trajectory(t=list(np.linspace(1, 0.1, n)), outputs=[torch.tensor(y[None]) for y in Y])
    notes = calibrated_run("taylorseer", traj, 2.0, order=1).report.notes
    assert any("the plan is the even spacing: no schedule beat it 1e+09 times" in x for x in notes)
    monkeypatch.setattr(planner, "MARGIN", 1.0)
    assert planner.plan_table(Y, dt, 1, 1) == opt[1]
    assert not any("even spacing" in x for x in calibrated_run("taylorseer", traj, 3.0, order=1).report.notes)


def test_order2_closed_loop_term_is_the_noise_through_the_quadratics_weights(monkeypatch):
    """planner.CLOSED_LOOP2 (0.1, measured): each order-2 segment pays the base error (lambda times the mean
    squared one-step change, relative to the mean squared output) through the summed, step-weighted Lagrange weights
    of its three computed values (two: the line's; one: reuse's); the plan key names it; 0 leaves the costs alone."""
    from tcpade_core import planner
    from tcpade_core.calibrate import plan_key

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    rng = np.random.default_rng(3)
    n = 7
    Y, dt = rng.normal(size=(n, 4)).cumsum(0), rng.random(n) + 0.1
    lam = 0.3
    plain, full = planner.quadratic_costs(Y, dt), planner.quadratic_costs(Y, dt, lam)
    noise = lam * float((np.diff(Y, axis=0) ** 2).sum(axis=1).mean()) / float((Y**2).sum(axis=1).mean())

    def lagrange(nodes, x):
        return [np.prod([(x - m) / (k - m) for m in nodes if m != k]) for k in nodes]

    for nodes, (a, b, c), d in (((0, 2, 3), (0, 2, 3), 6), ((1, 4), (1, 1, 4), 7), ((2,), (2, 2, 2), 5)):
        w = np.sum([dt[j] * np.array(lagrange(nodes, j)) for j in range(c + 1, d)], axis=0)
        assert full[b][c][a, d] - plain[b][c][a, d] == pytest.approx(noise * float((w**2).sum()), rel=1e-9)
    assert all(
        np.array_equal(x, y) for rx, ry in zip(plain, planner.quadratic_costs(Y, dt, 0.0)) for x, y in zip(rx, ry)
    )
    assert planner.CLOSED_LOOP2 == 0.1 and plan_key(2, 3).endswith("/cl0.1")
    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)
    assert "/cl" not in plan_key(2, 3)
    monkeypatch.setattr(planner, "CLOSED_LOOP2", lam)
    assert "/cl0.3" in plan_key(2, 3)
    assert planner.closed_loop_lambda(2) == lam and planner.closed_loop_lambda(2, "independent") == 0.0


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_an_order_2_plan_with_its_closed_loop_term_is_the_exact_minimum_of_its_objective(power, monkeypatch):
    """At the default CLOSED_LOOP2 (0.1) the order-2 DP still finds, for every budget, the exact minimum over every
    schedule of its objective (each gap's open-loop cost plus its closed-loop term, relative to the largest, to the
    segment power, summed), and reports that schedule's plain open-loop error."""
    from tcpade_core import planner

    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the exact minimum, before order 2's margin over even spacing
    assert planner.CLOSED_LOOP2 == 0.1
    monkeypatch.setattr(planner, "SEG_POWER", power)
    rng = np.random.default_rng(0)
    n = 8
    Y, dt = rng.normal(size=(n, 3)).cumsum(0), rng.random(n) + 0.1
    full, plain = planner.quadratic_costs(Y, dt, 0.1), planner.quadratic_costs(Y, dt)
    top = max(float(x.max()) for row in full for x in row if x is not None)
    powered = [[None if x is None else planner._powered(x, top) for x in row] for row in full]
    table = planner.plan_table(Y, dt, 2, 1)
    moved = 0
    for k, (steps, err) in table.items():
        scheds = [[0, *r] for r in itertools.combinations(range(1, n), k - 1)]
        best = min(planner._total(planner._term2, powered, s) for s in scheds)
        assert planner._total(planner._term2, powered, steps) == pytest.approx(best, rel=1e-9, abs=1e-15)
        assert err == pytest.approx(planner._total(planner._term2, plain, steps), rel=1e-12)
        monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)
        moved += planner.plan(Y, dt, k, 2, 1)[0] != steps
        monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.1)
    assert moved  # the term changes some plan
