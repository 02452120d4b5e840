"""Template thumbnails, rendered by the real frontend: ``python workflows/make_workflows.py --thumbnails``.

The frontend shows ``<template name>.jpg`` from the pack's ``workflows/`` folder on each template card
(a square). This starts a throw-away ComfyUI server from the checkout at ``$COMFYUI_PATH`` (default
``~/ComfyUI``) with this pack linked into its ``custom_nodes``, opens every workflow in headless Chromium
(``$TCPADE_CHROMIUM``, default Debian's ``/usr/bin/chromium``; Playwright drives it), runs the CPU
workflows (about a minute each, so their previews, scores and cache panels are in the picture), frames
the top of the graph, from the inputs to the Compare nodes, and saves a 512 x 512 JPEG. Needs the host,
Chromium, Playwright and Pillow; writes nothing else.

``measure_min_sizes`` reads the smallest size the frontend gives each node type (``MIN_SIZE`` in
``make_workflows.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
PACK_FOLDER = "ComfyUI-TCPade"
CHROMIUM = Path(os.environ.get("TCPADE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIZE = 512  # the saved thumbnail, square like the card
RENDER = 1600  # the square the graph is rendered into first (the frontend draws text above zoom 0.6)
QUALITY = 82


def comfy_path() -> Path:
    return Path(os.environ.get("COMFYUI_PATH") or Path.home() / "ComfyUI").expanduser()


@contextlib.contextmanager
def comfy_server(settings: Dict[str, object] = {}) -> Iterator[str]:
    """A ComfyUI server on a free port with this pack in a temporary base directory; yields its URL."""
    comfy = comfy_path()
    if not (comfy / "main.py").is_file():
        raise SystemExit(f"no ComfyUI checkout at {comfy} (set COMFYUI_PATH)")
    base = Path(tempfile.mkdtemp(prefix="tcpade_thumbs_"))
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(PACK, target_is_directory=True)
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(
        json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, **settings})
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(base / "server.log", "w")
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
        cwd=comfy,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"ComfyUI exited:\n{(base / 'server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"ComfyUI did not answer in 120 s:\n{(base / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def frontend(url: str, width: int = RENDER, height: int = RENDER):
    """A Playwright page with the frontend loaded (and the pack's extension)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": width, "height": height}).new_page()
            page.goto(url)
            page.wait_for_function(
                "window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.canvas && window.tcpade !== undefined",
                timeout=90_000,
            )
            yield page
        finally:
            browser.close()


LOAD = (
    """async (name) => {
  const app = window.comfyAPI.app.app;
  const wf = await (await fetch('/api/workflow_templates/%s/' + encodeURIComponent(name) + '.json')).json();
  await app.loadGraphData(wf, true, true, name, {showMissingModelsDialog: false});
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""
    % PACK_FOLDER
)

RUN = """async () => {
  const api = window.comfyAPI.api.api;
  const done = new Promise((resolve) => {
    api.addEventListener('execution_success', () => resolve('ok'), {once: true});
    api.addEventListener('execution_error', (e) => resolve('error: ' + JSON.stringify(e.detail).slice(0, 500)), {once: true});
  });
  await window.comfyAPI.app.app.queuePrompt(0, 1);
  return await done;
}"""

# the top square of the graph, from the inputs (the note stays out) to the right-most node
FRAME = """() => {
  const app = window.comfyAPI.app.app;
  const nodes = app.graph.nodes.filter(n => n.type !== 'MarkdownNote');
  const boxes = [...nodes.map(n => [n.pos[0], n.pos[1] - 30, n.pos[0] + n.size[0], n.pos[1] + n.size[1]]),
                 ...app.graph.groups.map(g => [g._bounding[0], g._bounding[1], g._bounding[0] + g._bounding[2],
                                               g._bounding[1] + g._bounding[3]])];
  const x0 = Math.min(...boxes.map(b => b[0])) - 30, y0 = Math.min(...boxes.map(b => b[1])) - 30;
  const x1 = Math.max(...boxes.map(b => b[2])) + 30;
  const el = app.canvas.canvas;
  const side = Math.min(el.clientWidth, el.clientHeight);
  const scale = side / (x1 - x0);
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [-x0, -y0];
  app.canvas.setDirty(true, true);
  const r = el.getBoundingClientRect();
  return {x: r.left, y: r.top, width: side, height: side, scale};
}"""


def render_thumbnails(out_dir: Path, names: Sequence[str]) -> List[Path]:
    from PIL import Image

    written = []
    # full detail at any zoom: the thumbnail is a miniature of what a person sees zoomed in
    with comfy_server({"LiteGraph.Canvas.MinFontSizeForLOD": 0}) as url, frontend(url) as page:
        # the picture is the graph: no canvas info text, toolbars or toasts over it
        page.add_style_tag(content=".p-toast, .graph-canvas-panel .p-buttongroup {visibility: hidden}")
        page.evaluate("() => { window.comfyAPI.app.app.canvas.show_info = false; }")
        for name in names:
            page.evaluate(LOAD, name)
            if "CPU" in name:
                result = page.evaluate(RUN)
                if result != "ok":
                    raise SystemExit(f"{name}: the run failed: {result}")
                page.wait_for_timeout(800)
            clip = page.evaluate(FRAME)
            page.wait_for_timeout(800)
            png = page.screenshot(clip={k: clip[k] for k in ("x", "y", "width", "height")})
            img = Image.open(io.BytesIO(png)).convert("RGB").resize((SIZE, SIZE), Image.LANCZOS)
            path = out_dir / f"{name}.jpg"
            img.save(path, "JPEG", quality=QUALITY, optimize=True, progressive=True)
            written.append(path)
    return written


def measure_min_sizes(types: Sequence[str]) -> Dict[str, List[int]]:
    """The smallest size (LGraphNode.computeSize, rounded up) the frontend gives a new node of each type."""
    with comfy_server() as url, frontend(url, 1600, 1000) as page:
        return page.evaluate(
            """(types) => Object.fromEntries(types.map(t => {
            const n = LiteGraph.createNode(t);
            window.comfyAPI.app.app.graph.add(n);
            const s = n.computeSize().map(Math.ceil);
            window.comfyAPI.app.app.graph.remove(n);
            return [t, s];
        }))""",
            list(types),
        )
