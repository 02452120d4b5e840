"""Benchmark diffusion models for TC-Padé (DiT on digits, FLUX-like flow model on shapes)."""

from .dit import DiT, DiT_XL_2, load_dit_state_dict, infer_dit_config
from .fluxlike import FluxLike
from .zoo import load_model, build_model, save_model, WEIGHTS_DIR

__all__ = [
    "DiT",
    "DiT_XL_2",
    "load_dit_state_dict",
    "infer_dit_config",
    "FluxLike",
    "load_model",
    "build_model",
    "save_model",
    "WEIGHTS_DIR",
]
