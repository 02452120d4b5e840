"""Attach a cache to a ComfyUI ModelPatcher through the host's wrapper and block-patch hooks.

Pattern (the host's own EasyCache does the same; no model forward is copied or replaced):

- :func:`apply_cache` clones the ModelPatcher, stores a frozen :class:`CacheSettings` (settings only) in
  ``model_options["transformer_options"][KEY]`` and registers three wrappers under ``KEY``.
- OUTER_SAMPLE (:func:`outer_sample_wrapper`): per sampling run, on a clone of the guider's
  model options: build a fresh :class:`StackDriver` (fresh engine state), translate the
  start/end percents to sigmas, install block patches for the model's family, and in ``finally``
  log the one-line summary, publish the per-step report and drop every cached tensor.
- CALC_COND_BATCH (:func:`calc_cond_batch_wrapper`): one call per model evaluation; maps the
  current sigma to a sampler step (see :mod:`.driver` for Heun / multi-evaluation samplers).
- DIFFUSION_MODEL (:func:`diffusion_model_wrapper`): clears the per-call block context; for a
  model without a block adapter it caches the whole diffusion-model output instead (fallback).
- Block patches (:class:`BlockPatch`): the first block of the stack decides, middle blocks pass
  their input through on a skipped call, the last block records the residual or returns the
  prediction. A block patch already installed for a key (e.g. SkipLayerGuidance) is wrapped. A method's
  leading and trailing blocks (First Block Cache's Fn and Bn) are outside the cached stack and run on every
  step; the trailing ones are left unpatched and run on the last cached block's output.

torch.compile (the host's TorchCompileModel compiles the whole diffusion model): the wrappers and the
block patches' bookkeeping run eager (:func:`~tcpade_core.engine.eager`, ``torch.compiler.disable``) and only the blocks
are compiled (:func:`_run_block`), so no compiled code guards on per-run objects (driver, stream names
from the host's uuids, step, which patch object called): one compiled block per kind of block, nothing
recompiled per step or run. Where compilation fails with the cache attached (``fullgraph=True`` cannot
include the cache's per-step decision), :func:`calc_cond_batch_wrapper` logs one line, removes the host's
compile wrapper from this run's options and evaluates eagerly.

Host modules are imported inside functions so that this file imports outside ComfyUI.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import torch

from ..tcpade_core import RunReport
from ..tcpade_core import calibrate as CALIB
from ..tcpade_core.engine import eager, eager_frame
from ..tcpade_core import methods as M
from ..tcpade_core.report import finite_or_none
from ..tcpade_core.config import AUTO_MIN_STEPS, AUTO_SHAPE_BELOW, placement_for
from . import host
from . import teacache_tables as TT
from .driver import CallCtx, StackDriver
from .families import Family, StackLayout, image_part, joint_order, pack_stream, unpack_stream, with_image_part
from .samplers import SamplerInfo, classify

log = logging.getLogger("tcpade")

# host-side bookkeeping that torch.compile must not trace (it reads per-run objects that would become guards and
# recompile every step or run): eager runs a function and what it calls eager, eager_frame only its own frame


KEY = "tcpade"  # transformer_options key of the settings and the wrapper key
RUN_KEY = "tcpade_run"  # transformer_options key of the per-run driver (only on the run's clone)
RECORD_KEY = "tcpade_record"  # transformer_options key of the Calibrate node's recorder (its own clone only)
EVENT = "tcpade.report"  # PromptServer event name

# Every run's published report, keyed "<prompt id>/<node id>/<n>" (the n-th run of that node in that prompt), so
# that two samplers fed by one node, and two workflows whose node ids repeat, never overwrite each other; the
# newest REPORTS_KEPT are kept. For the UI (GET /tcpade/reports) and tests.
LAST_REPORTS: "OrderedDict[str, dict]" = OrderedDict()
REPORTS_KEPT = 256
# The last result of every Compare node (key: node unique id), so that a reloaded page shows it again.
LAST_COMPARES: Dict[str, dict] = {}


@dataclass(frozen=True)
class RunResult:
    """What one sampling run of a cache node produced."""

    report: RunReport
    counters: Any  # driver.Counters
    payload: dict  # what was sent to the frontend


# settings.uid -> the results of its newest runs (a settings object is shared by every sampler its model feeds)
RUNS: "OrderedDict[str, deque]" = OrderedDict()
RUNS_KEPT = 64


@dataclass(frozen=True)
class CacheSettings:
    """What a cache node configured: the engine config (with its speed target) and host-side options. Frozen:
    a run's state lives in its own :class:`StackDriver`, its results in :data:`RUNS` and :data:`LAST_REPORTS`.

    ``family`` / ``layout``: where the stack is (:func:`.families.resolve`, called once by the node).
    ``teacache_auto``: TeaCache's coefficients follow the family's table, re-chosen per run from the
    latent shape (Wan i2v 480p / 720p). ``notes``: what the node found when it attached (shown with every run's
    report); ``uncalibrated_notes``: the same, true only while no calibration fills what they are about.
    ``user_set``: the config parameters the user moved off their defaults (a calibration never changes them).
    ``ModelPatcher.clone`` deep-copies ``model_options``; a frozen settings object is its own copy.
    """

    cfg: Any
    label: str
    start_percent: float
    end_percent: float
    store_device: Optional[str]
    family: Optional[Family]
    layout: Optional[StackLayout]
    node_id: Optional[str] = None
    teacache_auto: bool = False
    notes: Tuple[str, ...] = ()
    uncalibrated_notes: Tuple[str, ...] = ()
    model_key: Optional[str] = None  # fingerprint of the model (nodes.calibration.model_key)
    calibration: Any = None  # a connected Calibration, else the store is asked per run
    explicit_target: bool = False  # the user set a target speed-up (not a preset's default)
    user_set: FrozenSet[str] = frozenset()
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __deepcopy__(self, memo):
        return self

    @property
    def target_speedup(self) -> float:
        return self.cfg.target_speedup

    @property
    def last_run(self) -> Optional[RunResult]:
        runs = RUNS.get(self.uid)
        return runs[-1] if runs else None

    @property
    def last_report(self) -> Optional[RunReport]:
        run = self.last_run
        return run.report if run is not None else None

    # ---------------------------------------------------------------- per run
    def new_driver(
        self, sigmas: List[float], model_sampling, model_config, dm, latent_shape, sampler: str = ""
    ) -> StackDriver:
        """A fresh driver for one sampling run: the window in sigma, this run's calibration (and its planned
        schedule) and TeaCache table. ``sampler``: the sampler's name (a plan is made for one sampler)."""
        cfg, notes = self.cfg, list(self.notes) + list(self.uncalibrated_notes)
        cal = self._calibration_for(len(sigmas) - 1, notes)
        method, filled = M.METHODS[cfg.method], {}
        if cal is not None and method.calibrate is not None:
            applied = method.calibrate(cfg, cal, cfg.target_speedup, self.user_set)
            filled = applied.values
            if filled:  # "calibrated" only where the calibration filled something
                cfg = applied.cfg.with_(target_speedup=applied.target)
                notes = [n for n in notes if n not in self.uncalibrated_notes]
                notes.append(
                    f"{cal.describe()}; filled in: " + ", ".join(f"{k} {_fmt_value(v)}" for k, v in filled.items())
                )
        pred, n = host.prediction(model_sampling), len(sigmas) - 1
        cfg, note = M.fill_at_target(cfg, host.output_kind(model_sampling), n, self.user_set)  # e.g. TaylorSeer's order
        if note:
            notes.append(note)
        auto = cfg.placement == "auto"
        if auto:  # where a speed target without a plan puts its computes: it reads what the model predicts
            cfg = cfg.with_(placement=placement_for("auto", pred, cfg.target_speedup, n))
        cfg, schedule = self._planned(cfg, cal, sigmas, sampler, notes, auto)
        if self.teacache_auto and "coefficients" not in filled:
            table = self.family.teacache(model_config, latent_shape)
            if table is not None:
                cfg = cfg.with_(coefficients=TT.COEFFICIENTS[table])
        window = (
            float(model_sampling.percent_to_sigma(self.start_percent)),
            float(model_sampling.percent_to_sigma(self.end_percent)),
        )
        sigma_max = float(getattr(model_sampling, "sigma_max", sigmas[0] if sigmas else 1.0))
        out_channels = getattr(dm, "out_channels", None) or getattr(dm, "out_dim", None)
        driver = StackDriver(
            cfg,
            sigmas,
            sigma_max,
            window,
            layout=self.layout,
            dm=dm,
            out_channels=out_channels,
            store_device=self.store_device,
            label=self.label,
        )
        driver.run.report.notes.extend(notes)
        driver.run.report.schedule = schedule
        few_steps(driver, self.explicit_target, cfg.target_speedup)
        if self.layout is None and driver.run.gate.leading_residual:  # its signal needs the model's first blocks
            _hold(
                driver,
                "no blocks",
                f"no block adapter for {model_name(self.family, dm)}: {self.label} reads the residual of the "
                f"model's first blocks, so every step computes",
            )
        elif self.layout is None:
            driver.run.report.notes.append(
                f"no block adapter for {model_name(self.family, dm)}: caching the whole model output"
            )
        return driver

    def _planned(self, cfg, cal, sigmas: List[float], sampler: str, notes: list, auto: bool = False):
        """(config, where its schedule came from): at a speed target, for a method that plans (Method.plans), the
        schedule planned from the calibration's run when it was made for this sampler and these sigmas; else the
        target's placement (``cfg.placement``, resolved; ``auto``: the node's placement was "auto"; a calibration
        made for another sampler or sigmas: with a warning)."""
        if not cfg.target_speedup or not M.METHODS[cfg.method].plans or cfg.plan is not None:
            return cfg, ""
        n = len(sigmas) - 1
        placed = "spaced evenly" if cfg.placement == "even" else "default shape"
        if cal is None or not cal.plan_outputs or len(cal.plan_outputs) != n:
            if cfg.placement != "even":
                why = f"below {AUTO_SHAPE_BELOW:g}x on a flow model from {AUTO_MIN_STEPS} steps, " if auto else ""
                return cfg, f"default shape ({why}not calibrated: Calibrate plans the schedule)"
            return cfg, "not calibrated (Calibrate plans the schedule)"
        why = cal.plan_mismatch(sigmas, sampler)
        if why:
            where = "spaced evenly" if cfg.placement == "even" else "on the default shape"
            notes.append(f"schedule {where}: the calibration's plan was made for {why}")
            log.warning(f"{self.label}: {notes[-1]}")
            return cfg, f"calibrated for another run: {placed}"
        cfg, steps, err = CALIB.planned_config(
            cfg, cal.plan_outputs, cal.plan_weights, cfg.target_speedup, self.user_set, table=cal.plan_table
        )
        kept = CALIB.margin_note(cfg, steps, n)
        if kept:
            notes.append(kept)
        return cfg, f"planned from calibration{' (even spacing)' if kept else ''}, predicted error {err:.3g}"

    def _calibration_for(self, steps: int, notes: list):
        """The calibration that applies to a run of ``steps`` steps: the connected one if it was made for this
        model and step count (else ignored, with a warning), otherwise the stored one, if any."""
        method = M.METHODS[self.cfg.method]
        if (method.calibrate is None and not method.plans) or self.model_key is None:
            return None
        from . import calibration as C

        cal = self.calibration
        if cal is not None:
            if (cal.model_key, cal.steps) == (self.model_key, steps):
                return cal
            why = "another model" if cal.model_key != self.model_key else f"{cal.steps} steps, not {steps}"
            notes.append(f"calibration ignored: it was made for {why}")
            log.warning(f"{self.label}: {notes[-1]}")
            return None
        try:
            return C.lookup(self.model_key, steps)
        except C.CalibrationFileError as e:
            notes.append(str(e))
            log.error(f"{self.label}: {e}")
            return None

    def publish(self, driver: StackDriver, report: RunReport) -> None:
        summary = report.summary(self.label)
        log.info(summary)
        gate = driver.run.gate
        prompt = current_prompt_id()
        payload = {
            "node": self.node_id,
            "label": self.label,
            "summary": summary,
            "method": report.method,
            "settings": report.settings,
            "gate": report.gate_name,
            "gate_rule": gate.rule,
            "gate_axis": list(gate.axis) if gate.axis else None,
            "gate_scale": gate.axis_scale,
            "threshold": report.threshold,
            "computed": report.computed,
            "num_steps": report.num_steps,
            "speedup": report.speedup,
            "cache_bytes": report.cache_bytes,
            "store_device": report.store_device,
            "notes": list(report.notes),
            "interrupted": report.interrupted,
            "inactive": report.inactive,
            "planned_steps": report.planned_steps,
            "prompt_id": prompt,
            "target_speedup": report.target_speedup,
            "target_note": report.target_note,
            "schedule": report.schedule,
            "timing": {
                k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in driver.counters.timing().items()
            },
            "adapter": self.layout.family.name if self.layout is not None else "model-level",
            "steps": [
                {
                    "step": r.step,
                    "computed": r.computed,
                    "gate": finite_or_none(r.gate),
                    "phase": r.phase,
                    "reason": r.reason,
                    "t": finite_or_none(r.t),
                }
                for r in report.steps
            ],
        }
        _keep(RUNS, self.uid, RUNS_KEPT).append(RunResult(report, driver.counters, payload))
        node = str(self.node_id) if self.node_id is not None else self.label
        prefix = f"{prompt}/{node}/"
        # the next run number of this node in this prompt: after the highest kept (never a kept one, even after
        # the oldest were dropped)
        n = 1 + max((int(k[len(prefix) :]) for k in LAST_REPORTS if k.startswith(prefix)), default=-1)
        LAST_REPORTS[prefix + str(n)] = payload
        while len(LAST_REPORTS) > REPORTS_KEPT:
            LAST_REPORTS.popitem(last=False)
        _send_to_frontend(payload)


def _keep(store: "OrderedDict[str, deque]", key: str, kept: int) -> deque:
    """The run list of ``key`` (newest last, at most 8 runs), made the newest key; the oldest keys beyond ``kept``
    are forgotten."""
    runs = store.pop(key, None) or deque(maxlen=8)
    store[key] = runs
    while len(store) > kept:
        store.popitem(last=False)
    return runs


def reports_by_node() -> Dict[str, dict]:
    """The newest published report of every node (key: node id, else label), over every prompt."""
    return {str(p["node"]) if p["node"] is not None else p["label"]: p for p in LAST_REPORTS.values()}


def _fmt_value(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


FEW_STEPS_HOLD = 4  # at this many steps or fewer the nodes compute every step unless the user typed a target


def few_steps(driver: StackDriver, explicit_target: bool, target: float) -> None:
    """Distilled models and Lightning LoRAs sample in 4-8 steps, where a skipped step saves little and costs much.
    Measured on the bench models (``python -m tcpade_core.research.few_steps``, docs/few_steps.txt): at 4 steps no
    setting of any node reaches 29 dB on any model (a 2x target saves 2 model calls); at 6 and 8 steps a 1.5x target
    keeps 21-39 dB. So at 4 steps or fewer a run computes every step and says why, unless the user typed a target
    speed-up (then it caches, with a note)."""
    n = driver.num_steps
    sig = driver.sigmas
    # only a whole schedule (from the top of the noise range to 0): a part of one (a Wan 2.2 expert's share,
    # denoise < 1) does not say how many steps the whole run has
    whole = bool(sig) and sig[-1] == 0.0 and sig[0] >= 0.99 * driver.sigma_max
    if n == 0 or n > FEW_STEPS_HOLD or not whole:
        return
    if explicit_target:
        driver.run.report.notes.append(
            f"{n} steps: caching as asked (target {target:g}x); at {FEW_STEPS_HOLD} steps "
            f"or fewer expect a large quality loss"
        )
        return
    _hold(
        driver,
        "few steps",
        f"{n} steps: at {FEW_STEPS_HOLD} steps or fewer caching costs more quality than it "
        f"saves time, so {driver.label} computes every step (type a target speed-up to cache "
        f"anyway)",
    )


def _hold(driver: StackDriver, reason: str, note: str, prefix: bool = True) -> None:
    """Compute every step of this run (``reason`` in each step, ``note`` in the report) and log the note once, when
    the hold is decided (``prefix``: with the node's label in front)."""
    driver.run.hold(reason, note)
    log.warning(f"{driver.label}: {note}" if prefix else note)


def model_name(family: Optional[Family], dm) -> str:
    """How a warning names the model: its family ("Flux", "LTX-2"), else its class, said as such."""
    if family is not None:
        return family.display
    return f"this model (class {type(dm).__name__})" if dm is not None else "this model"


def prompt_server():
    """The host's running PromptServer instance, or None (never imported: read from sys.modules)."""
    server = sys.modules.get("server")
    ps = getattr(server, "PromptServer", None) if server is not None else None
    return getattr(ps, "instance", None) if ps is not None else None


def current_prompt_id() -> Optional[str]:
    """The id of the prompt the host runs now (None outside a server): lets the UI find a report's workflow."""
    pid = getattr(prompt_server(), "last_prompt_id", None)
    return str(pid) if pid is not None else None


def _send_to_frontend(payload: dict) -> None:
    """Push the report to the browser if a PromptServer runs in this process (never import it)."""
    inst = prompt_server()
    if inst is None:
        return
    try:
        inst.send_sync(EVENT, payload)
    except Exception as e:  # the UI is optional; never fail a run for it
        log.debug(f"TC-Padé: could not send report to the frontend: {e}")


# -------------------------------------------------------------------------------- applying


def apply_cache(model, settings: CacheSettings, recorder=None):
    """Clone ``model`` (a ModelPatcher) and attach the cache. The input model is never mutated. ``recorder``: the
    Calibrate node's (:class:`.calibration.Recorder`), which records this clone's runs.

    A model the pack cannot patch block by block (``settings.layout`` None) gets the whole-model
    fallback, with one warning.
    """
    import comfy.patcher_extension as pe

    m = model.clone()
    to = m.model_options.setdefault("transformer_options", {})
    prev = to.get(KEY)
    if prev is not None:
        log.warning(
            f"{settings.label}: the model already has a cache node ({prev.label}); "
            f"the later node wins: {prev.label} is removed, {settings.label} is used."
        )
        for kind in (pe.WrappersMP.OUTER_SAMPLE, pe.WrappersMP.CALC_COND_BATCH, pe.WrappersMP.DIFFUSION_MODEL):
            m.remove_wrappers_with_key(kind, KEY)
    if "easycache" in to:
        log.warning(
            f"{settings.label}: the model also has EasyCache/LazyCache; two caches on one model "
            f"compound their errors. Use one of them."
        )
    if settings.layout is None:
        dm = m.get_model_object("diffusion_model")
        log.warning(
            f"{settings.label}: no block adapter for {model_name(settings.family, dm)}; falling back to "
            f"caching the whole diffusion-model output (model-level, like EasyCache)."
        )
    to[KEY] = settings
    if recorder is not None:
        to[RECORD_KEY] = recorder
    m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, KEY, outer_sample_wrapper)
    m.add_wrapper_with_key(pe.WrappersMP.CALC_COND_BATCH, KEY, calc_cond_batch_wrapper)
    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, KEY, diffusion_model_wrapper)
    return m


# -------------------------------------------------------------------------------- wrappers


def outer_sample_wrapper(executor, *args, **kwargs):
    """One sampling run: fresh state, block patches on a clone of the options, report in finally."""
    import comfy.model_patcher

    guider = executor.class_obj
    orig = guider.model_options
    guider.model_options = comfy.model_patcher.create_model_options_clone(orig)
    driver: Optional[StackDriver] = None
    settings: Optional[CacheSettings] = None
    interrupted = False
    try:
        to = guider.model_options.setdefault("transformer_options", {})
        settings = to.get(KEY)
        if settings is not None:
            a = host.outer_sample_args(args, kwargs)
            noise, sampler, sigmas = a["noise"], a["sampler"], a["sigmas"]
            patcher = guider.model_patcher
            info = classify(sampler)
            sig = [float(s) for s in sigmas.flatten().tolist()]
            ms = patcher.get_model_object("model_sampling")
            driver = settings.new_driver(
                sig,
                ms,
                getattr(patcher.model, "model_config", None),
                patcher.get_model_object("diffusion_model"),
                tuple(noise.shape),
                info.name,
            )
            driver.recorder = to.get(RECORD_KEY)
            if driver.recorder is not None:  # what the planner weighs each step by (tcpade_core.planner)
                traj = driver.recorder.traj
                traj.sigmas, traj.prediction, traj.output = sig, host.prediction(ms), host.output_kind(ms)
            apply_sampler_rules(driver, info)
            to[RUN_KEY] = driver
            if driver.layout is not None:
                install_block_patches(to, driver)
        return executor(*args, **kwargs)
    except BaseException as e:
        interrupted = True
        if driver is not None and not host.is_interrupt(e):
            driver.run.report.notes.append(f"stopped by {type(e).__name__}")
        raise
    finally:
        if driver is not None and settings is not None:
            try:
                settings.publish(driver, driver.finish(interrupted=interrupted))
            except Exception as e:  # reporting must never mask the run's own error
                log.warning(f"{settings.label}: could not build the run report: {e}")
        guider.model_options = orig


def apply_sampler_rules(driver: StackDriver, info: SamplerInfo) -> None:
    """Measured on bench model B (README "Samplers"): where noise enters between steps, a prediction from
    earlier steps leaves that noise in the image (10-26 dB against the uncached run), and TeaCache, whose
    gate sees the noise, still ends up to 5 dB below its deterministic result at the same computed steps:
    every method computes every step, and says so. A sampler that picks its own times cannot be followed
    step by step: every method computes every call."""
    label = driver.label
    # only this run's own warning: the notes the node found when it attached were logged then, once
    if info.unknown:
        name = info.name or "this sampler"
        _hold(
            driver,
            "unknown sampler",
            f"{name} is not in the pack's sampler table (it may inject noise or pick "
            f"its own steps): {label} computes every step",
            prefix=False,
        )
    elif info.own_steps:
        _hold(
            driver, "adaptive sampler", f"{info.name} chooses its own steps: {label} computes every step", prefix=False
        )
    elif info.injects_noise:
        what = "re-noises the latent each step" if info.family == "lcm" else "injects noise each step"
        _hold(driver, "stochastic sampler", f"{info.name} {what}: {label} computes every step", prefix=False)


def calc_cond_batch_wrapper(executor, *args, **kwargs):
    a = host.calc_cond_batch_args(args, kwargs)
    model_options, timestep = a.get("model_options") or {}, a.get("timestep")
    driver = model_options.get("transformer_options", {}).get(RUN_KEY)
    if driver is None:
        return executor(*args, **kwargs)
    if timestep is not None:
        driver.on_model_call(float(timestep.flatten()[0]))
    mark = len(driver.counters.computed_sigmas)
    seen = (driver.wrapper_calls, driver.block_entries)
    t0 = time.perf_counter()
    try:
        out = _timed(driver, mark, t0, executor(*args, **kwargs))
    except Exception as e:
        if not _is_compile_failure(e) or not _drop_torch_compile(model_options):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:200]
        fullgraph = " (fullgraph=True)" if (model_options.get(host.compile_keys()[1]) or {}).get("fullgraph") else ""
        log.warning(
            f"{driver.label}: torch.compile{fullgraph} cannot compile this model with the cache attached "
            f"({type(e).__name__}: {first}); the diffusion model runs eager for the rest of this run."
        )
        # nothing of the failed evaluation counts: the step's decision stands, its record happens on the retry
        driver.ctx = driver.model_ctx = None
        del driver.counters.computed_sigmas[mark:]
        return executor(*args, **kwargs)
    why = _bypassed(driver, seen)
    if why is None:
        return out
    # the model ran without the cache's hooks: nothing of this call was recorded; make them run, then evaluate again
    driver.counters.skipped_seconds.pop()
    driver.ctx = driver.model_ctx = None
    del driver.counters.computed_sigmas[mark:]
    if why == "compiled" and _compiled(model_options) and not driver.recompiled:
        driver.recompiled = True
        _reset_compiled_graphs()
        note = (
            "torch.compile had compiled this model without the cache (the host's compile guards skip "
            "transformer_options); its compiled graphs were reset so that the cache's hooks run (one recompile)"
        )
        driver.run.report.notes.append(note)
        log.warning(f"{driver.label}: {note}")
    elif why == "blocks" and driver.layout is not None:
        fam = driver.layout.family.display
        driver.layout = None
        note = f"the {fam} model did not call the pack's block patches: caching the whole model output instead"
        driver.run.report.notes.append(note)
        log.warning(f"{driver.label}: {note}")
    else:
        driver.inactive = driver.inactive or "the model ran without calling the pack's hooks (torch.compile?)"
        return out
    seen = (driver.wrapper_calls, driver.block_entries)
    out = executor(*args, **kwargs)
    if _bypassed(driver, seen) is not None:
        driver.inactive = driver.inactive or "the model ran without calling the pack's hooks even after a recompile"
    return out


def _timed(driver: StackDriver, mark: int, t0: float, out):
    """Record the wall time of the model call that just returned (as computed when it ran the stack). On a GPU the
    queued work is waited for first, so the time is the call's, not its launch's."""
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor) and out[0].is_cuda:
        torch.cuda.synchronize(out[0].device)
    c = driver.counters
    (c.computed_seconds if len(c.computed_sigmas) > mark else c.skipped_seconds).append(time.perf_counter() - t0)
    return out


def _bypassed(driver: StackDriver, seen) -> Optional[str]:
    """Why the model call that just returned did not go through the cache: ``"compiled"`` (the DIFFUSION_MODEL
    wrapper never ran: a compiled graph from a run without the cache), ``"blocks"`` (the wrapper ran, the stack's
    first block patch did not: the model does not honour ``patches_replace["dit"]``), or None."""
    if driver.wrapper_calls == seen[0]:
        return "compiled"
    if driver.layout is not None and driver.block_entries == seen[1] and driver.unsupported is None:
        return "blocks"
    return None


def _compiled(model_options: dict) -> bool:
    import comfy.patcher_extension as pe

    wrappers = model_options.get("transformer_options", {}).get("wrappers", {}).get(pe.WrappersMP.APPLY_MODEL, {})
    return host.compile_keys()[0] in wrappers


def _reset_compiled_graphs() -> None:
    """torch.compile's public reset: every compiled graph of the process is dropped and recompiled on next use."""
    reset = getattr(getattr(torch, "compiler", None), "reset", None)
    if reset is not None:
        reset()


def _is_compile_failure(e: BaseException) -> bool:
    exc = getattr(getattr(torch, "_dynamo", None), "exc", None)
    base = getattr(exc, "TorchDynamoException", None) if exc is not None else None
    return base is not None and isinstance(e, base)


def _drop_torch_compile(model_options: dict) -> bool:
    """Remove the host's torch.compile wrapper from this run's options (a clone). True if there was one."""
    import comfy.patcher_extension as pe

    wrappers = model_options.get("transformer_options", {}).get("wrappers", {}).get(pe.WrappersMP.APPLY_MODEL, {})
    return wrappers.pop(host.compile_keys()[0], None) is not None


@eager_frame
def diffusion_model_wrapper(executor, *args, **kwargs):
    driver, to = _begin_call(args, kwargs)
    if driver is None:
        return executor(*args, **kwargs)
    if driver.layout is not None:
        try:
            return executor(*args, **kwargs)
        finally:
            _end_call(driver)
    x = args[0] if args else None
    predicted = _model_level_enter(driver, to, x)
    if predicted is not None:
        return predicted
    out = executor(*args, **kwargs)
    return _model_level_leave(driver, x, out)


@eager
def _begin_call(args, kwargs):
    to = host.transformer_options(args, kwargs, RUN_KEY)
    driver: Optional[StackDriver] = to.get(RUN_KEY)
    if driver is not None:
        driver.wrapper_calls += 1
        driver.last_to = to
        driver.ctx = None
        driver.model_ctx = None
    return driver, to


@eager
def _end_call(driver: StackDriver) -> None:
    driver.ctx = None


@eager
def _model_level_enter(driver: StackDriver, to: dict, x):
    """Fallback: the 'stack' is the whole diffusion model; residual = output - input (first C channels).
    Returns None to run the model (its streams and inputs are kept for :func:`_model_level_leave`), else
    the predicted output."""
    driver.model_ctx = None
    if driver.disabled:
        return None
    if not isinstance(x, torch.Tensor):
        _enter_unsupported(driver, f"the model input is a {type(x).__name__}")
        return None
    streams = stream_names(to, x.shape[0])
    hs = split(x, len(streams))
    oc = driver.out_channels
    if isinstance(oc, int) and 0 < oc < x.shape[1]:
        hs = [h[:, :oc] for h in hs]
    lead = lead_stream(to, streams)
    preds = driver.enter(streams, hs, modulated_fn=lambda: hs[lead], lead=lead)
    if preds is not None:
        return torch.cat(preds, dim=0)
    driver.model_ctx = (streams, hs)
    return None


@eager
def _model_level_leave(driver: StackDriver, x, out):
    ctx, driver.model_ctx = driver.model_ctx, None
    if ctx is None:
        return out
    streams, hs = ctx
    ys = split(out, len(streams))
    if ys[0].shape != hs[0].shape:
        driver.disabled = True
        log.warning(
            f"{driver.label}: model output {tuple(out.shape)} does not match its input {tuple(x.shape)}; "
            f"model-level caching disabled for this run."
        )
        return out
    driver.leave(streams, hs, ys)
    return out


# -------------------------------------------------------------------------------- block patches


def stream_names(to: dict, batch: int) -> List[str]:
    """One stream per cond/uncond chunk of the batch (``uuids``), or one stream for the whole batch."""
    uuids = to.get("uuids") or []
    if uuids and batch % len(uuids) == 0 and len(set(map(str, uuids))) == len(uuids):
        return [str(u) for u in uuids]
    return ["all"]


def lead_stream(to: dict, streams: List[str]) -> int:
    """Index of the stream that decides: the first cond chunk (``cond_or_uncond`` 0), else the first."""
    cou = to.get("cond_or_uncond") or []
    if len(cou) == len(streams) and 0 in cou:
        return list(cou).index(0)
    return 0


def split(x: torch.Tensor, n: int) -> List[torch.Tensor]:
    return list(x.chunk(n, dim=0)) if n > 1 else [x]


def install_block_patches(to: dict, driver: StackDriver) -> None:
    """Patch the cached blocks of the stack, the ones between the method's leading blocks
    (``Method.leading_blocks``) and its trailing blocks (``Method.trailing_blocks``), which run on every step, in
    this run's options, wrapping patches already there. The trailing blocks are not patched: the host runs them on
    every step, on the cached blocks' computed or predicted output."""
    pr = to.setdefault("patches_replace", {})
    dit = dict(pr.get("dit", {}))
    layout = driver.layout
    keys = layout.keys
    # the cached stack is keys[lead:end] (one block at least stays; the run's report notes what was clamped)
    lead, trail = driver.run.split_blocks(len(keys))
    end = len(keys) - trail
    for n, key in enumerate(keys[lead:end], start=lead):
        # the last *cached* block records the stack output or returns the prediction (not the model's last block)
        last = n == end - 1
        dit[key] = BlockPatch(driver, dit.get(key), first=n == lead, last=last, key=key, joint=layout.joint_at(n))
    if lead > 0 and driver.run.gate.leading_residual:  # the gate reads the leading blocks' residual
        dit[keys[0]] = LeadingInput(driver, dit.get(keys[0]), keys[0])
    pr["dit"] = dit


def _passthrough(args: dict, key: str) -> dict:
    out = {key: args[key]}
    if "txt" in args and key == "img":
        out["txt"] = args["txt"]
    return out


class LeadingInput:
    """The model's first block, ahead of the cached stack, for a gate that reads the leading blocks' residual
    (First Block Cache): it keeps the block's input stream (a copy: blocks may update their input in place), which
    the stack's first block hands to the gate with its own input (the leading blocks' output), then runs the block."""

    def __init__(self, driver: StackDriver, inner: Optional[Callable], key: tuple):
        self.driver, self.inner = driver, inner
        fam = driver.layout.family
        self.call = (fam.block_call, driver.dm, key) if fam.block_call is not None else None
        self.key = fam.stream_key

    @eager_frame
    def __call__(self, args: dict, extra: dict) -> dict:
        self._keep(args)
        return _run_block(self.inner, args, extra, self.call, self.key)

    @eager
    def _keep(self, args: dict) -> None:
        img, packed, _ = pack_stream(args.get(self.key))
        self.driver.lead_input = img.clone() if img is not None and packed is None else img


class BlockPatch:
    """One block of the stack: the ``first`` decides, a middle block passes its input through on a skipped
    call, the ``last`` records the residual or applies the prediction (a one-block stack is both).

    The stream is ``args[family.stream_key]``: a tensor, or a tuple of tensors (LTX-2's video and audio),
    packed into one tensor for the engine (:func:`.families.pack_stream`). A stream of any other type cannot
    be cached: the run holds (computes every step) with one warning, and never raises.

    Under ``torch.compile`` the bookkeeping runs eager (:func:`~tcpade_core.engine.eager`) and only the block itself
    (:func:`_run_block`, a frame without this object in it) is compiled, so the compiled code never guards
    on which patch object, driver, stream name or step it saw: one compiled block serves every block of a
    kind and every run.
    """

    def __init__(
        self,
        driver: StackDriver,
        inner: Optional[Callable],
        first: bool = False,
        last: bool = False,
        key: Optional[tuple] = None,
        joint: Optional[str] = None,
    ):
        self.driver = driver
        self.inner = inner
        self.first = first
        self.last = last
        self.joint = joint  # how the image part sits in this block's output (its stage's; read at the last block)
        fam = driver.layout.family if driver.layout is not None else None
        self.call = (fam.block_call, driver.dm, key) if fam is not None and fam.block_call is not None else None
        self.key = fam.stream_key if fam is not None else "img"

    @eager_frame
    def __call__(self, args: dict, extra: dict) -> dict:
        if self.first:
            self._enter(args)
        skipped = self._skipped(args)
        if skipped is not None:
            return skipped
        out = _run_block(self.inner, args, extra, self.call, self.key)
        if self.last:
            self._leave(out, args)
        return out

    @eager
    def _skipped(self, args: dict) -> Optional[dict]:
        """On a skipped call: the block's pass-through output (the prediction at the last block), else None."""
        d = self.driver
        ctx: Optional[CallCtx] = d.ctx
        if ctx is None or ctx.predicted is None:
            return None
        key = self.key
        out = _passthrough(args, key)
        if self.last:
            if ctx.packed is not None:
                out[key] = unpack_stream(ctx.predicted, ctx.packed)
            else:
                stream = args[key]
                tail = joint_order(self.joint, args.get("transformer_options"), stream.shape[1], ctx.img_len)
                out[key] = with_image_part(stream, tail, ctx.predicted)
            d.ctx = None
        return out

    @eager
    def _leave(self, out: dict, args: dict) -> None:
        d = self.driver
        ctx: Optional[CallCtx] = d.ctx
        if ctx is not None:
            y = out[self.key]
            if ctx.packed is not None:
                y, _, _ = pack_stream(y)
            else:
                tail = joint_order(self.joint, args.get("transformer_options"), y.shape[1], ctx.img_len)
                y = image_part(y, tail, ctx.img_len)
            if y is not None:
                d.leave(ctx.streams, ctx.inputs, split(y, len(ctx.streams)))
            d.ctx = None

    @eager
    def _enter(self, args: dict) -> None:
        d = self.driver
        d.block_entries += 1
        fam = d.layout.family
        x = args.get(fam.stream_key)
        to = args.get("transformer_options") or d.last_to or {}
        img, packed, why = pack_stream(x)
        if packed is None and img is not None:
            img = img.clone()  # blocks may update their input in place (Flux, Chroma, LTXV): keep the stack input
        if img is None:
            _enter_unsupported(d, f"its blocks take {why} as {fam.stream_key!r}")
            d.ctx = None
            return
        streams = stream_names(to, img.shape[0])
        inputs = split(img, len(streams))
        lead = lead_stream(to, streams)

        def modulated():
            m = fam.modulated(args, d.dm) if fam.modulated is not None and packed is None else img
            return split(m, len(streams))[lead] if m.shape[0] == img.shape[0] else m

        lead_in, d.lead_input = d.lead_input, None

        def leading():  # (input, output) of the leading blocks for the deciding stream; None: not comparable
            out = img
            if lead_in is not None and packed is None and img.ndim == 3 and lead_in.ndim == 3:
                if lead_in.shape[1] < img.shape[1]:  # the leading blocks end in a joint stream: its image tokens
                    tail = joint_order(d.layout.joint_tail, to, img.shape[1], lead_in.shape[1])
                    out = image_part(img, tail, lead_in.shape[1])
            if lead_in is None or lead_in.shape != out.shape:
                return None
            return split(lead_in, len(streams))[lead], split(out, len(streams))[lead]

        preds = d.enter(streams, inputs, modulated, lead, leading)
        d.ctx = CallCtx(
            streams,
            inputs,
            torch.cat(preds, dim=0) if preds is not None else None,
            img.shape[1] if img.ndim > 1 else 0,
            packed,
        )


_PLACEHOLDER = torch.zeros(1, 1)


def _enter_unsupported(driver: StackDriver, why: str) -> None:
    """The pack cannot cache this model's inputs: the run computes every step (held, said once in the log and the
    report), and this call enters its step so that the step is recorded as computed."""
    if driver.unsupported is None:
        driver.unsupported = why
        name = model_name(driver.layout.family if driver.layout is not None else None, driver.dm)
        _hold(
            driver,
            "unsupported input",
            f"cache inactive for {name}: {why}, which the pack does not recognise; every step computes",
        )
    driver.enter(["all"], [_PLACEHOLDER], None, 0)  # the hold decides: compute


def _run_block(inner: Optional[Callable], args: dict, extra: dict, call=None, key: str = "img") -> dict:
    """The block itself (or the patch this one wraps): the part torch.compile may compile. ``call``: the family's
    own way to run the block (``Family.block_call``, dm, patch key). A block that returns its stream bare (not in a
    dict) is given the dict a patch returns."""
    if inner is not None:
        out = inner(args, extra)
    elif call is not None:
        out = call[0](call[1], call[2], args)
    else:
        out = extra["original_block"](args)
    return out if isinstance(out, dict) else {key: out}
