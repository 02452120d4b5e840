"""The pack's ComfyUI nodes (V3 schema). Each takes a MODEL and returns a clone with a cache attached.

Widgets map one to one onto :mod:`tcpade_core.config`; a bad value raises
:class:`tcpade_core.ConfigError` naming the widget.
"""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ..tcpade_core import ConfigError, make_config
from . import teacache_tables as TT
from .patcher import CacheSettings, apply_cache

log = logging.getLogger("tcpade")

CATEGORY = "tcpade/"
PRESETS = {"slow (θ=1.0)": 1.0, "fast (θ=0.7)": 0.7}
CUSTOM = "custom"
DEVICES = {"same": None, "cpu offload": "cpu"}


def _window_inputs(start: float = 0.0, end: float = 1.0):
    return [
        io.Float.Input("start_percent", default=start, min=0.0, max=1.0, step=0.01,
                       tooltip="0.0-1.0. Part of the denoising (in the model's sigma scale) before which every step is "
                               "computed in full. Higher: the cache starts later, safer, less speed-up."),
        io.Float.Input("end_percent", default=end, min=0.0, max=1.0, step=0.01,
                       tooltip="0.0-1.0. Part of the denoising after which every step is computed in full. Lower: the "
                               "last steps (fine detail) are always computed, safer, less speed-up."),
        io.Combo.Input("cache_device", options=list(DEVICES), default="same",
                       tooltip="same: keep cached residuals on the model's device (fastest). cpu offload: keep them in "
                               "system RAM (saves VRAM, costs a copy per step)."),
    ]


def _check_window(start_percent: float, end_percent: float) -> None:
    for name, v in (("start_percent", start_percent), ("end_percent", end_percent)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be a number in [0.0, 1.0], got {v!r}")
    if end_percent < start_percent:
        raise ConfigError(f"end_percent must be >= start_percent (start_percent={start_percent}, end_percent={end_percent})")


def _node_id(cls):
    hidden = getattr(cls, "hidden", None)
    return getattr(hidden, "unique_id", None) if hidden is not None else None


def _attach(cls, model, cfg, label, start_percent, end_percent, cache_device, teacache_table=None):
    if cache_device not in DEVICES:
        raise ConfigError(f"cache_device must be one of {', '.join(map(repr, DEVICES))}; got {cache_device!r}")
    settings = CacheSettings(cfg, label, start_percent, end_percent, DEVICES[cache_device],
                             node_id=_node_id(cls), teacache_table=teacache_table)
    return io.NodeOutput(apply_cache(model, settings))


_MODEL_IN = lambda: io.Model.Input("model", tooltip="The diffusion model to accelerate. It is cloned; the input is not changed.")
_MODEL_OUT = lambda: io.Model.Output(tooltip="The model with the cache attached (takes effect in the next sampler).")


class TCPadeCache(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_TCPadeCache",
            display_name="TC-Padé Cache",
            category=CATEGORY,
            description="TC-Padé (arXiv 2603.02943): skip block-stack computations on stable steps and predict the "
                        "residual with a step-phase Padé approximant.",
            inputs=[
                _MODEL_IN(),
                io.Combo.Input("preset", options=[*PRESETS, CUSTOM], default="slow (θ=1.0)",
                               tooltip="slow: θ=1.0 (paper: ~2.2x on FLUX at 20 steps). fast: θ=0.7 (~2.9x, lower "
                                       "fidelity). custom: use the theta widget. A preset overrides theta."),
                io.Float.Input("theta", default=1.0, min=0.0, max=2.0, step=0.01,
                               tooltip="0.0-2.0, used when preset is custom. A step inside an interval is skipped when the "
                                       "stability score 1/(2·TSI) is >= theta, i.e. while the residual trajectory turns by "
                                       "less than 91° (θ 0.7), 60° (θ 1.0) or 45° (θ 1.3). Higher: fewer skips, better "
                                       "quality. In paper_literal mode theta compares with TSI itself (0-1)."),
                io.Float.Input("lam", default=10.0, min=0.1, max=100.0, step=0.1,
                               tooltip="λ, 0.1-100.0 (paper: 10). Sensitivity of the stability factor σ = exp(-λ·relative "
                                       "residual change). Higher: the predictor falls back to reuse sooner."),
                io.Float.Input("alpha1", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="α1, 0.0-1.0. Early-phase weight of the newest residual (α2 = 1 - α1). Higher: "
                                       "follow the newest residual more closely."),
                io.Float.Input("beta", default=0.3, min=-1.0, max=1.0, step=0.01,
                               tooltip="β, -1.0-1.0. Late-phase weight of the residual's first difference. 0: no "
                                       "late-phase correction."),
                io.Int.Input("interval", default=4, min=1, max=100,
                             tooltip="N, 1-100. The first step of every N-step interval is always computed. Lower: more "
                                     "full steps, better quality; 1 disables skipping."),
                *_window_inputs(),
                io.Combo.Input("mode", options=["default", "paper_literal"], default="default",
                               tooltip="default: the measured reading of the paper's equations. paper_literal: the "
                                       "equations exactly as printed (for comparison)."),
            ],
            outputs=[_MODEL_OUT()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, preset, theta, lam, alpha1, beta, interval, start_percent, end_percent,
                cache_device, mode) -> io.NodeOutput:
        if preset != CUSTOM and preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(map(repr, [*PRESETS, CUSTOM]))}; got {preset!r}")
        _check_window(start_percent, end_percent)
        th = PRESETS.get(preset, theta)
        cfg = make_config("tcpade", theta=th, lam=lam, alpha1=alpha1, beta=beta, interval=interval,
                          mode=mode, start=start_percent, end=end_percent)
        return _attach(cls, model, cfg, "TC-Padé", start_percent, end_percent, cache_device)


class TaylorSeerCache(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_TaylorSeer",
            display_name="TaylorSeer Cache",
            category=CATEGORY,
            description="TaylorSeer (arXiv 2503.06923): compute every N steps, extrapolate the block-stack output "
                        "with an order-O Taylor series in between.",
            inputs=[
                _MODEL_IN(),
                io.Int.Input("interval", default=4, min=1, max=100,
                             tooltip="N, 1-100. Full compute every N steps (FLUX: 6, Wan2.1: 5). Higher: faster, lower "
                                     "fidelity; 1 disables skipping."),
                io.Int.Input("order", default=1, min=0, max=4,
                             tooltip="O, 0-4. Taylor order (0: plain reuse). Higher: follows curvature, needs O+1 cached "
                                     "outputs (more memory) and can overshoot."),
                io.Int.Input("first_enhance", default=2, min=0, max=100,
                             tooltip="0-100. Steps computed in full at the start before skipping begins (FLUX: 3, "
                                     "Wan2.1: 1)."),
                *_window_inputs(),
            ],
            outputs=[_MODEL_OUT()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, interval, order, first_enhance, start_percent, end_percent, cache_device) -> io.NodeOutput:
        _check_window(start_percent, end_percent)
        cfg = make_config("taylorseer", interval=interval, order=order, first_enhance=first_enhance,
                          start=start_percent, end=end_percent)
        return _attach(cls, model, cfg, "TaylorSeer", start_percent, end_percent, cache_device)


class TeaCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_TeaCache",
            display_name="TeaCache (block residual)",
            category=CATEGORY,
            description="TeaCache: reuse the block-stack residual while the accumulated, rescaled change of the "
                        "timestep-modulated input stays below a threshold.",
            inputs=[
                _MODEL_IN(),
                io.Float.Input("threshold", default=0.4, min=0.0, max=10.0, step=0.01,
                               tooltip="δ, 0.0-10.0. Skip while the accumulated distance is below δ. Higher: more skips. "
                                       "FLUX: 0.25 (1.5x) to 0.8 (2.25x); Wan 1.3B 0.05-0.08; Wan 14B 0.14-0.2."),
                io.Combo.Input("coefficients", options=TT.CHOICES, default=TT.AUTO,
                               tooltip="Rescale polynomial. auto: detected from the model (FLUX, Wan2.1 t2v 1.3B / 14B, "
                                       "i2v 480p / 720p by latent size). custom: use custom_coefficients."),
                io.String.Input("custom_coefficients", default="", multiline=False,
                                tooltip="Used when coefficients is custom: 1-10 comma-separated numbers, highest power "
                                        "first (numpy poly1d order). '1, 0' is the raw relative L1 distance."),
                *_window_inputs(),
            ],
            outputs=[_MODEL_OUT()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, threshold, coefficients, custom_coefficients, start_percent, end_percent,
                cache_device) -> io.NodeOutput:
        _check_window(start_percent, end_percent)
        table, per_run = resolve_teacache_table(model, coefficients)
        if coefficients == TT.CUSTOM:
            coeffs = TT.parse_coefficients(custom_coefficients)
        elif coefficients != TT.AUTO and coefficients not in TT.COEFFICIENTS:
            raise ConfigError(f"coefficients must be one of {', '.join(map(repr, TT.CHOICES))}; got {coefficients!r}")
        else:
            coeffs = TT.COEFFICIENTS[table] if table in TT.COEFFICIENTS else None
        params = dict(threshold=threshold, start=start_percent, end=end_percent)
        if coeffs is not None:
            params["coefficients"] = coeffs
        cfg = make_config("teacache", **params)
        return _attach(cls, model, cfg, "TeaCache", start_percent, end_percent, cache_device,
                       teacache_table=per_run)


def resolve_teacache_table(model, choice: str):
    """(table name or None, per-run table or None). 'auto' detects the model; unknown models get the raw
    relative L1 distance (coefficients 1, 0) with a warning."""
    if choice != TT.AUTO:
        return choice, None
    dm_name = type(model.get_model_object("diffusion_model")).__name__
    found = TT.detect_table(getattr(model.model, "model_config", None), dm_name)
    if found == "wan2.1 i2v":
        return "wan2.1 i2v 480p", "wan2.1 i2v"
    if found is None:
        log.warning(f"TeaCache: no calibrated coefficients for {dm_name}; using the raw relative L1 distance. "
                    f"Pick a table or enter custom coefficients, and tune the threshold.")
    return found, None


class TraCacheNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_TraCache",
            display_name="TraCache",
            category=CATEGORY,
            description="TraCache: compute every k steps; in between, Lagrange interpolation through the last "
                        "computed block-stack outputs with the order chosen per step.",
            inputs=[
                _MODEL_IN(),
                io.Int.Input("stride", default=2, min=1, max=100,
                             tooltip="k, 1-100. Full compute every k steps. Higher: faster, lower fidelity; 1 disables "
                                     "skipping."),
                io.Int.Input("max_order", default=2, min=1, max=4,
                             tooltip="1-4. Highest Lagrange order tried per step (needs max_order+1 cached outputs). "
                                     "Higher: more memory, follows curvature."),
                *_window_inputs(),
            ],
            outputs=[_MODEL_OUT()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, stride, max_order, start_percent, end_percent, cache_device) -> io.NodeOutput:
        _check_window(start_percent, end_percent)
        cfg = make_config("tracache", stride=stride, max_order=max_order, start=start_percent, end=end_percent)
        return _attach(cls, model, cfg, "TraCache", start_percent, end_percent, cache_device)


NODE_LIST = [TCPadeCache, TaylorSeerCache, TeaCacheNode, TraCacheNode]
