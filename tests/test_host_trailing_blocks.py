"""DBCache's trailing blocks (First Block Cache's ``trailing_blocks``, Bn) on the host: the last Bn blocks of the whole
ordered stack are left unpatched and run on every step, on the last cached block's computed or predicted output;
a skipped step skips only the cached middle blocks [Fn, depth - Bn). Bn = 0 (the default) keeps every block after
the leading ones cached (tests/test_host_leading_blocks.py, tests/test_host_reference_fbcache.py)."""

from __future__ import annotations

import pytest
import torch

import host_util as H

H.require_host()

STEPS = 8
SKIP = dict(threshold=10.0, max_consecutive=2)  # "#..#..#." at 8 steps (host_util.SKIPPING)


def stack_keys(model, kind: str):
    """The patch keys of the whole ordered stack of a tiny host model (double blocks, then single blocks)."""
    dm = model.get_model_object("diffusion_model")
    if kind == "flux":
        return [("double_block", i) for i in range(len(dm.double_blocks))] + [
            ("single_block", i) for i in range(len(dm.single_blocks))
        ]
    return [("double_block", i) for i in range(len(dm.blocks))]


def with_block_counters(model, kind: str):
    """Clone ``model`` with a counting patch on every block of its stack: (model, [counter per block])."""
    m = model.clone()
    counters = []
    for kind_, i in stack_keys(model, kind):
        c = H.BlockCounter()
        m.set_model_patch_replace(c, "dit", kind_, i)
        counters.append(c)
    return m, counters


def fb(model, **kw):
    return H.attach("TCPade_FirstBlockCache", model, leading_blocks=1, **kw)


@pytest.mark.parametrize(
    "kind,trail",
    [
        ("flux", 1),  # 2 double + 2 single blocks: cached double 1 and single 0, the last single block trails
        ("flux", 2),  # the cached stack ends in a double block: both single blocks trail
        ("wan", 1),  # 3 blocks: block 1 cached, block 2 trails
    ],
)
def test_trailing_blocks_run_on_every_step_and_skipped_steps_skip_only_the_middle(kind, trail):
    H.load_pack()
    base = H.tiny_model(kind)
    counted, counters = with_block_counters(base, kind)
    m = fb(counted, trailing_blocks=trail, **SKIP)
    out = H.sample(m, kind, steps=STEPS)
    rep = H.settings_of(m).last_report
    assert rep.strip() == "#..#..#." and rep.notes == [] and torch.isfinite(out).all()
    depth = len(counters)
    end = depth - trail
    assert [c.calls for c in counters] == [STEPS] + [rep.computed] * (end - 1) + [STEPS] * trail
    # the trailing blocks run on the predicted stack output: not the Bn = 0 run with the same decisions
    m0 = fb(base, **SKIP)
    out0 = H.sample(m0, kind, steps=STEPS)
    assert H.settings_of(m0).last_report.strip() == rep.strip() and not torch.equal(out, out0)
    # a never-skip run with trailing blocks is the uncached model bit for bit (the stack's output is recorded at the
    # last cached block, and the host's own trailing blocks run on it)
    ref = H.sample(base, kind, steps=STEPS)
    m_off = fb(base, trailing_blocks=trail, threshold=0.0)
    assert torch.equal(H.sample(m_off, kind, steps=STEPS), ref)
    assert H.settings_of(m_off).last_report.computed == STEPS


def test_trailing_blocks_are_clamped_to_leave_one_block_cached_and_the_report_says_so():
    H.load_pack()
    base = H.tiny_model("flux")
    counted, counters = with_block_counters(base, "flux")
    m = fb(counted, trailing_blocks=8, **SKIP)
    H.sample(m, "flux", steps=STEPS)
    rep = H.settings_of(m).last_report
    assert rep.strip() == "#..#..#." and [c.calls for c in counters] == [STEPS, rep.computed, STEPS, STEPS]
    assert rep.notes == ["trailing blocks 8 -> 2: the model has 4 blocks and one stays cached"]
    assert "trailing_blocks=8" in rep.settings
