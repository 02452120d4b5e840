"""Every DiT family of the running host, through the host's own sampler on tiny real models
(tests/host_families.py): each is either cached block by block or falls back safely, with one warning.

For each family the host has (v0.3.64: Flux, Chroma, Wan, Qwen-Image, HunyuanVideo, LTX-Video; 0.33.0 adds
Flux 2, Z-Image, HunyuanVideo 1.5, LTX-2 audio+video, Kandinsky 5), and each cache node:
- the never-skip settings give the uncached run bit for bit;
- the skipped steps are exactly those reported: the stack's first block module really ran once per computed
  step (a forward hook on the module counts real executions, however the block is called);
- the output is finite;
- TeaCache either has calibrated coefficients for the family or says that it has none, naming the family.
"""

from __future__ import annotations

import logging

import pytest
import torch

import host_families as F
import host_util as H

H.require_host()

KINDS = F.available_kinds()
STEPS = 8
MODEL_LEVEL = {"zimage"}  # honours no patches_replace["dit"]: the pack caches the whole model output


@pytest.fixture(scope="module")
def models():
    H.load_pack()
    return {k: F.tiny_model(k) for k in KINDS}


def first_module(kind: str, model, lead: int = 0) -> torch.nn.Module:
    """The module of the cached stack's first block, after a method's ``lead`` leading blocks (Z-Image: its first
    main layer)."""
    dm = model.get_model_object("diffusion_model")
    if kind == "zimage":
        return dm.layers[0]
    kind_, i = F.stack_keys(kind, model)[lead]
    attr = {
        "flux": "double_blocks",
        "flux2": "double_blocks",
        "chroma": "double_blocks",
        "hunyuan_video": "double_blocks",
        "hunyuan_video15": "double_blocks",
        "wan": "blocks",
        "qwen": "transformer_blocks",
        "ltxv": "transformer_blocks",
        "ltxav": "transformer_blocks",
        "kandinsky5": "visual_transformer_blocks",
    }[kind]
    return getattr(dm, attr)[i]


class Count:
    def __init__(self):
        self.calls = 0

    def __call__(self, module, args, kwargs, out):
        self.calls += 1


def run(model, kind: str, module=None, **kw):
    """(outputs as a list of tensors, real executions of ``module``)."""
    counter, handle = Count(), None
    if module is not None:
        handle = module.register_forward_hook(counter, with_kwargs=True)
    try:
        out = F.sample(model, kind, steps=STEPS, **kw)
    finally:
        if handle is not None:
            handle.remove()
    return F.as_tensors(out), counter.calls


def test_the_host_has_the_families_it_should():
    """The test covers at least the families of v0.3.64; a newer host adds the 2026 ones (asked of the host)."""
    assert {"flux", "chroma", "wan", "qwen", "hunyuan_video", "ltxv"} <= set(KINDS)
    sm = H.host().comfy.supported_models
    if hasattr(sm, "Flux2"):
        assert {"flux2", "zimage", "hunyuan_video15", "ltxav", "kandinsky5"} <= set(KINDS)


@pytest.mark.parametrize("method", list(H.NEVER_SKIP))
@pytest.mark.parametrize("kind", KINDS)
def test_never_skip_is_bit_exact(models, kind, method):
    base = models[kind]
    ref, _ = run(base, kind)
    nid, kw = H.NEVER_SKIP[method]
    m = H.attach(nid, base, **kw)
    out, _ = run(m, kind)
    rep = H.settings_of(m).last_report
    assert all(torch.equal(a, b) for a, b in zip(out, ref)) and len(out) == len(ref)
    assert not rep.inactive and rep.num_steps == STEPS and rep.computed == STEPS


@pytest.mark.parametrize("method", list(H.SKIPPING))
@pytest.mark.parametrize("kind", KINDS)
def test_skipped_steps_are_exactly_those_reported(models, kind, method):
    base = models[kind]
    ref, _ = run(base, kind)
    nid, kw, strip = H.SKIPPING[method]
    m = H.attach(nid, base, **kw)
    lead = H.pack_module("tcpade_core.methods").leading_blocks(H.settings_of(m).cfg)
    out, calls = run(m, kind, module=first_module(kind, base, lead))
    rep = H.settings_of(m).last_report
    if lead and kind in MODEL_LEVEL:  # the leading blocks' residual needs the model's blocks: every step computes
        assert rep.strip() == "#" * STEPS and any("first blocks" in n for n in rep.notes)
        return
    assert rep.strip() == strip and not rep.inactive
    assert calls == rep.computed  # the stack really ran on the computed steps only
    assert all(torch.isfinite(o).all() for o in out)
    assert any(not torch.equal(a, b) for a, b in zip(out, ref))  # the skips changed the result ...
    for a, b in zip(out, ref):  # ... but not into noise
        assert (a - b).abs().max() < 0.5 * b.abs().max() + 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_block_level_or_whole_model_said_once(models, kind, caplog):
    """Block level wherever the family honours dit patches; otherwise the whole-model fallback, said in one warning
    when the node attaches and in the report, never an exception."""
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        m = H.attach("TCPade_TaylorSeer", models[kind], interval=2)
    fallback = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    s = H.settings_of(m)
    if kind in MODEL_LEVEL:
        assert s.layout is None and len(fallback) == 1 and "whole diffusion-model output" in fallback[0]
    else:
        assert s.layout is not None and not fallback
        assert list(s.layout.keys) == F.stack_keys(kind, models[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_teacache_works_or_says_why(models, kind, caplog):
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        m = H.attach("TCPade_TeaCache", models[kind])  # coefficients "auto", the node's default δ
    out, _ = run(m, kind)
    rep = H.settings_of(m).last_report
    assert all(torch.isfinite(o).all() for o in out) and rep.num_steps == STEPS and not rep.inactive
    missing = [n for n in rep.notes if n.startswith("no calibrated TeaCache coefficients")]
    fam = H.settings_of(m).family
    if kind == "flux":  # FLUX.1: the authors' polynomial
        assert not missing
    else:  # everything else (Flux 2, the tiny Wan whose width is no released model's, ...)
        assert len(missing) == 1 and (fam.display if fam else "") in missing[0]


def test_joint_single_stream_image_tokens_are_where_the_host_puts_them(models):
    """Flux and HunyuanVideo join text and image tokens for their single blocks; HunyuanVideo puts the image first
    in v0.3.64 and last in later hosts (which say so in ``img_slice``). With order-0 TaylorSeer a skipped step
    reuses the last computed stack output, so the image tokens the final layer reads on a skipped step must be
    exactly those of the computed step before it: any other token order would hand it text tokens."""
    for kind in ("flux", "hunyuan_video"):
        if kind not in KINDS:
            continue
        base = models[kind]
        seen = []
        dm = base.get_model_object("diffusion_model")
        handle = dm.final_layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
        try:
            m = H.attach("TCPade_TaylorSeer", base, interval=2, order=0, first_enhance=1)
            F.sample(m, kind, steps=6, cfg=1.0)
        finally:
            handle.remove()
        assert H.settings_of(m).last_report.strip() == "#.#.#."
        assert len(seen) == 6
        assert torch.equal(seen[1], seen[0]) and torch.equal(seen[3], seen[2]), kind
        assert not torch.equal(seen[2], seen[0])


def _ltx2_caches_video_and_audio_together(models):
    base = models["ltxav"]
    nid, kw, strip = H.SKIPPING["taylorseer"]
    m = H.attach(nid, base, **kw)
    out, calls = run(m, "ltxav", module=first_module("ltxav", base))
    ref, _ = run(base, "ltxav")
    assert len(out) == 2 and calls == H.settings_of(m).last_report.computed
    assert all(not torch.equal(a, b) for a, b in zip(out, ref))  # both streams were predicted


if "ltxav" in KINDS:  # hosts with LTX-2 only (v0.3.64 has none): collected there, not skipped elsewhere
    test_ltx2_caches_video_and_audio_together = _ltx2_caches_video_and_audio_together


def test_residual_uses_the_stack_input_as_it_was(models):
    """Flux (0.33.0) and Chroma blocks update their input tensor in place; the cache keeps its own copy of the
    stack input, so a skipped TeaCache step is exactly (its input) + (the last computed residual)."""
    for kind in ("flux", "chroma"):
        base = models[kind]
        dm = base.get_model_object("diffusion_model")
        ins, outs = [], []
        h1 = dm.img_in.register_forward_hook(lambda mod, args, out: ins.append(out.detach().clone()))
        h2 = dm.final_layer.register_forward_pre_hook(lambda mod, args: outs.append(args[0].detach().clone()))
        try:
            nid, kw, strip = H.SKIPPING["teacache"]
            m = H.attach(nid, base, **kw)
            F.sample(m, kind, steps=6, cfg=1.0)
        finally:
            h1.remove()
            h2.remove()
        assert H.settings_of(m).last_report.strip() == "#....#"
        expected = ins[1] + (outs[0].float() - ins[0].float())
        assert torch.allclose(outs[1].float(), expected.float(), rtol=1e-5, atol=1e-5), kind


def test_report_carries_this_runs_own_timing(models):
    """The wall-clock figure a panel shows comes from the run itself: the mean time of a computed and of a skipped
    model call, and the speed-up they imply (never a comparison with another branch that ran cold)."""
    nid, kw, strip = H.SKIPPING["taylorseer"]
    m = H.attach(nid, models["flux"], **kw)
    F.sample(m, "flux", steps=STEPS)
    s = H.settings_of(m)
    cnt, rep = s.last_run.counters, s.last_report
    assert len(cnt.computed_seconds) == rep.computed and len(cnt.skipped_seconds) == STEPS - rep.computed
    t = s.last_run.payload["timing"]
    assert t["computed_s"] == pytest.approx(sum(cnt.computed_seconds[1:]) / (rep.computed - 1))
    assert t["skipped_s"] == pytest.approx(sum(cnt.skipped_seconds) / len(cnt.skipped_seconds))
    c, k = t["computed_s"], t["skipped_s"]
    assert t["estimated_speedup"] == pytest.approx(STEPS * c / (rep.computed * c + (STEPS - rep.computed) * k))
    assert 1.0 < t["estimated_speedup"] <= STEPS / rep.computed and "this run" in t["basis"]


@pytest.mark.parametrize(
    "steps,typed,computes_all",
    [(4, False, True), (4, True, False), (3, False, True), (5, False, False), (8, False, False)],
)
def test_few_steps_compute_every_step_unless_a_target_is_typed(models, steps, typed, computes_all, caplog):
    """At 4 steps or fewer (distilled models) a node computes every step and says why; a typed target speed-up
    is honoured, with a note; from 5 steps on nothing changes."""
    kw = dict(target_speedup=2.0) if typed else dict(interval=2, first_enhance=1)
    m = H.attach("TCPade_TaylorSeer", models["flux"], **kw)
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        F.sample(m, "flux", steps=steps)
    rep = H.settings_of(m).last_report
    held = [r for r in caplog.records if "computes every step" in r.getMessage()]
    if computes_all:
        assert rep.computed == steps and {r.reason for r in rep.steps} == {"few steps"} and len(held) == 1
        assert any("type a target speed-up" in n for n in rep.notes)
    else:
        assert rep.computed < steps and not held
        assert any("caching as asked" in n for n in rep.notes) == typed
    # a preset is the node's default, not a typed target: TC-Padé at its preset holds at 4 steps
    if steps == 4 and not typed:
        t = H.attach("TCPade_TCPadeCache", models["flux"])
        F.sample(t, "flux", steps=steps)
        assert H.settings_of(t).last_report.computed == steps


def test_inputs_the_pack_does_not_recognise_hold_with_one_warning(caplog):
    """A model input or block stream of a kind the pack does not know (a list at the model level, a dict in a block)
    never raises: every step computes, the reason is in each step and in one warning."""
    patcher = H.pack_module("nodes.patcher")
    fam = H.pack_module("nodes.families")
    assert fam.pack_stream({"a": torch.zeros(1)})[0] is None
    assert fam.pack_stream([torch.zeros(2, 3), torch.zeros(3, 3)])[0] is None  # batch sizes differ
    v, a = torch.randn(2, 4, 8), torch.randn(2, 3, 5)
    packed, how, _ = fam.pack_stream((v, a))
    assert packed.shape == (2, 4 * 8 + 3 * 5) and all(
        torch.equal(x, y) for x, y in zip(fam.unpack_stream(packed, how), (v, a))
    )
    cfg = H.pack_module("tcpade_core").make_config("taylorseer", interval=3)
    d = H.pack_module("nodes.driver").StackDriver(cfg, [1.0, 0.75, 0.5, 0.0], 1.0, (1.0, 0.0))
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        for sigma in (1.0, 0.75, 0.5):
            d.on_model_call(sigma)
            assert patcher._model_level_enter(d, {}, [torch.zeros(1, 4), torch.zeros(1, 2)]) is None
    rep = d.finish()
    assert rep.computed == rep.num_steps == 3 and {r.reason for r in rep.steps} == {"unsupported input"}
    assert sum("cache inactive" in r.getMessage() for r in caplog.records) == 1
    assert any("the model input is a list" in n for n in rep.notes)
