"""The host couplings of nodes/host.py: each fails here when the running host changes what the pack reads."""

from __future__ import annotations

import inspect
import re

import host_util as H

H.require_host()


def test_outer_sample_and_calc_cond_batch_are_read_by_name():
    H.load_pack()
    host = H.pack_module("nodes.host")
    import comfy.samplers

    a = host.outer_sample_args(("n", "l", "s", "sig"), {"seed": 3})
    assert (a["noise"], a["latent_image"], a["sampler"], a["sigmas"], a["seed"]) == ("n", "l", "s", "sig", 3)
    assert {"noise", "sampler", "sigmas"} <= set(inspect.signature(comfy.samplers.CFGGuider.outer_sample).parameters)
    b = host.calc_cond_batch_args(("m", "c", "x", "t"), {"model_options": {"k": 1}})
    assert (b["timestep"], b["model_options"]) == ("t", {"k": 1})
    assert {"timestep", "model_options"} <= set(inspect.signature(comfy.samplers.calc_cond_batch).parameters)


def test_compile_keys_and_interrupt_come_from_the_host():
    H.load_pack()
    host = H.pack_module("nodes.host")
    from comfy_api.torch_helpers import torch_compile as tc
    import comfy.model_management as mm

    assert host.compile_keys()[0] == tc.COMPILE_KEY == "torch.compile"
    assert host.is_interrupt(mm.InterruptProcessingException()) and not host.is_interrupt(RuntimeError("x"))


def test_transformer_options_by_keyword_else_by_the_dict_that_carries_them():
    H.load_pack()
    host = H.pack_module("nodes.host")
    to = {"uuids": [1]}
    assert host.transformer_options((), {"transformer_options": to}, "k") is to
    assert host.transformer_options((1, to), {}, "k") is to
    assert host.transformer_options((1, {"other": 1}), {}, "k") == {}


def test_prompt_queue_item_layout_is_the_hosts():
    """routes.py reads (prompt id, extra data) at positions 1 and 3 of a queue item: the host's server.py must still
    put (number, prompt_id, prompt, extra_data, outputs_to_execute, ...) on its queue."""
    H.load_pack()
    host = H.pack_module("nodes.host")
    src = (H.comfy_path() / "server.py").read_text(encoding="utf-8")
    assert re.search(r"prompt_queue\.put\(\(number, prompt_id, prompt, extra_data, outputs_to_execute", src)
    assert host.queue_item((0, "pid", {}, {"extra": 1}, [])) == ("pid", {"extra": 1})


def test_what_the_model_predicts_is_read_from_the_hosts_model_sampling():
    """The planner weighs a flow model's steps by t and an eps/v model's by its noise levels (issue 18)."""
    import comfy.model_sampling as MS

    host = H.pack_module("nodes.host")

    class Flow(MS.ModelSamplingDiscreteFlow, MS.CONST):
        pass

    class Eps(MS.ModelSamplingDiscrete, MS.EPS):
        pass

    class V(MS.ModelSamplingDiscrete, MS.V_PREDICTION):
        pass

    assert [host.prediction(c.__new__(c)) for c in (Flow, Eps, V)] == ["flow", "eps", "eps"]

    class X0(MS.ModelSamplingDiscrete, MS.X0):
        pass

    class Edm(MS.ModelSamplingDiscrete, MS.EDM):
        pass

    class Other(MS.ModelSamplingDiscrete):
        pass

    kinds = [host.output_kind(c.__new__(c)) for c in (Flow, Eps, V, X0, Edm, Other)]
    assert kinds == ["flow", "eps", "v", "x0", "v", "other"]  # TaylorSeer's order at a target reads "eps" only
