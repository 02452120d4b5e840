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
    except ImportError:  # v0.3.64: no guard filter, every guard is kept
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
    """Either order gives the cached result with the stack run on the computed steps only, and a plain run after a
    cached one is the plain model again. Where a graph compiled without the cache was reused (the host's guard
    filter), the pack reset the compiled graphs once and says so in the report; where Dynamo recompiled by itself,
    nothing is reset. (The counting patch of the checks is a host block patch: ComfyUI 0.33's guard filter makes a
    plain run after a run with any host block patch raise KeyError('patches_replace') in the host's own compiled
    forward, with or without this pack, so the plain run here follows a run of the pack's cache alone; and after
    any run that added keys to transformer_options, the host's own EasyCache included, a plain run needs the
    compiled graphs dropped first.)"""
    base, nid, kw, eager_plain, eager_cached = setup
    torch.compiler.reset()
    compiled = _compile(base)
    strip = H.SKIPPING["taylorseer"][2][:STEPS]
    if order == "plain_then_cached":
        assert torch.equal(H.sample(compiled, KIND, steps=STEPS), eager_plain)
        out, rep, first = _cached_run(compiled, nid, kw)
        assert first.calls == rep.computed  # the stack really ran on the computed steps only
    else:
        m = H.attach(nid, compiled, **kw)
        out = H.sample(m, KIND, steps=STEPS)
        rep = H.settings_of(m).last_report
        if _has_guard_filter():
            # the host's known limit (README "torch.compile"): its compiled forward, traced with the cache's keys in
            # transformer_options and no guard on them, needs them again; the same happens after the host's own
            # EasyCache. The README's workaround: drop the compiled graphs (re-run TorchCompileModel) once.
            torch.compiler.reset()
        assert torch.equal(H.sample(compiled, KIND, steps=STEPS), eager_plain)  # plain again, no stale patch
    assert not rep.inactive and rep.num_steps == STEPS and rep.strip() == strip
    assert torch.equal(out, eager_cached)  # the eager backend: the cached result, bit for bit
    resets = [n for n in rep.notes if "graphs were reset" in n]
    assert len(resets) <= 1 and (not resets or (order == "plain_then_cached" and _has_guard_filter()))


def _has_guard_filter() -> bool:
    try:
        from comfy_extras.nodes_torch_compile import skip_torch_compile_dict  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_run_that_never_reaches_the_pack_says_cache_inactive():
    """No silent 0/0: a run whose model calls never reached the pack's hooks reports 'cache inactive'."""
    driver_mod = H.pack_module("nodes.driver")  # the pack as the host's loader loaded it
    cfg = H.pack_module("tcpade_core").make_config("taylorseer", interval=2)
    d = driver_mod.StackDriver(cfg, [1.0, 0.5, 0.0], 1.0, (1.0, 0.0))
    d.on_model_call(1.0)
    d.on_model_call(0.5)
    rep = d.finish()
    assert rep.inactive and rep.num_steps == 0
    assert "cache inactive" in rep.summary("TaylorSeer") and "computed 0/0" not in rep.summary("TaylorSeer")
