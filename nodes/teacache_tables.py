"""TeaCache rescale polynomials (numpy poly1d order, highest power first) and model detection.

Numbers as published by the TeaCache authors (see shared ANCHORS.md). Detection looks at the host's
model config only through plain attributes, so this module imports nothing from the host.
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

# Below this many latent pixels per frame (x 8 x 8 = image pixels) a Wan i2v run uses the 480p table.
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


def detect_table(model_config, diffusion_model_class: str) -> Optional[str]:
    """Which table fits a model, from its config, without the latent size. Wan i2v returns 'wan2.1 i2v'
    (resolved to 480p / 720p per run, see :func:`resolve_i2v`). None if unknown."""
    uc = dict(getattr(model_config, "unet_config", {}) or {})
    image_model = str(uc.get("image_model", ""))
    if image_model.startswith("flux") or diffusion_model_class == "Flux":
        return "flux"
    if image_model == "wan2.1" or diffusion_model_class == "WanModel":
        kind = str(uc.get("model_type", "t2v"))
        if kind == "i2v" or uc.get("in_dim") == 36:
            return "wan2.1 i2v"
        if kind == "t2v":
            return "wan2.1 t2v 14B" if int(uc.get("dim", 1536)) >= 4000 else "wan2.1 t2v 1.3B"
    return None


def resolve_i2v(latent_shape: Sequence[int]) -> str:
    """480p or 720p table for a Wan i2v run from the latent's spatial size (8x VAE downscale)."""
    h, w = int(latent_shape[-2]), int(latent_shape[-1])
    return "wan2.1 i2v 720p" if h * w * 64 >= _720P_PIXELS else "wan2.1 i2v 480p"
