"""Shipped benchmark models: build from the config stored in safetensors metadata and load weights."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch.nn as nn

from .dit import DiT
from .fluxlike import FluxLike

__all__ = [
    "WEIGHTS_DIR",
    "MODEL_FILES",
    "CLASS_NAMES",
    "canonical_name",
    "build_model",
    "save_model",
    "load_model",
    "read_metadata",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MODEL_FILES = {
    "a": "model_a_digits.safetensors",
    "b": "model_b_shapes.safetensors",
    "c": "model_c_textures.safetensors",
    "d": "model_d_textures.safetensors",
    "e": "model_e_textures.safetensors",
    "f": "model_f_textures.safetensors",
    "g": "model_g_textures.safetensors",
    "h": "model_h_digits.safetensors",
}
# class names of the shipped models' label sets (index = class; the null class is len(names))
DIGITS_CLASSES = [str(i) for i in range(10)]
SHAPE_NAMES = ["circle", "square", "triangle", "ring", "cross"]
SCHEME_NAMES = ["warm-on-dark", "cool-on-light"]
SHAPES_CLASSES = [
    f"{SHAPE_NAMES[k % 5]} ({SCHEME_NAMES[k // 5]})" for k in range(10)
]  # k -> (shape k % 5, scheme k // 5)
# model C: class k -> texture pattern k (random period, phase, sharpness, colours; occluding objects)
TEXTURE_NAMES = [
    "v-stripes",
    "h-stripes",
    "diag-stripes",
    "anti-diag-stripes",
    "checkers",
    "dots",
    "rings",
    "waves",
    "plaid",
    "spokes",
]
TEXTURES_CLASSES = list(TEXTURE_NAMES)
CLASS_NAMES = {
    "a": DIGITS_CLASSES,
    "b": SHAPES_CLASSES,
    "c": TEXTURES_CLASSES,
    "d": TEXTURES_CLASSES,
    "e": TEXTURES_CLASSES,
    "f": TEXTURES_CLASSES,
    "g": TEXTURES_CLASSES,
    "h": DIGITS_CLASSES,
}
_ALIASES = {
    "a": "a",
    "digits": "a",
    "model_a": "a",
    "b": "b",
    "shapes": "b",
    "model_b": "b",
    "c": "c",
    "textures": "c",
    "model_c": "c",
    "d": "d",
    "model_d": "d",
    "e": "e",
    "model_e": "e",
    "f": "f",
    "model_f": "f",
    "g": "g",
    "model_g": "g",
    "h": "h",
    "model_h": "h",
}


def canonical_name(name: str) -> str:
    key = str(name).lower().strip()
    if key not in _ALIASES:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(_ALIASES)}")
    return _ALIASES[key]


def build_model(config: dict) -> nn.Module:
    cfg = dict(config)
    arch = cfg.pop("arch")
    if arch == "dit":
        return DiT(**cfg)
    if arch == "fluxlike":
        return FluxLike(**cfg)
    raise ValueError(f"unknown arch {arch!r}")


def save_model(
    model: nn.Module, path: os.PathLike | str, extra_metadata: Optional[dict] = None, fp16: bool = True
) -> None:
    """Save ``model.state_dict()`` (fp16 by default) with ``config`` + extra JSON metadata."""
    from safetensors.torch import save_file

    sd = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(model.config), "dtype": "float16" if fp16 else "float32"}
    for k, v in (extra_metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, os.fspath(path), metadata=meta)


def read_metadata(path: os.PathLike | str) -> dict:
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_model(name: str, path: Optional[os.PathLike | str] = None) -> nn.Module:
    """Load shipped model ``"a"``/``"digits"``, ``"b"``/``"shapes"`` or ``"c"``/``"textures"`` in eval mode, float32.

    ``model.metadata`` holds the decoded safetensors metadata (training seed, steps, wall time...).
    """
    from safetensors.torch import load_file

    key = canonical_name(name)
    path = Path(path) if path is not None else WEIGHTS_DIR / MODEL_FILES[key]
    if not path.exists():
        raise FileNotFoundError(
            f"weights for model {key!r} not found at {path}; train with `python -m tcpade_core.research.train --model {key}`"
        )
    meta = read_metadata(path)
    model = build_model(json.loads(meta["config"]))
    sd = load_file(os.fspath(path))
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    decoded = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except (ValueError, TypeError):
            decoded[k] = v
    model.metadata = decoded
    model.model_name = key
    return model
