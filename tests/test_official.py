"""TC-Padé as the authors' code does it (``mode="official"``): expected values worked out by hand."""

import math

import pytest
import torch

from tcpade_core import CacheRun, ConfigError, TCPadeConfig, TCPadeOfficialConfig, make_config
from tcpade_core import gates as G
from tcpade_core import predictors as P
from tcpade_core.engine import Step, StreamState
from tcpade_core.history import ResidualHistory


def drive(cfg, steps, stack, inputs):
    """Run the engine over ``steps`` steps, stream "c"; returns (report, outputs, run)."""
    run = CacheRun(cfg)
    outs = []
    for i in range(steps):
        run.begin_step(i, steps, 1 - i / steps)
        outs.append(run("c", inputs(i), lambda h, i=i: stack(h, i)))
    return run.end_run(), outs, run


def smooth(h, i):
    return h + 0.5 + 0.01 * i


@pytest.mark.parametrize(
    "steps,computed",
    [
        (20, [0, 1, 2, 3, 4, 8, 16, 19]),
        (50, [0, 1, 2, 3, 4, 8, 16, 24, 32, 40, 48, 49]),
    ],
)
def test_schedule_at_the_codes_defaults(steps, computed):
    rep, _, _ = drive(
        make_config("tcpade", mode="official"), steps, smooth, lambda i: torch.full((1, 4), 1.0 - i / steps)
    )
    assert [r.step for r in rep.steps if r.computed] == computed
    # N = 1.4: the score (<= 1) always passes, so the schedule alone decides
    assert all(r.reason == "curvature<N" for r in rep.steps if not r.computed)


def test_curvature_test_needs_five_residuals_and_compares_with_n():
    hist = ResidualHistory(6)
    straight = [torch.tensor([float(k), 0.0]) for k in range(4)]
    for k, r in enumerate(straight):
        hist.push(k, 0.0, r)
    assert G.curvature_test(hist, 0.0) == (True, None)  # 4 stored: passes whatever N is
    hist.push(4, 0.0, torch.tensor([3.0, 1.0]))  # a right angle: score sqrt(2)/2
    ok, score = G.curvature_test(hist, 0.7)
    assert score == pytest.approx(math.sqrt(2) / 2, abs=1e-6) and ok is False
    assert G.curvature_test(hist, 0.71)[0] is True
    # a low N makes the engine compute the step the test fails on
    steps = 12
    cfg = TCPadeOfficialConfig(threshold=0.05, interval=100, start_step=0)
    wiggle = lambda h, i: h + torch.tensor([[float(i), float(i % 2)]])
    rep, _, _ = drive(cfg, steps, wiggle, lambda i: torch.zeros(1, 2))
    assert any(r.reason == "curvature>=N" and r.computed for r in rep.steps)


def test_pade_clamp_and_blend_by_hand():
    cfg = TCPadeOfficialConfig()
    p = P.OfficialPadePredictor(cfg)
    r1 = torch.tensor([2.0, 1.0], dtype=torch.float64)
    r2 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    out = p._pade([r1, r2, r2, r2], P.OfficialState(order=3), True)
    # element 0: sf = exp(-5 * 1 / (1.5 + 1e-7)); Padé 3 sf / (1 - 0.1 sf) is far below the recent average
    # 0.6 * 2 + 0.4 * 1 = 1.6, so it is clamped to 1.6 - max(0.5 * 1, 0.1 * 1.5) = 1.1, then blended with
    # b = 0.7 sf + 0.3: b * 1.1 + (1 - b) * 1.6
    sf = math.exp(-5.0 / (1.5 + 1e-7))
    b = 0.7 * sf + 0.3
    # element 1: R1 == R2: sf = 1, Padé (2 - 1) / 0.9 = 1.111 > 1.0 + 0.1 -> clamped to 1.1, b = 1
    assert out.tolist() == pytest.approx([b * 1.1 + (1 - b) * 1.6, 1.1], abs=1e-12)
    # when the curvature test fails the denominator is 1: element 1 is (2 - 1) / 1 = 1.0 + 0 (inside the clamp)
    assert p._pade([r1, r2, r2, r2], P.OfficialState(order=3), False)[1] == pytest.approx(1.0, abs=1e-12)


def test_weighted_mean_fallback_and_adaptive_order():
    cfg = TCPadeOfficialConfig(order=3)
    p = P.OfficialPadePredictor(cfg)
    r = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])]
    # fewer than order + 1 = 4 residuals: (0.4 * 1 + 0.3 * 2 + 0.2 * 4) / 0.9 times the stability factor
    out = p._pade(r, P.OfficialState(order=3, stability=0.8), True)
    assert float(out) == pytest.approx((0.4 + 0.6 + 0.8) / 0.9 * 0.8, abs=1e-6)
    # the order adapts from the cosine similarity of the newest residuals; the stability from ||R1 - R2||
    hist = ResidualHistory(6)
    st = StreamState(hist, hist, p.State(), G.Gate.State())
    step = lambda i: Step(i, 20, 1.0)
    for i, v in enumerate(([1.0, 0.0], [1.0, 0.01], [1.0, 0.02])):  # nearly parallel: order 3 (<= 4)
        p.observe(step(i), st, torch.zeros(2), torch.tensor(v))
    assert st.pred.order == 3
    assert st.pred.stability == pytest.approx(max(0.8, 1 / (1 + 10 * 0.01)), abs=1e-6)
    for i, v in enumerate(([0.0, 1.0], [1.0, 0.0]), start=3):  # orthogonal turns: order 2
        p.observe(step(i), st, torch.zeros(2), torch.tensor(v))
    assert st.pred.order == 2 and st.pred.stability == 0.8


def test_history_includes_predicted_residuals_and_reconstruction():
    cfg = TCPadeOfficialConfig(interval=100, start_step=2)
    inputs = lambda i: torch.full((1, 3), 1.0 - 0.1 * i)
    rep, outs, run = drive(cfg, 6, smooth, inputs)
    assert rep.strip() == "###..#"
    st = run.streams["c"]  # kept until reset()
    entries = st.history.latest(6)
    assert [e.step for e in entries] == [5, 4, 3, 2, 1, 0]
    assert [e.computed for e in entries] == [True, False, False, True, True, True]
    # step 3 is in the early phase (3 <= 0.3 * 20): R = 0.9 R(step 2) + 0.1 R(step 1), output = h3 + R + 0.2 (h3 - h2)
    r = {i: 0.5 + 0.01 * i for i in range(3)}  # computed residuals of steps 0-2
    h3, h2 = 1.0 - 0.3, 1.0 - 0.2
    want3 = h3 + (0.9 * r[2] + 0.1 * r[1]) + 0.2 * (h3 - h2)
    assert outs[3].flatten().tolist() == pytest.approx([want3] * 3, abs=1e-6)
    # the stored residual of a predicted step is prediction - input
    assert entries[2].value.flatten().tolist() == pytest.approx([want3 - h3] * 3, abs=1e-6)


def test_phase_switch_coded_20_or_scaled():
    coded = P.OfficialPadePredictor(TCPadeOfficialConfig())
    run = P.OfficialPadePredictor(TCPadeOfficialConfig(phase_steps="run"))
    assert [coded.phase(i, 50) for i in (6, 7, 16, 17, 40)] == ["early", "mid", "mid", "late", "late"]
    assert [run.phase(i, 50) for i in (15, 16, 40, 41)] == ["early", "mid", "mid", "late"]


def test_official_mode_config_routes_and_errors():
    assert isinstance(make_config("tcpade", mode="official", interval=6), TCPadeOfficialConfig)
    with pytest.raises(ConfigError, match="TCPadeOfficialConfig"):
        TCPadeConfig(mode="official")
    with pytest.raises(ConfigError, match=r"phase_steps must be one of 'coded', 'run'"):
        TCPadeOfficialConfig(phase_steps="scaled")
    with pytest.raises(ConfigError, match=r"start_step must be in \[0, 1000\]"):
        TCPadeOfficialConfig(start_step=-1)
