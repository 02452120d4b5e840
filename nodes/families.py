"""Where the block stack is, per model family, declared as data.

ComfyUI's DiT forwards call ``transformer_options["patches_replace"]["dit"][(kind, i)]`` for each
block when a patch is registered for it. A :class:`Family` says which block kinds form the stack (in
execution order), which ``nn.ModuleList`` attribute of the diffusion model holds each kind, how the
image tokens sit in the stream at the end of the stack (Flux concatenates ``txt`` then ``img`` for
its single blocks; HunyuanVideo ``img`` then ``txt``) and where TeaCache's modulated input comes
from. Adding a family is one entry in :data:`FAMILIES`. No host import here: the functions take the
host's module objects and plain dicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from . import teacache_tables as TT


@dataclass(frozen=True)
class Stage:
    kind: str                    # patch key kind: "double_block" | "single_block"
    attr: str                    # ModuleList attribute on the diffusion model
    joint: Optional[str] = None  # None: the stream is the image tokens; "txt_first" / "img_first": joined stream
    skip_attr: Optional[str] = None  # list attribute of block indices the host skips (Chroma)


@dataclass(frozen=True)
class Family:
    name: str
    class_names: Tuple[str, ...]   # matched against the diffusion model's class and its bases
    stages: Tuple[Stage, ...]
    modulated: Optional[Callable[[dict, torch.nn.Module], torch.Tensor]] = None  # TeaCache input; None: the stack input
    # TeaCache "auto": (host model_config, latent shape or None) -> a table of teacache_tables.COEFFICIENTS, or None
    teacache: Optional[Callable[[object, Optional[Sequence[int]]], Optional[str]]] = None


def _flux_modulated(args: dict, dm) -> torch.Tensor:
    """Block 0's timestep-modulated image input, (1 + scale) * LN(img) + shift (TeaCache for FLUX)."""
    blk = dm.double_blocks[0]
    mod, _ = blk.img_mod(args["vec"])
    return (1 + mod.scale) * blk.img_norm1(args["img"]) + mod.shift


def _vec(args: dict, dm) -> torch.Tensor:
    """The timestep projection handed to every block (TeaCache for Wan uses e0)."""
    return args["vec"]


def _own_modulated(args: dict, dm) -> torch.Tensor:
    """Models of this pack (DiT-XL/2 in nodes/dit_support.py) say where their modulated input is."""
    return dm.modulated_input_from_args(args)


_DOUBLE = Stage("double_block", "double_blocks")
FAMILIES: Tuple[Family, ...] = (
    Family("flux", ("Flux",), (_DOUBLE, Stage("single_block", "single_blocks", "txt_first")),
           _flux_modulated, TT.flux_table),
    Family("chroma", ("Chroma",), (Stage("double_block", "double_blocks", skip_attr="skip_mmdit"),
                                   Stage("single_block", "single_blocks", "txt_first", skip_attr="skip_dit"))),
    Family("wan", ("WanModel",), (Stage("double_block", "blocks"),), _vec, TT.wan_table),
    Family("hunyuan_video", ("HunyuanVideo",), (_DOUBLE, Stage("single_block", "single_blocks", "img_first"))),
    Family("qwen_image", ("QwenImageTransformer2DModel",), (Stage("double_block", "transformer_blocks"),)),
    Family("ltxv", ("LTXVModel",), (Stage("double_block", "transformer_blocks"),)),
    Family("sd3", ("MMDiT",), (Stage("double_block", "joint_blocks"),)),
    Family("dit", ("ComfyDiT",), (Stage("double_block", "blocks"),), _own_modulated),
    # the pack's FLUX-like bench model B (nodes/dit_support.py): Flux's layout, its own modulated input
    Family("tcpade_fluxlike", ("ComfyFluxLike",), (_DOUBLE, Stage("single_block", "single_blocks", "txt_first")),
           _own_modulated),
)


def find_family(diffusion_model) -> Optional[Family]:
    """The family whose class name appears first in the model's MRO, or None."""
    names = [c.__name__ for c in type(diffusion_model).__mro__]
    for name in names:
        for fam in FAMILIES:
            if name in fam.class_names:
                return fam
    return None


@dataclass(frozen=True)
class StackLayout:
    """The concrete block keys of one model: ``keys`` in execution order; the first decides, the last records."""

    family: Family
    keys: Tuple[Tuple[str, int], ...]
    joint_tail: Optional[str]   # how the image part sits in the last block's output


def resolve(diffusion_model) -> Tuple[Optional[Family], Optional[StackLayout]]:
    """The family of a diffusion model and its stack layout; (family or None, None) when the pack cannot
    patch it block by block (then it caches the whole model output)."""
    fam = find_family(diffusion_model)
    return fam, (layout_for(fam, diffusion_model) if fam is not None else None)


def layout_for(family: Family, diffusion_model) -> Optional[StackLayout]:
    keys: List[Tuple[str, int]] = []
    tail = None
    for st in family.stages:
        blocks = getattr(diffusion_model, st.attr, None)
        if blocks is None:
            continue
        skip = set(getattr(diffusion_model, st.skip_attr, None) or []) if st.skip_attr else set()
        stage_keys = [(st.kind, i) for i in range(len(blocks)) if i not in skip]
        if stage_keys:
            keys.extend(stage_keys)
            tail = st.joint
    if not keys:
        return None
    return StackLayout(family, tuple(keys), tail)


def image_part(stream: torch.Tensor, tail: Optional[str], img_len: int) -> torch.Tensor:
    """The image tokens of the stream at the end of the stack."""
    if tail == "txt_first":
        return stream[:, stream.shape[1] - img_len:]
    if tail == "img_first":
        return stream[:, :img_len]
    return stream


def with_image_part(stream: torch.Tensor, tail: Optional[str], img: torch.Tensor) -> torch.Tensor:
    """``stream`` with its image tokens replaced by ``img`` (a new tensor)."""
    if tail is None:
        return img
    n = img.shape[1]
    if tail == "txt_first":
        return torch.cat((stream[:, : stream.shape[1] - n].to(img.dtype), img), dim=1)
    return torch.cat((img, stream[:, n:].to(img.dtype)), dim=1)
