"""The default shape of a speed target: where K computes go without a calibration.

Today's speed target spaces its computes evenly in the step index (:class:`tcpade_core.gates.BudgetGate`). The
shape places them evenly in a warped coordinate of the step fraction ``x = i / n`` instead::

    U(x) = (1 - late) * x**power + late * (1 - (1 - x)**power)

``power`` < 1 makes the early steps (where the trajectory moves most) dense, ``late`` > 0 gives some of that
density to the last steps; ``power = 1`` is even spacing whatever ``late`` is. The gap a compute at step c
covers, until the next compute d (or the end of the run, n), measures ``U(d / n) - U(c / n)``.

**Nested in the budget.** The K-compute schedule is a subset of the (K+1)-compute one for every K: the steps
are ranked once per (steps, warm-up, shape) by removing, from the full schedule down to the warm-up, the compute
whose removal adds least to the sum of the gaps in U, each to the power :data:`EXPONENT` (ties: the later step goes first); the K-compute
schedule keeps the K best-ranked steps. A larger budget only adds computes.

The first ``warm`` steps (the predictor's warm-up, step 0 always) are never removed.

:data:`POWER` and :data:`LATE` were fitted on development runs only (``python -m tcpade_core.research.shape_fit``;
``docs/dev_tuning.md``) and frozen before any held-out run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Tuple

# the shape's parameters (tcpade_core.research.shape_fit, development runs only); frozen in the commit
# "Default schedule shape: freeze"
POWER = 0.7
LATE = 0.5
# the gap cost the ranking sums, gap ** EXPONENT (a design choice, not fitted: 2, 3 and 4 predicted within
# 0.1 dB of each other on the development trajectories, docs/dev_tuning.md)
EXPONENT = 2


def warp(x: float, power: float = None, late: float = None) -> float:
    """U(x) for x in [0, 1]: increasing, U(0) = 0, U(1) = 1 (None: the frozen :data:`POWER` / :data:`LATE`)."""
    power, late = _params(power, late)
    x = min(1.0, max(0.0, float(x)))
    return (1.0 - late) * x**power + late * (1.0 - (1.0 - x) ** power)


def _params(power, late) -> Tuple[float, float]:
    power = POWER if power is None else float(power)
    late = LATE if late is None else float(late)
    if not (power > 0 and 0.0 <= late <= 1.0):
        raise ValueError(f"shape needs power > 0 and late in [0, 1], got power {power}, late {late}")
    return power, late


def ranking(num_steps: int, warm: int = 1, power: float = None, late: float = None) -> Tuple[int, ...]:
    """Every step of a ``num_steps``-step run, best first: the warm-up steps, then the others in the reverse order
    of their greedy removal (module docstring)."""
    return _ranking(int(num_steps), max(1, int(warm)), *_params(power, late), EXPONENT)


@lru_cache(maxsize=256)
def _ranking(num_steps: int, warm: int, power: float, late: float, exponent: float) -> Tuple[int, ...]:
    n = num_steps
    if n <= 0:
        return ()
    warm = max(1, min(int(warm), n))
    u = [warp(i / n, power, late) for i in range(n + 1)]
    kept = list(range(n))
    removed: List[int] = []
    while len(kept) > warm:
        best, best_cost = None, None
        for j in range(warm, len(kept)):  # kept[j] >= warm: kept[:warm] are the warm-up steps
            a, c = kept[j - 1], kept[j]
            d = kept[j + 1] if j + 1 < len(kept) else n
            g1, g2 = u[c] - u[a], u[d] - u[c]
            cost = (g1 + g2) ** exponent - g1**exponent - g2**exponent
            if best_cost is None or cost <= best_cost + 1e-15:  # ties: the later step
                best, best_cost = j, cost
        removed.append(kept.pop(best))
    return tuple(kept) + tuple(reversed(removed))


def schedule(num_steps: int, k: int, warm: int = 1, power: float = None, late: float = None) -> List[int]:
    """The ``k`` steps to compute (sorted), at least the ``warm`` warm-up steps, at most every step."""
    r = ranking(num_steps, warm, power, late)
    k = max(min(int(k), len(r)), min(max(1, int(warm)), len(r)))
    return sorted(r[:k])
