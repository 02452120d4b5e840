// TC-Padé web extension: run reports on the cache nodes, scores and timing on the Compare node,
// slow / fast preset buttons on the TC-Padé node, widgets a preset, mode or target overrides shown
// disabled (the reason in their label and tooltip), the pack's templates listed in file-name order.
//
// Everything here is optional: without this file the nodes run the same way (the server only
// broadcasts a "tcpade.report" message that nobody listens to, and the Compare node still
// previews its difference image and outputs PSNR / SSIM).
//
// Data sources
//   * "tcpade.report" (server, nodes/patcher.py): one message per sampling run of a cache node:
//     {node, label, method, gate, threshold, computed, num_steps, speedup, target_speedup, target_note, schedule,
//     notes, timing: {computed_s, skipped_s, estimated_speedup, basis}, steps: [{step, computed, gate,
//     phase, reason, t}], ...}. Matched to the node by payload.node == node.id. The panel's speed figures are
//     the run's own: the NFE speed-up (computed / all steps) and, from timing, the wall-clock speed-up the
//     run's own computed and skipped model calls imply. No figure compares against another branch.
//   * GET /tcpade/reports and GET /tcpade/compares (server, nodes/routes.py): the last report of every cache
//     node and the last result of every Compare node, each with the id of the workflow it ran in. Fetched when
//     a workflow is loaded (a page reload too) and when the host serves nodes from its cache
//     ("execution_cached"), so a panel shows the last run, not "no run yet".
//   * the Compare node's UI output "tcpade_compare": {psnr, ssim, images, identical_images, amplify, text,
//     worst_psnr, worst_index, per_image_psnr, changed, changed_floor_db}; image indices are 0-based there and
//     shown 1-based (as the server's own text does).
//   * timing on the Compare node: ComfyUI's own execution events. A node runs from its "executing" event to
//     the next "executing" (or the end of the prompt); a sampler also sends one "progress" tick per step.
//     The sampler that runs first also loads the model weights, so a node's time is measured
//     from its first step tick to its end, plus an estimate of the first step (the median
//     duration of the other computed steps, known from the cache report; of all steps for an
//     uncached sampler). A branch's time is the sum over the samplers only that branch runs:
//     the samplers upstream of the Compare node's "test" input that are not upstream of its
//     "reference" input (and vice versa). The branch that ran first also warmed up the device (and ran
//     before any other load): the node says which branch ran first, and when it was the reference it
//     shows no speed-up ("timings not comparable"). Re-queueing after changing only a cache node re-runs
//     only that branch; the other branch keeps its time from the earlier run (and so ran first).
//
// Layout: every text line wraps between its " · " parts (nothing is cut with an ellipsis); a panel whose
// node is too small for all its lines leaves out the least important ones (each panel's tooltip has them
// all). window.tcpade.textBoxes(node) returns every drawn text with its box, for the browser test.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "tcpade.cache";
// What the pack says of each cache node (GET /tcpade/methods: tcpade_core/methods.py ui_table): its label, presets
// and the rules that grey a widget out. Loaded once, in init(), before the node types are registered; nothing of a
// method is declared here.
const METHODS = {};
const CACHE_TYPES = new Set();
const COMPARE_TYPE = "TCPade_Compare";
const METHODS_PATH = "/tcpade/methods";
const STATS_H = 196;     // the cache panel's height at the node's smallest size (the node's computeSize counts it;
                         // workflows/make_workflows.py MIN_SIZE)
const STATS_MAX_H = 420; // in a taller cache node (a user enlarged it) the panel grows up to this
const COMPARE_H = 66;    // the Compare panel's height at the node's smallest size (same)
const COMPARE_MAX_H = 124;  // in a taller Compare node the panel grows up to this; the preview gets the rest
const REPORTS_PATH = "/tcpade/reports";
const COMPARES_PATH = "/tcpade/compares";
const NO_GATE = "no gate signal (fixed schedule)";
const COLORS = {
  computed: "#e8a33d", skipped: "#3aa6a0", grid: "#555", text: "#ddd", dim: "#999",
  threshold: "#e05a5a", phase: { early: "#6b8fd6", mid: "#9b7bd1", late: "#c77bb0" },
};
const FONT = "10px system-ui, sans-serif";   // the canvas's text

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
 * Returns {seconds, prompt, start, estimated} where estimated says the first step was estimated.
 */
function samplerSeconds(node) {
  const rec = state.timing.get(sid(node.id));
  if (!rec || rec.end === null || rec.status !== "ok") return null;
  const ticks = rec.ticks;
  if (ticks.length < 2) return { seconds: rec.end - rec.start, prompt: rec.prompt, start: rec.start, estimated: false };
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
  return { seconds: rec.end - ticks[0].t + first, prompt: rec.prompt, start: rec.start, estimated: true };
}

/** Sum of samplerSeconds over nodes, and when the first of them started; null if any is unknown. */
function sumSeconds(nodes) {
  let total = 0;
  let earlier = false;
  let start = Infinity;
  if (!nodes.length) return null;
  for (const n of nodes) {
    const s = samplerSeconds(n);
    if (!s) return null;
    total += s.seconds;
    start = Math.min(start, s.start);
    if (s.prompt !== state.prompt) earlier = true;
  }
  return { seconds: total, earlier, start };
}

/** The samplers upstream of a Compare node's test and reference inputs that only that side runs. */
function branchSamplers(node) {
  const ti = node.inputs?.findIndex((i) => i.name === "test") ?? -1;
  const ri = node.inputs?.findIndex((i) => i.name === "reference") ?? -1;
  const up = (slot) => (slot < 0 ? [] : [...upstream(node, slot)].map(nodeById).filter((n) => n && isActive(n)));
  const testUp = up(ti);
  const refUp = up(ri);
  const refIds = new Set(refUp.map((n) => n.id));
  const testIds = new Set(testUp.map((n) => n.id));
  return [testUp.filter((n) => isSampler(n) && !refIds.has(n.id)), refUp.filter((n) => isSampler(n) && !testIds.has(n.id))];
}

/**
 * Test / reference branch seconds of a Compare node, from the samplers only one side runs, and which branch
 * ran first ("test" or "reference"): the one that ran first warmed the device up, so the speed-up is given
 * only when the test branch ran first.
 */
function compareTiming(node) {
  const [testOnly, refOnly] = branchSamplers(node);
  if (!testOnly.length || !refOnly.length) return { samplers: [testOnly, refOnly], test: null, ref: null };
  const test = sumSeconds(testOnly);
  const ref = sumSeconds(refOnly);
  const first = test && ref ? (test.start <= ref.start ? "test" : "reference") : null;
  const speedup = test && ref && test.seconds > 0 ? ref.seconds / test.seconds : null;
  return { samplers: [testOnly, refOnly], test, ref, speedup, first, comparable: first === "test" };
}

/** The computed steps of the cache nodes that feed a Compare node's test branch (through its samplers). */
function branchComputed(node) {
  const [testOnly] = branchSamplers(node);
  const caches = [...new Map(testOnly.map(cacheNodeOf).filter(Boolean).map((c) => [c.id, c])).values()];
  if (!caches.length) return null;
  const reps = caches.map((c) => state.reports.get(sid(c.id)));
  if (reps.some((r) => !r)) return { computed: null, numSteps: null };
  return { computed: reps.reduce((a, r) => a + r.computed, 0), numSteps: reps.reduce((a, r) => a + r.num_steps, 0) };
}

// ------------------------------------------------------------------------------------ panels (DOM)

function injectStyle() {
  if (document.getElementById("tcpade-style")) return;
  const css = `
.tcpade-panel{box-sizing:border-box;width:100%;height:100%;padding:1px 4px;font:11px/1.3 system-ui,sans-serif;
  color:${COLORS.text};background:rgba(0,0,0,.25);border-radius:4px;overflow:hidden;display:flex;flex-direction:column}
.tcpade-line{flex:0 0 auto;white-space:normal;overflow-wrap:anywhere}
.tcpade-line:empty,.tcpade-off{display:none !important}
.tcpade-seg{display:inline-block;max-width:100%;vertical-align:top;white-space:normal;overflow-wrap:anywhere}
.tcpade-dim{color:${COLORS.dim}}
.tcpade-small{font-size:10px;line-height:1.25}
.tcpade-warn{color:${COLORS.computed}}
.tcpade-notes{flex:0 0 auto;color:${COLORS.computed};white-space:pre-line;overflow-wrap:anywhere;font-size:10px;line-height:1.25}
.tcpade-notes:empty{display:none}
.tcpade-canvas{flex:1 1 auto;width:100%;min-height:0;display:block}`;
  const el = document.createElement("style");
  el.id = "tcpade-style";
  el.textContent = css;
  document.head.appendChild(el);
}

/**
 * A panel: text lines (each with a priority: a node too small for all of them leaves out the least important),
 * and for a cache node the run's warnings and a canvas (legend, step strip, gate plot).
 */
function addPanel(node, name, { minHeight, maxHeight, priorities, withCanvas }) {
  injectStyle();
  const el = document.createElement("div");
  el.className = "tcpade-panel";
  el.dataset.tcpade = name;
  const lines = priorities.map((prio, i) => {
    const l = document.createElement("div");
    l.className = "tcpade-line" + (i ? " tcpade-dim tcpade-small" : "");
    l.dataset.priority = String(prio);
    el.appendChild(l);
    return l;
  });
  const p = { el, lines, notes: null, canvas: null, widget: null, drawn: [], canvasMin: 0, canvasPriority: 2 };
  if (withCanvas) {
    p.notes = document.createElement("div");   // every warning of the run, each on its own line, wrapped
    p.notes.className = "tcpade-notes";
    p.notes.dataset.priority = "9";
    el.appendChild(p.notes);
    p.canvas = document.createElement("canvas");
    p.canvas.className = "tcpade-canvas";
    el.appendChild(p.canvas);
  }
  if (typeof ResizeObserver !== "undefined") {
    // the node (and so the panel) resized, or the panel was shown: fit the lines again, redraw the canvas
    new ResizeObserver(() => {
      fitPanel(p);
      if (p.canvas) drawStats(p, state.reports.get(sid(node.id)) ?? null);
    }).observe(el);
    if (p.canvas) new ResizeObserver(() => drawStats(p, state.reports.get(sid(node.id)) ?? null)).observe(p.canvas);
  }
  const widget = node.addDOMWidget(name, "tcpade", el, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => minHeight,
    getMaxHeight: () => maxHeight,
  });
  widget.serialize = false; // not in widgets_values: the saved workflow is the same with or without this file
  if (widget.options) widget.options.serialize = false; // not in the API prompt
  p.widget = widget;
  return p;
}

/**
 * Set a line's text. It wraps only between its " · " parts (a part longer than the line wraps inside it), so
 * nothing is cut off and a number stays with its words.
 */
function setText(el, text) {
  text = text ?? "";
  if (el.tcpadeText === text) return;
  el.tcpadeText = text;
  el.replaceChildren();
  if (!text) return;
  const parts = text.split(" · ");
  parts.forEach((s, i) => {
    const span = document.createElement("span");
    span.className = "tcpade-seg";
    span.textContent = i < parts.length - 1 ? `${s} ·` : s;
    el.appendChild(span);
    if (i < parts.length - 1) el.appendChild(document.createTextNode(" "));
  });
}

/**
 * Show every line that has room, leaving out the least important ones (lowest priority first, the last line
 * first among equals) while the panel's content is taller than the panel. The canvas keeps its minimum height
 * unless only lines more important than it are left (p.canvasPriority).
 */
function fitPanel(p) {
  const el = p.el;
  const items = [...p.lines, ...(p.notes ? [p.notes] : [])];
  items.forEach((l) => l.classList.remove("tcpade-off"));
  if (p.canvas) p.canvas.style.minHeight = `${p.canvasMin}px`;
  if (!el.isConnected || el.clientHeight === 0) return; // not laid out (yet): fitted again when it is
  const steps = items.map((l, i) => [Number(l.dataset.priority), -i, l]);
  if (p.canvas) steps.push([p.canvasPriority, -items.length, null]);
  steps.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const hidden = [];
  for (const [, , l] of steps) {
    if (el.scrollHeight <= el.clientHeight + 0.5) break;
    if (l === null) {
      if (p.canvasMin > 0) hidden.push("(the strip and gate plot, smaller)");
      p.canvas.style.minHeight = "0px";
    } else if (l.textContent) {
      l.classList.add("tcpade-off");
      hidden.push(l.textContent);
    }
  }
  el.dataset.leftOut = hidden.join("\n");
}

function fmt(x, digits = 2) {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

/** 2 -> "2", 2.8 -> "2.8", 2.25 -> "2.25": a speed target as the user typed it. */
function fmtTarget(x) {
  return Number.isFinite(x) ? String(Number(x.toFixed(2))) : "–";
}

/** Seconds of one model call: 0.41 s, 0.083 s, 0.0097 s, 12.3 s. */
function fmtSec(s) {
  if (!Number.isFinite(s)) return "–";
  if (s >= 10) return `${s.toFixed(1)} s`;
  if (s >= 0.1) return `${s.toFixed(2)} s`;
  return `${Number(s.toPrecision(2))} s`;
}

/** A value on an axis: 0.1, 1, 10, 100, 0.25, 1e+3. */
function fmtTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return String(Number(v.toPrecision(3)));
}

/** The panel's first line: what the run computed and what speed-up it reached (against its target). */
function resultLine(rep) {
  // a run whose model never reached the pack's hooks (nodes/driver.py): say so, never "computed 0/0"
  if (rep.inactive) return `cache inactive: ${rep.inactive}`;
  const head = rep.interrupted ? `interrupted at step ${rep.num_steps}/${rep.planned_steps} · ` : "";
  const speed = rep.target_speedup
    ? `target ${fmtTarget(rep.target_speedup)}x → reached ${fmt(rep.speedup)}x`
    : `${fmt(rep.speedup)}x speed-up`;
  return `${head}computed ${rep.computed}/${rep.num_steps} steps · ${speed}`;
}

/**
 * The panel's speed line: the wall-clock speed-up this run's own model calls imply (the server's estimate:
 * mean computed and skipped call, nodes/driver.py) and, when this tab timed it, its sampler's seconds.
 * Nothing is compared with another branch (that one ran cold or under other load).
 */
function speedLine(rep, seconds = null) {
  const t = rep?.timing;
  const parts = [];
  if (t && typeof t.estimated_speedup === "number" && Number.isFinite(t.estimated_speedup)) {
    const calls = [
      typeof t.computed_s === "number" ? `computed step ${fmtSec(t.computed_s)}` : null,
      typeof t.skipped_s === "number" ? `skipped ${fmtSec(t.skipped_s)}` : null,
      "this run",
    ].filter(Boolean);
    parts.push(`est. wall ${fmt(t.estimated_speedup)}x (${calls.join(", ")})`);
  }
  if (typeof seconds === "number" && Number.isFinite(seconds)) parts.push(`sampling ${fmt(seconds)} s`);
  return parts.join(" · ");
}

/** The server's target note without the target, which the first line already says. */
function targetNote(rep) {
  return (rep.target_note || "").replace(/^target [\d.]+x:\s*/, "");
}

/** The third line: how the target was met, and where its schedule came from (a calibration's plan, or none). */
function scheduleLine(rep) {
  return [targetNote(rep), rep.schedule].filter(Boolean).join(" · ");
}

// ------------------------------------------------------------------------------------ canvas

/** Gate-plot scale: what the gate declares (rep.gate_scale: log for a score up to 100, such as TC-Padé's), else linear. */
function gateScale(rep, vals, thr) {
  const log10 = Math.log10;
  const pos = vals.filter((v) => v > 0);
  if (rep.gate_scale === "log" && thr > 0 && pos.length) {
    let hi = 10 ** Math.ceil(log10(Math.max(thr, ...pos)) - 1e-9);
    let lo = 10 ** Math.floor(log10(Math.min(thr, ...pos)) + 1e-9);
    if (!(hi > lo)) hi = lo * 10;
    lo = Math.min(Math.max(lo, hi / 1e4), 10 ** Math.floor(log10(thr) + 1e-9));   // at most 4 decades, θ on it
    const ticks = [];
    for (let e = Math.round(log10(lo)); e <= Math.round(log10(hi)); e++) ticks.push(10 ** e);
    const [a, b] = [log10(lo), log10(hi)];
    return { kind: "log", lo, hi, ticks, t: (v) => (v > 0 ? (log10(v) - a) / (b - a) : -1) };
  }
  const nice = (x) => {   // the smallest 1, 2, 2.5, 5 x 10^k at least x
    if (!(x > 0)) return 1;
    const k = 10 ** Math.floor(Math.log10(x));
    return [1, 2, 2.5, 5, 10].map((m) => m * k).find((m) => m >= x * (1 - 1e-9));
  };
  const peak = Math.max(...vals);
  const lo = Math.min(0, ...vals) < 0 ? -nice(-Math.min(...vals)) : 0;
  const ref = thr !== null && thr > 0 ? thr : peak;
  const hi = nice(peak > 4 * ref ? 3 * ref : Math.max(peak, ref * 1.25));   // a spike is clipped, not the scale
  return { kind: "linear", lo, hi, ticks: [lo, (lo + hi) / 2, hi], t: (v) => (v - lo) / (hi - lo) };
}

/** Text on the stats canvas (w x h): measured in the panel's font, and every box drawn kept in `drawn`. */
class CanvasText {
  constructor(ctx, w, h, drawn) {
    this.ctx = ctx;
    this.w = w;
    this.h = h;
    this.drawn = drawn;
    ctx.font = FONT;
    ctx.textBaseline = "alphabetic";
    const hm = ctx.measureText("Hg");
    this.asc = Math.ceil(hm.fontBoundingBoxAscent ?? 9);
    this.desc = Math.ceil(hm.fontBoundingBoxDescent ?? 3);
    this.rowH = this.asc + this.desc;
  }

  width(s) {
    return this.ctx.measureText(s).width;
  }

  boxOf(s, x, y, align) {
    const tw = this.width(s);
    const x0 = align === "left" ? x : align === "right" ? x - tw : x - tw / 2;
    return { text: s, x0, x1: x0 + tw, y0: y - this.asc, y1: y + this.desc };
  }

  inside(b) {
    return b.x0 >= -0.01 && b.x1 <= this.w + 0.01 && b.y0 >= -0.01 && b.y1 <= this.h + 0.01;
  }

  free(b) {
    return this.drawn.every((d) => b.x1 <= d.x0 || b.x0 >= d.x1 || b.y1 <= d.y0 || b.y0 >= d.y1);
  }

  text(s, x, y, align = "left", color = COLORS.dim) {
    const ctx = this.ctx;
    ctx.fillStyle = color;
    ctx.textAlign = align;
    ctx.fillText(s, x, y);
    this.drawn.push(this.boxOf(s, x, y, align));
  }

  /** Draw s at the first candidate [x, y, align] where it fits the canvas and overlaps no other text. */
  place(s, candidates, color) {
    for (const [x, y, align] of candidates) {
      const b = this.boxOf(s, x, y, align);
      if (this.inside(b) && this.free(b)) {
        this.text(s, x, y, align, color);
        return b;
      }
    }
    return null;
  }
}

/** The canvas sized to its CSS size w x h in device pixels and cleared; its context, drawing in CSS pixels. */
function clearCanvas(canvas, w, h) {
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return ctx;
}

/** The legend: what the strip's colours (and phase marks) mean, flowing onto a second row when narrow; its bottom. */
function drawLegend(pen, phases) {
  const ctx = pen.ctx;
  const items = [["computed", COLORS.computed, 1, "box"], ["skipped", COLORS.skipped, 0.45, "box"]];
  if (phases) for (const ph of ["early", "mid", "late"]) items.push([ph, COLORS.phase[ph], 1, "bar"]);
  let lx = 1;
  let ly = pen.asc + 1;
  for (const [label, color, alpha, kind] of items) {
    const iw = 11 + pen.width(label);
    if (lx > 1 && lx + iw > pen.w) {
      lx = 1;
      ly += pen.rowH;
    }
    ctx.globalAlpha = alpha;
    ctx.fillStyle = color;
    if (kind === "box") ctx.fillRect(lx, ly - 8, 8, 8);
    else ctx.fillRect(lx, ly - 3, 8, 2);
    ctx.globalAlpha = 1;
    pen.text(label, lx + 11, ly);
    lx += iw + 8;
  }
  return ly + pen.desc;
}

/**
 * Where the strip and the plot go below the legend, and whether the plot has room (plotOk). With room, the y scale
 * and what its left margin holds: the tick labels that fit (at least the two ends) and, rotated, the axis name
 * (its short form, or none, where the plot is low).
 */
function statsLayout(pen, rep, vals, thr, hasPlot, phases, legendBottom) {
  const stripY = legendBottom + 3;
  const stripH = 10;
  const stripBottom = stripY + stripH + (phases ? 3 : 0);
  const top = stripBottom + 6;
  const bottom = pen.h - pen.rowH - 1;
  const plotOk = hasPlot && bottom - top >= 2 * pen.rowH;
  const L = { stripY, stripH, stripBottom, top, bottom, plotOk, padL: 4, padR: 4, scale: null, yName: "", sym: "",
              side: "", tickLabels: [] };
  if (plotOk) {
    // the gate's own axis (name, short name, threshold symbol, skip side: tcpade_core/gates.py), in the report
    const ax = rep.gate_axis ?? ["gate signal", "signal", "", ""];
    [, , L.sym, L.side] = ax;
    L.scale = gateScale(rep, vals, thr);
    // as many ticks as have room (at least the two ends)
    const room = (bottom - top) / Math.max(1, L.scale.ticks.length - 1);
    let ticks = L.scale.ticks;
    if (room < pen.rowH) ticks = [L.scale.ticks[0], L.scale.ticks[L.scale.ticks.length - 1]];
    L.tickLabels = ticks.map((v) => [v, fmtTick(v)]);
    L.yName = [ax[0], ax[1]].find((s) => pen.width(s) <= bottom - top) ?? "";
    L.padL = Math.ceil(Math.max(...L.tickLabels.map(([, s]) => pen.width(s)))) + 5 + (L.yName ? pen.rowH : 0);
  }
  L.cw = (pen.w - L.padL - L.padR) / rep.steps.length;
  return L;
}

/** The strip: one cell per step (computed orange, skipped teal); phase marks under it only when the steps have phases. */
function drawStrip(ctx, steps, L, phases) {
  const { padL, cw, stripY, stripH } = L;
  steps.forEach((s, i) => {
    const x = padL + i * cw;
    ctx.fillStyle = s.computed ? COLORS.computed : COLORS.skipped;
    ctx.globalAlpha = s.computed ? 1 : 0.45;
    ctx.fillRect(x + 0.5, stripY, Math.max(1, cw - 1), stripH);
    ctx.globalAlpha = 1;
    const ph = phases ? COLORS.phase[s.phase] : null;
    if (ph) {
      ctx.fillStyle = ph;
      ctx.fillRect(x + 0.5, stripY + stripH + 1, Math.max(1, cw - 1), 2);
    }
  });
}

/** The step axis: first and last step number and the axis name; under the plot, or under the strip without one. */
function drawStepAxis(pen, L, n) {
  const { padL, padR, cw } = L;
  const axisY = L.plotOk ? pen.h - pen.desc - 1 : L.stripBottom + pen.asc + 2;
  pen.place("1", [[padL + cw / 2, axisY, "center"], [padL, axisY, "left"]]);
  pen.place(String(n), [[padL + (n - 0.5) * cw, axisY, "center"], [pen.w - padR, axisY, "right"]]);
  pen.place("step", [[padL + (pen.w - padL - padR) / 2, axisY, "center"]]);
  return axisY;
}

/** The plot's y of value v: on the scale, clamped to it. */
function plotY(L, v) {
  const inset = 4; // keep dots at the range ends inside the frame
  const t = Math.min(Math.max(L.scale.t(v), 0), 1);
  return L.bottom - inset - t * (L.bottom - L.top - 2 * inset);
}

/** The plot's frame, its y ticks and the y-axis name. */
function drawYAxis(pen, L) {
  const { ctx, w, h, asc, desc } = pen;
  const { padL, padR, top, bottom, yName } = L;
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(padL + 0.5, top + 0.5, w - padL - padR - 1, bottom - top);
  // y ticks: a faint grid line and the value, right-aligned left of the frame
  for (const [v, s] of L.tickLabels) {
    const yy = Math.round(plotY(L, v)) + 0.5;
    ctx.globalAlpha = 0.35;
    ctx.beginPath();
    ctx.moveTo(padL, yy);
    ctx.lineTo(w - padR, yy);
    ctx.stroke();
    ctx.globalAlpha = 1;
    const base = Math.min(Math.max(yy + asc / 2 - 1, top + asc - 2), bottom + desc - 1);
    pen.text(s, padL - 3, Math.min(base, h - desc), "right");
  }
  // y-axis name, written upwards along the left edge (its short form, or none, where the plot is low)
  if (yName) {
    const cx = asc;
    const cy = (top + bottom) / 2;
    ctx.save();
    ctx.translate(cx, cy);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillStyle = COLORS.dim;
    ctx.fillText(yName, 0, 0);
    ctx.restore();
    const half = pen.width(yName) / 2;
    pen.drawn.push({ text: yName, x0: cx - asc, x1: cx + desc, y0: cy - half, y1: cy + half, rotated: true });
  }
}

/** The threshold: a dashed line and its value, with the side that skips (where that fits); its label. */
function drawThreshold(pen, L, thr) {
  const { ctx, w, asc } = pen;
  const { padL, padR } = L;
  ctx.setLineDash([4, 3]);
  ctx.strokeStyle = COLORS.threshold;
  ctx.beginPath();
  ctx.moveTo(padL, plotY(L, thr));
  ctx.lineTo(w - padR, plotY(L, thr));
  ctx.stroke();
  ctx.setLineDash([]);
  const thrLabel = `${L.sym} = ${fmt(thr)}`;
  const yt = plotY(L, thr);
  const thrCands = (s) => [[padL + 3, yt - 3, "left"], [padL + 3, yt + asc + 2, "left"],
                           [w - padR - 3, yt - 3, "right"], [w - padR - 3, yt + asc + 2, "right"]];
  if (!(L.side && pen.place(`${thrLabel} · ${L.side}`, thrCands(), COLORS.threshold))) {
    pen.place(thrLabel, thrCands(), COLORS.threshold);
  }
  return thrLabel;
}

/** The gate signal's line, through the steps that have one (broken where a step has none). */
function drawGateLine(ctx, L, gates) {
  ctx.strokeStyle = COLORS.dim;
  ctx.beginPath();
  let started = false;
  gates.forEach((g, i) => {
    if (g === null) {
      started = false;
      return;
    }
    const x = L.padL + (i + 0.5) * L.cw;
    if (started) ctx.lineTo(x, plotY(L, g));
    else ctx.moveTo(x, plotY(L, g));
    started = true;
  });
  ctx.stroke();
}

/**
 * A dot per step with a gate value (computed orange, skipped teal); a value off the scale is a triangle at its
 * edge. Returns how many are above and below the scale.
 */
function drawGateDots(ctx, L, gates, steps) {
  const { top, bottom } = L;
  let above = 0;
  let below = 0;
  gates.forEach((g, i) => {
    if (g === null) return;
    const x = L.padL + (i + 0.5) * L.cw;
    const t = L.scale.t(g);
    ctx.fillStyle = steps[i].computed ? COLORS.computed : COLORS.skipped;
    ctx.beginPath();
    if (t > 1 + 1e-9) {
      above += 1;
      ctx.moveTo(x, top + 1);
      ctx.lineTo(x - 3, top + 6);
      ctx.lineTo(x + 3, top + 6);
      ctx.closePath();
    } else if (t < -1e-9) {
      below += 1;
      ctx.moveTo(x, bottom - 1);
      ctx.lineTo(x - 3, bottom - 6);
      ctx.lineTo(x + 3, bottom - 6);
      ctx.closePath();
    } else {
      ctx.arc(x, plotY(L, g), 2.5, 0, Math.PI * 2);
    }
    ctx.fill();
  });
  return [above, below];
}

/** The gate plot: frame, y axis, threshold, the gate signal and the count of values off the scale. */
function drawPlot(pen, L, gates, steps, thr) {
  drawYAxis(pen, L);
  const thrLabel = drawThreshold(pen, L, thr);
  drawGateLine(pen.ctx, L, gates);
  const [above, below] = drawGateDots(pen.ctx, L, gates, steps);
  const { asc, desc } = pen;
  const { padL, top, bottom } = L;
  const r = pen.w - L.padR - 3;
  if (above) pen.place(`${above} above`, [[r, top + asc + 1, "right"], [r, bottom - desc - 1, "right"], [padL + 3, top + asc + 1, "left"]]);
  if (below) pen.place(`${below} below`, [[r, bottom - desc - 1, "right"], [r, top + asc + 1, "right"], [padL + 3, bottom - desc - 1, "left"]]);
  return { thrLabel, above, below };
}

/**
 * Legend, the step strip (one cell per step: computed orange, skipped teal; a phase mark under it only when the
 * steps have phases), and the gate signal per step against the threshold on a labelled y scale (points off the
 * scale drawn at its edge and counted), or one line when the method has no gate signal. Every text drawn is
 * kept in p.drawn with its box (textBoxes).
 */
function drawStats(p, rep) {
  const canvas = p.canvas;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;   // not shown (the node is off screen): drawn when it is (ResizeObserver)
  const drawn = (p.drawn = []);
  const ds = canvas.dataset;
  ds.axes = "";
  const ctx = clearCanvas(canvas, w, h);
  if (!rep || !rep.steps?.length || w < 40 || h < 20) return;
  const pen = new CanvasText(ctx, w, h, drawn);

  const n = rep.steps.length;
  const gates = rep.steps.map((s) => (typeof s.gate === "number" && Number.isFinite(s.gate) ? s.gate : null));
  const thr = typeof rep.threshold === "number" && Number.isFinite(rep.threshold) ? rep.threshold : null;
  const vals = gates.filter((g) => g !== null);
  const hasPlot = vals.length > 0 && thr !== null;
  const phases = rep.steps.some((s) => s.phase === "early" || s.phase === "late");

  const L = statsLayout(pen, rep, vals, thr, hasPlot, phases, drawLegend(pen, phases));
  drawStrip(ctx, rep.steps, L, phases);
  const axisY = drawStepAxis(pen, L, n);
  if (!L.plotOk) {
    const msg = hasPlot ? "gate plot: make the node taller" : NO_GATE;
    pen.place(msg, [[L.padL, axisY + pen.rowH + 2, "left"]]);
    ds.axes = "step";
    return;
  }
  const { thrLabel, above, below } = drawPlot(pen, L, gates, rep.steps, thr);
  ds.axes = `${L.yName}|step|${thrLabel}`;
  ds.shownTicks = L.tickLabels.map(([, s]) => s).join(",");
  ds.drawnClipped = `${above} above, ${below} below`;
}

/**
 * What the canvas shows for a report, whatever its size (on the canvas's dataset, for a test or a script): the
 * legend's entries, whether phase marks are drawn, the gate plot (or its one line), its scale and how many
 * values fall off it.
 */
function plotFacts(canvas, rep) {
  const ds = canvas.dataset;
  for (const k of ["scale", "ticks", "clipped", "legend", "phases", "gate"]) ds[k] = "";
  if (!rep || !rep.steps?.length) return;
  const phases = rep.steps.some((s) => s.phase === "early" || s.phase === "late");
  ds.legend = ["computed", "skipped", ...(phases ? ["early", "mid", "late"] : [])].join("|");
  ds.phases = phases ? "1" : "";
  const vals = rep.steps.map((s) => s.gate).filter((g) => typeof g === "number" && Number.isFinite(g));
  const thr = typeof rep.threshold === "number" && Number.isFinite(rep.threshold) ? rep.threshold : null;
  if (!vals.length || thr === null) {
    ds.gate = NO_GATE;
    return;
  }
  const sc = gateScale(rep, vals, thr);
  ds.gate = "plot";
  ds.scale = `${sc.kind} ${fmtTick(sc.lo)}..${fmtTick(sc.hi)}`;
  ds.ticks = sc.ticks.map(fmtTick).join(",");
  ds.clipped = `${vals.filter((v) => sc.t(v) > 1 + 1e-9).length} above, ${vals.filter((v) => sc.t(v) < -1e-9).length} below`;
}

/** The smallest canvas that still shows the legend, the strip, the step axis and a plot (or its one line). */
function canvasMinHeight(rep) {
  if (!rep || !rep.steps?.length) return 0;
  const hasPlot = rep.steps.some((s) => typeof s.gate === "number") && typeof rep.threshold === "number";
  return hasPlot ? 72 : 50;
}

// ------------------------------------------------------------------------------------ views

function renderCacheNode(node) {
  const p = node.tcpadePanel;
  if (!p) return;
  const rep = state.reports.get(sid(node.id));
  const el = p.el;
  if (!rep) {
    setText(p.lines[0], "no run yet");
    setText(p.lines[1], "queue the workflow: computed / skipped steps and the gate signal appear here");
    setText(p.lines[2], "");
    p.notes.textContent = "";
    el.title = "";
    for (const k of ["computed", "numSteps", "speedup", "strip", "notes", "prompt", "source", "seconds", "estSpeedup"])
      el.dataset[k] = "";
    p.canvasMin = 0;
    fitPanel(p);
    plotFacts(p.canvas, null);
    drawStats(p, null);
    return;
  }
  const strip = rep.steps.map((s) => (s.computed ? "#" : ".")).join("");
  const notes = rep.notes ?? [];
  const secs = sumSeconds(samplersDownstream(node));
  const rule = rep.gate_rule ?? rep.gate ?? "";
  const speed = speedLine(rep, secs ? secs.seconds : null);
  setText(p.lines[0], resultLine(rep));
  setText(p.lines[1], speed);
  setText(p.lines[2], scheduleLine(rep));
  // every warning that changes what the run means, each on its own line
  p.notes.textContent = notes.map((x) => `⚠ ${x}`).join("\n");
  el.dataset.interrupted = rep.interrupted ? "1" : "";
  el.dataset.notes = notes.join("\n");
  el.dataset.computed = String(rep.computed);
  el.dataset.numSteps = String(rep.num_steps);
  el.dataset.speedup = fmt(rep.speedup);
  el.dataset.strip = strip;
  el.dataset.threshold = rep.threshold === null || rep.threshold === undefined ? "" : String(rep.threshold);
  el.dataset.prompt = rep.prompt ?? "";
  el.dataset.source = rep.fromServer ? "server" : "live";
  el.dataset.seconds = secs ? fmt(secs.seconds, 3) : "";
  el.dataset.estSpeedup = Number.isFinite(rep.timing?.estimated_speedup) ? fmt(rep.timing.estimated_speedup) : "";
  // the tooltip has every line, a left-out one too
  el.title = [rep.summary || "", speed, rep.timing?.basis ? `est. wall: ${rep.timing.basis}` : "",
              `${rep.label}: ${rule}`, rep.target_note || "", rep.schedule || "", ...notes.map((x) => `⚠ ${x}`)]
    .filter(Boolean).join("\n");
  p.canvasMin = canvasMinHeight(rep);
  fitPanel(p);
  plotFacts(p.canvas, rep);
  drawStats(p, rep);
}

/** The Compare node's score parts: PSNR (mean, and the worst image), SSIM. */
function scoreParts(res) {
  const n = res.images ?? 1;
  const out = [];
  if (res.psnr === null || res.psnr === undefined) out.push("PSNR ∞ dB (identical)");
  else out.push(`PSNR ${n > 1 ? "mean " : ""}${fmt(res.psnr, 1)} dB`);
  if (n > 1 && typeof res.worst_psnr === "number" && Number.isInteger(res.worst_index))
    out.push(`worst ${fmt(res.worst_psnr, 1)} dB (image ${res.worst_index + 1})`);
  if (res.identical_images && res.psnr !== null && res.psnr !== undefined)
    out.push(`PSNR of the ${n - res.identical_images} that differ`);
  out.push(`SSIM ${fmt(res.ssim, 3)}`);
  return out;
}

/** "⚠ 1 image changed content: #7" (images whose PSNR is below the server's content floor), or "". */
function changedLine(res) {
  const ch = Array.isArray(res.changed) ? res.changed : [];
  if (!ch.length) return "";
  const shown = ch.slice(0, 6).map((i) => `#${i + 1}`).join(", ") + (ch.length > 6 ? ` and ${ch.length - 6} more` : "");
  const floor = typeof res.changed_floor_db === "number" ? ` · PSNR below ${fmtTarget(res.changed_floor_db)} dB` : "";
  return `⚠ ${ch.length} image${ch.length > 1 ? "s" : ""} changed content: ${shown}${floor}`;
}

function renderCompareNode(node) {
  const p = node.tcpadePanel;
  if (!p) return;
  const res = state.compares.get(sid(node.id));
  const el = p.el;
  const br = branchComputed(node);
  const computed = br && br.computed !== null ? `computed ${br.computed}/${br.numSteps}` : "";   // none before a run
  el.dataset.computed = br && br.computed !== null ? `${br.computed}/${br.numSteps}` : "";
  const more = [];   // the tooltip's explanations, after every line
  if (res) {
    setText(p.lines[0], [computed, ...scoreParts(res)].filter(Boolean).join(" · "));
    setText(p.lines[1], changedLine(res));
    p.lines[1].classList.add("tcpade-warn");
    p.lines[1].classList.remove("tcpade-dim");
    el.dataset.psnr = res.psnr === null ? "inf" : String(res.psnr);
    el.dataset.ssim = String(res.ssim);
    el.dataset.worstPsnr = typeof res.worst_psnr === "number" ? String(res.worst_psnr) : "";
    el.dataset.worstIndex = Number.isInteger(res.worst_index) ? String(res.worst_index) : "";
    el.dataset.changed = Array.isArray(res.changed) ? res.changed.join(",") : "";
    el.dataset.source = res.fromServer ? "server" : "live";
    const n = res.images ?? 1;
    const shown = res.previewed ?? n;
    setText(p.lines[3], `difference ×${fmtTarget(res.amplify)}` +
      (n > 1 ? ` of ${shown === n ? `the ${n}` : `${shown} of ${n}`} images` : "") + ": black = identical");
    if (Array.isArray(res.per_image_psnr) && res.per_image_psnr.length > 1)
      more.push("PSNR per image: " + res.per_image_psnr.map((v, i) => `#${i + 1} ${v === null ? "∞" : fmt(v, 1)}`).join(", "));
    if (changedLine(res)) more.push("A changed image shows other content than its reference, not the same picture with less detail.");
  } else {
    setText(p.lines[0], [computed, "PSNR / SSIM: not run yet"].filter(Boolean).join(" · "));
    setText(p.lines[1], "");
    setText(p.lines[3], "queue the workflow: scores and the difference image appear here");
    for (const k of ["psnr", "ssim", "worstPsnr", "worstIndex", "changed", "source"]) el.dataset[k] = "";
  }
  const t = compareTiming(node);
  let timing;
  let warn = false;
  for (const k of ["testSeconds", "refSeconds", "speedup", "first"]) el.dataset[k] = "";
  if (!t || !t.samplers[0].length || !t.samplers[1].length) {
    timing = res ? "timing: test and reference need their own sampler" : "";
  } else if (!t.test || !t.ref) {
    timing = res ? "timing: run both branches once in this tab" : "";   // before a run: the hint says it all
  } else {
    const secs = `${fmt(t.test.seconds)} s vs. ${fmt(t.ref.seconds)} s reference`;
    const old = t.test.earlier || t.ref.earlier ? " · incl. an earlier run" : "";
    el.dataset.testSeconds = fmt(t.test.seconds, 3);
    el.dataset.refSeconds = fmt(t.ref.seconds, 3);
    el.dataset.first = t.first;
    if (t.comparable) {
      timing = `test ran first · ${secs} · ${fmt(t.speedup)}x${old}`;
      el.dataset.speedup = fmt(t.speedup);
    } else {
      timing = "⚠ reference ran first (includes warm-up): timings not comparable";
      more.push(`Sampling: ${secs}${old.replace(" · ", ", ")}.`);
      warn = true;
    }
  }
  setText(p.lines[2], timing);
  p.lines[2].classList.toggle("tcpade-warn", warn);
  p.lines[2].classList.toggle("tcpade-dim", !warn);
  more.push("Timing: the sampling time of the samplers only this branch runs, model loading excluded (first step " +
            "estimated from the median computed step). The branch that runs first also warms the device up: " +
            "a speed-up is shown only when the test branch ran first. The cache node's own estimate " +
            "(est. wall) compares nothing across branches.");
  // the tooltip has every line, a left-out one too
  el.title = [...p.lines.map((l) => l.textContent), ...more].filter(Boolean).join("\n");
  fitPanel(p);
}

function renderAll() {
  for (const n of graph()?.nodes ?? []) {
    if (CACHE_TYPES.has(n.type)) renderCacheNode(n);
    else if (n.type === COMPARE_TYPE) renderCompareNode(n);
  }
  graph()?.setDirtyCanvas?.(true, true);
}

/**
 * Every text a panel shows, with its box on the screen (client pixels), the panel's, its canvas's and its
 * node's boxes: a text is cut off when its box leaves the panel (or the canvas), the panel's the node's.
 */
function textBoxes(node) {
  const p = node?.tcpadePanel;
  if (!p) return null;
  const box = (b) => [b.left, b.top, b.right, b.bottom];
  const items = [];
  const walker = document.createTreeWalker(p.el, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(t);
    for (const b of range.getClientRects()) if (b.width > 0) items.push({ where: "dom", text: t.textContent, box: box(b) });
  }
  let canvas = null;
  if (p.canvas) {
    const cb = p.canvas.getBoundingClientRect();
    canvas = box(cb);
    const k = p.canvas.clientWidth ? cb.width / p.canvas.clientWidth : 1;
    for (const d of p.drawn)
      items.push({ where: "canvas", text: d.text, rotated: !!d.rotated,
                   box: [cb.left + d.x0 * k, cb.top + d.y0 * k, cb.left + d.x1 * k, cb.top + d.y1 * k] });
  }
  const c = app.canvas;
  const r = c.canvas.getBoundingClientRect();
  const [x0, y0] = c.ds.convertOffsetToCanvas([node.pos[0], node.pos[1]]);
  const [x1, y1] = c.ds.convertOffsetToCanvas([node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
  return { node: [r.left + x0, r.top + y0, r.left + x1, r.top + y1], panel: box(p.el.getBoundingClientRect()), canvas,
           items, leftOut: p.el.dataset.leftOut ?? "" };
}

// ------------------------------------------------------------------------------------ results kept by the server

function workflowId() {
  const id = graph()?.id;
  return id === undefined || id === null ? null : String(id);
}

async function fetchKept(path) {
  try {
    const res = await api.fetchApi(path, { cache: "no-store" });
    if (!res.ok) return null;
    return await res.json();
  } catch {
    return null; // an older server without the route: live results only
  }
}

/**
 * Show the server's last report on every cache node of this workflow that has one (GET /tcpade/reports), and
 * its last result on every Compare node (GET /tcpade/compares): after a page reload, or when the host serves a
 * branch from its cache and sends no report. A result is shown only on a node of the same type in the workflow
 * it ran in; one received live is never older than the server's (every result is broadcast to every tab).
 */
async function loadServerReports() {
  const [reports, compares] = await Promise.all([fetchKept(REPORTS_PATH), fetchKept(COMPARES_PATH)]);
  const wid = workflowId();
  let shown = 0;
  const take = (all, map, ok) => {
    // reports are kept per prompt, node and run ("<prompt>/<node>/<n>", oldest first): each names its node
    for (const [key, res] of Object.entries(all ?? {})) {
      const id = res?.node ?? key;
      const node = nodeById(id);
      if (!node || !ok(node, res)) continue;
      if (!res.workflow_id || !wid || res.workflow_id !== wid) continue;
      const cur = map.get(sid(id));
      if (cur && (!cur.fromServer || cur.prompt_id === res.prompt_id)) continue;
      map.set(sid(id), { ...res, prompt: res.prompt_id ?? null, receivedAt: now(), fromServer: true });
      shown += 1;
    }
  };
  take(reports, state.reports, (node, rep) => CACHE_TYPES.has(node.type) && METHODS[node.type]?.label === rep.label);
  take(compares, state.compares, (node) => node.type === COMPARE_TYPE);
  if (shown) renderAll();
  return shown;
}

// ------------------------------------------------------------------------------------ widget labels

/**
 * The display names the node definitions declare for their widgets (θ, λ, α1, β, ...): this frontend labels
 * widgets from its translation files only and leaves a V3 input's display_name unused. Keeps each widget's
 * own tooltip too (shown after the reason when a preset or mode overrides the widget).
 */
function applyDisplayNames(node, nodeData) {
  const specs = { ...(nodeData?.input?.required ?? {}), ...(nodeData?.input?.optional ?? {}) };
  node.tcpadeTooltips = {};
  for (const w of node.widgets ?? []) {
    const name = specs[w.name]?.[1]?.display_name;
    if (name && (!w.label || w.label === w.name)) w.label = name;
    const tip = specs[w.name]?.[1]?.tooltip;
    if (tip) node.tcpadeTooltips[w.name] = tip;
  }
}

// ------------------------------------------------------------------------------------ what a preset overrides

function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

/** The widgets a rule of this node's method can grey out. */
function overridable(node) {
  return new Set((METHODS[node.type]?.overrides ?? []).map((o) => o.widget));
}

/** Widget name -> the value that leaves the setting to the pack (TaylorSeer's order -1), from the method. */
function autosOf(node) {
  return METHODS[node.type]?.autos ?? {};
}

/** A node's presets (preset name -> speed target), from its method. */
function presetsOf(node) {
  return METHODS[node.type]?.presets ?? {};
}

/**
 * Widgets that have no effect with the node's preset, mode or speed target: the method's rules (tcpade_core/methods.py
 * Override: every condition (widget, op, value) holds; a condition on a widget the node lacks does not): name ->
 * [short reason for the label, the reason in full for the tooltip, and the value in effect where the widget's own
 * is not]. They are drawn disabled and say why.
 */
function overridden(node) {
  const v = (name) => findWidget(node, name)?.value;
  const holds = ([name, op, value]) => {
    const x = v(name);
    if (x === undefined) return false;
    if (op === "==") return x === value;
    if (op === "!=") return x !== value;
    if (op === ">") return typeof x === "number" && x > value;
    return false;
  };
  const presets = presetsOf(node);
  const fill = (text) => text.replaceAll("{preset}", String(v("preset")))
    .replaceAll("{preset_target}", fmtTarget(presets[v("preset")]))
    .replaceAll("{target}", fmtTarget(v("target_speedup")));
  const out = {};
  for (const o of METHODS[node.type]?.overrides ?? []) {
    if (out[o.widget] || !o.when.every(holds)) continue;
    out[o.widget] = [o.short, fill(o.why), ...(o.shows ? [fill(o.shows)] : [])];
  }
  return out;
}

/**
 * Disable the widgets the preset, mode or target overrides, with the reason in their label and tooltip; a widget at
 * its auto value (the pack chooses) says "auto" in its label.
 */
function syncOverrides(node) {
  const why = overridden(node);
  const autos = autosOf(node);
  const names = new Set([...overridable(node), ...Object.keys(autos)]);
  for (const w of node.widgets ?? []) {
    if (!names.has(w.name)) continue;
    if (w.tcpadeLabel === undefined) {
      w.tcpadeLabel = w.label ?? null;
      w.tcpadeTooltip = w.tooltip;
    }
    const o = why[w.name];
    const base = w.tcpadeLabel ?? w.name;
    const auto = w.name in autos && w.value === autos[w.name];
    const label = o ? `${base}${o[2] ? `: ${o[2]}` : ""} (${o[0]})` : auto ? `${base}: auto` : w.tcpadeLabel ?? undefined;
    const general = node.tcpadeTooltips?.[w.name];
    const tooltip = o ? `Greyed out: ${o[1]}` + (general ? `\n${general}` : "") : w.tcpadeTooltip;
    if (!!w.disabled !== !!o || w.label !== label || w.tooltip !== tooltip) {
      w.disabled = !!o;
      w.label = label;
      w.tooltip = tooltip;
      node.setDirtyCanvas?.(true, true);
    }
  }
}

function applyPreset(node, preset) {
  const p = findWidget(node, "preset");
  const th = findWidget(node, "target_speedup");
  const presets = presetsOf(node);
  if (!p || !th || !(preset in presets)) return;
  p.value = preset;
  th.value = presets[preset];
  syncOverrides(node);
  node.setDirtyCanvas?.(true, true);
  graph()?.change?.();
}

/** Re-check the overrides after a widget's own callback (mouse, keyboard, or a script calling it). */
function chainSync(node, name, before = null) {
  const w = findWidget(node, name);
  if (!w) return;
  const cb = w.callback;
  w.callback = function (v, ...rest) {
    const r = cb?.apply(this, [v, ...rest]);
    before?.(v);
    syncOverrides(node);
    return r;
  };
}

function setupCacheWidgets(node) {
  const presets = presetsOf(node);
  if (Object.keys(presets).length) {
    const th = findWidget(node, "target_speedup");
    // keep the target widget showing the speed a preset puts in effect
    chainSync(node, "preset", (v) => {
      if (th && v in presets) th.value = presets[v];
    });
    chainSync(node, "mode");
    for (const preset of Object.keys(presets)) {
      const b = node.addWidget("button", `preset: ${preset}`, null, () => applyPreset(node, preset));
      b.serialize = false;
      b.options = { ...(b.options ?? {}), serialize: false };
    }
  } else {
    chainSync(node, "target_speedup");
  }
  for (const name of Object.keys(autosOf(node))) chainSync(node, name);
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

/** The pack's method facts (GET /tcpade/methods); without the route (an older server) no node gets a panel. */
async function loadMethods() {
  const table = await fetchKept(METHODS_PATH);
  for (const [type, facts] of Object.entries(table ?? {})) {
    METHODS[type] = facts;
    CACHE_TYPES.add(type);
  }
}

app.registerExtension({
  name: EXT,

  async init() {
    await loadMethods();
  },

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
      const types = (detail?.nodes ?? []).map((id) => nodeById(id)?.type);
      if (types.some((t) => CACHE_TYPES.has(t) || t === COMPARE_TYPE)) loadServerReports();
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
    window.tcpade = { state, scheduleLine, compareTiming, branchComputed, samplerSeconds, renderAll, loadServerReports, overridden,
                      tcpadeOverridden: overridden, resultLine, speedLine, scoreParts, changedLine, textBoxes };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (!name?.startsWith("TCPade_")) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      applyDisplayNames(this, nodeData);
      if (CACHE_TYPES.has(name)) {
        setupCacheWidgets(this);
        this.tcpadePanel = addPanel(this, "tcpade_stats", { minHeight: STATS_H, maxHeight: STATS_MAX_H,
                                                            priorities: [9, 3, 1], withCanvas: true });
        renderCacheNode(this);
      } else if (name === COMPARE_TYPE) {
        this.tcpadePanel = addPanel(this, "tcpade_compare", { minHeight: COMPARE_H, maxHeight: COMPARE_MAX_H,
                                                              priorities: [9, 8, 2, 1], withCanvas: false });
        renderCompareNode(this);
      }
      return r;
    };
    if (CACHE_TYPES.has(name)) {
      // values set by a loaded workflow, the widget API or the mouse: keep the disabled widgets right
      for (const hook of ["onConfigure", "onWidgetChanged"]) {
        const orig = nodeType.prototype[hook];
        nodeType.prototype[hook] = function () {
          const r = orig?.apply(this, arguments);
          syncOverrides(this);
          return r;
        };
      }
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
          state.compares.set(sid(this.id), { ...res, prompt: state.prompt, fromServer: false });
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
