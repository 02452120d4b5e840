"""Which TeaCache rescale polynomial (:mod:`tcpade_core.teacache_tables`) fits a model. Each model family names its table chooser in :mod:`.families`
(``Family.teacache``); the choosers read the host's model config only through plain attributes, so this
module imports nothing from the host.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..tcpade_core.teacache_tables import AUTO, CHOICES, COEFFICIENTS, CUSTOM, parse_coefficients  # noqa: F401

# From this many image pixels per frame (latent pixels x 8 x 8) a Wan i2v run uses the 720p table.
_720P_PIXELS = 0.75 * 1280 * 720


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
    if kind == "t2v":  # by width: 1536 is the 1.3B, 5120 the 14B; other widths (Wan 2.2 TI2V-5B: 3072) have no table
        return {1536: "wan2.1 t2v 1.3B", 5120: "wan2.1 t2v 14B"}.get(int(uc.get("dim", 1536)))
    return None
