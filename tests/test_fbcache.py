"""First Block Cache / DBCache (the ``first_block`` method): the relative-L1 rule on constructed residuals, the
reference kept from computed steps only, max_consecutive, the warm-up, the speed target, the leading blocks and
DBCache's trailing blocks (Bn) in the bench models, and the config's errors."""

from __future__ import annotations

import pytest
import torch

from tcpade_core import CacheRun, ConfigError, make_config
from tcpade_core import methods as M
from tcpade_core.config import ComposedConfig, FirstBlockConfig


def drive(cfg, scales, target=None, outs=None):
    """A run whose leading blocks' residual at step i is ``scales[i] * base`` (input 0, so their output is that
    residual too). Returns (computed flags, gate values, reasons, the run)."""
    base = torch.linspace(1.0, 2.0, 12).reshape(1, 12)
    run = CacheRun(cfg, target_speedup=target)
    n = len(scales)
    for i, s in enumerate(scales):
        run.begin_step(i, n, 1.0 - i / n)
        h_in = torch.zeros(1, 12)
        h_lead = s * base
        y = run(
            "c",
            h_lead,
            lambda h, i=i: h + i + 1.0,
            lambda: (_ for _ in ()).throw(AssertionError),
            lambda: (h_in, h_lead),
        )
        if outs is not None:
            outs.append(y)
    rep = run.end_run()
    return [r.computed for r in rep.steps], [r.gate for r in rep.steps], [r.reason for r in rep.steps], run


def test_rel_l1_rule_against_the_last_computed_step():
    """Hand-worked: threshold 0.1; the change is |s_i / s_ref - 1| with s_ref the scale of the last computed step."""
    scales = [1.0, 1.05, 1.08, 1.12, 1.12 * 1.09, 1.12 * 1.11, 1.12 * 1.11 * 0.95]
    computed, gates, reasons, _ = drive(make_config("first_block", threshold=0.1), scales)
    assert computed == [True, False, False, True, False, True, False]
    # step 1, 2: against step 0 (1.0); step 3 computes (0.12 >= 0.1) and becomes the reference; step 4: 0.09 < 0.1;
    # step 5: 0.11 against step 3 computes; step 6: 0.05 against step 5
    want = [None, 0.05, 0.08, 0.12, 0.09, 0.11, 0.05]
    assert gates[0] is None and gates[1:] == pytest.approx(want[1:], rel=1e-5)
    assert reasons == ["first", "change<thr", "change<thr", "change>=thr", "change<thr", "change>=thr", "change<thr"]


def test_reference_is_stored_on_computed_steps_only():
    scales = [1.0, 1.05, 1.08]
    *_, run = drive(make_config("first_block", threshold=0.1), scales)
    g = run.streams["c"].gate
    base = torch.linspace(1.0, 2.0, 12).reshape(1, 12)
    assert torch.equal(g.ref, 1.0 * base) and g.pending is None and g.hits == 2
    # a speed target (2 computes of 5, evenly spaced) computes step 3 although the gate (change 0.3 < 0.5) would skip
    # it: step 3's residual becomes the reference all the same (step 4 is compared with it); the skipped 1-2 never did
    cfg = make_config("first_block", threshold=0.5)
    computed, gates, reasons, run = drive(cfg, [1.0, 1.05, 1.08, 1.3, 1.0], target=2.5)
    assert computed == [True, False, False, True, False] and reasons[3] == "budget spacing"
    assert gates[1:] == pytest.approx([0.05, 0.08, 0.3, 0.3 / 1.3], rel=1e-5)
    assert torch.equal(run.streams["c"].gate.ref, 1.3 * base) and run.streams["c"].gate.hits == 1


def test_max_consecutive_and_warmup():
    flat = [1.0] * 8  # no change at all: the gate would skip every step after the first
    assert drive(make_config("first_block", threshold=0.1), flat)[0] == [True] + [False] * 7
    c, _, reasons, _ = drive(make_config("first_block", threshold=0.1, max_consecutive=2), flat)
    assert c == [True, False, False, True, False, False, True, False] and reasons[3] == "max consecutive"
    assert drive(make_config("first_block", threshold=0.1, max_consecutive=0), flat)[0] == [True] * 8
    c, _, reasons, _ = drive(make_config("first_block", threshold=0.1, warmup_steps=3), flat)
    assert c == [True, True, True, False, False, False, False, False] and reasons[:3] == ["first", "warmup", "warmup"]


def test_threshold_zero_never_skips_and_compare_output():
    ramp = [1.0, 1.0, 1.0, 1.0]
    assert drive(make_config("first_block", threshold=0.0), ramp)[0] == [True] * 4
    # "output" compares H_after_Fn itself: with a shifted input the residual is constant but the output moves
    base = torch.linspace(1.0, 2.0, 12).reshape(1, 12)
    for compare, want in (("residual", [True, False, False]), ("output", [True, True, True])):
        run = CacheRun(make_config("first_block", threshold=0.1, compare=compare))
        for i in range(3):
            run.begin_step(i, 3, 1.0 - i / 3)
            h_in = torch.full((1, 12), 10.0 * i)
            h_lead = h_in + base
            run("c", h_lead, lambda h: h + 1.0, None, lambda h_in=h_in, h_lead=h_lead: (h_in, h_lead))
        assert [r.computed for r in run.end_run().steps] == want, compare


def test_a_hit_adds_the_cached_residual_of_the_remaining_blocks():
    outs = []
    drive(make_config("first_block", threshold=0.1), [1.0, 1.0, 1.0], outs=outs)
    base = torch.linspace(1.0, 2.0, 12).reshape(1, 12)
    assert torch.equal(outs[0], base + 1.0)  # computed: the remaining blocks add i + 1
    assert torch.equal(outs[1], base + 1.0) and torch.equal(outs[2], base + 1.0)  # reuse: step 0's residual 1.0


def test_signals_are_read_only_by_the_gate_that_declares_them():
    """The leading blocks' pair is read by the first-block gate only, block 0's modulated input by the others."""
    boom = lambda: (_ for _ in ()).throw(AssertionError("read"))
    run = CacheRun(make_config("teacache", threshold=0.3))
    for i in range(4):
        run.begin_step(i, 4, 1.0 - i / 4)
        run("c", torch.ones(1, 4) * (1 + i), lambda h: h * 2, lambda i=i: torch.ones(1, 4) * (1 + i), boom)
    assert M.build(make_config("first_block"))[0].leading_residual
    assert not any(M.build(make_config(m))[0].leading_residual for m in ("teacache", "taylorseer", "tcpade"))
    # without the pair (a caller that runs no leading blocks) the first-block gate computes, with its reason
    run = CacheRun(make_config("first_block", threshold=10.0))
    for i in range(3):
        run.begin_step(i, 3)
        run("c", torch.ones(1, 4), lambda h: h * 2)
    assert [r.reason for r in run.end_run().steps] == ["first", "no reference", "no reference"]


def test_leading_blocks_are_the_configs_and_the_composed_gates():
    assert M.leading_blocks(make_config("first_block", leading_blocks=8)) == 8
    assert M.leading_blocks(make_config("taylorseer")) == 0
    comp = ComposedConfig(gate=make_config("first_block", leading_blocks=2), predictor=make_config("taylorseer"))
    assert CacheRun(comp).leading_blocks == 2
    tay = make_config("first_block", predictor="taylorseer", order=2)
    pred = M.build(tay)[1]
    assert (type(pred).__name__, pred.order, pred.stores) == ("TaylorPredictor", 2, "residual")


class Calls:
    def __init__(self, module):
        self.n = 0
        module.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))


@pytest.mark.parametrize("name,lead", [("a", 1), ("b", 1), ("b", 3), ("c", 4)])
def test_bench_models_run_the_leading_blocks_on_every_step(name, lead):
    """The bench models run a method's leading blocks ahead of the cached stack on every model call; the blocks after
    them only on computed steps; threshold 0 gives the uncached images bit for bit (model B with Fn 3 splits the stack
    inside its single-stream blocks)."""
    from tcpade_core.models.zoo import load_model
    from tcpade_core.research.common import sample_timed

    model = load_model(name)
    blocks = list(getattr(model, "blocks", [])) or [*model.double_blocks, *model.single_blocks]
    labels = torch.tensor([1, 2])
    ref = sample_timed(model, name, labels, 6, None)[0]
    off = sample_timed(model, name, labels, 6, CacheRun(make_config("first_block", threshold=0.0, leading_blocks=lead)))
    assert torch.equal(off[0], ref)
    first, after, last = Calls(blocks[0]), Calls(blocks[lead]), Calls(blocks[-1])
    run = CacheRun(make_config("first_block", threshold=10.0, max_consecutive=1, leading_blocks=lead))
    img = sample_timed(model, name, labels, 6, run)[0]
    rep = run.report
    assert rep.strip() == "#.#.#." and torch.isfinite(img).all() and not torch.equal(img, ref)
    assert first.n == 6 * 2 and after.n == last.n == rep.computed * 2  # two streams (cond, uncond) per step


def test_bench_model_clamps_the_leading_blocks_to_leave_one_block_cached():
    from tcpade_core.models.zoo import load_model
    from tcpade_core.research.common import sample_timed

    model = load_model("a")
    last = Calls(model.blocks[-1])
    run = CacheRun(make_config("first_block", threshold=10.0, max_consecutive=1, leading_blocks=8))
    sample_timed(model, "a", torch.tensor([3]), 4, run)
    assert run.report.strip() == "#.#." and last.n == 2 * 2


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(threshold=-0.1), r"threshold must be in \[0.0, 10.0\], got -0.1"),
        (dict(threshold=float("nan")), r"threshold must be finite"),
        (dict(leading_blocks=0), r"leading_blocks must be in \[1, 100\], got 0"),
        (dict(leading_blocks=1.5), r"leading_blocks must be an integer in \[1, 100\]"),
        (dict(max_consecutive=-2), r"max_consecutive must be in \[-1, 1000\], got -2"),
        (dict(warmup_steps=101), r"warmup_steps must be in \[0, 100\], got 101"),
        (dict(compare="input"), r"compare must be one of 'residual', 'output'; got 'input'"),
        (dict(predictor="pade"), r"predictor must be one of 'reuse', 'taylorseer'; got 'pade'"),
        (dict(order=0), r"order must be in \[1, 4\], got 0"),
        (dict(trailing_blocks=-1), r"trailing_blocks must be in \[0, 100\], got -1"),
        (dict(trailing_blocks=101), r"trailing_blocks must be in \[0, 100\], got 101"),
        (dict(trailing_blocks=1.5), r"trailing_blocks must be an integer in \[0, 100\], got 1.5"),
        (dict(trailing_blocks=True), r"trailing_blocks must be an integer in \[0, 100\], got True"),
    ],
)
def test_config_errors_name_the_input_and_its_range(params, match):
    with pytest.raises(ConfigError, match=match):
        FirstBlockConfig(**params)


def test_speed_target_computes_exactly_the_budget():
    for steps, target in ((20, 2.5), (30, 3.0), (10, 1.5)):
        scales = [1.0 + 0.3 * (i % 3) for i in range(steps)]  # a signal that asks for computes now and then
        computed = drive(make_config("first_block", threshold=0.2), scales, target=target)[0]
        assert sum(computed) == round(steps / target) and computed[0]


# ------------------------------------------------------------------ DBCache's trailing blocks (Bn)


def test_trailing_blocks_are_the_configs_and_the_composed_gates():
    assert FirstBlockConfig().trailing_blocks == 0 and M.trailing_blocks(make_config("first_block")) == 0
    assert M.trailing_blocks(make_config("first_block", trailing_blocks=3)) == 3
    assert M.trailing_blocks(make_config("taylorseer")) == 0
    comp = ComposedConfig(gate=make_config("first_block", trailing_blocks=2), predictor=make_config("taylorseer"))
    assert M.trailing_blocks(comp) == 2 and CacheRun(comp).trailing_blocks == 2
    assert make_config("first_block").describe() == "first_block()"  # the default's report is unchanged
    assert make_config("first_block", leading_blocks=2, trailing_blocks=1).describe() == (
        "first_block(leading_blocks=2, trailing_blocks=1)"
    )
    m = M.METHODS["first_block"]
    w = {x.name: x for x in m.tail_widgets}["trailing_blocks"]
    assert (w.kind, w.default, w.min, w.max, w.param) == ("int", 0, 0, 100, "trailing_blocks")


def test_split_blocks_clamps_leading_first_and_says_what_it_clamped():
    assert M.split_blocks(6, 1, 0) == (1, 0, "")
    assert M.split_blocks(6, 2, 3) == (2, 3, "")
    assert M.split_blocks(6, 2, 8) == (2, 3, "trailing blocks 8 -> 3: the model has 6 blocks and one stays cached")
    assert M.split_blocks(6, 8, 1) == (
        5,
        0,
        "leading blocks 8 -> 5, trailing blocks 1 -> 0: the model has 6 blocks and one stays cached",
    )
    assert M.split_blocks(6, 8, 0) == (5, 0, "leading blocks 8 -> 5: the model has 6 blocks and one stays cached")


def _forward_before_trailing(self, x, t, y, stack=None, stream="cond"):
    """The bench models' forward before trailing blocks existed, verbatim: the reference Bn = 0 must equal."""
    h, ctx = self.embed(x, t, y)
    lead = min(getattr(stack, "leading_blocks", 0), self.num_blocks - 1) if stack is not None else 0
    if stack is None:
        h_out = self.run_blocks(h, ctx)
    elif lead > 0:
        h_lead, rest = self.run_leading(h, ctx, lead)
        h_out = stack(
            stream,
            h_lead,
            lambda hh: self.run_rest(hh, rest, lead),
            lambda: self.modulated_input(h, ctx),
            leading_fn=lambda: (h, h_lead),
        )
    else:
        h_out = stack(stream, h, lambda hh: self.run_blocks(hh, ctx), lambda: self.modulated_input(h, ctx))
    return self.unembed(h_out, ctx)


@pytest.mark.parametrize("name,lead,predictor", [("a", 1, "taylorseer"), ("b", 3, "reuse"), ("c", 1, "taylorseer")])
def test_bench_models_with_no_trailing_blocks_are_bit_identical_to_before(name, lead, predictor):
    """Bn = 0 (the default): every image, strip and gate value equals the forward before trailing blocks existed."""
    import types

    from tcpade_core.models.zoo import load_model
    from tcpade_core.research.common import sample_timed

    model = load_model(name)
    labels = torch.tensor([2])
    cfgs = [
        make_config("first_block", threshold=0.3, leading_blocks=lead, predictor=predictor),  # its own decisions
        make_config("first_block", threshold=10.0, max_consecutive=1, leading_blocks=lead, predictor=predictor),
        make_config("first_block", leading_blocks=lead, trailing_blocks=0, target_speedup=2.0),
    ]
    new = [(sample_timed(model, name, labels, 8, run)[0], run) for run in map(CacheRun, cfgs)]
    model.forward = types.MethodType(_forward_before_trailing, model)
    old = [(sample_timed(model, name, labels, 8, run)[0], run) for run in map(CacheRun, cfgs)]
    for (a, ra), (b, rb) in zip(new, old):
        assert torch.equal(a, b)
        assert ra.report.strip() == rb.report.strip() and "." in ra.report.strip()
        assert [r.gate for r in ra.report.steps] == [r.gate for r in rb.report.steps]
        assert ra.report.notes == rb.report.notes == []


@pytest.mark.parametrize("name,lead,trail", [("a", 2, 3), ("b", 1, 4), ("b", 3, 2), ("c", 1, 1)])
def test_bench_models_run_the_trailing_blocks_on_every_step(name, lead, trail):
    """The cached stack is blocks [Fn, depth - Bn): the leading and the trailing blocks run on every model call, the
    cached ones only on computed steps; threshold 0 gives the uncached images bit for bit (the split is exact; model
    B with F1B4 ends the cached stack in its double-stream blocks, F3B2 inside its single-stream ones)."""
    from tcpade_core.models.zoo import load_model
    from tcpade_core.research.common import sample_timed

    model = load_model(name)
    blocks = list(getattr(model, "blocks", [])) or [*model.double_blocks, *model.single_blocks]
    end = len(blocks) - trail
    labels = torch.tensor([2])
    ref = sample_timed(model, name, labels, 6, None)[0]
    off = CacheRun(make_config("first_block", threshold=0.0, leading_blocks=lead, trailing_blocks=trail))
    assert torch.equal(sample_timed(model, name, labels, 6, off)[0], ref)
    calls = [Calls(b) for b in blocks]
    kw = dict(threshold=10.0, max_consecutive=1, leading_blocks=lead)
    run = CacheRun(make_config("first_block", trailing_blocks=trail, **kw))
    img = sample_timed(model, name, labels, 6, run)[0]
    rep = run.report
    assert rep.strip() == "#.#.#." and rep.notes == [] and torch.isfinite(img).all() and not torch.equal(img, ref)
    every, computed = 6 * 2, rep.computed * 2  # two streams (cond, uncond) per step
    assert [c.n for c in calls] == [every] * lead + [computed] * (end - lead) + [every] * trail
    # the trailing blocks change what a skipped step returns: not the Bn = 0 run with the same decisions
    run0 = CacheRun(make_config("first_block", **kw))
    img0 = sample_timed(model, name, labels, 6, run0)[0]
    assert run0.report.strip() == rep.strip() and not torch.equal(img, img0)
    err, err0 = (float((x - ref).float().norm() / ref.float().norm()) for x in (img, img0))
    assert err != err0


def test_bench_model_clamps_the_trailing_blocks_and_reports_it():
    from tcpade_core.models.zoo import load_model
    from tcpade_core.research.common import sample_timed

    model = load_model("a")  # 6 blocks: F2 B8 leaves blocks [2, 3) cached, 3 trailing
    calls = [Calls(b) for b in model.blocks]
    run = CacheRun(make_config("first_block", threshold=10.0, max_consecutive=1, leading_blocks=2, trailing_blocks=8))
    sample_timed(model, "a", torch.tensor([3]), 4, run)
    assert run.report.strip() == "#.#." and [c.n for c in calls] == [8, 8, 4, 8, 8, 8]
    assert run.report.notes == ["trailing blocks 8 -> 3: the model has 6 blocks and one stays cached"]
    assert "trailing blocks 8 -> 3" in run.report.summary("First Block Cache")


def test_the_research_sweep_adds_trailing_blocks_only_when_asked():
    from tcpade_core.research.fbcache import sweep

    default = sweep((0.08,))
    assert [label for label, _ in default] == [
        "FBCache F1 reuse thr=0.08",
        "FBCache F2 reuse thr=0.08",
        "FBCache F1 taylorseer thr=0.08",
        "FBCache F2 taylorseer thr=0.08",
    ]
    assert all(cfg.trailing_blocks == 0 for _, cfg in default)
    both = sweep((0.08,), (0, 1))
    assert both[:4] == default and [label for label, _ in both[4:6]] == [
        "FBCache F1B1 reuse thr=0.08",
        "FBCache F2B1 reuse thr=0.08",
    ]
    assert [(c.leading_blocks, c.trailing_blocks) for _, c in both[4:]] == [(1, 1), (2, 1), (1, 1), (2, 1)]
