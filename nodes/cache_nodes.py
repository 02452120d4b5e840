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
from . import calibration as CAL
from .families import resolve
from .patcher import CacheSettings, apply_cache

CALIBRATION = io.Custom("TCPADE_CALIBRATION")

log = logging.getLogger("tcpade")

CATEGORY = "tcpade"
PRESETS = {"slow (2x)": 2.0, "fast (2.8x)": 2.8}   # speed targets: the same meaning on every model
CUSTOM = "custom"
DEVICES = {"same": None, "cpu offload": "cpu"}


def _window_inputs(start: float = 0.0, end: float = 1.0):
    return [
        io.Float.Input("start_percent", display_name="start percent", default=start, min=0.0, max=1.0, step=0.01,
                       tooltip="0.0-1.0. Part of the denoising (in the model's sigma scale) before which every step is "
                               "computed in full. Higher: the cache starts later, safer, less speed-up."),
        io.Float.Input("end_percent", display_name="end percent", default=end, min=0.0, max=1.0, step=0.01,
                       tooltip="0.0-1.0. Part of the denoising after which every step is computed in full. Lower: the "
                               "last steps (fine detail) are always computed, safer, less speed-up."),
        io.Combo.Input("cache_device", display_name="cache device", options=list(DEVICES), default="same",
                       tooltip="same: keep cached residuals on the model's device (fastest). cpu offload: keep them in "
                               "system RAM (saves VRAM, costs a copy per step)."),
    ]


def _target_input():
    return io.Float.Input("target_speedup", display_name="target speed-up", default=0.0, min=0.0, max=10.0, step=0.05,
                          tooltip="0.0-10.0: 0 is off, otherwise at least 1.0. Ask for a speed: the run computes exactly round(steps / target) "
                                  "steps, spaced evenly; the method's own signal may move a compute "
                                  "earlier. 0: the method's own schedule and threshold decide.")


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
        """(engine config, options for :class:`CacheSettings`: ``teacache_auto``, ``notes``)."""
        raise NotImplementedError

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
                         description=cls.DESCRIPTION,
                         inputs=[_MODEL_IN(), *cls.own_inputs(), *_window_inputs(), *cls.tail_inputs(),
                                 CALIBRATION.Input("calibration", optional=True,
                                                   tooltip="Optional: the output of Calibrate (TC-Padé) for this model "
                                                           "and step count. Without it a stored calibration for the "
                                                           "same model and step count is used, if there is one.")],
                         outputs=[_MODEL_OUT()], hidden=[io.Hidden.unique_id])

    @classmethod
    def apply_calibration(cls, cfg, cal, target: float):
        """(config, target) for a run with calibration ``cal``. Default: nothing to calibrate."""
        return cfg, target

    @classmethod
    def target_of(cls, widgets: dict) -> float:
        """The speed target this node's widgets ask for (0: off)."""
        return widgets.pop("target_speedup", 0.0)

    @classmethod
    def execute(cls, model, start_percent, end_percent, cache_device, calibration=None, **widgets) -> io.NodeOutput:
        # a target the user typed (a preset is the node's default, not a request): it is honoured at few steps too
        typed = widgets.get("target_speedup", 0.0)
        explicit = (isinstance(typed, (int, float)) and not isinstance(typed, bool) and typed > 0
                    and widgets.get("preset", CUSTOM) == CUSTOM)
        target = cls.target_of(widgets)
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not (target == 0 or 1.0 <= target <= 10.0):
            raise ConfigError(f"target_speedup must be 0 (off) or a number in [1.0, 10.0], got {target!r}")
        for name, v in (("start_percent", start_percent), ("end_percent", end_percent)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be a number in [0.0, 1.0], got {v!r}")
        if end_percent < start_percent:
            raise ConfigError(f"end_percent must be >= start_percent (start_percent={start_percent}, "
                              f"end_percent={end_percent}); both in [0.0, 1.0]")
        if cache_device not in DEVICES:
            raise ConfigError(f"cache_device must be one of {', '.join(map(repr, DEVICES))}; got {cache_device!r}")
        family, layout = resolve(model.get_model_object("diffusion_model"))
        cfg, options = cls.make_config(model, family, **widgets)
        hidden = getattr(cls, "hidden", None)
        settings = CacheSettings(cfg, cls.LABEL, start_percent, end_percent, DEVICES[cache_device], family, layout,
                                 node_id=getattr(hidden, "unique_id", None), target_speedup=float(target),
                                 model_key=CAL.model_key(model), calibration=calibration,
                                 apply_calibration=cls.apply_calibration, explicit_target=explicit, **options)
        return io.NodeOutput(apply_cache(model, settings))


class TCPadeCache(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TCPadeCache", "TC-Padé Cache", "TC-Padé"
    DESCRIPTION = ("TC-Padé (arXiv 2603.02943): skip block-stack computations on stable steps (the TSI gate) and "
                   "predict the stack's output with a σ-damped [1/1] Padé approximant in the step variable. Modes "
                   "paper_literal (the equations as printed) and official (the authors' code) for comparison.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            io.Combo.Input("preset", display_name="preset", options=[*PRESETS, CUSTOM], default="slow (2x)",
                           tooltip="slow: a 2x speed target (20 steps: 10 computed). fast: 2.8x (20 steps: 7 computed). "
                                   "The same speed on every model; the stability signal decides where the computes "
                                   "go. custom: target speed-up and θ below decide (target 0: θ alone)."),
            _target_input(),
            io.Float.Input("theta", display_name="θ", default=1.0, min=0.0, max=2.0, step=0.01,
                           tooltip="θ, 0.0-2.0. Between the forced computes a step is skipped when the stability score "
                                   "1/(2·TSI) of the last three equally spaced computes is >= θ, i.e. while the "
                                   "trajectory turns by less than 91° (θ 0.7), 60° (θ 1.0) or 45° (θ 1.3). Higher: "
                                   "fewer skips. With a speed target (a preset, or custom with a target) θ only moves "
                                   "computes earlier: a turn (score < θ) brings the next compute forward; with preset "
                                   "custom and target 0, θ alone decides. In paper_literal mode θ compares with TSI "
                                   "itself (0-1)."),
            io.Float.Input("lam", display_name="λ", default=2.0, min=0.1, max=100.0, step=0.1,
                           tooltip="λ, 0.1-100.0 (default 2, measured; the paper: 10). Sensitivity of the stability factor "
                                   "σ = exp(-λ·relative change): how fast the prediction falls back from extrapolation "
                                   "to the newest value when the trajectory moves quickly."),
            io.Float.Input("alpha1", display_name="α1", default=1.0, min=0.0, max=1.0, step=0.01,
                           tooltip="α1, 0.0-1.0. paper_literal mode only (its early phase): weight of the newest residual "
                                   "(α2 = 1 - α1). The default reading has no phases (measured)."),
            io.Float.Input("beta", display_name="β", default=0.3, min=-1.0, max=1.0, step=0.01,
                           tooltip="β, -1.0-1.0. paper_literal mode only (its late phase): weight of the residual's first "
                                   "difference. The default reading has no phases (measured)."),
            io.Int.Input("interval", display_name="interval N", default=4, min=1, max=100,
                         tooltip="N, 1-100. After the first step, every N-th step is always computed (paper_literal: "
                                 "every N-th from step 0). Lower: more full steps, better quality; 1 disables skipping."),
        ]

    @classmethod
    def tail_inputs(cls) -> list:
        return [io.Combo.Input("mode", display_name="mode", options=["default", "paper_literal", "official"],
                               default="default",
                               tooltip="default: the measured reading of the paper's equations. paper_literal: the "
                                       "equations exactly as printed. official: the authors' code "
                                       "(Alibaba-YuFeng/TC_Pade): fixed schedule (interval 8 from step 5), their "
                                       "predictor; with preset custom, θ is its curvature threshold and "
                                       "interval N its interval. For comparison.")]

    @classmethod
    def target_of(cls, widgets: dict) -> float:
        """A preset is a speed target; custom uses the target speed-up widget (0: θ alone)."""
        preset, target = widgets["preset"], widgets.pop("target_speedup", 0.0)
        if preset != CUSTOM and preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(map(repr, [*PRESETS, CUSTOM]))}; got {preset!r}")
        return PRESETS.get(preset, target)

    @classmethod
    def make_config(cls, model, family, preset, theta, lam, alpha1, beta, interval, mode):
        if mode == "official":
            custom = dict(threshold=theta, interval=interval) if preset == CUSTOM else {}
            return make_config("tcpade", mode="official", **custom), {}
        return make_config("tcpade", theta=theta, lam=lam, alpha1=alpha1, beta=beta, interval=interval, mode=mode), {}


    @classmethod
    def apply_calibration(cls, cfg, cal, target: float):
        """With a target: the budget gate, and the warm-up that predicted best; without: the calibrated θ
        meets the calibration's speed."""
        if cfg.method != "tcpade":
            return cfg, target
        if target:
            return cfg.with_(warmup_steps=cal.tcpade_warmup), target
        if cal.tcpade_theta is not None:
            return cfg.with_(theta=cal.tcpade_theta), target
        return cfg, cal.target


class TaylorSeerCache(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TaylorSeer", "TaylorSeer Cache", "TaylorSeer"
    DESCRIPTION = ("TaylorSeer (arXiv 2503.06923): compute every N steps, extrapolate the block-stack output "
                   "with an order-O Taylor series in between.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            _target_input(),
            io.Int.Input("interval", display_name="interval N", default=4, min=1, max=100,
                         tooltip="N, 1-100. Full compute every N steps (FLUX: 6, Wan2.1: 5). Higher: faster, lower "
                                 "fidelity; 1 disables skipping. Used at target speed-up 0 only: a target sets "
                                 "the schedule."),
            io.Int.Input("order", display_name="order O", default=1, min=0, max=4,
                         tooltip="O, 0-4. Taylor order (0: plain reuse). Higher: follows curvature, needs O+1 cached "
                                 "outputs (more memory) and can overshoot."),
            io.Int.Input("first_enhance", display_name="first enhance", default=2, min=0, max=100,
                         tooltip="0-100. Steps computed in full at the start before skipping begins (FLUX: 3, "
                                 "Wan2.1: 1). With a target speed-up the target decides which steps compute."),
        ]

    @classmethod
    def make_config(cls, model, family, interval, order, first_enhance):
        return make_config("taylorseer", interval=interval, order=order, first_enhance=first_enhance), {}


    @classmethod
    def apply_calibration(cls, cfg, cal, target: float):
        """The interval, order and first_enhance that meet the calibration's speed with the smallest error."""
        return (cfg.with_(**cal.taylorseer), target) if cal.taylorseer else (cfg, target or cal.target)


class TeaCacheNode(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TeaCache", "TeaCache (block residual)", "TeaCache"
    DESCRIPTION = ("TeaCache: reuse the block-stack residual while the accumulated, rescaled change of the "
                   "timestep-modulated input stays below a threshold.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            _target_input(),
            io.Float.Input("threshold", display_name="δ", default=0.4, min=0.0, max=10.0, step=0.01,
                           tooltip="δ, 0.0-10.0. Skip while the accumulated distance is below δ. Higher: more skips. "
                                   "FLUX: 0.25 (1.5x) to 0.8 (2.25x); Wan 1.3B 0.05-0.08; Wan 14B 0.14-0.2."),
            io.Combo.Input("coefficients", display_name="coefficients", options=TT.CHOICES, default=TT.AUTO,
                           tooltip="Rescale polynomial. auto: detected from the model (FLUX, Wan2.1 t2v 1.3B / 14B, "
                                   "i2v 480p / 720p by latent size). custom: use custom coefficients."),
            io.String.Input("custom_coefficients", display_name="custom coefficients", default="", multiline=False,
                            tooltip="Used when coefficients is custom: 1-10 comma-separated numbers, highest power "
                                    "first (numpy poly1d order). '1, 0' is the raw relative L1 distance."),
        ]

    @classmethod
    def make_config(cls, model, family, threshold, coefficients, custom_coefficients):
        """'auto' takes the table the model's family names (chosen again per run from the latent size);
        a model without a table gets the raw relative L1 distance (coefficients 1, 0) with a warning."""
        auto, notes = False, []
        if coefficients == TT.CUSTOM:
            coeffs = TT.parse_coefficients(custom_coefficients)
        elif coefficients == TT.AUTO:
            table = family.teacache(getattr(model.model, "model_config", None), None) if family and family.teacache else None
            notes = []
            if table is None:
                name = family.display if family is not None else type(model.get_model_object("diffusion_model")).__name__
                notes.append(f"no calibrated TeaCache coefficients for {name}: raw relative L1 distance, tune δ "
                             f"or calibrate")
                log.warning(f"TeaCache: {notes[0]}")
            coeffs, auto = TT.COEFFICIENTS.get(table, IDENTITY_COEFFICIENTS), table is not None
        elif coefficients in TT.COEFFICIENTS:
            coeffs = TT.COEFFICIENTS[coefficients]
        else:
            raise ConfigError(f"coefficients must be one of {', '.join(map(repr, TT.CHOICES))}; got {coefficients!r}")
        return make_config("teacache", threshold=threshold, coefficients=coeffs), dict(teacache_auto=auto, notes=notes)


    @classmethod
    def apply_calibration(cls, cfg, cal, target: float):
        """This model's rescale polynomial, and the δ that meets the calibration's speed."""
        cfg = cfg.with_(coefficients=cal.teacache_coefficients)
        if cal.teacache_threshold is not None:
            cfg = cfg.with_(threshold=cal.teacache_threshold)
        elif not target:
            target = cal.target
        return cfg, target


class TraCacheNode(CacheNode):
    NODE_ID, DISPLAY_NAME, LABEL = "TCPade_TraCache", "TraCache", "TraCache"
    DESCRIPTION = ("TraCache: compute every k steps; in between, Lagrange interpolation through the last "
                   "computed block-stack outputs with the order chosen per step.")

    @classmethod
    def own_inputs(cls) -> list:
        return [
            _target_input(),
            io.Int.Input("stride", display_name="stride k", default=2, min=1, max=100,
                         tooltip="k, 1-100. Full compute every k steps. Higher: faster, lower fidelity; 1 disables "
                                 "skipping. Used at target speed-up 0 only: a target sets the schedule."),
            io.Int.Input("max_order", display_name="max order", default=2, min=1, max=4,
                         tooltip="1-4. Highest Lagrange order tried per step (needs max order + 1 cached outputs). "
                                 "Higher: more memory, follows curvature."),
        ]

    @classmethod
    def make_config(cls, model, family, stride, max_order):
        return make_config("tracache", stride=stride, max_order=max_order), {}


class Calibrate(io.ComfyNode):
    """One full-compute sampling pass that fits every cache method to this model and step count."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        import comfy.samplers
        return io.Schema(
            node_id="TCPade_Calibrate",
            display_name="Calibrate (TC-Padé)",
            category=CATEGORY,
            description="Samples once with full compute (like a KSampler) and fits, on that run, what the cache "
                        "methods need for this model, step count and speed target: TeaCache's rescale polynomial "
                        "and δ, TaylorSeer's interval, TC-Padé's θ and warm-up. Connect its calibration output to "
                        "the cache nodes; the result is also stored (ComfyUI user directory, tcpade/calibration.json) "
                        "and used by later runs of the same model and step count without this node.",
            inputs=[
                io.Model.Input("model", tooltip="The model to calibrate (the same one the cache nodes get)."),
                io.Conditioning.Input("positive", tooltip="A typical prompt."),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image"),
                io.Int.Input("seed", display_name="seed", default=0, min=0, max=0xffffffffffffffff,
                             control_after_generate=True,
                             tooltip="0-18446744073709551615. Seed of the calibration run."),
                io.Int.Input("steps", display_name="steps", default=20, min=1, max=10000,
                             tooltip="1-10000. The step count to calibrate for: a calibration applies to runs with "
                                     "exactly this many steps."),
                io.Float.Input("cfg", display_name="cfg", default=4.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="0.0-100.0. The CFG scale of your runs."),
                io.Combo.Input("sampler_name", display_name="sampler name", options=comfy.samplers.SAMPLER_NAMES,
                               default="euler",
                               tooltip="The sampler of your runs (a deterministic one: stochastic samplers make every "
                                       "method compute every step)."),
                io.Combo.Input("scheduler", display_name="scheduler", options=comfy.samplers.SCHEDULER_NAMES,
                               default="simple"),
                io.Float.Input("target_speedup", display_name="target speed-up", default=2.0, min=1.0, max=10.0,
                               step=0.05, tooltip="1.0-10.0. The speed to calibrate the thresholds for."),
            ],
            outputs=[CALIBRATION.Output(display_name="calibration",
                                        tooltip="Connect to the calibration input of the cache nodes."),
                     io.Latent.Output(display_name="LATENT", tooltip="The full-compute result of the calibration run.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler,
                target_speedup) -> io.NodeOutput:
        import time

        import comfy.sample

        from ..tcpade_core import NoCacheConfig
        from ..tcpade_core.calibrate import calibrate
        if isinstance(target_speedup, bool) or not isinstance(target_speedup, (int, float)) or \
                not 1.0 <= target_speedup <= 10.0:
            raise ConfigError(f"target_speedup must be a number in [1.0, 10.0], got {target_speedup!r}")
        t0 = time.perf_counter()
        family, layout = resolve(model.get_model_object("diffusion_model"))
        settings = CacheSettings(NoCacheConfig(), "Calibrate", 0.0, 1.0, None, family, layout)
        settings.recorder = CAL.Recorder()
        m = apply_cache(model, settings)
        latent = comfy.sample.fix_empty_latent_channels(m, latent_image["samples"])
        noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
        samples = comfy.sample.sample(m, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                                      noise_mask=latent_image.get("noise_mask"), seed=seed, disable_pbar=True)
        sampled = time.perf_counter() - t0
        traj = settings.recorder.traj
        if len(traj) < 3:
            raise ValueError(f"calibration needs a run of at least 3 steps with one model call each; got {len(traj)} "
                             f"(steps={steps}, sampler_name={sampler_name!r})")
        cal = calibrate(traj, CAL.model_key(model), float(target_speedup))
        path = CAL.save(cal)
        text = f"{cal.describe()}; sampling {sampled:.1f} s, fitting {time.perf_counter() - t0 - sampled:.1f} s; stored in {path}"
        log.info(f"TC-Padé: {text}")
        out = dict(latent_image)
        out["samples"] = samples
        return io.NodeOutput(cal, out, ui={"text": [text]})


NODE_LIST = [TCPadeCache, TaylorSeerCache, TeaCacheNode, TraCacheNode, Calibrate]
