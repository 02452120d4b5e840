"""The default shape of a speed target (tcpade_core.shape) and the budget gate's placement knob."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcpade_core import CacheRun, make_config, shape
from tcpade_core import gates as G
from tcpade_core import planner
from tcpade_core.config import ConfigError, budget

TARGETS = (1.25, 1.5, 2.0, 2.5, 3.0)


@pytest.mark.parametrize("warm", [1, 2, 3])
def test_shape_is_nested_in_the_budget_for_every_step_count(warm):
    for n in range(2, 61):
        prev = None
        for k in range(1, n + 1):
            s = shape.schedule(n, k, warm)
            assert s == sorted(set(s)) and 0 <= s[0] and s[-1] < n
            assert len(s) == max(k, min(warm, n)), (n, k, warm)
            assert set(range(min(warm, n))) <= set(s) and s[0] == 0
            if prev is not None:
                assert set(prev) <= set(s), (n, k, warm, prev, s)
            prev = s
        assert prev == list(range(n))


@pytest.mark.parametrize("power,late", [(1.0, 0.0), (0.5, 0.0), (0.7, 0.5), (0.4, 1.0)])
def test_shape_nested_for_other_parameters(power, late):
    for n in (7, 20, 33):
        sets = [set(shape.schedule(n, k, 2, power, late)) for k in range(2, n + 1)]
        assert all(a <= b for a, b in zip(sets, sets[1:]))


def test_shape_power_moves_computes_early_and_late_moves_them_late():
    n, k = 30, 10
    even = shape.schedule(n, k, 1, 1.0, 0.0)
    early = shape.schedule(n, k, 1, 0.5, 0.0)
    late = shape.schedule(n, k, 1, 0.5, 1.0)
    assert np.mean(early) < np.mean(even) < np.mean(late)
    gaps = np.diff(shape.schedule(n, k, 1, 0.5, 0.0) + [n])
    assert gaps[0] < gaps[-1]  # dense early, sparse late


def test_shape_rejects_bad_parameters():
    with pytest.raises(ValueError):
        shape.schedule(10, 4, 1, 0.0, 0.0)
    with pytest.raises(ValueError):
        shape.schedule(10, 4, 1, 1.0, 1.5)


def test_placement_is_checked():
    with pytest.raises(ConfigError, match="placement"):
        make_config("taylorseer", target_speedup=2.0, placement="random")
    assert make_config("taylorseer").placement == "auto"


def test_auto_placement_is_the_shape_below_2x_on_flow_models_only():
    """placement "auto" (the default): the default shape for a target in (0, 2) on a flow-prediction model run for
    20 steps or more, even spacing at 2x and above, below 20 steps, on an eps model and where the prediction or the
    step count is unknown; "even" / "shape" stay themselves."""
    from tcpade_core.config import AUTO_MIN_STEPS, AUTO_SHAPE_BELOW, placement_for

    assert (AUTO_SHAPE_BELOW, AUTO_MIN_STEPS) == (2.0, 20)
    assert [placement_for("auto", "flow", t, 20) for t in (1.0, 1.25, 1.5, 1.99, 2.0, 2.5, 3.0)] == ["shape"] * 4 + [
        "even"
    ] * 3
    assert [placement_for("auto", "flow", 1.5, n) for n in (1, 10, 19, 20, 30, 50)] == ["even"] * 3 + ["shape"] * 3
    assert placement_for("auto", "flow", 1.5) == "even"  # the step count not known
    assert placement_for("auto", "flow", 0, 30) == "even"  # no target: the method's own schedule (never placed)
    assert {placement_for("auto", p, 1.5, 30) for p in ("eps", None, "v")} == {"even"}
    assert {placement_for("even", "flow", t, n) for t in (1.5, 3.0) for n in (10, 30)} == {"even"}
    assert {placement_for("shape", p, t, n) for p in ("eps", "flow") for t in (1.5, 3.0) for n in (10, 30)} == {"shape"}


@pytest.mark.parametrize("target", [1.25, 1.5, 2.0, 3.0])
def test_cache_run_resolves_auto_from_the_prediction(target):
    """CacheRun(cfg, prediction=...) runs "auto" (the default) as placement_for says, with the run's step count: on a
    flow model below 2x from 20 steps exactly the shape's schedule (a reuse predictor: no signal moves a compute),
    else exactly the even placement's; without a prediction (a config alone) even spacing."""

    def steps(rep):
        return [r.step for r in rep.steps if r.computed]

    auto = make_config("reuse", target_speedup=target)
    for n in (20, 30, 10):
        shaped = _run(make_config("reuse", target_speedup=target, placement="shape"), n)
        even = _run(make_config("reuse", target_speedup=target, placement="even"), n)
        want = shaped if target < 2 and n >= 20 else even
        assert steps(_run(auto, n, prediction="flow")) == steps(want), n
        assert steps(_run(auto, n, prediction="eps")) == steps(even)
        assert steps(_run(auto, n)) == steps(even)
        if target < 2:
            assert steps(shaped) != steps(even)  # the two placements differ here, so the checks above can fail
        note = _run(auto, n, prediction="flow").target_note
        assert ("placed by the default shape" if want is shaped else "spaced evenly") in note, (n, note)


def _run(cfg, n, seed=0, prediction=None):
    """A run over a curving synthetic trajectory (the stack returns a fixed function of the step)."""
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(1, 4, 8, generator=g) for _ in range(3))
    run = CacheRun(cfg, prediction=prediction)
    for i in range(n):
        x = i / n
        run.begin_step(i, n, 1.0 - x)
        run("c", a, lambda h, x=x: a + b * x + c * (x * x + 0.3 * np.sin(7 * x)), None)
    return run.end_run()


@pytest.mark.parametrize("method,params", [("taylorseer", dict(order=1)), ("tcpade", {}), ("reuse", {})])
def test_shape_placement_meets_the_budget_exactly_and_follows_the_shape(method, params):
    for n in (4, 7, 10, 20, 30, 50):
        for t in TARGETS:
            cfg = make_config(method, target_speedup=t, placement="shape", **params)
            rep = _run(cfg, n)
            k = budget(n, t)
            warm = CacheRun(cfg).predictor.warmup
            assert rep.computed == max(k, min(warm, n)), (method, n, t)
            steps = [r.step for r in rep.steps if r.computed]
            if method == "reuse":  # no signal: exactly the shape
                assert steps == shape.schedule(n, k, warm)
            assert "placed by the default shape" in rep.target_note


def test_an_early_compute_takes_the_place_of_the_next_planned_one():
    class Always(G.Gate):
        name = "always"

        def decide(self, step, st, signal_fn):
            return G.Decision(True, "signal")

    n, t = 20, 2.5
    gate = G.BudgetGate(Always(), t, "shape", 1)
    computed = []
    for i in range(n):
        from tcpade_core.engine import Step

        d = gate.decide(Step(i, n, 1 - i / n, "-"), None, None)
        gate.step_done(i, d.compute)
        if d.compute:
            computed.append(i)
    assert len(computed) == budget(n, t)
    assert gate.early > 0
    plan = shape.schedule(n, budget(n, t), 1)
    assert computed != plan and computed[0] == 0


class _OldBudgetGate(G.WrappedGate):
    """The budget gate's rule before the placement knob (even spacing), as an independent oracle."""

    def __init__(self, base, target):
        super().__init__(base)
        self.target, self.used, self.last, self.budget, self.early = float(target), 0, None, None, 0

    def note(self, num_steps):
        return None

    def decide(self, step, st, signal_fn):
        if self.budget is None:
            self.budget = budget(step.num_steps, self.target)
        own = self.base.decide(step, st, signal_fn)
        b, r = self.budget - self.used, step.num_steps - step.index
        gap = step.index - self.last if self.last is not None else step.index + 1
        if b <= 0:
            return G.Decision(False, "budget spent", own.gate)
        if b >= r:
            return G.Decision(True, "budget: every step left", own.gate, forced=True)
        spacing = r / b
        if gap >= spacing - 1e-9:
            return G.Decision(True, "budget spacing", own.gate, forced=True)
        if own.compute and not own.forced and gap >= spacing / 2:
            return G.Decision(True, f"{own.reason} (early)", own.gate)
        return G.Decision(False, "budget spacing", own.gate)

    def step_done(self, index, computed):
        super().step_done(index, computed)
        if computed:
            self.used += 1
            self.last = index


@pytest.mark.parametrize(
    "method,params",
    [("taylorseer", dict(order=1)), ("taylorseer", dict(order=2)), ("tcpade", {}), ("tracache", {}), ("reuse", {})],
)
def test_even_placement_is_todays_schedule(method, params, monkeypatch):
    """Placement "even" (and "auto" where the model's prediction is not known) computes exactly the steps of the
    rule before the knob (so the benchmarks do not change): the same runs with the old rule patched in give the
    same schedules and reasons."""
    for n in (5, 10, 20, 30):
        for t in TARGETS:
            cfg = make_config(method, target_speedup=t, placement="even" if n % 10 else "auto", **params)
            now = _run(cfg, n, seed=n)
            with monkeypatch.context() as m:
                m.setattr(G, "BudgetGate", lambda base, target, *a, **k: _OldBudgetGate(base, target))
                old = _run(cfg, n, seed=n)
            assert [(r.step, r.computed, r.reason) for r in now.steps] == [
                (r.step, r.computed, r.reason) for r in old.steps
            ], (method, n, t)
            assert now.target_note.endswith("spaced evenly") or "spaced evenly;" in now.target_note


def test_schedule_cost_is_what_the_planner_minimises(monkeypatch):
    monkeypatch.setattr(planner, "SEG_POWER", 1.0)  # schedule_cost is the plain sum over segments
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)  # of the open-loop costs
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # at their exact minimum
    g = np.random.default_rng(0)
    Y = np.cumsum(g.normal(size=(12, 6)), axis=0)
    dt = np.full(12, 1 / 12)
    cum = planner.segment_costs(Y, dt, 1)
    for k in (3, 5, 8):
        steps, value = planner.plan(Y, dt, k, 1, 1)
        assert planner.schedule_cost(cum, steps) == pytest.approx(value)
        for warm in (1, 2):
            assert planner.schedule_cost(cum, shape.schedule(12, k, warm)) >= value - 1e-12


def test_a_saved_shape_bench_run_reads_back_and_compares(tmp_path):
    """shape_bench --compare reads the rows a run printed (line()) and summarises plan minus even, and plan minus
    another run's plan on the cells both hold."""
    from tcpade_core.research import shape_bench as SB

    def row(model, steps, method, even, plan, split):
        return dict(
            model=model,
            seed=4321,
            steps=steps,
            target=2.0,
            method=method,
            split=split,
            even=(10, even, "#."),
            shape=(10, even, "#."),
            plan=(10, plan, "#."),
            grid=None,
        )

    rows = [
        row("b", 20, "TaylorSeer O=1", 40.0, 42.5, "held-out"),
        row("c", 30, "TaylorSeer O=1", 30.0, 29.0, "held-out"),
    ]
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(
        "\n".join(SB.line(r) for r in rows)
        + "\n"
        + SB.line(row("b", 20, "TC-Padé", 1, 2, "dev"))
        + "  (dev)\n"
        + SB.line(row("a", 10, "TC-Padé", 3, 3, "fresh"))
        + "  (fresh)\n"
    )
    b.write_text(SB.line(row("b", 20, "TaylorSeer O=1", 40.0, 41.0, "held-out")) + "\n")
    back = SB.read_rows(str(a))
    assert [(r["model"], r["steps"], r["method"], r["split"], r["even"][1], r["plan"][1]) for r in back] == [
        ("b", 20, "TaylorSeer O=1", "held-out", 40.0, 42.5),
        ("c", 30, "TaylorSeer O=1", "held-out", 30.0, 29.0),
        ("b", 20, "TC-Padé", "dev", 1.0, 2.0),
        ("a", 10, "TC-Padé", "fresh", 3.0, 3.0),
    ]
    out = SB.compare(str(a), str(b))
    assert "held-out: TaylorSeer O=1: plan minus even:  +0.75 dB (1 better / 1 worse of 2)" in out
    assert "    model c:  -1.00 dB (0 better / 1 worse of 1)" in out and "    target 2:  +0.75 dB" in " ".join(out)
    assert f"held-out: TaylorSeer O=1: plan minus the plan of {b}:  +1.50 dB (1 better / 0 worse of 1)" in out
    assert "dev: TC-Padé: plan minus even:  +1.00 dB (1 better / 0 worse of 1)" in out
    assert "fresh: TC-Padé: plan minus even:  +0.00 dB (0 better / 0 worse of 1)" in out
    assert not any(x.startswith("held-out: all methods") for x in out)  # one method per split here
    both = tmp_path / "both.txt"  # two methods on the same cell: one minus the other
    both.write_text(SB.line(rows[0]) + "\n" + SB.line(row("b", 20, "TC-Padé", 39.0, 43.5, "held-out")) + "\n")
    out = SB.compare(str(both))
    assert "all methods: plan minus even:  +3.50 dB (2 better / 0 worse of 2)" in out
    assert "TC-Padé minus TaylorSeer O=1, plan:  +1.00 dB (1 better / 0 worse of 1)" in out
    assert "TC-Padé minus TaylorSeer O=1, even:  -1.00 dB (0 better / 1 worse of 1)" in out
