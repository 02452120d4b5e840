"""Which of MagCache's published ratio tables (:mod:`tcpade_core.magcache_tables`) fits a model: the table of the
same model that TeaCache's chooser names (:mod:`.teacache_tables`, through ``Family.teacache``), where MagCache
publishes one; None otherwise (the node then runs the flat profile, and says so)."""

from __future__ import annotations

from typing import Optional

# TeaCache's table name -> MagCache's table of the same model
_FROM_TEACACHE = {
    "flux": "flux",
    "wan2.1 t2v 1.3B": "wan2.1_t2v_1.3B",
    "wan2.1 t2v 14B": "wan2.1_t2v_14B",
    "wan2.1 i2v 480p": "wan2.1_i2v_480p_14B",
    "wan2.1 i2v 720p": "wan2.1_i2v_720p_14B",
}


def table_for(family, model_config, latent_shape=None) -> Optional[str]:
    """The MagCache table of the model (None: no published table fits it)."""
    if family is None or family.teacache is None:
        return None
    return _FROM_TEACACHE.get(family.teacache(model_config, latent_shape))
