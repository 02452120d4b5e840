"""The pack's cache nodes against what every ComfyUI already has: core EasyCache and LazyCache (a benchmark, not a
test; README "Against what ComfyUI already has").

    python tests/host_peers.py            # needs a ComfyUI checkout ($COMFYUI_PATH or ~/ComfyUI); about an hour on a CPU
    python tests/host_peers.py --quick    # model B, 10 steps, one seed: a check in a few minutes

The pack's bench models A, B and C come through the host: the pack's Load Bench Model, Class Label and Bench Latent
nodes, the host's KSampler path (``nodes.common_ksampler``: its noise, its samplers), Bench Decode, and the pack's
Compare node for PSNR and SSIM against the uncached run of the same model, steps and seed. Each model runs with the
sampler and CFG its research benchmark uses (A: DDIM (``ddim`` / ``ddim_uniform``), CFG 2; B: Euler, CFG 2;
C: Euler, CFG 4) at 10, 20 and 30 steps, two seeds (the class of each batch: seed % 10), a batch of 8.

- Core EasyCache and LazyCache (``comfy_extras/nodes_easycache.py``) at reuse thresholds 0.05-0.5 and their other
  defaults (start 0.15, end 0.95). A run's computed steps are read from the host's own log line ("EasyCache -
  skipped X/Y steps") and checked against a count of the model's real forwards (a hook on its final layer).
- Every cache node the pack ships (``tcpade_core.methods.NODES``: each method with a node, so a node added there
  is measured here without an edit) at each number of computes a core run reached (a budget): the target speed-up
  steps / computes, its other widgets at their defaults (a preset set to custom). The run's report must show
  exactly round(steps / target) computes; a run that does not is flagged and left out of the comparison.
- Wall clock of every run, measured side by side in this one process (one torch thread).

Printed per model and step count: each node's front (computes -> PSNR / SSIM / wall, per seed), then per budget
(averaged over the seeds in which a core run reached it) the best core run, each pack node, and the margin of the
pack's best node over the best core run. Last, the margins' range over all cells and whether the target (+3 dB in
every cell) holds.

ComfyUI 0.3.64's EasyCache fails at batch > 1: its ``apply_cache_diff`` adds each cond's cached difference to the
whole batch (ComfyUI #10344; fixed upstream by #10376, which slices the batch per cond). A tiny probe finds the bug;
where it is there, this benchmark replaces that one method in its own process by a batch-sliced one (written here)
and says so in one line. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import host_util as H  # noqa: E402

# model key -> (loader choice, label set, host sampler, host scheduler); CFG from the research benchmark
MODELS = {
    "a": ("A: DiT digits 16x16", "A: digits", "ddim", "ddim_uniform"),
    "b": ("B: FLUX-like shapes 32x32", "B: shapes", "euler", "simple"),
    "c": ("C: FLUX-like textures 32x32", "C: textures", "euler", "simple"),
}
STEPS = (10, 20, 30)
SEEDS = (1234, 4321)
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
CORE = ("EasyCache", "LazyCache")
TARGET_DB = 3.0
SKIP_LINE = re.compile(r"^(EasyCache|LazyCache) - skipped (\d+)/(\d+) steps")


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the host's log line


class SkipLog(logging.Handler):
    """Keeps the host's "<name> - skipped X/Y steps" lines; passes warnings and errors on to stderr."""

    def __init__(self, forward_warnings: bool = True):
        super().__init__(logging.INFO)
        self.lines = []  # [(name, skipped, total)]
        self.forward_warnings = forward_warnings  # where no other handler prints them

    def emit(self, record):
        msg = record.getMessage()
        hit = parse_skip_line(msg)
        if hit:
            self.lines.append(hit)
        elif self.forward_warnings and record.levelno >= logging.WARNING:
            print(f"{record.levelname}: {msg}", file=sys.stderr, flush=True)


def parse_skip_line(msg: str):
    """(name, skipped, total) of a core cache's end-of-run log line, or None."""
    m = SKIP_LINE.match(msg)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


# ------------------------------------------------------------------------------ ComfyUI #10344


def sliced_apply_cache_diff(self, x, uuids):
    """EasyCacheHolder.apply_cache_diff with the batch sliced per cond (the behaviour of ComfyUI #10376): the rows of
    cond i (``x.shape[0] // len(uuids)`` of them, in the order of ``uuids``) get that cond's cached difference; cached
    trailing dims that differ from ``x``'s are matched by the host's cut rule (``cut_from_start``)."""
    if self.first_cond_uuid in uuids:
        self.total_steps_skipped += 1
    rows = x.shape[0] // len(uuids)
    for i, uuid in enumerate(uuids):
        diff = self.uuid_cache_diffs[uuid]
        index = [slice(i * rows, (i + 1) * rows)]
        if x.shape[1:] != diff.shape[1:]:
            if not self.allow_mismatch:
                raise ValueError(f"Cached dims {diff.shape} don't match x dims {x.shape} - this is no good")
            for du, dx in zip(diff.shape[1:], x.shape[1:]):
                if du == dx:
                    index.append(slice(None))
                else:
                    index.append(slice(dx - du, None) if self.cut_from_start else slice(None, du))
        x[tuple(index)] += diff.to(x.device)
    return x


def batch_probe(holder_cls) -> bool:
    """Whether the host's EasyCacheHolder adds each cond's cached difference to its own rows only: two conds of two
    rows each, differences 1 and 10 on zeros must give rows [1, 1, 10, 10]."""
    import torch

    h = holder_cls(0.2, 0.0, 1.0, subsample_factor=8, offload_cache_diff=False)
    h.first_cond_uuid = "c"
    h.uuid_cache_diffs = {"c": torch.full((2, 1, 2, 2), 1.0), "u": torch.full((2, 1, 2, 2), 10.0)}
    try:
        out = h.apply_cache_diff(torch.zeros(4, 1, 2, 2), ["c", "u"])
    except RuntimeError:
        return False
    want = torch.tensor([1.0, 1.0, 10.0, 10.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    return bool(torch.equal(out, want)) and h.total_steps_skipped == 1


def fix_easycache_batch(module) -> str:
    """Probe the host's EasyCache; where it has ComfyUI #10344, replace its apply_cache_diff in this process. The
    one line to print, or "" where the host needs no fix."""
    holder = module.EasyCacheHolder
    if batch_probe(holder):
        return ""
    holder.apply_cache_diff = sliced_apply_cache_diff
    if not batch_probe(holder):
        raise RuntimeError("the batch fix for EasyCache did not take")
    return (
        "NOTE: this host's EasyCache adds each cond's cached difference to the whole batch (ComfyUI #10344; crashes "
        "at batch > 1); its apply_cache_diff is batch-sliced in this process only, as upstream #10376 does"
    )


# ------------------------------------------------------------------------------ runs


@dataclass
class Run:
    node: str  # "EasyCache 0.2", "TaylorSeer", ...
    family: str  # "EasyCache", "LazyCache", or the pack node's label
    computes: int
    psnr: float
    ssim: float
    wall: float
    note: str = ""


@dataclass
class Case:
    model: str
    steps: int
    seed: int
    n: int = 0  # the sampler's steps: ``steps`` but for a scheduler that gives more sigmas (A's ddim_uniform at 30)
    wall_full: float = 0.0
    core: list = field(default_factory=list)  # [Run]
    pack: dict = field(default_factory=dict)  # budget -> [Run]
    flagged: list = field(default_factory=list)  # [str]


class Bench:
    def __init__(self, args):
        import torch

        self._threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self.args = args
        self.pack = H.load_pack()
        import comfy.utils

        comfy.utils.PROGRESS_BAR_ENABLED = False
        import folder_paths

        # no stored calibration: every pack node runs on its defaults and the target
        self._user_dir = folder_paths.get_user_directory()
        folder_paths.set_user_directory(tempfile.mkdtemp(prefix="tcpade_peers_user_"))
        self.h = H.host()
        self.nodes = self.h.nodes.NODE_CLASS_MAPPINGS
        # the core nodes log their line at INFO on the root logger: let INFO through to our handler only
        root = logging.getLogger()
        others = list(root.handlers)
        self._levels = [(handler, handler.level) for handler in others] + [(root, root.level)]
        for handler in others:
            handler.setLevel(max(handler.level, logging.WARNING))
        self.log = SkipLog(forward_warnings=not others)
        root.addHandler(self.log)
        root.setLevel(logging.INFO)
        self.ec = importlib.import_module("comfy_extras.nodes_easycache")
        self._apply_cache_diff = self.ec.EasyCacheHolder.__dict__["apply_cache_diff"]
        self.fix_line = fix_easycache_batch(self.ec)
        # the descriptors and the research benchmark's CFG scales: host-free, imported from this checkout
        if str(H.PACK_ROOT) not in sys.path:
            sys.path.append(str(H.PACK_ROOT))
        self.methods = importlib.import_module("tcpade_core.methods")
        self.cfg_scale = importlib.import_module("tcpade_core.research.common").CFG_SCALE
        self.budget = importlib.import_module("tcpade_core.config").budget
        self.pack_nodes = [(m.node_id, m.label) for m in self.methods.NODES]
        self.forwards = 0

    def close(self):
        """Undo what this benchmark changed in the process: torch's threads, the log handler and levels, the
        host's EasyCache method, the user directory."""
        import folder_paths
        import torch

        torch.set_num_threads(self._threads)
        logging.getLogger().removeHandler(self.log)
        for obj, level in self._levels:
            obj.setLevel(level)
        self.ec.EasyCacheHolder.apply_cache_diff = self._apply_cache_diff
        folder_paths.set_user_directory(self._user_dir)

    def node(self, node_id, *args, **kw):
        return self.nodes[node_id].execute(*args, **kw).args

    def count_forwards(self, model):
        """Count the model's real forwards (its final layer runs once per forward that is not skipped whole)."""
        dm = model.get_model_object("diffusion_model")

        def hook(module, inputs):
            self.forwards += 1

        return dm.final_layer.register_forward_pre_hook(hook)

    def sample(self, model, key, steps, seed, cond, latent):
        import torch

        _, _, sampler, scheduler = MODELS[key]
        pos, neg = cond
        H.sync()
        t0 = time.perf_counter()
        out = self.h.nodes.common_ksampler(
            model, seed, steps, self.cfg_scale[key], sampler, scheduler, pos, neg, latent
        )[0]
        H.sync()
        wall = time.perf_counter() - t0
        img = self.node("TCPade_BenchDecode", out)[0]
        if not bool(torch.isfinite(img).all()):
            raise RuntimeError(f"model {key}, {steps} steps, seed {seed}: non-finite output")
        return img, wall

    def score(self, img, ref):
        psnr, ssim = self.node("TCPade_Compare", img, ref, 1.0)[:2]
        return psnr, ssim

    def case(self, key, base, steps, seed) -> Case:
        choice, label_set, _, _ = MODELS[key]
        cond = self.node("TCPade_ClassLabel", label_set, seed % 10, "")
        latent = self.node("TCPade_BenchLatent", choice, self.args.batch)[0]
        c = Case(key, steps, seed, self.sampler_steps(base, key, steps))
        n = c.n
        hook = self.count_forwards(base)
        try:
            self.forwards = 0
            ref, c.wall_full = self.sample(base, key, steps, seed, cond, latent)
            per_step = self.forwards / n
            for name in CORE:
                for thr in self.args.thresholds:
                    node = getattr(self.ec, f"{name}Node")
                    m = node.execute(base, reuse_threshold=thr, start_percent=0.15, end_percent=0.95, verbose=False)
                    m = m.args[0]
                    self.forwards, n_lines = 0, len(self.log.lines)
                    img, wall = self.sample(m, key, steps, seed, cond, latent)
                    lines = self.log.lines[n_lines:]
                    if len(lines) != 1 or lines[0][0] != name or lines[0][2] != n:
                        raise RuntimeError(f"{name} {thr}: expected one '{name} - skipped X/{n}' line, got {lines}")
                    computes = n - lines[0][1]
                    if self.forwards != computes * per_step:
                        raise RuntimeError(
                            f"{name} {thr}: the log says {computes} computes, the model ran "
                            f"{self.forwards / per_step:g} steps"
                        )
                    psnr, ssim = self.score(img, ref)
                    c.core.append(Run(f"{name} {thr:g}", name, computes, psnr, ssim, wall))
        finally:
            hook.remove()
        budgets = sorted({r.computes for r in c.core if r.computes < n})
        progress(f"  {key} {steps} steps seed {seed}: budgets {budgets}")
        for b in budgets:
            target = n / b
            runs = []
            for node_id, label in self.pack_nodes:
                params = self.node_defaults(node_id)
                if "target_speedup" not in params:
                    c.flagged.append(f"{label}: no target_speedup widget, not measured")
                    continue
                params["target_speedup"] = target
                if "preset" in params:
                    params["preset"] = self.methods.CUSTOM
                m = self.nodes[node_id].execute(base, **params).args[0]
                img, wall = self.sample(m, key, steps, seed, cond, latent)
                rep = m.model_options["transformer_options"]["tcpade"].last_report
                want = self.budget(n, target)
                psnr, ssim = self.score(img, ref)
                run = Run(label, label, rep.computed, psnr, ssim, wall)
                if want != b or rep.computed != want or rep.num_steps != n:
                    run.note = f"computed {rep.computed}/{rep.num_steps}, round(steps/target) {want}, budget {b}/{n}"
                    c.flagged.append(f"{label} at budget {b}: {run.note}")
                runs.append(run)
            c.pack[b] = runs
        return c

    def sampler_steps(self, model, key, steps) -> int:
        """The steps the host's sampler takes: its scheduler's sigmas less one."""
        import comfy.samplers

        return len(comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), MODELS[key][3], steps)) - 1

    def warm_up(self, key, base):
        """One untimed run (the host loads the model, torch warms up) before the timed ones."""
        choice, label_set, _, _ = MODELS[key]
        cond = self.node("TCPade_ClassLabel", label_set, 0, "")
        self.sample(base, key, 2, 0, cond, self.node("TCPade_BenchLatent", choice, self.args.batch)[0])

    def node_defaults(self, node_id):
        node = self.nodes[node_id]
        return {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}


# ------------------------------------------------------------------------------ report


def fmt_db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.2f}"


def print_fronts(c: Case) -> None:
    print(f"  seed {c.seed} (class {c.seed % 10}): uncached {c.n} computes, wall {c.wall_full:.2f} s")
    for name in CORE:
        cells = [
            f"{r.node.split()[1]}: {r.computes} -> {fmt_db(r.psnr)}/{r.ssim:.3f}/{r.wall:.2f}s"
            for r in c.core
            if r.family == name
        ]
        print(f"    {name:11} " + "; ".join(cells))
    labels = []
    for runs in c.pack.values():
        labels += [r.family for r in runs if r.family not in labels]
    for label in labels:
        cells = [
            f"{r.computes} -> {fmt_db(r.psnr)}/{r.ssim:.3f}/{r.wall:.2f}s{' (!)' if r.note else ''}"
            for b, runs in sorted(c.pack.items())
            for r in runs
            if r.family == label
        ]
        print(f"    {label:11} " + "; ".join(cells))
    for f in c.flagged:
        print(f"    flagged: {f}")


def cells_of(cases):
    """Per budget of one model and step count: the seeds in which a core run reached it, the best core run per
    seed, and each pack node's valid runs there; [(budget, seeds, best core runs, {label: runs})]."""
    out = []
    budgets = sorted({b for c in cases for b in c.pack})
    for b in budgets:
        seeds, best, pack = [], [], {}
        for c in cases:
            if b not in c.pack:
                continue
            seeds.append(c.seed)
            best.append(max((r for r in c.core if r.computes == b), key=lambda r: r.psnr))
            for r in c.pack[b]:
                pack.setdefault(r.family, []).append(r)
        out.append((b, seeds, best, pack))
    return out


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def print_margins(key, steps, cases, summary):
    print(
        "  per budget (mean over the seeds whose core runs reached it): best core run | each pack node "
        "PSNR/SSIM/wall | margin of the pack's best"
    )
    n = cases[0].n
    for b, seeds, best, pack in cells_of(cases):
        core_psnr = mean(r.psnr for r in best)
        core_names = " / ".join(dict.fromkeys(r.node for r in best))
        core = f"{core_names} {core_psnr:.2f}/{mean(r.ssim for r in best):.3f}/{mean(r.wall for r in best):.2f}s"
        valid = {
            label: runs for label, runs in pack.items() if len(runs) == len(seeds) and not any(r.note for r in runs)
        }
        cells = []
        for label, runs in pack.items():
            if label in valid:
                cells.append(
                    f"{label} {mean(r.psnr for r in runs):.2f}/{mean(r.ssim for r in runs):.3f}/"
                    f"{mean(r.wall for r in runs):.2f}s"
                )
            else:
                cells.append(f"{label} (flagged)")
        if valid:
            top = max(valid, key=lambda label: mean(r.psnr for r in valid[label]))
            top_psnr = mean(r.psnr for r in valid[top])
            margin = top_psnr - core_psnr
            summary.append((key, steps, b, core_names, core_psnr, top, top_psnr, margin, n))
            tail = f"{margin:+.2f} dB ({top})"
        else:
            tail = "no valid pack run"
        seeds_txt = ",".join(str(s) for s in seeds)
        print(f"    {b:2d}/{n} [{seeds_txt}] core {core} | " + " | ".join(cells) + f" | {tail}")


def print_summary(summary, missing_cells):
    print()
    print("summary per model / steps: the budget of the smallest margin (the pack's worst cell there)")
    print(f"  {'model':5} {'steps':>5} {'budget':>7}  {'best core run':28} {'pack best':22} {'margin':>8}")
    by = {}
    for row in summary:
        by.setdefault((row[0], row[1]), []).append(row)
    for (key, steps), rows in sorted(by.items()):
        key_, steps_, b, cname, cp, top, tp, margin, n = min(rows, key=lambda r: r[7])
        print(
            f"  {key.upper():5} {steps:5d} {b:3d}/{n:<3d}  {cname + ' ' + f'{cp:.2f}':28} "
            f"{top + ' ' + f'{tp:.2f}':22} {margin:+8.2f}"
        )
    if summary:
        margins = [r[7] for r in summary]
        held = all(m >= TARGET_DB for m in margins) and not missing_cells
        print(
            f"margin of the pack's best node over the best core run, over all {len(margins)} cells: "
            f"min {min(margins):+.2f} dB, max {max(margins):+.2f} dB; target +{TARGET_DB:g} dB in every cell: "
            f"{'holds' if held else 'MISSED'} ({sum(m < TARGET_DB for m in margins)} cells below)"
            + (f"; {missing_cells} cells without a valid pack run" if missing_cells else "")
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="model B, 10 steps, one seed: a check")
    ap.add_argument("--models", default="a,b,c", help="comma-separated from a, b, c")
    ap.add_argument("--steps", default=",".join(map(str, STEPS)), help="comma-separated step counts")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds")
    ap.add_argument("--batch", type=int, default=8, help="images per run (>= 4)")
    ap.add_argument(
        "--thresholds", default=",".join(map(str, THRESHOLDS)), help="the core nodes' reuse thresholds, comma-separated"
    )
    args = ap.parse_args(argv)
    if not (H.comfy_path() / "comfy" / "model_patcher.py").is_file():
        print(f"no ComfyUI checkout at {H.comfy_path()}")
        return 2
    if args.quick:
        args.models, args.steps, args.seeds = "b", "10", str(SEEDS[0])
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad or args.batch < 4:
        ap.error(f"--models must name some of a, b, c (got {bad}); --batch must be >= 4 (got {args.batch})")
    steps_list = [int(s) for s in args.steps.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    args.thresholds = [float(t) for t in args.thresholds.split(",")]
    t_start = time.perf_counter()
    bench = Bench(args)
    import comfyui_version

    print(f"command: python tests/host_peers.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(
        f"ComfyUI {comfyui_version.__version__} at {H.comfy_path()}; torch threads 1; batch {args.batch}; "
        f"seeds {', '.join(map(str, seeds))}; core reuse thresholds {', '.join(f'{t:g}' for t in args.thresholds)} "
        f"(start 0.15, end 0.95); pack nodes: {', '.join(label for _, label in bench.pack_nodes)}"
    )
    if bench.fix_line:
        print(bench.fix_line)
    try:
        summary, missing = run_all(bench, models, steps_list, seeds, t_start)
    finally:
        bench.close()
    print_summary(summary, missing)
    print(f"runtime {time.perf_counter() - t_start:.0f} s")
    return 0


def run_all(bench, models, steps_list, seeds, t_start):
    """Every model, step count and seed, each model/steps block printed as it completes; (summary, cells
    without a valid pack run)."""
    summary, missing = [], 0
    bases = {}
    for key in models:
        bases[key] = bench.node("TCPade_BenchModelLoader", MODELS[key][0])[0]
        bench.warm_up(key, bases[key])
    # step counts outermost: a run cut short has every model at the smaller step counts
    for steps in steps_list:
        for key in models:
            base = bases[key]
            cases = []
            for seed in seeds:
                progress(f"{key} {steps} steps seed {seed} ({time.perf_counter() - t_start:.0f} s)")
                cases.append(bench.case(key, base, steps, seed))
            _, _, sampler, scheduler = MODELS[key]
            print()
            extra = f"; the scheduler gives {cases[0].n} sampler steps" if cases[0].n != steps else ""
            print(f"== model {key.upper()}, {steps} steps ({sampler}/{scheduler}, CFG {bench.cfg_scale[key]:g}{extra})")
            print("  fronts: computes -> PSNR dB / SSIM / wall s against the uncached run")
            for c in cases:
                print_fronts(c)
            n = len(summary)
            print_margins(key, steps, cases, summary)
            missing += len(cells_of(cases)) - (len(summary) - n)
            sys.stdout.flush()
    return summary, missing


if __name__ == "__main__":
    raise SystemExit(main())
