"""Every place the pack reads the host by position or by a private name, in one adapter, each with a test that
fails when the host changes it (tests/test_host_adapter.py). The rest of the pack calls these functions.

Host modules are imported inside the functions, so this file imports outside ComfyUI.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Dict, Optional, Tuple


@lru_cache(maxsize=None)
def _params(fn) -> Tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p != "self")


def _bind(names: Tuple[str, ...], args: tuple, kwargs: dict) -> Dict[str, Any]:
    out = dict(zip(names, args))
    out.update(kwargs)
    return out


def outer_sample_args(args: tuple, kwargs: dict) -> Dict[str, Any]:
    """The OUTER_SAMPLE wrapper's arguments by name (``noise``, ``latent_image``, ``sampler``, ``sigmas``, ...), read
    from the signature of the host's ``CFGGuider.outer_sample``."""
    import comfy.samplers

    return _bind(_params(comfy.samplers.CFGGuider.outer_sample), args, kwargs)


def calc_cond_batch_args(args: tuple, kwargs: dict) -> Dict[str, Any]:
    """The CALC_COND_BATCH wrapper's arguments by name (``timestep``, ``model_options``, ...), from the signature of
    the host's ``comfy.samplers.calc_cond_batch``."""
    import comfy.samplers

    return _bind(_params(comfy.samplers.calc_cond_batch), args, kwargs)


def transformer_options(args: tuple, kwargs: dict, marker: str) -> dict:
    """The DIFFUSION_MODEL wrapper's ``transformer_options``: by name when the model passes it as a keyword (every
    model of both hosts); otherwise the positional dict that carries the host's ``uuids``/``sigmas`` or the pack's
    ``marker`` key (a model whose forward takes it by position), else {}."""
    to = kwargs.get("transformer_options")
    if isinstance(to, dict):
        return to
    for a in reversed(args):
        if isinstance(a, dict) and ("uuids" in a or marker in a or "sigmas" in a):
            return a
    return {}


def compile_keys() -> Tuple[str, str]:
    """(the wrapper key of the host's torch.compile, the model_options key of its compile kwargs), from
    ``comfy_api.torch_helpers``; the values both hosts use where that module is missing."""
    try:
        from comfy_api.torch_helpers import torch_compile as tc

        return tc.COMPILE_KEY, getattr(tc, "TORCH_COMPILE_KWARGS", "torch_compile_kwargs")
    except ImportError:
        return "torch.compile", "torch_compile_kwargs"


def is_interrupt(e: BaseException) -> bool:
    """The host's own 'user pressed cancel' exception (not a failure of the run)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return False
    cls = getattr(mm, "InterruptProcessingException", None)
    return cls is not None and isinstance(e, cls)


def queue_item(item) -> Tuple[Optional[str], Any]:
    """(prompt id, extra data) of an item of the host's prompt queue: the tuple ``server.py`` puts there,
    ``(number, prompt_id, prompt, extra_data, outputs_to_execute[, sensitive])``."""
    return item[1], item[3]


def prediction(model_sampling) -> str:
    """What the model predicts, as the planner weighs its steps (tcpade_core.planner.step_weights): "flow" for
    ComfyUI's flow-matching sampling (CONST: sigma is the time t), else "eps" (its sigmas are the
    variance-exploding noise levels, for eps, v and x0 models alike)."""
    import comfy.model_sampling as MS

    return "flow" if isinstance(model_sampling, MS.CONST) else "eps"


def output_kind(model_sampling) -> str:
    """What the model's raw output is: "flow" (CONST), "v" (V_PREDICTION, EDM included), "x0" (X0), "eps" (EPS
    itself), else "other". TaylorSeer's order at a target reads it (measured on eps models only:
    docs/order_eps.txt)."""
    import comfy.model_sampling as MS

    for kind, cls in (("flow", "CONST"), ("v", "V_PREDICTION"), ("x0", "X0"), ("eps", "EPS")):
        if isinstance(model_sampling, getattr(MS, cls, ())):
            return kind
    return "other"
