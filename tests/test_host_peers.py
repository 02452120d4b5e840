"""The peer benchmark's parts (tests/host_peers.py): the core nodes' log line, the batch fix for ComfyUI 0.3.64's
EasyCache (#10344, fixed upstream by #10376) against the upstream behaviour, and the matching of computed steps."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

import host_util as H

H.require_host()

import host_peers as P  # noqa: E402

# the probe's verdict on the hosts this pack is tested on (None: not known here, not asserted)
FIXED_UPSTREAM = {"0.3.64": False, "0.33.0": True}


@pytest.fixture(scope="module")
def ec():
    H.load_pack()
    import comfy_extras.nodes_easycache as ec

    return ec


def host_version():
    import comfyui_version

    return comfyui_version.__version__


def test_skip_line_parsing():
    # the host's own format: f"{easycache.name} - skipped {skipped}/{total_steps} steps ({speedup:.2f}x speedup)."
    assert P.parse_skip_line("EasyCache - skipped 7/20 steps (1.54x speedup).") == ("EasyCache", 7, 20)
    assert P.parse_skip_line("LazyCache - skipped 0/10 steps (1.00x speedup).") == ("LazyCache", 0, 10)
    assert P.parse_skip_line("EasyCache enabled - threshold: 0.2, start_percent: 0.15, end_percent: 0.95") is None
    assert P.parse_skip_line("TeaCache - skipped 3/10 steps") is None
    assert P.parse_skip_line("note: EasyCache - skipped 3/10 steps") is None


def _holder(ec):
    h = ec.EasyCacheHolder(0.2, 0.0, 1.0, subsample_factor=8, offload_cache_diff=False)
    h.first_cond_uuid = "c"
    return h


def _toy(mismatch: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 5, 5, generator=g)
    shape = (3, 4, 4, 5) if mismatch else (3, 4, 5, 5)
    return x, {"c": torch.randn(shape, generator=g), "u": torch.randn(shape, generator=g)}


@pytest.mark.parametrize("mismatch", [False, True])
def test_sliced_apply_cache_diff_is_upstream_behaviour(ec, mismatch):
    """Each cond's rows get its own difference (a cached dim that is shorter: the last rows of it, the host's
    cut_from_start); the skip is counted once, where the first cond is in the batch."""
    x, diffs = _toy(mismatch)
    want = x.clone()
    rows = slice(1, None) if mismatch else slice(None)
    want[0:3, :, rows] += diffs["c"]
    want[3:6, :, rows] += diffs["u"]
    h = _holder(ec)
    h.uuid_cache_diffs = dict(diffs)
    assert torch.equal(P.sliced_apply_cache_diff(h, x.clone(), ["c", "u"]), want) and h.total_steps_skipped == 1
    # uncond alone in its batch (batch split by memory): its rows, no count
    alone = x[:3].clone()
    alone[:, :, rows] += diffs["u"]
    assert torch.equal(P.sliced_apply_cache_diff(h, x[:3].clone(), ["u"]), alone)
    assert h.total_steps_skipped == 1
    if P.batch_probe(ec.EasyCacheHolder):  # a host with the upstream fix: the same tensors, bit for bit
        h2 = _holder(ec)
        h2.uuid_cache_diffs = dict(diffs)
        assert torch.equal(h2.apply_cache_diff(x.clone(), ["c", "u"]), want) and h2.total_steps_skipped == 1


def test_probe_finds_the_batch_bug_where_it_is(ec):
    known = FIXED_UPSTREAM.get(host_version())
    if known is None:
        pytest.skip(f"ComfyUI {host_version()}: the probe's verdict is not recorded here")
    assert P.batch_probe(ec.EasyCacheHolder) is known
    if not known:  # 0.3.64: two rows per cond crash (a cond's 2 rows added to the whole batch of 4)
        h = _holder(ec)
        h.uuid_cache_diffs = {"c": torch.ones(2, 1, 2, 2), "u": torch.ones(2, 1, 2, 2)}
        with pytest.raises(RuntimeError):
            h.apply_cache_diff(torch.zeros(4, 1, 2, 2), ["c", "u"])


def test_matching_and_nothing_left_behind(ec):
    """On model B (8 steps, batch 4): the core runs' computes (their log line) equal the model's real forwards, and
    every pack node runs at exactly each budget a core run reached; closing the benchmark restores the process."""
    original = ec.EasyCacheHolder.__dict__["apply_cache_diff"]
    threads = torch.get_num_threads()
    args = argparse.Namespace(batch=4, thresholds=[0.1, 0.3])
    bench = P.Bench(args)
    try:
        # the fix where the probe finds the bug (and on the hosts known here, where the version says so)
        fixed = ec.EasyCacheHolder.__dict__["apply_cache_diff"]
        assert fixed is (original if bench.fix_line == "" else P.sliced_apply_cache_diff)
        known = FIXED_UPSTREAM.get(host_version())
        assert known is None or (bench.fix_line == "") is known
        base = bench.node("TCPade_BenchModelLoader", P.MODELS["b"][0])[0]
        case = bench.case("b", base, 8, 1234)
    finally:
        bench.close()
    assert [r.node for r in case.core] == ["EasyCache 0.1", "EasyCache 0.3", "LazyCache 0.1", "LazyCache 0.3"]
    budgets = sorted({r.computes for r in case.core if r.computes < 8})
    assert budgets and sorted(case.pack) == budgets and not case.flagged
    labels = [label for _, label in bench.pack_nodes]
    for b, runs in case.pack.items():
        assert [r.family for r in runs] == labels and all(r.computes == b and not r.note for r in runs)
    assert all(0 < r.computes <= 8 for r in case.core)
    assert ec.EasyCacheHolder.__dict__["apply_cache_diff"] is original and torch.get_num_threads() == threads
    assert bench.log not in logging.getLogger().handlers
