"""The method descriptors: every gate composed with every predictor, capabilities, calibration mappings."""

from __future__ import annotations

import pytest
import torch

from tcpade_core import CacheRun, ConfigError, make_config
from tcpade_core import methods as M
from tcpade_core.calibrate import Calibration
from tcpade_core.config import ComposedConfig, budget

# one config per gate / predictor the pack has (TC-Padé's error gate is its own entry)
CONFIGS = {
    "none": make_config("none"),
    "reuse": make_config("reuse", interval=3),
    "taylorseer": make_config("taylorseer", interval=3, order=2),
    "teacache": make_config("teacache", threshold=0.3),
    "tracache": make_config("tracache", stride=3),
    "tcpade": make_config("tcpade", theta=1.0),
    "tcpade_error": make_config("tcpade", gate="error", theta=2.0, error_tolerance=0.05),
    "tcpade_official": make_config("tcpade", mode="official", interval=4, start_step=2),
    "magcache": make_config("magcache", threshold=0.3, K=3, retention_ratio=0.1),
    "first_block": make_config("first_block", threshold=0.05),
    "spectrum": make_config("spectrum", w=0.5, warmup_steps=2),
}


def _run(cfg, steps: int = 20):
    """A toy trajectory through the engine: (outputs per step, computed flags)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 8, generator=g) * 0.3
    x = torch.randn(2, 8, generator=g)
    run = CacheRun(cfg)
    outs = []
    for i in range(steps):
        t = 1.0 - i / steps
        run.begin_step(i, steps, t)
        if run.leading_blocks:  # a leading block runs on every step, ahead of the cached stack
            h = x + 0.1 * torch.tanh(x @ w.T + t)
            y = run("c", h, lambda h, t=t: torch.tanh(h @ w + t), lambda x=x: x * (1 + 0.1 * t), lambda: (x, h))
        else:
            y = run("c", x, lambda h, t=t: torch.tanh(h @ w + t), lambda x=x: x * (1 + 0.1 * t))
        outs.append(y)
        x = x + 0.2 * (y - x)
    rep = run.end_run()
    return outs, [r.computed for r in rep.steps]


@pytest.mark.parametrize("gate", list(CONFIGS))
@pytest.mark.parametrize("pred", list(CONFIGS))
def test_every_gate_with_every_predictor_runs_or_is_refused(gate, pred):
    g, p = CONFIGS[gate], CONFIGS[pred]
    refused = gate == "tcpade_error" and pred not in ("tcpade", "tcpade_error")
    if refused:  # the error gate reads the predictor's self-estimate, which only TC-Padé's predictor provides
        with pytest.raises(ConfigError, match="self_error"):
            ComposedConfig(gate=g, predictor=p)
        return
    outs, computed = _run(ComposedConfig(gate=g, predictor=p))
    assert all(bool(torch.isfinite(o).all()) for o in outs) and computed[0]
    if gate == pred:  # composed with itself: the native method, bit for bit
        ref, ref_computed = _run(g)
        assert computed == ref_computed and all(torch.equal(a, b) for a, b in zip(outs, ref))


def test_official_gate_with_another_predictor_reads_five_residuals():
    """At threshold 0 the curvature test fails as soon as five residuals exist: every step computes, as in the
    authors' method (its gate declared three and computed 8 of 20 composed)."""
    off = make_config("tcpade", mode="official", threshold=0.0)
    _, computed = _run(ComposedConfig(gate=off, predictor=CONFIGS["taylorseer"]))
    assert sum(computed) == 20
    assert sum(_run(off)[1]) == 20


def test_error_gate_reads_the_estimate_it_declares():
    gate, pred = M.build(CONFIGS["tcpade_error"])
    assert gate.reads == {"self_error"} <= pred.provides and pred.self_check
    _, pred2 = M.build(CONFIGS["tcpade"])
    assert not pred2.self_check  # served only when a gate reads it
    computed = _run(CONFIGS["tcpade_error"])[1]
    assert 5 < sum(computed) < 20  # it decides from its estimate, neither always nor never


def test_speed_target_is_one_range_checked_once_and_one_budget():
    with pytest.raises(ConfigError, match=r"target_speedup must be 0 \(off\) or a number in \[1.0, 100.0\]"):
        make_config("taylorseer", target_speedup=0.5)
    with pytest.raises(ConfigError, match="target_speedup"):
        CacheRun(make_config("taylorseer"), target_speedup=101)
    cfg = make_config("tcpade", target_speedup=2.5)
    gate, _ = M.build(cfg)
    assert gate.plan(20) == budget(20, 2.5) == 8 and sum(_run(cfg)[1]) == 8
    assert "target" not in cfg.describe()


def test_every_node_method_has_a_node_and_its_widgets_set_real_parameters():
    assert [m.node_id for m in M.NODES] == [
        "TCPade_TaylorSeer",
        "TCPade_TeaCache",
        "TCPade_TraCache",
        "TCPade_TCPadeCache",
        "TCPade_MagCache",
        "TCPade_FirstBlockCache",
        "TCPade_Spectrum",
    ]
    for m in M.NODES:
        params = {f for f in m.config.__dataclass_fields__}
        assert all(w.param in params for w in m.all_widgets() if w.param), m.name
        assert m.leading(m.config()) == (1 if m.name == "first_block" else 0)
        ui = M.ui_table()[m.node_id]
        assert ui["label"] == m.label and all(o["widget"] in {w.name for w in m.all_widgets()} for o in ui["overrides"])


def _cal(**kw):
    base = dict(
        model_key="k",
        steps=20,
        target=2.0,
        teacache_coefficients=(2.0, 0.0),
        teacache_threshold=0.7,
        taylorseer={"interval": 3, "order": 2, "first_enhance": 1},
        tcpade_theta=1.2,
        tcpade_warmup=2,
        tcpade_thetas={"default": 1.2, "paper_literal": 0.35},
    )
    base.update(kw)
    return Calibration(**base)


def test_taylorseer_order_at_a_target_reads_the_prediction_type_and_the_step_count(monkeypatch):
    """docs/order_eps.txt: with the rule on, a speed target on an eps model from 20 steps runs order 2 where the user
    left the order at its default; flow, fewer steps, an unknown prediction, a typed order, no target, or the rule
    off leave the config as it is."""
    from tcpade_core import config as C

    ts = M.METHODS["taylorseer"]
    assert ts.at_target is M.taylorseer_order
    assert [C.order_for(p, n) for p, n in (("eps", 20), ("eps", 19), ("flow", 30), (None, 30), ("eps", None))] == [
        2,
        1,
        1,
        1,
        1,
    ]
    cfg = make_config("taylorseer", target_speedup=2.0)
    monkeypatch.setattr(C, "ORDER_BY_PREDICTION", True)
    two, note = ts.at_target(cfg, "eps", 20, frozenset({"target_speedup"}))
    assert two == cfg.with_(order=2) and note == "order 2 at the target (eps prediction, 20 steps: docs/order_eps.txt)"
    for args in (
        (cfg, "eps", 19, frozenset()),
        (cfg, "flow", 30, frozenset()),
        (cfg, "v", 30, frozenset()),
        (cfg, "eps", 30, frozenset({"order"})),
        (make_config("taylorseer"), "eps", 30, frozenset()),
    ):
        assert ts.at_target(*args) == (args[0], ""), args[1:]
    monkeypatch.setattr(C, "ORDER_BY_PREDICTION", False)
    assert ts.at_target(cfg, "eps", 20, frozenset()) == (cfg, "")
    assert all(m.at_target is None for m in M.METHODS.values() if m.name != "taylorseer")
    monkeypatch.setattr(C, "ORDER_BY_PREDICTION", True)  # the one dispatcher the nodes and benchmarks call
    assert M.fill_at_target(cfg, "eps", 20) == (two, note)
    tea = make_config("teacache", target_speedup=2.0)
    assert M.fill_at_target(tea, "eps", 20) == (tea, "")


def test_taylorseer_order_widget_auto_is_left_to_the_pack_and_a_typed_order_is_the_users():
    """The order widget's default, -1 (auto), sets no config value and is not the user's (the rule above or a
    calibration fills it); any order typed, 1 included, is passed on and is the user's."""
    ts = M.METHODS["taylorseer"]
    (w,) = [w for w in ts.all_widgets() if w.name == "order"]
    assert (w.default, w.auto, w.min, w.max) == (-1, -1, -1, 4)
    assert ts.user_set({"order": -1, "interval": 4}) == frozenset()
    assert ts.params({"order": -1, "interval": 4}) == {"interval": 4}
    for typed in (0, 1, 2):
        assert ts.user_set({"order": typed}) == frozenset({"order"})
        assert ts.params({"order": typed}) == {"order": typed}
    assert ts.user_set({"interval": 5}) == frozenset({"interval"}) and ts.params({"interval": 5}) == {"interval": 5}
    assert make_config("taylorseer", **ts.params({"order": -1})).order == 1
    others = [w for m in M.METHODS.values() for w in m.all_widgets() if w.auto is not None]
    assert others == [w]
    autos = {k: v["autos"] for k, v in M.ui_table().items() if v["autos"]}  # what the web extension labels "auto"
    assert autos == {"TCPade_TaylorSeer": {"order": -1}}


def test_calibration_fills_only_what_the_user_left():
    ts = M.METHODS["taylorseer"]
    a = ts.calibrate(make_config("taylorseer"), _cal(), 0.0, frozenset())
    assert a.values == {"interval": 3, "order": 2, "first_enhance": 1} and a.cfg.interval == 3
    b = ts.calibrate(make_config("taylorseer", interval=5), _cal(), 0.0, frozenset({"interval"}))
    assert b.cfg.interval == 5 and "interval" not in b.values and b.cfg.order == 2
    # at a speed target the target (or the calibration's plan) places the computes: the order stays the node's
    t = ts.calibrate(make_config("taylorseer", target_speedup=2.0), _cal(), 2.0, frozenset({"target_speedup"}))
    assert t.values == {} and t.target == 2.0 and t.cfg == make_config("taylorseer", target_speedup=2.0)
    none = ts.calibrate(make_config("taylorseer"), _cal(taylorseer=None), 0.0, frozenset())
    assert none.values == {"target_speedup": 2.0} and none.target == 2.0
    tea = M.METHODS["teacache"]
    c = tea.calibrate(make_config("teacache", threshold=0.2), _cal(), 0.0, frozenset({"threshold"}))
    assert c.cfg.threshold == 0.2 and c.cfg.coefficients == (2.0, 0.0) and set(c.values) == {"coefficients"}
    tra = M.METHODS["tracache"]
    assert tra.calibrate is None


def test_theta_is_fitted_and_applied_per_reading():
    tc = M.METHODS["tcpade"]
    a = tc.calibrate(make_config("tcpade"), _cal(), 0.0, frozenset())
    assert a.cfg.theta == 1.2 and a.values == {"theta": 1.2}
    lit = tc.calibrate(make_config("tcpade", mode="paper_literal"), _cal(), 0.0, frozenset())
    assert lit.cfg.theta == 0.35 and lit.cfg.mode == "paper_literal"
    old = _cal(tcpade_thetas={})  # a file from before per-reading θ: the default's only
    assert tc.calibrate(make_config("tcpade", mode="paper_literal"), old, 0.0, frozenset()).values == {
        "target_speedup": 2.0
    }
    # with a target the warm-up is filled; the authors' code has nothing to calibrate
    assert tc.calibrate(make_config("tcpade", target_speedup=2.0), _cal(), 2.0, frozenset()).values == {
        "warmup_steps": 2
    }
    off = make_config("tcpade", mode="official")
    assert tc.calibrate(off, _cal(), 0.0, frozenset()).values == {}


def test_error_gate_estimate_is_relative_to_what_is_predicted():
    """The self-estimate divides a residual's error by the residual's norm (it divided by the output's)."""
    from tcpade_core.engine import Step, StreamState
    from tcpade_core.history import ResidualHistory

    cfg = make_config("tcpade", gate="error", target="residual", numerator="recent", mode="default")
    gate, pred = M.build(cfg)
    hist = ResidualHistory(pred.capacity)
    st = StreamState(hist, hist, pred.State(), gate.State())
    h = torch.full((4,), 100.0)  # a large input: the output is ~100x the residual
    for i, r in enumerate((1.0, 2.0, 4.0)):  # residuals 1, 2, 4 at steps 0, 1, 2
        pred.observe(Step(i, 10, 1.0 - i / 10), st, h, h + r)
    err, k0 = st.pred.self_error
    # from residuals 1 and 2 the linear guess at step 2 is 3 (sigma_stab damps it: guess <= 3); truth 4
    guess = pred.value(2, "mid", [e for e in hist.latest(3)][1:])
    assert k0 == 1 and err == pytest.approx(float((guess - 4.0).abs().max()) / 4.0, rel=1e-6)
