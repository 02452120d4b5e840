"""The pack in a real ComfyUI server and its real frontend, driven by Chromium (Playwright).

A server is started from the ComfyUI checkout on a free port with a throw-away base directory
(``--base-directory``: its own custom_nodes, models, user, input/output/temp) into which the pack
is symlinked as ``custom_nodes/ComfyUI-TCPade``; it is killed at the end. Checks:

* the web extension loads and the pack's workflows are served as templates;
* every shipped workflow loads with no missing node types, the frontend keeps every widget value
  (none re-mapped or reset), combos hold valid options (or a model file the node declares), and
  no validation toast appears;
* the tiny bench workflow is queued and finishes; each cache node's panel shows the numbers of the
  server's ``tcpade.report`` and of its log line, each Compare node the server's PSNR / SSIM and a
  consistent timing readout;
* the TC-Padé preset buttons (clicked with the mouse) set the preset and θ widgets;
* without the extension file (blocked), a workflow still loads and runs.

Screenshots go to a temporary directory (``$TCPADE_ARTIFACTS``, default ``<tmp>/tcpade_test_artifacts``);
the repository is never written, except ``docs/screenshot.png`` from the tiny run when
``TCPADE_UPDATE_SCREENSHOT=1`` asks for it explicitly. Skips with one line when there is no
ComfyUI checkout, no Chromium (``apt-get install -y chromium``), no Playwright or no bench weights.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

import host_util as H

CHROMIUM = Path(os.environ.get("TCPADE_CHROMIUM", "/usr/bin/chromium"))
PACK = Path(os.environ.get("TCPADE_PACK_UNDER_TEST") or H.PACK_ROOT).resolve()  # e.g. an installed copy
ARTIFACTS = Path(os.environ.get("TCPADE_ARTIFACTS") or Path(tempfile.gettempdir()) / "tcpade_test_artifacts")
SCREENSHOT = H.PACK_ROOT / "docs" / "screenshot.png"
BENCH_FILES = ("model_a_digits.safetensors", "model_b_shapes.safetensors")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WORKFLOWS = sorted(p.stem for p in (PACK / "workflows").glob("*.json"))
CACHE_TYPES = ("TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache")
RUN_TIMEOUT_S = 150


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
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}))
    port = _free_port()
    log_path = base / "server.log"
    log = open(log_path, "w")
    # one compute thread: the test checks behaviour, not speed, and CI machines are small and shared
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
         "--base-directory", str(base), "--database-url", "sqlite:///:memory:"],
        cwd=H.comfy_path(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
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
            self.ctx.route(f"**/extensions/{H.PACK_FOLDER}/**", lambda route: route.fulfill(
                status=200, content_type="text/javascript", body="// tcpade extension blocked by the test\n"))
        self.page = self.ctx.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e.stack or e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.goto(url)
        self.page.wait_for_function("window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.canvas",
                                    timeout=90_000)
        if not block_extension:
            self.page.wait_for_function("window.tcpade !== undefined", timeout=30_000)
        self.page.evaluate(INSTALL_LISTENERS, not block_extension)

    def ours(self):
        """Errors that come from this pack's files (the frontend logs its own, unrelated ones)."""
        return [e for e in self.errors if "tcpade" in e.lower()]

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
  const res = await fetch('/api/workflow_templates/ComfyUI-TCPade/' + name + '.json');
  if (!res.ok) return {error: 'HTTP ' + res.status};
  const wf = await res.json();
  const missing = wf.nodes.filter(n => !(n.type in LiteGraph.registered_node_types)).map(n => n.type);
  await app.loadGraphData(wf, true, true, name, {showMissingModelsDialog: false});
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const problems = [];
  const byId = new Map(app.graph.nodes.map(n => [String(n.id), n]));
  for (const j of wf.nodes) {
    const n = byId.get(String(j.id));
    if (!n) { problems.push(`#${j.id} ${j.type}: not in the graph`); continue; }
    if (n.type !== j.type) problems.push(`#${j.id}: type ${n.type} != ${j.type}`);
    if (n.has_errors) problems.push(`#${j.id} ${j.type}: has_errors`);
    const got = n.serialize().widgets_values ?? [];
    if (JSON.stringify(got) !== JSON.stringify(j.widgets_values ?? []))
      problems.push(`#${j.id} ${j.type}: widgets ${JSON.stringify(got)} != ${JSON.stringify(j.widgets_values)}`);
    const models = new Set((j.properties?.models ?? []).map(m => m.name));
    for (const w of n.widgets ?? []) {
      if (w.type === 'combo' && Array.isArray(w.options?.values) && !w.options.values.includes(w.value) && !models.has(w.value))
        problems.push(`#${j.id} ${j.type}: ${w.name}=${JSON.stringify(w.value)} not an option`);
      if (w.type === 'number' && ((w.options?.min !== undefined && w.value < w.options.min) ||
                                  (w.options?.max !== undefined && w.value > w.options.max)))
        problems.push(`#${j.id} ${j.type}: ${w.name}=${w.value} out of range`);
    }
  }
  return {missing, problems, nodes: app.graph.nodes.length, links: app.graph.links.size ?? Object.keys(app.graph.links).length,
          jsonNodes: wf.nodes.length, jsonLinks: wf.links.length,
          toasts: [...document.querySelectorAll('.p-toast-message')].map(e => [e.className, e.textContent])
            .filter(([c, t]) => /toast-message-(warn|error)/.test(c) || /validation|links fixed/i.test(t)).map(x => x[1]),
          dialogs: [...document.querySelectorAll('.p-dialog')].map(e => e.textContent.slice(0, 200))};
}"""

PANELS = """() => window.comfyAPI.app.app.graph.nodes.filter(n => n.tcpadePanel).map(n => ({
  id: String(n.id), type: n.type, data: {...n.tcpadePanel.el.dataset},
  lines: n.tcpadePanel.lines.map(l => l.textContent)}))"""

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
    return page.evaluate("""(type) => Object.fromEntries(window.comfyAPI.app.app.graph.nodes.find(n => n.type === type)
        .widgets.map(w => [w.name, w.value]))""", type_)


def run_queued(page) -> float:
    t0 = time.time()
    page.evaluate("window.__t.done = null; window.__t.reports = []; window.comfyAPI.app.app.queuePrompt(0, 1)")
    page.wait_for_function("window.__t.done !== null", timeout=RUN_TIMEOUT_S * 1000, polling=250)
    done = page.evaluate("window.__t.done")
    assert done == "ok", done
    page.wait_for_timeout(300)  # let the extension render after the last event
    return time.time() - t0


LOG_LINE = re.compile(r"(TC-Padé|TaylorSeer|TeaCache|TraCache): computed (\d+)/(\d+) steps \(([\d.]+)x\).*\[([#.]+)\]")


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
    assert ui.page.evaluate("typeof window.tcpade.compareTiming") == "function"
    assert not ui.ours(), ui.ours()


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_loads_clean(ui, name):
    r = ui.page.evaluate(LOAD_WORKFLOW, name)
    assert "error" not in r, r
    assert r["missing"] == [], f"missing node types: {r['missing']}"
    assert r["problems"] == [], "\n".join(r["problems"])
    assert (r["nodes"], r["links"]) == (r["jsonNodes"], r["jsonLinks"])
    assert r["toasts"] == [] and r["dialogs"] == [], (r["toasts"], r["dialogs"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui.page.screenshot(path=str(ARTIFACTS / f"workflow_{name}.png"))
    assert not ui.ours(), ui.ours()


def test_tiny_workflow_runs_and_panels_show_the_server_numbers(ui, server):
    r = ui.page.evaluate(LOAD_WORKFLOW, "tcpade_tiny_digits_cpu")
    assert r["missing"] == [] and r["problems"] == []
    before = server.log_path.read_text()
    seconds = run_queued(ui.page)
    reports = {str(x["node"]): x for x in ui.page.evaluate("window.__t.reports")}
    executed = ui.page.evaluate("window.__t.executed")
    panels = ui.page.evaluate(PANELS)
    log = server.log_path.read_text()[len(before):]
    log_lines = {m.group(1): m for m in LOG_LINE.finditer(log)}
    caches = [p for p in panels if p["type"] in CACHE_TYPES]
    compares = [p for p in panels if p["type"] == "TCPade_Compare"]
    assert len(caches) == 4 and len(compares) == 4
    for p in caches:
        rep = reports[p["id"]]                       # payload.node == node id
        strip = "".join("#" if s["computed"] else "." for s in rep["steps"])
        d = p["data"]
        assert (int(d["computed"]), int(d["numSteps"]), d["strip"]) == (rep["computed"], rep["num_steps"], strip)
        assert d["speedup"] == f"{rep['speedup']:.2f}" and rep["num_steps"] == 20
        assert p["lines"][0] == f"computed {rep['computed']}/{rep['num_steps']} steps ({rep['speedup']:.2f}x speed-up)"
        m = log_lines[rep["label"]]                  # the server's own log line says the same
        assert (int(m.group(2)), int(m.group(3)), m.group(4), m.group(5)) == \
            (rep["computed"], rep["num_steps"], f"{rep['speedup']:.2f}", strip)
        assert float(d["seconds"]) > 0
    prompt_s = float(re.search(r"Prompt executed in ([\d.]+) seconds", log).group(1))
    for p in compares:
        res = executed[p["id"]]["tcpade_compare"][0]
        d = p["data"]
        assert p["lines"][0] == res["text"]
        if res["psnr"] is None:
            assert d["psnr"] == "inf"
        else:
            assert float(d["psnr"]) == pytest.approx(res["psnr"], rel=1e-12)
        assert float(d["ssim"]) == pytest.approx(res["ssim"], rel=1e-12)
        test_s, ref_s = float(d["testSeconds"]), float(d["refSeconds"])
        assert 0 < test_s < prompt_s and 0 < ref_s < prompt_s
        assert float(d["speedup"]) == pytest.approx(ref_s / test_s, abs=0.011)
        assert f"{d['speedup']}x" in p["lines"][1]
    assert seconds < RUN_TIMEOUT_S
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui.page.evaluate(FOCUS_NODE, ["TCPade_TCPadeCache", 0.75])   # the TC-Padé branch, cache node to Compare
    ui.page.wait_for_timeout(500)
    shot = ARTIFACTS / "tiny_digits_after_run.png"
    ui.page.screenshot(path=str(shot))
    if os.environ.get("TCPADE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
    ui.page.evaluate(FOCUS_NODE, ["TCPade_TeaCache", 0.75])
    ui.page.wait_for_timeout(300)
    ui.page.screenshot(path=str(ARTIFACTS / "tiny_digits_teacache_after_run.png"))
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
    assert n == 11


def test_runs_without_the_extension(browser, server):
    p = Page(browser, server.url, block_extension=True)
    try:
        assert p.page.evaluate("window.tcpade === undefined")
        r = p.page.evaluate(LOAD_WORKFLOW, "tcpade_tiny_shapes_cpu")
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
        p.page.screenshot(path=str(ARTIFACTS / "tiny_shapes_without_extension.png"))
        assert not p.ours(), p.ours()
    finally:
        p.close()
