"""The shipped workflows (workflows/*.json) against the host: node types, sockets, widget values, links.

The structural checks need no host; the rest loads ComfyUI's core nodes (``nodes.py`` and
``comfy_extras``) and the pack with the host's own loader, then checks every node of every
workflow against the host's schema the way the frontend will read it: socket inputs first (links
point at them by index), then one widget value per widget input in definition order (plus the
frontend's ``control_after_generate`` after a seed). A combo value outside the host's options is
accepted only for a model file the node declares in ``properties.models`` (the frontend offers it
for download). The tiny bench workflows are converted to the API format and run headlessly
through the host's executor when the bench weights are present.

The layout is checked as the frontend draws it (``layout_geometry.py``: node boxes from the saved sizes, which
are at least the frontend's minimum for the type, ``make_workflows.MIN_SIZE``; wires as the frontend's
bezier curves, through native reroutes): no two nodes overlap, no node is half in a group, no wire crosses a
group neither of its ends is in or passes under a node that is not one of its ends. Every template has its
thumbnail (``<name>.jpg``, what the frontend shows on the template card).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import re
import sys
import uuid
from pathlib import Path

import pytest

import host_util as H
import layout_geometry as G

WF_DIR = H.PACK_ROOT / "workflows"
WF_FILES = sorted(WF_DIR.glob("*.json"))
CACHE_NODE_TYPES = ("TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache")
FRONTEND_ONLY = {"MarkdownNote", "Note"}  # registered by the frontend (extensions/core/noteNode.ts)
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SAMPLERS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
CAG = "control_after_generate"
WEIGHTS = H.PACK_ROOT / "tcpade_core" / "weights"
BENCH_FILES = ("model_a_digits.safetensors", "model_b_shapes.safetensors")


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def make_workflows():
    sys.path.insert(0, str(WF_DIR))
    try:
        return importlib.import_module("make_workflows")
    finally:
        sys.path.remove(str(WF_DIR))


# ------------------------------------------------------------------------------------ no host needed


def test_workflows_exist_named_as_template_titles_cpu_first():
    """The frontend titles a template card by its file name: numbered, so a sorted listing (the pack's web
    extension sorts the host's directory-order list) starts with the two CPU workflows."""
    mw = make_workflows()
    names = [p.stem for p in WF_FILES]
    assert names == sorted(mw.NAMES.values())
    assert names[:2] == ["1 TCPade on CPU, tiny shapes", "2 TCPade on CPU, tiny digits"]
    assert ["flux", "wan21", "wan22", "dit"] == [k for k, v in sorted(mw.NAMES.items(), key=lambda kv: kv[1])][2:]
    for n in names:  # a URL path segment as the frontend builds it, a file name on every OS
        assert n.isascii() and not set(n) & set('#?%/\\:*"<>|') and len(n) <= 30, n


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_every_template_has_a_square_jpeg_thumbnail(path):
    """The card shows <name>.jpg (python workflows/make_workflows.py --thumbnails renders it)."""
    jpg = path.with_suffix(".jpg")
    assert jpg.is_file(), f"no thumbnail {jpg.name}: run python workflows/make_workflows.py --thumbnails"
    data = jpg.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and 5_000 < len(data) < 120_000, (jpg.name, len(data))
    i = 2  # the frame header (SOF0-SOF2) holds height and width
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            assert (int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")) == (
                512,
                512,
            )
            break
        i += 2 + length
    else:
        pytest.fail(f"{jpg.name}: no JPEG frame header")
    assert sorted(p.name for p in WF_DIR.glob("*.jpg")) == sorted(p.with_suffix(".jpg").name for p in WF_FILES)


def test_generator_reproduces_the_files(tmp_path):
    mw = make_workflows()
    assert mw.main(["--out", str(tmp_path)]) == 0
    for p in WF_FILES:
        assert (tmp_path / p.name).read_text(encoding="utf-8") == p.read_text(encoding="utf-8"), (
            f"{p.name} is stale: run python workflows/make_workflows.py"
        )
    assert sorted(x.name for x in tmp_path.glob("*.json")) == [p.name for p in WF_FILES]


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_structure_and_links(path):
    wf = load(path)
    assert wf["version"] == 0.4 and uuid.UUID(wf["id"])
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]) and wf["last_node_id"] == max(nodes)
    links = {l[0]: l for l in wf["links"]}
    assert len(links) == len(wf["links"]) and wf["last_link_id"] == max(links)
    for lid, src, oslot, dst, islot, typ in wf["links"]:
        out, inp = nodes[src]["outputs"][oslot], nodes[dst]["inputs"][islot]
        assert lid in out["links"] and inp["link"] == lid, (path.name, lid)
        assert out["type"] == inp["type"] == typ, (path.name, lid)
    for n in wf["nodes"]:
        for inp in n.get("inputs", []):
            assert inp["link"] is None or links[inp["link"]][3] == n["id"]
        for i, out in enumerate(n.get("outputs", [])):
            for lid in out["links"]:
                assert links[lid][1] == n["id"] and links[lid][2] == i
        for key in ("pos", "size"):
            assert len(n[key]) == 2 and all(math.isfinite(v) for v in n[key])
    # every node runs before the nodes it feeds
    for _, src, _, dst, _, _ in wf["links"]:
        assert nodes[src]["order"] < nodes[dst]["order"]


# ------------------------------------------------------------------------------------ same speed, true labels


def note_text(wf: dict) -> str:
    notes = [n["widgets_values"][0] for n in wf["nodes"] if n["type"] in FRONTEND_ONLY]
    assert len(notes) == 1
    return notes[0]


def cache_targets(wf: dict, mw) -> dict:
    """{node id: (the speed target the cache node runs at, the value its target_speedup widget shows)}. TC-Padé
    runs at its preset's target unless the preset is custom (nodes/cache_nodes.py TCPadeCache.target_of)."""
    out = {}
    for n in wf["nodes"]:
        if n["type"] not in CACHE_NODE_TYPES:
            continue
        w = dict(zip([name for name, _ in mw.SPECS[n["type"]].widgets], n["widgets_values"], strict=True))
        shown = w["target_speedup"]
        runs = mw.PRESET_TARGETS[w["preset"]] if w.get("preset", "custom") != "custom" else shown
        out[n["id"]] = (runs, shown)
    return out


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_every_cached_row_runs_at_the_same_speed_target(path):
    """A comparison is fair only at the same speed: every cache node of a workflow runs at the one target
    (make_workflows.TARGET, 2x), and a TC-Padé node's target widget shows the value its preset puts in effect.
    The tiny workflows' run (test_tiny_workflow_runs_headless) checks every row computes the same steps."""
    mw = make_workflows()
    targets = cache_targets(load(path), mw)
    assert targets and set(targets.values()) == {(mw.TARGET, mw.TARGET)}, targets
    assert mw.TARGET == 2.0


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_titles_name_the_method_not_a_setting(path):
    """Node and group titles name a row's method only (no preset, target or threshold), so they stay true
    when a user changes the row's settings; every row's group is named after its method."""
    mw = make_workflows()
    wf = load(path)
    titles = [n.get("title") or "" for n in wf["nodes"]] + [g["title"] for g in wf["groups"]]
    settings = [*mw.PRESET_TARGETS, "slow", "fast", "custom", "=", "2x", "2.8x", "δ", "θ"]
    assert [t for t in titles if any(x in t for x in settings)] == []
    kinds = {v: k for k, v in mw.CACHE_TYPES.items()}
    groups = {g["title"] for g in wf["groups"]}
    for n in wf["nodes"]:
        if n["type"] in CACHE_NODE_TYPES:
            label = mw.LABELS[kinds[n["type"]]]
            assert any(g == label or g.startswith(label + " ") for g in groups), (label, groups)


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_note_describes_the_rows_the_graph_has(path):
    """The note names each cached row's method and the shared target; a comparison of several methods lists
    exactly its rows; a method without a row is named only as absent ("no TaylorSeer row") or in the
    recommendation, never as a row of the graph."""
    mw = make_workflows()
    wf = load(path)
    note = note_text(wf)
    kinds = {v: k for k, v in mw.CACHE_TYPES.items()}
    rows = list(dict.fromkeys(mw.LABELS[kinds[n["type"]]] for n in wf["nodes"] if n["type"] in CACHE_NODE_TYPES))
    assert rows and all(label in note for label in rows)
    assert f"**{mw.TARGET:g}x**" in note
    listed = re.findall(r"the (\w+) cached rows \(([^)]*)\)", note)
    if len(rows) > 1:
        assert listed == [(mw.NUMBERS[len(rows)], mw._and(rows))], listed
        assert f"each computes {int(20 / mw.TARGET + 0.5)} of the 20 steps" in note
    else:
        assert listed == []
    for label in set(mw.LABELS.values()) - set(rows):
        for m in re.finditer(rf"{re.escape(label)}(?:'s)? rows?\b", note):
            assert note[max(0, m.start() - 3) : m.start()] == "no ", (label, note[max(0, m.start() - 60) : m.end()])


# ------------------------------------------------------------------------------------ layout


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_layout_no_overlap_no_wire_across_a_foreign_group(path):
    """Node boxes are the saved position and size plus the 30 px title bar (the browser test checks the
    frontend shows every node at exactly that size); wires are the frontend's curves."""
    wf = load(path)
    problems = G.layout_problems(wf)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_node_sizes_at_least_the_frontend_minimum(path):
    """A node saved smaller than the frontend's minimum for its type (MIN_SIZE, measured in the browser) or
    with a title wider than the node is enlarged on load: it would no longer be where the layout put it."""
    mw = make_workflows()
    for n in load(path)["nodes"]:
        lo = mw.MIN_SIZE[n["type"]]
        assert n["size"][0] >= lo[0] and n["size"][1] >= lo[1], (n["id"], n["type"], n["size"], lo)
        assert G.title_fits(n), (n["id"], n.get("title"), n["size"])


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_reroutes_are_consistent(path):
    """Every native reroute lists exactly the links whose chain passes it; chains end at the link's parentId."""
    wf = load(path)
    extra = wf["extra"]
    rr = {r["id"]: r for r in extra.get("reroutes", [])}
    assert len(rr) == len(extra.get("reroutes", []))
    through = {rid: set() for rid in rr}
    for e in extra.get("linkExtensions", []):
        rid = e["parentId"]
        while rid is not None:
            through[rid].add(e["id"])
            rid = rr[rid].get("parentId")
    for rid, r in rr.items():
        assert set(r["linkIds"]) == through[rid] and through[rid], (path.name, rid)
    paths = G.link_paths(wf)
    assert set(paths) == {l[0] for l in wf["links"]}


def test_layout_check_catches_overlaps_and_crossings():
    """The check fails for what the issue saw: a decoder over its preview, a wire across another branch."""

    def node(i, x, y, w=200, h=100, inputs=(), outputs=()):
        return {
            "id": i,
            "type": "X",
            "pos": [x, y],
            "size": [w, h],
            "inputs": [{"name": n, "type": "IMAGE", "link": l} for n, l in inputs],
            "outputs": [{"name": n, "type": "IMAGE", "links": ls} for n, ls in outputs],
        }

    wf = {
        "nodes": [
            node(1, 0, 0, outputs=[("o", [1])]),
            node(2, 180, 0),  # overlap by 20 px
            node(3, 0, 400, outputs=[("o", [2])]),
            node(4, 900, 900, inputs=[("i", 2)]),
            node(5, 400, 500),
        ],
        "links": [[1, 1, 0, 5, 0, "IMAGE"], [2, 3, 0, 4, 0, "IMAGE"]],
        "groups": [{"title": "other branch", "bounding": [380, 420, 300, 250]}],
        "extra": {},
    }
    problems = G.layout_problems(wf)
    assert any("overlap" in p and "#1" in p and "#2" in p for p in problems), problems
    assert any(p.startswith("wire 2") and "crosses group 'other branch'" for p in problems), problems
    assert not any(p.startswith("wire 1") and "crosses" in p for p in problems), problems  # its target is in it


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_one_seed_fixed_everywhere(path):
    """The branches must differ only in the cache: one seed, never re-randomised on queue."""
    wf = load(path)
    seeds = set()
    steps = set()
    for n in wf["nodes"]:
        if n["type"] == "KSampler":
            seed, cag, st = n["widgets_values"][0:3]
        elif n["type"] == "KSamplerAdvanced":
            _, seed, cag, st = n["widgets_values"][0:4]
        else:
            continue
        assert cag == "fixed", n["id"]
        seeds.add(seed)
        steps.add(st)
    assert len(seeds) == 1 and steps == {20}


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_every_cached_branch_is_compared_with_an_uncached_one(path):
    wf = load(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}

    def upstream(nid, slot=None):
        seen, stack = set(), []
        ins = nodes[nid]["inputs"] if slot is None else [nodes[nid]["inputs"][slot]]
        stack += [links[i["link"]][1] for i in ins if i["link"] is not None]
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack += [links[i["link"]][1] for i in nodes[x]["inputs"] if i["link"] is not None]
        return seen

    caches = {
        i
        for i, n in nodes.items()
        if n["type"].startswith("TCPade_")
        and n["type"] in ("TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache")
    }
    compares = [i for i, n in nodes.items() if n["type"] == "TCPade_Compare"]
    assert compares and caches
    covered = set()
    for c in compares:
        test_up, ref_up = upstream(c, 0), upstream(c, 1)
        assert not (ref_up & caches), "the reference branch must not be cached"
        covered |= test_up & caches
    assert covered == caches


# ------------------------------------------------------------------------------------ host


@pytest.fixture(scope="module")
def host_nodes():
    H.require_host()
    h = H.host()
    # nodes.py puts ComfyUI/comfy first on sys.path, where comfy/utils.py would shadow the host's utils
    # package that comfy_extras -> server imports; import that package from the ComfyUI root first
    if "utils" not in sys.modules or not hasattr(sys.modules["utils"], "__path__"):
        sys.modules.pop("utils", None)
        sys.path.insert(0, str(h.path))
        try:
            importlib.import_module("utils.install_util")
        finally:
            sys.path.remove(str(h.path))
    if "SaveAnimatedWEBP" not in h.nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(h.nodes.init_builtin_extra_nodes())
    H.load_pack()
    return h.nodes.NODE_CLASS_MAPPINGS


def node_info(cls) -> dict:
    if hasattr(cls, "GET_NODE_INFO_V1"):
        info = cls.GET_NODE_INFO_V1()
        return {"input": info["input"], "output": list(info["output"]), "output_name": list(info["output_name"])}
    return {
        "input": cls.INPUT_TYPES(),
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
    }


def split_inputs(info: dict):
    """(socket inputs [(name, type)], widgets [(name, kind, opts, options)]) in the frontend's order."""
    sockets, widgets = [], []
    for section in ("required", "optional"):
        for name, spec in (info["input"].get(section) or {}).items():
            typ, opts = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
            if isinstance(typ, list):
                kind, options = "COMBO", list(typ)
            else:
                kind, options = str(typ), list(opts.get("options", [])) if str(typ) == "COMBO" else None
            if kind in WIDGET_TYPES and not opts.get("forceInput"):
                widgets.append((name, kind, opts, options))
                cag = opts.get("control_after_generate")
                if cag or (cag is None and kind == "INT" and name in ("seed", "noise_seed")):
                    widgets.append((CAG, "CAG", {}, ["fixed", "increment", "decrement", "randomize"]))
            else:
                sockets.append((name, kind))
    return sockets, widgets


def widget_problem(name, kind, opts, options, value, declared_models) -> str | None:
    if kind in ("COMBO", "CAG"):
        if value in options:
            return None
        if value in declared_models:
            return None  # a model file this machine does not have; the frontend offers the download
        return f"{name}={value!r} not in {options[:8]}{'...' if len(options) > 8 else ''}"
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name}={value!r} is not an int"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name}={value!r} is not a number"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}={value!r} is not a boolean"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{name}={value!r} is not a string"
    lo, hi = opts.get("min"), opts.get("max")
    if lo is not None and value < lo or hi is not None and value > hi:
        return f"{name}={value!r} outside [{lo}, {hi}]"
    return None


def outputs_match(node_type: str, saved: list, host: list) -> bool:
    """A node's saved output types against the host's. The pack's own nodes: equal. A host node: equal, or a
    prefix of the host's outputs, i.e. a newer host appended outputs (ComfyUI 0.33.0's SaveImage and
    SaveAnimatedWEBP return their IMAGE). The frontend builds a node from the host's definition and then copies
    the saved slots over it index by index (LGraphNode.configure -> LiteGraph.cloneObject(saved, node.outputs)),
    so a workflow saved with the older outputs loads with all of the host's outputs, and nothing in it can
    link to the ones it lacks. Saving the newer outputs instead would add a socket the older host does not
    declare; one set of files serves both, so the files keep the outputs every supported host declares."""
    if saved == host:
        return True
    return not node_type.startswith("TCPade_") and saved == host[: len(saved)]


@pytest.mark.parametrize("path", WF_FILES, ids=lambda p: p.stem)
def test_nodes_sockets_and_widgets_match_the_host(host_nodes, path):
    wf = load(path)
    problems = []
    for n in wf["nodes"]:
        t = n["type"]
        where = f"{path.name} #{n['id']} {t}"
        if t in FRONTEND_ONLY:
            assert isinstance(n["widgets_values"][0], str)
            continue
        if t not in host_nodes:
            problems.append(f"{where}: node type not registered by the host or the pack")
            continue
        info = node_info(host_nodes[t])
        sockets, widgets = split_inputs(info)
        got_in = [(i["name"], i["type"]) for i in n["inputs"]]
        if got_in != sockets:
            problems.append(f"{where}: socket inputs {got_in} != host {sockets}")
        got_out = [o["type"] for o in n["outputs"]]
        if not outputs_match(t, got_out, [str(x) for x in info["output"]]):
            problems.append(f"{where}: outputs {got_out} != host {info['output']}")
        values = n["widgets_values"]
        if len(values) != len(widgets):
            problems.append(f"{where}: {len(values)} widget values for widgets {[w[0] for w in widgets]}")
            continue
        declared = {m["name"] for m in n["properties"].get("models", [])}
        for (name, kind, opts, options), v in zip(widgets, values):
            p = widget_problem(name, kind, opts, options, v, declared)
            if p:
                problems.append(f"{where}: {p}")
    assert not problems, "\n".join(problems)


def test_generator_specs_match_the_host(host_nodes):
    """make_workflows.SPECS names every widget of every node type it uses in the host's order."""
    mw = make_workflows()
    for t, spec in mw.SPECS.items():
        if spec.frontend_only:
            continue
        sockets, widgets = split_inputs(node_info(host_nodes[t]))
        assert [n for n, _ in spec.inputs] == [s[0] for s in sockets], t
        assert [n for n, _ in spec.widgets] == [w[0] for w in widgets], t
        assert outputs_match(t, [o for _, o in spec.outputs], [str(x) for x in node_info(host_nodes[t])["output"]]), t


def test_generator_presets_are_the_nodes_presets(host_nodes):
    """make_workflows.PRESET_TARGETS (the target a TC-Padé preset runs at) is the node's own table."""
    assert make_workflows().PRESET_TARGETS == H.pack_module("nodes.cache_nodes").PRESETS


def test_notes_name_the_pack_nodes_as_the_ui_shows_them(host_nodes):
    """A pack node a note names in bold is named by its display name (what the node library, the search and
    a new node's title show), and is a node of that workflow; the one exception is the recommendation,
    TaylorSeer Cache, in a workflow that has no TaylorSeer row."""
    names = {t: H.host().nodes.NODE_DISPLAY_NAME_MAPPINGS[t] for t in host_nodes if t.startswith("TCPade_")}
    problems = []
    for path in WF_FILES:
        wf = load(path)
        in_graph = {names[n["type"]] for n in wf["nodes"] if n["type"] in names}
        for b in re.findall(r"\*\*(.+?)\*\*", note_text(wf)):
            if b in names.values():
                if b not in in_graph and b != names["TCPade_TaylorSeer"]:
                    problems.append(f"{path.stem}: {b!r} is not a node of this workflow")
            elif any(d.startswith(b) for d in names.values()):
                problems.append(f"{path.stem}: {b!r} is not the name the UI shows")
    assert problems == []


def test_every_widget_of_the_pack_has_a_display_name_in_one_style(host_nodes):
    """Every widget of the pack's nodes shows a display name: lower-case words (a single-letter symbol after
    them, "interval N"), or a Greek symbol (θ, λ, α1, β, δ); never its snake_case id."""
    style = re.compile(r"^(?:[a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)*(?: [A-Za-z])?|[α-ω]\d?)$")
    problems = []
    for t, cls in host_nodes.items():
        if not t.startswith("TCPade_"):
            continue
        _, widgets = split_inputs(node_info(cls))
        for name, kind, opts, _ in widgets:
            if kind == "CAG":
                continue
            label = opts.get("display_name")
            if not label or not style.match(label):
                problems.append(f"{t}.{name}: {label!r}")
    assert problems == []


# ------------------------------------------------------------------------------------ run the tiny workflow


def to_api(wf: dict, host_nodes) -> dict:
    """UI workflow -> API prompt (what the frontend's graphToPrompt sends), from the host's schemas."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    prompt = {}
    for n in wf["nodes"]:
        if n["type"] in FRONTEND_ONLY or n.get("mode", 0) != 0:
            continue
        _, widgets = split_inputs(node_info(host_nodes[n["type"]]))
        inputs = {name: v for (name, kind, _, _), v in zip(widgets, n["widgets_values"]) if kind != "CAG"}
        for inp in n["inputs"]:
            if inp["link"] is not None:
                _, src, slot, _, _, _ = links[inp["link"]]
                assert src in nodes
                inputs[inp["name"]] = [str(src), slot]
        prompt[str(n["id"])] = {
            "class_type": n["type"],
            "inputs": inputs,
            "_meta": {"title": n.get("title", n["type"])},
        }
    return prompt


class FakeServer:
    """What the executor needs from the PromptServer: a client id and a message sink."""

    def __init__(self):
        self.client_id = "test"
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@pytest.mark.parametrize("which", ["digits", "shapes"])
def test_tiny_workflow_runs_headless(host_nodes, which, tmp_path):
    missing = [f for f in BENCH_FILES if not (WEIGHTS / f).is_file()]
    if missing:
        pytest.skip(f"!!! TINY WORKFLOW RUN SKIPPED: bench weights missing in {WEIGHTS}: {', '.join(missing)}")
    import execution
    import folder_paths

    H.host()  # imports the host (execution, folder_paths)
    wf = load(WF_DIR / f"{make_workflows().NAMES[which]}.json")
    prompt = to_api(wf, host_nodes)
    ok, err, outputs, node_errors = asyncio.run(execution.validate_prompt("tiny", prompt, None))
    assert ok, (err, node_errors)
    old_temp, old_out = folder_paths.get_temp_directory(), folder_paths.get_output_directory()
    folder_paths.set_temp_directory(str(tmp_path / "temp"))
    folder_paths.set_output_directory(str(tmp_path / "out"))
    patcher = H.pack_module("nodes.patcher")
    patcher.LAST_REPORTS.clear()
    server = FakeServer()
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine two threads per process run several times slower
    try:
        ex = H.prompt_executor(server)
        ex.execute(prompt, "tiny-" + which, {"client_id": "test"}, outputs)
    finally:
        torch.set_num_threads(threads)
        folder_paths.set_temp_directory(old_temp)
        folder_paths.set_output_directory(old_out)
    assert ex.success, [m for m in server.messages if m[0] == "execution_error"]
    kinds = {n["type"]: str(n["id"]) for n in wf["nodes"]}
    caches = [str(n["id"]) for n in wf["nodes"] if n["type"] in CACHE_NODE_TYPES]
    assert sorted(patcher.reports_by_node()) == sorted(caches)
    for nid in caches:
        rep = patcher.reports_by_node()[nid]
        assert rep["num_steps"] == 20 and [s["step"] for s in rep["steps"]] == list(range(20))
    # every cached row runs at the one speed target the workflow gives them all (TC-Padé's slow preset, the
    # others' target_speedup): each computed exactly the same number of steps, round(20 / 2) = 10
    target = make_workflows().TARGET
    budget = int(20 / target + 0.5)
    computed = {patcher.reports_by_node()[nid]["label"]: patcher.reports_by_node()[nid]["computed"] for nid in caches}
    assert computed == {k: budget for k in ("TC-Padé", "TaylorSeer", "TeaCache", "TraCache")}, computed
    for nid in caches:
        rep = patcher.reports_by_node()[nid]
        assert rep["target_speedup"] == target and f"budget {budget} of 20" in rep["target_note"], rep["target_note"]
        assert sum(s["computed"] for s in rep["steps"]) == budget
        # a step the target skips says so; a compute the method's own signal moved earlier says "(early)"
        for s in rep["steps"]:
            if not s["computed"]:
                assert s["reason"] in ("budget spacing", "budget spent"), (rep["label"], s)
    # the data-driven gates: a compute moved earlier shows its signal on the computing side of the threshold
    tc = patcher.reports_by_node()[kinds["TCPade_TCPadeCache"]]
    for s in tc["steps"]:
        if s["reason"].endswith("(early)"):
            assert s["computed"] and s["gate"] < tc["threshold"], s
    tea = patcher.reports_by_node()[kinds["TCPade_TeaCache"]]
    assert tea["threshold"] == 0.3 and tea["steps"][0]["computed"]
    for s in tea["steps"]:
        if s["reason"].endswith("(early)"):
            assert s["computed"] and s["gate"] >= 0.3, s
    # the methods without a signal of their own (TaylorSeer, TraCache): the target's even spacing, exactly
    strip = lambda rep: "".join("#" if s["computed"] else "." for s in rep["steps"])
    assert strip(patcher.reports_by_node()[kinds["TCPade_TaylorSeer"]]) == "#." * 10
    assert strip(patcher.reports_by_node()[kinds["TCPade_TraCache"]]) == "#." * 10
    compares = [str(n["id"]) for n in wf["nodes"] if n["type"] == "TCPade_Compare"]
    for cid in compares:
        res = ex.history_result["outputs"][cid]["tcpade_compare"][0]
        assert res["images"] == 8 and res["previewed"] == 8 and 0.0 < res["ssim"] <= 1.0
        assert "mean of 8 images" in res["text"] and "frames" not in res["text"]
        grid = ex.history_result["outputs"][cid]["images"]
        assert len(grid) == 1  # one grid image: 4 x 2 tiles of 256 px (16 or 32 px scaled up sharply)
        assert res["psnr"] is None or res["psnr"] > 10.0
        json.dumps(ex.history_result["outputs"][cid], allow_nan=False)  # what the websocket sends


# ------------------------------------------------------------------------------------ the Compare node


def test_compare_node_scores_like_scikit_image(host_nodes, tmp_path):
    import torch
    import folder_paths

    node = host_nodes["TCPade_Compare"]
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 24, 20, 3, generator=g)
    test = (ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    test[1] = ref[1]  # one identical frame
    old = folder_paths.get_temp_directory()
    folder_paths.set_temp_directory(str(tmp_path))  # the node previews its difference image there
    try:
        check_compare(node, ref, test)
    finally:
        folder_paths.set_temp_directory(old)


def check_compare(node, ref, test):
    import numpy as np
    import torch
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out = node.execute(test, ref, 4.0)
    psnr, ssim, diff = out.args
    r, t = ref.double().numpy(), test.double().numpy()
    want_psnr = np.mean([peak_signal_noise_ratio(r[i], t[i], data_range=1.0) for i in (0, 2)])
    want_ssim = np.mean(
        [structural_similarity(r[i], t[i], data_range=1.0, channel_axis=-1, win_size=7) for i in range(3)]
    )
    assert psnr == pytest.approx(want_psnr, rel=1e-5) and ssim == pytest.approx(want_ssim, rel=1e-5)
    assert torch.allclose(diff, ((test - ref).abs() * 4).clamp(0, 1)) and diff.shape == test.shape
    ui = out.ui
    res = ui["tcpade_compare"][0]
    assert res["identical_images"] == 1 and res["images"] == 3 and ui["text"] == [res["text"]]
    assert "mean of 3 images; PSNR over the 2 that differ" in res["text"] and len(ui["images"]) == 1
    json.dumps(ui, allow_nan=False)
    # identical everywhere: inf PSNR as the output, null in the (JSON) UI payload
    same = node.execute(ref, ref, 1.0)
    assert math.isinf(same.args[0]) and same.args[1] == pytest.approx(1.0)
    assert same.ui["tcpade_compare"][0]["psnr"] is None and "identical" in same.ui["text"][0]
    json.dumps(same.ui, allow_nan=False)
    # one reference image against a batch; a size mismatch fails with a clear message
    one = node.execute(test, ref[:1], 1.0)
    assert one.args[2].shape == test.shape
    with pytest.raises(ValueError, match="differ in size"):
        node.execute(test, ref[:, :20], 1.0)


def test_image_grid_scales_up_sharply(host_nodes, tmp_path):
    """Preview Image Grid (and the Compare preview): 8 images of 16x16 -> 4 x 2 tiles of 256 px, every source
    pixel a 16x16 block of the same colour, 4 px grey gaps; large images are not scaled up."""
    import torch
    import folder_paths

    cn = H.pack_module("nodes.compare_nodes")
    node = host_nodes["TCPade_PreviewGrid"]
    imgs = torch.rand(8, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    old = folder_paths.get_temp_directory()
    folder_paths.set_temp_directory(str(tmp_path))
    try:
        out = node.execute(imgs, 0, 256)
    finally:
        folder_paths.set_temp_directory(old)
    grid = out.args[0]
    assert tuple(grid.shape) == (1, 2 * 256 + 4, 4 * 256 + 3 * 4, 3) and len(out.ui["images"]) == 1
    for i in range(8):
        r, c = divmod(i, 4)
        tile = grid[0, r * 260 : r * 260 + 256, c * 260 : c * 260 + 256]
        assert torch.equal(tile, imgs[i].repeat_interleave(16, 0).repeat_interleave(16, 1))
    assert torch.all(grid[0, 256:260] == cn.GRID_GAP_VALUE)
    assert (
        cn.grid_shape(4, 16, 16) == (2, 2) and cn.grid_shape(1, 7, 7) == (1, 1) and cn.grid_shape(8, 8, 8, 3) == (3, 3)
    )
    big = cn.image_grid(torch.rand(1, 300, 400, 3))
    assert tuple(big.shape) == (1, 300, 400, 3)  # already >= 256 px: unchanged


# ------------------------------------------------------------------------------------ the reports route


def test_reports_route_payload_and_no_server(host_nodes):
    """GET /tcpade/reports: patcher.LAST_REPORTS with the workflow each report ran in (looked up once per
    prompt); without a running server nothing is registered (the pack imports and runs the same)."""
    routes = H.pack_module("nodes.routes")
    asked = []

    def lookup(pid):
        asked.append(pid)
        return {"p1": "wf-a"}.get(pid)

    reports = {
        "8": {"label": "TC-Padé", "prompt_id": "p1"},
        "13": {"label": "TaylorSeer", "prompt_id": "p1"},
        "18": {"label": "TeaCache", "prompt_id": "p2"},
        "23": {"label": "TraCache", "prompt_id": None},
    }
    out = routes.reports_payload(reports, lookup)
    assert {k: v["workflow_id"] for k, v in out.items()} == {"8": "wf-a", "13": "wf-a", "18": None, "23": None}
    assert sorted(asked) == ["p1", "p2"] and out["8"]["label"] == "TC-Padé" and "workflow_id" not in reports["8"]
    assert routes._workflow_id({"extra_pnginfo": {"workflow": {"id": "abc"}}}) == "abc"
    assert routes._workflow_id({}) is None and routes._workflow_id(None) is None
    server = sys.modules.get("server")
    if getattr(getattr(server, "PromptServer", None), "instance", None) is None:
        assert routes.register() is False
