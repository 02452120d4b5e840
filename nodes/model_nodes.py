"""Model nodes: DiT-XL/2 in ComfyUI, class labels, and the tiny bench models (no download, CPU in a minute).

* ``TCPade_DiTLoader``: an official facebookresearch/DiT checkpoint from ``models/diffusion_models``
  -> MODEL (EPS on DiT's DDPM schedule; decode with the SD VAE through the host's VAELoader).
* ``TCPade_ClassLabel``: an ImageNet (or bench) class -> positive CONDITIONING and the null class as
  negative CONDITIONING for CFG.
* ``TCPade_BenchModelLoader`` / ``TCPade_BenchLatent`` / ``TCPade_BenchDecode``: the shipped bench
  models of ``tcpade_core`` (A: DiT on 16x16 digits, B: FLUX-like rectified flow on 32x32 shapes,
  C: FLUX-like rectified flow on 32x32 textures), which work in pixel space, so they need no VAE.

The model code is in :mod:`.dit_support`; these nodes only load, validate and convert.
"""

from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from typing import List, Tuple

import torch

from comfy_api.latest import io

from ..tcpade_core.models import zoo
from ..tcpade_core.models.dit import num_heads_from_metadata, read_checkpoint
from . import dit_support as DS

CATEGORY = "tcpade/models"

# ------------------------------------------------------------------------------------- class labels

IMAGENET = "ImageNet (DiT-XL/2)"
DIGITS = "A: digits"
SHAPES = "B: shapes"
TEXTURES = "C: textures"
LABEL_SETS = [IMAGENET, DIGITS, SHAPES, TEXTURES]
_IMAGENET_JSON = os.path.join(os.path.dirname(os.path.realpath(__file__)), "imagenet_classes.json")


@lru_cache(maxsize=None)
def class_names(label_set: str) -> Tuple[str, ...]:
    """The class names of a label set, index = class index."""
    if label_set == IMAGENET:
        with open(_IMAGENET_JSON, encoding="utf-8") as f:
            names = json.load(f)
        if len(names) != 1000:
            raise RuntimeError(f"imagenet_classes.json holds {len(names)} names, expected 1000")
        return tuple(names)
    if label_set == DIGITS:
        return tuple(zoo.CLASS_NAMES["a"])
    if label_set == SHAPES:
        return tuple(zoo.CLASS_NAMES["b"])
    if label_set == TEXTURES:
        return tuple(zoo.CLASS_NAMES["c"])
    raise ValueError(f"label_set must be one of {', '.join(map(repr, LABEL_SETS))}; got {label_set!r}")


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def _listing(names, idxs) -> str:
    return ", ".join(f"{names[i]!r} ({i})" for i in idxs)


def resolve_class(label_set: str, class_index: int, class_name: str = "") -> int:
    """The class index for a name (case-insensitive; a number is an index) or, when the name is empty, the index.

    Raises ``ValueError`` naming the widget, with close matches for an unknown name.
    """
    names = class_names(label_set)
    n = len(names)
    text = (class_name or "").strip()
    if text.isdigit():
        class_index, text = int(text), ""
    if not text:
        if isinstance(class_index, bool) or not isinstance(class_index, int) or not 0 <= class_index < n:
            raise ValueError(f"class_index must be 0-{n - 1} for {label_set}; got {class_index!r}")
        return class_index
    key = _norm(text)
    hits = [i for i, nm in enumerate(names) if _norm(nm) == key]
    if len(hits) > 1:  # ImageNet has 'Cardigan' (the corgi, 264) and 'cardigan' (the sweater, 474)
        exact = [i for i in hits if names[i] == text]
        if len(exact) == 1:
            return exact[0]
        raise ValueError(
            f"class_name {text!r} is ambiguous in {label_set}: {_listing(names, hits)}. Type it with "
            f"the exact capitalisation or set class_index."
        )
    if hits:
        return hits[0]
    normed = [_norm(nm) for nm in names]
    close = [i for i, nm in enumerate(normed) if key in nm or (len(nm) >= 3 and nm in key)]
    for m in difflib.get_close_matches(key, normed, n=8, cutoff=0.6):
        close.extend(i for i, nm in enumerate(normed) if nm == m and i not in close)
    hint = f" Close matches: {_listing(names, close[:10])}." if close else " No close match."
    raise ValueError(
        f"class_name {text!r} is not one of the {n} {label_set} class names (matched case-insensitively)."
        f"{hint} Leave class_name empty to use class_index."
    )


def class_conditioning(label: int, num_classes: int) -> list:
    """A CONDITIONING carrying one class index (``num_classes`` = the null class).

    The tensor is a placeholder the model ignores (3-D so the host's cross-attention batching
    accepts it); the label rides in the dict and reaches the model as ``y``.
    """
    return [[torch.zeros(1, 1, 1), {DS.CLASS_KEY: int(label), DS.NUM_CLASSES_KEY: int(num_classes)}]]


class ClassLabel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_ClassLabel",
            display_name="Class Label (DiT / bench)",
            category=CATEGORY,
            description="Class conditioning for class-conditional models (DiT-XL/2, bench models A, B and C): the "
            "class as positive, the null class as negative (for CFG).",
            inputs=[
                io.Combo.Input(
                    "label_set",
                    display_name="label set",
                    options=LABEL_SETS,
                    default=IMAGENET,
                    tooltip="Which class list the index/name refers to. Must match the model: ImageNet "
                    "(1000 classes) for DiT-XL/2, digits 0-9 for bench model A, shapes for B, "
                    "textures for C.",
                ),
                io.Int.Input(
                    "class_index",
                    display_name="class index",
                    default=207,
                    min=0,
                    max=999,
                    tooltip="0-999 (ImageNet) or 0-9 (bench models). The class to generate; used when "
                    "class name is empty. 207 = golden retriever.",
                ),
                io.String.Input(
                    "class_name",
                    display_name="class name",
                    default="",
                    multiline=False,
                    tooltip="Optional. A class name, e.g. 'golden retriever', 'triangle (cool-on-light)', 'rings'; "
                    "matched case-insensitively, a number is an index. When set it replaces "
                    "class index. An unknown name fails with a list of close matches.",
                ),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="The chosen class."),
                io.Conditioning.Output(display_name="negative", tooltip="The null class (unconditional), for CFG."),
            ],
        )

    @classmethod
    def execute(cls, label_set, class_index, class_name) -> io.NodeOutput:
        n = len(class_names(label_set))
        idx = resolve_class(label_set, class_index, class_name)
        return io.NodeOutput(class_conditioning(idx, n), class_conditioning(n, n))


# ------------------------------------------------------------------------------------- DiT loader

WEIGHT_DTYPES = {"default": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _diffusion_model_files() -> List[str]:
    import folder_paths

    return folder_paths.get_filename_list("diffusion_models")


class DiTLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_DiTLoader",
            display_name="Load DiT (DiT-XL/2)",
            category=CATEGORY,
            description="Load an official facebookresearch/DiT checkpoint (DiT-XL-2-256x256 or -512x512, .pt or "
            ".safetensors) from models/diffusion_models. Sample with KSampler (EPS, DiT's DDPM schedule), "
            "condition with Class Label, decode with the SD VAE (VAELoader).",
            inputs=[
                io.Combo.Input(
                    "ckpt_name",
                    display_name="ckpt name",
                    options=_diffusion_model_files(),
                    tooltip="A DiT checkpoint in models/diffusion_models, e.g. DiT-XL-2-256x256.pt. The size "
                    "(256/512), depth, width and class count are read from the weights.",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    display_name="weight dtype",
                    options=list(WEIGHT_DTYPES),
                    default="default",
                    tooltip="default: the dtype ComfyUI picks for your device. fp32: exact, 2.7 GB for "
                    "DiT-XL/2. fp16 / bf16: half the memory; computed in fp32 where the device "
                    "cannot compute in them.",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The DiT as a ComfyUI model (EPS, 1000-step linear-beta DDPM schedule).")],
        )

    @classmethod
    def execute(cls, ckpt_name, weight_dtype) -> io.NodeOutput:
        import folder_paths

        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype must be one of {', '.join(map(repr, WEIGHT_DTYPES))}; got {weight_dtype!r}")
        path = folder_paths.get_full_path_or_raise("diffusion_models", ckpt_name)
        sd, meta = read_checkpoint(path)
        model = DS.dit_patcher(sd, WEIGHT_DTYPES[weight_dtype], num_heads_from_metadata(meta), name=ckpt_name)
        return io.NodeOutput(model)


# ------------------------------------------------------------------------------------- bench models

BENCH_A = "A: DiT digits 16x16"
BENCH_B = "B: FLUX-like shapes 32x32"
BENCH_C = "C: FLUX-like textures 32x32"
# choice -> (zoo name, latent channels, size, label set)
BENCH = {BENCH_A: ("a", 1, 16, DIGITS), BENCH_B: ("b", 3, 32, SHAPES), BENCH_C: ("c", 3, 32, TEXTURES)}


def _bench(choice: str):
    if choice not in BENCH:
        raise ValueError(f"model must be one of {', '.join(map(repr, BENCH))}; got {choice!r}")
    return BENCH[choice]


def _bench_input():
    return io.Combo.Input(
        "model",
        display_name="model",
        options=list(BENCH),
        default=BENCH_A,
        tooltip="A: DiT (EPS, DDPM) on 16x16 grey digits, label set 'A: digits'. B: FLUX-like "
        "rectified flow on 32x32 RGB shapes, label set 'B: shapes'. C: FLUX-like rectified "
        "flow on 32x32 RGB textures, label set 'C: textures'.",
    )


class BenchModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_BenchModelLoader",
            display_name="Load Bench Model (tiny, CPU)",
            category=CATEGORY,
            description="The pack's three tiny shipped models, to try the cache nodes on CPU in a minute with no "
            "download. They work in pixel space: use Bench Latent and Bench Decode instead of a VAE.",
            inputs=[_bench_input()],
            outputs=[
                io.Model.Output(tooltip="The bench model as a ComfyUI model (A: EPS DDPM, B and C: discrete flow).")
            ],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        key, ch, size, _ = _bench(model)
        engine = zoo.load_model(key)
        cfg = engine.config
        if (cfg.get("in_channels"), cfg.get("input_size")) != (ch, size):
            raise ValueError(
                f"the shipped weights of bench model {key} are {cfg.get('in_channels')}x"
                f"{cfg.get('input_size')}x{cfg.get('input_size')}, expected {ch}x{size}x{size}"
            )
        return io.NodeOutput(DS.bench_patcher(engine))


class BenchLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_BenchLatent",
            display_name="Bench Latent",
            category=CATEGORY,
            description="An empty latent of the bench model's (pixel-space) shape: A 1x16x16, B and C 3x32x32.",
            inputs=[
                _bench_input(),
                io.Int.Input(
                    "batch_size",
                    display_name="batch size",
                    default=4,
                    min=1,
                    max=256,
                    tooltip="1-256. Images per run. On CPU a batch of 16 of model A takes about a second per 20 steps.",
                ),
            ],
            outputs=[io.Latent.Output(tooltip="Zeros of shape (batch, channels, size, size).")],
        )

    @classmethod
    def execute(cls, model, batch_size) -> io.NodeOutput:
        _, ch, size, _ = _bench(model)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 256:
            raise ValueError(f"batch_size must be 1-256; got {batch_size!r}")
        import comfy.model_management as mm

        return io.NodeOutput({"samples": torch.zeros(batch_size, ch, size, size, device=mm.intermediate_device())})


def decode_pixels(samples: torch.Tensor) -> torch.Tensor:
    """Pixel-space latent (B, 1|3, H, W) in [-1, 1] -> IMAGE (B, H, W, 3) in [0, 1], float32."""
    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        raise ValueError(
            f"Bench Decode takes bench-model latents of shape (batch, 1 or 3, height, width); got "
            f"{tuple(samples.shape)}. Decode other models with their VAE."
        )
    img = ((samples.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    if img.shape[1] == 1:
        img = img.expand(-1, 3, -1, -1)
    return img.permute(0, 2, 3, 1).contiguous().cpu()


class BenchDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_BenchDecode",
            display_name="Bench Decode",
            category=CATEGORY,
            description="Turn a bench-model latent (pixels in [-1, 1]) into an IMAGE: [0, 1], grey to RGB.",
            inputs=[io.Latent.Input("samples", tooltip="The sampled latent of bench model A, B or C.")],
            outputs=[io.Image.Output(tooltip="The images (batch, height, width, 3) in [0, 1].")],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        return io.NodeOutput(decode_pixels(samples["samples"]))


NODE_LIST = [DiTLoader, ClassLabel, BenchModelLoader, BenchLatent, BenchDecode]
