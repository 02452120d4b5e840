"""Reference replay (issue 20 item 7): the pack's MagCache node makes the same skip decisions, step by step, as the
real ComfyUI-MagCache node (Zehong-Ma/ComfyUI-MagCache, loaded with the host's own loader from the host's
``custom_nodes``) on the tiny host Flux model, with the same ratios (its published FLUX table) and settings.

Its decisions are observed from outside: a block patch on the first double block counts the real executions of the
stack and the sampler's step callback reads the count, for both nodes alike; a step without one was skipped. Nothing of its code is
used here but its node. Without ComfyUI-MagCache in ``custom_nodes``, or where it does not import (it copies the
model forwards, which newer hosts changed), the test skips with one line saying why.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import torch

import host_util as H

H.require_host()

REF_FOLDER = "ComfyUI-MagCache"


@pytest.fixture(scope="module")
def reference():
    """ComfyUI-MagCache's node class, loaded by the host's loader (or a skip saying why not)."""
    h = H.host()
    path = h.path / "custom_nodes" / REF_FOLDER
    if not (path / "__init__.py").exists():
        pytest.skip(f"{REF_FOLDER} is not in {h.path / 'custom_nodes'}: nothing to replay against")
    H.load_pack()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        ok = asyncio.run(h.nodes.load_custom_node(str(path)))
    except Exception as e:  # noqa: BLE001 - the reason is the skip's message
        ok, why = False, f"{type(e).__name__}: {e}"
    else:  # the loader logs the import's traceback; its last line names the error
        lines = [ln for r in records for ln in (r.getMessage() + "\n" + (r.exc_text or "")).splitlines() if ln]
        errors = [ln for ln in lines if "Error" in ln]
        why = errors[-1].strip() if errors else "the host's loader rejected it"
    finally:
        logging.getLogger().removeHandler(handler)
    node = h.nodes.NODE_CLASS_MAPPINGS.get("MagCache") if ok else None
    if node is None:
        pytest.skip(f"{REF_FOLDER} does not import on this host ({why}): its copied model forwards need an older host")
    return node


class _Count:
    """A block patch that counts real executions of the block (its forward passes no transformer_options)."""

    def __init__(self):
        self.calls = 0

    def __deepcopy__(self, memo):  # ModelPatcher.clone deep-copies model_options; keep one counter
        return self

    def __call__(self, args, extra):
        self.calls += 1
        return extra["original_block"](args)


def _strip(model, steps: int, cfg: float) -> str:
    """Run ``model`` on the tiny Flux model's inputs; '#' where the stack ran in a step, '.' where it was skipped
    (the sampler's per-step callback reads the block count)."""
    m = model.clone()
    count, seen = _Count(), []
    m.set_model_patch_replace(count, "dit", "double_block", 0)
    H.sample(m, "flux", steps=steps, cfg=cfg, callback=lambda i, *a: seen.append(count.calls))
    assert len(seen) == steps
    return "".join("#" if b > a else "." for a, b in zip([0, *seen], seen))


CASES = [
    # its node's defaults, at the table's own 28 steps and at 20 (the step-count mapping)
    (dict(threshold=0.06, K=2, retention_ratio=0.2), 28),
    (dict(threshold=0.06, K=2, retention_ratio=0.2), 20),
    # its README's FLUX setting: skips more
    (dict(threshold=0.24, K=5, retention_ratio=0.1), 28),
    (dict(threshold=0.24, K=5, retention_ratio=0.1), 13),
]


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
@pytest.mark.parametrize("settings, steps", CASES)
def test_same_skip_decisions_as_comfyui_magcache(reference, settings, steps, cfg_scale):
    theirs_model = reference().apply_magcache(
        H.tiny_model("flux"),
        "flux",
        settings["threshold"],
        settings["retention_ratio"],
        settings["K"],
        0,
        -1,
    )[0]
    theirs = _strip(theirs_model, steps, cfg_scale)
    ours_model = H.attach("TCPade_MagCache", H.tiny_model("flux"), ratios="flux", **settings)
    ours = _strip(ours_model, steps, cfg_scale)
    rep = H.settings_of(ours_model).last_report
    assert ours == rep.strip()  # what the report claims is what ran
    assert ours == theirs, f"\nours   {ours}\ntheirs {theirs}"
    assert "." in ours  # the comparison is about real skips
    # auto picks the same published table for the host's FLUX.1 model
    auto = H.attach("TCPade_MagCache", H.tiny_model("flux"), **settings)
    assert _strip(auto, steps, cfg_scale) == theirs
    assert torch.isfinite(torch.tensor([s.t for s in rep.steps])).all()
