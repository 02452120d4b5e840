"""A method's leading blocks (Method.leading_blocks) run on every step, skipped or not; 0 (every method today) keeps
the whole stack cached. First Block Cache builds on it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import host_util as H

H.require_host()


@pytest.mark.parametrize("lead", [0, 1])
def test_leading_blocks_run_on_skipped_steps(monkeypatch, lead):
    H.load_pack()
    M = H.pack_module("tcpade_core.methods")
    monkeypatch.setitem(M.METHODS, "taylorseer", dataclasses.replace(M.METHODS["taylorseer"], leading_blocks=lead))
    base = H.tiny_model("flux")
    nid, kw, strip = H.SKIPPING["taylorseer"]
    counted, first, last = H.with_counters(base, "flux")
    m = H.attach(nid, counted, **kw)
    out = H.sample(m, "flux", steps=8)
    rep = H.settings_of(m).last_report
    assert rep.strip() == strip and torch.isfinite(out).all()
    # block 0 runs on every model call when it leads, only on the computed steps when it is part of the cache
    assert first.calls == (8 if lead else rep.computed)
    assert last.calls == rep.computed
    if lead:  # the cached stack starts at block 1: a never-skip run equals the uncached model bit for bit
        ref = H.sample(base, "flux", steps=8)
        n_nid, n_kw = H.NEVER_SKIP["taylorseer"]
        assert torch.equal(H.sample(H.attach(n_nid, base, **n_kw), "flux", steps=8), ref)
