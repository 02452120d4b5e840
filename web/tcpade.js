// TC-Padé web extension: run reports on the cache nodes, scores and timing on the Compare node,
// slow / fast preset buttons on the TC-Padé node, widgets a preset or mode overrides shown disabled,
// the pack's templates listed in file-name order.
//
// Everything here is optional: without this file the nodes run the same way (the server only
// broadcasts a "tcpade.report" message that nobody listens to, and the Compare node still
// previews its difference image and outputs PSNR / SSIM).
//
// Data sources
//   * "tcpade.report" (server, nodes/patcher.py): one message per sampling run of a cache node:
//     {node, label, method, gate, threshold, computed, num_steps, speedup, steps: [{step,
//     computed, gate, phase, reason, t}], ...}. Matched to the node by payload.node == node.id.
//   * GET /tcpade/reports (server, nodes/routes.py): the last report of every cache node, with the id of
//     the workflow it ran in. Fetched when a workflow is loaded (a page reload too) and when the host
//     serves nodes from its cache ("execution_cached"), so a panel shows the last run, not "no run yet".
//   * the Compare node's UI output "tcpade_compare": {psnr, ssim, images, identical_images, amplify, text}.
//   * timing: ComfyUI's own execution events. A node runs from its "executing" event to the next
//     "executing" (or the end of the prompt); a sampler also sends one "progress" tick per step.
//     The sampler that runs first also loads the model weights, so a node's time is measured
//     from its first step tick to its end, plus an estimate of the first step (the median
//     duration of the other computed steps, known from the cache report; of all steps for an
//     uncached sampler). A branch's time is the sum over the samplers only that branch runs:
//     the samplers upstream of the Compare node's "test" input that are not upstream of its
//     "reference" input (and vice versa). Re-queueing after changing only a cache node re-runs
//     only that branch; the other branch keeps its time from the earlier run (marked "earlier").
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "tcpade.cache";
const CACHE_TYPES = new Set(["TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache"]);
const COMPARE_TYPE = "TCPade_Compare";
const TCPADE_TYPE = "TCPade_TCPadeCache";
const PRESETS = { "slow (2x)": 2.0, "fast (2.8x)": 2.8 };   // preset -> speed target (nodes/cache_nodes.py)
const CUSTOM = "custom";
const LABELS = {   // report label (nodes/cache_nodes.py LABEL) per node type
  TCPade_TCPadeCache: "TC-Padé", TCPade_TaylorSeer: "TaylorSeer", TCPade_TeaCache: "TeaCache", TCPade_TraCache: "TraCache",
};
const STATS_H = 196;
const GATE_RULES = {   // how each method's gate decides (tcpade_core/gates.py)
  "TSI stability": "skip when stability ≥ θ",
  "accumulated rel. L1": "skip while distance < δ",
  "interval": "fixed interval",
  "stride": "fixed stride",
};
const GATE_AXES = {    // y-axis name and threshold symbol of the gate plot
  "TSI stability": ["stability score", "θ"],
  "accumulated rel. L1": ["distance", "δ"],
};
const COMPARE_H = 66;
const REPORTS_PATH = "/tcpade/reports";
const COLORS = {
  computed: "#e8a33d", skipped: "#3aa6a0", grid: "#555", text: "#ddd", dim: "#999",
  threshold: "#e05a5a", phase: { early: "#6b8fd6", mid: "#9b7bd1", late: "#c77bb0" },
};

// ------------------------------------------------------------------------------------ state

const state = {
  reports: new Map(),   // cache node id -> last tcpade.report payload (+ prompt, receivedAt, fromServer)
  compares: new Map(),  // compare node id -> last tcpade_compare payload (+ prompt)
  timing: new Map(),    // any node id -> {id, prompt, start, end, ticks: [{value, max, t}], status}
  prompt: null,         // id of the prompt running now (or last run)
  open: null,           // timing record of the node executing now
};

const now = () => performance.now() / 1000;
const sid = (id) => (id === null || id === undefined ? null : String(id));

function closeOpen(t, status = "ok") {
  if (state.open) {
    state.open.end = t;
    state.open.status = status;
    state.open = null;
  }
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// ------------------------------------------------------------------------------------ graph helpers

function graph() {
  return app.graph;
}

/** The node of an id as the server sends it (a string) or as the graph keeps it (a number up to frontend 1.2x,
 *  a string from 1.49): looked up as given first, then as a number for a graph that keys numbers strictly. */
function nodeById(id) {
  if (id === null || id === undefined) return null;
  const g = graph();
  const n = g?.getNodeById?.(id);
  if (n) return n;
  const k = Number(id);
  return Number.isFinite(k) && String(k) === String(id) ? g?.getNodeById?.(k) ?? null : null;
}

function isActive(node) {
  return node && node.mode !== 2 && node.mode !== 4; // 2: muted, 4: bypassed
}

/** A sampler: outputs a LATENT and takes a MODEL or a GUIDER (KSampler, KSamplerAdvanced, SamplerCustom...). */
function isSampler(node) {
  if (!node?.outputs?.some((o) => o.type === "LATENT")) return false;
  return !!node.inputs?.some((i) => i.type === "MODEL" || i.type === "GUIDER");
}

/** Every node upstream of one input slot (or of all inputs when slot is null), the node itself excluded. */
function upstream(node, slot = null) {
  const seen = new Set();
  const stack = [];
  const push = (n) => {
    if (n && !seen.has(n.id)) {
      seen.add(n.id);
      stack.push(n);
    }
  };
  if (slot === null) (node.inputs ?? []).forEach((_, i) => push(node.getInputNode(i)));
  else push(node.getInputNode(slot));
  while (stack.length) {
    const n = stack.pop();
    (n.inputs ?? []).forEach((_, i) => push(n.getInputNode(i)));
  }
  return seen;
}

/** Samplers downstream of a node, not looking past a sampler. */
function samplersDownstream(node) {
  const out = [];
  const seen = new Set([node.id]);
  const stack = [node];
  while (stack.length) {
    const n = stack.pop();
    (n.outputs ?? []).forEach((_, i) => {
      for (const m of n.getOutputNodes(i) ?? []) {
        if (seen.has(m.id)) continue;
        seen.add(m.id);
        if (isSampler(m)) out.push(m);
        else stack.push(m);
      }
    });
  }
  return out;
}

/** The nearest cache node upstream of a sampler's model input (or null). */
function cacheNodeOf(sampler) {
  const slot = sampler.inputs?.findIndex((i) => i.type === "MODEL" || i.type === "GUIDER");
  if (slot === undefined || slot < 0) return null;
  const stack = [sampler.getInputNode(slot)];
  const seen = new Set();
  while (stack.length) {
    const n = stack.shift();
    if (!n || seen.has(n.id)) continue;
    seen.add(n.id);
    if (CACHE_TYPES.has(n.type) && isActive(n)) return n;
    (n.inputs ?? []).forEach((inp, i) => {
      if (inp.type === "MODEL" || inp.type === "GUIDER") stack.push(n.getInputNode(i));
    });
  }
  return null;
}

// ------------------------------------------------------------------------------------ timing

/**
 * Sampling seconds of one sampler node, model loading excluded (see the header), or null.
 * Returns {seconds, prompt, estimated} where estimated says the first step was estimated.
 */
function samplerSeconds(node) {
  const rec = state.timing.get(sid(node.id));
  if (!rec || rec.end === null || rec.status !== "ok") return null;
  const ticks = rec.ticks;
  if (ticks.length < 2) return { seconds: rec.end - rec.start, prompt: rec.prompt, estimated: false };
  const steps = [];
  for (let k = 1; k < ticks.length; k++) steps.push({ step: k, dt: ticks[k].t - ticks[k - 1].t });
  let pool = steps;
  const cache = cacheNodeOf(node);
  const rep = cache ? state.reports.get(sid(cache.id)) : null;
  if (rep && rep.prompt === rec.prompt && Array.isArray(rep.steps) && rep.steps.length === ticks.length) {
    const computed = steps.filter((s) => rep.steps[s.step]?.computed);
    if (computed.length) pool = computed;
  }
  const first = median(pool.map((s) => s.dt));
  return { seconds: rec.end - ticks[0].t + first, prompt: rec.prompt, estimated: true };
}

/** Sum of samplerSeconds over nodes; null if any is unknown. */
function sumSeconds(nodes) {
  let total = 0;
  let earlier = false;
  for (const n of nodes) {
    const s = samplerSeconds(n);
    if (!s) return null;
    total += s.seconds;
    if (s.prompt !== state.prompt) earlier = true;
  }
  return { seconds: total, earlier };
}

/** Test / reference branch seconds of a Compare node, from the samplers only one side runs. */
function compareTiming(node) {
  const ti = node.inputs?.findIndex((i) => i.name === "test");
  const ri = node.inputs?.findIndex((i) => i.name === "reference");
  if (ti < 0 || ri < 0) return null;
  const up = (slot) => [...upstream(node, slot)].map(nodeById).filter((n) => n && isActive(n));
  const testUp = up(ti);
  const refUp = up(ri);
  const refIds = new Set(refUp.map((n) => n.id));
  const testIds = new Set(testUp.map((n) => n.id));
  const testOnly = testUp.filter((n) => isSampler(n) && !refIds.has(n.id));
  const refOnly = refUp.filter((n) => isSampler(n) && !testIds.has(n.id));
  if (!testOnly.length || !refOnly.length) return { samplers: [testOnly, refOnly], test: null, ref: null };
  const test = sumSeconds(testOnly);
  const ref = sumSeconds(refOnly);
  const speedup = test && ref && test.seconds > 0 ? ref.seconds / test.seconds : null;
  return { samplers: [testOnly, refOnly], test, ref, speedup };
}

// ------------------------------------------------------------------------------------ DOM + drawing

function injectStyle() {
  if (document.getElementById("tcpade-style")) return;
  const css = `
.tcpade-panel{box-sizing:border-box;width:100%;height:100%;padding:2px 4px;font:11px/1.35 system-ui,sans-serif;
  color:${COLORS.text};background:rgba(0,0,0,.25);border-radius:4px;overflow:hidden;display:flex;flex-direction:column}
.tcpade-line{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;flex:0 0 auto}
.tcpade-dim{color:${COLORS.dim}}
.tcpade-notes{flex:0 0 auto;color:${COLORS.computed};white-space:normal;overflow:hidden;display:-webkit-box;
  -webkit-box-orient:vertical;-webkit-line-clamp:3;line-height:1.3}
.tcpade-notes:empty{display:none}
.tcpade-canvas{flex:1 1 auto;width:100%;min-height:0;display:block}`;
  const el = document.createElement("style");
  el.id = "tcpade-style";
  el.textContent = css;
  document.head.appendChild(el);
}

function addPanel(node, name, height, withCanvas, nLines = 2) {
  injectStyle();
  const el = document.createElement("div");
  el.className = "tcpade-panel";
  el.dataset.tcpade = name;
  const lines = Array.from({ length: nLines }, () => document.createElement("div"));
  lines.forEach((l, i) => {
    l.className = "tcpade-line" + (i ? " tcpade-dim" : "");
    el.appendChild(l);
  });
  let canvas = null;
  let notes = null;
  if (withCanvas) {
    notes = document.createElement("div");   // every warning of the run, wrapped (up to 3 lines; all in the tooltip)
    notes.className = "tcpade-notes";
    el.appendChild(notes);
    canvas = document.createElement("canvas");
    canvas.className = "tcpade-canvas";
    el.appendChild(canvas);
    // redraw when the node (and so the canvas) is resized
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => drawStats(canvas, state.reports.get(sid(node.id)) ?? null)).observe(canvas);
    }
  }
  const widget = node.addDOMWidget(name, "tcpade", el, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => height,
    getMaxHeight: () => height,
  });
  widget.serialize = false; // not in widgets_values: the saved workflow is the same with or without this file
  if (widget.options) widget.options.serialize = false; // not in the API prompt
  return { el, lines, notes, canvas, widget };
}

function fmt(x, digits = 2) {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

/** 2 -> "2", 2.8 -> "2.8", 2.25 -> "2.25": a speed target as the user typed it. */
function fmtTarget(x) {
  return Number.isFinite(x) ? String(Number(x.toFixed(2))) : "–";
}

/** The panel's first line: what the run computed and what speed-up it reached (against its target). */
function resultLine(rep) {
  const head = rep.interrupted ? `interrupted at step ${rep.num_steps}/${rep.planned_steps} · ` : "";
  const speed = rep.target_speedup
    ? `target ${fmtTarget(rep.target_speedup)}x → reached ${fmt(rep.speedup)}x`
    : `${fmt(rep.speedup)}x speed-up`;
  return `${head}computed ${rep.computed}/${rep.num_steps} steps · ${speed}`;
}

function drawStats(canvas, rep) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(40, canvas.clientWidth);
  const h = Math.max(30, canvas.clientHeight);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  canvas.dataset.axes = "";
  if (!rep || !rep.steps?.length) return;
  const n = rep.steps.length;
  const padL = 14, padR = 4, axisH = 11;   // room for the y-axis name (left) and the step axis (bottom)
  const cw = (w - padL - padR) / n;
  ctx.font = "10px system-ui, sans-serif";
  // strip: one cell per step; filled = computed, outlined = skipped (predicted); phase underline
  const stripY = 2, stripH = 10;
  rep.steps.forEach((s, i) => {
    const x = padL + i * cw;
    ctx.fillStyle = s.computed ? COLORS.computed : COLORS.skipped;
    ctx.globalAlpha = s.computed ? 1 : 0.45;
    ctx.fillRect(x + 0.5, stripY, Math.max(1, cw - 1), stripH);
    ctx.globalAlpha = 1;
    const ph = COLORS.phase[s.phase];
    if (ph) {
      ctx.fillStyle = ph;
      ctx.fillRect(x + 0.5, stripY + stripH + 1, Math.max(1, cw - 1), 2);
    }
  });
  // step axis: first and last step number and the axis name, under everything
  const bottom = h - axisH - 2;
  ctx.fillStyle = COLORS.dim;
  ctx.textBaseline = "alphabetic";
  ctx.textAlign = "left";
  ctx.fillText("1", padL + cw / 2 - 3, h - 2);
  ctx.textAlign = "right";
  ctx.fillText(String(n), padL + (n - 0.5) * cw + 6, h - 2);
  ctx.textAlign = "center";
  ctx.fillText("step", padL + (w - padL - padR) / 2, h - 2);
  ctx.textAlign = "left";
  // gate plot: the gate signal per step against the threshold line
  const top = stripY + stripH + 6;
  const gates = rep.steps.map((s) => (typeof s.gate === "number" && Number.isFinite(s.gate) ? s.gate : null));
  const thr = typeof rep.threshold === "number" && Number.isFinite(rep.threshold) ? rep.threshold : null;
  const vals = gates.filter((g) => g !== null);
  if (!vals.length || thr === null) {
    ctx.fillStyle = COLORS.dim;
    ctx.fillText(`${rep.gate || "fixed schedule"}: no gate signal to plot`, padL, top + 12);
    canvas.dataset.axes = "step";
    return;
  }
  const isTSI = rep.method === "tcpade";
  const [yName, sym] = GATE_AXES[rep.gate] ?? [isTSI ? "stability score" : "gate signal", isTSI ? "θ" : "δ"];
  const lo = 0;
  // TC-Padé's stability score is unbounded (up to 100 on a straight trajectory): θ sits in the middle and
  // larger scores are drawn clipped at the top. TeaCache's distance stays near δ: show up to max(1.4 δ, peak).
  let hi = isTSI ? 2 * thr : Math.min(Math.max(thr * 1.4, ...vals), 3 * thr);
  if (!(hi > lo)) hi = Math.max(1, ...vals);
  const inset = 4; // keep dots at the range ends inside the frame
  const y = (v) => bottom - inset - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * (bottom - top - 2 * inset);
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(padL + 0.5, top + 0.5, w - padL - padR, bottom - top);
  // y-axis name, written upwards along the left edge
  ctx.save();
  ctx.translate(9, (top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillStyle = COLORS.dim;
  ctx.fillText(yName, 0, 0);
  ctx.restore();
  ctx.setLineDash([4, 3]);
  ctx.strokeStyle = COLORS.threshold;
  ctx.beginPath();
  ctx.moveTo(padL, y(thr));
  ctx.lineTo(w - padR, y(thr));
  ctx.stroke();
  ctx.setLineDash([]);
  // threshold label on the left, where the first (always computed, gate-less) steps leave room
  ctx.fillStyle = COLORS.threshold;
  const above = y(thr) - top > 12;
  const thrLabel = `${sym} = ${fmt(thr)}`;
  ctx.fillText(thrLabel, padL + 3, above ? y(thr) - 3 : y(thr) + 11);
  canvas.dataset.axes = `${yName}|step|${thrLabel}`;
  ctx.strokeStyle = COLORS.dim;
  ctx.beginPath();
  let started = false;
  gates.forEach((g, i) => {
    if (g === null) {
      started = false;
      return;
    }
    const x = padL + (i + 0.5) * cw;
    if (started) ctx.lineTo(x, y(g));
    else ctx.moveTo(x, y(g));
    started = true;
  });
  ctx.stroke();
  gates.forEach((g, i) => {
    if (g === null) return;
    const x = padL + (i + 0.5) * cw;
    ctx.fillStyle = rep.steps[i].computed ? COLORS.computed : COLORS.skipped;
    ctx.beginPath();
    if (g > hi) { // off the scale: a triangle pointing up
      ctx.moveTo(x, y(hi) - 3);
      ctx.lineTo(x - 3, y(hi) + 2);
      ctx.lineTo(x + 3, y(hi) + 2);
      ctx.closePath();
    } else {
      ctx.arc(x, y(g), 2.5, 0, Math.PI * 2);
    }
    ctx.fill();
  });
}

// ------------------------------------------------------------------------------------ views

function renderCacheNode(node) {
  const p = node.tcpadePanel;
  if (!p) return;
  const rep = state.reports.get(sid(node.id));
  const el = p.el;
  if (!rep) {
    p.lines[0].textContent = "no run yet";
    p.lines[1].textContent = "queue the workflow: computed / skipped steps";
    p.lines[2].textContent = "and the gate signal appear here";
    p.notes.textContent = "";
    el.title = "";
    for (const k of ["computed", "numSteps", "speedup", "strip", "notes", "prompt", "source", "seconds", "wallSpeedup"])
      el.dataset[k] = "";
    drawStats(p.canvas, null);
    return;
  }
  const strip = rep.steps.map((s) => (s.computed ? "#" : ".")).join("");
  const notes = rep.notes ?? [];
  p.lines[0].textContent = resultLine(rep);
  el.dataset.interrupted = rep.interrupted ? "1" : "";
  el.dataset.notes = notes.join("\n");
  el.dataset.computed = String(rep.computed);
  el.dataset.numSteps = String(rep.num_steps);
  el.dataset.speedup = fmt(rep.speedup);
  el.dataset.strip = strip;
  el.dataset.threshold = rep.threshold === null || rep.threshold === undefined ? "" : String(rep.threshold);
  el.dataset.prompt = rep.prompt ?? "";
  el.dataset.source = rep.fromServer ? "server" : "live";
  // wall time: this node's samplers, and the branch speed-up from a Compare node scoring them
  const samplers = samplersDownstream(node);
  const secs = sumSeconds(samplers);
  let wall = secs ? `sampling ${fmt(secs.seconds)} s` : "sampling time: – (not timed in this tab)";
  el.dataset.wallSpeedup = "";
  const cmp = (graph()?.nodes ?? []).filter((n) => n.type === COMPARE_TYPE && isActive(n));
  for (const c of cmp) {
    const t = compareTiming(c);
    if (t?.speedup && samplers.some((s) => t.samplers[0].some((x) => x.id === s.id))) {
      wall += ` · ${fmt(t.speedup)}x wall vs. reference`;
      el.dataset.wallSpeedup = fmt(t.speedup);
      break;
    }
  }
  el.dataset.seconds = secs ? fmt(secs.seconds, 3) : "";
  p.lines[1].textContent = wall;
  p.lines[2].textContent = `${rep.label}: ${GATE_RULES[rep.gate] ?? rep.gate ?? ""}` +
    (rep.target_note ? ` · ${rep.target_note}` : "");
  // every warning that changes what the run means, each on its own line (the tooltip has them in full)
  p.notes.textContent = notes.map((x) => `⚠ ${x}`).join("\n");
  p.notes.style.whiteSpace = "pre-line";
  el.title = [rep.summary || "", ...notes.map((x) => `⚠ ${x}`)].filter(Boolean).join("\n");
  drawStats(p.canvas, rep);
}

function renderCompareNode(node) {
  const p = node.tcpadePanel;
  if (!p) return;
  const res = state.compares.get(sid(node.id));
  const el = p.el;
  if (res) {
    p.lines[0].textContent = res.text;
    el.dataset.psnr = res.psnr === null ? "inf" : String(res.psnr);
    el.dataset.ssim = String(res.ssim);
    const n = res.images ?? 1;
    const shown = res.previewed ?? n;
    p.lines[2].textContent = `difference ×${fmtTarget(res.amplify)}` +
      (n > 1 ? ` of ${shown === n ? `the ${n}` : `${shown} of ${n}`} images` : "") + ": black = identical";
  } else {
    p.lines[0].textContent = "PSNR / SSIM: not run yet";
    p.lines[2].textContent = "queue the workflow: scores and the difference image appear here";
  }
  const t = compareTiming(node);
  if (!t || !t.samplers[0].length || !t.samplers[1].length) {
    p.lines[1].textContent = "timing: test and reference need their own sampler";
  } else if (!t.test || !t.ref) {
    p.lines[1].textContent = "timing: run both branches once in this tab";
  } else {
    const old = t.test.earlier || t.ref.earlier ? " (incl. an earlier run)" : "";
    p.lines[1].textContent = `${fmt(t.test.seconds)} s vs. ${fmt(t.ref.seconds)} s reference: ${fmt(t.speedup)}x${old}`;
    el.dataset.testSeconds = fmt(t.test.seconds, 3);
    el.dataset.refSeconds = fmt(t.ref.seconds, 3);
    el.dataset.speedup = fmt(t.speedup);
  }
  el.title = "Sampling time of the samplers only this branch runs; model loading excluded " +
    "(first step estimated from the median computed step).";
}

function renderAll() {
  for (const n of graph()?.nodes ?? []) {
    if (CACHE_TYPES.has(n.type)) renderCacheNode(n);
    else if (n.type === COMPARE_TYPE) renderCompareNode(n);
  }
  graph()?.setDirtyCanvas?.(true, true);
}

// ------------------------------------------------------------------------------------ reports kept by the server

function workflowId() {
  const id = graph()?.id;
  return id === undefined || id === null ? null : String(id);
}

/**
 * Show the server's last report on every cache node of this workflow that has one (GET /tcpade/reports):
 * after a page reload, or when the host serves a branch from its cache and sends no report. A report
 * is shown only on a node of the same type in the workflow it ran in.
 */
async function loadServerReports() {
  let all;
  try {
    const res = await api.fetchApi(REPORTS_PATH, { cache: "no-store" });
    if (!res.ok) return 0;
    all = await res.json();
  } catch {
    return 0; // an older server without the route: live reports only
  }
  const wid = workflowId();
  let shown = 0;
  for (const [id, rep] of Object.entries(all ?? {})) {
    const node = nodeById(id);
    if (!node || !CACHE_TYPES.has(node.type) || LABELS[node.type] !== rep.label) continue;
    if (!rep.workflow_id || !wid || rep.workflow_id !== wid) continue;
    const cur = state.reports.get(sid(id));
    // a report received live is never older than the server's (every report is broadcast to every tab)
    if (cur && (!cur.fromServer || cur.prompt_id === rep.prompt_id)) continue;
    state.reports.set(sid(id), { ...rep, prompt: rep.prompt_id ?? null, receivedAt: now(), fromServer: true });
    shown += 1;
  }
  if (shown) renderAll();
  return shown;
}

// ------------------------------------------------------------------------------------ widget labels

/**
 * The display names the node definitions declare for their widgets (θ, λ, α1, β, N (interval), ...):
 * this frontend labels widgets from its translation files only and leaves a V3 input's display_name unused.
 */
function applyDisplayNames(node, nodeData) {
  const specs = { ...(nodeData?.input?.required ?? {}), ...(nodeData?.input?.optional ?? {}) };
  for (const w of node.widgets ?? []) {
    const name = specs[w.name]?.[1]?.display_name;
    if (name && (!w.label || w.label === w.name)) w.label = name;
  }
}

// ------------------------------------------------------------------------------------ presets

function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

/**
 * TC-Padé widgets that have no effect with the node's preset and mode (nodes/cache_nodes.py: target_of,
 * make_config; tcpade_core/config.py): name -> why. They are drawn disabled and say why in their label.
 */
function tcpadeOverridden(node) {
  const v = (name) => findWidget(node, name)?.value;
  const preset = v("preset");
  const mode = v("mode");
  const out = {};
  if (preset !== undefined && preset !== CUSTOM) out.target_speedup = `set by preset: ${fmtTarget(PRESETS[preset])}x`;
  if (mode === "official") {
    out.lam = "not used in official mode";
    if (preset !== CUSTOM) out.theta = out.interval = "official schedule; preset custom to set";
  }
  if (mode !== undefined && mode !== "paper_literal") out.alpha1 = out.beta = "paper_literal mode only";
  return out;
}

/** Disable (and relabel) the widgets the preset or mode overrides; enable the others. */
function syncOverrides(node) {
  const why = tcpadeOverridden(node);
  for (const w of node.widgets ?? []) {
    if (!["target_speedup", "theta", "lam", "alpha1", "beta", "interval"].includes(w.name)) continue;
    if (w.tcpadeLabel === undefined) w.tcpadeLabel = w.label ?? null;
    const base = w.tcpadeLabel ?? w.name;
    const reason = why[w.name];
    const label = reason ? `${base} (${reason})` : w.tcpadeLabel ?? undefined;
    if (!!w.disabled !== !!reason || w.label !== label) {
      w.disabled = !!reason;
      w.label = label;
      node.setDirtyCanvas?.(true, true);
    }
  }
}

function applyPreset(node, preset) {
  const p = findWidget(node, "preset");
  const th = findWidget(node, "target_speedup");
  if (!p || !th || !(preset in PRESETS)) return;
  p.value = preset;
  th.value = PRESETS[preset];
  syncOverrides(node);
  node.setDirtyCanvas?.(true, true);
  graph()?.change?.();
}

function setupTCPade(node) {
  const p = findWidget(node, "preset");
  const th = findWidget(node, "target_speedup");
  if (p && th) {
    // keep the target widget showing the speed a preset puts in effect
    const cb = p.callback;
    p.callback = function (v, ...rest) {
      const r = cb?.apply(this, [v, ...rest]);
      if (v in PRESETS) th.value = PRESETS[v];
      syncOverrides(node);
      return r;
    };
  }
  const m = findWidget(node, "mode");
  if (m) {
    const cb = m.callback;
    m.callback = function (...args) {
      const r = cb?.apply(this, args);
      syncOverrides(node);
      return r;
    };
  }
  for (const preset of Object.keys(PRESETS)) {
    const b = node.addWidget("button", `preset: ${preset}`, null, () => applyPreset(node, preset));
    b.serialize = false;
    b.options = { ...(b.options ?? {}), serialize: false };
  }
  syncOverrides(node);
}

// ------------------------------------------------------------------------------------ templates

/** This pack's folder under custom_nodes: the module the host lists its templates under. */
const PACK_MODULE = (() => {
  const m = /\/extensions\/([^/]+)\//.exec(new URL(import.meta.url).pathname);
  return m ? decodeURIComponent(m[1]) : null;
})();

/**
 * The host lists a pack's templates in directory order (a glob, app/custom_node_manager.py) and the
 * frontend keeps that order: sort ours by file name, so the numbered CPU workflows come first.
 */
function sortTemplates() {
  const orig = api.getWorkflowTemplates;
  if (typeof orig !== "function" || orig.tcpadeSorted) return;
  const sorted = async function (...args) {
    const res = await orig.apply(this, args);
    if (PACK_MODULE && Array.isArray(res?.[PACK_MODULE])) res[PACK_MODULE] = [...res[PACK_MODULE]].sort();
    return res;
  };
  sorted.tcpadeSorted = true;
  api.getWorkflowTemplates = sorted;
}

// ------------------------------------------------------------------------------------ extension

app.registerExtension({
  name: EXT,

  async setup() {
    sortTemplates();
    api.addEventListener("tcpade.report", ({ detail }) => {
      const id = sid(detail?.node);
      if (id === null) return;
      state.reports.set(id, { ...detail, prompt: state.prompt, receivedAt: now(), fromServer: false });
      renderAll();
    });
    api.addEventListener("execution_start", ({ detail }) => {
      closeOpen(now());
      state.prompt = detail?.prompt_id ?? null;
    });
    api.addEventListener("execution_cached", ({ detail }) => {
      // cached nodes send no report: show the one the server kept (a reloaded page has none of its own)
      if ((detail?.nodes ?? []).some((id) => CACHE_TYPES.has(nodeById(id)?.type))) loadServerReports();
    });
    api.addEventListener("executing", ({ detail }) => {
      const t = now();
      closeOpen(t);
      const id = sid(detail);
      if (id === null) return;
      const rec = { id, prompt: state.prompt, start: t, end: null, ticks: [], status: "running" };
      state.timing.set(id, rec);
      state.open = rec;
    });
    api.addEventListener("progress", ({ detail }) => {
      const rec = state.open;
      if (rec && sid(detail?.node) === rec.id) rec.ticks.push({ value: detail.value, max: detail.max, t: now() });
    });
    for (const [ev, status] of [["execution_success", "ok"], ["execution_error", "error"],
                                ["execution_interrupted", "interrupted"]]) {
      api.addEventListener(ev, () => {
        closeOpen(now(), status);
        renderAll();
      });
    }
    // a test or a user script can read what the panels show
    window.tcpade = { state, compareTiming, samplerSeconds, renderAll, loadServerReports, tcpadeOverridden, resultLine };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (!name?.startsWith("TCPade_")) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      applyDisplayNames(this, nodeData);
      if (name === TCPADE_TYPE) setupTCPade(this);
      if (CACHE_TYPES.has(name)) {
        this.tcpadePanel = addPanel(this, "tcpade_stats", STATS_H, true, 3);
        renderCacheNode(this);
      } else if (name === COMPARE_TYPE) {
        this.tcpadePanel = addPanel(this, "tcpade_compare", COMPARE_H, false, 3);
        renderCompareNode(this);
      }
      return r;
    };
    if (name === TCPADE_TYPE) {
      // values set by a loaded workflow, the widget API or the mouse: keep the disabled widgets right
      const onConfigure = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function () {
        const r = onConfigure?.apply(this, arguments);
        syncOverrides(this);
        return r;
      };
      const onWidgetChanged = nodeType.prototype.onWidgetChanged;
      nodeType.prototype.onWidgetChanged = function () {
        const r = onWidgetChanged?.apply(this, arguments);
        syncOverrides(this);
        return r;
      };
      const onDrawBackground = nodeType.prototype.onDrawBackground;
      nodeType.prototype.onDrawBackground = function () {
        syncOverrides(this);
        return onDrawBackground?.apply(this, arguments);
      };
    }
    if (name === COMPARE_TYPE) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        const r = onExecuted?.apply(this, arguments);
        const res = output?.tcpade_compare?.[0];
        if (res) {
          state.compares.set(sid(this.id), { ...res, prompt: state.prompt });
          renderCompareNode(this);
        }
        return r;
      };
    }
  },

  async afterConfigureGraph() {
    // a new workflow: node ids mean other nodes now; the server may still know this workflow's last run
    state.reports.clear();
    state.compares.clear();
    state.timing.clear();
    renderAll();
    await loadServerReports();
  },
});
