"""MagCache: the accumulation rule's decisions on constructed ratios, the step-count mapping, the ratio measurement,
its config errors, the published tables, and the calibration filling only what the user left."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tcpade_core import CacheRun, ConfigError, make_config
from tcpade_core import magcache_tables as MT
from tcpade_core import methods as M
from tcpade_core.calibrate import Calibration, Trajectory
from tcpade_core.config import ComposedConfig, budget
from tcpade_core.engine import Step, StreamState
from tcpade_core.gates import MagCacheGate
from tcpade_core.history import ResidualHistory


def _strip(cfg, steps: int, target: float = 0.0):
    """The computed strip ('#' computed, '.' skipped) of ``cfg`` on a smooth toy stack."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 8, generator=g) * 0.3
    x = torch.randn(2, 8, generator=g)
    run = CacheRun(cfg, target_speedup=target or None)
    for i in range(steps):
        t = 1.0 - i / steps
        run.begin_step(i, steps, t)
        y = run("c", x, lambda h, t=t: torch.tanh(h @ w + t))
        assert bool(torch.isfinite(y).all())
        x = x + 0.2 * (y - x)
    rep = run.end_run()
    return rep.strip(), rep


def _cfg(ratios, **kw):
    return make_config("magcache", ratios=ratios, always_compute=kw.pop("always_compute", ()), **kw)


RATIOS = (1.0, 1.0, 1.1, 1.1, 1.0, 1.0, 1.0, 0.5)


def test_hand_worked_schedule():
    """threshold 0.25, K 2, retention 0.25 over 8 steps (skipping from step int(8 x 0.25) = 2):
    2: ratio 1.1, err 0.1 -> skip; 3: ratio 1.21, err 0.1 + 0.21 = 0.31 -> compute, reset;
    4: ratio 1, err 0, 1 step -> skip; 5: 2 steps -> skip; 6: 3 steps > K -> compute, reset;
    7: ratio 0.5, err 0.5 -> compute."""
    strip, rep = _strip(_cfg(RATIOS, threshold=0.25, K=2, retention_ratio=0.25), 8)
    assert strip == "##.#..##"
    reasons = [r.reason for r in rep.steps]
    assert reasons[:2] == ["retention", "retention"] and reasons[3] == "err>=δ" and reasons[6] == "K reached"
    assert rep.steps[2].gate == pytest.approx(0.1, abs=1e-6) and rep.steps[3].gate == pytest.approx(0.31, abs=1e-6)
    # K 3: step 6 skips too (err still 0); retention 0.5: nothing skips before step 4
    assert _strip(_cfg(RATIOS, threshold=0.25, K=3, retention_ratio=0.25), 8)[0] == "##.#...#"
    assert _strip(_cfg(RATIOS, threshold=0.25, K=2, retention_ratio=0.5), 8)[0] == "####..##"
    # K 0 never skips; threshold 0 never skips (err < 0 is never true)
    assert _strip(_cfg(RATIOS, threshold=0.25, K=0, retention_ratio=0.25), 8)[0] == "#" * 8
    assert _strip(_cfg(RATIOS, threshold=0.0, K=5, retention_ratio=0.0), 8)[0] == "#" * 8


def test_always_computed_step_leaves_the_accumulators():
    """Its FLUX forward computes calibration step 11 whatever the error, and keeps counting after it: with step 4
    always computed, steps 5 and 6 are the 2nd and 3rd accumulated steps (not a fresh start)."""
    strip = _strip(_cfg(RATIOS, threshold=0.25, K=3, retention_ratio=0.25, always_compute=(4,)), 8)[0]
    # 2 skip (1 step), 3 compute (err 0.31), 4 always, 5: 1 step, 6: 2 steps, 7: err 0.5 -> compute
    assert strip == "##.##..#"
    strip = _strip(_cfg(RATIOS, threshold=0.25, K=1, retention_ratio=0.25, always_compute=(4,)), 8)[0]
    assert strip == "##.##.##"  # K 1: step 6 is the 2nd accumulated step


def test_step_count_mapping_rounds_down():
    assert [MT.calibration_step(i, 8, 4) for i in range(8)] == [0, 0, 0, 1, 1, 2, 2, 3]
    assert [MT.calibration_step(i, 28, 28) for i in range(28)] == list(range(28))
    assert [MT.calibration_step(i, 20, 28) for i in (0, 1, 10, 19)] == [0, 1, 14, 27]
    assert MT.calibration_step(0, 1, 28) == 0
    # the gate reads the mapped ratio: four ratios for an 8-step run, skipping from step 1
    strip = _strip(_cfg((1.0, 1.3, 1.0, 1.0), threshold=0.2, K=5, retention_ratio=0.125), 8)[0]
    # steps 1, 2 read ratio 1.0 (skip), 3, 4 read 1.3 (err 0.3 -> compute; then 0.3 again -> compute), 5..7 skip
    assert strip == "#..##..."


def test_flux_profile_default_and_published_schedule():
    """The default ratios are the published FLUX table (28 steps, ANCHORS.md), with step 11 always computed; its
    README setting (0.24, K 5, retention 0.1) at 28 steps gives the hand-worked schedule below."""
    cfg = make_config("magcache")
    assert cfg.ratios == MT.TABLES["flux"].ratios and len(cfg.ratios) == 28 and cfg.always_compute == (11,)
    assert (cfg.threshold, cfg.K, cfg.retention_ratio) == (0.06, 2, 0.2)
    assert cfg.ratios[:4] == (1.0, 1.21094, 1.11719, 1.07812) and cfg.ratios[-1] == 0.89062
    # 2: 1.11719 -> err 0.117 skip; 3: x1.07812 = 1.2045 -> err 0.32 compute; 4: 0.0625 skip; 5: 1.104 -> 0.166
    # skip; 6: 1.1385 -> 0.305 compute; ...; 11 always
    strip = _strip(make_config("magcache", threshold=0.24, K=5, retention_ratio=0.1), 28)[0]
    assert strip[:12] == "##.#..#...##"
    assert strip == "##.#..#...##.....#.....#..#."


def test_published_tables():
    assert set(MT.TABLES) >= {"flux", "flux_kontext", "chroma", "qwen_image", "wan2.1_t2v_1.3B", "wan2.1_t2v_14B"}
    wan = MT.TABLES["wan2.1_t2v_1.3B"]
    assert wan.streams == 2 and len(wan.ratios) == 100 and len(wan.profile()) == 50
    assert wan.profile()[:3] == (1.0, 1.0124, 1.00166)  # the first stream's (even) entries
    assert MT.TABLES["flux"].streams == 1 and MT.TABLES["chroma"].always_compute == ()
    for name, t in MT.TABLES.items():
        assert all(math.isfinite(r) and r > 0 for r in t.ratios), name
        assert t.profile()[0] == 1.0, name
    assert MT.CHOICES[0] == MT.AUTO and MT.DEFAULT_TABLE == "flux"


def test_flat_profile_leaves_k_and_retention_to_decide():
    """The uncalibrated default for a model without a table: every ratio 1.0, so the error stays 0 and a step
    computes after every K skipped ones, from step int(N x retention)."""
    flat = MT.table(MT.FLAT)
    assert flat.profile() == (1.0,) and flat.always_compute == () and MT.UNCALIBRATED == MT.FLAT
    assert MT.FLAT in MT.CHOICES and MT.table("flux") is MT.TABLES["flux"]
    cfg = make_config("magcache", ratios=flat.profile(), always_compute=())
    assert _strip(cfg, 20)[0] == "####..#..#..#..#..#."
    assert _strip(cfg.with_(K=5, retention_ratio=0.1), 20)[0] == "##.....#.....#.....#"
    assert cfg.describe() == "magcache(threshold=0.06, K=2, retention_ratio=0.2, ratios=(1 steps))"


def test_accumulation_is_float32_as_in_its_node():
    gate = MagCacheGate(1.0, 10, 0.0, (1.0, 1.1, 1.1, 1.1))
    st = StreamState(ResidualHistory(1), ResidualHistory(1), None, gate.State())
    errs = []
    for i in range(1, 4):
        d = gate.decide(Step(i, 4, 0.0), st, None)
        errs.append(d.gate)
    f = np.float32
    r, e = f(1.0), f(0.0)
    want = []
    for _ in range(3):
        r = f(r * f(1.1))
        e = f(e + abs(f(1.0) - r))
        want.append(float(e))
    assert errs == want and isinstance(st.gate.err, np.float32)


def test_measured_ratio_is_the_token_mean_of_norm_ratios():
    """Per token ||r_t|| / ||r_(t-1)|| (norm over channels), averaged over tokens: tokens with norms (1, 2) then
    (3, 2) give ratios (3, 1), mean 2 (not the ratio of the whole norms, sqrt(13 / 5) = 1.61)."""
    h = [torch.zeros(1, 2, 4) + 0.5 * i for i in range(3)]
    r0 = torch.tensor([[[1.0, 0, 0, 0], [0, 2.0, 0, 0]]])
    r1 = torch.tensor([[[0, 3.0, 0, 0], [0, 0, 0, -2.0]]])
    r2 = r1 / 3.0  # ratios (1/3, 1/3): rounded to 5 decimals as its node prints them
    ys = [h[0] + r0, h[1] + r1, h[2] + r2]
    assert MT.measure_ratios(h, ys) == (1.0, 2.0, 0.33333)
    assert MT.measure_ratios(h[:1], ys[:1]) == (1.0,)
    with pytest.raises(ValueError, match="same length"):
        MT.measure_ratios(h, ys[:2])
    # a zero previous residual: that token counts as ratio 1, never Inf/NaN
    z = [torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)]
    out = MT.measure_ratios(z, [z[0], z[1] + r0])
    assert out == (1.0, 1.0)


def test_calibration_measures_the_ratios_from_its_trajectory():
    from tcpade_core.calibrate import calibrate

    g = torch.Generator().manual_seed(3)
    traj = Trajectory()
    x = torch.randn(1, 6, 4, generator=g)
    for i in range(8):
        y = x + (1.0 + 0.1 * i) * torch.randn(1, 6, 4, generator=g)
        traj.t.append(1.0 - i / 8)
        traj.inputs.append(x)
        traj.outputs.append(y)
        traj.modulated.append(x * 1.1)
        x = y
    cal = calibrate(traj, "k", 2.0)
    assert cal.mag_ratios == MT.measure_ratios(traj.inputs, traj.outputs) and len(cal.mag_ratios) == 8
    back = Calibration.from_json(cal.to_json())
    assert back.mag_ratios == cal.mag_ratios and "MagCache ratios (8 steps)" in cal.describe()
    old = cal.to_json()
    del old["mag_ratios"]  # a file from before MagCache: still loads, without ratios
    assert Calibration.from_json(old).mag_ratios is None


def _cal(ratios):
    return Calibration("k", 4, 2.0, (1.0, 0.0), None, None, None, 1, mag_ratios=ratios)


def test_calibration_fills_the_ratios_only_when_left_at_auto():
    mc = M.METHODS["magcache"]
    cal = _cal((1.0, 1.2, 1.1, 0.9))
    a = mc.calibrate(make_config("magcache"), cal, 0.0, frozenset())
    assert a.cfg.ratios == (1.0, 1.2, 1.1, 0.9) and a.cfg.always_compute == ()
    assert a.values == {"mag ratios": "(calibrated, 4 steps)"} and a.target == 0.0
    b = mc.calibrate(make_config("magcache", threshold=0.3), cal, 2.0, frozenset({"threshold", "ratios"}))
    assert b.cfg == make_config("magcache", threshold=0.3) and b.values == {} and b.target == 2.0
    c = mc.calibrate(make_config("magcache", threshold=0.3), cal, 0.0, frozenset({"threshold"}))
    assert c.cfg.threshold == 0.3 and c.cfg.ratios == (1.0, 1.2, 1.1, 0.9)
    assert mc.calibrate(make_config("magcache"), _cal(None), 0.0, frozenset()).values == {}
    # the node's ratios widget is the user's only when moved off auto
    assert mc.user_set({"ratios": "auto", "K": 2}) == frozenset()
    assert mc.user_set({"ratios": "flux", "K": 5}) == frozenset({"ratios", "K"})


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(threshold=-0.1), r"threshold must be in \[0.0, 10.0\], got -0.1"),
        (dict(threshold=float("nan")), r"threshold must be finite"),
        (dict(K=1.5), r"K must be an integer in \[0, 100\]"),
        (dict(K=101), r"K must be in \[0, 100\]"),
        (dict(retention_ratio=1.5), r"retention_ratio must be in \[0.0, 1.0\]"),
        (dict(ratios=()), r"ratios must be 1 to 10000 finite numbers > 0"),
        (dict(ratios=(1.0, float("inf"))), r"ratios must be 1 to 10000 finite numbers > 0"),
        (dict(ratios=(1.0, 0.0)), r"ratios must be"),
        (dict(ratios=(1.0, 1.1), always_compute=(2,)), r"always_compute must be calibration steps, .*\[0, 1\]"),
        (dict(bogus=1), r"unknown parameter\(s\) for magcache: bogus"),
    ],
)
def test_config_errors_name_the_input_and_range(params, match):
    with pytest.raises(ConfigError, match=match):
        make_config("magcache", **params)


def test_speed_target_computes_exactly_the_budget():
    for steps, target in ((20, 2.5), (28, 2.0), (10, 3.0)):
        strip, rep = _strip(make_config("magcache", threshold=0.24, K=5, retention_ratio=0.1), steps, target)
        assert rep.computed == budget(steps, target), (steps, target, strip)


def test_forced_compute_restarts_the_accumulators():
    """A step the gate would skip but that computes (a budget, no cached residual yet) refreshes the cached
    residual: the accumulators restart from it."""
    gate = MagCacheGate(1.0, 10, 0.0, (1.0, 1.1, 1.1, 1.1))
    st = StreamState(ResidualHistory(1), ResidualHistory(1), None, gate.State())
    assert not gate.decide(Step(1, 4, 0.0), st, None).compute and st.gate.steps == 1
    gate.step_done(1, computed=True)
    assert st.gate.steps == 0 and float(st.gate.ratio) == 1.0 and float(st.gate.err) == 0.0
    assert not gate.decide(Step(2, 4, 0.0), st, None).compute
    gate.step_done(2, computed=False)  # really skipped: the accumulators stay
    assert st.gate.steps == 1


def test_decisions_do_not_depend_on_the_predictor():
    """MagCache's gate reads no predictor: composed with TaylorSeer or TC-Padé it makes its own decisions (as long
    as the predictor is ready, i.e. after the retention steps)."""
    mag = make_config("magcache", threshold=0.3, K=3, retention_ratio=0.2)
    own = _strip(mag, 20)[0]
    for pred in (make_config("taylorseer", order=1), make_config("tcpade"), make_config("tracache")):
        assert _strip(ComposedConfig(gate=mag, predictor=pred), 20)[0] == own
    assert own.count(".") >= 5


def test_no_state_from_one_run_to_the_next():
    cfg = make_config("magcache", threshold=0.24, K=5, retention_ratio=0.1)
    assert _strip(cfg, 28)[0] == _strip(cfg, 28)[0]
    gate, _ = M.build(cfg)
    gate2, _ = M.build(cfg)
    assert gate is not gate2 and gate.State() is not gate2.State()
