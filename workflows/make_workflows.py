"""Generate the example workflows (ComfyUI UI format, the JSON the frontend loads and saves).

    python workflows/make_workflows.py                # (re)write workflows/*.json
    python workflows/make_workflows.py --check        # exit 1 if a JSON differs from what this script writes
    python workflows/make_workflows.py --thumbnails   # also render workflows/*.jpg in the real frontend

One script writes them all so that every workflow uses the same node layout, seeds and cache
settings. ``tests/test_workflows.py`` checks the files against the host's node schemas (node types,
socket names and types, widget order and values, links), against this script's output, and checks
the layout: no two nodes overlap and no wire crosses a group it does not belong to.

Templates. ComfyUI serves a pack's ``workflows/`` folder (also ``example_workflows/`` and a few other
names, ``app/custom_node_manager.py``) as templates: the frontend lists them under *Templates ->
Custom Nodes -> <the pack's folder>*, names each card by its file name (the title, and the
description with ``-`` and ``_`` as spaces: it reads no index and nothing inside the workflow) and
shows ``<file name>.jpg`` from the same folder as its thumbnail. So the file names are the titles,
numbered so that the CPU workflows come first (the host lists the files in directory order; the
pack's web extension sorts them by name), and ``--thumbnails`` renders every workflow in headless
Chromium through the real frontend and saves the square picture the card shows (``thumbnails.py``).

Layout. Rows are branches (reference first), columns are stages; a group frames each branch. The
inputs every branch shares (model, conditioning, latent, VAE) reach the rows through buses of native
reroutes in a corridor left of the groups (a bezier wire from one column to a node deep inside a
row would cut through the rows between), and the reference images reach the Compare nodes, which
stand right of the groups, through a second bus. Node sizes are at least what the frontend computes
for each node (``MIN_SIZE``, measured in the browser; a browser test keeps the table true), so the
frontend shows every node exactly at the saved position and size. Every sampler of a workflow uses
the same seed with ``control_after_generate = fixed``, so the branches differ only in the cache.
Model files are the names and folders of the Comfy-Org repackaged releases (what the core templates
use).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
PACK_CNR = "comfyui-tcpade"  # pyproject [project].name: the registry id of this pack
PACK_VER = "0.1.0"
CORE_CNR, CORE_VER = "comfy-core", "0.3.64"
REQUIRED = object()
CAG = "control_after_generate"  # the frontend's extra widget after a seed

# ------------------------------------------------------------------------------------ node specs
# Socket inputs (name, type) in definition order, outputs (name, type), widgets (name, default) in
# definition order. The test compares these with the host's schemas.


@dataclass(frozen=True)
class Spec:
    inputs: Sequence[Tuple[str, str]] = ()
    outputs: Sequence[Tuple[str, str]] = ()
    widgets: Sequence[Tuple[str, Any]] = ()
    ours: bool = False
    frontend_only: bool = False  # Note / MarkdownNote: registered by the frontend, not the server


WINDOW = (("start_percent", 0.0), ("end_percent", 1.0), ("cache_device", "same"))
SPECS: Dict[str, Spec] = {
    # core
    "UNETLoader": Spec((), (("MODEL", "MODEL"),), (("unet_name", REQUIRED), ("weight_dtype", "default"))),
    "DualCLIPLoader": Spec(
        (),
        (("CLIP", "CLIP"),),
        (("clip_name1", REQUIRED), ("clip_name2", REQUIRED), ("type", REQUIRED), ("device", "default")),
    ),
    "CLIPLoader": Spec((), (("CLIP", "CLIP"),), (("clip_name", REQUIRED), ("type", REQUIRED), ("device", "default"))),
    "VAELoader": Spec((), (("VAE", "VAE"),), (("vae_name", REQUIRED),)),
    "CLIPTextEncode": Spec((("clip", "CLIP"),), (("CONDITIONING", "CONDITIONING"),), (("text", REQUIRED),)),
    "FluxGuidance": Spec(
        (("conditioning", "CONDITIONING"),), (("CONDITIONING", "CONDITIONING"),), (("guidance", 3.5),)
    ),
    "ConditioningZeroOut": Spec((("conditioning", "CONDITIONING"),), (("CONDITIONING", "CONDITIONING"),)),
    "EmptySD3LatentImage": Spec((), (("LATENT", "LATENT"),), (("width", 1024), ("height", 1024), ("batch_size", 1))),
    "EmptyLatentImage": Spec((), (("LATENT", "LATENT"),), (("width", 512), ("height", 512), ("batch_size", 1))),
    "EmptyHunyuanLatentVideo": Spec(
        (), (("LATENT", "LATENT"),), (("width", 832), ("height", 480), ("length", 33), ("batch_size", 1))
    ),
    "ModelSamplingSD3": Spec((("model", "MODEL"),), (("MODEL", "MODEL"),), (("shift", REQUIRED),)),
    "KSampler": Spec(
        (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent_image", "LATENT")),
        (("LATENT", "LATENT"),),
        (
            ("seed", REQUIRED),
            (CAG, "fixed"),
            ("steps", 20),
            ("cfg", REQUIRED),
            ("sampler_name", REQUIRED),
            ("scheduler", REQUIRED),
            ("denoise", 1.0),
        ),
    ),
    "KSamplerAdvanced": Spec(
        (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent_image", "LATENT")),
        (("LATENT", "LATENT"),),
        (
            ("add_noise", REQUIRED),
            ("noise_seed", REQUIRED),
            (CAG, "fixed"),
            ("steps", 20),
            ("cfg", REQUIRED),
            ("sampler_name", REQUIRED),
            ("scheduler", REQUIRED),
            ("start_at_step", REQUIRED),
            ("end_at_step", REQUIRED),
            ("return_with_leftover_noise", REQUIRED),
        ),
    ),
    "VAEDecode": Spec((("samples", "LATENT"), ("vae", "VAE")), (("IMAGE", "IMAGE"),)),
    "SaveImage": Spec((("images", "IMAGE"),), (), (("filename_prefix", REQUIRED),)),
    "PreviewImage": Spec((("images", "IMAGE"),), ()),
    "SaveAnimatedWEBP": Spec(
        (("images", "IMAGE"),),
        (),
        (("filename_prefix", REQUIRED), ("fps", 16.0), ("lossless", False), ("quality", 90), ("method", "default")),
    ),
    "MarkdownNote": Spec(widgets=(("text", REQUIRED),), frontend_only=True),
    # this pack: cache nodes (from the methods' descriptors, below)
    "TCPade_Compare": Spec(
        (("test", "IMAGE"), ("reference", "IMAGE")),
        (("PSNR", "FLOAT"), ("SSIM", "FLOAT"), ("difference", "IMAGE")),
        (("amplify", 4.0),),
        ours=True,
    ),
    # this pack: models
    "TCPade_DiTLoader": Spec(
        (), (("MODEL", "MODEL"),), (("ckpt_name", REQUIRED), ("weight_dtype", "default")), ours=True
    ),
    "TCPade_ClassLabel": Spec(
        (),
        (("positive", "CONDITIONING"), ("negative", "CONDITIONING")),
        (("label_set", REQUIRED), ("class_index", REQUIRED), ("class_name", "")),
        ours=True,
    ),
    "TCPade_BenchModelLoader": Spec((), (("MODEL", "MODEL"),), (("model", REQUIRED),), ours=True),
    "TCPade_BenchLatent": Spec((), (("LATENT", "LATENT"),), (("model", REQUIRED), ("batch_size", REQUIRED)), ours=True),
    "TCPade_BenchDecode": Spec((("samples", "LATENT"),), (("IMAGE", "IMAGE"),), ours=True),
    "TCPade_PreviewGrid": Spec(
        (("images", "IMAGE"),), (("grid", "IMAGE"),), (("columns", 0), ("min_size", 256)), ours=True
    ),
}


# The pack's cache nodes, read from their methods' descriptors (tcpade_core/methods.py): node type, title, the
# method's label, and the widgets in definition order (the method's, the start/end window, the method's tail).
sys.path.insert(0, str(HERE.parent))
from tcpade_core.methods import METHODS as _METHODS  # noqa: E402

CACHE_KINDS = ("tcpade", "taylorseer", "teacache", "tracache")  # the branches of a comparison, in this order
for _m in (_METHODS[k] for k in CACHE_KINDS):
    SPECS[_m.node_id] = Spec(
        (("model", "MODEL"), ("calibration", "TCPADE_CALIBRATION")),
        (("MODEL", "MODEL"),),
        (*((w.name, w.default) for w in _m.widgets), *WINDOW, *((w.name, w.default) for w in _m.tail_widgets)),
        ours=True,
    )

# ------------------------------------------------------------------------------------ sizes and geometry
# The smallest size the frontend gives a node of each type (LGraphNode.computeSize() with the pack's web
# extension: its panels are part of the cache and Compare nodes), measured in Chromium with every frontend the
# pack supports, the larger per type: ComfyUI frontend 1.27.10 and 1.49.6 (whose fonts make some nodes 7-39 px
# wider; `python workflows/make_workflows.py --measure` prints what the frontend of $COMFYUI_PATH computes). The
# frontend enlarges a node saved smaller than this (or than its title), so every saved size here is at least
# this; tests/test_browser.py checks on each host that the table is at least what its frontend computes and that
# every shipped node is shown at exactly its saved size.
MIN_SIZE: Dict[str, Tuple[int, int]] = {
    "UNETLoader": (210, 82),
    "DualCLIPLoader": (210, 130),
    "CLIPLoader": (210, 106),
    "VAELoader": (210, 58),
    "CLIPTextEncode": (219, 88),
    "FluxGuidance": (210, 58),
    "ConditioningZeroOut": (205, 26),
    "EmptySD3LatentImage": (210, 106),
    "EmptyLatentImage": (210, 106),
    "EmptyHunyuanLatentVideo": (250, 130),
    "ModelSamplingSD3": (210, 58),
    "KSampler": (210, 262),
    "KSamplerAdvanced": (253, 334),
    "VAEDecode": (140, 46),
    "SaveImage": (210, 58),
    "PreviewImage": (140, 26),
    "SaveAnimatedWEBP": (210, 154),
    "MarkdownNote": (210, 88),
    "TCPade_TCPadeCache": (210, 590),
    "TCPade_TaylorSeer": (210, 446),
    "TCPade_TeaCache": (218, 422),
    "TCPade_TraCache": (210, 398),
    "TCPade_Compare": (288, 168),
    "TCPade_PreviewGrid": (277, 82),
    "TCPade_DiTLoader": (210, 82),
    "TCPade_ClassLabel": (210, 126),
    "TCPade_BenchModelLoader": (239, 58),
    "TCPade_BenchLatent": (210, 82),
    "TCPade_BenchDecode": (140, 26),
}
TITLE_H = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar sits above a node's pos
SLOT_H = 20  # LiteGraph.NODE_SLOT_HEIGHT
GROUP_PAD = 20  # group frame around its nodes
GROUP_HEAD = 50  # group title bar (font 24) above its nodes' title bars
GAP = 60  # between the columns of a row


def in_pos(node: "Node", slot: int) -> Tuple[float, float]:
    """Canvas position of a socket input (LGraphNode.getInputPos for a node's first, non-widget inputs)."""
    return node.pos[0] + 10.0, node.pos[1] + 14.0 + SLOT_H * slot


def out_pos(node: "Node", slot: int) -> Tuple[float, float]:
    """Canvas position of an output (LGraphNode.getOutputPos)."""
    return node.pos[0] + node.size[0] - 9.0, node.pos[1] + 14.0 + SLOT_H * slot


# ------------------------------------------------------------------------------------ graph builder


@dataclass
class Node:
    id: int
    type: str
    pos: Tuple[float, float]
    size: Tuple[float, float]
    widgets: List[Any]
    title: Optional[str] = None
    models: Optional[List[dict]] = None
    color: Optional[Tuple[str, str]] = None
    in_links: Dict[str, int] = field(default_factory=dict)
    out_links: Dict[int, List[int]] = field(default_factory=dict)

    @property
    def spec(self) -> Spec:
        return SPECS[self.type]

    def input_slot(self, name: str) -> int:
        return [n for n, _ in self.spec.inputs].index(name)

    def move(self, x: float, y: float) -> "Node":
        self.pos = (float(x), float(y))
        return self

    @property
    def w(self) -> float:
        return self.size[0]

    @property
    def h(self) -> float:
        return self.size[1]


class Workflow:
    def __init__(self, key: str, name: str):
        self.key = key  # stable: the workflow's id is derived from it
        self.name = name  # the file name (without .json): the template's title in the frontend
        self.nodes: List[Node] = []
        self.links: List[list] = []
        self.groups: List[dict] = []
        self.reroutes: List[dict] = []
        self.link_parent: Dict[int, int] = {}  # link id -> the last reroute it passes
        self.view: Tuple[float, float, float] = (0.6, 0.0, 0.0)  # scale, offset x, offset y

    def add(
        self, type_: str, pos=(0.0, 0.0), title: Optional[str] = None, models=None, size=None, color=None, **widgets
    ) -> Node:
        spec = SPECS[type_]
        names = [n for n, _ in spec.widgets]
        unknown = sorted(set(widgets) - set(names))
        if unknown:
            raise ValueError(f"{type_}: unknown widgets {unknown}; known {names}")
        values = []
        for name, default in spec.widgets:
            v = widgets.get(name, default)
            if v is REQUIRED:
                raise ValueError(f"{type_}: widget {name!r} needs a value")
            values.append(v)
        lo = MIN_SIZE[type_]
        w, h = size if size is not None else (320.0, lo[1])
        if w < lo[0] or h < lo[1]:
            raise ValueError(f"{type_}: size {w}x{h} is below the frontend's minimum {lo[0]}x{lo[1]}")
        node = Node(
            len(self.nodes) + 1,
            type_,
            (float(pos[0]), float(pos[1])),
            (float(w), float(h)),
            values,
            title,
            models,
            color,
        )
        self.nodes.append(node)
        return node

    def link(self, src: Node, out: str, dst: Node, inp: str) -> int:
        outs = [n for n, _ in src.spec.outputs]
        ins = [n for n, _ in dst.spec.inputs]
        if out not in outs or inp not in ins:
            raise ValueError(f"no {src.type}.{out} -> {dst.type}.{inp}; outputs {outs}, inputs {ins}")
        o_slot, i_slot = outs.index(out), ins.index(inp)
        o_type, i_type = src.spec.outputs[o_slot][1], dst.spec.inputs[i_slot][1]
        if o_type != i_type:
            raise ValueError(f"type mismatch {src.type}.{out} ({o_type}) -> {dst.type}.{inp} ({i_type})")
        if inp in dst.in_links:
            raise ValueError(f"{dst.type}.{inp} is already linked")
        lid = len(self.links) + 1
        self.links.append([lid, src.id, o_slot, dst.id, i_slot, o_type])
        dst.in_links[inp] = lid
        src.out_links.setdefault(o_slot, []).append(lid)
        return lid

    def bus(self, src: Node, out: str, x: float, targets: Sequence[Tuple[Node, str]]) -> None:
        """Link ``src.out`` to every target through native reroutes on the vertical line ``x``: one at the
        output's height (the wire from the source is level), then one per target at the height of the target's
        input (the last stretch of each wire is level); targets below hang on a chain going down, targets
        above on one going up."""
        y0 = out_pos(src, [n for n, _ in src.spec.outputs].index(out))[1]
        lanes = [(in_pos(n, n.input_slot(i))[1], n, i) for n, i in targets]
        down = sorted((t for t in lanes if t[0] >= y0), key=lambda t: t[0])
        up = sorted((t for t in lanes if t[0] < y0), key=lambda t: -t[0])
        head = self._reroute(x, y0, None)
        for chain in (down, up):
            ids = [head["id"]]
            for y, _, _ in chain:  # a target level with the output shares the first reroute
                ids.append(
                    ids[-1] if abs(y - y0) < 1.0 and ids[-1] == head["id"] else self._reroute(x, y, ids[-1])["id"]
                )
            for k, (_, node, inp) in enumerate(chain):
                lid = self.link(src, out, node, inp)
                self.link_parent[lid] = ids[k + 1]
                for rid in dict.fromkeys(ids[: k + 2]):
                    self.reroutes[rid - 1]["linkIds"].append(lid)

    def _reroute(self, x: float, y: float, parent: Optional[int]) -> dict:
        r: Dict[str, Any] = {"id": len(self.reroutes) + 1, "pos": [float(x), float(y)], "linkIds": []}
        if parent is not None:
            r["parentId"] = parent
        self.reroutes.append(r)
        return r

    def group(
        self,
        title: str,
        nodes: Sequence[Node],
        color: str = "#3f789e",
        x0: Optional[float] = None,
        x1: Optional[float] = None,
        pad: float = GROUP_PAD,
    ) -> dict:
        gx0 = min(n.pos[0] for n in nodes) - pad if x0 is None else x0
        gy0 = min(n.pos[1] for n in nodes) - pad - GROUP_HEAD
        gx1 = max(n.pos[0] + n.w for n in nodes) + pad if x1 is None else x1
        gy1 = max(n.pos[1] + n.h for n in nodes) + pad
        g = {
            "id": len(self.groups) + 1,
            "title": title,
            "bounding": [gx0, gy0, gx1 - gx0, gy1 - gy0],
            "color": color,
            "font_size": 24,
            "flags": {},
        }
        self.groups.append(g)
        return g

    def _order(self) -> Dict[int, int]:
        """Topological execution order (the frontend's ``order`` field)."""
        deps = {n.id: set() for n in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            deps[dst].add(src)
        order, done = {}, set()
        while len(done) < len(self.nodes):
            ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
            for i in ready:
                order[i] = len(order)
                done.add(i)
        return order

    def to_json(self) -> dict:
        order = self._order()
        nodes = []
        for n in self.nodes:
            s = n.spec
            props: Dict[str, Any] = {} if s.frontend_only else {"Node name for S&R": n.type}
            if not s.frontend_only:
                props.update({"cnr_id": PACK_CNR, "ver": PACK_VER} if s.ours else {"cnr_id": CORE_CNR, "ver": CORE_VER})
            if n.models:
                props["models"] = n.models
            d: Dict[str, Any] = {
                "id": n.id,
                "type": n.type,
                "pos": list(n.pos),
                "size": list(n.size),
                "flags": {},
                "order": order[n.id],
                "mode": 0,
                "inputs": [{"name": name, "type": typ, "link": n.in_links.get(name)} for name, typ in s.inputs],
                "outputs": [
                    {"name": name, "type": typ, "links": n.out_links.get(i, [])}
                    for i, (name, typ) in enumerate(s.outputs)
                ],
                "properties": props,
                "widgets_values": list(n.widgets),
            }
            if n.title:
                d["title"] = n.title
            if n.color:
                d["color"], d["bgcolor"] = n.color
            nodes.append(d)
        scale, ox, oy = self.view
        extra: Dict[str, Any] = {"ds": {"scale": scale, "offset": [ox, oy]}}
        if self.reroutes:
            extra["reroutes"] = [dict(r, linkIds=sorted(r["linkIds"])) for r in self.reroutes]
            extra["linkExtensions"] = [{"id": lid, "parentId": rid} for lid, rid in sorted(self.link_parent.items())]
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "tcpade/workflows/" + self.key)),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes,
            "links": self.links,
            "groups": self.groups,
            "config": {},
            "extra": extra,
            "version": 0.4,
        }


# ------------------------------------------------------------------------------------ shared pieces

HF = "https://huggingface.co"
M = {
    "flux1-dev.safetensors": (f"{HF}/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    "clip_l.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": (
        f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
        "text_encoders",
    ),
    "ae.safetensors": (
        f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
        "vae",
    ),
    "wan2.1_t2v_1.3B_fp16.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
        f"diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
        "diffusion_models",
    ),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
        f"text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "text_encoders",
    ),
    "wan_2.1_vae.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/wan_2.1_vae.safetensors",
        "vae",
    ),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/"
        f"wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
        "diffusion_models",
    ),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/"
        f"wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
        "diffusion_models",
    ),
    "DiT-XL-2-256x256.pt": ("https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt", "diffusion_models"),
    "vae-ft-ema-560000-ema-pruned.safetensors": (
        f"{HF}/stabilityai/sd-vae-ft-ema-original/resolve/main/vae-ft-ema-560000-ema-pruned.safetensors",
        "vae",
    ),
}


def models(*names: str) -> List[dict]:
    return [{"name": n, "url": M[n][0], "directory": M[n][1]} for n in names]


def model_tree(*names: str) -> str:
    by_dir: Dict[str, List[str]] = {}
    for n in names:
        by_dir.setdefault(M[n][1], []).append(n)
    lines = ["```", "ComfyUI/models/"]
    for d, files in by_dir.items():
        lines.append(f"├── {d}/")
        lines.extend(f"│   └── {f}" for f in files)
    lines.append("```")
    links = [f"- [{n}]({M[n][0]}) → `models/{M[n][1]}/`" for n in names]
    return "\n".join(links + [""] + lines)


SEED = 42
BRANCH_COLORS = {
    "ref": "#444",
    "tcpade": "#a1309b",
    "taylorseer": "#3f789e",
    "teacache": "#2a7a6e",
    "tracache": "#8a6d2e",
    "inputs": "#3a3a3a",
    "compare": "#3a3a3a",
}
COLOR_PAIRS = {  # node color / bgcolor, per branch (frontend palette "purple", "blue", "cyan", "brown")
    "tcpade": ("#323", "#535"),
    "taylorseer": ("#223", "#335"),
    "teacache": ("#233", "#355"),
    "tracache": ("#332922", "#593930"),
}
CACHE_TYPES = {k: _METHODS[k].node_id for k in CACHE_KINDS}
CACHE_TITLES = {k: _METHODS[k].title for k in CACHE_KINDS}
# A row's name in titles (KSampler, preview / save, Compare, group): the method only, never a setting, so that a
# title stays true when a user changes the row's preset or target.
LABELS = {k: _METHODS[k].label for k in CACHE_KINDS}

# One speed target for every cached row of every workflow, so the rows compare at the same speed (the same
# number of computed steps). TC-Padé takes it from its preset (a preset is a speed target: nodes/cache_nodes.py
# PRESETS, mirrored in PRESET_TARGETS and checked against it by tests/test_workflows.py) and its target widget
# shows the preset's value, as the web extension sets it; the other nodes take it from target_speedup. Every row
# gets it in cache_node(), which refuses a row that sets its own.
PRESET_TARGETS = {"slow (2x)": 2.0, "fast (2.8x)": 2.8}
TARGET_PRESET = "slow (2x)"
TARGET = PRESET_TARGETS[TARGET_PRESET]
SHARED_TARGET = {
    "tcpade": dict(preset=TARGET_PRESET, target_speedup=TARGET),
    "taylorseer": dict(target_speedup=TARGET),
    "teacache": dict(target_speedup=TARGET),
    "tracache": dict(target_speedup=TARGET),
}


NUMBERS = {2: "two", 3: "three", 4: "four"}


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def note_head(title: str, kinds: Sequence[str]) -> str:
    """The part of a comparison's note every workflow shares: the rows, the speed target they share (said from
    the rows the workflow has, so the note names no row it lacks) and which method to use."""
    steps = 20
    computed = int(steps / TARGET + 0.5)
    signals = [s for k, s in (("tcpade", "TC-Padé's θ"), ("teacache", "TeaCache's δ")) if k in kinds]
    unused = [
        s for k, s in (("taylorseer", "TaylorSeer's *interval N*"), ("tracache", "TraCache's *stride k*")) if k in kinds
    ]
    return (
        f"# TC-Padé: {title}\n\n"
        "Same prompt, seed and sampler in every row; only the cache differs. The top row computes every step "
        "(the reference). Each **Compare to Reference (PSNR / SSIM)** node (right) scores a cached row against "
        "it: PSNR / SSIM, the amplified difference and, with the pack's web extension, each row's sampling time "
        "and speed-up. After a run each cache node shows which steps it computed, its gate signal and any "
        "warning.\n\n"
        f"**One speed for every row:** the {NUMBERS[len(kinds)]} cached rows ({_and(LABELS[k] for k in kinds)}) "
        f"share one speed target, **{TARGET:g}x**: each computes {computed} of the {steps} steps. TC-Padé takes it from its "
        f"*preset* (*{TARGET_PRESET}*), the others from *target speed-up* {TARGET:g}. The target sets how many steps "
        "compute and spaces them evenly (placement *auto*: below 2x on a flow model run for 20 steps or more "
        "they go denser at the start)"
        + (f"; a method's own signal ({_and(signals)}) may move a compute earlier" if signals else "")
        + ". "
        + (f"{_and(unused)} {'are' if len(unused) > 1 else 'is'} used only at target 0. " if unused else "")
        + "To compare at another speed, give every row the same new target (TC-Padé: preset *fast (2.8x)*, or "
        "*custom* and its *target speed-up*).\n\n"
        "Change the seed in **every** sampler (they are set to *fixed*). The first sampler to run also loads "
        "the model; the timing leaves that out.\n\n"
        "**Which to use:** in the pack's own benchmark (README, *Which node to use*) **TaylorSeer Cache** with a "
        "*target speed-up* (2 for quality, 2.8 for speed) measured best at the same speed, on the models it was "
        "tuned on and on held-out ones. TC-Padé's row is here so you can compare.\n\n"
    )


# Row geometry, relative to the KSampler's position (y) in a row:
RAISE = 110  # the decoder and the Compare node stand this much higher: the VAE wire to the decoder runs above
#               the KSampler and the wire to Compare above the preview / save node
DROP = 140  # the cache node stands this much lower: the conditioning and latent wires to the KSampler's
#               inputs run above it
BUS_STEP = 40  # between the vertical lines of the buses
BUS_ROOM = 170  # from the last bus to the groups: a wire leaving a bus dips before it levels out


def cache_node(wf: Workflow, kind: str, **settings) -> Node:
    """A cache node at the speed target every row shares (SHARED_TARGET); ``settings``: its other widgets."""
    own = sorted(set(settings) & {"preset", "target_speedup"})
    if own:
        raise ValueError(f"{kind}: every row runs at the shared target (SHARED_TARGET); it sets {own} itself")
    return wf.add(
        CACHE_TYPES[kind],
        title=CACHE_TITLES[kind],
        color=COLOR_PAIRS[kind],
        size=(320, MIN_SIZE[CACHE_TYPES[kind]][1]),
        **SHARED_TARGET[kind],
        **settings,
    )


def stack(nodes: Sequence[Node], x: float, y: float, gap: float = 50.0) -> float:
    """Place nodes in a column from y down (title bars included); returns the bottom of the last one."""
    for n in nodes:
        n.move(x, y + TITLE_H)
        y = n.pos[1] + n.h + gap
    return y - gap


def inputs_group(wf: Workflow, nodes: Sequence[Node]) -> None:
    wf.group("inputs (every row)", nodes, color=BRANCH_COLORS["inputs"])


@dataclass
class Sources:
    model: Tuple[Node, str]
    positive: Tuple[Node, str]
    negative: Tuple[Node, str]
    latent: Tuple[Node, str]
    vae: Optional[Node] = None
    right: float = 320.0  # right edge of the source column


def branch_rows(
    wf: Workflow,
    src: Sources,
    *,
    decoder: str,
    output,
    sampler: dict,
    branches: List[tuple],
    compare_amplify: float = 4.0,
    top: float = 0.0,
) -> None:
    """The reference row and one row per (kind, settings): cache -> KSampler -> decoder -> output, a Compare
    node per cached row against the reference; buses bring the shared inputs (see the module doc). Every cached
    row runs at the shared speed target (cache_node); its titles name the method only (LABELS)."""
    rows = []
    for kind, label, settings in [("ref", "no cache (reference)", {})] + [(k, LABELS[k], s) for k, s in branches]:
        r = {"kind": kind, "label": label}
        r["cache"] = cache_node(wf, kind, **settings) if kind != "ref" else None
        r["ks"] = wf.add("KSampler", title=f"KSampler · {label}", size=(320, MIN_SIZE["KSampler"][1]), **sampler)
        r["dec"] = wf.add(decoder, size=(200, MIN_SIZE[decoder][1]))
        r["out"] = output(kind, label)
        r["cmp"] = (
            None
            if kind == "ref"
            else wf.add(
                "TCPade_Compare",
                title=f"Compare · {label} vs. reference",
                size=(440, 398),
                amplify=compare_amplify,
                color=COLOR_PAIRS[kind],
            )
        )
        rows.append(r)
    n_bus = 5 if src.vae is not None else 4
    xg = src.right + GAP + BUS_STEP * (n_bus - 1) + BUS_ROOM  # left edge of every row's group
    xc = xg + GROUP_PAD
    xk = xc + 320 + GAP
    xd = xk + 320 + GAP
    xs = xd + 200 + GAP
    gx1 = xs + max(r["out"].w for r in rows) + GROUP_PAD  # right edge of every row's group
    xb = gx1 + 80  # the reference-image bus
    xcmp = xb + BUS_ROOM
    y = top + GROUP_HEAD + GROUP_PAD + TITLE_H + RAISE  # the first KSampler
    for r in rows:
        if r["cache"] is not None:
            r["cache"].move(xc, y + DROP)
        r["ks"].move(xk, y)
        r["dec"].move(xd, y - RAISE)
        r["out"].move(xs, y)
        if r["cmp"] is not None:
            r["cmp"].move(xcmp, y - RAISE)
        r["y"] = y
        members = [n for n in (r["cache"], r["ks"], r["dec"], r["out"]) if n is not None]
        bottom = max(
            max(n.pos[1] + n.h for n in members) + GROUP_PAD,
            (r["cmp"].pos[1] + r["cmp"].h) if r["cmp"] is not None else -1e9,
        )
        r["group"] = wf.group(r["label"], members, color=BRANCH_COLORS[r["kind"]], x0=xg, x1=gx1)
        y = bottom + 60 + GROUP_HEAD + GROUP_PAD + TITLE_H + RAISE
    ref = rows[0]
    # the row's own wires
    for r in rows:
        if r["cache"] is not None:
            wf.link(r["cache"], "MODEL", r["ks"], "model")
        wf.link(r["ks"], "LATENT", r["dec"], "samples")
        wf.link(r["dec"], "IMAGE", r["out"], "images")
        if r["cmp"] is not None:
            wf.link(r["dec"], "IMAGE", r["cmp"], "test")
    # the shared inputs, each on its bus
    x = src.right + GAP
    wf.bus(src.model[0], src.model[1], x, [(r["cache"] or r["ks"], "model") for r in rows])
    for s, inp in ((src.positive, "positive"), (src.negative, "negative"), (src.latent, "latent_image")):
        x += BUS_STEP
        wf.bus(s[0], s[1], x, [(r["ks"], inp) for r in rows])
    if src.vae is not None:
        x += BUS_STEP
        wf.bus(src.vae, "VAE", x, [(r["dec"], "vae") for r in rows])
    wf.bus(ref["dec"], "IMAGE", xb, [(r["cmp"], "reference") for r in rows[1:]])
    wf.group("compare with the reference", [r["cmp"] for r in rows[1:]], color=BRANCH_COLORS["compare"])


# ------------------------------------------------------------------------------------ image workflows


def save_image(wf: Workflow, prefix: str, size=(400, 460)):
    def output(kind: str, label: str) -> Node:
        return wf.add("SaveImage", title=f"Save · {label}", size=size, filename_prefix=f"tcpade/{prefix}_{kind}")

    return output


def note(wf: Workflow, text: str, right: float = -60.0, top: float = 0.0, size=(440, 600)) -> Node:
    """The workflow's note, left of the inputs."""
    return wf.add("MarkdownNote", pos=(right - size[0], top + TITLE_H), size=size, text=text)


def flux_dev() -> Workflow:
    wf = Workflow("tcpade_flux1_dev_20steps", NAMES["flux"])
    files = ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")
    branches = [
        ("tcpade", {}),
        ("taylorseer", dict(interval=5, order=2, first_enhance=3)),
        ("teacache", dict(threshold=0.6)),
    ]
    note(
        wf,
        note_head("FLUX.1-dev, 20 steps", [k for k, _ in branches])
        + "1024x1024, Euler, guidance 3.5. The methods' other settings are the TC-Padé paper's FLUX comparison: "
        "TaylorSeer O = 2, first enhance 3 (N = 5 at target 0), TeaCache δ = 0.6 (FLUX "
        "coefficients, picked automatically).\n\n" + model_tree(*files),
        size=(440, 900),
    )
    unet = wf.add("UNETLoader", models=models(files[0]), size=(320, 82), unet_name=files[0], weight_dtype="default")
    vae = wf.add("VAELoader", models=models(files[3]), size=(320, 58), vae_name=files[3])
    clip = wf.add(
        "DualCLIPLoader",
        models=models(files[1], files[2]),
        size=(320, 130),
        clip_name1=files[1],
        clip_name2=files[2],
        type="flux",
        device="default",
    )
    text = wf.add(
        "CLIPTextEncode",
        title="Prompt",
        size=(400, 200),
        text="a red fox sitting in a snowy birch forest at sunrise, detailed fur, soft golden light, "
        "shallow depth of field, photograph",
    )
    guid = wf.add("FluxGuidance", size=(320, 58), guidance=3.5)
    zero = wf.add("ConditioningZeroOut", size=(320, 26))
    latent = wf.add("EmptySD3LatentImage", size=(320, 106), width=1024, height=1024, batch_size=1)
    stack([unet, vae, clip], 0, 0)
    text.move(380, clip.pos[1])
    guid.move(840, clip.pos[1])
    zero.move(840, guid.pos[1] + guid.h + 80)
    latent.move(0, text.pos[1] + text.h + 80)
    wf.link(clip, "CLIP", text, "clip")
    wf.link(text, "CONDITIONING", guid, "conditioning")
    wf.link(text, "CONDITIONING", zero, "conditioning")
    inputs_group(wf, [unet, vae, clip, text, guid, zero, latent])
    branch_rows(
        wf,
        Sources(
            (unet, "MODEL"), (guid, "CONDITIONING"), (zero, "CONDITIONING"), (latent, "LATENT"), vae=vae, right=1160
        ),
        decoder="VAEDecode",
        output=save_image(wf, "flux"),
        sampler=dict(seed=SEED, steps=20, cfg=1.0, sampler_name="euler", scheduler="simple"),
        branches=branches,
    )
    return wf


def dit_xl2() -> Workflow:
    wf = Workflow("tcpade_dit_xl2_256_20steps", NAMES["dit"])
    ckpt, vae_file = "DiT-XL-2-256x256.pt", "vae-ft-ema-560000-ema-pruned.safetensors"
    branches = [
        ("tcpade", {}),
        ("taylorseer", dict(interval=3, order=2, first_enhance=2)),
        ("teacache", dict(threshold=0.3)),
    ]
    note(
        wf,
        note_head("DiT-XL/2 256x256 (ImageNet class-conditional), 20 steps", [k for k, _ in branches])
        + "ComfyUI has no DiT loader: **Load DiT (DiT-XL/2)** (this pack) reads the official checkpoint; **Class "
        "Label (DiT / bench)** gives the ImageNet class (207 = golden retriever) and the null class for CFG 4.0. "
        "DDIM, 20 steps. The methods' other settings are the paper's DiT comparison: TaylorSeer O = 2, first "
        "enhance 2 (N = 3 at target 0); TeaCache has no published DiT coefficients (raw relative "
        "L1, δ = 0.3; its node says so after a run).\n\n"
        f"**Download the checkpoint by hand.** ComfyUI's missing-models dialog downloads only from Hugging Face "
        f"and Civitai, so it refuses {ckpt}, which is published with the facebookresearch/DiT release: download "
        f"{M[ckpt][0]} and put it into `ComfyUI/models/{M[ckpt][1]}/`, then refresh (press R) so **Load DiT "
        f"(DiT-XL/2)** lists it. The dialog can download the SD VAE.\n\n" + model_tree(ckpt, vae_file),
        size=(440, 940),
    )
    dit = wf.add("TCPade_DiTLoader", models=models(ckpt), size=(320, 82), ckpt_name=ckpt, weight_dtype="default")
    vae = wf.add("VAELoader", models=models(vae_file), size=(320, 58), vae_name=vae_file)
    label = wf.add(
        "TCPade_ClassLabel", size=(320, 126), label_set="ImageNet (DiT-XL/2)", class_index=207, class_name=""
    )
    latent = wf.add("EmptyLatentImage", size=(320, 106), width=256, height=256, batch_size=4)
    stack([dit, vae, label, latent], 0, 0)
    inputs_group(wf, [dit, vae, label, latent])
    branch_rows(
        wf,
        Sources((dit, "MODEL"), (label, "positive"), (label, "negative"), (latent, "LATENT"), vae=vae),
        decoder="VAEDecode",
        output=save_image(wf, "dit"),
        sampler=dict(seed=SEED, steps=20, cfg=4.0, sampler_name="ddim", scheduler="ddim_uniform"),
        branches=branches,
    )
    return wf


# ------------------------------------------------------------------------------------ video workflows

WAN_NEGATIVE = (
    "blurry, low quality, worst quality, static, still frame, distorted, deformed, jpeg artifacts, "
    "watermark, text, subtitles"
)


def wan_inputs(
    wf: Workflow,
    experts: Sequence[Tuple[Optional[str], Optional[str], str]],
    te_f: str,
    vae_f: str,
    prompt: str,
    size: Tuple[int, int, int],
):
    """Loaders (one per expert (loader title, shift title, file), each with its shift), the text encoder with
    both prompts, VAE and latent: the loaders in one column, shifts and prompts right of them."""
    loaders, shifts = [], []
    for title, shift_title, f in experts:
        loaders.append(wf.add("UNETLoader", title=title, models=models(f), size=(320, 82), unet_name=f))
        shifts.append(wf.add("ModelSamplingSD3", title=shift_title, size=(320, 58), shift=8.0))
    vae = wf.add("VAELoader", models=models(vae_f), size=(320, 58), vae_name=vae_f)
    clip = wf.add("CLIPLoader", models=models(te_f), size=(320, 106), clip_name=te_f, type="wan", device="default")
    pos = wf.add("CLIPTextEncode", title="Prompt", size=(400, 200), text=prompt)
    neg = wf.add("CLIPTextEncode", title="Negative prompt", size=(400, 200), text=WAN_NEGATIVE)
    w, h, length = size
    latent = wf.add("EmptyHunyuanLatentVideo", size=(320, 130), width=w, height=h, length=length, batch_size=1)
    stack([*loaders, vae, clip], 0, 0)
    for l, s in zip(loaders, shifts):
        s.move(380, l.pos[1])
        wf.link(l, "MODEL", s, "model")
    pos.move(380, clip.pos[1])
    neg.move(380, pos.pos[1] + pos.h + 80)
    latent.move(0, neg.pos[1] + neg.h + 80)
    wf.link(clip, "CLIP", pos, "clip")
    wf.link(clip, "CLIP", neg, "clip")
    inputs_group(wf, [*loaders, *shifts, vae, clip, pos, neg, latent])
    return shifts, pos, neg, vae, latent


def save_webp(wf: Workflow, prefix: str, size):
    def output(kind: str, label: str) -> Node:
        return wf.add(
            "SaveAnimatedWEBP",
            title=f"Save · {label}",
            size=size,
            filename_prefix=f"tcpade/{prefix}_{kind}",
            fps=16.0,
            lossless=False,
            quality=90,
            method="default",
        )

    return output


def wan21_1_3b() -> Workflow:
    wf = Workflow("tcpade_wan2.1_t2v_1.3B_20steps", NAMES["wan21"])
    files = ("wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors")
    branches = [
        ("tcpade", {}),
        ("taylorseer", dict(interval=4, order=1, first_enhance=1)),
        ("teacache", dict(threshold=0.08)),
    ]
    note(
        wf,
        note_head("Wan 2.1 text-to-video 1.3B, 20 steps", [k for k, _ in branches])
        + "832x480, 33 frames, UniPC, CFG 6, shift 8. The methods' other settings are the paper's Wan comparison: "
        "TaylorSeer O = 1, first enhance 1 (N = 4 at target 0), TeaCache δ = 0.08 (Wan 1.3B "
        "coefficients, picked automatically). The Compare node scores the mean over frames.\n\n" + model_tree(*files),
        size=(440, 880),
    )
    (shift,), pos, neg, vae, latent = wan_inputs(
        wf,
        [(None, None, files[0])],
        files[1],
        files[2],
        "a paper boat drifting down a rain-filled street gutter at night, neon reflections rippling on the water, "
        "slow tracking shot",
        (832, 480, 33),
    )
    branch_rows(
        wf,
        Sources((shift, "MODEL"), (pos, "CONDITIONING"), (neg, "CONDITIONING"), (latent, "LATENT"), vae=vae, right=780),
        decoder="VAEDecode",
        output=save_webp(wf, "wan21", (400, 400)),
        sampler=dict(seed=SEED, steps=20, cfg=6.0, sampler_name="uni_pc", scheduler="simple"),
        branches=branches,
    )
    return wf


def wan22_note(hi_f: str, lo_f: str, te_f: str, vae_f: str, label: str) -> str:
    """The Wan 2.2 workflow's note: its two rows, one cache per expert at the shared target, how to try another."""
    half = int(10 / TARGET + 0.5)
    return (
        "# TC-Padé: Wan 2.2 text-to-video 14B, two experts, 20 steps\n\n"
        "Two rows, the same prompt, seed and samplers; only the cache differs. The top row computes every step "
        "(the reference). The row below it caches: **" + label + "**. The **Compare to Reference (PSNR / SSIM)** "
        "node (right) scores it against the reference: PSNR / SSIM (the mean over frames), the amplified "
        "difference and, with the pack's web extension, each row's sampling time and speed-up. After a run each "
        "cache node shows which steps it computed, its gate signal and any warning.\n\n"
        "The high-noise expert samples steps 0-10, the low-noise expert steps 10-20 (two KSamplerAdvanced). "
        "Each expert gets its own **TC-Padé Cache** node: each sampler run starts a fresh cache, so nothing "
        "computed by one expert is ever used by the other, and the first step after the switch is computed in "
        f"full. Both nodes run at the same speed target, **{TARGET:g}x** (preset *{TARGET_PRESET}*): each expert "
        f"computes {half} of its 10 steps. 640x640, 81 frames, Euler, CFG 3.5, shift 8.\n\n"
        "Change the seed in **every** sampler (they are set to *fixed*). The first sampler to run also loads "
        "the model; the timing leaves that out.\n\n"
        "**Which to use:** in the pack's own benchmark (README, *Which node to use*) **TaylorSeer Cache** with a "
        "*target speed-up* (2 for quality, 2.8 for speed) measured best at the same speed, on the models it was "
        "tuned on and on held-out ones. This workflow has no TaylorSeer row (each row of this model is another "
        "full video run): to try it, put a **TaylorSeer Cache** node with *target speed-up* "
        f"{TARGET:g} in place of each TC-Padé Cache node.\n\n" + model_tree(hi_f, lo_f, te_f, vae_f)
    )


@dataclass
class Wan22Columns:
    """The x positions of the Wan 2.2 workflow's rows, left to right."""

    xg: float  # left edge of every row's group
    xc: float  # the caches
    xk1: float  # the high-noise sampler
    xk2: float  # the low-noise sampler
    xd: float  # the decoder
    xs: float  # the save node
    gx1: float  # right edge of every row's group
    xb: float  # the reference-image bus
    xcmp: float  # the Compare node

    @classmethod
    def right_of(cls, right: float, n_bus: int) -> "Wan22Columns":
        """The columns right of the source column (right edge ``right``) and its ``n_bus`` buses."""
        xg = right + GAP + BUS_STEP * (n_bus - 1) + BUS_ROOM
        xc, xk1 = xg + GROUP_PAD, xg + GROUP_PAD + 320 + GAP
        xk2 = xk1 + 320 + 140
        xd = xk2 + 320 + GAP
        xs = xd + 200 + GAP
        gx1 = xs + 400 + GROUP_PAD
        xb = gx1 + 80
        return cls(xg=xg, xc=xc, xk1=xk1, xk2=xk2, xd=xd, xs=xs, gx1=gx1, xb=xb, xcmp=xb + BUS_ROOM)


def wan22_expert_caches(wf: Workflow, k1: Node, k2: Node, y: float, cols: Wan22Columns) -> Tuple[Node, Node]:
    """A TC-Padé cache on each expert of a row: the high-noise one at the row's top, the second stage (the low-noise
    sampler ``k2`` and its cache) below it, so that every wire into it runs below the first stage."""
    c_hi = cache_node(wf, "tcpade")
    c_lo = cache_node(wf, "tcpade")
    c_hi.title, c_lo.title = "TC-Padé Cache (high-noise expert)", "TC-Padé Cache (low-noise expert)"
    c_hi.move(cols.xc, y + DROP)
    y2 = c_hi.pos[1] + c_hi.h + 140  # the second stage: below the first one's cache
    k2.move(cols.xk2, y2)
    c_lo.move(cols.xc, y2 + DROP)
    wf.link(c_hi, "MODEL", k1, "model")
    wf.link(c_lo, "MODEL", k2, "model")
    return c_hi, c_lo


def wan22_row(
    wf: Workflow, kind: str, label: str, y: float, cols: Wan22Columns, common: dict
) -> Tuple[Dict[str, Any], float]:
    """One row (its first sampler at ``y``): high-noise sampler -> low-noise sampler -> decoder -> save, a cache on
    each expert and a Compare node unless it is the reference; the row's nodes by role (``m_hi``, ``m_lo``: what
    takes each expert's model) and the y of the next row's first sampler."""
    r: Dict[str, Any] = {"kind": kind, "label": label}
    k1 = wf.add(
        "KSamplerAdvanced",
        title="KSamplerAdvanced · high noise 0-10",
        size=(320, 334),
        add_noise="enable",
        start_at_step=0,
        end_at_step=10,
        return_with_leftover_noise="enable",
        **common,
    )
    k2 = wf.add(
        "KSamplerAdvanced",
        title="KSamplerAdvanced · low noise 10-20",
        size=(320, 334),
        add_noise="disable",
        start_at_step=10,
        end_at_step=10000,
        return_with_leftover_noise="disable",
        **common,
    )
    dec = wf.add("VAEDecode", size=(200, 46))
    out = save_webp(wf, "wan22", (400, 540))(kind, label)
    k1.move(cols.xk1, y)
    members = [k1, k2, dec, out]
    if kind == "ref":
        k2.move(cols.xk2, y - 130)  # its inputs run above the first sampler
        r["m_hi"], r["m_lo"] = k1, k2
    else:
        r["m_hi"], r["m_lo"] = wan22_expert_caches(wf, k1, k2, y, cols)
        members += [r["m_hi"], r["m_lo"]]
    dec.move(cols.xd, k2.pos[1] - RAISE)
    out.move(cols.xs, k2.pos[1])
    wf.link(k1, "LATENT", k2, "latent_image")
    wf.link(k2, "LATENT", dec, "samples")
    wf.link(dec, "IMAGE", out, "images")
    r.update(k1=k1, k2=k2, dec=dec, out=out)
    if kind != "ref":
        c = wf.add(
            "TCPade_Compare",
            title=f"Compare · {label} vs. reference",
            size=(440, 398),
            amplify=4.0,
            color=COLOR_PAIRS[kind],
        )
        c.move(cols.xcmp, dec.pos[1])
        wf.link(dec, "IMAGE", c, "test")
        r["cmp"] = c
    wf.group(label, members, color=BRANCH_COLORS[kind], x0=cols.xg, x1=cols.gx1)
    return r, max(n.pos[1] + n.h for n in members) + GROUP_PAD + 60 + GROUP_HEAD + GROUP_PAD + TITLE_H + RAISE + 130


def wan22_buses(
    wf: Workflow,
    rows: List[Dict[str, Any]],
    hi_s: Node,
    lo_s: Node,
    pos: Node,
    neg: Node,
    latent: Node,
    vae: Node,
    x: float,
    xb: float,
) -> None:
    """The shared inputs, each on its bus (the first at ``x``), and the reference images on theirs (at ``xb``)."""
    for s, inp, key in ((hi_s, "model", "m_hi"), (lo_s, "model", "m_lo")):
        wf.bus(s, "MODEL", x, [(r[key], "model") for r in rows])
        x += BUS_STEP
    for s, inp in ((pos, "positive"), (neg, "negative")):
        wf.bus(s, "CONDITIONING", x, [(r[k], inp) for r in rows for k in ("k1", "k2")])
        x += BUS_STEP
    wf.bus(latent, "LATENT", x, [(r["k1"], "latent_image") for r in rows])
    x += BUS_STEP
    wf.bus(vae, "VAE", x, [(r["dec"], "vae") for r in rows])
    wf.bus(rows[0]["dec"], "IMAGE", xb, [(r["cmp"], "reference") for r in rows[1:]])


def wan22_14b() -> Workflow:
    """Two experts: high-noise model for steps 0-10, low-noise model for 10-20; a cache on each.

    A row has two stages, each with its own inputs: the high-noise sampler (and its cache) first, the low-noise
    sampler (and its cache) below-right of it, so that every wire into it runs below the first stage."""
    wf = Workflow("tcpade_wan2.2_t2v_14B_two_experts", NAMES["wan22"])
    hi_f, lo_f = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
    te_f, vae_f = "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors"
    label = f"{LABELS['tcpade']} on both experts"
    note(wf, wan22_note(hi_f, lo_f, te_f, vae_f, label), size=(440, 980))
    (hi_s, lo_s), pos, neg, vae, latent = wan_inputs(
        wf,
        [("Load high-noise expert", "Shift (high)", hi_f), ("Load low-noise expert", "Shift (low)", lo_f)],
        te_f,
        vae_f,
        "a hot air balloon rising over a misty valley at dawn, the basket swaying gently, slow aerial orbit",
        (640, 640, 81),
    )
    common = dict(noise_seed=SEED, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple")
    right = 780
    cols = Wan22Columns.right_of(right, n_bus=6)
    rows = []
    y = GROUP_HEAD + GROUP_PAD + TITLE_H + RAISE + 130
    for kind, row_label in [("ref", "no cache (reference)"), ("tcpade", label)]:
        r, y = wan22_row(wf, kind, row_label, y, cols, common)
        rows.append(r)
    wan22_buses(wf, rows, hi_s, lo_s, pos, neg, latent, vae, right + GAP, cols.xb)
    wf.group("compare with the reference", [r["cmp"] for r in rows[1:]], color=BRANCH_COLORS["compare"])
    return wf


# ------------------------------------------------------------------------------------ tiny bench workflows

BENCH = {
    "digits": dict(
        choice="A: DiT digits 16x16",
        label_set="A: digits",
        class_index=3,
        sampler="ddim",
        scheduler="ddim_uniform",
        sampler_text="DDIM",
        title="bench model A (DiT, 16x16 digits)",
    ),
    "shapes": dict(
        choice="B: FLUX-like shapes 32x32",
        label_set="B: shapes",
        class_index=2,
        sampler="euler",
        scheduler="simple",
        sampler_text="Euler",
        title="bench model B (FLUX-like flow, 32x32 shapes)",
    ),
}


def tiny(which: str) -> Workflow:
    b = BENCH[which]
    wf = Workflow(f"tcpade_tiny_{which}_cpu", NAMES[which])
    branches = [
        ("tcpade", {}),
        ("taylorseer", dict(interval=3, first_enhance=2)),
        ("teacache", dict(threshold=0.3)),
        ("tracache", dict(stride=2, max_order=2)),
    ]
    note(
        wf,
        note_head(f"tiny {b['title']}, CPU", [k for k, _ in branches])
        + "Runs on a CPU in about a minute with **no download**: the bench models ship with the pack (**Load Bench "
        "Model (tiny, CPU)**). They work in pixel space, so **Bench Latent** and **Bench Decode** replace the VAE; "
        "**Preview Image Grid (sharp upscale)** shows each batch of 8 as one grid, every pixel a sharp square. "
        f"{b['sampler_text']}, 20 steps, CFG 2. All "
        "four cache methods of the pack side by side. Their other settings: TaylorSeer O = auto (order 2 on the "
        "digits model, an eps model at 20 steps; 1 on the shapes model, a flow model), first enhance 2 "
        "(N = 3 at target 0), TeaCache δ = 0.3 (no published coefficients for this model: raw "
        "relative L1; its node says so after a run), TraCache max order 2 (k = 2 at target 0).",
        size=(440, 820),
    )
    model = wf.add("TCPade_BenchModelLoader", size=(320, 58), model=b["choice"])
    label = wf.add("TCPade_ClassLabel", size=(320, 126), label_set=b["label_set"], class_index=b["class_index"])
    latent = wf.add("TCPade_BenchLatent", size=(320, 82), model=b["choice"], batch_size=8)
    stack([model, label, latent], 0, 0)
    inputs_group(wf, [model, label, latent])

    def output(kind: str, label_: str) -> Node:
        return wf.add("TCPade_PreviewGrid", title=f"Preview · {label_}", size=(440, 320))

    branch_rows(
        wf,
        Sources((model, "MODEL"), (label, "positive"), (label, "negative"), (latent, "LATENT")),
        decoder="TCPade_BenchDecode",
        output=output,
        compare_amplify=4.0,
        sampler=dict(seed=SEED, steps=20, cfg=2.0, sampler_name=b["sampler"], scheduler=b["scheduler"]),
        branches=branches,
    )
    return wf


# ------------------------------------------------------------------------------------ main

# file names: the frontend's card titles, numbered so that a sorted listing starts with the CPU workflows
NAMES = {
    "shapes": "1 TCPade on CPU, tiny shapes",
    "digits": "2 TCPade on CPU, tiny digits",
    "flux": "3 TCPade FLUX.1 dev, 20 steps",
    "wan21": "4 TCPade Wan 2.1 T2V 1.3B",
    "wan22": "5 TCPade Wan 2.2 T2V 14B",
    "dit": "6 TCPade DiT XL2 256",
}


def all_workflows() -> List[Workflow]:
    return [tiny("shapes"), tiny("digits"), flux_dev(), wan21_1_3b(), wan22_14b(), dit_xl2()]


def render(wf: Workflow) -> str:
    return json.dumps(wf.to_json(), indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is missing or differs")
    ap.add_argument(
        "--thumbnails",
        action="store_true",
        help="also render each workflow in the real frontend (a ComfyUI server and headless Chromium) "
        "and save <name>.jpg, the template card's picture",
    )
    ap.add_argument("--measure", action="store_true", help="print MIN_SIZE as the frontend computes it, and exit")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args(argv)
    if a.measure:
        sys.path.insert(0, str(HERE))
        from thumbnails import measure_min_sizes

        print(json.dumps(measure_min_sizes(sorted(SPECS)), indent=1))
        return 0
    bad = 0
    for wf in all_workflows():
        path = a.out / f"{wf.name}.json"
        text = render(wf)
        if a.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                print(f"differs: {path}")
                bad += 1
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(wf.nodes)} nodes, {len(wf.links)} links, {len(wf.reroutes)} reroutes)")
    if a.thumbnails and not a.check:
        sys.path.insert(0, str(HERE))
        from thumbnails import render_thumbnails

        for path in render_thumbnails(a.out, [wf.name for wf in all_workflows()]):
            print(f"wrote {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
