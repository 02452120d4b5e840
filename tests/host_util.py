"""Helpers for the host tests: find ComfyUI, load the pack the way ComfyUI does, build tiny real models.

Nothing here is copied from ComfyUI; it only calls the host's public entry points
(``nodes.load_custom_node``, ``comfy.supported_models``, ``comfy.model_patcher.ModelPatcher``,
``comfy.sample.sample``).
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_FOLDER = "ComfyUI-TCPade"


def comfy_path() -> Path:
    return Path(os.environ.get("COMFYUI_PATH") or Path.home() / "ComfyUI").expanduser()


def require_host() -> Path:
    """Skip the calling test module with one loud line when there is no ComfyUI checkout."""
    p = comfy_path()
    if not (p / "comfy" / "model_patcher.py").is_file() or not (p / "nodes.py").is_file():
        pytest.skip(f"HOST TESTS SKIPPED: no ComfyUI checkout at {p} (set COMFYUI_PATH)", allow_module_level=True)
    return p


_STATE: dict = {}
# Where the host tests run: CPU in CI and here. The one GPU run (docs/gpu/) sets TCPADE_HOST_DEVICE=cuda and
# TCPADE_HOST_DTYPE=bfloat16 (the tiny models' weights and compute; the compat tests pick their own dtypes).
DEVICE = os.environ.get("TCPADE_HOST_DEVICE", "cpu")
DTYPE = os.environ.get("TCPADE_HOST_DTYPE", "float32")


def host():
    """Import the host once (CPU only) and return a namespace of its modules."""
    if "host" in _STATE:
        return _STATE["host"]
    p = str(require_host())
    if sys.path[:1] != [p]:
        sys.path.insert(0, p)
    # a module named "nodes" imported from elsewhere (e.g. this pack's nodes/ when the repo root is on
    # sys.path) would shadow the host's nodes.py
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(p):
        del sys.modules["nodes"]
    import comfy.options  # noqa: F401
    import comfy.cli_args
    comfy.cli_args.args.cpu = DEVICE == "cpu"
    import torch  # noqa: F401
    import comfy.model_management
    import comfy.model_patcher
    import comfy.patcher_extension
    import comfy.sample
    import comfy.samplers
    import comfy.supported_models
    import nodes as host_nodes
    ns = type("Host", (), {})()
    ns.path = Path(p)
    ns.comfy = comfy
    ns.nodes = host_nodes
    _STATE["host"] = ns
    return ns


def load_pack():
    """Load the pack from ``custom_nodes/ComfyUI-TCPade`` with the host's own loader; return the module.

    The symlink is created for the load and removed right after (the imported modules stay loaded).
    """
    if "pack" in _STATE:
        return _STATE["pack"]
    h = host()
    target = h.path / "custom_nodes" / PACK_FOLDER
    created = False
    if not target.exists():
        target.symlink_to(PACK_ROOT, target_is_directory=True)
        created = True
    try:
        ok = asyncio.run(h.nodes.load_custom_node(str(target)))
    finally:
        if created:
            target.unlink()
    assert ok, "ComfyUI's load_custom_node rejected the pack"
    name = str(target).replace(".", "_x_")
    mod = sys.modules[name]
    _STATE["pack"] = mod
    _STATE["pack_name"] = name
    return mod


def pack_module(sub: str):
    """A submodule of the loaded pack, e.g. ``pack_module("nodes.patcher")``."""
    load_pack()
    return sys.modules[f"{_STATE['pack_name']}.{sub}"]


# ------------------------------------------------------------------------------ tiny models

FLUX_CONFIG = dict(image_model="flux", guidance_embed=True, in_channels=16, out_channels=16, vec_in_dim=16,
                   context_in_dim=32, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2,
                   axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True)
CHROMA_CONFIG = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=32, hidden_size=64,
                     mlp_ratio=2.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
                     patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=32, n_layers=1)
QWEN_CONFIG = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=2,
                   attention_head_dim=32, num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(8, 12, 12))
WAN_CONFIG = dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), text_len=16, in_dim=16, dim=64,
                  ffn_dim=128, freq_dim=32, text_dim=32, out_dim=16, num_heads=2, num_layers=3,
                  window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6)


def tiny_model(kind: str, seed: int = 0):
    """A real host model (``comfy.model_base``) with a tiny config and seeded normal weights, in a ModelPatcher."""
    import torch
    h = host()
    sm = h.comfy.supported_models
    cls, cfg = {"flux": (sm.Flux, FLUX_CONFIG), "chroma": (sm.Chroma, CHROMA_CONFIG),
                "wan": (sm.WAN21_T2V, WAN_CONFIG), "qwen": (sm.QwenImage, QWEN_CONFIG)}[kind]
    mc = cls(dict(cfg))
    mc.set_inference_dtype(getattr(torch, DTYPE), None)
    m = mc.get_model({})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(m.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.ndim > 1 else 0.02))
    return patcher(m)


def sync() -> None:
    """Wait for the test device (a no-op on the CPU), so that wall-clock timings include the queued GPU work."""
    if DEVICE != "cpu":
        import torch
        torch.cuda.synchronize()


def patcher(model):
    """A host ModelPatcher that loads ``model`` on the test device (``DEVICE``) and offloads to the CPU."""
    import torch
    return host().comfy.model_patcher.ModelPatcher(model, load_device=torch.device(DEVICE),
                                                   offload_device=torch.device("cpu"))


def conds(kind: str, seed: int = 0, batch: int = 1):
    import torch
    g = torch.Generator().manual_seed(1000 + seed)
    if kind in ("flux", "chroma"):
        mk = lambda: [[torch.randn(batch, 8, 32, generator=g), {"pooled_output": torch.randn(batch, 16, generator=g), "guidance": 3.5}]]
    else:
        mk = lambda: [[torch.randn(batch, 8, 32, generator=g), {}]]
    return mk(), mk()


def latent_shape(kind: str, batch: int = 1, size: int = 8):
    frames = {"wan": 2, "qwen": 1}.get(kind)
    return (batch, 16, frames, size, size) if frames else (batch, 16, size, size)


def sample(model, kind: str, steps: int = 6, cfg: float = 2.0, sampler: str = "euler", scheduler: str = "simple",
           batch: int = 1, size: int = 8, denoise: float = 1.0, seed: int = 0, latent=None, positive=None, negative=None,
           **kw):
    """Sample through the host's ``comfy.sample.sample``; deterministic noise and conditioning (or the given
    ``positive`` / ``negative`` conditioning, e.g. from the host's CLIPTextEncode)."""
    import torch
    h = host()
    shape = latent_shape(kind, batch, size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if latent is None:
        latent = torch.zeros(shape) if denoise >= 1.0 else torch.randn(shape, generator=torch.Generator().manual_seed(99)) * 0.5
    pos, neg = conds(kind, 0, batch)
    pos, neg = positive if positive is not None else pos, negative if negative is not None else neg
    return h.comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, pos, neg, latent, denoise=denoise,
                                 seed=seed, disable_pbar=True, **kw)


class BlockCounter:
    """A block patch that counts real executions of one block and the sigma of each."""

    def __init__(self):
        self.sigmas = []
        self.calls = 0

    def __deepcopy__(self, memo):  # ModelPatcher.clone deep-copies model_options; keep one counter
        return self

    def __call__(self, args, extra):
        self.calls += 1
        self.sigmas.append(float(args["transformer_options"]["sigmas"].flatten()[0]))
        return extra["original_block"](args)


def with_counters(model, kind: str):
    """Clone ``model`` with counters on the first and last block of the stack. Returns (model, first, last).
    The block counts are read from the model itself (any size of Flux / Chroma / Wan / Qwen-Image)."""
    m = model.clone()
    dm = model.get_model_object("diffusion_model")
    first, last = BlockCounter(), BlockCounter()
    m.set_model_patch_replace(first, "dit", "double_block", 0)
    if kind in ("flux", "chroma"):
        m.set_model_patch_replace(last, "dit", "single_block", len(dm.single_blocks) - 1)
    else:
        blocks = dm.blocks if kind == "wan" else dm.transformer_blocks
        m.set_model_patch_replace(last, "dit", "double_block", len(blocks) - 1)
    return m, first, last


# ------------------------------------------------------------------------------ the cache nodes

def attach(node_id: str, model, **overrides):
    """Run a cache node (``NODE_CLASS_MAPPINGS[node_id]``) with its defaults and ``overrides``; the MODEL out."""
    node = host().nodes.NODE_CLASS_MAPPINGS[node_id]
    params = {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}
    params.update(overrides)
    return node.execute(model, **params).args[0]


def settings_of(model):
    return model.model_options["transformer_options"]["tcpade"]


# settings under which each node computes every step (the run must equal the uncached run bit for bit)
NEVER_SKIP = {
    "tcpade": ("TCPade_TCPadeCache", dict(preset="custom", theta=1000.0)),
    "taylorseer": ("TCPade_TaylorSeer", dict(interval=1)),
    "teacache": ("TCPade_TeaCache", dict(threshold=0.0, coefficients="custom", custom_coefficients="1, 0")),
    "tracache": ("TCPade_TraCache", dict(stride=1)),
}

# settings that skip, and the strip each gives at 8 steps
SKIPPING = {
    "tcpade": ("TCPade_TCPadeCache", dict(preset="custom", theta=0.0, interval=4), "##..#..."),
    "taylorseer": ("TCPade_TaylorSeer", dict(interval=3, order=1, first_enhance=1), "#..#..#."),
    "tracache": ("TCPade_TraCache", dict(stride=2, max_order=2), "#.#.#.#."),
    "teacache": ("TCPade_TeaCache", dict(threshold=10.0, coefficients="custom", custom_coefficients="1, 0"), "#......#"),
}
