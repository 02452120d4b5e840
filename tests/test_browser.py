"""The pack in a real ComfyUI server and its real frontend, driven by Chromium (Playwright).

A server is started from the ComfyUI checkout on a free port with a throw-away base directory
(``--base-directory``: its own custom_nodes, models, user, input/output/temp) into which the pack
is symlinked as ``custom_nodes/ComfyUI-TCPade``; it is killed at the end. Checks, in the order a new
user meets them:

* the web extension loads; the node library shows a ``tcpade`` folder (with ``models`` in it, no
  unnamed folder) and the node search shows the categories ``tcpade`` / ``tcpade > models``;
* Templates -> Custom Nodes -> ComfyUI-TCPade lists every workflow, the CPU ones first, each card
  with its thumbnail loaded (no 404);
* every shipped workflow loads with no missing node types, the frontend keeps every widget value
  (none re-mapped or reset), combos hold valid options (or a model file the node declares; a node the
  frontend marks for a missing model file is accepted only for files it declares), no validation toast
  appears, every node's saved size is at least the frontend's own minimum for it (computeSize, its
  title included) and it is shown at exactly its saved position and size, overlapping nothing; the
  generator's table of minimum sizes is at least what the frontend computes, and the wires are where
  tests/layout_geometry.py (used by the layout test) computes them;
* the tiny bench workflow is queued and finishes; each cache node's panel shows the numbers of the
  server's ``tcpade.report`` and of its log line in the panel's wording ("target 2x → reached 2.00x"),
  the run's own wall-clock estimate ("est. wall 1.9x (computed step ..., skipped ..., this run)") and no
  figure against another branch, every warning of the run (TeaCache without calibrated coefficients on its
  node), the strip's legend, phase marks only where the steps have phases, the gate plot's axes and a y scale
  that fits the data (values off it counted), or one line for a method without a gate signal; each Compare
  node its branch's computed steps, the mean and the worst image's PSNR, SSIM, the images whose content
  changed, and which branch ran first (a speed-up only when the test branch did);
* every text of every panel is measured on the screen (drawn text boxes, DOM line boxes): none is cut off
  or leaves its node, at the workflows' sizes and at a new node's default size (before and after a run,
  with phases, clipped values, many warnings and a changed image); a line without room is left out whole,
  least important first;
* widgets show their display names (θ, λ, α1, β, interval N); the widgets a preset, mode or speed target
  overrides are disabled, their label drawn whole says why, and so does the tooltip a user sees on them;
  the TC-Padé preset buttons (clicked with the mouse) set the preset and target;
* a page reload keeps the last run on the cache nodes and the Compare nodes (GET /tcpade/reports,
  GET /tcpade/compares);
* a speed target set with the mouse and keyboard (preset custom, target 2.5) is what the run reaches;
* without the extension file (blocked), a workflow still loads and runs.

The same checks run against every frontend the pack supports (1.27 with ComfyUI v0.3.64, 1.49 with ComfyUI
0.33): where the frontends differ (markup of the node library, the node search and its category path, node
ids as numbers or strings, node widths, when the node types are registered) the test asks the page what is
there, it keeps no table per frontend version.

Screenshots go to a temporary directory (``$TCPADE_ARTIFACTS``, default ``<tmp>/tcpade_test_artifacts``);
the repository is never written, except ``docs/screenshot.png`` from the tiny run when
``TCPADE_UPDATE_SCREENSHOT=1`` asks for it explicitly. Skips with one line when there is no
ComfyUI checkout, no Chromium (``apt-get install -y chromium``), no Playwright or no bench weights.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

import host_util as H
import layout_geometry as G

CHROMIUM = Path(os.environ.get("TCPADE_CHROMIUM", "/usr/bin/chromium"))
PACK = Path(os.environ.get("TCPADE_PACK_UNDER_TEST") or H.PACK_ROOT).resolve()  # e.g. an installed copy
ARTIFACTS = Path(os.environ.get("TCPADE_ARTIFACTS") or Path(tempfile.gettempdir()) / "tcpade_test_artifacts")
SCREENSHOT = H.PACK_ROOT / "docs" / "screenshot.png"
BENCH_FILES = ("model_a_digits.safetensors", "model_b_shapes.safetensors")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WORKFLOWS = sorted(p.stem for p in (PACK / "workflows").glob("*.json"))
TINY_SHAPES, TINY_DIGITS = "1 TCPade on CPU, tiny shapes", "2 TCPade on CPU, tiny digits"
CACHE_TYPES = ("TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache")
RUN_TIMEOUT_S = 150
TYPES_TIMEOUT_S = 60  # newer frontends (1.49) register the node types seconds after the canvas exists


def workflow_types():
    """Every node type a shipped workflow uses (the pack's, the core's and the frontend's own MarkdownNote)."""
    return sorted(
        {
            n["type"]
            for p in (PACK / "workflows").glob("*.json")
            for n in json.loads(p.read_text(encoding="utf-8"))["nodes"]
        }
    )


def _why_skip():
    comfy = H.comfy_path()
    if not (comfy / "main.py").is_file() or not (comfy / "comfy").is_dir():
        return f"no ComfyUI checkout at {comfy} (set COMFYUI_PATH)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; the browser is Debian's chromium)"
    missing = [f for f in BENCH_FILES if not (PACK / "tcpade_core" / "weights" / f).is_file()]
    if missing:
        return f"bench weights missing in {PACK / 'tcpade_core' / 'weights'}: {', '.join(missing)}"
    return None


_REASON = _why_skip()
if _REASON:
    pytest.skip(f"!!! BROWSER TESTS SKIPPED: {_REASON}", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402


# ------------------------------------------------------------------------------------ server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / H.PACK_FOLDER).symlink_to(PACK, target_is_directory=True)
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(
        json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False})
    )
    port = _free_port()
    log_path = base / "server.log"
    log = open(log_path, "w")
    # one compute thread: the test checks behaviour, not speed, and CI machines are small and shared
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--base-directory",
            str(base),
            "--database-url",
            "sqlite:///:memory:",
        ],
        cwd=H.comfy_path(),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                _get(url + "/system_stats", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"ComfyUI did not answer in 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield SimpleNamespace(url=url, base=base, log_path=log_path, proc=proc)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / "browser_server.log")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A frontend page with its console errors and page errors collected."""

    def __init__(self, browser, url, block_extension=False):
        self.ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        if block_extension:
            # the file answers with an empty module: the frontend runs as if the pack had no web extension
            self.ctx.route(
                f"**/extensions/{H.PACK_FOLDER}/**",
                lambda route: route.fulfill(
                    status=200, content_type="text/javascript", body="// tcpade extension blocked by the test\n"
                ),
            )
        self.page = self.ctx.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e.stack or e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))
        self.block_extension = block_extension
        self.page.goto(url)
        self._ready()

    def _ready(self):
        self.page.wait_for_function(
            "window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.canvas", timeout=90_000
        )
        # the canvas can exist before the node types are registered (frontend 1.49: seconds later): wait for
        # every type a shipped workflow uses
        self.page.wait_for_function(
            "(types) => typeof LiteGraph !== 'undefined' && types.every(t => t in LiteGraph.registered_node_types)",
            arg=workflow_types(),
            timeout=TYPES_TIMEOUT_S * 1000,
            polling=250,
        )
        if not self.block_extension:
            self.page.wait_for_function("window.tcpade !== undefined", timeout=30_000)
        self.page.evaluate(INSTALL_LISTENERS, not self.block_extension)

    def reload(self):
        """Reload the page: the frontend restores the open workflow; the extension starts with no state."""
        self.page.reload()
        self._ready()

    def ours(self):
        """Errors that come from this pack's files or URLs (the frontend logs its own, unrelated ones)."""
        return [e for e in self.errors if "tcpade" in urllib.parse.unquote(e).lower()]

    def close(self):
        self.ctx.close()


INSTALL_LISTENERS = """(reports) => {
  const api = window.comfyAPI.api.api;
  window.__t = {reports: [], executed: {}, done: null};
  if (reports) api.addEventListener('tcpade.report', e => window.__t.reports.push(e.detail));
  api.addEventListener('executed', e => { window.__t.executed[e.detail.node] = e.detail.output; });
  api.addEventListener('execution_success', () => { window.__t.done = 'ok'; });
  api.addEventListener('execution_error', e => { window.__t.done = 'error: ' + JSON.stringify(e.detail).slice(0, 2000); });
}"""

LOAD_WORKFLOW = """async (name) => {
  const app = window.comfyAPI.app.app;
  const res = await fetch('/api/workflow_templates/' + encodeURIComponent(PACK_FOLDER) + '/' + encodeURIComponent(name) + '.json');
  if (!res.ok) return {error: 'HTTP ' + res.status};
  const wf = await res.json();
  const missing = wf.nodes.filter(n => !(n.type in LiteGraph.registered_node_types)).map(n => n.type);
  await app.loadGraphData(wf, true, true, name, {showMissingModelsDialog: false});
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const problems = [];
  const byId = new Map(app.graph.nodes.map(n => [String(n.id), n]));
  // the model files the frontend itself found missing, per node id: frontend 1.49 marks such a loader
  // has_errors (older frontends keep no list and mark nothing). The test server has none of the big models.
  const missingModels = new Map();
  const pinia = document.querySelector('[data-v-app]')?.__vue_app__?.config?.globalProperties?.$pinia;
  for (const m of pinia?._s?.get('missingModel')?.missingModelCandidates ?? [])
    if (m.nodeId !== null && m.nodeId !== undefined)
      missingModels.set(String(m.nodeId), [...(missingModels.get(String(m.nodeId)) ?? []), m]);
  for (const j of wf.nodes) {
    const n = byId.get(String(j.id));
    if (!n) { problems.push(`#${j.id} ${j.type}: not in the graph`); continue; }
    if (n.type !== j.type) problems.push(`#${j.id}: type ${n.type} != ${j.type}`);
    const models = new Set((j.properties?.models ?? []).map(m => m.name));
    if (n.has_errors) {
      // an error only for model files this node declares (properties.models) and its widgets name
      const why = missingModels.get(String(n.id)) ?? [];
      const declared = why.filter(m => models.has(m.name) &&
                                        n.widgets?.find(w => w.name === m.widgetName)?.value === m.name);
      if (!why.length || declared.length !== why.length)
        problems.push(`#${j.id} ${j.type}: has_errors` +
                      (why.length ? ` (missing ${why.map(m => m.widgetName + '=' + m.name).join(', ')})` : ''));
    }
    const got = n.serialize().widgets_values ?? [];
    if (JSON.stringify(got) !== JSON.stringify(j.widgets_values ?? []))
      problems.push(`#${j.id} ${j.type}: widgets ${JSON.stringify(got)} != ${JSON.stringify(j.widgets_values)}`);
    for (const w of n.widgets ?? []) {
      if (w.type === 'combo' && Array.isArray(w.options?.values) && !w.options.values.includes(w.value) && !models.has(w.value))
        problems.push(`#${j.id} ${j.type}: ${w.name}=${JSON.stringify(w.value)} not an option`);
      if (w.type === 'number' && ((w.options?.min !== undefined && w.value < w.options.min) ||
                                  (w.options?.max !== undefined && w.value > w.options.max)))
        problems.push(`#${j.id} ${j.type}: ${w.name}=${w.value} out of range`);
    }
  }
  // where and how large the frontend shows each node, and the smallest size it allows it (its title included)
  const shown = app.graph.nodes.map(n => [n.id, [...n.pos], [...n.size], [...n.computeSize()]]);
  return {missing, problems, shown, nodes: app.graph.nodes.length, links: app.graph.links.size ?? Object.keys(app.graph.links).length,
          jsonNodes: wf.nodes.length, jsonLinks: wf.links.length,
          toasts: [...document.querySelectorAll('.p-toast-message')].map(e => [e.className, e.textContent])
            .filter(([c, t]) => /toast-message-(warn|error)/.test(c) || /validation|links fixed/i.test(t)).map(x => x[1]),
          dialogs: [...document.querySelectorAll('.p-dialog')].map(e => e.textContent.slice(0, 200))};
}""".replace("PACK_FOLDER", json.dumps(H.PACK_FOLDER), 1)

PANELS = """() => window.comfyAPI.app.app.graph.nodes.filter(n => n.tcpadePanel).map(n => ({
  id: String(n.id), type: n.type, data: {...n.tcpadePanel.el.dataset},
  lines: n.tcpadePanel.lines.map(l => l.textContent),
  notes: n.tcpadePanel.notes ? n.tcpadePanel.notes.textContent : null,
  notesShown: n.tcpadePanel.notes ? [n.tcpadePanel.notes.offsetHeight, n.tcpadePanel.notes.scrollHeight] : null,
  axes: n.tcpadePanel.canvas ? n.tcpadePanel.canvas.dataset.axes : null,
  canvas: n.tcpadePanel.canvas ? {...n.tcpadePanel.canvas.dataset} : null}))"""

# Every text a panel shows, measured on the screen (the extension's textBoxes: DOM text by its line boxes, canvas
# text by the boxes it was drawn in): each node is shown at scale 1 in turn, then every text box must lie inside
# its panel (canvas text inside the canvas), the panel inside its node, and no two canvas texts may overlap.
# Returns {id: {problems, texts: [[where, text]], leftOut}}.
TEXT_FITS = """async (ids) => {
  const app = window.comfyAPI.app.app;
  const frames = (k) => new Promise(r => { const f = () => (k-- > 0 ? requestAnimationFrame(f) : r()); f(); });
  const within = (a, o, tol = 0.5) => a[0] >= o[0] - tol && a[1] >= o[1] - tol && a[2] <= o[2] + tol && a[3] <= o[3] + tol;
  const overlap = (a, b, tol = 1) => Math.min(a[2], b[2]) - Math.max(a[0], b[0]) > tol && Math.min(a[3], b[3]) - Math.max(a[1], b[1]) > tol;
  const r = (b) => b.map(v => Math.round(v * 10) / 10);
  const out = {};
  for (const id of ids) {
    const n = app.graph.nodes.find(n => String(n.id) === String(id));
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [-n.pos[0] + 120, -n.pos[1] + 150];
    app.canvas.setDirty(true, true);
    let b = null;
    for (let k = 0; k < 40; k++) {   // the frontend places DOM widgets when it draws: wait until this one is placed
      await frames(2);
      b = window.tcpade.textBoxes(n);
      if (b.panel[2] > b.panel[0] && within(b.panel, b.node, 1) && b.items.length) break;
    }
    await new Promise(res => setTimeout(res, 150));
    b = window.tcpade.textBoxes(n);
    const problems = [];
    if (!(b.panel[2] > b.panel[0])) problems.push('panel not shown');
    if (!within(b.panel, b.node)) problems.push(`panel ${r(b.panel)} outside its node ${r(b.node)}`);
    if (b.canvas && !within(b.canvas, b.panel)) problems.push(`canvas ${r(b.canvas)} outside its panel ${r(b.panel)}`);
    for (const it of b.items) {
      const o = it.where === 'canvas' ? b.canvas : b.panel;
      if (!within(it.box, o)) problems.push(`${it.where} text ${JSON.stringify(it.text)} ${r(it.box)} cut off by ${r(o)}`);
    }
    const cv = b.items.filter(it => it.where === 'canvas');
    cv.forEach((a, i) => cv.slice(i + 1).forEach(c => overlap(a.box, c.box) &&
      problems.push(`canvas texts overlap: ${JSON.stringify(a.text)} ${r(a.box)}, ${JSON.stringify(c.text)} ${r(c.box)}`)));
    out[String(id)] = {problems, texts: b.items.map(it => [it.where, it.text]), leftOut: b.leftOut};
  }
  return out;
}"""


def assert_text_fits(page, ids) -> dict:
    """Every panel text of these nodes is inside its panel and node (see TEXT_FITS); returns what was measured."""
    got = page.evaluate(TEXT_FITS, [str(i) for i in ids])
    bad = {i: g["problems"] for i, g in got.items() if g["problems"]}
    assert bad == {}, bad
    return got


# Compare node id -> the ids of the cache nodes upstream of its "test" input (through the sampler)
BRANCH_CACHES = """() => { const g = window.comfyAPI.app.app.graph; const out = {};
  for (const c of g.nodes.filter(n => n.type === 'TCPade_Compare')) {
    const seen = new Set(); const found = []; const st = [c.getInputNode(c.inputs.findIndex(i => i.name === 'test'))];
    while (st.length) { const m = st.pop(); if (!m || seen.has(m.id)) continue; seen.add(m.id);
      if (m.type.startsWith('TCPade_') && m.tcpadePanel && m.type !== 'TCPade_Compare') found.push(String(m.id));
      (m.inputs ?? []).forEach((_, i) => st.push(m.getInputNode(i))); }
    out[String(c.id)] = found; }
  return out; }"""


def canvas_texts(fit) -> list:
    return [t for where, t in fit["texts"] if where == "canvas"]


FOCUS_NODE = """([type, scale]) => {
  const app = window.comfyAPI.app.app;
  const n = app.graph.nodes.find(n => n.type === type);
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [-n.pos[0] + 60, -n.pos[1] + 110];
  app.canvas.setDirty(true, true);
  return n.id;
}"""

WIDGET_POINT = """([type, name]) => {
  const app = window.comfyAPI.app.app;
  const n = app.graph.nodes.find(n => n.type === type);
  const w = n.widgets.find(w => w.name === name);
  const H = LiteGraph.NODE_WIDGET_HEIGHT;
  const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] + (w.last_y ?? w.y) + H / 2]);
  const r = app.canvas.canvas.getBoundingClientRect();
  return [r.left + x, r.top + y];
}"""


def widget_values(page, type_):
    return page.evaluate(
        """(type) => Object.fromEntries(window.comfyAPI.app.app.graph.nodes.find(n => n.type === type)
        .widgets.map(w => [w.name, w.value]))""",
        type_,
    )


def run_queued(page) -> float:
    t0 = time.time()
    page.evaluate("window.__t.done = null; window.__t.reports = []; window.comfyAPI.app.app.queuePrompt(0, 1)")
    page.wait_for_function("window.__t.done !== null", timeout=RUN_TIMEOUT_S * 1000, polling=250)
    done = page.evaluate("window.__t.done")
    assert done == "ok", done
    page.wait_for_timeout(300)  # let the extension render after the last event
    return time.time() - t0


LOG_LINE = re.compile(r"(TC-Padé|TaylorSeer|TeaCache|TraCache): computed (\d+)/(\d+) steps \(([\d.]+)x\).*\[([#.]+)\]")


# frame one row: the group that holds the cache node of a type and the Compare node its branch feeds, as large as
# it fits (found by the graph, not by titles: the workflows name rows by method only)
FRAME_ROW = """(type) => {
  const app = window.comfyAPI.app.app;
  const n = app.graph.nodes.find(n => n.type === type);
  const g = app.graph.groups.find(g => n.pos[0] >= g._bounding[0] && n.pos[1] >= g._bounding[1] &&
    n.pos[0] <= g._bounding[0] + g._bounding[2] && n.pos[1] <= g._bounding[1] + g._bounding[3]);
  const feeds = (c) => { const seen = new Set(); const st = [c.getInputNode(c.inputs.findIndex(i => i.name === 'test'))];
    while (st.length) { const m = st.pop(); if (!m || seen.has(m.id)) continue; seen.add(m.id); if (m.id === n.id) return true;
      (m.inputs ?? []).forEach((_, i) => st.push(m.getInputNode(i))); } return false; };
  const c = app.graph.nodes.find(m => m.type === 'TCPade_Compare' && feeds(m));
  const b = [g._bounding[0], g._bounding[1], g._bounding[0] + g._bounding[2], g._bounding[1] + g._bounding[3]];
  if (c) { b[2] = Math.max(b[2], c.pos[0] + c.size[0] + 20); b[3] = Math.max(b[3], c.pos[1] + c.size[1] + 20); }
  b[0] = Math.min(b[0], n.pos[0] - 10);
  const el = app.canvas.canvas;
  // frontends that draw their side toolbar over the canvas (1.49): frame the row right of it
  const bar = [...document.querySelectorAll('.side-tool-bar-container, nav, aside')]
    .map(e => e.getBoundingClientRect()).filter(r => r.left < 5 && r.height > el.clientHeight / 2 && r.width < 200);
  const left = Math.max(0, ...bar.map(r => r.right)) - el.getBoundingClientRect().left;
  const w = el.clientWidth - Math.max(0, left);
  const s = Math.min(w / (b[2] - b[0] + 40), el.clientHeight / (b[3] - b[1] + 40));
  app.canvas.ds.scale = s;
  app.canvas.ds.offset = [-b[0] + Math.max(0, left) / s + (w / s - (b[2] - b[0])) / 2, -b[1] + (el.clientHeight / s - (b[3] - b[1])) / 2];
  app.canvas.setDirty(true, true);
  return s;
}"""


# ------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def ui(server, browser):
    p = Page(browser, server.url)
    yield p
    p.close()


def test_extension_loaded_and_workflows_served(ui, server):
    exts = _get(server.url + "/extensions")
    assert f"/extensions/{H.PACK_FOLDER}/tcpade.js" in exts
    names = _get(server.url + "/workflow_templates")[H.PACK_FOLDER]
    assert sorted(names) == WORKFLOWS and len(WORKFLOWS) >= 6
    for name in names:  # the card's thumbnail, where the frontend asks for it
        with urllib.request.urlopen(
            f"{server.url}/api/workflow_templates/{H.PACK_FOLDER}/{urllib.parse.quote(name)}.jpg", timeout=5
        ) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert ui.page.evaluate("typeof window.tcpade.compareTiming") == "function"
    assert not ui.ours(), ui.ours()


# The node search box (double click on the empty canvas): frontend 1.27 shows a PrimeVue autocomplete (options
# with an aria-label and an ".option-category"), frontend 1.49 a list of options under #results-list (the
# display name and the category path in the option's rows). Each option as [display name, category shown].
SEARCH_MASK = ".node-search-box-dialog-mask, .p-dialog-mask:has([role=search])"
SEARCH_OPTIONS = """() => [...document.querySelectorAll('.p-autocomplete-option, #results-list [role=option]')].map(o => {
  const name = o.getAttribute('aria-label') ?? o.querySelector('.option-container .truncate')?.textContent ?? '';
  const cat = o.querySelector('.option-category') ??
              o.querySelector('.option-container > div > div:nth-child(2) > span:first-child');
  return [name.trim(), cat ? cat.textContent.trim() : null]; })"""


def category_path(shown):
    """A category as the search box shows it ("tcpade > models" or "tcpade / models") -> ["tcpade", "models"];
    a dangling separator ("tcpade >") leaves an empty last part."""
    return [part.strip() for part in re.split(r"[>/]", shown.strip())]


def open_node_search(page, text: str) -> None:
    """Open the node search box (double click on the empty canvas), type ``text`` and wait for categorised
    options. A double click the canvas swallows (it happens right after a sidebar or dialog closes) is repeated."""
    page.wait_for_selector(SEARCH_MASK, state="detached", timeout=5_000)  # a closing one
    for attempt in range(3):
        page.mouse.dblclick(1200, 700)
        try:
            page.wait_for_selector(SEARCH_MASK, timeout=3_000)
            break
        except Exception:
            if attempt == 2:
                raise
    page.keyboard.type(text)
    page.wait_for_function(
        f"(t) => ({SEARCH_OPTIONS})().some(([label, cat]) => label.toLowerCase().includes(t.toLowerCase()) && cat)",
        arg=text,
        timeout=10_000,
    )


def close_node_search(page) -> None:
    page.keyboard.press("Escape")
    page.wait_for_selector(SEARCH_MASK, state="detached", timeout=5_000)


# The node library's tree as [level, label] in display order: frontend 1.27 nests PrimeVue tree nodes (the
# label in aria-label), 1.49 renders one flat row per visible entry (the label is the row's text); both mark
# each entry role=treeitem with its aria-level.
LIBRARY_TREE = """() => [...document.querySelectorAll('.side-bar-panel [role=treeitem]')].map(n =>
    [+n.getAttribute('aria-level'), (n.getAttribute('aria-label') ?? n.textContent).trim()])"""


def test_node_library_shows_the_tcpade_folder(ui):
    """Node library: a "tcpade" folder with the nodes and a "models" folder, no unnamed folder; the node
    search shows the categories "tcpade" and "tcpade > models" (never a dangling "tcpade >")."""
    page = ui.page
    page.click("button.node-library-tab-button")
    page.get_by_text("tcpade", exact=True).click()
    page.get_by_text("models", exact=True).first.click()
    # the folders open asynchronously: wait until a level-3 entry (inside tcpade > models) is rendered
    page.wait_for_function(
        f"() => ({LIBRARY_TREE})().some(([lvl, label]) => lvl === 3 && label === 'Bench Latent')", timeout=10_000
    )
    tree = page.evaluate(LIBRARY_TREE)
    top = [t for t in tree if t[0] == 1]
    assert ("tcpade" in [t[1] for t in top]) and all(t[1].strip() for t in tree), tree
    i = [list(t) for t in tree].index([1, "tcpade"])
    inside = []
    for t in tree[i + 1 :]:
        if t[0] == 1:
            break
        inside.append(t[:2])
    assert [2, "models"] in [list(x) for x in inside]
    assert {
        "TC-Padé Cache",
        "TaylorSeer Cache",
        "TeaCache (block residual)",
        "TraCache",
        "Compare to Reference (PSNR / SSIM)",
        "Preview Image Grid (sharp upscale)",
    } <= {name for lvl, name in inside if lvl == 2}
    assert {
        "Load Bench Model (tiny, CPU)",
        "Bench Latent",
        "Bench Decode",
        "Load DiT (DiT-XL/2)",
        "Class Label (DiT / bench)",
    } <= {name for lvl, name in inside if lvl == 3}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "node_library.png"))
    page.click("button.node-library-tab-button")  # close the sidebar
    # the node search box (double click on the empty canvas)
    page.evaluate(
        "() => { const c = window.comfyAPI.app.app.canvas; c.ds.offset = [5000, 5000]; c.setDirty(true, true); }"
    )
    open_node_search(page, "bench")
    page.wait_for_timeout(500)
    options = page.evaluate(SEARCH_OPTIONS)
    ours = {label: category_path(cat) for label, cat in options if cat and cat.startswith("tcpade")}
    assert ours.get("Bench Latent") == ours.get("Bench Decode") == ["tcpade", "models"], options
    page.screenshot(path=str(ARTIFACTS / "node_search.png"))
    close_node_search(page)
    open_node_search(page, "TC-Pad")
    options = page.evaluate(SEARCH_OPTIONS)
    assert ["TC-Padé Cache", ["tcpade"]] in [[label, category_path(cat or "")] for label, cat in options], options
    cats = {tuple(category_path(cat)) for _, cat in options if cat and cat.startswith("tcpade")}
    assert cats <= {("tcpade",), ("tcpade", "models")}, cats  # no dangling "tcpade >"
    close_node_search(page)
    assert not ui.ours(), ui.ours()


def server_url(p: "Page") -> str:
    return p.page.evaluate("location.origin")


def test_templates_dialog_lists_cpu_workflows_first_with_thumbnails(ui):
    """Templates -> Custom Nodes -> <the pack's folder>: one card per workflow, titled by its file name, in
    file-name order (the extension sorts the host's directory-order list), each thumbnail loaded."""
    page = ui.page
    thumbs = []
    page.on("response", lambda r: r.url.endswith(".jpg") and thumbs.append((r.status, urllib.parse.unquote(r.url))))
    page.click("button.templates-tab-button")
    page.get_by_text(H.PACK_FOLDER, exact=True).first.click()
    page.wait_for_function(
        """(n) => { const imgs = [...document.querySelectorAll('[data-testid^="template-workflow-"] img')];
        return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=len(WORKFLOWS),
        timeout=20_000,
    )
    cards = page.evaluate("""() => [...document.querySelectorAll('[data-testid^="template-workflow-"]')].map(c =>
        [c.getAttribute('data-testid').slice('template-workflow-'.length), c.querySelector('img').naturalWidth,
         c.querySelector('img').naturalHeight, c.innerText])""")
    assert [c[0] for c in cards] == WORKFLOWS  # file-name order: CPU first
    assert all(c[1:3] == [512, 512] and c[0] in c[3] for c in cards), cards  # thumbnail shown, title = name
    base = f"{server_url(ui)}/api/workflow_templates/{H.PACK_FOLDER}/"
    assert sorted(thumbs) == sorted((200, f"{base}{name}.jpg") for name in WORKFLOWS), thumbs
    text = page.evaluate("() => document.querySelector('[data-testid=template-workflows-content]').innerText")
    positions = [text.find(name) for name in WORKFLOWS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions
    assert WORKFLOWS[:2] == [TINY_SHAPES, TINY_DIGITS]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "templates_dialog.png"))
    # a click on the first card opens it, as a new user would (the next test runs it)
    page.click(f'[data-testid="template-workflow-{TINY_SHAPES}"]')
    wid = json.loads((PACK / "workflows" / f"{TINY_SHAPES}.json").read_text(encoding="utf-8"))["id"]
    page.wait_for_function(
        "(id) => window.comfyAPI.app.app.graph.id === id && !document.querySelector("
        "'[data-testid=template-workflows-content]')",
        arg=wid,
        timeout=20_000,
    )
    page.evaluate("() => document.activeElement?.blur()")
    assert not ui.ours(), ui.ours()


def test_tiny_workflow_runs_and_panels_show_the_server_numbers(ui, server):
    """The first template, opened from its card by the previous test, run as it is."""
    wid = json.loads((PACK / "workflows" / f"{TINY_SHAPES}.json").read_text(encoding="utf-8"))["id"]
    if ui.page.evaluate("window.comfyAPI.app.app.graph.id") != wid:  # run alone (-k): open it here
        r = ui.page.evaluate(LOAD_WORKFLOW, TINY_SHAPES)
        assert r["missing"] == [] and r["problems"] == []
    before = server.log_path.read_text()
    seconds = run_queued(ui.page)
    reports = {str(x["node"]): x for x in ui.page.evaluate("window.__t.reports")}
    executed = ui.page.evaluate("window.__t.executed")
    panels = ui.page.evaluate(PANELS)
    log = server.log_path.read_text()[len(before) :]
    log_lines = {m.group(1): m for m in LOG_LINE.finditer(log)}
    caches = [p for p in panels if p["type"] in CACHE_TYPES]
    compares = [p for p in panels if p["type"] == "TCPade_Compare"]
    assert len(caches) == 4 and len(compares) == 4
    # the shipped comparison is at one speed: every cached row computed the same number of steps
    assert len({reports[p["id"]]["computed"] for p in caches}) == 1, {
        p["id"]: reports[p["id"]]["computed"] for p in caches
    }
    for p in caches:
        rep = reports[p["id"]]  # payload.node == node id
        strip = "".join("#" if s["computed"] else "." for s in rep["steps"])
        d = p["data"]
        assert (int(d["computed"]), int(d["numSteps"]), d["strip"]) == (rep["computed"], rep["num_steps"], strip)
        assert d["speedup"] == f"{rep['speedup']:.2f}" and rep["num_steps"] == 20 and d["source"] == "live"
        speed = (
            f"target {rep['target_speedup']:g}x → reached {rep['speedup']:.2f}x"
            if rep["target_speedup"]
            else f"{rep['speedup']:.2f}x speed-up"
        )
        assert p["lines"][0] == f"computed {rep['computed']}/{rep['num_steps']} steps · {speed}"
        m = log_lines[rep["label"]]  # the server's own log line says the same
        assert (int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)) == (
            rep["computed"],
            rep["num_steps"],
            f"{rep['speedup']:.2f}",
            strip,
        )
        assert float(d["seconds"]) > 0
        # one speed figure of the run's own: the server's in-run estimate, never one against another branch
        est = (rep.get("timing") or {}).get("estimated_speedup")
        if est is None:
            assert "est. wall" not in p["lines"][1] and d["estSpeedup"] == ""
        else:
            t = rep["timing"]
            assert p["lines"][1].startswith(f"est. wall {est:.2f}x (computed step ") and ", this run)" in p["lines"][1]
            assert d["estSpeedup"] == f"{est:.2f}" and (t["skipped_s"] is None or ", skipped " in p["lines"][1])
        shown = re.search(r"sampling ([0-9.]+) s$", p["lines"][1])  # the panel rounds the full-precision time
        assert shown and float(shown.group(1)) == pytest.approx(float(d["seconds"]), abs=0.0051), p["lines"][1]
        assert not any("vs. reference" in line or "wall vs" in line for line in p["lines"])
        # every warning of the run is on the node, each on its own line
        assert p["notes"] == "\n".join(f"⚠ {n}" for n in rep["notes"])
        # the strip's legend; phase marks only for phases that exist (TC-Padé's default reading reports "mid")
        c = p["canvas"]
        phases = {s["phase"] for s in rep["steps"]} & {"early", "late"}
        assert c["legend"] == "computed|skipped" + ("|early|mid|late" if phases else "") and c["phases"] == (
            "1" if phases else ""
        )
        if c["gate"] == "plot":
            # the y scale fits the data: a value off it is drawn at its edge and counted
            kind, rng = c["scale"].split(" ")
            lo, hi = map(float, rng.split(".."))
            vals = [s["gate"] for s in rep["steps"] if s["gate"] is not None]
            above = sum(v > hi * (1 + 1e-9) for v in vals)
            below = sum(v < lo - abs(lo) * 1e-9 or (kind == "log" and v <= 0) for v in vals)
            assert c["clipped"] == f"{above} above, {below} below" and len(c["ticks"].split(",")) >= 2
            assert lo <= rep["threshold"] <= hi
        else:
            assert c["gate"] == "no gate signal (fixed schedule)" and rep["threshold"] is None
    by_type = {p["type"]: p for p in caches}
    tc, tea = by_type["TCPade_TCPadeCache"], by_type["TCPade_TeaCache"]
    assert tc["lines"][0] == "computed 10/20 steps · target 2x → reached 2.00x"  # the slow preset: a 2x target
    # where the schedule came from: no calibration in this throw-away user directory
    assert tc["lines"][2] == "budget 10 of 20 computes, spaced evenly · not calibrated (Calibrate plans the schedule)"
    assert tc["canvas"]["scale"].startswith("log ") and tea["canvas"]["scale"].startswith("linear ")
    assert (
        tea["notes"].startswith("⚠ no calibrated TeaCache coefficients for ") and "tune δ or calibrate" in tea["notes"]
    )
    assert [p["notes"] for p in caches if p["type"] != "TCPade_TeaCache"] == ["", "", ""]
    prompt_s = float(re.search(r"Prompt executed in ([\d.]+) seconds", log).group(1))
    feeds = ui.page.evaluate(BRANCH_CACHES)
    for p in compares:
        res = executed[p["id"]]["tcpade_compare"][0]
        d = p["data"]
        assert "mean of 8 images" in res["text"] and len(res["per_image_psnr"]) == 8
        # the branch's computed steps (its cache node's report), the mean and the worst image's PSNR, SSIM
        (cache_id,) = feeds[p["id"]]
        rep = reports[cache_id]
        worst = f" · worst {res['worst_psnr']:.1f} dB (image {res['worst_index'] + 1})"
        assert p["lines"][0] == (
            f"computed {rep['computed']}/{rep['num_steps']} · PSNR mean {res['psnr']:.1f} dB"
            f"{worst} · SSIM {res['ssim']:.3f}"
        )
        assert (
            res["worst_psnr"] == min(res["per_image_psnr"]) and d["computed"] == f"{rep['computed']}/{rep['num_steps']}"
        )
        if res["changed"]:  # images whose content changed (PSNR below the server's floor) are marked
            assert p["lines"][1].startswith(f"⚠ {len(res['changed'])} image")
            assert all(f"#{i + 1}" in p["lines"][1] for i in res["changed"][:6])
        else:
            assert p["lines"][1] == ""
        assert p["lines"][3] == "difference ×4 of the 8 images: black = identical"
        assert len(executed[p["id"]]["images"]) == 1  # one grid image
        if res["psnr"] is None:
            assert d["psnr"] == "inf"
        else:
            assert float(d["psnr"]) == pytest.approx(res["psnr"], rel=1e-12)
        assert float(d["ssim"]) == pytest.approx(res["ssim"], rel=1e-12)
        test_s, ref_s = float(d["testSeconds"]), float(d["refSeconds"])
        assert 0 < test_s < prompt_s and 0 < ref_s < prompt_s
        # the branch that ran first also warmed the device up: a speed-up only when that was the test branch
        if d["first"] == "test":
            assert p["lines"][2].startswith("test ran first · ") and float(d["speedup"]) == pytest.approx(
                ref_s / test_s, abs=0.011
            )
            assert p["lines"][2].endswith(f" · {d['speedup']}x")
        else:
            assert d["first"] == "reference" and d["speedup"] == ""
            assert p["lines"][2] == "⚠ reference ran first (includes warm-up): timings not comparable"
    assert seconds < RUN_TIMEOUT_S
    # at the workflow's sizes every text is whole and inside its node; what matters most is never left out
    fits = assert_text_fits(ui.page, [p["id"] for p in panels])
    for p in caches:
        assert canvas_texts(fits[p["id"]])[:2] == ["computed", "skipped"]  # the legend is drawn
        assert fits[p["id"]]["leftOut"] in ("", p["lines"][2]), fits[p["id"]]  # only the target note may go
    for p in compares:
        assert fits[p["id"]]["leftOut"] in ("", p["lines"][3]), fits[p["id"]]  # only the difference legend may go
    axes = {p["type"]: p["axes"] for p in ui.page.evaluate(PANELS)}  # as drawn (each was on screen)
    assert axes["TCPade_TCPadeCache"].split("|", 1) in (
        ["stability score", "step|θ = 1.00"],
        ["score", "step|θ = 1.00"],
    )
    assert axes["TCPade_TeaCache"].split("|", 1) in (["distance", "step|δ = 0.30"], ["dist.", "step|δ = 0.30"])
    assert axes["TCPade_TaylorSeer"] == axes["TCPade_TraCache"] == "step"
    assert "no gate signal (fixed schedule)" in canvas_texts(fits[by_type["TCPade_TraCache"]["id"]])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui.page.evaluate(FRAME_ROW, "TCPade_TCPadeCache")  # the TC-Padé row: cache panel, previews, Compare
    ui.page.wait_for_timeout(600)
    shot = ARTIFACTS / "tiny_shapes_after_run.png"
    ui.page.screenshot(path=str(shot))
    if os.environ.get("TCPADE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
    ui.page.evaluate(FRAME_ROW, "TCPade_TeaCache")
    ui.page.wait_for_timeout(500)
    ui.page.screenshot(path=str(ARTIFACTS / "tiny_shapes_teacache_after_run.png"))
    shown = {p["type"]: p["notesShown"] for p in ui.page.evaluate(PANELS)}["TCPade_TeaCache"]
    assert 0 < shown[0] and shown[1] <= shown[0] + 1, shown  # the warning is on screen, not cut off
    assert not ui.ours(), ui.ours()


def test_panel_wording(ui):
    """The first panel line with and without a target, and for an interrupted run."""
    line = lambda rep: ui.page.evaluate("(rep) => window.tcpade.resultLine(rep)", rep)
    base = {"computed": 8, "num_steps": 20, "speedup": 2.5, "target_speedup": None, "interrupted": False}
    assert line(base) == "computed 8/20 steps · 2.50x speed-up"
    assert line({**base, "target_speedup": 2.5}) == "computed 8/20 steps · target 2.5x → reached 2.50x"
    assert (
        line({**base, "computed": 10, "speedup": 2.0, "target_speedup": 2.0})
        == "computed 10/20 steps · target 2x → reached 2.00x"
    )
    assert (
        line({**base, "computed": 4, "num_steps": 7, "planned_steps": 20, "speedup": 1.75, "interrupted": True})
        == "interrupted at step 7/20 · computed 4/7 steps · 1.75x speed-up"
    )
    assert (
        line(
            {
                **base,
                "computed": 0,
                "num_steps": 0,
                "speedup": 0.0,
                "inactive": "the model never reached the pack's hooks",
            }
        )
        == "cache inactive: the model never reached the pack's hooks"
    )
    # the third line: how the target was met and where the schedule came from (issue 18: a calibration's plan)
    sched = lambda rep: ui.page.evaluate("(rep) => window.tcpade.scheduleLine(rep)", rep)
    planned = {
        "target_note": "planned schedule: 6 of 12 computes at steps 0, 1, 3, 5, 8, 10",
        "schedule": "planned from calibration, predicted error 0.0123",
    }
    assert sched(planned) == (
        "planned schedule: 6 of 12 computes at steps 0, 1, 3, 5, 8, 10 · planned from calibration, predicted error 0.0123"
    )
    assert sched({"target_note": "target 2x: budget 10 of 20 computes, spaced evenly", "schedule": ""}) == (
        "budget 10 of 20 computes, spaced evenly"
    )
    assert sched({}) == ""
    # the speed line: the run's own wall-clock estimate (the server's report.timing), nothing when it has none
    speed = lambda rep, secs=None: ui.page.evaluate("([rep, s]) => window.tcpade.speedLine(rep, s)", [rep, secs])
    timing = {"computed_s": 0.41, "skipped_s": 0.01, "estimated_speedup": 1.9, "basis": "this run's own model calls"}
    assert speed({"timing": timing}) == "est. wall 1.90x (computed step 0.41 s, skipped 0.01 s, this run)"
    assert (
        speed({"timing": {**timing, "computed_s": 0.0834, "skipped_s": 0.0097}}, 1.234)
        == "est. wall 1.90x (computed step 0.083 s, skipped 0.0097 s, this run) · sampling 1.23 s"
    )
    assert speed({"timing": {**timing, "estimated_speedup": None}}) == speed({"timing": None}) == speed({}) == ""
    assert speed({"timing": None}, 2.0) == "sampling 2.00 s"
    # the Compare node: the mean and the worst image's PSNR, SSIM; the images whose content changed
    parts = lambda res: ui.page.evaluate("(res) => window.tcpade.scoreParts(res)", res)
    res = {
        "psnr": 33.34,
        "ssim": 0.9512,
        "images": 8,
        "identical_images": 0,
        "worst_psnr": 12.06,
        "worst_index": 6,
        "changed": [6],
        "changed_floor_db": 15.0,
    }
    assert parts(res) == ["PSNR mean 33.3 dB", "worst 12.1 dB (image 7)", "SSIM 0.951"]
    assert parts({**res, "images": 1, "worst_psnr": 33.34, "worst_index": 0}) == ["PSNR 33.3 dB", "SSIM 0.951"]
    assert parts({**res, "psnr": None, "ssim": 1.0, "worst_psnr": None, "worst_index": 0}) == [
        "PSNR ∞ dB (identical)",
        "SSIM 1.000",
    ]
    assert parts({**res, "identical_images": 2}) == [
        "PSNR mean 33.3 dB",
        "worst 12.1 dB (image 7)",
        "PSNR of the 6 that differ",
        "SSIM 0.951",
    ]
    changed = lambda res: ui.page.evaluate("(res) => window.tcpade.changedLine(res)", res)
    assert changed(res) == "⚠ 1 image changed content: #7 · PSNR below 15 dB"
    assert (
        changed({**res, "changed": list(range(9))})
        == "⚠ 9 images changed content: #1, #2, #3, #4, #5, #6 and 3 more · PSNR below 15 dB"
    )
    assert changed({**res, "changed": []}) == changed({"psnr": 30.0}) == ""


def test_compare_says_which_branch_ran_first_and_marks_changed_images(ui):
    """The timing line names the branch that ran first: a speed-up only when it was the test branch (the first one
    also warmed the device up); a result with an image whose content changed is marked on the node, whole."""
    page = ui.page
    if page.evaluate("window.tcpade.state.compares.size") == 0:  # run alone (-k): run the tiny workflow here
        page.evaluate(LOAD_WORKFLOW, TINY_SHAPES)
        run_queued(page)
    cid = page.evaluate("""() => { const g = window.comfyAPI.app.app.graph;
        const c = g.nodes.find(n => n.type === 'TCPade_Compare' && window.tcpade.compareTiming(n)?.test);
        return c ? String(c.id) : null; }""")
    assert cid is not None
    # move the test branch's samplers before the reference's, as if the test branch had run first
    page.evaluate(
        """(cid) => { const t = window.tcpade; const n = window.comfyAPI.app.app.graph.nodes.find(n => String(n.id) === cid);
        const [test, ref] = t.compareTiming(n).samplers;
        const first = Math.min(...ref.map(s => t.state.timing.get(String(s.id)).start));
        window.__saved = {timing: test.map(s => [String(s.id), {...t.state.timing.get(String(s.id))}]),
                          compare: t.state.compares.get(cid)};
        for (const s of test) { const r = t.state.timing.get(String(s.id)); const d = r.start - first + 1;
          r.start -= d; r.end -= d; r.ticks = r.ticks.map(k => ({...k, t: k.t - d})); }
        // and a result where image 7 shows other content
        const res = window.__saved.compare;
        t.state.compares.set(cid, {...res, worst_psnr: 9.87, worst_index: 6, changed: [6], changed_floor_db: 15.0,
                                   per_image_psnr: res.per_image_psnr.map((v, i) => i === 6 ? 9.87 : v)});
        t.renderAll(); }""",
        cid,
    )
    try:
        p = {x["id"]: x for x in page.evaluate(PANELS)}[cid]
        d = p["data"]
        assert d["first"] == "test" and float(d["speedup"]) == pytest.approx(
            float(d["refSeconds"]) / float(d["testSeconds"]), abs=0.011
        )
        assert re.fullmatch(rf"test ran first · [\d.]+ s vs\. [\d.]+ s reference · {d['speedup']}x", p["lines"][2]), p[
            "lines"
        ]
        assert " · worst 9.9 dB (image 7) · " in p["lines"][0]
        assert p["lines"][1] == "⚠ 1 image changed content: #7 · PSNR below 15 dB" and d["changed"] == "6"
        fit = assert_text_fits(page, [cid])[cid]
        assert [line for line in p["lines"][:3] if line in fit["leftOut"]] == [], (
            fit
        )  # only the difference legend may go
        page.screenshot(path=str(ARTIFACTS / "compare_test_ran_first_changed_image.png"))
    finally:
        page.evaluate(
            """(cid) => { const t = window.tcpade;
            for (const [id, r] of window.__saved.timing) t.state.timing.set(id, r);
            t.state.compares.set(cid, window.__saved.compare); t.renderAll(); }""",
            cid,
        )
    p = {x["id"]: x for x in page.evaluate(PANELS)}[cid]
    assert p["data"]["first"] == "reference" and p["lines"][1] == ""


# A clean graph with one new node of each type at the frontend's default size -> {type: id}
ADD_NEW_NODES = """(types) => {
  const app = window.comfyAPI.app.app;
  app.graph.clear();
  const ids = {};
  let x = 0;
  for (const t of types) {
    const n = LiteGraph.createNode(t);
    n.pos = t === 'TCPade_Compare' ? [0, 640] : [x, 0];
    app.graph.add(n);
    if (t !== 'TCPade_Compare') x += n.size[0] + 40;
    ids[t] = String(n.id);
  }
  app.canvas.ds.scale = 0.8; app.canvas.ds.offset = [90, 120];
  app.canvas.draw(true, true);
  return ids;
}"""

# Show results on nodes, as if the server had sent them: [[node id, 'report' | 'compare', payload]]
SHOW_RESULTS = """(items) => { const t = window.tcpade;
  for (const [id, kind, res] of items) (kind === 'report' ? t.state.reports : t.state.compares).set(id, {...res, node: id});
  t.renderAll(); }"""

# Every string the graph canvas draws in one frame (the widgets' labels among them)
DRAWN_STRINGS = """() => { const app = window.comfyAPI.app.app; const seen = [];
  const orig = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (t, ...rest) { seen.push(String(t)); return orig.call(this, t, ...rest); };
  try { app.canvas.draw(true, true); } finally { CanvasRenderingContext2D.prototype.fillText = orig; }
  return seen; }"""


def test_new_nodes_show_every_text_whole(browser, server):
    """Nodes just added, at the frontend's default size (a cache node 270 wide): before a run the panel says what
    to do, after one every line is whole (wrapped, never cut) and inside its node and the strip's legend is drawn;
    a line without room is left out whole, least important first. Also with phases, a value off the gate plot's
    scale, many warnings and an image whose content changed; the labels of the widgets a preset overrides are
    drawn whole."""
    reports, compares = _get(server.url + "/api/tcpade/reports"), _get(server.url + "/api/tcpade/compares")
    p = Page(browser, server.url)
    try:
        page = p.page
        if not reports or not compares:  # run alone (-k): run the tiny workflow once for real results
            page.evaluate(LOAD_WORKFLOW, TINY_SHAPES)
            run_queued(page)
            reports, compares = _get(server.url + "/api/tcpade/reports"), _get(server.url + "/api/tcpade/compares")
        types = [*CACHE_TYPES, "TCPade_Compare"]
        ids = page.evaluate(ADD_NEW_NODES, types)
        panels = lambda: {x["type"]: x for x in page.evaluate(PANELS)}
        fits = assert_text_fits(page, ids.values())
        assert {i: f["leftOut"] for i, f in fits.items() if f["leftOut"]} == {}  # nothing left out before a run
        assert all(
            panels()[t]["lines"][:2]
            == ["no run yet", "queue the workflow: computed / skipped steps and the gate signal appear here"]
            for t in CACHE_TYPES
        )
        # the widgets a preset overrides: greyed, and their labels drawn whole at this width
        page.evaluate(FOCUS_NODE, ["TCPade_TCPadeCache", 1.0])
        page.wait_for_timeout(200)
        greyed = [v[0] for v in page.evaluate(WIDGET_STATE, "TCPade_TCPadeCache").values() if v[1]]
        drawn = page.evaluate(DRAWN_STRINGS)
        assert len(greyed) == 3 and [g for g in greyed if g not in drawn] == [], (greyed, drawn)
        assert "target speed-up: 2x (preset)" in greyed
        # the last run's results on them
        label = {
            "TCPade_TCPadeCache": "TC-Padé",
            "TCPade_TaylorSeer": "TaylorSeer",
            "TCPade_TeaCache": "TeaCache",
            "TCPade_TraCache": "TraCache",
        }
        rep = {t: next(r for r in reports.values() if r["label"] == label[t]) for t in CACHE_TYPES}
        res = max(compares.values(), key=lambda r: r["images"])
        page.evaluate(
            SHOW_RESULTS, [[ids[t], "report", rep[t]] for t in CACHE_TYPES] + [[ids["TCPade_Compare"], "compare", res]]
        )
        fits = assert_text_fits(page, ids.values())
        shown = panels()
        for t in CACHE_TYPES:
            assert canvas_texts(fits[ids[t]])[:2] == ["computed", "skipped"], fits[ids[t]]
            assert fits[ids[t]]["leftOut"] in ("", shown[t]["lines"][2]), (t, fits[ids[t]])  # only the target note
        cmp = shown["TCPade_Compare"]["lines"]
        assert cmp[0].startswith("PSNR mean ") and fits[ids["TCPade_Compare"]]["leftOut"] in (
            "",
            cmp[3],
            f"{cmp[3]}\n{cmp[2]}",
        ), fits[ids["TCPade_Compare"]]
        page.evaluate(
            "() => { const c = window.comfyAPI.app.app.canvas; c.ds.scale = 0.8; c.ds.offset = [90, 120]; c.setDirty(true, true); }"
        )
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "new_nodes_after_run.png"))
        # phases drawn only where the steps have them; a value off the scale drawn at its edge and counted;
        # warnings that need the room of other lines; an image whose content changed
        tc = {
            **rep["TCPade_TCPadeCache"],
            "steps": [
                {**s, "phase": "early" if i < 8 else "late"} for i, s in enumerate(rep["TCPade_TCPadeCache"]["steps"])
            ],
        }
        tea = rep["TCPade_TeaCache"]
        spike = {
            **tea,
            "steps": [
                {**s, "gate": 10 * tea["threshold"] if i == 5 else s["gate"]} for i, s in enumerate(tea["steps"])
            ],
        }
        many = {**rep["TCPade_TaylorSeer"], "notes": [tea["notes"][0] if tea["notes"] else "a long warning " * 6] * 3}
        changed = {**res, "changed": [6, 7], "worst_psnr": 9.5, "worst_index": 7}
        page.evaluate(
            SHOW_RESULTS,
            [
                [ids["TCPade_TCPadeCache"], "report", tc],
                [ids["TCPade_TeaCache"], "report", spike],
                [ids["TCPade_TaylorSeer"], "report", many],
                [ids["TCPade_Compare"], "compare", changed],
            ],
        )
        fits = assert_text_fits(page, ids.values())
        shown = panels()
        assert shown["TCPade_TCPadeCache"]["canvas"]["legend"] == "computed|skipped|early|mid|late"
        assert {"early", "mid", "late"} <= set(canvas_texts(fits[ids["TCPade_TCPadeCache"]]))
        assert shown["TCPade_TeaCache"]["canvas"]["clipped"] == "1 above, 0 below"
        assert "1 above" in canvas_texts(fits[ids["TCPade_TeaCache"]])
        many_fit = fits[ids["TCPade_TaylorSeer"]]  # the warnings and the headline keep their room, the plot gives it
        assert shown["TCPade_TaylorSeer"]["lines"][0] not in many_fit["leftOut"] and "⚠" not in many_fit["leftOut"], (
            many_fit
        )
        assert shown["TCPade_Compare"]["lines"][1] == "⚠ 2 images changed content: #7, #8 · PSNR below 15 dB"
        assert shown["TCPade_Compare"]["lines"][1] not in fits[ids["TCPade_Compare"]]["leftOut"]
        page.evaluate(
            "() => { const c = window.comfyAPI.app.app.canvas; c.ds.scale = 0.8; c.ds.offset = [90, 120]; c.setDirty(true, true); }"
        )
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "new_nodes_phases_clipped_changed.png"))
        assert not p.ours(), p.ours()
    finally:
        p.close()


def open_combo_and_pick(page, x, y, entry: str) -> None:
    """Click a combo widget and pick ``entry`` from its menu; a click the canvas swallows is repeated."""
    for attempt in range(3):
        page.mouse.click(x, y)
        item = page.locator(".litecontextmenu .litemenu-entry", has_text=entry)
        try:
            item.first.wait_for(state="visible", timeout=3_000)
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            continue
        item.first.click()
        return


# Each widget of the first node of a type: [label, disabled, the widget's own tooltip (the frontend shows it where
# there is one, else the node definition's)]
WIDGET_STATE = """(type) => { const n = window.comfyAPI.app.app.graph.nodes.find(n => n.type === type);
  return Object.fromEntries(n.widgets.filter(w => w.name).map(w => [w.name, [w.label ?? w.name, !!w.disabled, w.tooltip ?? null]])); }"""


def hover_tooltip(page, type_, widget) -> str:
    """Rest the mouse on a widget and return the frontend's tooltip for it (".node-tooltip")."""
    page.mouse.move(5, 500)
    page.wait_for_timeout(100)
    x, y = page.evaluate(WIDGET_POINT, [type_, widget])
    page.mouse.move(x - 40, y, steps=4)
    page.mouse.move(x, y, steps=4)
    tip = page.locator(".node-tooltip")
    tip.first.wait_for(state="visible", timeout=5_000)
    return tip.first.inner_text()


def test_widget_labels_and_what_a_preset_overrides(ui, server):
    """Display names (θ, λ, α1, β, interval N) on the widgets; with a preset the target widget is disabled (θ stays live: it moves computes earlier),
    the label says why (and the target in effect: a disabled widget shows no value) and so does the tooltip a
    user sees when the mouse rests on it; α1 / β apply to paper_literal only; custom enables the target and θ.
    TaylorSeer's interval N is disabled while a speed target sets its schedule."""
    page = ui.page
    info = _get(server.url + "/object_info/TCPade_TCPadeCache")["TCPade_TCPadeCache"]["input"]
    specs = {**info["required"], **info.get("optional", {})}
    name = {k: (v[1] if len(v) > 1 and isinstance(v[1], dict) else {}).get("display_name", k) for k, v in specs.items()}
    tip = {k: (v[1] if len(v) > 1 and isinstance(v[1], dict) else {}).get("tooltip") for k, v in specs.items()}
    state = lambda: page.evaluate(WIDGET_STATE, "TCPade_TCPadeCache")
    w = state()
    assert [w[k][0] for k in ("lam", "interval")] == [name["lam"], name["interval"]] and name["theta"] == "θ"
    assert w["target_speedup"][:2] == [f"{name['target_speedup']}: 2x (preset)", True]
    assert w["target_speedup"][2] == (
        "Greyed out: Set by the preset slow (2x): a 2x speed target. Choose preset custom "
        f"to set it.\n{tip['target_speedup']}"
    )
    assert w["theta"][:2] == ["θ", False]  # under a preset θ still moves computes earlier: live, not greyed
    assert w["alpha1"][:2] == ["α1 (paper_literal only)", True] and w["beta"][:2] == ["β (paper_literal only)", True]
    assert w["lam"][1] is False and w["preset"][1] is False and w["lam"][2] in (None, tip["lam"])
    page.evaluate(FOCUS_NODE, ["TCPade_TCPadeCache", 1.0])
    page.wait_for_timeout(300)
    # what a user sees: the reason first, then the widget's own tooltip
    shown = hover_tooltip(page, "TCPade_TCPadeCache", "target_speedup")
    assert shown.startswith("Greyed out: Set by the preset slow (2x)") and tip["target_speedup"][:40] in shown, shown
    assert not hover_tooltip(page, "TCPade_TCPadeCache", "theta").startswith("Greyed out")
    page.mouse.move(5, 500)
    x, y = page.evaluate(WIDGET_POINT, ["TCPade_TCPadeCache", "preset"])
    open_combo_and_pick(page, x, y, "custom")  # the combo's menu, then "custom"
    page.wait_for_timeout(200)
    w = state()
    assert w["target_speedup"][:2] == [name["target_speedup"], False] and w["preset"][0] == name["preset"]
    assert w["theta"][:2] == ["θ", False] and w["target_speedup"][2] in (None, tip["target_speedup"])
    assert w["theta"][2] in (None, tip["theta"])
    page.evaluate("""() => { const n = window.comfyAPI.app.app.graph.nodes.find(n => n.type === 'TCPade_TCPadeCache');
        const m = n.widgets.find(w => w.name === 'mode'); m.value = 'paper_literal'; m.callback?.(m.value); }""")
    w = state()
    assert w["alpha1"][:2] == ["α1", False] and w["beta"][:2] == ["β", False]
    page.evaluate("""() => { const n = window.comfyAPI.app.app.graph.nodes.find(n => n.type === 'TCPade_TCPadeCache');
        for (const [k, v] of [['mode', 'default'], ['preset', 'slow (2x)']]) {
          const w = n.widgets.find(w => w.name === k); w.value = v; w.callback?.(v); } }""")
    w = state()
    assert w["target_speedup"][:2] == [f"{name['target_speedup']}: 2x (preset)", True] and w["theta"][1] is False
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tcpade_widgets.png"))
    # TaylorSeer: a speed target sets the schedule, interval N then has no effect (restored as it was)
    ts = lambda: page.evaluate(WIDGET_STATE, "TCPade_TaylorSeer")
    before = widget_values(page, "TCPade_TaylorSeer")["target_speedup"]
    set_target = """(v) => { const n = window.comfyAPI.app.app.graph.nodes.find(n => n.type === 'TCPade_TaylorSeer');
        const w = n.widgets.find(w => w.name === 'target_speedup'); w.value = v; w.callback?.(v); }"""
    try:
        page.evaluate(set_target, 0.0)
        assert ts()["interval"][1] is False
        page.evaluate(set_target, 2.5)
        label, disabled, why = ts()["interval"]
        assert disabled and label.endswith(" (target)") and why.startswith("Greyed out: Used at target speed-up 0 only")
    finally:
        page.evaluate(set_target, before)
    assert ts()["interval"][1] is (before > 0)
    # the order widget at -1 leaves the order to the pack (Widget.auto): its label says so, a typed order does not
    ts_info = _get(server.url + "/object_info/TCPade_TaylorSeer")["TCPade_TaylorSeer"]["input"]["required"]
    order_name = ts_info["order"][1].get("display_name", "order")
    set_order = set_target.replace("'target_speedup'", "'order'")
    before = widget_values(page, "TCPade_TaylorSeer")["order"]
    try:
        for value, label in (
            (-1, f"{order_name}: auto"),
            (1, order_name),
            (2, order_name),
            (-1, f"{order_name}: auto"),
        ):
            page.evaluate(set_order, value)
            assert ts()["order"][:2] == [label, False], (value, ts()["order"])
    finally:
        page.evaluate(set_order, before)
    page.mouse.move(5, 500)


SERVED_PANELS = """() => { const ns = window.comfyAPI.app.app.graph.nodes.filter(n => n.tcpadePanel?.el.dataset.source === 'server');
  return [ns.filter(n => n.type !== 'TCPade_Compare').length, ns.filter(n => n.type === 'TCPade_Compare').length]; }"""


def test_a_reload_keeps_the_last_run_on_the_panels(ui, server):
    """After a page reload the extension has no result of its own: the cache nodes show the server's last reports
    (GET /tcpade/reports) and the Compare nodes its last scores (GET /tcpade/compares), matched by workflow and
    node type, not "no run yet"."""
    # reports are kept per prompt, node and run ("<prompt>/<node>/<n>"); each names its node (the newest wins)
    served = {str(r["node"]): r for r in _get(server.url + "/api/tcpade/reports").values()}
    served_cmp = _get(server.url + "/api/tcpade/compares")
    before = {p["id"]: p for p in ui.page.evaluate(PANELS)}
    wid = ui.page.evaluate("window.comfyAPI.app.app.graph.id")
    caches = {k for k, p in before.items() if p["type"] in CACHE_TYPES}
    compares = {k for k, p in before.items() if p["type"] == "TCPade_Compare"}
    assert caches <= set(served) and all(served[k]["workflow_id"] == wid for k in caches)
    assert compares <= set(served_cmp) and all(served_cmp[k]["workflow_id"] == wid for k in compares)
    ui.reload()
    ui.page.wait_for_function(f"() => JSON.stringify(({SERVED_PANELS})()) === '[4,4]'", timeout=20_000)
    after = {p["id"]: p for p in ui.page.evaluate(PANELS)}
    assert set(after) == set(before)
    for k in caches:
        p = after[k]
        assert p["lines"][0] == before[k]["lines"][0] and p["data"]["strip"] == before[k]["data"]["strip"]
        assert p["notes"] == before[k]["notes"] and p["data"]["source"] == "server"
    for k in compares:  # the scores, the branch's computed steps and any changed image, as before the reload
        p = after[k]
        assert p["lines"][:2] == before[k]["lines"][:2] and p["data"]["psnr"] == before[k]["data"]["psnr"]
        assert p["data"]["source"] == "server" and p["lines"][3] == before[k]["lines"][3]
    # another workflow with the same node ids shows none of them
    ui.page.evaluate(LOAD_WORKFLOW, TINY_DIGITS)
    ui.page.wait_for_timeout(500)
    assert all(p["lines"][0] == "no run yet" for p in ui.page.evaluate(PANELS) if p["type"] in CACHE_TYPES)
    assert all(
        p["lines"][0] == "PSNR / SSIM: not run yet" for p in ui.page.evaluate(PANELS) if p["type"] == "TCPade_Compare"
    )
    ui.page.evaluate(LOAD_WORKFLOW, TINY_SHAPES)
    ui.page.wait_for_function(f"() => JSON.stringify(({SERVED_PANELS})()) === '[4,4]'", timeout=20_000)
    assert not ui.ours(), ui.ours()


def test_a_target_set_with_mouse_and_keyboard_is_reached(ui):
    """TC-Padé preset custom (mouse, the combo's menu) and target speed-up 2.5 (mouse, then typed in the
    value prompt): the run computes 8 of 20 steps and the panel reads "target 2.5x → reached 2.50x". The
    other branches are served from the host's cache: their panels keep the server's last report."""
    page = ui.page
    page.evaluate(FOCUS_NODE, ["TCPade_TCPadeCache", 1.0])
    page.wait_for_timeout(300)
    x, y = page.evaluate(WIDGET_POINT, ["TCPade_TCPadeCache", "preset"])
    open_combo_and_pick(page, x, y, "custom")
    page.wait_for_timeout(200)
    x, y = page.evaluate(WIDGET_POINT, ["TCPade_TCPadeCache", "target_speedup"])
    page.mouse.click(x, y)
    page.wait_for_selector(".graphdialog input", timeout=5_000)
    page.keyboard.type("2.5")
    page.keyboard.press("Enter")
    page.wait_for_timeout(200)
    w = widget_values(page, "TCPade_TCPadeCache")
    assert (w["preset"], w["target_speedup"]) == ("custom", 2.5)
    # a tab that has seen no run (its panels empty): the branches the host serves from its cache send no
    # report, the extension fetches the server's on "execution_cached"
    before = {p["type"]: p for p in page.evaluate(PANELS)}
    page.evaluate("() => { window.tcpade.state.reports.clear(); window.tcpade.renderAll(); }")
    assert all(p["lines"][0] == "no run yet" for p in page.evaluate(PANELS) if p["type"] in CACHE_TYPES)
    run_queued(page)
    panels = {p["type"]: p for p in page.evaluate(PANELS)}
    tc = panels["TCPade_TCPadeCache"]
    assert tc["lines"][0] == "computed 8/20 steps · target 2.5x → reached 2.50x"
    assert (tc["data"]["computed"], tc["data"]["speedup"], tc["data"]["source"]) == ("8", "2.50", "live")
    assert len(page.evaluate("window.__t.reports")) == 1  # only the TC-Padé branch sampled
    for t in ("TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache"):
        assert panels[t]["data"]["source"] == "server" and panels[t]["lines"][0] == before[t]["lines"][0]
    page.screenshot(path=str(ARTIFACTS / "tiny_shapes_target_2.5.png"))
    assert not ui.ours(), ui.ours()


def test_preset_buttons_set_preset_and_target(ui):
    ui.page.evaluate(FOCUS_NODE, ["TCPade_TCPadeCache", 1.0])
    ui.page.wait_for_timeout(300)
    for preset, target in (("fast (2.8x)", 2.8), ("slow (2x)", 2.0)):
        x, y = ui.page.evaluate(WIDGET_POINT, ["TCPade_TCPadeCache", f"preset: {preset}"])
        ui.page.mouse.click(x, y)
        ui.page.wait_for_timeout(200)
        w = widget_values(ui.page, "TCPade_TCPadeCache")
        assert (w["preset"], w["target_speedup"]) == (preset, target)
    # the buttons and the panel are not saved with the workflow nor sent to the server
    n = ui.page.evaluate("""() => { const n = window.comfyAPI.app.app.graph.nodes.find(n => n.type === 'TCPade_TCPadeCache');
        return n.serialize().widgets_values.length }""")
    assert n == 12


def test_min_size_table_is_what_the_frontend_computes(ui):
    """make_workflows.MIN_SIZE, the generator's floor per node type (every saved size is at least this), is at
    least what this frontend computes for a new node of each type (LGraphNode.computeSize, measured here: the
    frontends differ, 1.49 draws some nodes wider than 1.27). test_workflow_loads_clean checks every shipped
    node, its title included, against the frontend's minimum for that node."""
    sys.path.insert(0, str(PACK / "workflows"))
    try:
        import make_workflows as mw
    finally:
        sys.path.remove(str(PACK / "workflows"))
    got = ui.page.evaluate(
        """(types) => Object.fromEntries(types.map(t => {
        const n = LiteGraph.createNode(t); window.comfyAPI.app.app.graph.add(n);
        const s = n.computeSize().map(Math.ceil); window.comfyAPI.app.app.graph.remove(n); return [t, s]; }))""",
        sorted(mw.MIN_SIZE),
    )
    assert set(got) == set(mw.MIN_SIZE) and all(s[0] > 0 and s[1] > 0 for s in got.values()), got
    below = {
        t: (list(mw.MIN_SIZE[t]), s) for t, s in got.items() if s[0] > mw.MIN_SIZE[t][0] or s[1] > mw.MIN_SIZE[t][1]
    }
    assert below == {}, f"MIN_SIZE below the frontend's computeSize (table, frontend): {below}"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_loads_clean(ui, name):
    r = ui.page.evaluate(LOAD_WORKFLOW, name)
    assert "error" not in r, r
    assert r["missing"] == [], f"missing node types: {r['missing']}"
    assert r["problems"] == [], "\n".join(r["problems"])
    assert (r["nodes"], r["links"]) == (r["jsonNodes"], r["jsonLinks"])
    assert r["toasts"] == [] and r["dialogs"] == [], (r["toasts"], r["dialogs"])
    # every node exactly where and as large as saved: the layout test's boxes are what a person sees
    wf = json.loads((PACK / "workflows" / f"{name}.json").read_text(encoding="utf-8"))
    saved = {str(n["id"]): (n["pos"], n["size"]) for n in wf["nodes"]}  # node ids: numbers, or strings (1.49)
    # each saved size is at least what this frontend computes for the node (fonts differ between frontends)
    small = [
        (i, saved[str(i)][1], [math.ceil(v) for v in lo])
        for i, _, _, lo in r["shown"]
        if any(v < m for v, m in zip(saved[str(i)][1], lo))
    ]
    assert small == [], f"saved smaller than the frontend's minimum (node, saved, minimum): {small}"
    moved = [
        (i, pos, size, saved[str(i)])
        for i, pos, size, _ in r["shown"]
        if [round(v, 1) for v in pos + size] != [round(v, 1) for v in saved[str(i)][0] + saved[str(i)][1]]
    ]
    assert moved == [], moved
    # and the boxes as shown overlap nothing (no node, group or wire in the way: tests/layout_geometry.py)
    shown = {str(i): (pos, size) for i, pos, size, _ in r["shown"]}
    as_shown = {
        **wf,
        "nodes": [{**n, "pos": shown[str(n["id"])][0], "size": shown[str(n["id"])][1]} for n in wf["nodes"]],
    }
    assert G.layout_problems(as_shown) == [], G.layout_problems(as_shown)
    # the wires are the layout test's curves: the frontend's midpoint of every drawn segment (t = 0.5)
    ui.page.evaluate("""() => { const app = window.comfyAPI.app.app; const el = app.canvas.canvas;
        const b = app.graph.nodes.reduce((b, n) => [Math.min(b[0], n.pos[0]), Math.min(b[1], n.pos[1] - 40),
            Math.max(b[2], n.pos[0] + n.size[0]), Math.max(b[3], n.pos[1] + n.size[1])], [1e9, 1e9, -1e9, -1e9]);
        const s = Math.min(el.clientWidth / (b[2] - b[0] + 200), el.clientHeight / (b[3] - b[1] + 200));
        app.canvas.ds.scale = s; app.canvas.ds.offset = [-b[0] + 100, -b[1] + 100]; app.canvas.draw(true, true); }""")
    mids = ui.page.evaluate("""() => { const g = window.comfyAPI.app.app.graph;
        return {links: [...g._links.values()].map(l => [l.id, l._pos ? [...l._pos] : null]),
                reroutes: [...g.reroutes.values()].map(r => [r.id, r._pos ? [...r._pos] : null])}; }""")
    paths, ends_at = G.link_paths(wf, with_reroutes=True)
    want = {}
    for lid, segs in paths.items():
        for seg, rid in zip(segs, ends_at[lid]):
            want[("link", str(lid)) if rid is None else ("reroute", str(rid))] = seg[len(seg) // 2]
    got = {("link", str(i)): p for i, p in mids["links"]} | {("reroute", str(i)): p for i, p in mids["reroutes"]}
    assert set(got) == set(want) and all(p is not None for p in got.values())
    off = {k: round(math.dist(got[k], want[k]), 2) for k in want if math.dist(got[k], want[k]) > 0.5}
    assert off == {}, off
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui.page.screenshot(path=str(ARTIFACTS / f"workflow_{name}.png"))
    assert not ui.ours(), ui.ours()


# a Calibrate node fed by the graph's model, class label and latent, its calibration wired into one cache node
ADD_CALIBRATE = """([type, steps, cfg, target]) => {
  const g = window.comfyAPI.app.app.graph;
  const by = (t) => g.nodes.find(n => n.type === t);
  const into = (n, name) => n.inputs.findIndex(i => i.name === name);
  const out = (n, name) => n.outputs.findIndex(o => o.name === name || o.label === name);
  const cal = LiteGraph.createNode('TCPade_Calibrate');
  g.add(cal);
  const dst = by(type);
  cal.pos = [dst.pos[0] - cal.size[0] - 40, dst.pos[1]];
  by('TCPade_BenchModelLoader').connect(0, cal, into(cal, 'model'));
  const lab = by('TCPade_ClassLabel');
  lab.connect(out(lab, 'positive'), cal, into(cal, 'positive'));
  lab.connect(out(lab, 'negative'), cal, into(cal, 'negative'));
  by('TCPade_BenchLatent').connect(0, cal, into(cal, 'latent_image'));
  const set = (name, v) => { cal.widgets.find(w => w.name === name).value = v; };
  set('steps', steps); set('cfg', cfg); set('sampler_name', 'euler'); set('scheduler', 'simple');
  set('target_speedup', target);
  cal.connect(out(cal, 'calibration'), dst, into(dst, 'calibration'));
  return {cal: String(cal.id), dst: String(dst.id),
          wired: dst.inputs[into(dst, 'calibration')].link != null &&
                 cal.inputs.filter(i => !i.widget).map(i => i.link != null).join() === 'true,true,true,true'};
}"""


def test_after_calibrate_a_node_at_a_target_shows_its_planned_schedule(ui):
    """Issue 18, end to end in the browser: a Calibrate node added to the tiny workflow and wired into the TaylorSeer
    node (target 2x, 20 steps, Euler/simple as its sampler); after the run the node's panel says "planned from
    calibration" with the planned steps, and its strip is that schedule, exactly the budget."""
    page = ui.page
    r = page.evaluate(LOAD_WORKFLOW, TINY_SHAPES)
    assert r["missing"] == [] and r["problems"] == [], r
    added = page.evaluate(ADD_CALIBRATE, ["TCPade_TaylorSeer", 20, 2.0, 2.0])
    assert added["wired"], added
    run_queued(page)
    rep = {str(x["node"]): x for x in page.evaluate("window.__t.reports")}[added["dst"]]
    panel = next(p for p in page.evaluate(PANELS) if p["id"] == added["dst"])
    strip = "".join("#" if s["computed"] else "." for s in rep["steps"])
    steps = [s["step"] for s in rep["steps"] if s["computed"]]
    assert rep["computed"] == 10 and len(steps) == 10 and rep["schedule"].startswith("planned from calibration")
    assert panel["lines"][2] == (
        f"planned schedule: 10 of 20 computes at steps {', '.join(map(str, steps))} · {rep['schedule']}"
    )
    assert re.fullmatch(r"planned from calibration, predicted error [0-9.e+-]+", rep["schedule"]), rep["schedule"]
    assert panel["data"]["strip"] == strip and strip != "#." * 10  # the plan, not the even grid
    # at its saved (smallest) size the calibration's note may crowd the schedule line out: it stays in the tooltip,
    # and a node made taller, as a user drags it, shows it
    title = page.evaluate(f"window.comfyAPI.app.app.graph.getNodeById({added['dst']}).tcpadePanel.el.title")
    assert rep["target_note"] in title and rep["schedule"] in title
    page.evaluate(
        """(id) => { const app = window.comfyAPI.app.app; const n = app.graph.getNodeById(id);
        n.setSize([n.size[0], n.size[1] + 160]); app.canvas.setDirty(true, true); }""",
        int(added["dst"]),
    )
    page.evaluate(FRAME_ROW, "TCPade_TaylorSeer")
    page.wait_for_timeout(400)
    panel = next(p for p in page.evaluate(PANELS) if p["id"] == added["dst"])
    assert panel["lines"][2] not in panel["data"].get("leftOut", ""), panel["data"]
    page.screenshot(path=str(ARTIFACTS / "tiny_shapes_calibrated_taylorseer.png"))
    assert not ui.ours(), ui.ours()


def test_runs_without_the_extension(browser, server):
    p = Page(browser, server.url, block_extension=True)
    try:
        assert p.page.evaluate("window.tcpade === undefined")
        r = p.page.evaluate(LOAD_WORKFLOW, TINY_DIGITS)
        assert r["missing"] == [] and r["problems"] == [], r
        assert p.page.evaluate("window.comfyAPI.app.app.graph.nodes.every(n => !n.tcpadePanel)")
        run_queued(p.page)
        executed = p.page.evaluate("window.__t.executed")
        compares = p.page.evaluate("""() => window.comfyAPI.app.app.graph.nodes
            .filter(n => n.type === 'TCPade_Compare').map(n => String(n.id))""")
        assert len(compares) == 4
        for cid in compares:
            out = executed[cid]
            assert out["images"] and 0 < out["tcpade_compare"][0]["ssim"] <= 1.0
        p.page.screenshot(path=str(ARTIFACTS / "tiny_digits_without_extension.png"))
        assert not p.ours(), p.ours()
    finally:
        p.close()
