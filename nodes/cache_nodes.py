"""The pack's cache nodes (V3 schema). Each takes a MODEL and returns a clone with a cache attached.

One schema-and-execute path (:class:`CacheNode`) serves every node: each node declares its own widgets
and how they map onto a :mod:`tcpade_core.config` config; the shared part checks the start/end window
and the cache device, resolves where the model's block stack is (once) and attaches the cache. A bad
value raises :class:`tcpade_core.ConfigError` naming the widget and its valid range.
"""
from __future__ import annotations

import logging

from comfy_api.latest import io

from ..tcpade_core import ConfigError, make_config
from ..tcpade_core.config import IDENTITY_COEFFICIENTS
from . import teacache_tables as TT
from .families import resolve
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


_MODEL_IN = lambda: io.Model.Input("model", tooltip="The diffusion model to accelerate. It is cloned; the input is not changed.")
_MODEL_OUT = lambda: io.Model.Output(tooltip="The model with the cache attached (takes effect in the next sampler).")


class CacheNode(io.ComfyNode):
    """The shared schema and execute path of the cache nodes. Subclasses set the class attributes and
    implement :meth:`own_inputs` and :meth:`make_config` (and :meth:`tail_inputs` for widgets after the
    window, kept where saved workflows expect them)."""

    NODE_ID = DISPLAY_NAME = DESCRIPTION = LABEL = ""

    @classmethod
    def own_inputs(cls) -> list:
        raise NotImplementedError

    @classmethod
    def tail_inputs(cls) -> list:
        return []

    @classmethod
    def make_config(cls, model, family, **widgets):
        """(engine config, TeaCache coefficients follow the family's table per run)."""
        raise NotImplementedError

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
                         description=cls.DESCRIPTION,
                         inputs=[_MODEL_IN(), *cls.own_inputs(), *_window_inputs(), *cls.tail_inputs()],
                         outputs=[_MODEL_OUT()], hidden=[io.Hidden.unique_id])

    @classmethod
    def execute(cls, model, start_percent, end_percent, cache_device, **widgets) -> io.NodeOutput:
        for name, v in (("start_percent", start_percent), ("end_percent", end_percent)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be a number in [0.0, 1.0], got {v!r}")
        if end_percent < start_percent:
            raise ConfigError(f"end_percent must be >= start_percent (start_percent={start_percent}, "
                              f"end_percent={end_percent}); both in [0.0, 1.0]")
        if cache_device not in DEVICES:
            raise ConfigError(f"cache_device must be one of {', '.join(map(repr, DEVICES))}; got {cache_device!r}")
        family, layout = resolve(model.get_model_object("diffusion_model"))
        cfg, teacache_auto = cls.make_config(model, family, **widgets)
        hidden = getattr(cls, "hidden", None)
        settings = CacheSettings(cfg, cls.LABEL, start_percent, end_percent, DEVICES[cache_device], family, layout,
                                 node_id=getattr(hidden, "unique_id", None), teacache_auto=teacache_auto)
        return io.NodeOutput(apply_cache(model, settings))


class TCPadeCache(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TCPadeCache", "TC-Padé Cache", "TC-Padé"
    DESCRIPTION = ("TC-Padé (arXiv 2603.02943): skip block-stack computations on stable steps and predict the "
                   "residual with a step-phase Padé approximant.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            io.Combo.Input("preset", options=[*PRESETS, CUSTOM], default="slow (θ=1.0)",
                           tooltip="slow: θ=1.0 (paper: ~2.2x on FLUX at 20 steps). fast: θ=0.7 (~2.9x, lower "
                                   "fidelity). custom: use the theta widget. A preset overrides theta."),
            io.Float.Input("theta", default=1.0, min=0.0, max=2.0, step=0.01,
                           tooltip="0.0-2.0, used when preset is custom. Between the forced computes a step is skipped "
                                   "when the stability score 1/(2·TSI) of the last three equally spaced computes is "
                                   ">= theta, i.e. while the trajectory turns by less than 91° (θ 0.7), 60° (θ 1.0) or 45° "
                                   "(θ 1.3). Higher: fewer skips. In paper_literal mode theta compares with TSI itself (0-1)."),
            io.Float.Input("lam", default=2.0, min=0.1, max=100.0, step=0.1,
                           tooltip="λ, 0.1-100.0 (default 2, measured; the paper: 10). Sensitivity of the stability factor "
                                   "σ = exp(-λ·relative change): how fast the prediction falls back from extrapolation "
                                   "to the newest value when the trajectory moves quickly."),
            io.Float.Input("alpha1", default=1.0, min=0.0, max=1.0, step=0.01,
                           tooltip="α1, 0.0-1.0. paper_literal mode only (its early phase): weight of the newest residual "
                                   "(α2 = 1 - α1). The default reading has no phases (measured)."),
            io.Float.Input("beta", default=0.3, min=-1.0, max=1.0, step=0.01,
                           tooltip="β, -1.0-1.0. paper_literal mode only (its late phase): weight of the residual's first "
                                   "difference. The default reading has no phases (measured)."),
            io.Int.Input("interval", default=4, min=1, max=100,
                         tooltip="N, 1-100. After the first step, every N-th step is always computed (paper_literal: "
                                 "every N-th from step 0). Lower: more full steps, better quality; 1 disables skipping."),
        ]

    @classmethod
    def tail_inputs(cls) -> list:
        return [io.Combo.Input("mode", options=["default", "paper_literal", "official"], default="default",
                               tooltip="default: the measured reading of the paper's equations. paper_literal: the "
                                       "equations exactly as printed. official: the authors' code "
                                       "(Alibaba-YuFeng/TC_Pade): fixed schedule (interval 8 from step 5), their "
                                       "predictor; with preset custom, theta is its curvature threshold and "
                                       "interval its interval. For comparison.")]

    @classmethod
    def make_config(cls, model, family, preset, theta, lam, alpha1, beta, interval, mode):
        if preset != CUSTOM and preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(map(repr, [*PRESETS, CUSTOM]))}; got {preset!r}")
        if mode == "official":
            custom = dict(threshold=theta, interval=interval) if preset == CUSTOM else {}
            return make_config("tcpade", mode="official", **custom), False
        th = PRESETS.get(preset, theta)
        return make_config("tcpade", theta=th, lam=lam, alpha1=alpha1, beta=beta, interval=interval, mode=mode), False


class TaylorSeerCache(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TaylorSeer", "TaylorSeer Cache", "TaylorSeer"
    DESCRIPTION = ("TaylorSeer (arXiv 2503.06923): compute every N steps, extrapolate the block-stack output "
                   "with an order-O Taylor series in between.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            io.Int.Input("interval", default=4, min=1, max=100,
                         tooltip="N, 1-100. Full compute every N steps (FLUX: 6, Wan2.1: 5). Higher: faster, lower "
                                 "fidelity; 1 disables skipping."),
            io.Int.Input("order", default=1, min=0, max=4,
                         tooltip="O, 0-4. Taylor order (0: plain reuse). Higher: follows curvature, needs O+1 cached "
                                 "outputs (more memory) and can overshoot."),
            io.Int.Input("first_enhance", default=2, min=0, max=100,
                         tooltip="0-100. Steps computed in full at the start before skipping begins (FLUX: 3, "
                                 "Wan2.1: 1)."),
        ]

    @classmethod
    def make_config(cls, model, family, interval, order, first_enhance):
        return make_config("taylorseer", interval=interval, order=order, first_enhance=first_enhance), False


class TeaCacheNode(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TeaCache", "TeaCache (block residual)", "TeaCache"
    DESCRIPTION = ("TeaCache: reuse the block-stack residual while the accumulated, rescaled change of the "
                   "timestep-modulated input stays below a threshold.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            io.Float.Input("threshold", default=0.4, min=0.0, max=10.0, step=0.01,
                           tooltip="δ, 0.0-10.0. Skip while the accumulated distance is below δ. Higher: more skips. "
                                   "FLUX: 0.25 (1.5x) to 0.8 (2.25x); Wan 1.3B 0.05-0.08; Wan 14B 0.14-0.2."),
            io.Combo.Input("coefficients", options=TT.CHOICES, default=TT.AUTO,
                           tooltip="Rescale polynomial. auto: detected from the model (FLUX, Wan2.1 t2v 1.3B / 14B, "
                                   "i2v 480p / 720p by latent size). custom: use custom_coefficients."),
            io.String.Input("custom_coefficients", default="", multiline=False,
                            tooltip="Used when coefficients is custom: 1-10 comma-separated numbers, highest power "
                                    "first (numpy poly1d order). '1, 0' is the raw relative L1 distance."),
        ]

    @classmethod
    def make_config(cls, model, family, threshold, coefficients, custom_coefficients):
        """'auto' takes the table the model's family names (chosen again per run from the latent size);
        a model without a table gets the raw relative L1 distance (coefficients 1, 0) with a warning."""
        auto = False
        if coefficients == TT.CUSTOM:
            coeffs = TT.parse_coefficients(custom_coefficients)
        elif coefficients == TT.AUTO:
            table = family.teacache(getattr(model.model, "model_config", None), None) if family and family.teacache else None
            if table is None:
                name = type(model.get_model_object("diffusion_model")).__name__
                log.warning(f"TeaCache: no calibrated coefficients for {name}; using the raw relative L1 distance. "
                            f"Pick a table or enter custom coefficients, and tune the threshold.")
            coeffs, auto = TT.COEFFICIENTS.get(table, IDENTITY_COEFFICIENTS), table is not None
        elif coefficients in TT.COEFFICIENTS:
            coeffs = TT.COEFFICIENTS[coefficients]
        else:
            raise ConfigError(f"coefficients must be one of {', '.join(map(repr, TT.CHOICES))}; got {coefficients!r}")
        return make_config("teacache", threshold=threshold, coefficients=coeffs), auto


class TraCacheNode(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TraCache", "TraCache", "TraCache"
    DESCRIPTION = ("TraCache: compute every k steps; in between, Lagrange interpolation through the last "
                   "computed block-stack outputs with the order chosen per step.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            io.Int.Input("stride", default=2, min=1, max=100,
                         tooltip="k, 1-100. Full compute every k steps. Higher: faster, lower fidelity; 1 disables "
                                 "skipping."),
            io.Int.Input("max_order", default=2, min=1, max=4,
                         tooltip="1-4. Highest Lagrange order tried per step (needs max_order+1 cached outputs). "
                                 "Higher: more memory, follows curvature."),
        ]

    @classmethod
    def make_config(cls, model, family, stride, max_order):
        return make_config("tracache", stride=stride, max_order=max_order), False


NODE_LIST = [TCPadeCache, TaylorSeerCache, TeaCacheNode, TraCacheNode]
