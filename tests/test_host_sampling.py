"""Sampling through the host with tiny real Flux and Wan models: exactness, skip accounting, host features."""

from __future__ import annotations

import logging

import pytest
import torch

import host_util as H

H.require_host()

KINDS = ["flux", "chroma", "wan", "qwen"]


@pytest.fixture(scope="module")
def mappings():
    H.load_pack()
    return H.host().nodes.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def models():
    return {k: H.tiny_model(k) for k in KINDS}


@pytest.fixture(scope="module")
def patcher_mod():
    return H.pack_module("nodes.patcher")


def attach(mappings, node_id, model, **overrides):
    return H.attach(node_id, model, **overrides)


settings_of = H.settings_of
NEVER_SKIP = H.NEVER_SKIP


@pytest.mark.parametrize("method", list(NEVER_SKIP))
@pytest.mark.parametrize("kind", KINDS)
def test_never_skip_is_bit_exact(mappings, models, kind, method):
    base = models[kind]
    ref = H.sample(base, kind, steps=6)
    nid, kw = NEVER_SKIP[method]
    m = attach(mappings, nid, base, **kw)
    out = H.sample(m, kind, steps=6)
    rep = settings_of(m).last_report
    assert torch.equal(out, ref)
    assert rep.method == method and rep.num_steps == 6 and rep.computed == 6
    if method == "tcpade":  # the gate did run (and said: compute)
        assert [r.reason for r in rep.steps][3] == "tsi<theta" and rep.steps[3].gate is not None


SKIPPING = H.SKIPPING


@pytest.mark.parametrize("method", list(SKIPPING))
@pytest.mark.parametrize("kind", KINDS)
def test_skipped_steps_are_exactly_those_reported(mappings, models, kind, method):
    base = models[kind]
    ref = H.sample(base, kind, steps=8)
    counted, first, last = H.with_counters(base, kind)
    nid, kw, strip = SKIPPING[method]
    m = attach(mappings, nid, counted, **kw)
    out = H.sample(m, kind, steps=8)
    rep = settings_of(m).last_report
    assert rep.strip() == strip
    # the stack really ran on the computed steps only (first and last block, pre-installed patches wrapped); a
    # method's leading blocks (First Block Cache's block 0) run on every step
    leads = H.pack_module("tcpade_core.methods").leading_blocks(settings_of(m).cfg)
    assert last.calls == rep.computed and first.calls == (8 if leads else rep.computed)
    sig = settings_of(m).last_run.counters
    assert last.sigmas == sig.computed_sigmas
    # the report's time of every computed step is the sigma at which the stack's last block really ran
    sigma_max = float(base.get_model_object("model_sampling").sigma_max)
    assert [r.t * sigma_max for r in rep.steps if r.computed] == pytest.approx(last.sigmas, rel=1e-6)
    assert not torch.isnan(out).any() and out.shape == ref.shape
    assert not torch.equal(out, ref)  # predicted steps changed the result ...
    assert (out - ref).abs().max() < 0.5 * ref.abs().max()  # ... but not into noise


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m"])
def test_samplers_cfg_batch2(mappings, models, sampler):
    kind, steps = "flux", 6
    base = models[kind]
    ref = H.sample(base, kind, steps=steps, sampler=sampler, batch=2, cfg=3.0)
    exact = attach(mappings, "TCPade_TaylorSeer", base, interval=1)
    assert torch.equal(H.sample(exact, kind, steps=steps, sampler=sampler, batch=2, cfg=3.0), ref)

    counted, first, _ = H.with_counters(base, kind)
    m = attach(mappings, "TCPade_TaylorSeer", counted, interval=2, first_enhance=2)
    out = H.sample(m, kind, steps=steps, sampler=sampler, batch=2, cfg=3.0)
    rep, cnt = settings_of(m).last_report, settings_of(m).last_run.counters
    assert rep.strip() == "##.#.#" and rep.num_steps == steps
    assert len(cnt.streams_seen) == 2  # cond and uncond batched together, one state each
    if sampler == "heun":
        # step 0: one evaluation; every later step: Heun's corrector (which begins it) + next predictor
        assert cnt.model_calls == 2 * steps - 1
        assert first.calls == 1 + 2 * (rep.computed - 1)
    else:
        assert cnt.model_calls == steps and first.calls == rep.computed
    assert out.shape == ref.shape and not torch.isnan(out).any()


def test_cfg_one_is_a_single_stream(mappings, models):
    m = attach(mappings, "TCPade_TaylorSeer", models["flux"], interval=2)
    H.sample(m, "flux", steps=4, cfg=1.0)
    assert len(settings_of(m).last_run.counters.streams_seen) == 1


def test_denoise_below_one(mappings, models):
    kind = "flux"
    base = models[kind]
    ref = H.sample(base, kind, steps=8, denoise=0.5)
    assert torch.equal(H.sample(attach(mappings, "TCPade_TraCache", base, stride=1), kind, steps=8, denoise=0.5), ref)
    counted, first, _ = H.with_counters(base, kind)
    m = attach(mappings, "TCPade_TCPadeCache", counted, preset="custom", theta=0.0)
    out = H.sample(m, kind, steps=8, denoise=0.5)
    rep = settings_of(m).last_report
    assert rep.num_steps == 8 and rep.strip() == "##..#..." and first.calls == 3
    assert rep.steps[0].t < 0.9  # the schedule starts part-way: t follows sigma, not the step index
    assert not torch.isnan(out).any()


def test_resolution_and_step_count_change_between_runs(mappings, models):
    kind = "flux"
    m = attach(mappings, "TCPade_TCPadeCache", models[kind], preset="fast (2.8x)")
    a = H.sample(m, kind, steps=6, size=8)
    b = H.sample(m, kind, steps=9, size=12, batch=2)
    assert settings_of(m).last_report.num_steps == 9 and b.shape == (2, 16, 12, 12)
    assert settings_of(m).last_report.stream_resets == 0  # fresh state per run: nothing to reset
    c = H.sample(m, kind, steps=6, size=8)
    assert torch.equal(a, c) and not torch.isnan(b).any()


@pytest.mark.parametrize("kind", KINDS)
def test_two_runs_in_a_row_are_identical(mappings, models, kind):
    m = attach(mappings, "TCPade_TCPadeCache", models[kind], preset="custom", theta=0.0)
    a = H.sample(m, kind, steps=8)
    strip_a = settings_of(m).last_report.strip()
    b = H.sample(m, kind, steps=8)
    assert torch.equal(a, b) and settings_of(m).last_report.strip() == strip_a


def test_chained_cache_nodes_later_wins(mappings, models, caplog):
    kind = "flux"
    base = models[kind]
    alone = attach(mappings, "TCPade_TCPadeCache", base, preset="custom", theta=0.0)
    first = attach(mappings, "TCPade_TaylorSeer", base, interval=2)
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        chained = attach(mappings, "TCPade_TCPadeCache", first, preset="custom", theta=0.0)
    assert any("later node wins" in r.getMessage() and "TaylorSeer" in r.getMessage() for r in caplog.records)
    for kind_w in ("outer_sample", "calc_cond_batch", "diffusion_model"):
        assert len(chained.get_wrappers(kind_w, "tcpade")) == 1
    out_chained = H.sample(chained, kind, steps=8)
    assert settings_of(chained).last_report.method == "tcpade"
    assert torch.equal(out_chained, H.sample(alone, kind, steps=8))
    assert len(first.get_wrappers("outer_sample", "tcpade")) == 1  # the upstream model is untouched


def test_wan22_two_models_two_samplers(mappings, models):
    """High-noise expert for steps 0-3, low-noise expert for 3-6, each with its own cache and state."""
    kind, steps = "wan", 6
    high, low = models[kind], H.tiny_model(kind, seed=1)

    def two_stage(mh, ml):
        x = H.sample(mh, kind, steps=steps, start_step=0, last_step=3, force_full_denoise=False)
        return H.sample(ml, kind, steps=steps, latent=x, start_step=3, last_step=steps, disable_noise=True)

    ref = two_stage(high, low)
    exact = two_stage(
        attach(mappings, "TCPade_TaylorSeer", high, interval=1), attach(mappings, "TCPade_TaylorSeer", low, interval=1)
    )
    assert torch.equal(exact, ref)

    ch, fh, _ = H.with_counters(high, kind)
    cl, fl, _ = H.with_counters(low, kind)
    mh = attach(mappings, "TCPade_TaylorSeer", ch, interval=2, first_enhance=2)
    ml = attach(mappings, "TCPade_TaylorSeer", cl, interval=2, first_enhance=2)
    out = two_stage(mh, ml)
    rh, rl = settings_of(mh).last_report, settings_of(ml).last_report
    # each sampler sees its own 3-step schedule and starts from a fresh state (step 0 computes)
    assert rh.strip() == "##." and rl.strip() == "##."
    assert rh.steps[0].reason == rl.steps[0].reason == "first_enhance"
    assert rl.steps[0].t < rh.steps[-1].t
    assert fh.calls == 2 and fl.calls == 2
    assert not torch.isnan(out).any()


def test_start_end_percent_follow_sigma(mappings, models):
    kind, steps = "flux", 10
    base = models[kind]
    m = attach(mappings, "TCPade_TaylorSeer", base, interval=2, first_enhance=0, start_percent=0.3, end_percent=0.7)
    H.sample(m, kind, steps=steps)
    rep = settings_of(m).last_report
    ms = base.get_model_object("model_sampling")
    s_start, s_end = ms.percent_to_sigma(0.3), ms.percent_to_sigma(0.7)
    sigma_max = float(ms.sigma_max)
    for r in rep.steps:
        sigma = r.t * sigma_max
        inside = sigma <= s_start * (1 + 1e-5) and sigma > s_end * (1 + 1e-5)
        assert (r.reason != "outside start/end") == inside, (r.step, sigma, s_start, s_end)
        if not inside:
            assert r.computed
    assert any(not r.computed for r in rep.steps)


def test_cpu_offload_matches_same_device(mappings, models):
    kind = "wan"
    a = attach(mappings, "TCPade_TCPadeCache", models[kind], preset="custom", theta=0.0)
    b = attach(mappings, "TCPade_TCPadeCache", models[kind], preset="custom", theta=0.0, cache_device="cpu offload")
    assert torch.equal(H.sample(a, kind, steps=8), H.sample(b, kind, steps=8))
    assert settings_of(b).last_report.store_device == "cpu"
    assert "offload cpu" in settings_of(b).last_report.summary()


def test_report_is_published(mappings, models, patcher_mod, caplog):
    m = attach(mappings, "TCPade_TCPadeCache", models["flux"], preset="custom", theta=0.0)
    with caplog.at_level(logging.INFO, logger="tcpade"):
        H.sample(m, "flux", steps=8)
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TC-Padé: ")]
    assert line == ["TC-Padé: computed 3/8 steps (2.67x), same device, cache 0.0 MB [##..#...]"]
    payload = patcher_mod.reports_by_node()["TC-Padé"]
    assert payload["computed"] == 3 and payload["adapter"] == "flux"
    assert [s["computed"] for s in payload["steps"]] == [True, True, False, False, True, False, False, False]
    assert payload["steps"][3]["reason"] == "tsi n/a" and payload["steps"][3]["phase"] == "mid"


@pytest.mark.parametrize("kind", KINDS)
def test_model_level_fallback(mappings, models, patcher_mod, monkeypatch, caplog, kind):
    """A model without a block adapter caches the whole diffusion-model output, with one warning."""
    monkeypatch.setattr(H.pack_module("nodes.cache_nodes"), "resolve", lambda dm: (None, None))
    base = models[kind]
    ref = H.sample(base, kind, steps=8)
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        exact = attach(mappings, "TCPade_TCPadeCache", base, preset="custom", theta=1000.0)
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 1
    assert torch.equal(H.sample(exact, kind, steps=8), ref)
    assert settings_of(exact).last_report.computed == 8
    counted, first, _ = H.with_counters(base, kind)
    m = attach(mappings, "TCPade_TCPadeCache", counted, preset="custom", theta=0.0)
    out = H.sample(m, kind, steps=8)
    rep = settings_of(m).last_report
    assert rep.strip() == "##..#..." and first.calls == rep.computed == 3
    assert not torch.isnan(out).any()


def test_with_skip_layer_guidance(mappings, models):
    """The host's SLG adds a second model call per step with its own block patch; both calls follow the step."""
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT

    kind, steps = "flux", 8
    counted, first, _ = H.with_counters(models[kind], kind)
    slg = SkipLayerGuidanceDiT.execute(
        counted, scale=3.0, start_percent=0.0, end_percent=1.0, double_layers="1", single_layers=""
    ).args[0]
    ref = H.sample(slg, kind, steps=steps)
    calls_ref = first.calls
    exact = attach(mappings, "TCPade_TCPadeCache", slg, preset="custom", theta=1000.0)
    assert torch.equal(H.sample(exact, kind, steps=steps), ref)
    assert first.calls - calls_ref == calls_ref == 2 * steps
    first.calls = 0
    m = attach(mappings, "TCPade_TCPadeCache", slg, preset="custom", theta=0.0)
    out = H.sample(m, kind, steps=steps)
    rep, cnt = settings_of(m).last_report, settings_of(m).last_run.counters
    assert cnt.model_calls == 2 * steps and rep.strip() == "##..#..."
    assert first.calls == 2 * rep.computed  # the SLG pass is predicted on skipped steps too
    assert not torch.isnan(out).any()


def test_cond_and_uncond_in_separate_forwards(mappings, models, monkeypatch):
    """Under memory pressure the host runs cond and uncond as two forwards of one evaluation; one decision
    covers both and each stream keeps its own state."""
    kind = "flux"
    base = H.tiny_model(kind)
    monkeypatch.setattr(base.model, "memory_required", lambda *a, **k: 1e30)
    ref = H.sample(base, kind, steps=8)
    assert torch.equal(
        H.sample(attach(mappings, "TCPade_TCPadeCache", base, preset="custom", theta=1000.0), kind, steps=8), ref
    )
    counted, first, _ = H.with_counters(base, kind)
    m = attach(mappings, "TCPade_TCPadeCache", counted, preset="custom", theta=0.0)
    out = H.sample(m, kind, steps=8)
    rep, cnt = settings_of(m).last_report, settings_of(m).last_run.counters
    assert cnt.model_calls == 8 and len(cnt.streams_seen) == 2
    assert rep.strip() == "##..#..." and first.calls == 2 * rep.computed
    batched = H.sample(attach(mappings, "TCPade_TCPadeCache", models[kind], preset="custom", theta=0.0), kind, steps=8)
    # two forwards vs one batched forward: other matrix shapes, other rounding (float32: 1e-4; 16-bit: its floor)
    assert torch.allclose(out, batched, atol=H.tol(H.compute_dtype(base), 1e-4, scale=batched.abs().max()))
    assert not torch.isnan(out).any()


def test_stream_appearing_mid_run_forces_a_compute(mappings, models):
    """An uncond that only starts at 50% (ConditioningSetTimestepRange) has no history when it appears:
    the batched step computes (reported as forced) instead of predicting garbage for it."""
    kind = "flux"
    counted, first, _ = H.with_counters(models[kind], kind)
    m = attach(mappings, "TCPade_TaylorSeer", counted, interval=2, first_enhance=2)
    pos, neg = H.conds(kind)
    neg[0][1].update(start_percent=0.5, end_percent=1.0)
    shape = H.latent_shape(kind)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    out = H.host().comfy.sample.sample(
        m, noise, 8, 2.0, "euler", "simple", pos, neg, torch.zeros(shape), seed=0, disable_pbar=True
    )
    rep = settings_of(m).last_report
    forced = [r for r in rep.steps if r.reason.startswith("forced")]
    assert len(forced) == 1 and forced[0].computed and len(forced[0].forced_streams) == 1
    assert first.calls == rep.computed and rep.strip().count(".") >= 2
    assert not torch.isnan(out).any()
