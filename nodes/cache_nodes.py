"""The pack's cache nodes (V3 schema). Each takes a MODEL and returns a clone with a cache attached.

One schema-and-execute path (:class:`CacheNode`) serves every node: its widgets, title and calibration
mapping come from the method's descriptor (:mod:`tcpade_core.methods`); the shared part checks the start/end
window and the cache device, resolves where the model's block stack is (once) and attaches the cache. A bad
value raises :class:`tcpade_core.ConfigError` naming the widget and its valid range.
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ..tcpade_core import ConfigError, make_config
from ..tcpade_core import methods as M
from ..tcpade_core.config import DEFAULT_PLACEMENT, IDENTITY_COEFFICIENTS, check_target
from . import teacache_tables as TT
from . import magcache_tables as MAGT
from ..tcpade_core import magcache_tables as MT
from . import calibration as CAL
from .families import resolve
from .patcher import CacheSettings, apply_cache

CALIBRATION = io.Custom("TCPADE_CALIBRATION")

log = logging.getLogger("tcpade")

CATEGORY = "tcpade"
PRESETS, CUSTOM = M.PRESETS, M.CUSTOM
DEVICES = {"same": None, "cpu offload": "cpu"}


def _window_inputs(start: float = 0.0, end: float = 1.0):
    return [
        io.Float.Input(
            "start_percent",
            display_name="start percent",
            default=start,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="0.0-1.0. Part of the denoising (in the model's sigma scale) before which every step is "
            "computed in full. Higher: the cache starts later, safer, less speed-up.",
        ),
        io.Float.Input(
            "end_percent",
            display_name="end percent",
            default=end,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="0.0-1.0. Part of the denoising after which every step is computed in full. Lower: the "
            "last steps (fine detail) are always computed, safer, less speed-up.",
        ),
        io.Combo.Input(
            "cache_device",
            display_name="cache device",
            options=list(DEVICES),
            default="same",
            tooltip="same: keep cached residuals on the model's device (fastest). cpu offload: keep them in "
            "system RAM (saves VRAM, costs a copy per step).",
        ),
    ]


def widget_input(w: M.Widget):
    """A descriptor's host-free widget as a V3 input."""
    common = dict(display_name=w.display, default=w.default, tooltip=w.tooltip)
    if w.kind == "float":
        return io.Float.Input(w.name, min=w.min, max=w.max, step=w.step, **common)
    if w.kind == "int":
        return io.Int.Input(w.name, min=w.min, max=w.max, **common)
    if w.kind == "combo":
        return io.Combo.Input(w.name, options=list(w.options), **common)
    return io.String.Input(w.name, multiline=False, **common)


_MODEL_IN = lambda: io.Model.Input(
    "model", tooltip="The diffusion model to accelerate. It is cloned; the input is not changed."
)
_MODEL_OUT = lambda: io.Model.Output(tooltip="The model with the cache attached (takes effect in the next sampler).")


class CacheNode(io.ComfyNode):
    """The shared schema and execute path of the cache nodes, read from the method's descriptor
    (:data:`tcpade_core.methods.METHODS`): its node id, title, description, widgets and calibration mapping. A
    subclass only names its method, and overrides :meth:`make_config` where a widget needs the host (TeaCache's
    coefficient table)."""

    METHOD = ""

    @classmethod
    def method(cls) -> M.Method:
        return M.METHODS[cls.METHOD]

    @classmethod
    def define_schema(cls) -> io.Schema:
        m = cls.method()
        return io.Schema(
            node_id=m.node_id,
            display_name=m.title,
            category=CATEGORY,
            description=m.description,
            inputs=[
                _MODEL_IN(),
                *map(widget_input, m.widgets),
                *_window_inputs(),
                *map(widget_input, m.tail_widgets),
                CALIBRATION.Input(
                    "calibration",
                    optional=True,
                    tooltip="Optional: the output of Calibrate (TC-Padé) for this model "
                    "and step count. Without it a stored calibration for the "
                    "same model and step count is used, if there is one. "
                    "Calibration fills only the settings left at their default "
                    "(or auto); the run's report lists what it filled. At a speed "
                    "target it also places the computes: the schedule planned "
                    "from the calibration run.",
                ),
            ],
            outputs=[_MODEL_OUT()],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def make_config(cls, model, family, target: float, **widgets):
        """(engine config, notes that hold only without a calibration, whether TeaCache's table is re-chosen per
        run). Default: every widget with a ``param`` sets that config parameter."""
        m = cls.method()
        params = m.params(widgets)
        unknown = sorted(set(widgets) - {w.name for w in m.all_widgets()})
        if unknown:
            raise ConfigError(f"unknown input(s) for {m.title}: {', '.join(unknown)}")
        return make_config(m.name, target_speedup=target, **params), (), False

    @classmethod
    def target_of(cls, widgets: dict) -> float:
        """The speed target this node's widgets ask for (0: off): a preset's, else the target widget's."""
        preset, target = widgets.get("preset"), widgets.pop("target_speedup", 0.0)
        if preset is None or preset == CUSTOM:
            return target
        if preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(map(repr, [*PRESETS, CUSTOM]))}; got {preset!r}")
        return PRESETS[preset]

    @classmethod
    def execute(cls, model, start_percent, end_percent, cache_device, calibration=None, **widgets) -> io.NodeOutput:
        m = cls.method()
        # a target the user typed (a preset is the node's default, not a request): it is honoured at few steps too
        typed = widgets.get("target_speedup", 0.0)
        explicit = (
            isinstance(typed, (int, float))
            and not isinstance(typed, bool)
            and typed > 0
            and widgets.get("preset", CUSTOM) == CUSTOM
        )
        user_set = m.user_set(widgets)
        target = check_target(cls.target_of(widgets))
        for name, v in (("start_percent", start_percent), ("end_percent", end_percent)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be a number in [0.0, 1.0], got {v!r}")
        if end_percent < start_percent:
            raise ConfigError(
                f"end_percent must be >= start_percent (start_percent={start_percent}, "
                f"end_percent={end_percent}); both in [0.0, 1.0]"
            )
        if cache_device not in DEVICES:
            raise ConfigError(f"cache_device must be one of {', '.join(map(repr, DEVICES))}; got {cache_device!r}")
        family, layout = resolve(model.get_model_object("diffusion_model"))
        cfg, uncalibrated_notes, teacache_auto = cls.make_config(model, family, target, **widgets)
        hidden = getattr(cls, "hidden", None)
        settings = CacheSettings(
            cfg,
            m.label,
            float(start_percent),
            float(end_percent),
            DEVICES[cache_device],
            family,
            layout,
            node_id=getattr(hidden, "unique_id", None),
            teacache_auto=teacache_auto,
            uncalibrated_notes=tuple(uncalibrated_notes),
            model_key=CAL.model_key(model),
            calibration=calibration,
            explicit_target=explicit,
            user_set=user_set,
        )
        return io.NodeOutput(apply_cache(model, settings))


class TCPadeCache(CacheNode):
    METHOD = "tcpade"

    @classmethod
    def make_config(
        cls, model, family, target, preset, theta, lam, alpha1, beta, interval, mode, placement=DEFAULT_PLACEMENT
    ):
        if mode == "official":  # a preset keeps the authors' schedule; custom sets its threshold and interval
            custom = dict(threshold=theta, interval=interval) if preset == CUSTOM else {}
            cfg = make_config("tcpade", mode="official", target_speedup=target, placement=placement, **custom)
            return cfg, (), False
        return (
            make_config(
                "tcpade",
                theta=theta,
                lam=lam,
                alpha1=alpha1,
                beta=beta,
                interval=interval,
                mode=mode,
                target_speedup=target,
                placement=placement,
            ),
            (),
            False,
        )


class TaylorSeerCache(CacheNode):
    METHOD = "taylorseer"


class TeaCacheNode(CacheNode):
    METHOD = "teacache"

    @classmethod
    def make_config(cls, model, family, target, threshold, coefficients, custom_coefficients):
        """'auto' takes the table the model's family names (chosen again per run from the latent size);
        a model without a table gets the raw relative L1 distance (coefficients 1, 0) with a warning, unless a
        calibration gives this model's own."""
        auto, notes = False, []
        if coefficients == TT.CUSTOM:
            coeffs = TT.parse_coefficients(custom_coefficients)
        elif coefficients == TT.AUTO:
            table = (
                family.teacache(getattr(model.model, "model_config", None), None)
                if family and family.teacache
                else None
            )
            if table is None:
                name = (
                    family.display if family is not None else type(model.get_model_object("diffusion_model")).__name__
                )
                notes.append(
                    f"no calibrated TeaCache coefficients for {name}: raw relative L1 distance, tune δ or calibrate"
                )
                log.warning(f"TeaCache: {notes[0]}")
            coeffs, auto = TT.COEFFICIENTS.get(table, IDENTITY_COEFFICIENTS), table is not None
        elif coefficients in TT.COEFFICIENTS:
            coeffs = TT.COEFFICIENTS[coefficients]
        else:
            raise ConfigError(f"coefficients must be one of {', '.join(map(repr, TT.CHOICES))}; got {coefficients!r}")
        return make_config("teacache", threshold=threshold, coefficients=coeffs, target_speedup=target), notes, auto


class TraCacheNode(CacheNode):
    METHOD = "tracache"


class MagCacheNode(CacheNode):
    METHOD = "magcache"

    @classmethod
    def make_config(cls, model, family, target, threshold, K, retention_ratio, ratios):
        """'auto': the published table of the model's family (FLUX.1, Wan 2.1), else the flat profile with a note
        that holds until a calibration fills in this model's own ratios."""
        notes = []
        if ratios == MT.AUTO:
            table = MAGT.table_for(family, getattr(model.model, "model_config", None))
            if table is None:
                table = MT.UNCALIBRATED
                notes.append(
                    f"uncalibrated: {table} profile (no MagCache ratios for this model: K and the retention decide; "
                    "calibrate for its own)"
                )
        elif ratios in MT.CHOICES:
            table = ratios
        else:
            raise ConfigError(f"ratios must be one of {', '.join(map(repr, MT.CHOICES))}; got {ratios!r}")
        t = MT.table(table)
        cfg = make_config(
            "magcache",
            threshold=threshold,
            K=K,
            retention_ratio=retention_ratio,
            ratios=t.profile(),
            always_compute=t.always_compute,
            target_speedup=target,
        )
        return cfg, notes, False


class FirstBlockCache(CacheNode):
    METHOD = "first_block"


class SpectrumCache(CacheNode):
    METHOD = "spectrum"


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
            "and δ, TaylorSeer's interval, TC-Padé's θ and warm-up, MagCache's magnitude ratios, and, for every cache "
            "node at a speed target, the planned schedule of its computes. Connect its calibration output to "
            "the cache nodes; the result is also stored (ComfyUI user directory, tcpade/calibration.json) "
            "and used by later runs of the same model and step count without this node.",
            inputs=[
                io.Model.Input("model", tooltip="The model to calibrate (the same one the cache nodes get)."),
                io.Conditioning.Input("positive", tooltip="A typical prompt."),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image"),
                io.Int.Input(
                    "seed",
                    display_name="seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="0-18446744073709551615. Seed of the calibration run.",
                ),
                io.Int.Input(
                    "steps",
                    display_name="steps",
                    default=20,
                    min=1,
                    max=10000,
                    tooltip="1-10000. The step count to calibrate for: a calibration applies to runs with "
                    "exactly this many steps.",
                ),
                io.Float.Input(
                    "cfg",
                    display_name="cfg",
                    default=4.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="0.0-100.0. The CFG scale of your runs.",
                ),
                io.Combo.Input(
                    "sampler_name",
                    display_name="sampler name",
                    options=comfy.samplers.SAMPLER_NAMES,
                    default="euler",
                    tooltip="The sampler of your runs (a deterministic one: stochastic samplers make every "
                    "method compute every step).",
                ),
                io.Combo.Input(
                    "scheduler", display_name="scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="simple"
                ),
                io.Float.Input(
                    "target_speedup",
                    display_name="target speed-up",
                    default=2.0,
                    min=1.0,
                    max=100.0,
                    step=0.05,
                    tooltip="1.0-100.0. The speed to calibrate the thresholds for.",
                ),
            ],
            outputs=[
                CALIBRATION.Output(
                    display_name="calibration", tooltip="Connect to the calibration input of the cache nodes."
                ),
                io.Latent.Output(display_name="LATENT", tooltip="The full-compute result of the calibration run."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, target_speedup
    ) -> io.NodeOutput:
        import time

        from dataclasses import replace

        import comfy.sample

        from ..tcpade_core import NoCacheConfig
        from ..tcpade_core.calibrate import calibrate

        check_target(target_speedup, off=False)
        t0 = time.perf_counter()
        family, layout = resolve(model.get_model_object("diffusion_model"))
        recorder = CAL.Recorder()
        m = apply_cache(
            model, CacheSettings(NoCacheConfig(), "Calibrate", 0.0, 1.0, None, family, layout), recorder=recorder
        )
        latent = comfy.sample.fix_empty_latent_channels(m, latent_image["samples"])
        noise = comfy.sample.prepare_noise(latent, seed, latent_image.get("batch_index"))
        samples = comfy.sample.sample(
            m,
            noise,
            steps,
            cfg,
            sampler_name,
            scheduler,
            positive,
            negative,
            latent,
            noise_mask=latent_image.get("noise_mask"),
            seed=seed,
            disable_pbar=True,
        )
        sampled = time.perf_counter() - t0
        traj = recorder.traj
        if len(traj) < 3:
            raise ValueError(
                f"calibration needs a run of at least 3 steps with one model call each; got {len(traj)} "
                f"(steps={steps}, sampler_name={sampler_name!r})"
            )
        cal = replace(
            calibrate(traj, CAL.model_key(model), float(target_speedup)), sampler=sampler_name, scheduler=scheduler
        )
        path = CAL.save(cal)
        text = f"{cal.describe()}; sampling {sampled:.1f} s, fitting {time.perf_counter() - t0 - sampled:.1f} s; stored in {path}"
        log.info(f"TC-Padé: {text}")
        out = dict(latent_image)
        out["samples"] = samples
        return io.NodeOutput(cal, out, ui={"text": [text]})


NODE_LIST = [
    TCPadeCache,
    TaylorSeerCache,
    TeaCacheNode,
    TraCacheNode,
    FirstBlockCache,
    MagCacheNode,
    SpectrumCache,
    Calibrate,
]
