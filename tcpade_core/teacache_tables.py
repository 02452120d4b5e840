"""TeaCache's published rescale polynomials (numpy ``poly1d`` order, highest power first) and the parser of a
user's own: data the method's descriptor offers as choices (:mod:`tcpade_core.methods`). Which table fits a
model is the host's business (``nodes/teacache_tables.py``).

The numbers are the ones the TeaCache authors publish in https://github.com/ali-vilab/TeaCache
(``TeaCache4FLUX/teacache_flux.py`` and the Wan 2.1 scripts of ``TeaCache4Wan2.1/``).
"""

from __future__ import annotations

import math
from typing import Tuple

from .config import ConfigError

COEFFICIENTS = {
    "flux": (4.98651651e02, -2.83781631e02, 5.58554382e01, -3.82021401e00, 2.64230861e-01),
    "wan2.1 t2v 1.3B": (2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00, 1.37887774e-01),
    "wan2.1 t2v 14B": (-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404),
    "wan2.1 i2v 480p": (-3.02331670e02, 2.23948934e02, -5.25463970e01, 5.87348440e00, -2.01973289e-01),
    "wan2.1 i2v 720p": (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683),
}
AUTO = "auto"
CUSTOM = "custom"
CHOICES = [AUTO, *COEFFICIENTS, CUSTOM]


def parse_coefficients(text: str) -> Tuple[float, ...]:
    """'a, b, c' (highest power first) -> floats; ConfigError naming ``custom_coefficients`` otherwise."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"custom_coefficients must be 1 to 10 comma-separated numbers, highest power first; got {text!r}"
        ) from None
    if not 1 <= len(vals) <= 10 or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"custom_coefficients must be 1 to 10 finite numbers, highest power first; got {text!r}")
    return vals
