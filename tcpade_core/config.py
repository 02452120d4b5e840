"""Validated, frozen method configs: *when* to compute and *how* to predict.

Every config checks itself once, when it is built (:meth:`_Common.validate`), and raises :class:`ConfigError`
naming the parameter and its valid range. Configs hold settings only, never state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, Tuple


class ConfigError(ValueError):
    """A method parameter is outside its valid range."""


def _check_range(
    name: str, value: Any, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False, hi_open: bool = False
) -> None:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{name} must be {kind} in {_fmt(lo, hi, lo_open, hi_open)}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, in {_fmt(lo, hi, lo_open, hi_open)}, got {value!r}")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        raise ConfigError(f"{name} must be in {_fmt(lo, hi, lo_open, hi_open)}, got {value!r}")


def _fmt(lo, hi, lo_open, hi_open) -> str:
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _check_choice(name: str, value: Any, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


PLACEMENTS = ("auto", "even", "shape")  # where a speed target places its computes (_Common.placement)
# the placement of a speed target without a calibration's plan: "auto" (the default), the default shape below
# AUTO_SHAPE_BELOW on a flow-prediction model run for AUTO_MIN_STEPS steps or more, else even spacing. History:
# auto at every step count passed its gates (development model B seed 1234 at 1.25 / 1.5x: shape minus even +10.86
# dB TaylorSeer O=1, +8.45 TC-Padé; fresh seed 9002: +4.73 dB over the flow cells, B +10.02, C -0.57) and was the
# default in 77e5e6e; through the host the peer benchmark then lost its target in one cell (model C, 10 steps, 9 of
# 10 computes: +2.67 dB over the best core cache, target +3), so it became an option (8b5d93b, docs/flow_low.txt).
# Restricted to 20 steps or more and made the default again by the rule written before model D was sampled
# (docs/model_d.txt): on held-out model D, at 20 / 30 steps below 2x, shape minus even +1.61 dB (15 of 16 cells
# better); at 10 steps -2.67 dB.
DEFAULT_PLACEMENT = "auto"
AUTO_SHAPE_BELOW = 2.0
AUTO_MIN_STEPS = 20


# TaylorSeer's order at a speed target where the user left it at its default: order 2 on an eps-prediction model
# run for AUTO_MIN_STEPS steps or more, order 1 otherwise (methods.taylorseer_order). The rule, its development
# rows and its held-out test on model H were written down before H was trained (docs/order_eps.txt, 41694b3). Held
# out on H at 20 / 30 steps, order 2 minus order 1: on the plan +1.83 dB (18 better / 2 worse of 20 cells), spaced
# evenly +0.24 (17 / 3): on by the rule (docs/runs/order_eps_h.txt).
ORDER_BY_PREDICTION = True


def order_for(prediction: Optional[str], steps: Optional[int]) -> int:
    """TaylorSeer's order at a speed target by :data:`ORDER_BY_PREDICTION`'s rule: 2 on an eps-prediction model
    (``prediction == "eps"``) run for :data:`AUTO_MIN_STEPS` ``steps`` or more, else 1 (an unknown prediction or
    step count included)."""
    return 2 if prediction == "eps" and steps is not None and steps >= AUTO_MIN_STEPS else 1


def placement_for(placement: str, prediction: Optional[str], target: float, steps: Optional[int] = None) -> str:
    """The placement a speed target runs: ``placement`` itself unless it is ``"auto"``, which is ``"shape"`` for
    a target in (0, :data:`AUTO_SHAPE_BELOW`) on a flow-prediction model (``prediction == "flow"``) run for
    :data:`AUTO_MIN_STEPS` ``steps`` or more, and ``"even"`` otherwise (an unknown prediction or step count
    included)."""
    if placement != "auto":
        return placement
    flow_low = prediction == "flow" and 0 < float(target or 0) < AUTO_SHAPE_BELOW
    return "shape" if flow_low and steps is not None and steps >= AUTO_MIN_STEPS else "even"


TARGET_RANGE = (1.0, 100.0)  # a speed target (0 is off); the one range, checked here only


def check_target(value: Any, name: str = "target_speedup", off: bool = True) -> float:
    """A speed target: 0 (off, where ``off``) or a number in :data:`TARGET_RANGE`. Raises ConfigError naming
    ``name`` and the range."""
    lo, hi = TARGET_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not ((off and value == 0) or lo <= value <= hi)
    ):
        raise ConfigError(f"{name} must be {'0 (off) or ' if off else ''}a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def budget(num_steps: int, target: float) -> int:
    """The computes a speed target allows over ``num_steps`` steps: round(steps / target), at least 1."""
    return max(1, min(num_steps, int(math.floor(num_steps / target + 0.5))))


@dataclass(frozen=True)
class _Common:
    """What every method config shares: the speed target (``target_speedup``: 0 follows the method's own
    schedule; otherwise the run computes exactly :func:`budget` steps), ``with_`` and a one-line ``describe``.
    Which steps may skip at all (the start/end window) is the caller's decision, passed per step to the engine.
    Each config checks its own parameters in :meth:`validate`, once, when it is built."""

    target_speedup: float = field(default=0.0, kw_only=True)
    # a planned schedule (tcpade_core.planner): the steps to compute, increasing from 0; it replaces the method's
    # own schedule and the even spacing of a speed target (the method's signal then decides nothing)
    plan: Optional[Tuple[int, ...]] = field(default=None, kw_only=True)
    # where a speed target without a plan places its computes (PLACEMENTS): "even" spaces them evenly in the step
    # index; "shape" places them on the default shape (tcpade_core.shape: dense early, nested in the budget)
    placement: str = field(default=DEFAULT_PLACEMENT, kw_only=True)

    def __post_init__(self):
        object.__setattr__(self, "target_speedup", check_target(self.target_speedup))
        _check_choice("placement", self.placement, PLACEMENTS)
        if self.plan is not None:
            from .planner import check_plan

            try:
                object.__setattr__(self, "plan", check_plan(self.plan))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self.validate()

    def validate(self) -> None:
        """Check (and normalise) the method's own parameters; raise ConfigError naming the bad one."""

    def with_(self, **changes):
        return replace(self, **changes)

    def describe(self) -> str:
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v != f.default and f.name not in ("coefficients", "target_speedup", "plan", "placement"):
                parts.append(f"{f.name}={v}")
        return f"{self.method}({', '.join(parts)})"


@dataclass(frozen=True)
class NoCacheConfig(_Common):
    """Full compute on every step (the reference)."""

    method = "none"


@dataclass(frozen=True)
class ReuseConfig(_Common):
    """FORA-style plain reuse: compute every ``interval`` steps, reuse the last block-stack residual between."""

    method = "reuse"
    interval: int = 2

    def validate(self):
        _check_range("interval", self.interval, 1, 100, integer=True)


@dataclass(frozen=True)
class TaylorSeerConfig(_Common):
    """TaylorSeer (arXiv 2503.06923), scheduled as its official code does: full compute on the first
    ``first_enhance`` steps, then after every ``interval - 1`` predicted steps; in between, order-O Taylor
    extrapolation of the block-stack output in the step index.

    ``form``: ``"official"`` (default) is the official code's recursive scheme: on each computed step the
    order-(i+1) factor is (new order-i factor - stored order-i factor) / (distance between the last two
    computed steps), and the prediction is sum_i factor_i k^i / i!, k the distance to the last computed
    step; ``"eq10"`` is the paper's Eq. 10 on the stored values (backward differences over the newest
    spacing; the same as ``official`` on evenly spaced computes, different after the first_enhance steps);
    ``"newton"`` is the exact polynomial through the newest O+1 values (exact on degree <= O).
    ``target``: ``"output"`` predicts the raw block-stack output as the paper does; ``"residual"``
    predicts the residual and adds it to the current input.
    """

    method = "taylorseer"
    interval: int = 4
    order: int = 1
    first_enhance: int = 2
    form: str = "official"
    target: str = "output"

    def validate(self):
        _check_range("interval", self.interval, 1, 100, integer=True)
        _check_range("order", self.order, 0, 4, integer=True)
        _check_range("first_enhance", self.first_enhance, 0, 100, integer=True)
        _check_choice("form", self.form, ("official", "eq10", "newton"))
        _check_choice("target", self.target, ("output", "residual"))


IDENTITY_COEFFICIENTS: Tuple[float, ...] = (1.0, 0.0)


@dataclass(frozen=True)
class TeaCacheConfig(_Common):
    """TeaCache: accumulate the polynomial-rescaled relative L1 distance of block 0's
    timestep-modulated input; skip (reuse the last residual) while the sum stays below ``threshold``
    (delta); reset the sum on every computed step. The first and last steps always compute.

    ``coefficients``: numpy ``poly1d`` order, highest power first.
    """

    method = "teacache"
    threshold: float = 0.4
    coefficients: Tuple[float, ...] = IDENTITY_COEFFICIENTS

    def validate(self):
        _check_range("threshold", self.threshold, 0.0, 10.0)
        coeffs = tuple(self.coefficients)
        if not 1 <= len(coeffs) <= 10 or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in coeffs):
            raise ConfigError(
                f"coefficients must be 1 to 10 finite numbers (highest power first), got {self.coefficients!r}"
            )
        object.__setattr__(self, "coefficients", tuple(float(c) for c in coeffs))


@dataclass(frozen=True)
class TraCacheConfig(_Common):
    """TraCache: full compute every ``stride`` k steps; in between, Lagrange interpolation of the
    block-stack output through the last n+1 computed states, n in 1..``max_order`` chosen per step by
    the minimum std of phi_n - phi_(n-1) (dynamic order selection, Eq. 6-7)."""

    method = "tracache"
    stride: int = 2
    max_order: int = 2
    target: str = "output"

    def validate(self):
        _check_range("stride", self.stride, 1, 100, integer=True)
        _check_range("max_order", self.max_order, 1, 4, integer=True)
        _check_choice("target", self.target, ("output", "residual"))


def _flux_profile() -> Tuple[float, ...]:
    from .magcache_tables import DEFAULT_TABLE, TABLES

    return TABLES[DEFAULT_TABLE].profile()


def _flux_always() -> Tuple[int, ...]:
    from .magcache_tables import DEFAULT_TABLE, TABLES

    return TABLES[DEFAULT_TABLE].always_compute


@dataclass(frozen=True)
class MagCacheConfig(_Common):
    """MagCache (arXiv 2506.09045; Zehong-Ma/ComfyUI-MagCache ``nodes.py``): per step
    ``acc_ratio *= ratios[j]``, ``acc_steps += 1``, ``acc_err += |1 - acc_ratio|``; skip (reuse the cached
    residual) while ``acc_err < threshold`` and ``acc_steps <= K``, else reset all three and compute. Active from
    step ``int(N * retention_ratio)``; step ``i`` of an ``N``-step run reads calibration step
    ``j = int(i * (L - 1) / (N - 1))`` of the ``L`` ratios (:func:`tcpade_core.magcache_tables.calibration_step`).

    ``ratios``: the magnitude ratio per calibration step (the first stream's; default: the published FLUX
    profile, 28 steps). ``always_compute``: calibration steps computed whatever the error, the accumulators left
    as they are (its FLUX forward's step 11). Defaults are its node's (threshold 0.06, K 2, retention 0.2); its
    README gives FLUX 0.24 / K 5 / retention 0.1.
    """

    method = "magcache"
    threshold: float = 0.06
    K: int = 2
    retention_ratio: float = 0.2
    ratios: Tuple[float, ...] = field(default_factory=_flux_profile)
    always_compute: Tuple[int, ...] = field(default_factory=_flux_always)

    def validate(self):
        _check_range("threshold", self.threshold, 0.0, 10.0)
        _check_range("K", self.K, 0, 100, integer=True)
        _check_range("retention_ratio", self.retention_ratio, 0.0, 1.0)
        r = self.ratios
        if (
            not isinstance(r, (tuple, list))
            or not 1 <= len(r) <= 10000
            or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 for x in r
            )
        ):
            raise ConfigError(f"ratios must be 1 to 10000 finite numbers > 0 (one per calibration step), got {r!r}")
        object.__setattr__(self, "ratios", tuple(float(x) for x in r))
        a = self.always_compute
        if not isinstance(a, (tuple, list)) or not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < len(self.ratios) for x in a
        ):
            raise ConfigError(
                f"always_compute must be calibration steps, integers in [0, {len(self.ratios) - 1}], got {a!r}"
            )
        object.__setattr__(self, "always_compute", tuple(a))

    def describe(self) -> str:
        parts = [f"threshold={self.threshold}", f"K={self.K}", f"retention_ratio={self.retention_ratio}"]
        if self.ratios != _flux_profile():
            parts.append(f"ratios=({len(self.ratios)} steps)")
        return f"magcache({', '.join(parts)})"


@dataclass(frozen=True)
class FirstBlockConfig(_Common):
    """First Block Cache (chengzeyi/Comfy-WaveSpeed) and DBCache (vipshop/cache-dit): the first
    ``leading_blocks`` blocks (Fn: 1 is FBCache, 8 is DBCache's default) run on every step; a step is skipped while
    the relative L1 change ``mean|r - r_ref| / mean|r_ref|`` of their residual ``r = H_after_Fn - H_in`` against
    ``r_ref``, the one of the last computed step, stays below ``threshold``. On a skipped step the remaining
    blocks' cached residual is added (``predictor`` ``"reuse"``) or extrapolated (``"taylorseer"``: cache-dit's
    TaylorSeer calibrator, order ``order`` on the residual). ``max_consecutive``: cached steps in a row at most
    (-1 unlimited; WaveSpeed's max_consecutive_cache_hits, cache-dit's max_continuous_cached_steps).
    ``warmup_steps``: the first steps always compute (cache-dit's max_warmup_steps; WaveSpeed has none: 0).
    ``compare``: ``"residual"`` (cache-dit, and WaveSpeed on every model but FLUX) or ``"output"`` (H_after_Fn
    itself: what WaveSpeed's FLUX forward compares). Threshold 0 never skips (WaveSpeed's node default: off).
    ``trailing_blocks`` (Bn, cache-dit's default 0): the last Bn blocks also run on every step, on top of the
    cached (computed or predicted) output of the middle blocks [Fn, depth - Bn); 0 caches every block after the
    leading ones (FBCache, F1B0)."""

    method = "first_block"
    # frozen on the development runs (docs/dev_tuning.md, "First Block Cache"): models A and B, seed 1234, 10/20/30
    # steps; threshold 0.12 with the TaylorSeer calibrator had the best mean Pareto margin of the F1 settings that
    # reach 1.5x on average (first frozen at 0.08 on model A alone; that reaches 1.47x on A and B)
    threshold: float = 0.12
    leading_blocks: int = 1
    max_consecutive: int = -1
    warmup_steps: int = 0
    compare: str = "residual"
    predictor: str = "taylorseer"
    order: int = 1
    trailing_blocks: int = 0

    def validate(self):
        _check_range("threshold", self.threshold, 0.0, 10.0)
        _check_range("leading_blocks", self.leading_blocks, 1, 100, integer=True)
        _check_range("trailing_blocks", self.trailing_blocks, 0, 100, integer=True)
        _check_range("max_consecutive", self.max_consecutive, -1, 1000, integer=True)
        _check_range("warmup_steps", self.warmup_steps, 0, 100, integer=True)
        _check_choice("compare", self.compare, ("residual", "output"))
        _check_choice("predictor", self.predictor, ("reuse", "taylorseer"))
        _check_range("order", self.order, 1, 4, integer=True)


# The open points of the paper, each a separate switch. ``mode`` picks a consistent set; a switch given
# explicitly overrides it. The default reading was chosen on the development runs only (models A and B,
# seed 1234; README "Notes on the equations", docs/dev_tuning.md) and frozen before any held-out run.
PAPER_LITERAL = dict(
    tsi_scale="literal",
    numerator="literal",
    denominator="elementwise",
    reconstruct="previous_input",
    spacing="uniform",
    history="computed",
    target="residual",
    schedule="interval",
    gate="tsi",
    lam=10.0,
    early_boundary=0.7,
    late_boundary=0.2,
    warmup_steps=3,
)
DEFAULT_READING = dict(
    tsi_scale="reciprocal",
    numerator="rational_damped",
    denominator="none",
    reconstruct="current_input",
    spacing="steps",
    history="computed",
    target="output",
    schedule="spread",
    gate="tsi",
    lam=2.0,
    early_boundary=1.0,
    late_boundary=0.0,
    warmup_steps=1,
)


@dataclass(frozen=True)
class TCPadeConfig(_Common):
    """TC-Padé (arXiv 2603.02943): a trajectory gate (TSI, Eq. 1) and a sigma_stab-damped Padé prediction
    (Eq. 5-9) of the block stack.

    theta: a step between the forced computes is skipped when the stability score >= theta (higher: fewer
    skips). lam: lambda, the sensitivity of sigma_stab (Eq. 7). interval: N, the forced-compute grid.
    mode: ``"default"`` (the reading measured best on the development runs, see README "Notes on the
    equations") or ``"paper_literal"`` (the equations as printed). Every open point is a switch below,
    filled from the mode unless given: ``target`` (predict the stack ``output``, or the ``residual`` added
    to the ``reconstruct`` base), ``numerator`` (``literal`` / ``recent`` 2:-1 difference of Eq. 5, or a
    [1/1] approximant in the step variable, ``rational`` / ``rational_damped``), ``denominator``,
    ``spacing``, ``history``, ``schedule`` (``interval``: every N-th step from 0 plus a warm-up until three
    residuals exist; ``spread``: the first ``warmup_steps``, then every N-th from the last of them),
    ``gate`` (``tsi``, or ``error``: a gate that estimates its own error, ``error_tolerance``), phases
    ``early_boundary`` / ``late_boundary`` (fractions of T; 1.0 / 0.0: no phases) with ``alpha1`` / ``beta``.
    """

    method = "tcpade"
    theta: float = 1.0
    lam: Optional[float] = None
    alpha1: float = 1.0
    beta: float = 0.3
    interval: int = 4
    early_boundary: Optional[float] = None
    late_boundary: Optional[float] = None
    mode: str = "default"
    tsi_scale: str = ""
    numerator: str = ""
    denominator: str = ""
    reconstruct: str = ""
    spacing: str = ""
    history: str = ""
    target: str = ""
    schedule: str = ""
    gate: str = ""
    warmup_steps: Optional[int] = None
    error_tolerance: float = 0.05
    pole_guard: float = 0.1

    def validate(self):
        if self.mode == "official":
            raise ConfigError(
                "mode 'official' (the authors' code) is TCPadeOfficialConfig, or make_config('tcpade', "
                "mode='official'); TCPadeConfig's mode must be one of 'default', 'paper_literal'"
            )
        _check_choice("mode", self.mode, ("default", "paper_literal"))
        base = PAPER_LITERAL if self.mode == "paper_literal" else DEFAULT_READING
        for key, value in base.items():
            if getattr(self, key) in ("", None):
                object.__setattr__(self, key, value)
        _check_range("theta", self.theta, 0.0, 1000.0)
        _check_range("lam", self.lam, 0.0, 100.0, lo_open=True)
        _check_range("alpha1", self.alpha1, 0.0, 1.0)
        _check_range("beta", self.beta, -1.0, 1.0)
        _check_range("interval", self.interval, 1, 100, integer=True)
        _check_range("early_boundary", self.early_boundary, 0.0, 1.0)
        _check_range("late_boundary", self.late_boundary, 0.0, 1.0)
        if self.late_boundary > self.early_boundary:
            raise ConfigError(
                f"late_boundary must be <= early_boundary (got {self.late_boundary} > {self.early_boundary}); both in [0.0, 1.0]"
            )
        _check_range("pole_guard", self.pole_guard, 0.0, 1.0, lo_open=True)
        _check_choice("tsi_scale", self.tsi_scale, ("literal", "reciprocal", "cosine", "sum_norm"))
        _check_choice("numerator", self.numerator, ("literal", "recent", "rational", "rational_damped"))
        _check_choice("denominator", self.denominator, ("elementwise", "normalized", "none"))
        _check_choice("reconstruct", self.reconstruct, ("current_input", "previous_input"))
        _check_choice("spacing", self.spacing, ("uniform", "steps"))
        _check_choice("history", self.history, ("computed", "all"))
        _check_choice("target", self.target, ("residual", "output"))
        _check_choice("schedule", self.schedule, ("interval", "spread"))
        _check_choice("gate", self.gate, ("tsi", "error"))
        _check_range("warmup_steps", self.warmup_steps, 1, 100, integer=True)
        _check_range("error_tolerance", self.error_tolerance, 0.0, 10.0, lo_open=True)

    def describe(self) -> str:
        """Mode, θ and interval, then every setting that differs from its mode's reading (or its default)."""
        base = PAPER_LITERAL if self.mode == "paper_literal" else DEFAULT_READING
        parts = [f"mode={self.mode}", f"theta={self.theta}", f"interval={self.interval}"]
        for f in fields(self):
            if f.name not in ("mode", "theta", "interval", "target_speedup", "plan"):
                v = getattr(self, f.name)
                if v != base.get(f.name, f.default):
                    parts.append(f"{f.name}={v}")
        return f"tcpade({', '.join(parts)})"

    def with_(self, **changes):
        """A copy with ``changes``. A change of ``mode`` switches every setting the old mode filled in (still at
        that mode's value and not in ``changes``) to the new mode's value."""
        new_mode = changes.get("mode", self.mode)
        if new_mode != self.mode and new_mode in ("default", "paper_literal"):
            old = PAPER_LITERAL if self.mode == "paper_literal" else DEFAULT_READING
            empty = {f.name: f.default for f in fields(self)}
            for key, value in old.items():
                if key not in changes and getattr(self, key) == value:
                    changes[key] = empty[key]
        return replace(self, **changes)


@dataclass(frozen=True)
class TCPadeOfficialConfig(_Common):
    """TC-Padé as the authors' code does it (github.com/Alibaba-YuFeng/TC_Pade, ``utils/predict.py`` and
    ``forwards/tc_pade_flux_forward.py``), which differs from the paper in gate, predictor, reconstruction
    and history. ``make_config("tcpade", mode="official", ...)`` builds it; the defaults are ``run.py``'s.

    Schedule: predict step i when ``start_step < i < num_steps - 1``, ``i % interval != 0`` and the curvature
    test passes: with 5 or more stored residuals, 0.5 ||u1 - u2|| over the newest three < ``threshold`` (N);
    the score is at most 1, so the default N = 1.4 always passes and the schedule is fixed.
    Predictor (``order``, ``history_size``): phases by step index against ``phase_steps`` ("coded": the
    hard-coded 20 steps; "run": this run's step count): i > 0.8 T Padé + 0.3 (R1 - R2); 0.3 T < i <= 0.8 T
    Padé; otherwise 0.9 R1 + 0.1 R2. Padé: elementwise factor sf = exp(-5 |R1 - R2| / (mean |R| + 1e-7)),
    (2 sf R1 - sf R2) / (1 - 0.1 sf) (denominator 1 when the curvature test fails), clamped around
    0.6 R1 + 0.4 R2 and blended with it; a weighted-mean fallback (0.4, 0.3, 0.2, 0.1) x a stability
    factor in [0.8, 1.2] while fewer than order + 1 residuals exist, the order adapting 2-4 from the cosine
    similarity of recent residuals. Every step's residual is stored, predicted ones too. Output: current
    input + R + 0.2 (input - previous input).
    """

    method = "tcpade_official"
    threshold: float = 1.4
    interval: int = 8
    start_step: int = 4
    order: int = 3
    history_size: int = 6
    phase_steps: str = "coded"

    def validate(self):
        _check_range("threshold", self.threshold, 0.0, 1000.0)
        _check_range("interval", self.interval, 1, 100, integer=True)
        _check_range("start_step", self.start_step, 0, 1000, integer=True)
        _check_range("order", self.order, 1, 4, integer=True)
        _check_range("history_size", self.history_size, 3, 16, integer=True)
        _check_choice("phase_steps", self.phase_steps, ("coded", "run"))

    def describe(self) -> str:
        parts = [f"threshold={self.threshold}", f"interval={self.interval}", f"start_step={self.start_step}"]
        parts += [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("threshold", "interval", "start_step", "target_speedup", "plan")
            and getattr(self, f.name) != f.default
        ]
        return f"tcpade(official, {', '.join(parts)})"


# Spectrum's readings: what its code does, and the reading measured best on the development runs (models A and
# B, seed 1234; docs/dev_tuning.md "Spectrum"), frozen before any held-out run. A switch given explicitly wins.
SPECTRUM_OFFICIAL = dict(time_map="fixed50", target="output")
SPECTRUM_DEFAULT = dict(time_map="time", target="output")
SPECTRUM_MODES = {"default": SPECTRUM_DEFAULT, "official": SPECTRUM_OFFICIAL}


@dataclass(frozen=True)
class SpectrumConfig(_Common):
    """Spectrum (hanjq17/Spectrum, CVPR 2026, arXiv 2603.01623): forecast the block stack's output from the
    newest ``history`` (K) computed outputs with a ridge fit (``lam``) of Chebyshev polynomials T_0..T_M
    (``degree``) in a time variable, blended with a discrete Newton-forward Taylor term of order
    ``taylor_order``: h = (1 - w) h_taylor + w h_cheb (``w`` 1: pure Chebyshev, the paper's; its README
    recommends 0.5-1.0).

    Its schedule: the first ``warmup_steps`` compute; then a step computes when (cached steps since the last
    compute + 1) % floor(N) == 0, N starting at ``window_size`` and growing by ``alpha`` (its ``flex_window``)
    on each such compute. Its code's and README's values: M 4, λ 0.1, w 1.0 (0.5 in its README's commands), N 2,
    α 0.75, warm-up 5 (configs/base.yaml), Taylor order 1; here w 0.5 and warm-up 2 (measured on the development
    runs: docs/dev_tuning.md "Spectrum"). K: its forecaster class defaults to 10, its pipeline passes 100 (every
    computed step at its 50 steps); 10 here bounds the memory and changes nothing until the 11th compute.

    ``mode`` fills ``time_map`` and ``target`` unless given: ``"official"`` (its code: the step index through
    a fixed map of [0, 50] onto [-1, 1]; the stack output) or ``"default"`` (measured: the normalised time t
    onto [-1, 1]; the stack output).
    ``time_map``: ``fixed50``, ``steps`` (the step index over [0, steps]) or ``time`` (the normalised time t).
    ``target``: ``output``, or ``residual`` (output - input, added to the current input).
    """

    method = "spectrum"
    degree: int = 4
    lam: float = 0.1
    w: float = 0.5
    history: int = 10
    window_size: int = 2
    alpha: float = 0.75
    warmup_steps: int = 2
    taylor_order: int = 1
    mode: str = "default"
    time_map: str = ""
    target: str = ""

    def validate(self):
        _check_choice("mode", self.mode, tuple(SPECTRUM_MODES))
        for key, value in SPECTRUM_MODES[self.mode].items():
            if getattr(self, key) in ("", None):
                object.__setattr__(self, key, value)
        _check_range("degree", self.degree, 0, 8, integer=True)
        _check_range("lam", self.lam, 0.0, 100.0, lo_open=True)
        _check_range("w", self.w, 0.0, 1.0)
        _check_range("history", self.history, 1, 100, integer=True)
        _check_range("window_size", self.window_size, 1, 100, integer=True)
        _check_range("alpha", self.alpha, 0.0, 100.0)
        _check_range("warmup_steps", self.warmup_steps, 1, 100, integer=True)
        _check_range("taylor_order", self.taylor_order, 1, 3, integer=True)
        _check_choice("time_map", self.time_map, ("fixed50", "steps", "time"))
        _check_choice("target", self.target, ("output", "residual"))

    def describe(self) -> str:
        """Mode, then every setting that differs from its mode's reading (or its default)."""
        base = SPECTRUM_MODES[self.mode]
        parts = [f"mode={self.mode}"]
        for f in fields(self):
            if f.name not in ("mode", "target_speedup", "plan"):
                v = getattr(self, f.name)
                if v != base.get(f.name, f.default):
                    parts.append(f"{f.name}={v}")
        return f"spectrum({', '.join(parts)})"

    def with_(self, **changes):
        """A copy with ``changes``; a change of ``mode`` re-fills what the old mode filled (as TCPadeConfig)."""
        new_mode = changes.get("mode", self.mode)
        if new_mode != self.mode and new_mode in SPECTRUM_MODES:
            for key, value in SPECTRUM_MODES[self.mode].items():
                if key not in changes and getattr(self, key) == value:
                    changes[key] = ""
        return replace(self, **changes)


@dataclass(frozen=True)
class ComposedConfig(_Common):
    """A gate with a predictor: the gate of method config ``gate`` drives the predictor of method config
    ``predictor`` (e.g. the authors' schedule with this pack's default predictor, for the ablation). A pairing
    that cannot work (the gate reads what the predictor does not provide) is refused here, with the reason
    (:func:`tcpade_core.methods.check_pairing`)."""

    method = "composed"
    gate: Any = None
    predictor: Any = None

    def validate(self):
        for name in ("gate", "predictor"):
            if not isinstance(getattr(self, name), _Common) or isinstance(getattr(self, name), ComposedConfig):
                raise ConfigError(f"{name} must be a method config (e.g. TCPadeConfig()), got {getattr(self, name)!r}")
        from .methods import check_pairing

        check_pairing(self.gate, self.predictor)

    def describe(self) -> str:
        return f"composed(gate={self.gate.describe()}, predictor={self.predictor.describe()})"


CONFIGS = {
    c.method: c
    for c in (
        NoCacheConfig,
        ReuseConfig,
        TaylorSeerConfig,
        TeaCacheConfig,
        TraCacheConfig,
        TCPadeConfig,
        TCPadeOfficialConfig,
        MagCacheConfig,
        FirstBlockConfig,
        SpectrumConfig,
        ComposedConfig,
    )
}


# (method, mode) -> the config class that mode really is: the authors' code is its own method
MODE_ALIASES = {("tcpade", "official"): "tcpade_official"}


def make_config(method: str, **params) -> _Common:
    """Build a config by method name; unknown names and parameters raise ConfigError.
    ``make_config("tcpade", mode="official", ...)`` gives the authors' code (:class:`TCPadeOfficialConfig`)."""
    alias = MODE_ALIASES.get((method, params.get("mode")))
    if alias is not None:
        params = {k: v for k, v in params.items() if k != "mode"}
        method = alias
    if method not in CONFIGS:
        raise ConfigError(f"method must be one of {', '.join(sorted(CONFIGS))}; got {method!r}")
    cls = CONFIGS[method]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) for {method}: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return cls(**params)
