"""Every sampler of the host (``comfy.samplers.KSampler.SAMPLERS``) crossed with every cache node at its
default settings, on the pack's trained bench model B through its ComfyUI loader (20 steps, CFG 2).

Each run: no exception and no NaN; the report has exactly the sampler's steps (SDE samplers that start a
flow model slightly below sigma 1 included); the first block of the stack ran exactly at the sigmas the run
recorded as computed; and either the PSNR against the uncached run of the same sampler is above the floor
measured for the method (below), or the run is a documented fallback whose reason is in the report
(samplers that inject noise or choose their own steps). Also: an interrupted run says so, and the next run
is clean. Under a minute and a half here.
"""

from __future__ import annotations


import pytest
import torch

import host_util as H

H.require_host()

STEPS = 20
# Measured on this model, this seed, 20 steps (tests/test_host_samplers.py, 2026-11-23): the lowest PSNR
# of each method over the deterministic, multistep and two-evaluation samplers, minus 2.5 dB.
# TC-Padé 19.95 (euler_cfg_pp), TaylorSeer 12.53 (euler_cfg_pp), TeaCache 13.01 (euler_cfg_pp, no
# calibrated coefficients for this model), TraCache 24.50 (euler_cfg_pp); MagCache 22.01 (gradient_estimation,
# node defaults, the flat profile: no ratios for this model; 9 of 20 computed; 2026-12-06); Spectrum 23.35
# (euler_cfg_pp, its defaults: 7 of 20 steps computed; measured 2026-12-06); First Block Cache 22.08
# (gradient_estimation, its defaults: threshold 0.12, F1, 14 of 20 computed; measured 2026-12-06).
FLOORS = {
    "TCPade_TCPadeCache": 17.4,
    "TCPade_TaylorSeer": 10.0,
    "TCPade_TeaCache": 10.5,
    "TCPade_TraCache": 22.0,
    "TCPade_MagCache": 19.5,
    "TCPade_Spectrum": 20.8,
    "TCPade_FirstBlockCache": 19.5,
}
# the block that runs only on computed steps: the first block after a method's leading blocks (First Block Cache:
# block 0 leads and runs on every step; bench model B has two double blocks)
COUNTED_BLOCK = {"TCPade_FirstBlockCache": 1}
CACHE_NODES = list(FLOORS)


class Counter:
    def __init__(self):
        self.sigmas = []

    def __deepcopy__(self, memo):
        return self

    def __call__(self, args, extra):
        self.sigmas.append(float(args["transformer_options"]["sigmas"].flatten()[0]))
        return extra["original_block"](args)


@pytest.fixture(scope="module")
def env():
    torch.set_num_threads(1)
    H.load_pack()
    nodes = H.host().nodes.NODE_CLASS_MAPPINGS
    import comfy.samplers

    model = nodes["TCPade_BenchModelLoader"].execute("B: FLUX-like shapes 32x32").args[0]
    pos, neg = nodes["TCPade_ClassLabel"].execute("B: shapes", 2, "").args
    return dict(
        nodes=nodes,
        model=model,
        pos=pos,
        neg=neg,
        samplers=list(comfy.samplers.KSampler.SAMPLERS),
        samplers_mod=H.pack_module("nodes.samplers"),
    )


def sample(env, m, sampler):
    import comfy.sample

    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    return comfy.sample.sample(
        m,
        noise,
        STEPS,
        2.0,
        sampler,
        "simple",
        env["pos"],
        env["neg"],
        torch.zeros(1, 3, 32, 32),
        seed=5,
        disable_pbar=True,
    )


def attach(env, nid, model):
    node = env["nodes"][nid]
    params = {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}
    return node.execute(model, **params).args[0]


def test_every_sampler_is_classified(env):
    """Every sampler of the running host is in the pack's table, or classifies as "unknown" (the run holds:
    test_unknown_sampler_holds). A sampler the table lacks is not a failure on a newer host; it is a warning
    naming it, so that it gets classified."""
    import warnings

    import comfy.samplers

    fams, classify = env["samplers_mod"].FAMILY_OF, env["samplers_mod"].classify
    unknown = [s for s in env["samplers"] if s not in fams]
    for s in unknown:
        assert classify(comfy.samplers.sampler_object(s)).unknown, s
    if unknown:
        warnings.warn(
            f"samplers of this host that the pack's table does not classify (their runs hold, every step "
            f"computes): {', '.join(unknown)}"
        )


def test_every_sampler_with_every_cache_node(env):
    from tcpade_core import metrics

    classify = env["samplers_mod"].classify
    import comfy.samplers

    problems, seen_families = [], set()
    for s in env["samplers"]:
        info = classify(comfy.samplers.sampler_object(s))
        seen_families.add(info.family)
        ref = sample(env, env["model"], s)
        assert torch.isfinite(ref).all(), s
        for nid in CACHE_NODES:
            counted = env["model"].clone()
            first = Counter()
            counted.set_model_patch_replace(first, "dit", "double_block", COUNTED_BLOCK.get(nid, 0))
            m = attach(env, nid, counted)
            out = sample(env, m, s)
            settings = m.model_options["transformer_options"]["tcpade"]
            rep, cnt = settings.last_report, settings.last_run.counters
            where = f"{s} x {nid}: {rep.summary()}"
            if not torch.isfinite(out).all():
                problems.append(f"{where}: NaN/Inf")
                continue
            if info.unknown:  # documented fallback: a sampler the pack does not know holds
                check_unknown_holds(info, settings, out, ref, where)
                continue
            if info.own_steps:  # documented fallback: the sampler's times are not the schedule's
                assert f"{info.name} chooses its own steps: {settings.label} computes every step" in rep.notes, where
                assert torch.equal(out, ref), where
                continue
            assert rep.num_steps == STEPS and [r.step for r in rep.steps] == list(range(STEPS)), where
            assert first.sigmas == cnt.computed_sigmas, where  # the stack ran exactly where it says
            assert len({round(x, 6) for x in first.sigmas}) >= rep.computed, where
            if info.injects_noise:  # documented fallback: computes every step, says why
                assert rep.computed == STEPS and all(r.reason == "stochastic sampler" for r in rep.steps), where
                assert any(n.startswith(f"{info.name} ") and n.endswith("computes every step") for n in rep.notes), (
                    where
                )
                assert torch.equal(out, ref), where
                continue
            assert rep.computed < STEPS, where
            p = metrics.psnr(out.clamp(-1, 1), ref.clamp(-1, 1))
            if not p >= FLOORS[nid]:
                problems.append(f"{where}: PSNR {p:.2f} < floor {FLOORS[nid]}")
    assert problems == []
    assert seen_families - {"unknown"} == {
        "deterministic",
        "multistep",
        "two-evaluation",
        "stochastic",
        "lcm",
        "adaptive",
    }


def check_unknown_holds(info, settings, out, ref, where):
    """A sampler the pack's table does not know: every step computes, the report says why, the result is the
    uncached run's bit for bit."""
    rep = settings.last_report
    assert rep.computed == rep.num_steps and all(r.reason == "unknown sampler" for r in rep.steps), where
    assert any(
        n.startswith(f"{info.name} is not in the pack's sampler table")
        and n.endswith(f"{settings.label} computes every step")
        for n in rep.notes
    ), where
    assert torch.equal(out, ref), where


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m_sde"])
def test_unknown_sampler_holds(env, monkeypatch, name):
    """A sampler missing from the table (as a newer host's would be), deterministic or stochastic: every cache
    node computes every step and says why. Simulated on this host by dropping the sampler from the table."""
    import comfy.samplers

    mod = env["samplers_mod"]
    monkeypatch.delitem(mod.FAMILY_OF, name)
    info = mod.classify(comfy.samplers.sampler_object(name))
    assert info.unknown and info.name == name
    ref = sample(env, env["model"], name)
    for nid in CACHE_NODES:
        m = attach(env, nid, env["model"])
        out = sample(env, m, name)
        settings = m.model_options["transformer_options"]["tcpade"]
        check_unknown_holds(info, settings, out, ref, f"{name} x {nid}: {settings.last_report.summary()}")


def test_sde_first_sigma_offset_is_step_zero(env):
    m = attach(env, "TCPade_TaylorSeer", env["model"])
    sample(env, m, "dpmpp_2m_sde")
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    # the host moves the first sigma of a flow model from 1 to percent_to_sigma(1e-4) for SDE samplers
    assert rep.num_steps == STEPS and rep.steps[0].step == 0 and rep.steps[0].t < 1.0


def test_interrupted_run_says_so_and_the_next_run_is_clean(env, caplog):
    import logging

    import comfy.model_management as mm

    clean = sample(env, attach(env, "TCPade_TCPadeCache", env["model"]), "euler")
    m = attach(env, "TCPade_TCPadeCache", env["model"])
    calls = []

    def stopper(args, extra):
        calls.append(1)
        if len(calls) == 4:  # the fourth computed call of block 0: some steps in
            raise mm.InterruptProcessingException()
        return extra["original_block"](args)

    m.set_model_patch_replace(stopper, "dit", "double_block", 0)
    with caplog.at_level(logging.INFO, logger="tcpade"), pytest.raises(mm.InterruptProcessingException):
        sample(env, m, "euler")
    rep = m.model_options["transformer_options"]["tcpade"].last_report
    k = rep.num_steps
    assert rep.interrupted and 0 < k < STEPS and rep.planned_steps == STEPS
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TC-Padé: ")][-1]
    assert line.startswith(f"TC-Padé: interrupted at step {k}/{STEPS}, computed {rep.computed}/{k} steps")
    again = attach(env, "TCPade_TCPadeCache", env["model"])
    assert torch.equal(sample(env, again, "euler"), clean)
    assert not again.model_options["transformer_options"]["tcpade"].last_report.interrupted


def test_what_already_works_keeps_working(env):
    """Batch 3 with CFG 7, CFG 1, a step count change 20 -> 28, 2 and 3 steps, on the trained model."""
    import comfy.sample

    m = attach(env, "TCPade_TCPadeCache", env["model"])
    settings = m.model_options["transformer_options"]["tcpade"]

    def run(steps, cfg, batch, sampler="euler"):
        noise = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        out = comfy.sample.sample(
            m,
            noise,
            steps,
            cfg,
            sampler,
            "simple",
            env["pos"],
            env["neg"],
            torch.zeros(batch, 3, 32, 32),
            seed=1,
            disable_pbar=True,
        )
        assert torch.isfinite(out).all() and out.shape == (batch, 3, 32, 32)
        return settings.last_report, settings.last_run.counters

    rep, cnt = run(20, 7.0, 3)
    assert rep.num_steps == 20 and rep.computed == 10 and len(cnt.streams_seen) == 2
    rep, cnt = run(20, 1.0, 1)
    assert rep.num_steps == 20 and len(cnt.streams_seen) == 1
    rep, _ = run(28, 2.0, 1)  # the default preset is a 2x speed target: 14 of 28
    assert rep.num_steps == 28 and rep.stream_resets == 0 and rep.computed == 14
    few = H.pack_module("nodes.patcher").FEW_STEPS_HOLD
    for steps in (2, 3):  # a whole schedule this short: every step computes, and the report says why
        rep, _ = run(steps, 2.0, 1)
        assert steps <= few and rep.num_steps == steps and rep.computed == steps
        assert all(r.reason == "few steps" for r in rep.steps) and any("steps or fewer" in n for n in rep.notes)
    rep, _ = run(12, 2.0, 1, "uni_pc")
    assert rep.num_steps == 12 and rep.computed < 12


def test_memory_is_flat_over_twenty_runs(env):
    import gc

    m = attach(env, "TCPade_TCPadeCache", env["model"])
    patcher = H.pack_module("nodes.patcher")

    def tensors():
        gc.collect()
        return sum(t.numel() * t.element_size() for t in gc.get_objects() if isinstance(t, torch.Tensor))

    sample(env, m, "euler")
    before, reports = tensors(), len(patcher.LAST_REPORTS)
    for _ in range(20):
        sample(env, m, "euler")
    assert len(patcher.LAST_REPORTS) == min(reports + 20, patcher.REPORTS_KEPT)  # one report per run, capped
    assert tensors() - before <= 64 * 1024  # no cached residual outlives its run (one is 8 KB here)
