"""TeaCache rescale polynomials (numpy poly1d order, highest power first) and which one fits a model.

The numbers are the ones the TeaCache authors publish in https://github.com/ali-vilab/TeaCache
(``TeaCache4FLUX/teacache_flux.py`` and the Wan 2.1 scripts of ``TeaCache4Wan2.1/``). Each model family names its table chooser in :mod:`.families`
(``Family.teacache``); the choosers read the host's model config only through plain attributes, so this
module imports nothing from the host.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

from ..tcpade_core import ConfigError

COEFFICIENTS = {
    "flux": (4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01),
    "wan2.1 t2v 1.3B": (2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01),
    "wan2.1 t2v 14B": (-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404),
    "wan2.1 i2v 480p": (-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01),
    "wan2.1 i2v 720p": (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683),
}
AUTO = "auto"
CUSTOM = "custom"
CHOICES = [AUTO, *COEFFICIENTS, CUSTOM]

# From this many image pixels per frame (latent pixels x 8 x 8) a Wan i2v run uses the 720p table.
_720P_PIXELS = 0.75 * 1280 * 720


def parse_coefficients(text: str) -> Tuple[float, ...]:
    """'a, b, c' (highest power first) -> floats; ConfigError naming ``custom_coefficients`` otherwise."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"custom_coefficients must be 1 to 10 comma-separated numbers, highest power first; got {text!r}") from None
    if not 1 <= len(vals) <= 10 or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"custom_coefficients must be 1 to 10 finite numbers, highest power first; got {text!r}")
    return vals


def flux_table(model_config, latent_shape: Optional[Sequence[int]] = None) -> Optional[str]:
    """FLUX.1 only: the host's Flux class also runs Flux 2 (``image_model`` "flux2", global modulation), Kontext
    and others, whose rescale polynomials nobody published (None: the node says so)."""
    uc = dict(getattr(model_config, "unet_config", {}) or {})
    if uc.get("image_model", "flux") != "flux" or uc.get("global_modulation"):
        return None
    return "flux"


def wan_table(model_config, latent_shape: Optional[Sequence[int]] = None) -> Optional[str]:
    """Wan 2.1: t2v 1.3B / 14B by width; i2v (``model_type`` i2v or 36 input channels) 480p / 720p by the
    latent's spatial size (480p while it is unknown). None for a Wan variant without a table."""
    uc = dict(getattr(model_config, "unet_config", {}) or {})
    kind = str(uc.get("model_type", "t2v"))
    if kind == "i2v" or uc.get("in_dim") == 36:
        if latent_shape is None:
            return "wan2.1 i2v 480p"
        h, w = int(latent_shape[-2]), int(latent_shape[-1])
        return "wan2.1 i2v 720p" if h * w * 64 >= _720P_PIXELS else "wan2.1 i2v 480p"
    if kind == "t2v":   # by width: 1536 is the 1.3B, 5120 the 14B; other widths (Wan 2.2 TI2V-5B: 3072) have no table
        return {1536: "wan2.1 t2v 1.3B", 5120: "wan2.1 t2v 14B"}.get(int(uc.get("dim", 1536)))
    return None
