"""TC-Padé's TSI in a planned schedule (issue 18 item 5): the planner's TSI objective and the PlannedGate's online
TSI correction; both are off by default, and the defaults are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcpade_core import make_config
from tcpade_core.calibrate import Trajectory, calibrated_run
from tcpade_core.engine import CacheRun
from tcpade_core.gates import Decision, PlannedGate
from tcpade_core.planner import OBJECTIVES, plan, schedule_cost, segment_costs, turns

# plan(Y, dt, k, order, warm) of the code before the TSI objective existed (commit 2a64e24), on the trajectory of
# _golden(): (order, warm, k, steps, value)
GOLDEN = [
    (0, 1, 4, (0, 2, 9, 11), 1.7797251771967861),
    (0, 1, 7, (0, 2, 4, 6, 9, 11, 14), 0.27222878785865706),
    (0, 1, 10, (0, 2, 3, 4, 6, 9, 10, 11, 13, 14), 0.1106506171246619),
    (1, 1, 4, (0, 3, 9, 13), 4.024772827508944),
    (1, 1, 7, (0, 2, 3, 6, 9, 11, 14), 0.5456594367057369),
    (1, 1, 10, (0, 2, 3, 6, 9, 10, 11, 12, 13, 14), 0.17056529125666642),
    (1, 2, 4, (0, 1, 3, 11), 9.248256068510264),
    (1, 2, 7, (0, 1, 3, 6, 9, 11, 14), 0.9485486012306567),
    (1, 2, 10, (0, 1, 2, 3, 6, 9, 10, 11, 13, 14), 0.1848215068446142),
    (1, 3, 4, (0, 1, 2, 9), 26.57073391948341),
    (1, 3, 7, (0, 1, 2, 3, 9, 11, 14), 1.0579773649044817),
    (1, 3, 10, (0, 1, 2, 3, 6, 9, 10, 11, 13, 14), 0.1848215068446142),
]


def _golden():
    rng = np.random.default_rng(18)
    return rng.normal(size=(16, 6)).cumsum(0), rng.random(16)


@pytest.mark.parametrize("order, warm, k, steps, value", GOLDEN)
def test_the_default_objective_plans_as_before(order, warm, k, steps, value, monkeypatch):
    from tcpade_core import planner

    monkeypatch.setattr(planner, "SEG_POWER", 1.0)  # the golden values predate the segment power
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)  # and the closed-loop term
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    Y, dt = _golden()
    for got in (plan(Y, dt, k, order, warm), plan(Y, dt, k, order, warm, "coherent")):
        assert tuple(got[0]) == steps and got[1] == pytest.approx(value, rel=1e-12)


def _turned(n=14, turn=6, speed_after=1.0):
    """2-D outputs: a straight line up to step ``turn``, then a right angle and a straight line again."""
    pts = [[j, 0.0] if j <= turn else [turn, speed_after * (j - turn)] for j in range(n)]
    return np.array(pts) + np.array([3.0, 1.0])


def test_turns_is_eq1_on_consecutive_steps():
    tsi = turns(_turned())
    assert tsi[6] == pytest.approx(np.sqrt(2) / 2) and np.delete(tsi, 6) == pytest.approx(0.0, abs=1e-12)
    assert turns(np.array([[0.0], [1.0], [0.0]]))[1] == pytest.approx(1.0)  # a reversal


@pytest.mark.parametrize("warm", [1, 2])
def test_the_tsi_objective_computes_at_the_turn(warm):
    Y, dt = _turned(), np.ones(14)
    steps, value = plan(Y, dt, 4, 1, warm, "tsi")
    assert steps == [0, 1, 6, 7] and value == pytest.approx(0.0, abs=1e-12)
    cost = segment_costs(Y, dt, 1, "tsi")
    assert schedule_cost(cost, [0, 1, 7, 8]) == pytest.approx(0.0)  # the second leg's own line: exact too
    for moved in ([0, 1, 5, 7], [0, 1, 8, 9], [0, 1, 5, 6]):  # a step past the turn skipped, or the turn missed
        assert schedule_cost(cost, moved) > 0.1


def test_the_tsi_objective_sees_turns_not_magnitudes():
    """After the turn the trajectory barely moves: the open-loop error of skipping it is small, so the coherent
    objective spends its computes elsewhere; the TSI proxy still computes at the turn."""
    Y = _turned(n=16, turn=10, speed_after=0.01)
    Y[:10, 0] = np.arange(10) ** 1.5  # the first leg accelerates: a line through two points misses it
    dt = np.ones(16)
    assert 10 not in plan(Y, dt, 5, 1, 2, "coherent")[0]
    assert 10 in plan(Y, dt, 5, 1, 2, "tsi")[0]


def test_every_objective_is_an_exact_minimum():
    Y, dt = _golden()
    for objective in OBJECTIVES:
        cost = segment_costs(Y[:9], dt[:9], 1, objective)
        steps, value = plan(Y[:9], dt[:9], 4, 1, 2, objective)
        assert schedule_cost(cost, steps) == pytest.approx(value, rel=1e-9)
        import itertools

        best = min(schedule_cost(cost, [0, 1, *rest]) for rest in itertools.combinations(range(2, 9), 2))
        assert value == pytest.approx(best, rel=1e-9, abs=1e-15)
    with pytest.raises(ValueError, match="objective"):
        plan(Y, dt, 4, 1, 2, "nope")


# ------------------------------------------------------------------ the online correction


def _traj(points, n):
    tr = Trajectory()
    for i in range(n):
        tr.t.append(1.0 - i / n)
        tr.inputs.append(torch.zeros(1, 2))
        tr.outputs.append(torch.tensor([points[i]], dtype=torch.float32))
        tr.modulated.append(None)
    return tr


def _replay(traj, steps, theta):
    n = len(traj)
    run = CacheRun(make_config("taylorseer", order=1, form="newton", target_speedup=n / len(steps), plan=steps))
    if theta is not None:
        run.gate = PlannedGate(run.gate.base, steps, tsi_theta=theta)
    for i in range(n):
        run.begin_step(i, n, traj.t[i])
        run("c", traj.inputs[i], lambda h, i=i: traj.outputs[i])
    rep = run.end_run()
    return [r.step for r in rep.steps if r.computed], run.gate, rep


PLAN = (0, 1, 2, 8, 12, 16)


def test_the_correction_moves_the_next_compute_earlier_when_the_trajectory_turns():
    """The residuals turn by a right angle at step 2 (stability score 1/(2 TSI) = 0.71 < θ 1): the next planned
    compute (8) moves to half its gap (5) and the rest of the plan stays; the budget is exact."""
    pts = [[0.0, 0.0], [1.0, 0.0]] + [[1.0, j - 1.0] for j in range(2, 18)]
    traj = _traj(pts, 18)
    steps, gate, rep = _replay(traj, PLAN, 1.0)
    assert steps == [0, 1, 2, 5, 12, 16] and len(steps) == len(PLAN) and gate.early == 1
    assert "TSI moved 1 earlier" in rep.target_note
    assert _replay(traj, PLAN, None)[0] == list(PLAN)  # off: the plan
    assert _replay(traj, PLAN, 0.5)[0] == list(PLAN)  # a right angle scores 0.71, not below 0.5


def test_the_correction_keeps_the_plan_on_a_straight_trajectory_and_the_budget_exact():
    traj = _traj([[float(j), 2.0 * j] for j in range(18)], 18)
    assert _replay(traj, PLAN, 1.0)[0] == list(PLAN)
    g = torch.Generator().manual_seed(3)
    rnd = _traj(torch.randn(18, 2, generator=g).cumsum(0).tolist(), 18)
    for theta in (0.6, 1.0, 5.0, 100.0):
        steps, gate, _ = _replay(rnd, PLAN, theta)
        assert len(steps) == len(PLAN) and steps[:3] == [0, 1, 2]
    assert gate.early > 0  # θ 100: every turn fires


def test_the_planned_gate_is_unchanged_by_default():
    gate = PlannedGate(CacheRun(make_config("reuse")).gate, PLAN)
    assert gate.tsi_theta is None and gate.needs_residuals == 0

    class S:
        index, num_steps = 0, 18

    for i in range(18):
        S.index = i
        assert gate.decide(S, None, None) == Decision(i in PLAN, "planned", None, forced=True)
    g = torch.Generator().manual_seed(1)
    traj = Trajectory()
    for j in range(20):
        traj.t.append(1 - j / 20)
        traj.inputs.append(torch.zeros(1, 8, 4))
        traj.outputs.append(torch.randn(1, 8, 4, generator=g).cumsum(1) * (1 + j / 10))
        traj.modulated.append(None)
    for method in ("taylorseer", "tcpade"):
        run = calibrated_run(method, traj, 2.5)
        assert run.gate.tsi_theta is None and "TSI" not in (run.gate.note(20) or "")
