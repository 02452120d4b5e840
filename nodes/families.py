"""Where the block stack is, per model family, declared as data.

ComfyUI's DiT forwards call ``transformer_options["patches_replace"]["dit"][(kind, i)]`` for each
block when a patch is registered for it. A :class:`Family` says which block kinds form the stack (in
execution order), which ``nn.ModuleList`` attribute of the diffusion model holds each kind, how the
image tokens sit in the stream at the end of the stack (Flux concatenates ``txt`` then ``img`` for
its single blocks; HunyuanVideo ``img`` then ``txt`` in v0.3.64 and ``txt`` then ``img`` in later hosts,
which say so in ``transformer_options["img_slice"]``: that slice wins over the declared order), which key
of the patch's arguments carries the stream (``img``; Kandinsky 5: ``x``) and where TeaCache's modulated
input comes from. A stream may be a tuple of tensors (LTX-2: ``(video, audio)``): both are cached together
(:func:`pack_stream`). Adding a family is one entry in :data:`FAMILIES`. No host import here: the
functions take the host's module objects and plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from . import teacache_tables as TT


@dataclass(frozen=True)
class Stage:
    kind: str  # patch key kind: "double_block" | "single_block"
    attr: str  # ModuleList attribute on the diffusion model
    joint: Optional[str] = None  # None: the stream is the image tokens; "txt_first" / "img_first": joined stream
    skip_attr: Optional[str] = None  # list attribute of block indices the host skips (Chroma)


@dataclass(frozen=True)
class Family:
    name: str
    class_names: Tuple[str, ...]  # matched against the diffusion model's class and its bases
    stages: Tuple[Stage, ...]
    modulated: Optional[Callable[[dict, torch.nn.Module], torch.Tensor]] = None  # TeaCache input; None: the stack input
    # TeaCache "auto": (host model_config, latent shape or None) -> a table of teacache_tables.COEFFICIENTS, or None
    teacache: Optional[Callable[[object, Optional[Sequence[int]]], Optional[str]]] = None
    stream_key: str = "img"  # the key of the block patch's arguments (and result) that carries the stream
    # (diffusion model, patch key, the patch's args) -> the block's result, for a host whose own
    # ``original_block`` cannot run the block (Kandinsky 5); None: ``extra["original_block"](args)``
    block_call: Optional[Callable[[torch.nn.Module, Tuple[str, int], dict], dict]] = None
    title: str = ""  # the family's name for people (warnings, the README); default: ``name``

    @property
    def display(self) -> str:
        return self.title or self.name


def _flux_modulated(args: dict, dm) -> torch.Tensor:
    """Block 0's timestep-modulated image input, (1 + scale) * LN(img) + shift (TeaCache for FLUX). Flux 2
    modulates globally: its blocks have no ``img_mod`` and ``vec`` holds the modulations, ``((img_mod1,
    img_mod2), (txt_mod1, txt_mod2))``. Where the modulation does not broadcast over the image tokens (Flux 2
    with a reference at timestep zero) the gate reads the stack input instead."""
    blk = dm.double_blocks[0]
    img = args["img"]
    if getattr(blk, "img_mod", None) is not None:
        mod, _ = blk.img_mod(args["vec"])
    else:
        vec = args["vec"]
        try:
            mod = vec[0][0]
        except (TypeError, IndexError, KeyError):
            return img
    scale, shift = getattr(mod, "scale", None), getattr(mod, "shift", None)
    if not (isinstance(scale, torch.Tensor) and isinstance(shift, torch.Tensor)):
        return img
    try:
        out = (1 + scale) * blk.img_norm1(img) + shift
    except RuntimeError:
        return img
    return out if out.shape == img.shape else img


def _vec(args: dict, dm) -> torch.Tensor:
    """The timestep projection handed to every block (TeaCache for Wan uses e0)."""
    return args["vec"]


def _own_modulated(args: dict, dm) -> torch.Tensor:
    """Models of this pack (DiT-XL/2 in nodes/dit_support.py) say where their modulated input is."""
    return dm.modulated_input_from_args(args)


def _kandinsky5_block(dm, key: Tuple[str, int], args: dict) -> dict:
    """Kandinsky 5's visual block, called as the host's own forward calls it when no patch is installed. The
    host's ``original_block`` for a dit patch (ComfyUI 0.33) calls ``block(x=..., context=...)``, keywords its
    block does not take, so any patch that runs it raises; this runs the same module with the same inputs."""
    blk = dm.visual_transformer_blocks[key[1]]
    return {
        "x": blk(
            args["x"],
            args["context"],
            args["time_embed"],
            freqs=args["freqs"],
            transformer_options=args.get("transformer_options") or {},
        )
    }


_DOUBLE = Stage("double_block", "double_blocks")
FAMILIES: Tuple[Family, ...] = (
    # FLUX.1, Flux 2 (global modulation), Kontext, LongCat-Image: the host's Flux class
    Family(
        "flux",
        ("Flux",),
        (_DOUBLE, Stage("single_block", "single_blocks", "txt_first")),
        _flux_modulated,
        TT.flux_table,
        title="Flux",
    ),
    Family(
        "chroma",
        ("Chroma",),
        (
            Stage("double_block", "double_blocks", skip_attr="skip_mmdit"),
            Stage("single_block", "single_blocks", "txt_first", skip_attr="skip_dit"),
        ),
    ),
    Family("wan", ("WanModel",), (Stage("double_block", "blocks"),), _vec, TT.wan_table),
    # HunyuanVideo 1.0 and 1.5 (1.5 has no single blocks); the single stream's order is read from img_slice
    Family(
        "hunyuan_video",
        ("HunyuanVideo",),
        (_DOUBLE, Stage("single_block", "single_blocks", "img_first")),
        title="HunyuanVideo",
    ),
    Family(
        "qwen_image",
        ("QwenImageTransformer2DModel",),
        (Stage("double_block", "transformer_blocks"),),
        title="Qwen-Image",
    ),
    # LTX-2 (audio + video): a subclass of LTXVModel whose blocks take and return a (video, audio) tuple
    Family("ltx2", ("LTXAVModel",), (Stage("double_block", "transformer_blocks"),), title="LTX-2"),
    Family("ltxv", ("LTXVModel",), (Stage("double_block", "transformer_blocks"),), title="LTX-Video"),
    Family(
        "kandinsky5",
        ("Kandinsky5",),
        (Stage("double_block", "visual_transformer_blocks"),),
        stream_key="x",
        title="Kandinsky 5",
        block_call=_kandinsky5_block,
    ),
    Family("sd3", ("MMDiT",), (Stage("double_block", "joint_blocks"),)),
    Family("dit", ("ComfyDiT",), (Stage("double_block", "blocks"),), _own_modulated),
    # the pack's FLUX-like bench model B (nodes/dit_support.py): Flux's layout, its own modulated input
    Family(
        "tcpade_fluxlike",
        ("ComfyFluxLike",),
        (_DOUBLE, Stage("single_block", "single_blocks", "txt_first")),
        _own_modulated,
        title="the pack's FLUX-like bench model",
    ),
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
    joint_tail: Optional[str]  # how the image part sits in the last block's output
    joints: Tuple[Optional[str], ...] = ()  # the same for each block of ``keys`` (its stage's); () : joint_tail

    def joint_at(self, n: int) -> Optional[str]:
        """How the image part sits in the output of block ``keys[n]`` (the last cached block, with trailing blocks)."""
        return self.joints[n] if self.joints else self.joint_tail


def resolve(diffusion_model) -> Tuple[Optional[Family], Optional[StackLayout]]:
    """The family of a diffusion model and its stack layout; (family or None, None) when the pack cannot
    patch it block by block (then it caches the whole model output)."""
    fam = find_family(diffusion_model)
    return fam, (layout_for(fam, diffusion_model) if fam is not None else None)


def layout_for(family: Family, diffusion_model) -> Optional[StackLayout]:
    keys: List[Tuple[str, int]] = []
    joints: List[Optional[str]] = []
    tail = None
    for st in family.stages:
        blocks = getattr(diffusion_model, st.attr, None)
        if blocks is None:
            continue
        skip = set(getattr(diffusion_model, st.skip_attr, None) or []) if st.skip_attr else set()
        stage_keys = [(st.kind, i) for i in range(len(blocks)) if i not in skip]
        if stage_keys:
            keys.extend(stage_keys)
            joints.extend(st.joint for _ in stage_keys)
            tail = st.joint
    if not keys:
        return None
    return StackLayout(family, tuple(keys), tail, tuple(joints))


def joint_order(tail: Optional[str], to: Optional[dict], stream_len: int, img_len: int) -> Optional[str]:
    """Where the image tokens sit in the last block's stream: the host's ``img_slice`` ([start, end] of the image
    tokens, set by newer hosts before the single blocks) when it covers exactly ``img_len`` tokens at one end of
    the stream, else the family's declared order ``tail``."""
    if tail is None:
        return None
    sl = (to or {}).get("img_slice")
    try:
        start, end = int(sl[0]), int(sl[1])
    except (TypeError, ValueError, IndexError):
        return tail
    if end - start != img_len:
        return tail
    if start == 0 and end <= stream_len:
        return "img_first"
    if end == stream_len and start > 0:
        return "txt_first"
    return tail


def image_part(stream: torch.Tensor, tail: Optional[str], img_len: int) -> torch.Tensor:
    """The image tokens of the stream at the end of the stack."""
    if tail == "txt_first":
        return stream[:, stream.shape[1] - img_len :]
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


# ---------------------------------------------------------------------------------- stream codecs


@dataclass(frozen=True)
class Packed:
    """How a tuple stream (LTX-2's ``(video, audio)``) was packed into one tensor: the parts' shapes."""

    shapes: Tuple[Tuple[int, ...], ...]


def pack_stream(x) -> Tuple[Optional[torch.Tensor], Optional[Packed], str]:
    """One tensor for the engine from a block stream: a tensor as it is (no packing), or a tuple/list of
    tensors with one batch size, dtype and device flattened per sample and joined, ``(batch, sum of sizes)``
    (the predictors are elementwise, the gates read norms, so both streams are cached together). Returns
    ``(tensor, packing or None, "")``, or ``(None, None, why)`` for anything else."""
    if isinstance(x, torch.Tensor):
        return x, None, ""
    if isinstance(x, (tuple, list)) and x and all(isinstance(p, torch.Tensor) for p in x):
        b, dt, dev = x[0].shape[0] if x[0].ndim else None, x[0].dtype, x[0].device
        if b is None or any(p.ndim == 0 or p.shape[0] != b or p.dtype != dt or p.device != dev for p in x):
            return None, None, "a tuple of tensors with different batch sizes, dtypes or devices"
        return torch.cat([p.reshape(b, -1) for p in x], dim=1), Packed(tuple(tuple(p.shape) for p in x)), ""
    return (
        None,
        None,
        f"a {type(x).__name__}" + (f" of {type(x[0]).__name__}" if isinstance(x, (tuple, list)) and x else ""),
    )


def unpack_stream(y: torch.Tensor, packed: Optional[Packed]):
    """The block stream for a packed tensor ``y`` (the inverse of :func:`pack_stream`; a tuple again)."""
    if packed is None:
        return y
    parts, at = [], 0
    for shape in packed.shapes:
        n = 1
        for d in shape[1:]:
            n *= d
        parts.append(y[:, at : at + n].reshape(shape))
        at += n
    return tuple(parts)
