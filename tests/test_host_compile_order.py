"""torch.compile in every order: a compiled model run without the cache, then with it, and the reverse.

Newer hosts' TorchCompileModel passes a ``guard_filter_fn`` that drops every guard on ``transformer_options``
(``comfy_extras.nodes_torch_compile.skip_torch_compile_dict``), so a graph compiled in a run without the cache
is reused by a later cached run, and the pack's wrappers and block patches never run. The pack notices that the
model call bypassed it, resets the compiled graphs once (one recompile, said in the report) and evaluates the
call again. The host's own guard filter is used where the host has one; the backend is Dynamo's ``eager`` (the
guards are Dynamo's, whatever the backend; inductor only makes the compile slow).
"""
from __future__ import annotations

import pytest
import torch

import host_util as H

H.require_host()
KIND = "flux"
STEPS = 6


def _compile(model):
    """``model`` compiled the way the host's TorchCompileModel does it, with the host's guard filter if it has one."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    try:
        from comfy_extras.nodes_torch_compile import skip_torch_compile_dict as guard_filter
    except ImportError:          # v0.3.64: no guard filter, every guard is kept
        guard_filter = None
    m = model.clone()
    set_torch_compile_wrapper(m, backend="eager", options={"guard_filter_fn": guard_filter} if guard_filter else None)
    return m


@pytest.fixture(scope="module")
def setup():
    H.load_pack()
    torch.compiler.reset()
    base = H.tiny_model(KIND, seed=7)
    nid, kw, strip = H.SKIPPING["taylorseer"]
    eager_plain = H.sample(base, KIND, steps=STEPS)
    eager_cached = H.sample(H.attach(nid, base, **kw), KIND, steps=STEPS)
    return base, nid, kw, eager_plain, eager_cached


def _cached_run(compiled, nid, kw):
    counted, first, _ = H.with_counters(compiled, KIND)
    m = H.attach(nid, counted, **kw)
    out = H.sample(m, KIND, steps=STEPS)
    return out, H.settings_of(m).last_report, first


@pytest.mark.parametrize("order", ["plain_then_cached", "cached_then_plain"])
def test_compiled_model_caches_in_every_order(setup, order):
    base, nid, kw, eager_plain, eager_cached = setup
    torch.compiler.reset()
    compiled = _compile(base)
    strip = H.SKIPPING["taylorseer"][2][:STEPS]
    if order == "plain_then_cached":
        assert torch.equal(H.sample(compiled, KIND, steps=STEPS), eager_plain)
    out, rep, first = _cached_run(compiled, nid, kw)
    assert not rep.inactive and rep.num_steps == STEPS and rep.strip() == strip
    assert first.calls == rep.computed                      # the stack really ran on the computed steps only
    assert torch.equal(out, eager_cached)                   # the eager backend: the cached result, bit for bit
    recompiled = any("graphs were reset" in n for n in rep.notes)
    guard_filter = _has_guard_filter()
    # the reset happens exactly where a graph compiled without the cache was reused (the host's guard filter)
    assert recompiled == (order == "plain_then_cached" and guard_filter)
    # and a plain run after the cached one is the plain model again (no stale patch, no state)
    assert torch.equal(H.sample(compiled, KIND, steps=STEPS), eager_plain)
    out2, rep2, _ = _cached_run(compiled, nid, kw)
    assert torch.equal(out2, eager_cached) and rep2.strip() == strip


def _has_guard_filter() -> bool:
    try:
        from comfy_extras.nodes_torch_compile import skip_torch_compile_dict  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_run_that_never_reaches_the_pack_says_cache_inactive():
    """No silent 0/0: a run whose model calls never reached the pack's hooks reports 'cache inactive'."""
    driver_mod = H.pack_module("nodes.driver")     # the pack as the host's loader loaded it
    cfg = H.pack_module("tcpade_core").make_config("taylorseer", interval=2)
    d = driver_mod.StackDriver(cfg, [1.0, 0.5, 0.0], 1.0, (1.0, 0.0))
    d.on_model_call(1.0)
    d.on_model_call(0.5)
    rep = d.finish()
    assert rep.inactive and rep.num_steps == 0
    assert "cache inactive" in rep.summary("TaylorSeer") and "computed 0/0" not in rep.summary("TaylorSeer")
