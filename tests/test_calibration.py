"""Calibration: fitting on a recorded trajectory (engine), and the Calibrate node, the store and its use
by the cache nodes (host)."""

from __future__ import annotations

import json
import os
import logging

import numpy as np
import pytest
import torch

from tcpade_core import TaylorSeerConfig, TCPadeConfig, TeaCacheConfig
from tcpade_core.calibrate import Calibration, Trajectory, budget, calibrate, fit_teacache, replay


def synthetic(n=20, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(1, 4, d, generator=g) for _ in range(3))
    tr = Trajectory()
    for i in range(n):
        s = 1 - i / n
        tr.t.append(s)
        h = a * s + 0.1 * b
        tr.inputs.append(h)
        tr.outputs.append(h + torch.tanh(b * s + c * s * s))
        tr.modulated.append(h * (1 + 0.3 * s))
    return tr


def test_replay_counts_and_errors_like_the_engine():
    tr = synthetic()
    c, e = replay(TaylorSeerConfig(interval=3, order=1, first_enhance=2), tr)
    assert c == 8 and 0.0 < e < 0.2  # ##..#..#..#..#..#..#
    c, _ = replay(TCPadeConfig(), tr, target=2.5)
    assert c == budget(20, 2.5) == 8


def test_calibrated_run_fills_taylorseers_order_from_the_trajectorys_prediction(monkeypatch):
    """calibrated_run gives what a node runs: with the rule of docs/order_eps.txt on, TaylorSeer's order at a target
    is 2 on an eps trajectory of 20 steps where ``params`` leave it, on the order-2 plan; a given order, a flow
    trajectory or fewer steps keep order 1, and so does a trajectory weighted as eps whose model outputs v, x0 or
    another kind (``Trajectory.output``, which the Calibrate node records); with the rule off nothing changes."""
    from tcpade_core import config as C
    from tcpade_core.calibrate import calibrated_run, planned_config, sketch, step_weights

    def eps(n):
        tr = synthetic(n)
        tr.prediction, tr.sigmas = "eps", [14.6 * (1 - i / n) ** 2 + 0.03 for i in range(n + 1)]
        return tr

    def plan_of(tr, order):
        cfg = C.make_config("taylorseer", order=order)
        w = step_weights(tr.t, tr.sigmas, tr.prediction)
        return planned_config(cfg, sketch(tr.outputs), w, 2.0, keep=frozenset({"order"}))[1]

    monkeypatch.setattr(C, "ORDER_BY_PREDICTION", True)
    run = calibrated_run("taylorseer", eps(20), 2.0)
    assert (
        run.cfg.order == 2 and run.cfg.plan == tuple(plan_of(eps(20), 2)) and plan_of(eps(20), 1) != plan_of(eps(20), 2)
    )
    assert calibrated_run("taylorseer", eps(20), 2.0, order=1).cfg.order == 1
    assert calibrated_run("taylorseer", eps(19), 2.0).cfg.order == 1
    assert calibrated_run("taylorseer", synthetic(20), 2.0).cfg.order == 1
    for output, want in (("v", 1), ("x0", 1), ("other", 1), ("eps", 2)):  # weighted as eps, filled by what it outputs
        tr = eps(20)
        tr.output = output
        assert calibrated_run("taylorseer", tr, 2.0).cfg.order == want, output
    monkeypatch.setattr(C, "ORDER_BY_PREDICTION", False)
    assert calibrated_run("taylorseer", eps(20), 2.0).cfg.order == 1


def test_an_even_spaced_plan_runs_the_configured_form_as_the_uncalibrated_target_does(monkeypatch):
    """calibrate.EVEN_PLAN_FORM (docs/even_form.txt): where the planner's margin keeps the even spacing of the budget,
    TaylorSeer runs its configured form, so the planned run is the uncalibrated evenly spaced target's, prediction
    for prediction; elsewhere, or with the rule off, the newton form; a form the user set is kept."""
    from tcpade_core import calibrate as CM
    from tcpade_core import planner
    from tcpade_core.config import make_config

    tr = synthetic(20)
    monkeypatch.setattr(CM, "EVEN_PLAN_FORM", True)
    monkeypatch.setattr(planner, "MARGIN2", 1e9)  # every order-2 plan is even spacing
    run = CM.calibrated_run("taylorseer", tr, 2.0, order=2)
    assert run.cfg.form == make_config("taylorseer").form == "official"
    assert list(run.cfg.plan) == planner.even_steps(20, budget(20, 2.0), 1)
    uncal = make_config("taylorseer", order=2, target_speedup=2.0, placement="even")
    assert replay(run.cfg, tr, 2.0) == replay(uncal, tr, 2.0)
    assert CM.calibrated_run("taylorseer", tr, 2.0, order=2, form="eq10").cfg.form == "eq10"
    monkeypatch.setattr(CM, "EVEN_PLAN_FORM", False)
    off = CM.calibrated_run("taylorseer", tr, 2.0, order=2).cfg
    assert off.form == "newton" and off.plan == run.cfg.plan and replay(off, tr, 2.0) != replay(uncal, tr, 2.0)
    monkeypatch.setattr(CM, "EVEN_PLAN_FORM", True)
    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # the optimum, off even spacing on a random walk
    Y = np.random.default_rng(0).normal(size=(20, 4)).cumsum(0)
    walk = Trajectory(t=list(np.linspace(1, 0.05, 20)), outputs=[torch.tensor(y[None]) for y in Y])
    moved = CM.calibrated_run("taylorseer", walk, 2.0, order=2).cfg
    assert moved.form == "newton" and list(moved.plan) != planner.even_steps(20, budget(20, 2.0), 1)


def test_teacache_fit_recovers_a_known_relation():
    tr = Trajectory()
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 8, 16, generator=g) + 0.5
    m, y = base.clone(), base.clone()
    for i in range(20):
        step = 0.01 * (1 + i % 5)
        m = m * (1 + step)  # relative L1 change of m: step
        y = y * (1 + 2 * step)  # ... of the output: 2 x step
        tr.t.append(1 - i / 20)
        tr.inputs.append(base)
        tr.outputs.append(y.clone())
        tr.modulated.append(m.clone())
    coeffs = fit_teacache(tr)
    poly = lambda x: sum(c * x ** (len(coeffs) - 1 - k) for k, c in enumerate(coeffs))
    for x in (0.01, 0.03, 0.05):
        assert poly(x) == pytest.approx(2 * x, rel=1e-3, abs=1e-6)


def test_calibrate_meets_the_budget_and_round_trips_as_json():
    tr = synthetic()
    cal = calibrate(tr, "abc", 2.5)
    want = budget(20, 2.5)
    assert cal.steps == 20 and cal.target == 2.5 and cal.model_key == "abc"
    assert replay(TaylorSeerConfig(**cal.taylorseer), tr)[0] in (want - 1, want, want + 1)
    if cal.teacache_threshold is not None:
        tc = TeaCacheConfig(threshold=cal.teacache_threshold, coefficients=cal.teacache_coefficients)
        assert abs(replay(tc, tr)[0] - want) <= 1
    assert cal.tcpade_warmup in (1, 2, 3)
    again = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert again == cal and again.plan_table == cal.plan_table
    assert set(cal.plan_table) == {"0/1/p2", "1/1/p2/cl0.1/ct0.1/mg1.5", "1/3/p2/cl0.1/ct0.1/mg1.5", "2/1/p2/cl0.1/mg2"}
    older = {k: v for k, v in cal.to_json().items() if k != "plan_table"}  # a file from before the stored plans
    assert Calibration.from_json(older).plan_table is None
    with pytest.raises(ValueError, match="version"):
        Calibration.from_json({**cal.to_json(), "version": 99})


@pytest.mark.parametrize(
    "method,params",
    [("taylorseer", {}), ("taylorseer", dict(order=0)), ("tcpade", {}), ("tcpade", dict(mode="official"))],
)
def test_a_stored_plan_is_read_not_planned_and_is_the_plan(method, params, monkeypatch):
    """Issue 18: a calibration stores its plans for every budget; a run reads its plan from them (the planner does
    not run), and what it reads is exactly what planning from the stored values gives; without the table (a file
    from before) it plans."""
    from tcpade_core import calibrate as CM
    from tcpade_core.config import make_config

    cal = calibrate(synthetic(), "abc", 2.0)
    cfg = make_config(method, **params)
    want = {t: CM.planned_config(cfg, cal.plan_outputs, cal.plan_weights, t) for t in (1.25, 1.5, 2.0, 2.5, 3.0, 7.0)}

    def no_planning(*a, **k):
        raise AssertionError("planned although the calibration stores the plan")

    monkeypatch.setattr(CM, "plan", no_planning)
    for t, (c, steps, err) in want.items():
        got = CM.planned_config(cfg, cal.plan_outputs, cal.plan_weights, t, table=cal.plan_table)
        assert got[0] == c and got[1] == steps and got[2] == pytest.approx(err, rel=1e-12, abs=1e-15)
        assert len(steps) == max(budget(20, t), 1)
    with pytest.raises(AssertionError, match="planned although"):
        CM.planned_config(cfg, cal.plan_outputs, cal.plan_weights, 2.0, table=None)


def test_plans_stored_under_another_segment_power_are_not_read(monkeypatch):
    """A calibration stored before the planner's segment power or its closed-loop term changed (its plans under
    keys without them) is not read: the run plans again from the stored outputs, under today's objective."""
    from tcpade_core import calibrate as CM
    from tcpade_core import planner
    from tcpade_core.config import make_config

    monkeypatch.setattr(planner, "SEG_POWER", 1.0)
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.0)
    monkeypatch.setattr(planner, "CONTRACT", 0.0)  # and without the contraction
    monkeypatch.setattr(planner, "MARGIN", 1.0)  # and the margin over even spacing
    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.0)  # and order 2 open loop
    monkeypatch.setattr(planner, "MARGIN2", 1.0)  # and without order 2's margin
    old = calibrate(synthetic(), "abc", 2.0)
    assert set(old.plan_table) == {"0/1", "1/1", "1/3", "2/1"}
    monkeypatch.setattr(planner, "SEG_POWER", 2.0)
    monkeypatch.setattr(planner, "CLOSED_LOOP", 0.1)
    cfg = make_config("taylorseer", order=1)
    fresh = CM.planned_config(cfg, old.plan_outputs, old.plan_weights, 2.5)
    forged = {"1/1": {k: [[0], 0.0] for k in old.plan_table["1/1"]}}  # an old table: would plan only step 0
    assert CM.planned_config(cfg, old.plan_outputs, old.plan_weights, 2.5, table=forged) == fresh
    forged = {"1/1/p2": {k: [[0], 0.0] for k in old.plan_table["1/1"]}}  # stored before the closed-loop term
    assert CM.planned_config(cfg, old.plan_outputs, old.plan_weights, 2.5, table=forged) == fresh
    assert len(fresh[1]) == budget(20, 2.5)
    monkeypatch.setattr(planner, "CONTRACT", 0.1)
    monkeypatch.setattr(planner, "MARGIN", 1.5)
    today = CM.planned_config(cfg, old.plan_outputs, old.plan_weights, 2.5)
    forged = {"1/1/p2/cl0.1/ct0.1": {k: [[0], 0.0] for k in old.plan_table["1/1"]}}  # stored before the margin
    assert CM.planned_config(cfg, old.plan_outputs, old.plan_weights, 2.5, table=forged) == today
    monkeypatch.setattr(planner, "CLOSED_LOOP2", 0.1)
    monkeypatch.setattr(planner, "MARGIN2", 2.0)
    cfg2 = make_config("taylorseer", order=2)
    today2 = CM.planned_config(cfg2, old.plan_outputs, old.plan_weights, 2.5)
    forged = {"2/1/p2/cl0.1": {k: [[0], 0.0] for k in old.plan_table["2/1"]}}  # stored before order 2's margin
    assert CM.planned_config(cfg2, old.plan_outputs, old.plan_weights, 2.5, table=forged) == today2
    assert len(today2[1]) == budget(20, 2.5)


def test_the_plan_table_is_the_planner_at_every_budget():
    from tcpade_core.planner import OBJECTIVES, plan, plan_table

    rng = np.random.default_rng(1)
    for n in (4, 13, 21):
        Y, w = rng.standard_normal((n, 16)).cumsum(0), rng.random(n) + 0.1
        for order in (0, 1, 2):
            for warm in (1, 2, 3):
                for obj in OBJECTIVES:
                    table = plan_table(Y, w, order, warm, obj)
                    assert sorted(table) == list(range(min(warm, n), n + 1))
                    for k in range(1, n + 1):
                        assert plan(Y, w, k, order, warm, obj) == table[max(k, min(warm, n))], (n, order, warm, obj, k)


# --------------------------------------------------------------------------------------- host


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    import host_util as H

    H.require_host()
    torch.set_num_threads(1)
    H.load_pack()
    import folder_paths

    old = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(tmp_path_factory.mktemp("user")))
    nodes = H.host().nodes.NODE_CLASS_MAPPINGS
    model = nodes["TCPade_BenchModelLoader"].execute("B: FLUX-like shapes 32x32").args[0]
    pos, neg = nodes["TCPade_ClassLabel"].execute("B: shapes", 2, "").args
    yield dict(
        H=H,
        nodes=nodes,
        model=model,
        pos=pos,
        neg=neg,
        folder_paths=folder_paths,
        CAL=H.pack_module("nodes.calibration"),
    )
    folder_paths.set_user_directory(old)


def _sample(env, m, steps=12):
    import comfy.sample

    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return comfy.sample.sample(
        m,
        noise,
        steps,
        2.0,
        "euler",
        "simple",
        env["pos"],
        env["neg"],
        torch.zeros(1, 3, 32, 32),
        seed=3,
        disable_pbar=True,
    )


def _calibrated(env):
    """The Calibrate node's calibration of a 12-step euler / simple run (seed 3, CFG 2, target 2x)."""
    latent = {"samples": torch.zeros(1, 3, 32, 32)}
    node = env["nodes"]["TCPade_Calibrate"]
    return node.execute(env["model"], env["pos"], env["neg"], latent, 3, 12, 2.0, "euler", "simple", 2.0).args[0]


def _attach(env, nid, model, **kw):
    node = env["nodes"][nid]
    params = {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}
    params.update(kw)
    return node.execute(model, **params).args[0]


def test_calibrate_node_stores_and_cache_nodes_use_it(host, caplog):
    env = host
    node = env["nodes"]["TCPade_Calibrate"]
    latent = {"samples": torch.zeros(1, 3, 32, 32)}
    out = node.execute(env["model"], env["pos"], env["neg"], latent, 3, 12, 2.0, "euler", "simple", 2.0)
    cal, lat = out.args
    assert cal.steps == 12 and cal.target == 2.0 and lat["samples"].shape == (1, 3, 32, 32)
    path = env["CAL"].store_path()
    assert path.startswith(env["folder_paths"].get_user_directory()) and path.endswith("tcpade/calibration.json")
    assert env["CAL"].lookup(cal.model_key, 12) == cal  # round trip through the store
    assert torch.equal(lat["samples"], _sample(env, env["model"]))  # the pass is a full-compute run
    # a cache node without the calibration input finds the stored one for this model and step count
    m = _attach(env, "TCPade_TaylorSeer", env["model"])
    _sample(env, m)
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert any(n.startswith("calibrated for 12 steps at 2x") for n in rep.notes)
    ts = cal.taylorseer
    assert f"interval={ts['interval']}" in rep.settings or ts["interval"] == 4
    assert abs(rep.computed - 6) <= 1  # 12 steps at 2x
    # another step count: not applied
    _sample(env, m, steps=10)
    assert not any(
        n.startswith("calibrated") for n in m.model_options["transformer_options"]["tcpade"].last_report.notes
    )
    # connected, but made for another step count: ignored, with a warning on the node and in the console
    m2 = _attach(env, "TCPade_TeaCache", env["model"], calibration=cal)
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        _sample(env, m2, steps=10)
    rep = m2.model_options["transformer_options"]["tcpade"].last_report
    assert "calibration ignored: it was made for 12 steps, not 10" in rep.notes
    assert any("calibration ignored" in r.getMessage() for r in caplog.records)
    # connected and matching: TeaCache takes this model's polynomial and δ
    m3 = _attach(env, "TCPade_TeaCache", env["model"], calibration=cal)
    _sample(env, m3)
    rep3 = m3.model_options["transformer_options"]["tcpade"].last_report
    assert not any(n.startswith("no calibrated TeaCache") for n in rep3.notes)
    assert any(n.startswith("calibrated for 12 steps") for n in rep3.notes)
    # a method the calibration has nothing for (TraCache) is not reported as calibrated
    m4 = _attach(env, "TCPade_TraCache", env["model"], calibration=cal)
    _sample(env, m4)
    assert not any(
        n.startswith("calibrated") for n in m4.model_options["transformer_options"]["tcpade"].last_report.notes
    )


def test_what_the_user_set_is_never_overwritten(host):
    """A calibration fills only the settings left at their default; the report names each value it filled."""
    env = host
    node = env["nodes"]["TCPade_Calibrate"]
    cal = node.execute(
        env["model"], env["pos"], env["neg"], {"samples": torch.zeros(1, 3, 32, 32)}, 3, 12, 2.0, "euler", "simple", 2.0
    ).args[0]
    assert cal.taylorseer is not None and cal.taylorseer["interval"] != 5
    left = _attach(env, "TCPade_TaylorSeer", env["model"], calibration=cal)
    _sample(env, left)
    rep = left.model_options["transformer_options"]["tcpade"].last_report
    assert f"interval={cal.taylorseer['interval']}" in rep.settings or cal.taylorseer["interval"] == 4
    assert any("filled in: interval" in n for n in rep.notes)
    mine = _attach(env, "TCPade_TaylorSeer", env["model"], calibration=cal, interval=5)
    _sample(env, mine)
    rep = mine.model_options["transformer_options"]["tcpade"].last_report
    assert "interval=5" in rep.settings and not any("filled in: interval" in n for n in rep.notes)
    tea = _attach(env, "TCPade_TeaCache", env["model"], calibration=cal, threshold=0.25)
    _sample(env, tea)
    rep = tea.model_options["transformer_options"]["tcpade"].last_report
    assert "threshold=0.25" in rep.settings and any("filled in: coefficients" in n for n in rep.notes)


def test_magcache_applies_the_ratios_calibrate_measured(host):
    """MagCache's node fills in the ratios the calibration measured on its full-compute run (where its ratios
    widget is left at auto), says so, and drops its 'uncalibrated' note; a table the user picked stays."""
    env = host
    node = env["nodes"]["TCPade_Calibrate"]
    cal = node.execute(
        env["model"], env["pos"], env["neg"], {"samples": torch.zeros(1, 3, 32, 32)}, 3, 12, 2.0, "euler", "simple", 2.0
    ).args[0]
    assert len(cal.mag_ratios) == 12 and cal.mag_ratios[0] == 1.0 and all(r > 0 for r in cal.mag_ratios)
    assert cal.mag_ratios != tuple(cal.mag_ratios[:1]) * 12  # measured, not a flat profile
    m = _attach(env, "TCPade_MagCache", env["model"], calibration=cal)
    _sample(env, m)
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert any(n.endswith("filled in: mag ratios (calibrated, 12 steps)") for n in rep.notes), rep.notes
    assert not any(n.startswith("uncalibrated") for n in rep.notes) and "ratios=(12 steps)" in rep.settings
    # without a calibration for this step count: the flat profile (no published table fits), said in the report
    _sample(env, m, steps=10)
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert any(n.startswith("uncalibrated: flat profile") for n in rep.notes) and "ratios=(1 steps)" in rep.settings
    assert rep.strip() == "##..#..#.." and not any("mag ratios" in n for n in rep.notes)  # K 2 from step 2
    # a table the user picked is never overwritten
    mine = _attach(env, "TCPade_MagCache", env["model"], calibration=cal, ratios="flux")
    _sample(env, mine)
    rep = mine.model_options["transformer_options"]["tcpade"].last_report
    assert not any("mag ratios" in n for n in rep.notes) and "ratios=" not in rep.settings


def test_two_samplers_fed_by_one_node_keep_their_own_reports(host):
    env = host
    patcher = env["H"].pack_module("nodes.patcher")
    m = _attach(env, "TCPade_TaylorSeer", env["model"], interval=2, order=1)
    _sample(env, m, steps=12)
    _sample(env, m, steps=8)
    s = m.model_options["transformer_options"]["tcpade"]
    runs = patcher.RUNS[s.uid]
    assert [r.report.num_steps for r in list(runs)[-2:]] == [12, 8] and s.last_report.num_steps == 8
    # the two newest reports of this label (earlier tests of the process may have published more under it)
    keys = [k for k in patcher.LAST_REPORTS if k.split("/")[1] == s.label][-2:]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert [patcher.LAST_REPORTS[k]["summary"].split("/")[1].split(" ")[0] for k in keys] == ["12", "8"]


def test_a_different_model_does_not_use_it(host):
    env = host
    other = env["model"].clone()
    other.add_patches({next(iter(other.model.state_dict())): (torch.zeros(1),)}, 0.5)  # a patch changes the key
    assert env["CAL"].model_key(other) != env["CAL"].model_key(env["model"])


def test_corrupt_file_names_it_and_the_run_goes_on(host, caplog):
    env = host
    path = env["CAL"].store_path()
    with open(path, "w") as f:
        f.write("{ not json")
    m = _attach(env, "TCPade_TCPadeCache", env["model"])
    with caplog.at_level(logging.ERROR, logger="tcpade"):
        out = _sample(env, m)
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert torch.isfinite(out).all() and rep.num_steps == 12 and rep.computed == 6  # uncalibrated: 2x preset
    assert any(path in n and "cannot be read" in n for n in rep.notes)
    assert any(path in r.getMessage() for r in caplog.records)


def test_an_unreadable_file_is_kept_never_overwritten(host, tmp_path):
    """A calibration saved over an unreadable store starts a new file; the old one is kept under another name,
    byte for byte, so nothing a user stored is lost."""
    env = host
    path = str(tmp_path / "calibration.json")
    for broken in ("{ not json", '{"entries": 3}'):
        with open(path, "w") as f:
            f.write(broken)
        cal = Calibration.from_json(calibrate(synthetic(), "m1", 2.0).to_json())
        env["CAL"].save(cal, path)
        kept = sorted(p for p in os.listdir(tmp_path) if p.startswith("calibration.json.unreadable-"))
        assert open(tmp_path / kept[-1]).read() == broken
        assert env["CAL"].lookup("m1", cal.steps, path).to_json() == cal.to_json()
    assert kept == ["calibration.json.unreadable-1", "calibration.json.unreadable-2"]


def _sample_with(env, m, sampler, scheduler, steps=12):
    import comfy.sample

    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return comfy.sample.sample(
        m,
        noise,
        steps,
        2.0,
        sampler,
        scheduler,
        env["pos"],
        env["neg"],
        torch.zeros(1, 3, 32, 32),
        seed=3,
        disable_pbar=True,
    )


def test_a_calibration_plans_the_schedule_of_a_speed_target(host, caplog):
    """Issue 18: the Calibrate node stores what the planner needs (never images) for its sampler and scheduler; a
    node at a speed target then runs the planned schedule (exactly its budget) and says so; another sampler or
    scheduler gets the evenly spaced schedule with a warning naming the difference."""
    from tcpade_core.calibrate import margin_note, planned_config, schedule_strip

    env = host
    node = env["nodes"]["TCPade_Calibrate"]
    cal = node.execute(
        env["model"], env["pos"], env["neg"], {"samples": torch.zeros(1, 3, 32, 32)}, 3, 12, 2.0, "euler", "simple", 2.0
    ).args[0]
    assert (cal.sampler, cal.scheduler, len(cal.plan_outputs), len(cal.plan_weights)) == ("euler", "simple", 12, 12)
    assert len(cal.sigmas) == 13 and cal.sigmas[0] > cal.sigmas[-1] == 0.0
    m = _attach(env, "TCPade_TCPadeCache", env["model"], calibration=cal)  # preset slow (2x)
    _sample(env, m)
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    settings = m.model_options["transformer_options"]["tcpade"]
    cfg, steps, err = planned_config(settings.cfg.with_(target_speedup=2.0), cal.plan_outputs, cal.plan_weights, 2.0)
    kept = margin_note(cfg, steps, 12)  # the plan is the even spacing where no schedule beat it by the margin
    assert rep.schedule == f"planned from calibration{' (even spacing)' if kept else ''}, predicted error {err:.3g}"
    assert (kept in rep.notes) if kept else not any("even spacing" in n for n in rep.notes)
    assert rep.target_note == f"planned schedule: 6 of 12 computes at steps {', '.join(map(str, steps))}"
    assert rep.computed == 6 and [s.step for s in rep.steps if s.computed] == steps and len(steps) == 6
    assert rep.strip() == schedule_strip(steps, 12)
    for sampler, scheduler, why in (
        ("dpmpp_2m", "simple", "sampler euler, not dpmpp_2m"),
        ("euler", "karras", "other sigmas (scheduler simple"),
    ):
        with caplog.at_level(logging.WARNING, logger="tcpade"):
            _sample_with(env, m, sampler, scheduler)
        rep = m.model_options["transformer_options"]["tcpade"].last_report
        assert any(
            n.startswith(f"schedule spaced evenly: the calibration's plan was made for {why}") for n in rep.notes
        )
        assert any(why in r.getMessage() for r in caplog.records) and rep.computed == 6
        assert rep.schedule == "calibrated for another run: spaced evenly"
    # not calibrated: evenly spaced, and the report says so; a method that does not plan says nothing
    m2 = _attach(env, "TCPade_TaylorSeer", env["model"], target_speedup=2.0)
    _sample(env, m2, steps=7)
    rep2 = m2.model_options["transformer_options"]["tcpade"].last_report
    assert rep2.schedule == "not calibrated (Calibrate plans the schedule)" and rep2.computed == 4
    # the authors' code (TC-Padé's mode official) keeps its own schedule: it does not plan
    m3 = _attach(
        env, "TCPade_TCPadeCache", env["model"], preset="custom", mode="official", target_speedup=2.0, calibration=cal
    )
    _sample(env, m3)
    assert m3.model_options["transformer_options"]["tcpade"].last_report.schedule == ""


@pytest.mark.parametrize(
    "nid", ["TCPade_TraCache", "TCPade_TeaCache", "TCPade_MagCache", "TCPade_Spectrum", "TCPade_FirstBlockCache"]
)
def test_every_cache_node_at_a_target_runs_the_calibration_s_plan(host, nid):
    """Issue 18 item 3: a cache node whose method plans (chosen on development runs and kept where the held-out runs
    did not lose, docs/plan_methods.txt) runs, at a speed target and with a calibration for its run, the schedule
    planned for its predictor, exactly; TraCache and Spectrum (their plans lost held out) keep the evenly spaced
    target with the calibration connected, and say nothing of a plan."""
    from tcpade_core.calibrate import margin_note, planned_config

    env = host
    cal = _calibrated(env)
    m = _attach(env, nid, env["model"], target_speedup=2.0, calibration=cal)
    _sample(env, m)
    settings = m.model_options["transformer_options"]["tcpade"]
    rep = settings.last_report
    cfg, steps, err = planned_config(settings.cfg.with_(target_speedup=2.0), cal.plan_outputs, cal.plan_weights, 2.0)
    if nid in ("TCPade_TraCache", "TCPade_Spectrum"):
        assert rep.schedule == "" and rep.computed == 6, nid
        assert rep.target_note.startswith("target 2x: budget 6 of 12 computes, spaced evenly"), nid
        return
    kept = margin_note(cfg, steps, 12)
    assert rep.schedule == f"planned from calibration{' (even spacing)' if kept else ''}, predicted error {err:.3g}", (
        nid
    )
    assert rep.computed == 6 and [s.step for s in rep.steps if s.computed] == steps, nid


def test_the_placement_widget_puts_an_uncalibrated_target_on_the_default_shape(host, caplog):
    """Issue 18 item 4 through the node: placement "shape" places the target's computes on the default shape
    (exactly its budget) and the node says "default shape"; a calibration made for another sampler is ignored
    with a warning and the schedule stays on the shape."""
    from tcpade_core import shape
    from tcpade_core.calibrate import schedule_strip
    from tcpade_core.config import budget

    env = host
    for nid in ("TCPade_TaylorSeer", "TCPade_TCPadeCache"):
        extra = dict(preset="custom") if nid == "TCPade_TCPadeCache" else {}
        m = _attach(env, nid, env["model"], target_speedup=2.0, placement="shape", **extra)
        _sample(env, m, steps=7)  # no calibration for 7 steps in this store
        rep = m.model_options["transformer_options"]["tcpade"].last_report
        want = shape.schedule(7, budget(7, 2.0), 1)
        assert rep.schedule == "default shape (not calibrated: Calibrate plans the schedule)", nid
        assert rep.target_note == "target 2x: budget 4 of 7 computes, placed by the default shape", nid
        assert rep.strip() == schedule_strip(want, 7) and rep.computed == 4, (nid, rep.strip())
    cal = _calibrated(env)
    m = _attach(env, "TCPade_TaylorSeer", env["model"], target_speedup=2.0, placement="shape", calibration=cal)
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        _sample_with(env, m, "dpmpp_2m", "simple")
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert rep.schedule == "calibrated for another run: default shape"
    assert any(
        n.startswith("schedule on the default shape: the calibration's plan was made for sampler") for n in rep.notes
    )
    assert rep.strip() == schedule_strip(shape.schedule(12, 6, 1), 12)


def test_taylorseer_order_at_a_target_reads_what_the_host_says_the_model_predicts(host, monkeypatch):
    """docs/order_eps.txt through the node, with the rule on: on the eps model A (DDIM) at 20 steps a TaylorSeer
    target runs order 2 and says so; at 15 steps and on the flow model at 20 steps it runs order 1; a typed order,
    1 included, is run as typed."""
    import comfy.sample

    import host_util as H

    from tcpade_core.config import budget

    monkeypatch.setattr(H.pack_module("tcpade_core.config"), "ORDER_BY_PREDICTION", True)  # the pack the host loaded
    env = host
    nodes = env["nodes"]
    model_a = nodes["TCPade_BenchModelLoader"].execute("A: DiT digits 16x16").args[0]
    pos, neg = nodes["TCPade_ClassLabel"].execute("A: digits", 2, "").args
    note = "order 2 at the target (eps prediction, 20 steps: docs/order_eps.txt)"
    for n, extra, want in ((20, {}, 2), (15, {}, 1), (20, dict(order=3), 3), (20, dict(order=1), 1)):
        m = _attach(env, "TCPade_TaylorSeer", model_a, target_speedup=2.0, **extra)
        noise = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
        comfy.sample.sample(
            m, noise, n, 2.0, "ddim", "ddim_uniform", pos, neg, torch.zeros(1, 1, 16, 16), seed=3, disable_pbar=True
        )
        rep = m.model_options["transformer_options"]["tcpade"].last_report
        assert (note in rep.notes) == (want == 2 and n == 20), (n, rep.notes)
        assert (f"order={want}" in rep.settings) == (want != 1), (n, rep.settings)
        assert rep.computed == budget(len(rep.steps), 2.0) and (len(rep.steps) >= 20) == (n == 20), n
    m = _attach(env, "TCPade_TaylorSeer", env["model"], target_speedup=2.0)
    _sample(env, m, steps=20)
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert not any(x.startswith("order ") for x in rep.notes) and "order=" not in rep.settings, rep.settings


def test_calibrate_records_what_the_model_outputs_beside_how_its_steps_are_weighted(host, monkeypatch):
    """The Calibrate node's trajectory says how the planner weighs its steps (``prediction``) and what the model
    outputs (``output``, which calibrated_run fills TaylorSeer's order from): flow / flow on the flow model B,
    eps / eps on the DDIM model A."""
    import host_util as H

    env = host
    cal_mod = H.pack_module("tcpade_core.calibrate")
    seen, real = [], cal_mod.calibrate
    monkeypatch.setattr(cal_mod, "calibrate", lambda traj, *a, **k: seen.append(traj) or real(traj, *a, **k))
    nodes = env["nodes"]
    model_a = nodes["TCPade_BenchModelLoader"].execute("A: DiT digits 16x16").args[0]
    pos_a, neg_a = nodes["TCPade_ClassLabel"].execute("A: digits", 2, "").args
    node = nodes["TCPade_Calibrate"]
    node.execute(env["model"], env["pos"], env["neg"], {"samples": torch.zeros(1, 3, 32, 32)}, 3, 6, 2.0, "euler",
                 "simple", 2.0)  # fmt: skip
    node.execute(model_a, pos_a, neg_a, {"samples": torch.zeros(1, 1, 16, 16)}, 3, 6, 2.0, "ddim", "ddim_uniform", 2.0)
    assert [(tr.prediction, tr.output) for tr in seen] == [("flow", "flow"), ("eps", "eps")]


def test_auto_placement_puts_a_low_target_on_the_default_shape_on_flow_models_only(host):
    """Placement "auto" (the default, docs/model_d.txt) through the nodes: below 2x on the flow model B run for 20
    steps or more, a node without a calibration for its run places the target's computes on the default shape,
    exactly, and says why; at 2x, and at 9 steps, it spaces them evenly; on the eps model A (DDIM) below 2x it spaces
    them evenly too. Placement "even" spaces them evenly; nodes without a placement widget (TeaCache) run the
    default, auto."""
    import comfy.sample

    from tcpade_core import shape
    from tcpade_core.calibrate import schedule_strip
    from tcpade_core.config import budget

    env = host
    shaped = "default shape (below 2x on a flow model from 20 steps, not calibrated: Calibrate plans the schedule)"
    even = "not calibrated (Calibrate plans the schedule)"
    for nid in ("TCPade_TaylorSeer", "TCPade_TCPadeCache"):
        extra = dict(preset="custom") if nid == "TCPade_TCPadeCache" else {}
        for n, target, want_shape in ((20, 1.5, True), (20, 2.0, False), (9, 1.5, False)):  # no calibration for them
            m = _attach(env, nid, env["model"], target_speedup=target, **extra)
            _sample(env, m, steps=n)
            rep = m.model_options["transformer_options"]["tcpade"].last_report
            k = budget(n, target)
            assert rep.computed == k, (nid, n, target)
            assert ("placed by the default shape" if want_shape else "spaced evenly") in rep.target_note, nid
            assert rep.schedule == (shaped if want_shape else even), nid
            if want_shape and nid == "TCPade_TaylorSeer":  # no signal moves a compute: exactly the shape
                assert rep.strip() == schedule_strip(shape.schedule(n, k, 1), n), rep.strip()
    for nid, extra, want_shape in (
        ("TCPade_TaylorSeer", dict(placement="even"), False),
        ("TCPade_TeaCache", {}, True),
    ):
        m = _attach(env, nid, env["model"], target_speedup=1.5, **extra)
        _sample(env, m, steps=20)
        rep = m.model_options["transformer_options"]["tcpade"].last_report
        assert rep.computed == budget(20, 1.5), nid
        assert ("placed by the default shape" if want_shape else "spaced evenly") in rep.target_note, nid
        assert rep.schedule == (shaped if want_shape else even), nid
    n = 20
    nodes = env["nodes"]
    model_a = nodes["TCPade_BenchModelLoader"].execute("A: DiT digits 16x16").args[0]
    pos, neg = nodes["TCPade_ClassLabel"].execute("A: digits", 2, "").args
    m = _attach(env, "TCPade_TaylorSeer", model_a, target_speedup=1.5)
    noise = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    comfy.sample.sample(
        m, noise, n, 2.0, "ddim", "ddim_uniform", pos, neg, torch.zeros(1, 1, 16, 16), seed=3, disable_pbar=True
    )
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    assert rep.schedule == even and rep.computed == budget(n, 1.5)
    assert rep.target_note.startswith("target 1.5x: budget 13 of 20 computes, spaced evenly"), rep.target_note
