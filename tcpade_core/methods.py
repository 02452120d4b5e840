"""One descriptor per method: everything the rest of the pack needs to know about it, in one place.

A method is a gate (*when*, :mod:`tcpade_core.gates`) plus a predictor (*how*, :mod:`tcpade_core.predictors`).
Its :class:`Method` holds its config class (settings and speed target, frozen and validated once), its gate and
predictor factories, its calibration mapping (calibration -> config, filling only what the user left to it), its
label and ComfyUI node, its widgets (host-free :class:`Widget` specs the node turns into inputs) with the rules
that grey a widget out, and how many leading and trailing blocks always run on a skipped step. The nodes, calibration, the
benchmark, the workflow generator and the web extension (through ``GET /tcpade/methods``, :func:`ui_table`) read
:data:`METHODS`; none of them re-declares a method.

Gates and predictors meet only through what they declare: a gate's ``needs_residuals`` and ``reads``
(predictor capabilities), a predictor's ``provides``. :func:`check_pairing` refuses a pairing that cannot work.

Adding a method: write its config class (config.py), its gate and predictor classes if new, and one
``Method(...)`` entry below (README "Adding a method").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from . import gates as G
from . import predictors as P
from . import magcache_tables as MT
from . import teacache_tables as TT
from .config import (
    DEFAULT_PLACEMENT,
    PLACEMENTS,
    ConfigError,
    ComposedConfig,
    MagCacheConfig,
    FirstBlockConfig,
    NoCacheConfig,
    ReuseConfig,
    SpectrumConfig,
    TaylorSeerConfig,
    TCPadeConfig,
    TCPadeOfficialConfig,
    TeaCacheConfig,
    TraCacheConfig,
    _Common,
)

PRESETS = {"slow (2x)": 2.0, "fast (2.8x)": 2.8}  # speed targets: the same meaning on every model
CUSTOM = "custom"


@dataclass(frozen=True)
class Widget:
    """A node input, host-free. ``param``: the config parameter it sets (None: the node reads it itself)."""

    name: str
    kind: str  # "float" | "int" | "combo" | "string"
    default: Any
    display: str
    tooltip: str
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    options: Tuple[str, ...] = ()
    param: Optional[str] = None
    # a value that leaves the setting to the pack (TaylorSeer's order -1: by the model and step count): it is not
    # passed to the config (the config's default stands) and is never the user's (a calibration or a rule may fill)
    auto: Any = None

    def is_auto(self, value) -> bool:
        """Whether ``value`` is this widget's auto value (the setting left to the pack)."""
        return self.auto is not None and value == self.auto


@dataclass(frozen=True)
class Override:
    """A widget that has no effect while every condition holds: drawn greyed out, saying why. A condition is
    (widget, op, value) with op "==", "!=" or ">". ``why`` may name {preset}, {preset_target} and {target}."""

    widget: str
    when: Tuple[Tuple[str, str, Any], ...]
    short: str
    why: str
    shows: str = ""  # the value in effect, shown in the label


@dataclass(frozen=True)
class Applied:
    """What a calibration did to one run's settings: the config and target to run, and each value it filled in."""

    cfg: _Common
    target: float
    values: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    gate: Callable[[Any], G.Gate]
    predictor: Callable[[Any], P.Predictor]
    label: str = ""
    node_id: str = ""
    title: str = ""
    description: str = ""
    widgets: Tuple[Widget, ...] = ()  # before the start/end window
    tail_widgets: Tuple[Widget, ...] = ()  # after it (kept where saved workflows expect them)
    presets: bool = False  # the node has a preset widget (PRESETS)
    overrides: Tuple[Override, ...] = ()
    calibrate: Optional[Callable[..., Applied]] = None  # (cfg, cal, target, user_set) -> Applied
    # at a speed target, a calibration's planned schedule places the computes (tcpade_core.planner; chosen on
    # development runs: TaylorSeer and TC-Padé in plan_bench, the others in docs/plan_methods.txt, and kept where the
    # held-out runs did not lose: TraCache and Spectrum lost and keep the evenly spaced target; README "Planned
    # schedules")
    plans: bool = False
    # at a speed target, what the method fills from the model's prediction type and the step count where the user
    # left a setting at its default: (cfg, prediction, steps, user_set) -> (cfg, note or "")
    at_target: Optional[Callable[..., Tuple[Any, str]]] = None
    # blocks that run on every step, skipped or not, ahead of the cached stack (0: none); a number, or a function of
    # the config where a setting decides (First Block Cache's Fn)
    leading_blocks: Any = 0
    # blocks that run on every step, skipped or not, after the cached stack, on top of its computed or predicted
    # output (0: none); a number, or a function of the config (DBCache's Bn)
    trailing_blocks: Any = 0

    def leading(self, cfg) -> int:
        """The leading blocks of a run with config ``cfg``."""
        n = self.leading_blocks
        return int(n(cfg) if callable(n) else n)

    def trailing(self, cfg) -> int:
        """The trailing blocks of a run with config ``cfg``."""
        n = self.trailing_blocks
        return int(n(cfg) if callable(n) else n)

    def all_widgets(self) -> Tuple[Widget, ...]:
        return self.widgets + self.tail_widgets

    def user_set(self, widgets: Dict[str, Any]) -> FrozenSet[str]:
        """The config parameters whose widget the user moved off its default (calibration leaves those alone); a
        widget at its ``auto`` value is not the user's."""
        return frozenset(
            w.param
            for w in self.all_widgets()
            if w.param is not None
            and w.name in widgets
            and widgets[w.name] != w.default
            and not w.is_auto(widgets[w.name])
        )

    def params(self, widgets: Dict[str, Any]) -> Dict[str, Any]:
        """The config parameters the widgets set: each widget's value by its ``param``, except a widget at its
        ``auto`` value (the config's default stands, for the pack to fill)."""
        return {
            w.param: widgets[w.name]
            for w in self.all_widgets()
            if w.param is not None and w.name in widgets and not w.is_auto(widgets[w.name])
        }


# ------------------------------------------------------------------------------------------ widgets


def target_widget() -> Widget:
    return Widget(
        "target_speedup",
        "float",
        0.0,
        "target speed-up",
        "0.0-100.0: 0 is off, otherwise at least 1.0. Ask for a speed: the run computes exactly "
        "round(steps / target) steps, spaced evenly (the method's own signal may move a compute earlier), or, "
        "after Calibrate for this model, step count and sampler, where the calibration's plan puts them. "
        "0: the method's own schedule and threshold decide.",
        0.0,
        100.0,
        0.05,
    )


_TARGET_OVERRIDE = "Used at target speed-up 0 only: the target ({target}x) sets the schedule."


def placement_widget() -> Widget:
    """Where a speed target puts its computes when no calibration's plan applies (config ``placement``)."""
    return Widget(
        "placement",
        "combo",
        DEFAULT_PLACEMENT,
        "placement",
        "Where a speed target puts its computes when no calibration plan applies. auto (the default): below 2x "
        "on a flow model (FLUX, Wan, SD3 ...) run for 20 steps or more, the default shape: computes dense at the "
        "start, where spacing them evenly from step 0 skips the steps that move most; even spacing otherwise (at "
        "10 steps the shape lost on two of the pack's three flow models). even: spaced evenly from step 0. shape: "
        "the default shape at every target (worse on DDIM models). Measured: README 'Planned schedules'. A "
        "calibration made for this model, step count and sampler plans the schedule instead. Used with a speed "
        "target only.",
        options=PLACEMENTS,
        param="placement",
    )


_NO_TARGET = "Used with a speed target only: at target 0 the method's own schedule decides."

TCPADE_WIDGETS = (
    Widget(
        "preset",
        "combo",
        "slow (2x)",
        "preset",
        "slow: a 2x speed target (20 steps: 10 computed). fast: 2.8x (20 steps: 7 computed). The same speed on "
        "every model; the stability signal decides where the computes go. custom: target speed-up and θ below "
        "decide (target 0: θ alone).",
        options=(*PRESETS, CUSTOM),
    ),
    target_widget(),
    Widget(
        "theta",
        "float",
        1.0,
        "θ",
        "θ, 0.0-2.0. Between the forced computes a step is skipped when the stability score 1/(2·TSI) of the last "
        "three equally spaced computes is >= θ, i.e. while the trajectory turns by less than 91° (θ 0.7), 60° "
        "(θ 1.0) or 45° (θ 1.3). Higher: fewer skips. With a speed target (a preset, or custom with a target) θ "
        "only moves computes earlier: a turn (score < θ) brings the next compute forward; with preset custom and "
        "target 0, θ alone decides. In paper_literal mode θ compares with TSI itself (0-1).",
        0.0,
        2.0,
        0.01,
        param="theta",
    ),
    Widget(
        "lam",
        "float",
        2.0,
        "λ",
        "λ, 0.1-100.0 (default 2, measured; the paper: 10). Sensitivity of the stability factor "
        "σ = exp(-λ·relative change): how fast the prediction falls back from extrapolation to the newest value "
        "when the trajectory moves quickly.",
        0.1,
        100.0,
        0.1,
        param="lam",
    ),
    Widget(
        "alpha1",
        "float",
        1.0,
        "α1",
        "α1, 0.0-1.0. paper_literal mode only (its early phase): weight of the newest residual (α2 = 1 - α1). "
        "The default reading has no phases (measured).",
        0.0,
        1.0,
        0.01,
        param="alpha1",
    ),
    Widget(
        "beta",
        "float",
        0.3,
        "β",
        "β, -1.0-1.0. paper_literal mode only (its late phase): weight of the residual's first difference. The "
        "default reading has no phases (measured).",
        -1.0,
        1.0,
        0.01,
        param="beta",
    ),
    Widget(
        "interval",
        "int",
        4,
        "interval N",
        "N, 1-100. After the first step, every N-th step is always computed (paper_literal: every N-th from step "
        "0). Lower: more full steps, better quality; 1 disables skipping.",
        1,
        100,
        param="interval",
    ),
)
TCPADE_TAIL = (
    Widget(
        "mode",
        "combo",
        "default",
        "mode",
        "default: the measured reading of the paper's equations. paper_literal: the equations exactly as "
        "printed. official: the authors' code (Alibaba-YuFeng/TC_Pade): fixed schedule (interval 8 from step 5), "
        "their predictor; with preset custom, θ is its curvature threshold and interval N its interval. For "
        "comparison.",
        options=("default", "paper_literal", "official"),
    ),
    placement_widget(),
)
TCPADE_OVERRIDES = (
    Override("placement", (("preset", "==", CUSTOM), ("target_speedup", "==", 0)), "no target", _NO_TARGET),
    Override(
        "target_speedup",
        (("preset", "!=", CUSTOM),),
        "preset",
        "Set by the preset {preset}: a {preset_target}x speed target. Choose preset custom to set it.",
        "{preset_target}x",
    ),
    Override("lam", (("mode", "==", "official"),), "official", "Not used in official mode (the authors' code)."),
    Override(
        "theta",
        (("mode", "==", "official"), ("preset", "!=", CUSTOM)),
        "official",
        "official mode: the authors' fixed schedule. Choose preset custom to set θ and interval N.",
    ),
    Override(
        "interval",
        (("mode", "==", "official"), ("preset", "!=", CUSTOM)),
        "official",
        "official mode: the authors' fixed schedule. Choose preset custom to set θ and interval N.",
    ),
    Override(
        "alpha1",
        (("mode", "!=", "paper_literal"),),
        "paper_literal only",
        "Used in paper_literal mode only (its early and late phases); this mode has none.",
    ),
    Override(
        "beta",
        (("mode", "!=", "paper_literal"),),
        "paper_literal only",
        "Used in paper_literal mode only (its early and late phases); this mode has none.",
    ),
)

TAYLORSEER_WIDGETS = (
    target_widget(),
    Widget(
        "interval",
        "int",
        4,
        "interval N",
        "N, 1-100. Full compute every N steps (FLUX: 6, Wan2.1: 5). Higher: faster, lower fidelity; 1 disables "
        "skipping. Used at target speed-up 0 only: a target sets the schedule.",
        1,
        100,
        param="interval",
    ),
    Widget(
        "order",
        "int",
        -1,
        "order O",
        "O, -1-4. Taylor order (0: plain reuse). Higher: follows curvature, needs O+1 cached outputs (more memory) "
        "and can overshoot. -1 (auto, the default): with a target speed-up, order 2 on an eps-prediction model "
        "(DiT, PixArt) run for 20 steps or more, where it measured better, else 1 (flow models such as FLUX, Wan, "
        "Qwen-Image keep 1, which measured best there); without a target, 1 unless a calibration sets it. The "
        "node's report says when it ran order 2. 0-4 runs that order.",
        -1,
        4,
        param="order",
        auto=-1,
    ),
    Widget(
        "first_enhance",
        "int",
        2,
        "first enhance",
        "0-100. Steps computed in full at the start before skipping begins (FLUX: 3, Wan2.1: 1). With a target "
        "speed-up the target decides which steps compute.",
        0,
        100,
        param="first_enhance",
    ),
)

TEACACHE_WIDGETS = (
    target_widget(),
    Widget(
        "threshold",
        "float",
        0.4,
        "δ",
        "δ, 0.0-10.0. Skip while the accumulated distance is below δ. Higher: more skips. FLUX: 0.25 (1.5x) to "
        "0.8 (2.25x); Wan 1.3B 0.05-0.08; Wan 14B 0.14-0.2.",
        0.0,
        10.0,
        0.01,
        param="threshold",
    ),
    Widget(
        "coefficients",
        "combo",
        TT.AUTO,
        "coefficients",
        "Rescale polynomial. auto: detected from the model (FLUX, Wan2.1 t2v 1.3B / 14B, i2v 480p / 720p by "
        "latent size), or calibrated. custom: use custom coefficients.",
        options=tuple(TT.CHOICES),
        param="coefficients",
    ),
    Widget(
        "custom_coefficients",
        "string",
        "",
        "custom coefficients",
        "Used when coefficients is custom: 1-10 comma-separated numbers, highest power first (numpy poly1d "
        "order). '1, 0' is the raw relative L1 distance.",
    ),
)

TRACACHE_WIDGETS = (
    target_widget(),
    Widget(
        "stride",
        "int",
        2,
        "stride k",
        "k, 1-100. Full compute every k steps. Higher: faster, lower fidelity; 1 disables skipping. Used at "
        "target speed-up 0 only: a target sets the schedule.",
        1,
        100,
        param="stride",
    ),
    Widget(
        "max_order",
        "int",
        2,
        "max order",
        "1-4. Highest Lagrange order tried per step (needs max order + 1 cached outputs). Higher: more memory, "
        "follows curvature.",
        1,
        4,
        param="max_order",
    ),
)


MAGCACHE_WIDGETS = (
    target_widget(),
    Widget(
        "threshold",
        "float",
        0.06,
        "δ",
        "δ, 0.0-10.0. Skip while the accumulated magnitude error (the sum of |1 - product of the ratios since the "
        "last compute|) stays below δ. Higher: more skips. Its node's default 0.06; its README: FLUX 0.24, "
        "Wan 2.1 14B 0.24, 1.3B 0.12.",
        0.0,
        10.0,
        0.01,
        param="threshold",
    ),
    Widget(
        "K",
        "int",
        2,
        "max skips K",
        "K, 0-100. At most K skipped steps in a row. Its node's default 2; its README: FLUX 5, Wan 2.1 14B 6, 1.3B 4.",
        0,
        100,
        param="K",
    ),
    Widget(
        "retention_ratio",
        "float",
        0.2,
        "retention ratio",
        "0.0-1.0. The first part of the steps that always computes: skipping starts at step int(steps x ratio). "
        "Its node's default 0.2; its README: FLUX 0.1, Wan 2.1 0.2.",
        0.0,
        1.0,
        0.01,
        param="retention_ratio",
    ),
    Widget(
        "ratios",
        "combo",
        MT.AUTO,
        "mag ratios",
        "The magnitude-ratio profile (its published tables, or flat: all 1.0, K and the retention alone decide). "
        "auto: the model's calibration if there is one, else the published table of its family (FLUX.1, Wan "
        "2.1), else flat (the run's report says 'uncalibrated: flat profile'). A table's step count need not "
        "match the run's: step i reads its step int(i x (L-1)/(N-1)).",
        options=tuple(MT.CHOICES),
        param="ratios",
    ),
)


FIRST_BLOCK_WIDGETS = (
    target_widget(),
    Widget(
        "threshold",
        "float",
        FirstBlockConfig.threshold,
        "threshold",
        "0.0-10.0. Skip the remaining blocks while the relative L1 change of the leading blocks' residual since the "
        "last computed step is below this. Higher: more skips. 0: never skip (WaveSpeed's default, off). "
        "Default 0.12 (measured on the pack's development models; cache-dit DBCache: 0.08). WaveSpeed: 0.12 FLUX fp8 at 28 "
        "steps, 0.1 HunyuanVideo.",
        0.0,
        10.0,
        0.001,
        param="threshold",
    ),
    Widget(
        "leading_blocks",
        "int",
        1,
        "leading blocks",
        "Fn, 1-100. Blocks that run on every step and whose residual decides. 1: First Block Cache (WaveSpeed); "
        "8: DBCache (cache-dit's default). More: a steadier signal and a smaller saving per skipped step. At "
        "least one block of the model stays cached.",
        1,
        100,
        param="leading_blocks",
    ),
    Widget(
        "max_consecutive",
        "int",
        -1,
        "max consecutive",
        "-1-1000. Cached steps in a row at most (1: a full step after every cached one). -1: no limit "
        "(WaveSpeed's default).",
        -1,
        1000,
        param="max_consecutive",
    ),
    Widget(
        "predictor",
        "combo",
        "taylorseer",
        "predictor",
        "taylorseer (default, measured better): extrapolate the remaining blocks' residual with a first-order "
        "Taylor series over the computed steps (cache-dit's DBCache + TaylorSeer). reuse: add their residual of "
        "the last computed step as it is (WaveSpeed's First Block Cache, DBCache alone).",
        options=("reuse", "taylorseer"),
        param="predictor",
    ),
    Widget(
        "compare",
        "combo",
        "residual",
        "compare",
        "residual: the leading blocks' output minus their input (cache-dit, and WaveSpeed on most models). "
        "output: their output itself, as WaveSpeed's FLUX forward compares it (for the same decisions as "
        "WaveSpeed on FLUX).",
        options=("residual", "output"),
        param="compare",
    ),
)
FIRST_BLOCK_TAIL = (  # after the start/end window: saved workflows keep their widget values in order
    Widget(
        "trailing_blocks",
        "int",
        0,
        "trailing blocks",
        "Bn, 0-100. The last Bn blocks of the model also run on every step, on top of the cached blocks' computed "
        "or predicted output (cache-dit DBCache's Bn; 0, its default and First Block Cache's, caches every block "
        "after the leading ones). More: the end of the stack corrects the prediction, and a skipped step saves "
        "less: it still runs Fn + Bn of the model's blocks. At least one block stays cached.",
        0,
        100,
        param="trailing_blocks",
    ),
)
SPECTRUM_WIDGETS = (
    target_widget(),
    Widget(
        "degree",
        "int",
        4,
        "degree M",
        "M, 0-8. Chebyshev polynomials T_0..T_M fitted to the cached outputs (paper: 4). Higher: follows more "
        "curvature, needs more computed steps to pin down.",
        0,
        8,
        param="degree",
    ),
    Widget(
        "lam",
        "float",
        0.1,
        "λ",
        "λ, 0.001-100.0 (paper: 0.1). Ridge regularisation of the Chebyshev fit: higher smooths the forecast "
        "and pulls it toward zero.",
        0.001,
        100.0,
        0.001,
        param="lam",
    ),
    Widget(
        "w",
        "float",
        0.5,
        "blend w",
        "w, 0.0-1.0 (default 0.5, measured; the paper: 1.0, its README recommends 0.5-1.0). Forecast = "
        "w · Chebyshev + (1 - w) · linear (Newton-forward) extrapolation of the last two computed outputs.",
        0.0,
        1.0,
        0.05,
        param="w",
    ),
    Widget(
        "history",
        "int",
        10,
        "history K",
        "K, 1-100. Computed outputs the fit uses (the newest K). Each is one block-stack output kept in memory "
        "per stream.",
        1,
        100,
        param="history",
    ),
    Widget(
        "window_size",
        "int",
        2,
        "window N",
        "N, 1-100 (paper: 2). After the warm-up a step computes when the cached steps since the last compute "
        "+ 1 is a multiple of floor(N); N grows by α at each compute. Used at target speed-up 0 only.",
        1,
        100,
        param="window_size",
    ),
    Widget(
        "alpha",
        "float",
        0.75,
        "α",
        "α, 0.0-100.0 (paper: 0.75 for about 3.5x at 50 steps, 3.0 for about 5x). How much N grows per compute: "
        "higher, fewer computes. Used at target speed-up 0 only.",
        0.0,
        100.0,
        0.05,
        param="alpha",
    ),
    Widget(
        "warmup_steps",
        "int",
        2,
        "warm-up",
        "1-100 (default 2, measured; its configs: 5). Steps computed in full at the start. 20 steps with N 2, "
        "α 0.75: warm-up 2 computes 7 steps, 5 computes 9. Used at target speed-up 0 only.",
        1,
        100,
        param="warmup_steps",
    ),
)
SPECTRUM_TAIL = (
    Widget(
        "mode",
        "combo",
        "default",
        "mode",
        "default: the reading measured best on this pack's development runs (the normalised time t as the "
        "Chebyshev variable; the stack output). official: the authors' code (the step index through a fixed map "
        "of [0, 50]; the stack output). For comparison.",
        options=("default", "official"),
        param="mode",
    ),
)
SPECTRUM_OVERRIDES = tuple(
    Override(name, (("target_speedup", ">", 0),), "target", _TARGET_OVERRIDE)
    for name in ("window_size", "alpha", "warmup_steps")
)


# ------------------------------------------------------------------------------------------ calibration mappings
# (cfg, calibration, target, user_set) -> Applied. A parameter in ``user_set`` is the user's: never overwritten.


def _fill(cfg, values: Dict[str, Any], user_set: FrozenSet[str]) -> Dict[str, Any]:
    """The values the calibration may fill: those the user left alone that change something."""
    return {k: v for k, v in values.items() if k not in user_set and getattr(cfg, k) != v}


def _calibrate_tcpade(cfg, cal, target: float, user_set: FrozenSet[str]) -> Applied:
    """With a target: the budget gate, and the warm-up that predicted best; without: the θ fitted for this
    reading meets the calibration's speed (no θ fitted: the calibration's speed as a target)."""
    if cfg.method != "tcpade":  # the authors' code has nothing to calibrate
        return Applied(cfg, target)
    if target:  # the warm-up only shapes a spread schedule (the default reading's)
        vals = _fill(cfg, {"warmup_steps": cal.tcpade_warmup}, user_set) if cfg.schedule == "spread" else {}
        return Applied(cfg.with_(**vals), target, vals)
    theta = cal.theta_for(cfg.mode)
    if "theta" in user_set:
        return Applied(cfg, target)
    if theta is None:
        return Applied(cfg, cal.target, {"target_speedup": cal.target})
    vals = _fill(cfg, {"theta": theta}, user_set)
    return Applied(cfg.with_(**vals), target, vals)


def _calibrate_taylorseer(cfg, cal, target: float, user_set: FrozenSet[str]) -> Applied:
    """Without a target: the interval, order and first_enhance that meet the calibration's speed with the smallest
    error. With a target nothing: the target (after a Calibrate, its plan) places the computes, and that fit was
    made for the interval grid at the calibration's own speed; filling its order at a target ran order 2 on an
    order-2 plan and lost on development (-0.67 dB mean against order 1 on its plan, 8 better / 12 worse of 30
    cells; docs/node_wired.txt)."""
    if target:
        return Applied(cfg, target)
    if not cal.taylorseer:
        return Applied(cfg, cal.target, {"target_speedup": cal.target})
    vals = _fill(cfg, dict(cal.taylorseer), user_set)
    return Applied(cfg.with_(**vals), target, vals)


def taylorseer_order(cfg, prediction: Optional[str], steps: Optional[int], user_set: FrozenSet[str]):
    """(config, note): at a speed target with the order left at its default, the order
    :func:`tcpade_core.config.order_for` gives (2 on an eps model from 20 steps, else 1) while
    :data:`tcpade_core.config.ORDER_BY_PREDICTION` is on (docs/order_eps.txt); else the config unchanged."""
    from . import config as C

    if not (C.ORDER_BY_PREDICTION and cfg.target_speedup) or "order" in user_set:
        return cfg, ""
    order = C.order_for(prediction, steps)
    if order == cfg.order:
        return cfg, ""
    note = f"order {order} at the target ({prediction} prediction, {steps} steps: docs/order_eps.txt)"
    return cfg.with_(order=order), note


def _calibrate_teacache(cfg, cal, target: float, user_set: FrozenSet[str]) -> Applied:
    """This model's rescale polynomial, and the δ that meets the calibration's speed."""
    want = {"coefficients": tuple(cal.teacache_coefficients)}
    if cal.teacache_threshold is not None:
        want["threshold"] = cal.teacache_threshold
    vals = _fill(cfg, want, user_set)
    if cal.teacache_threshold is None and not target and "threshold" not in user_set:
        vals["target_speedup"] = target = cal.target
    cfg = cfg.with_(**{k: v for k, v in vals.items() if k != "target_speedup"})
    return Applied(cfg, target, vals)


def _calibrate_magcache(cfg, cal, target: float, user_set: FrozenSet[str]) -> Applied:
    """The magnitude ratios measured on the calibration's full-compute run (its node prints them to copy by
    hand), where the user left the ratios at auto."""
    ratios = getattr(cal, "mag_ratios", None)
    if not ratios or "ratios" in user_set:
        return Applied(cfg, target)
    new = cfg.with_(ratios=tuple(ratios), always_compute=())
    if new == cfg:
        return Applied(cfg, target)
    return Applied(new, target, {"mag ratios": f"(calibrated, {len(ratios)} steps)"})


# ------------------------------------------------------------------------------------------ the table


def _tcpade_gate(c: TCPadeConfig) -> G.Gate:
    if c.gate == "error":
        return G.ErrorGate(c.theta, c.interval, c.error_tolerance, c.schedule, c.warmup_steps)
    return G.TSIGate(c.theta, c.interval, c.tsi_scale, c.schedule, c.warmup_steps)


def _first_block_predictor(c: FirstBlockConfig) -> P.Predictor:
    """Reuse (FBCache, DBCache) or cache-dit's TaylorSeer calibrator: order-O Taylor on the cached residual, its
    differences divided by the gap between the computed steps (the official recursion)."""
    if c.predictor == "taylorseer":
        return P.TaylorPredictor(c.order, "official", "residual")
    return P.ReusePredictor()


def _composed_gate(c: ComposedConfig) -> G.Gate:
    return METHODS[c.gate.method].gate(c.gate)


def _composed_predictor(c: ComposedConfig) -> P.Predictor:
    return METHODS[c.predictor.method].predictor(c.predictor)


_METHOD_LIST = (
    Method("none", NoCacheConfig, lambda c: G.Gate(), lambda c: P.NoPredictor(), label="Full compute"),
    Method("reuse", ReuseConfig, lambda c: G.IntervalGate(c.interval), lambda c: P.ReusePredictor(), label="Reuse"),
    Method(
        "taylorseer",
        TaylorSeerConfig,
        lambda c: G.IntervalGate(c.interval, first=c.first_enhance, offset=c.first_enhance - 1),
        lambda c: P.TaylorPredictor(c.order, c.form, c.target, c.first_enhance),
        label="TaylorSeer",
        node_id="TCPade_TaylorSeer",
        title="TaylorSeer Cache",
        description="TaylorSeer (arXiv 2503.06923): compute every N steps, extrapolate the block-stack output "
        "with an order-O Taylor series in between.",
        widgets=TAYLORSEER_WIDGETS,
        tail_widgets=(placement_widget(),),
        overrides=(
            Override("interval", (("target_speedup", ">", 0),), "target", _TARGET_OVERRIDE),
            Override("placement", (("target_speedup", "==", 0),), "no target", _NO_TARGET),
        ),
        calibrate=_calibrate_taylorseer,
        plans=True,
        at_target=taylorseer_order,
    ),
    Method(
        "teacache",
        TeaCacheConfig,
        lambda c: G.RescaledL1Gate(c.threshold, c.coefficients),
        lambda c: P.ReusePredictor(),
        label="TeaCache",
        node_id="TCPade_TeaCache",
        title="TeaCache (block residual)",
        description="TeaCache: reuse the block-stack residual while the accumulated, rescaled change of the "
        "timestep-modulated input stays below a threshold.",
        widgets=TEACACHE_WIDGETS,
        calibrate=_calibrate_teacache,
        plans=True,
    ),
    Method(
        "tracache",
        TraCacheConfig,
        lambda c: G.IntervalGate(c.stride, reason="stride"),
        lambda c: P.LagrangePredictor(c.max_order, c.target),
        label="TraCache",
        node_id="TCPade_TraCache",
        title="TraCache",
        description="TraCache: compute every k steps; in between, Lagrange interpolation through the last "
        "computed block-stack outputs with the order chosen per step.",
        widgets=TRACACHE_WIDGETS,
        overrides=(Override("stride", (("target_speedup", ">", 0),), "target", _TARGET_OVERRIDE),),
    ),
    Method(
        "tcpade",
        TCPadeConfig,
        _tcpade_gate,
        lambda c: P.PadePredictor(c),
        label="TC-Padé",
        node_id="TCPade_TCPadeCache",
        title="TC-Padé Cache",
        description="TC-Padé (arXiv 2603.02943): skip block-stack computations on stable steps (the TSI gate) "
        "and predict the stack's output with a σ-damped [1/1] Padé approximant in the step variable. "
        "Modes paper_literal (the equations as printed) and official (the authors' code) for "
        "comparison.",
        widgets=TCPADE_WIDGETS,
        tail_widgets=TCPADE_TAIL,
        presets=True,
        overrides=TCPADE_OVERRIDES,
        calibrate=_calibrate_tcpade,
        plans=True,
    ),
    Method(
        "magcache",
        MagCacheConfig,
        lambda c: G.MagCacheGate(c.threshold, c.K, c.retention_ratio, c.ratios, c.always_compute),
        lambda c: P.ReusePredictor(),
        label="MagCache",
        node_id="TCPade_MagCache",
        title="MagCache",
        description="MagCache (arXiv 2506.09045): reuse the block-stack residual while the accumulated error of "
        "the calibrated magnitude ratios stays below δ, at most K steps in a row. TCPade_Calibrate measures the "
        "ratios for your model and fills them in.",
        widgets=MAGCACHE_WIDGETS,
        calibrate=_calibrate_magcache,
        plans=True,
    ),
    # the authors' code: the TC-Padé node's mode "official" (config.MODE_ALIASES), the same node and label
    Method(
        "tcpade_official",
        TCPadeOfficialConfig,
        lambda c: G.OfficialScheduleGate(c.threshold, c.interval, c.start_step, history=min(5, c.history_size)),
        lambda c: P.OfficialPadePredictor(c),
        label="TC-Padé",
        calibrate=_calibrate_tcpade,
    ),
    Method(
        "first_block",
        FirstBlockConfig,
        lambda c: G.FirstBlockGate(c.threshold, c.max_consecutive, c.warmup_steps, c.compare),
        _first_block_predictor,
        label="First Block Cache",
        node_id="TCPade_FirstBlockCache",
        title="First Block Cache / DBCache",
        description="First Block Cache (chengzeyi/Comfy-WaveSpeed) and DBCache (vipshop/cache-dit): the first Fn "
        "blocks run on every step; while the relative L1 change of their residual since the last computed step "
        "stays below the threshold, the remaining blocks are skipped and their cached residual is added (or "
        "extrapolated by TaylorSeer); the last Bn blocks (trailing blocks, default 0) run on every step.",
        widgets=FIRST_BLOCK_WIDGETS,
        tail_widgets=FIRST_BLOCK_TAIL,
        leading_blocks=lambda c: c.leading_blocks,
        trailing_blocks=lambda c: c.trailing_blocks,
        plans=True,
    ),
    Method(
        "composed",
        ComposedConfig,
        _composed_gate,
        _composed_predictor,
        label="composed",
    ),
    Method(
        "spectrum",
        SpectrumConfig,
        lambda c: G.SpectrumGate(c.warmup_steps, c.window_size, c.alpha),
        lambda c: P.SpectrumPredictor(c.degree, c.lam, c.w, c.history, c.taylor_order, c.time_map, c.target),
        label="Spectrum",
        node_id="TCPade_Spectrum",
        title="Spectrum Cache",
        description="Spectrum (CVPR 2026, hanjq17/Spectrum): forecast the block-stack output with a ridge fit of "
        "Chebyshev polynomials over the last K computed outputs, optionally blended with a linear "
        "extrapolation; its own schedule computes densely early and ever more sparsely late.",
        widgets=SPECTRUM_WIDGETS,
        tail_widgets=SPECTRUM_TAIL,
        overrides=SPECTRUM_OVERRIDES,
    ),
    Method(
        "composed",
        ComposedConfig,
        _composed_gate,
        _composed_predictor,
        label="composed",
        leading_blocks=lambda c: METHODS[c.gate.method].leading(c.gate),
        trailing_blocks=lambda c: METHODS[c.gate.method].trailing(c.gate),
    ),
)
METHODS: Dict[str, Method] = {m.name: m for m in _METHOD_LIST}
NODES: List[Method] = [m for m in _METHOD_LIST if m.node_id]  # the methods that have a cache node, in menu order


def method_of(cfg: _Common) -> Method:
    return METHODS[cfg.method]


def fill_at_target(cfg: _Common, prediction: Optional[str], steps: Optional[int], user_set=frozenset()):
    """(config, note): what ``cfg``'s method fills at a speed target from the model's prediction type and the step
    count where the user left a setting alone (:attr:`Method.at_target`), or ``(cfg, "")`` for a method that fills
    nothing. One place for the nodes, :func:`tcpade_core.calibrate.calibrated_run` and the benchmarks."""
    fill = method_of(cfg).at_target
    return fill(cfg, prediction, steps, user_set) if fill is not None else (cfg, "")


def leading_blocks(cfg: _Common) -> int:
    """The blocks ahead of the cached stack that run on every step of a run with config ``cfg``."""
    return method_of(cfg).leading(cfg)


def trailing_blocks(cfg: _Common) -> int:
    """The blocks after the cached stack that run on every step of a run with config ``cfg``."""
    return method_of(cfg).trailing(cfg)


def split_blocks(depth: int, lead: int, trail: int) -> Tuple[int, int, str]:
    """Where a model of ``depth`` blocks is cut for ``lead`` leading and ``trail`` trailing blocks: ``(lead, trail,
    note)``, the cached stack being blocks ``[lead, depth - trail)``. At least one block stays cached: the leading
    blocks are clamped first (to depth - 1, as always), then the trailing ones; ``note`` says what was clamped ("":
    nothing)."""
    want_lead, want_trail = max(int(lead), 0), max(int(trail), 0)
    lead = min(want_lead, max(depth - 1, 0))
    trail = min(want_trail, max(depth - 1 - lead, 0))
    clamped = [
        f"{kind} blocks {want} -> {got}"
        for kind, want, got in (("leading", want_lead, lead), ("trailing", want_trail, trail))
        if want != got
    ]
    note = f"{', '.join(clamped)}: the model has {depth} blocks and one stays cached" if clamped else ""
    return lead, trail, note


def check_pairing(gate_cfg: _Common, predictor_cfg: _Common) -> None:
    """Raise ConfigError if the gate of ``gate_cfg`` cannot drive the predictor of ``predictor_cfg``: the gate
    reads a capability the predictor does not provide."""
    g, p = METHODS[gate_cfg.method].gate(gate_cfg), METHODS[predictor_cfg.method].predictor(predictor_cfg)
    missing = sorted(g.reads - p.provides)
    if missing:
        raise ConfigError(
            f"the {g.name} gate of {gate_cfg.method} reads the predictor's {', '.join(missing)}, which "
            f"the {type(p).__name__} of {predictor_cfg.method} does not provide; pair it with a "
            f"predictor that does (TC-Padé's)"
        )


def build(cfg: _Common, prediction: Optional[str] = None) -> Tuple[G.Gate, P.Predictor]:
    """The (gate, predictor) pair of a method config; a speed target wraps the gate in a budget. ``prediction``
    (what the model predicts; None: unknown) is what a speed target's placement ``"auto"`` reads, with the run's
    step count, at its first step."""
    m = method_of(cfg)
    gate, predictor = m.gate(cfg), m.predictor(cfg)
    predictor.serve(gate.reads)  # a pairing that lacks what its gate reads was refused when its config was built
    if cfg.plan is not None:
        gate = G.PlannedGate(gate, cfg.plan)
    elif cfg.target_speedup:
        gate = G.BudgetGate(gate, cfg.target_speedup, cfg.placement, predictor.warmup, prediction=prediction)
    return gate, predictor


def ui_table() -> Dict[str, dict]:
    """What the web extension needs of every cache node (``GET /tcpade/methods``): its label, presets, the
    widgets whose value can leave a setting to the pack, and the rules that grey out a widget."""
    out = {}
    for m in NODES:
        out[m.node_id] = {
            "method": m.name,
            "label": m.label,
            "title": m.title,
            "presets": dict(PRESETS) if m.presets else {},
            # widget -> the value that leaves the setting to the pack (Widget.auto): its label then says "auto"
            "autos": {w.name: w.auto for w in m.all_widgets() if w.auto is not None},
            "overrides": [
                {
                    "widget": o.widget,
                    "when": [list(c) for c in o.when],
                    "short": o.short,
                    "why": o.why,
                    "shows": o.shows,
                }
                for o in m.overrides
            ],
        }
    return out
