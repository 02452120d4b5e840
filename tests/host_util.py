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
# the pack's folder name in custom_nodes; TCPADE_PACK_FOLDER lets two checkouts run host tests on one host at once
PACK_FOLDER = os.environ.get("TCPADE_PACK_FOLDER", "ComfyUI-TCPade")


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


# The 16-bit floor of a comparison between two valid computations of one tiny model, as a fraction of the
# reference's peak |value|: a 16-bit run against float32, or two 16-bit runs that round differently (another batch
# shape, kernel or compiled graph). Measured: bfloat16 1.1e-2 (the tiny DiT's forward against float32, CPU; inductor
# against eager over 8 tiny-Flux steps, H100, docs/gpu/), float16 1.2e-3 (the tiny DiT's forward); about 3.5x margin.
HALF_TOL = {"bfloat16": 4e-2, "float16": 5e-3}


def tol(dtype, fp32: float = 0.0, scale=1.0) -> float:
    """The tolerance of a comparison computed in ``dtype`` (a torch dtype or its name) whose float32 bound is
    ``fp32``, in the caller's units. float32 (and any dtype without a floor): ``fp32`` itself, so the CPU runs keep
    their bounds exactly (0: bit for bit). float16 / bfloat16: the larger of ``fp32`` and :data:`HALF_TOL` times
    ``scale`` (the reference's peak |value| where the caller's bound is absolute; 1 where it is relative to the peak).
    ``dtype`` is the dtype the model computes in (:func:`compute_dtype`), not what its weights are stored in."""
    floor = HALF_TOL.get(str(dtype).replace("torch.", ""))
    return fp32 if floor is None else max(fp32, floor * float(scale))


def assert_close(out, ref, dtype, fp32: float = 0.0, what: str = "") -> None:
    """``max |out - ref| <= tol(dtype, fp32) * max |ref|`` (a bound relative to the peak); where that tolerance is 0
    (float32 without a bound), ``torch.equal``: bit for bit. Both on one device (see :func:`on_device_of`)."""
    import torch

    t = tol(dtype, fp32)
    if t == 0:
        assert out.dtype == ref.dtype and torch.equal(out, ref), f"{what}: not bit for bit ({dtype})"
        return
    err, peak = float((out.float() - ref.float()).abs().max()), float(ref.float().abs().max())
    assert err <= t * peak, f"{what}: max |diff| {err:.3g} > {t:g} x peak {peak:.3g} ({dtype})"


def compute_dtype(model):
    """The dtype a host model computes in: a ModelPatcher's (or BaseModel's) manual-cast dtype, else its weight
    dtype (what the host picked: float32 on a CPU, often float16 on a GPU); a bare module's ``dtype`` or the dtype
    of its first floating parameter."""
    base = getattr(model, "model", model)
    if hasattr(base, "manual_cast_dtype") and hasattr(base, "get_dtype"):
        return base.manual_cast_dtype or base.get_dtype()
    dt = getattr(base, "dtype", None)
    if dt is not None:
        return dt
    return next(p.dtype for p in base.parameters() if p.is_floating_point())


def device_of(module):
    """Where a module's weights are now (the host moves a model to its load device when a sampler loads it and
    may leave it there; a loader's fresh model is on the offload device)."""
    import torch

    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def on_device_of(module, *tensors, dtype=None):
    """``tensors`` on ``module``'s device, floating ones cast to ``dtype`` if given (e.g. the model's compute dtype,
    as the host's apply_model casts the latent); one tensor or a tuple."""
    dev = device_of(module)
    out = tuple(t.to(dev, dtype) if dtype is not None and t.is_floating_point() else t.to(dev) for t in tensors)
    return out[0] if len(out) == 1 else out


def engine_on(engine, device):
    """The engine model itself where it already is on ``device``, else a copy there (a module-scoped fixture stays
    where it is), so that an engine-vs-host comparison runs both on the host model's device."""
    import copy

    return engine if device_of(engine) == device else copy.deepcopy(engine).to(device)


def host():
    """Import the host once (on ``DEVICE``: the CPU unless TCPADE_HOST_DEVICE says otherwise) and return a namespace
    of its modules."""
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


def prompt_executor(server):
    """The host's ``execution.PromptExecutor`` for ``server`` with the classic node cache (what
    ``main.py --cache-classic`` sets up), constructed the way the running host's signature asks: a host whose
    constructor takes ``cache_args`` reads ``cache_args["ram"]`` / ``["ram_inactive"]`` (RAM headroom, GB) in
    every run and gets the values ``main.py`` passes with the classic cache (0: no RAM-pressure release); keys a
    later host reads as well get 0 too. A host without ``cache_args`` (v0.3.64: ``cache_size``) gets nothing."""
    import collections
    import inspect

    host()
    import execution

    params = inspect.signature(execution.PromptExecutor).parameters
    kw = {}
    if "cache_args" in params:
        kw["cache_args"] = collections.defaultdict(float, {"lru": 0, "ram": 0.0, "ram_inactive": 0.0})
    return execution.PromptExecutor(server, **kw)


# ------------------------------------------------------------------------------ tiny models

FLUX_CONFIG = dict(
    image_model="flux",
    guidance_embed=True,
    in_channels=16,
    out_channels=16,
    vec_in_dim=16,
    context_in_dim=32,
    hidden_size=64,
    mlp_ratio=2.0,
    num_heads=2,
    depth=2,
    depth_single_blocks=2,
    axes_dim=[8, 12, 12],
    theta=10000,
    patch_size=2,
    qkv_bias=True,
)
CHROMA_CONFIG = dict(
    image_model="chroma",
    in_channels=64,
    out_channels=64,
    context_in_dim=32,
    hidden_size=64,
    mlp_ratio=2.0,
    num_heads=2,
    depth=2,
    depth_single_blocks=2,
    axes_dim=[8, 12, 12],
    theta=10000,
    patch_size=2,
    qkv_bias=True,
    in_dim=64,
    out_dim=64,
    hidden_dim=32,
    n_layers=1,
)
QWEN_CONFIG = dict(
    image_model="qwen_image",
    patch_size=2,
    in_channels=64,
    out_channels=16,
    num_layers=2,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=32,
    axes_dims_rope=(8, 12, 12),
)
WAN_CONFIG = dict(
    image_model="wan2.1",
    model_type="t2v",
    patch_size=(1, 2, 2),
    text_len=16,
    in_dim=16,
    dim=64,
    ffn_dim=128,
    freq_dim=32,
    text_dim=32,
    out_dim=16,
    num_heads=2,
    num_layers=3,
    window_size=(-1, -1),
    qk_norm=True,
    cross_attn_norm=True,
    eps=1e-6,
)


# keys a newer host's params dataclass requires and an older one does not know: added to the config only where
# the running host's dataclass has the field (ComfyUI 0.33.0: FluxParams.txt_ids_dims, ChromaParams.txt_ids_dims
# and .vec_in_dim; [] / None are what the host's own model detection sets for FLUX.1 and Chroma)
_HOST_PARAMS = {
    "flux": ("comfy.ldm.flux.model:FluxParams", dict(txt_ids_dims=[])),
    "chroma": ("comfy.ldm.chroma.model:ChromaParams", dict(txt_ids_dims=[], vec_in_dim=None)),
}


def host_config(kind: str, config: dict | None = None) -> dict:
    """A unet config of ``kind`` ("flux", "chroma", "wan", "qwen") for the running host: ``config`` (default: the
    tiny one of that kind) plus the keys of :data:`_HOST_PARAMS` that the host's params dataclass declares and
    ``config`` does not set (asked, not versioned)."""
    base = {"flux": FLUX_CONFIG, "chroma": CHROMA_CONFIG, "wan": WAN_CONFIG, "qwen": QWEN_CONFIG}[kind]
    cfg = dict(base if config is None else config)
    return with_host_fields(cfg, *_HOST_PARAMS[kind]) if kind in _HOST_PARAMS else cfg


def with_host_fields(cfg: dict, params: str, extra: dict) -> dict:
    """``cfg`` plus the keys of ``extra`` that the running host's params dataclass ``params`` ("module:Class")
    declares and ``cfg`` does not set."""
    import dataclasses
    import importlib

    host()
    mod, cls = params.split(":")
    klass = getattr(importlib.import_module(mod), cls, None)
    names = {f.name for f in dataclasses.fields(klass)} if dataclasses.is_dataclass(klass) else set()
    return {**cfg, **{k: v for k, v in extra.items() if k in names and k not in cfg}}


def tiny_model(kind: str, seed: int = 0):
    """A real host model (``comfy.model_base``) with a tiny config and seeded normal weights, in a ModelPatcher."""
    sm = host().comfy.supported_models
    cls = {"flux": sm.Flux, "chroma": sm.Chroma, "wan": sm.WAN21_T2V, "qwen": sm.QwenImage}[kind]
    return build_model(cls, host_config(kind), seed)


def build_model(cls, config: dict, seed: int = 0):
    """``cls`` (a ``comfy.supported_models`` class) built from ``config`` in the test dtype, with seeded normal
    weights, in a ModelPatcher on the test device."""
    import torch

    mc = cls(config)
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

    return host().comfy.model_patcher.ModelPatcher(
        model, load_device=torch.device(DEVICE), offload_device=torch.device("cpu")
    )


def conds(kind: str, seed: int = 0, batch: int = 1):
    import torch

    g = torch.Generator().manual_seed(1000 + seed)
    if kind in ("flux", "chroma"):
        mk = lambda: [
            [
                torch.randn(batch, 8, 32, generator=g),
                {"pooled_output": torch.randn(batch, 16, generator=g), "guidance": 3.5},
            ]
        ]
    else:
        mk = lambda: [[torch.randn(batch, 8, 32, generator=g), {}]]
    return mk(), mk()


def latent_shape(kind: str, batch: int = 1, size: int = 8):
    frames = {"wan": 2, "qwen": 1}.get(kind)
    return (batch, 16, frames, size, size) if frames else (batch, 16, size, size)


def sample(
    model,
    kind: str,
    steps: int = 6,
    cfg: float = 2.0,
    sampler: str = "euler",
    scheduler: str = "simple",
    batch: int = 1,
    size: int = 8,
    denoise: float = 1.0,
    seed: int = 0,
    latent=None,
    positive=None,
    negative=None,
    **kw,
):
    """Sample through the host's ``comfy.sample.sample``; deterministic noise and conditioning (or the given
    ``positive`` / ``negative`` conditioning, e.g. from the host's CLIPTextEncode)."""
    import torch

    h = host()
    shape = latent_shape(kind, batch, size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if latent is None:
        latent = (
            torch.zeros(shape)
            if denoise >= 1.0
            else torch.randn(shape, generator=torch.Generator().manual_seed(99)) * 0.5
        )
    pos, neg = conds(kind, 0, batch)
    pos, neg = positive if positive is not None else pos, negative if negative is not None else neg
    return h.comfy.sample.sample(
        model,
        noise,
        steps,
        cfg,
        sampler,
        scheduler,
        pos,
        neg,
        latent,
        denoise=denoise,
        seed=seed,
        disable_pbar=True,
        **kw,
    )


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
    "magcache": ("TCPade_MagCache", dict(threshold=0.0)),
    "first_block": ("TCPade_FirstBlockCache", dict(threshold=0.0)),
    "spectrum": ("TCPade_Spectrum", dict(warmup_steps=100)),
}

# settings that skip, and the strip each gives at 8 steps
SKIPPING = {
    "tcpade": ("TCPade_TCPadeCache", dict(preset="custom", theta=0.0, interval=4), "##..#..."),
    "taylorseer": ("TCPade_TaylorSeer", dict(interval=3, order=1, first_enhance=1), "#..#..#."),
    "tracache": ("TCPade_TraCache", dict(stride=2, max_order=2), "#.#.#.#."),
    # the FLUX table on every tiny model: step 3 reads its calibration step 11, which its FLUX forward computes
    "magcache": ("TCPade_MagCache", dict(threshold=10.0, K=100, ratios="flux"), "#..#...."),
    "first_block": ("TCPade_FirstBlockCache", dict(threshold=10.0, max_consecutive=2), "#..#..#."),
    "spectrum": ("TCPade_Spectrum", dict(warmup_steps=2, w=0.5), "##.#.#.."),
    "teacache": (
        "TCPade_TeaCache",
        dict(threshold=10.0, coefficients="custom", custom_coefficients="1, 0"),
        "#......#",
    ),
}
