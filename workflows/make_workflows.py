"""Generate the example workflows (ComfyUI UI format, the JSON the frontend loads and saves).

    python workflows/make_workflows.py           # (re)write workflows/*.json
    python workflows/make_workflows.py --check   # exit 1 if a JSON differs from what this script writes

One script writes them all so that every workflow uses the same node layout, seeds and cache
settings. ``tests/test_workflows.py`` checks the files against the host's node schemas (node types,
socket names and types, widget order and values, links) and against this script's output.

ComfyUI serves a custom node pack's ``workflows/*.json`` as templates (Workflow > Browse Templates).
Every sampler of a workflow uses the same seed with ``control_after_generate = fixed``, so the
branches differ only in the cache. Model files are the names and folders of the Comfy-Org
repackaged releases (what the core templates use).
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
PACK_CNR = "comfyui-tcpade"     # pyproject [project].name: the registry id of this pack
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
    frontend_only: bool = False   # Note / MarkdownNote: registered by the frontend, not the server


WINDOW = (("start_percent", 0.0), ("end_percent", 1.0), ("cache_device", "same"))
SPECS: Dict[str, Spec] = {
    # core
    "UNETLoader": Spec((), (("MODEL", "MODEL"),), (("unet_name", REQUIRED), ("weight_dtype", "default"))),
    "DualCLIPLoader": Spec((), (("CLIP", "CLIP"),), (("clip_name1", REQUIRED), ("clip_name2", REQUIRED),
                                                     ("type", REQUIRED), ("device", "default"))),
    "CLIPLoader": Spec((), (("CLIP", "CLIP"),), (("clip_name", REQUIRED), ("type", REQUIRED), ("device", "default"))),
    "VAELoader": Spec((), (("VAE", "VAE"),), (("vae_name", REQUIRED),)),
    "CLIPTextEncode": Spec((("clip", "CLIP"),), (("CONDITIONING", "CONDITIONING"),), (("text", REQUIRED),)),
    "FluxGuidance": Spec((("conditioning", "CONDITIONING"),), (("CONDITIONING", "CONDITIONING"),),
                         (("guidance", 3.5),)),
    "ConditioningZeroOut": Spec((("conditioning", "CONDITIONING"),), (("CONDITIONING", "CONDITIONING"),)),
    "EmptySD3LatentImage": Spec((), (("LATENT", "LATENT"),), (("width", 1024), ("height", 1024), ("batch_size", 1))),
    "EmptyLatentImage": Spec((), (("LATENT", "LATENT"),), (("width", 512), ("height", 512), ("batch_size", 1))),
    "EmptyHunyuanLatentVideo": Spec((), (("LATENT", "LATENT"),), (("width", 832), ("height", 480), ("length", 33),
                                                                  ("batch_size", 1))),
    "ModelSamplingSD3": Spec((("model", "MODEL"),), (("MODEL", "MODEL"),), (("shift", REQUIRED),)),
    "KSampler": Spec((("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                      ("latent_image", "LATENT")), (("LATENT", "LATENT"),),
                     (("seed", REQUIRED), (CAG, "fixed"), ("steps", 20), ("cfg", REQUIRED), ("sampler_name", REQUIRED),
                      ("scheduler", REQUIRED), ("denoise", 1.0))),
    "KSamplerAdvanced": Spec((("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                              ("latent_image", "LATENT")), (("LATENT", "LATENT"),),
                             (("add_noise", REQUIRED), ("noise_seed", REQUIRED), (CAG, "fixed"), ("steps", 20),
                              ("cfg", REQUIRED), ("sampler_name", REQUIRED), ("scheduler", REQUIRED),
                              ("start_at_step", REQUIRED), ("end_at_step", REQUIRED),
                              ("return_with_leftover_noise", REQUIRED))),
    "VAEDecode": Spec((("samples", "LATENT"), ("vae", "VAE")), (("IMAGE", "IMAGE"),)),
    "SaveImage": Spec((("images", "IMAGE"),), (), (("filename_prefix", REQUIRED),)),
    "PreviewImage": Spec((("images", "IMAGE"),), ()),
    "SaveAnimatedWEBP": Spec((("images", "IMAGE"),), (), (("filename_prefix", REQUIRED), ("fps", 16.0),
                                                           ("lossless", False), ("quality", 90), ("method", "default"))),
    "MarkdownNote": Spec(widgets=(("text", REQUIRED),), frontend_only=True),
    # this pack: cache nodes
    "TCPade_TCPadeCache": Spec((("model", "MODEL"), ("calibration", "TCPADE_CALIBRATION")), (("MODEL", "MODEL"),),
                               (("preset", "slow (2x)"), ("target_speedup", 0.0), ("theta", 1.0), ("lam", 2.0),
                                ("alpha1", 1.0), ("beta", 0.3), ("interval", 4), *WINDOW, ("mode", "default")), ours=True),
    "TCPade_TaylorSeer": Spec((("model", "MODEL"), ("calibration", "TCPADE_CALIBRATION")), (("MODEL", "MODEL"),),
                              (("target_speedup", 0.0), ("interval", REQUIRED), ("order", REQUIRED),
                               ("first_enhance", REQUIRED), *WINDOW), ours=True),
    "TCPade_TeaCache": Spec((("model", "MODEL"), ("calibration", "TCPADE_CALIBRATION")), (("MODEL", "MODEL"),),
                            (("target_speedup", 0.0), ("threshold", REQUIRED), ("coefficients", "auto"),
                             ("custom_coefficients", ""), *WINDOW), ours=True),
    "TCPade_TraCache": Spec((("model", "MODEL"), ("calibration", "TCPADE_CALIBRATION")), (("MODEL", "MODEL"),),
                            (("target_speedup", 0.0), ("stride", REQUIRED), ("max_order", REQUIRED), *WINDOW), ours=True),
    "TCPade_Compare": Spec((("test", "IMAGE"), ("reference", "IMAGE")),
                           (("PSNR", "FLOAT"), ("SSIM", "FLOAT"), ("difference", "IMAGE")), (("amplify", 4.0),),
                           ours=True),
    # this pack: models
    "TCPade_DiTLoader": Spec((), (("MODEL", "MODEL"),), (("ckpt_name", REQUIRED), ("weight_dtype", "default")),
                             ours=True),
    "TCPade_ClassLabel": Spec((), (("positive", "CONDITIONING"), ("negative", "CONDITIONING")),
                              (("label_set", REQUIRED), ("class_index", REQUIRED), ("class_name", "")), ours=True),
    "TCPade_BenchModelLoader": Spec((), (("MODEL", "MODEL"),), (("model", REQUIRED),), ours=True),
    "TCPade_BenchLatent": Spec((), (("LATENT", "LATENT"),), (("model", REQUIRED), ("batch_size", REQUIRED)), ours=True),
    "TCPade_BenchDecode": Spec((("samples", "LATENT"),), (("IMAGE", "IMAGE"),), ours=True),
}

# rough heights so the saved layout does not overlap; the frontend grows a node to fit its content
EXTRA_HEIGHT = {"TCPade_TCPadeCache": 200, "TCPade_TaylorSeer": 140, "TCPade_TeaCache": 140,
                "TCPade_TraCache": 140, "TCPade_Compare": 330, "SaveImage": 300, "PreviewImage": 300,
                "SaveAnimatedWEBP": 260, "CLIPTextEncode": 80}

# ------------------------------------------------------------------------------------ graph builder


@dataclass
class Node:
    id: int
    type: str
    pos: Tuple[float, float]
    widgets: List[Any]
    title: Optional[str] = None
    models: Optional[List[dict]] = None
    size: Optional[Tuple[float, float]] = None
    color: Optional[Tuple[str, str]] = None
    in_links: Dict[str, int] = field(default_factory=dict)
    out_links: Dict[int, List[int]] = field(default_factory=dict)

    @property
    def spec(self) -> Spec:
        return SPECS[self.type]


class Workflow:
    def __init__(self, name: str):
        self.name = name
        self.nodes: List[Node] = []
        self.links: List[list] = []
        self.groups: List[dict] = []

    def add(self, type_: str, pos, title: Optional[str] = None, models=None, size=None, color=None, **widgets) -> Node:
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
        node = Node(len(self.nodes) + 1, type_, (float(pos[0]), float(pos[1])), values, title, models, size, color)
        self.nodes.append(node)
        return node

    def link(self, src: Node, out: str, dst: Node, inp: str) -> None:
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

    def group(self, title: str, nodes: Sequence[Node], color: str = "#3f789e", pad: float = 20.0) -> None:
        x0 = min(n.pos[0] for n in nodes) - pad
        y0 = min(n.pos[1] for n in nodes) - pad - 50
        x1 = max(n.pos[0] + self._size(n)[0] for n in nodes) + pad
        y1 = max(n.pos[1] + self._size(n)[1] for n in nodes) + pad
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                            "color": color, "font_size": 24, "flags": {}})

    @staticmethod
    def _size(n: Node) -> Tuple[float, float]:
        if n.size is not None:
            return n.size
        s = n.spec
        rows = max(len(s.inputs), len(s.outputs))
        shown = sum(1 for name, _ in s.widgets if name != CAG) + (1 if any(nm == CAG for nm, _ in s.widgets) else 0)
        return 320.0, float(30 + 22 * rows + 24 * shown + EXTRA_HEIGHT.get(n.type, 10))

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
                "id": n.id, "type": n.type, "pos": list(n.pos), "size": list(self._size(n)), "flags": {},
                "order": order[n.id], "mode": 0,
                "inputs": [{"name": name, "type": typ, "link": n.in_links.get(name)} for name, typ in s.inputs],
                "outputs": [{"name": name, "type": typ, "links": n.out_links.get(i, [])}
                            for i, (name, typ) in enumerate(s.outputs)],
                "properties": props,
                "widgets_values": list(n.widgets),
            }
            if n.title:
                d["title"] = n.title
            if n.color:
                d["color"], d["bgcolor"] = n.color
            nodes.append(d)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "tcpade/workflows/" + self.name)),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes,
            "links": self.links,
            "groups": self.groups,
            "config": {},
            "extra": {"ds": {"scale": 0.62, "offset": [500.0, 460.0]}},
            "version": 0.4,
        }


# ------------------------------------------------------------------------------------ shared pieces

HF = "https://huggingface.co"
M = {
    "flux1-dev.safetensors": (f"{HF}/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    "clip_l.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
                               "text_encoders"),
    "ae.safetensors": (f"{HF}/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors", "vae"),
    "wan2.1_t2v_1.3B_fp16.safetensors": (f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
                                         f"diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors", "diffusion_models"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
                                               f"text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
    "wan_2.1_vae.safetensors": (f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/"
                                f"wan_2.1_vae.safetensors", "vae"),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/"
        f"wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "diffusion_models"),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": (
        f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/"
        f"wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "diffusion_models"),
    "DiT-XL-2-256x256.pt": ("https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt", "diffusion_models"),
    "vae-ft-ema-560000-ema-pruned.safetensors": (f"{HF}/stabilityai/sd-vae-ft-ema-original/resolve/main/"
                                                 f"vae-ft-ema-560000-ema-pruned.safetensors", "vae"),
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
BRANCH_COLORS = {"ref": "#444", "tcpade": "#a1309b", "taylorseer": "#3f789e", "teacache": "#2a7a6e",
                 "tracache": "#8a6d2e"}
COLOR_PAIRS = {  # node color / bgcolor, per branch (frontend palette "purple", "blue", "cyan", "brown")
    "tcpade": ("#323", "#535"), "taylorseer": ("#223", "#335"), "teacache": ("#233", "#355"),
    "tracache": ("#332922", "#593930"),
}

NOTE_HEAD = (
    "# TC-Padé: {title}\n\n"
    "Same prompt, seed and sampler in every branch; only the cache differs. The top branch computes "
    "every step (the reference). **Compare** scores each cached branch against it (PSNR / SSIM) and, "
    "with the pack's web extension, shows each branch's sampling time and speed-up; each cache node "
    "shows which steps it computed and its gate signal after a run.\n\n"
    "Change the seed in **every** sampler (they are set to *fixed*). The first sampler to run also loads "
    "the model; the timing leaves that out.\n\n"
)


def cache_branch(wf: Workflow, kind: str, model_src: Tuple[Node, str], x: float, y: float, **settings) -> Node:
    titles = {"tcpade": "TC-Padé Cache", "taylorseer": "TaylorSeer Cache", "teacache": "TeaCache (block residual)",
              "tracache": "TraCache"}
    types = {"tcpade": "TCPade_TCPadeCache", "taylorseer": "TCPade_TaylorSeer", "teacache": "TCPade_TeaCache",
             "tracache": "TCPade_TraCache"}
    node = wf.add(types[kind], (x, y), title=titles[kind], color=COLOR_PAIRS[kind], **settings)
    wf.link(model_src[0], model_src[1], node, "model")
    return node


# ------------------------------------------------------------------------------------ image workflows

def vae_decoder(wf: Workflow, vae: Node):
    """decode(sampler, x, y) for :func:`four_branches`: a VAEDecode of the sampler's latent with ``vae``."""
    def decode(ks, x, y):
        d = wf.add("VAEDecode", (x, y))
        wf.link(ks, "LATENT", d, "samples")
        wf.link(vae, "VAE", d, "vae")
        return d, "IMAGE"
    return decode


def four_branches(wf: Workflow, *, model: Node, model_out: str, positive: Tuple[Node, str],
                  negative: Tuple[Node, str], latent: Node, decode, save, sampler: dict, branches: List[tuple],
                  x0: float = 480.0, y0: float = 0.0, row: float = 560.0, compare_amplify: float = 4.0):
    """Reference branch + one branch per (kind, label, settings): cache -> KSampler -> decode -> save,
    and a Compare node per cached branch against the reference."""
    xs = {"cache": x0, "sampler": x0 + 380, "decode": x0 + 760, "save": x0 + 1040, "compare": x0 + 1420}
    ref_img = None
    for i, (kind, label, settings) in enumerate([("ref", "no cache (reference)", {})] + branches):
        y = y0 + i * row
        members = []
        src = (model, model_out)
        if kind != "ref":
            c = cache_branch(wf, kind, src, xs["cache"], y, **settings)
            src = (c, "MODEL")
            members.append(c)
        ks = wf.add("KSampler", (xs["sampler"], y), title=f"KSampler · {label}", **sampler)
        wf.link(src[0], src[1], ks, "model")
        wf.link(positive[0], positive[1], ks, "positive")
        wf.link(negative[0], negative[1], ks, "negative")
        wf.link(latent, "LATENT", ks, "latent_image")
        img = decode(ks, xs["decode"], y)
        out = save(img, xs["save"], y, kind)
        members += [ks, out]
        if kind == "ref":
            ref_img = img
        else:
            cmp_ = wf.add("TCPade_Compare", (xs["compare"], y), title=f"Compare · {label} vs. reference",
                          amplify=compare_amplify)
            wf.link(img[0], img[1], cmp_, "test")
            wf.link(ref_img[0], ref_img[1], cmp_, "reference")
            members.append(cmp_)
        wf.group(label, members, color=BRANCH_COLORS[kind])


def flux_dev() -> Workflow:
    wf = Workflow("tcpade_flux1_dev_20steps")
    files = ("flux1-dev.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors")
    wf.add("MarkdownNote", (-460, -380), size=(420, 560), text=NOTE_HEAD.format(title="FLUX.1-dev, 20 steps") +
           "Settings from the TC-Padé paper's FLUX comparison: TC-Padé *slow* (θ = 1.0, λ = 10), TaylorSeer "
           "N = 5, O = 2, TeaCache δ = 0.6 (FLUX coefficients, picked automatically). Switch the TC-Padé "
           "node to *fast* (θ = 0.7) for more speed.\n\n" + model_tree(*files))
    unet = wf.add("UNETLoader", (0, 0), models=models(files[0]), unet_name=files[0], weight_dtype="default")
    clip = wf.add("DualCLIPLoader", (0, 140), models=models(files[1], files[2]), clip_name1=files[1],
                  clip_name2=files[2], type="flux", device="default")
    vae = wf.add("VAELoader", (0, 320), models=models(files[3]), vae_name=files[3])
    text = wf.add("CLIPTextEncode", (0, 440), title="Prompt",
                  text="a red fox sitting in a snowy birch forest at sunrise, detailed fur, soft golden light, "
                       "shallow depth of field, photograph")
    wf.link(clip, "CLIP", text, "clip")
    guid = wf.add("FluxGuidance", (0, 720), guidance=3.5)
    wf.link(text, "CONDITIONING", guid, "conditioning")
    zero = wf.add("ConditioningZeroOut", (0, 840))
    wf.link(text, "CONDITIONING", zero, "conditioning")
    latent = wf.add("EmptySD3LatentImage", (0, 940), width=1024, height=1024, batch_size=1)

    decode = vae_decoder(wf, vae)

    def save(img, x, y, kind):
        s = wf.add("SaveImage", (x, y), filename_prefix=f"tcpade/flux_{kind}")
        wf.link(img[0], img[1], s, "images")
        return s

    four_branches(wf, model=unet, model_out="MODEL", positive=(guid, "CONDITIONING"), negative=(zero, "CONDITIONING"),
                  latent=latent, decode=decode, save=save,
                  sampler=dict(seed=SEED, steps=20, cfg=1.0, sampler_name="euler", scheduler="simple"),
                  branches=[("tcpade", "TC-Padé slow (2x)", dict(preset="slow (2x)")),
                            ("taylorseer", "TaylorSeer N=5 O=2", dict(interval=5, order=2, first_enhance=3)),
                            ("teacache", "TeaCache δ=0.6", dict(threshold=0.6))])
    return wf


def dit_xl2() -> Workflow:
    wf = Workflow("tcpade_dit_xl2_256_20steps")
    ckpt, vae_file = "DiT-XL-2-256x256.pt", "vae-ft-ema-560000-ema-pruned.safetensors"
    wf.add("MarkdownNote", (-460, -380), size=(420, 560), text=NOTE_HEAD.format(
        title="DiT-XL/2 256x256 (ImageNet class-conditional), 20 steps") +
        "ComfyUI has no DiT loader: **Load DiT** (this pack) reads the official checkpoint; **Class Label** "
        "gives the ImageNet class (207 = golden retriever) and the null class for CFG 4.0. DDIM, 20 steps. "
        "Settings from the paper's DiT comparison: TC-Padé *slow*, TaylorSeer N = 3, O = 2; TeaCache has no "
        "published DiT coefficients (raw relative L1, δ = 0.3).\n\n" + model_tree(ckpt, vae_file))
    dit = wf.add("TCPade_DiTLoader", (0, 0), models=models(ckpt), ckpt_name=ckpt, weight_dtype="default")
    vae = wf.add("VAELoader", (0, 140), models=models(vae_file), vae_name=vae_file)
    label = wf.add("TCPade_ClassLabel", (0, 260), label_set="ImageNet (DiT-XL/2)", class_index=207, class_name="")
    latent = wf.add("EmptyLatentImage", (0, 440), width=256, height=256, batch_size=4)

    decode = vae_decoder(wf, vae)

    def save(img, x, y, kind):
        s = wf.add("SaveImage", (x, y), filename_prefix=f"tcpade/dit_{kind}")
        wf.link(img[0], img[1], s, "images")
        return s

    four_branches(wf, model=dit, model_out="MODEL", positive=(label, "positive"), negative=(label, "negative"),
                  latent=latent, decode=decode, save=save,
                  sampler=dict(seed=SEED, steps=20, cfg=4.0, sampler_name="ddim", scheduler="ddim_uniform"),
                  branches=[("tcpade", "TC-Padé slow (2x)", dict(preset="slow (2x)")),
                            ("taylorseer", "TaylorSeer N=3 O=2", dict(interval=3, order=2, first_enhance=2)),
                            ("teacache", "TeaCache δ=0.3", dict(threshold=0.3))])
    return wf


# ------------------------------------------------------------------------------------ video workflows

WAN_NEGATIVE = ("blurry, low quality, worst quality, static, still frame, distorted, deformed, jpeg artifacts, "
                "watermark, text, subtitles")


def wan21_1_3b() -> Workflow:
    wf = Workflow("tcpade_wan2.1_t2v_1.3B_20steps")
    files = ("wan2.1_t2v_1.3B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors")
    wf.add("MarkdownNote", (-460, -380), size=(420, 560), text=NOTE_HEAD.format(
        title="Wan 2.1 text-to-video 1.3B, 20 steps") +
        "832x480, 33 frames, UniPC, CFG 6, shift 8. Settings from the paper's Wan comparison: TC-Padé *slow*, "
        "TaylorSeer N = 4, O = 1, TeaCache δ = 0.08 (Wan 1.3B coefficients, picked automatically). Compare "
        "scores the mean over frames.\n\n" + model_tree(*files))
    unet = wf.add("UNETLoader", (0, 0), models=models(files[0]), unet_name=files[0], weight_dtype="default")
    shift = wf.add("ModelSamplingSD3", (0, 140), shift=8.0)
    wf.link(unet, "MODEL", shift, "model")
    clip = wf.add("CLIPLoader", (0, 260), models=models(files[1]), clip_name=files[1], type="wan", device="default")
    vae = wf.add("VAELoader", (0, 420), models=models(files[2]), vae_name=files[2])
    pos = wf.add("CLIPTextEncode", (0, 540), title="Prompt",
                 text="a paper boat drifting down a rain-filled street gutter at night, neon reflections rippling "
                      "on the water, slow tracking shot")
    neg = wf.add("CLIPTextEncode", (0, 820), title="Negative prompt", text=WAN_NEGATIVE)
    wf.link(clip, "CLIP", pos, "clip")
    wf.link(clip, "CLIP", neg, "clip")
    latent = wf.add("EmptyHunyuanLatentVideo", (0, 1100), width=832, height=480, length=33, batch_size=1)

    decode = vae_decoder(wf, vae)

    def save(img, x, y, kind):
        s = wf.add("SaveAnimatedWEBP", (x, y), filename_prefix=f"tcpade/wan21_{kind}", fps=16.0, lossless=False,
                   quality=90, method="default")
        wf.link(img[0], img[1], s, "images")
        return s

    four_branches(wf, model=shift, model_out="MODEL", positive=(pos, "CONDITIONING"), negative=(neg, "CONDITIONING"),
                  latent=latent, decode=decode, save=save,
                  sampler=dict(seed=SEED, steps=20, cfg=6.0, sampler_name="uni_pc", scheduler="simple"),
                  branches=[("tcpade", "TC-Padé slow (2x)", dict(preset="slow (2x)")),
                            ("taylorseer", "TaylorSeer N=4 O=1", dict(interval=4, order=1, first_enhance=1)),
                            ("teacache", "TeaCache δ=0.08", dict(threshold=0.08))])
    return wf


def wan22_14b() -> Workflow:
    """Two experts: high-noise model for steps 0-10, low-noise model for 10-20; a cache on each."""
    wf = Workflow("tcpade_wan2.2_t2v_14B_two_experts")
    hi_f, lo_f = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
    te_f, vae_f = "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors"
    wf.add("MarkdownNote", (-460, -380), size=(420, 600), text=NOTE_HEAD.format(
        title="Wan 2.2 text-to-video 14B, two experts, 20 steps") +
        "The high-noise expert samples steps 0-10, the low-noise expert steps 10-20 (two KSamplerAdvanced). "
        "Each expert gets its own TC-Padé node: each sampler run starts a fresh cache, so nothing computed by "
        "one expert is ever used by the other, and the first step after the switch is computed in full. "
        "640x640, 81 frames, Euler, CFG 3.5, shift 8.\n\n" + model_tree(hi_f, lo_f, te_f, vae_f))
    hi = wf.add("UNETLoader", (0, 0), title="Load high-noise expert", models=models(hi_f), unet_name=hi_f)
    lo = wf.add("UNETLoader", (0, 140), title="Load low-noise expert", models=models(lo_f), unet_name=lo_f)
    hi_s = wf.add("ModelSamplingSD3", (0, 280), title="Shift (high)", shift=8.0)
    lo_s = wf.add("ModelSamplingSD3", (0, 390), title="Shift (low)", shift=8.0)
    wf.link(hi, "MODEL", hi_s, "model")
    wf.link(lo, "MODEL", lo_s, "model")
    clip = wf.add("CLIPLoader", (0, 500), models=models(te_f), clip_name=te_f, type="wan", device="default")
    vae = wf.add("VAELoader", (0, 660), models=models(vae_f), vae_name=vae_f)
    pos = wf.add("CLIPTextEncode", (0, 780), title="Prompt",
                 text="a hot air balloon rising over a misty valley at dawn, the basket swaying gently, slow "
                      "aerial orbit")
    neg = wf.add("CLIPTextEncode", (0, 1060), title="Negative prompt", text=WAN_NEGATIVE)
    wf.link(clip, "CLIP", pos, "clip")
    wf.link(clip, "CLIP", neg, "clip")
    latent = wf.add("EmptyHunyuanLatentVideo", (0, 1340), width=640, height=640, length=81, batch_size=1)
    common = dict(noise_seed=SEED, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple")
    x0, row = 480.0, 620.0
    ref_img = None
    for i, (kind, label) in enumerate([("ref", "no cache (reference)"), ("tcpade", "TC-Padé slow (2x) on both experts")]):
        y = i * row
        m_hi, m_lo = (hi_s, "MODEL"), (lo_s, "MODEL")
        members = []
        if kind == "tcpade":
            c_hi = cache_branch(wf, "tcpade", m_hi, x0, y, preset="slow (2x)")
            c_lo = cache_branch(wf, "tcpade", m_lo, x0 + 380, y, preset="slow (2x)")
            c_hi.title, c_lo.title = "TC-Padé Cache (high-noise expert)", "TC-Padé Cache (low-noise expert)"
            m_hi, m_lo = (c_hi, "MODEL"), (c_lo, "MODEL")
            members += [c_hi, c_lo]
        k1 = wf.add("KSamplerAdvanced", (x0 + 760, y), title=f"KSamplerAdvanced high noise · {label}",
                    add_noise="enable", start_at_step=0, end_at_step=10, return_with_leftover_noise="enable", **common)
        k2 = wf.add("KSamplerAdvanced", (x0 + 1140, y), title=f"KSamplerAdvanced low noise · {label}",
                    add_noise="disable", start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable",
                    **common)
        wf.link(m_hi[0], m_hi[1], k1, "model")
        wf.link(m_lo[0], m_lo[1], k2, "model")
        for k in (k1, k2):
            wf.link(pos, "CONDITIONING", k, "positive")
            wf.link(neg, "CONDITIONING", k, "negative")
        wf.link(latent, "LATENT", k1, "latent_image")
        wf.link(k1, "LATENT", k2, "latent_image")
        d = wf.add("VAEDecode", (x0 + 1520, y))
        wf.link(k2, "LATENT", d, "samples")
        wf.link(vae, "VAE", d, "vae")
        s = wf.add("SaveAnimatedWEBP", (x0 + 1780, y), filename_prefix=f"tcpade/wan22_{kind}", fps=16.0,
                   lossless=False, quality=90, method="default")
        wf.link(d, "IMAGE", s, "images")
        members += [k1, k2, s]
        if kind == "ref":
            ref_img = d
        else:
            c = wf.add("TCPade_Compare", (x0 + 2140, y), title=f"Compare · {label} vs. reference")
            wf.link(d, "IMAGE", c, "test")
            wf.link(ref_img, "IMAGE", c, "reference")
            members.append(c)
        wf.group(label, members, color=BRANCH_COLORS[kind])
    return wf


# ------------------------------------------------------------------------------------ tiny bench workflows

BENCH = {
    "digits": dict(choice="A: DiT digits 16x16", label_set="A: digits", class_index=3, sampler="ddim",
                   scheduler="ddim_uniform", title="bench model A (DiT, 16x16 digits)"),
    "shapes": dict(choice="B: FLUX-like shapes 32x32", label_set="B: shapes", class_index=2, sampler="euler",
                   scheduler="simple", title="bench model B (FLUX-like flow, 32x32 shapes)"),
}


def tiny(which: str) -> Workflow:
    b = BENCH[which]
    wf = Workflow(f"tcpade_tiny_{which}_cpu")
    wf.add("MarkdownNote", (-460, -380), size=(420, 520), text=NOTE_HEAD.format(title=f"tiny {b['title']}, CPU") +
           "Runs on a CPU in about a minute with **no download**: the bench models ship with the pack (Load "
           "Bench Model). They work in pixel space, so Bench Latent and Bench Decode replace the VAE. "
           "Batch of 8, 20 steps, CFG 2. All four cache methods of the pack side by side.")
    model = wf.add("TCPade_BenchModelLoader", (0, 0), model=b["choice"])
    label = wf.add("TCPade_ClassLabel", (0, 120), label_set=b["label_set"], class_index=b["class_index"])
    latent = wf.add("TCPade_BenchLatent", (0, 320), model=b["choice"], batch_size=8)

    def decode(ks, x, y):
        d = wf.add("TCPade_BenchDecode", (x, y))
        wf.link(ks, "LATENT", d, "samples")
        return d, "IMAGE"

    def save(img, x, y, kind):
        s = wf.add("PreviewImage", (x, y))
        wf.link(img[0], img[1], s, "images")
        return s

    four_branches(wf, model=model, model_out="MODEL", positive=(label, "positive"), negative=(label, "negative"),
                  latent=latent, decode=decode, save=save, compare_amplify=4.0,
                  sampler=dict(seed=SEED, steps=20, cfg=2.0, sampler_name=b["sampler"], scheduler=b["scheduler"]),
                  branches=[("tcpade", "TC-Padé slow (2x)", dict(preset="slow (2x)")),
                            ("taylorseer", "TaylorSeer N=3 O=1", dict(interval=3, order=1, first_enhance=2)),
                            ("teacache", "TeaCache δ=0.3", dict(threshold=0.3)),
                            ("tracache", "TraCache k=2", dict(stride=2, max_order=2))])
    return wf


# ------------------------------------------------------------------------------------ main

def all_workflows() -> List[Workflow]:
    return [flux_dev(), wan21_1_3b(), wan22_14b(), dit_xl2(), tiny("digits"), tiny("shapes")]


def render(wf: Workflow) -> str:
    return json.dumps(wf.to_json(), indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is missing or differs")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args(argv)
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
            print(f"wrote {path} ({len(wf.nodes)} nodes, {len(wf.links)} links)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
