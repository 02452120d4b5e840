"""Speed and memory of the ComfyUI patcher on host models (a benchmark, not a test).

    python tests/host_bench.py                       # small Flux and Wan 2.1 (needs $COMFYUI_PATH or ~/ComfyUI)
    python tests/host_bench.py --configs real        # Wan 2.1 1.3B and a FLUX slice at their real widths

Small configurations (``flux``, ``wan``): host models (``comfy.supported_models``, seeded weights, a larger tiny
config so the block stack dominates a step as it does on real models), sampled through ``comfy.sample`` at 20
steps, euler, CFG 2 (cond and uncond batched):

- patch cost on computed steps: TC-Padé with a θ that never skips (gate, block patches, residual
  recorded every step) against the plain model;
- cost of a skipped step: TC-Padé θ = 0 (every step the gate allows is skipped); the time left after
  the computed steps, per skipped step, relative to a full step;
- cache memory: the bytes the run report says the histories held.

Times are the minimum of ``--repeats`` runs, all taken side by side in this one process.

Real sizes (``wan1.3b``, ``flux-slice``; random weights, timing only): the Wan 2.1 1.3B configuration (30 blocks,
width 1536, 12 heads, FFN 8960, text_dim 4096, freq_dim 256) at a small latent, and a FLUX.1 slice at FLUX's
width (hidden 3072, 24 heads, mlp_ratio 4, axes [16, 56, 56], context 4096, vec 768: 2 double and 4 single
blocks) at 512x512 (latent 64x64: 1024 image tokens), 10 steps, euler, CFG 2 batched, bf16 weights and compute
(this CPU multiplies bf16 2.3x faster than fp32), PyTorch attention (what ComfyUI uses on GPUs). Each model call
is timed on its own (an APPLY_MODEL wrapper), and so is the time spent inside the cache's own code (driver and
block-patch bookkeeping), so the figures do not drown in the run-to-run noise of a shared CPU:

- patch cost on computed steps: time inside the cache's code per computed call / a plain call (median), and the
  median never-skip call against the median plain call (whole-call, noisy);
- skipped step: median skipped call / median plain call;
- cache bytes measured, the formula, and the bytes projected to the full model at full resolution.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import host_util as H  # noqa: E402

CONFIGS = {
    "flux": dict(
        H.FLUX_CONFIG,
        hidden_size=256,
        num_heads=4,
        depth=4,
        depth_single_blocks=8,
        mlp_ratio=4.0,
        axes_dim=[16, 24, 24],
    ),
    "wan": dict(H.WAN_CONFIG, dim=256, ffn_dim=1024, num_heads=4, num_layers=10),
}

# real widths (random weights)
REAL = {
    "wan1.3b": dict(
        kind="wan",
        config=dict(
            image_model="wan2.1",
            model_type="t2v",
            patch_size=(1, 2, 2),
            text_len=512,
            in_dim=16,
            dim=1536,
            ffn_dim=8960,
            freq_dim=256,
            text_dim=4096,
            out_dim=16,
            num_heads=12,
            num_layers=30,
            window_size=(-1, -1),
            qk_norm=True,
            cross_attn_norm=True,
            eps=1e-6,
        ),
        latent=(1, 16, 2, 24, 40),
        context=(1, 512, 4096),  # 2 latent frames of 192x320 px: 480 tokens
        full_latent=(1, 16, 21, 60, 104),
        full=dict(
            name="480p x 81 frames",
            tokens=21 * (60 // 2) * (104 // 2),
            how="latent 21x60x104 / patch 1x2x2 = 32760 tokens",
        ),
    ),
    "flux-slice": dict(
        kind="flux",
        config=dict(
            image_model="flux",
            guidance_embed=True,
            in_channels=16,
            out_channels=16,
            vec_in_dim=768,
            context_in_dim=4096,
            hidden_size=3072,
            mlp_ratio=4.0,
            num_heads=24,
            depth=2,
            depth_single_blocks=4,
            axes_dim=[16, 56, 56],
            theta=10000,
            patch_size=2,
            qkv_bias=True,
        ),
        latent=(1, 16, 64, 64),
        context=(1, 512, 4096),  # 512x512: 1024 image tokens, 512 T5 tokens
        full_latent=(1, 16, 128, 128),
        full=dict(name="1024x1024", tokens=(128 // 2) ** 2, how="latent 128x128 / patch 2x2 = 4096 tokens"),
    ),
}
# the whole FLUX.1 transformer (19 double + 38 single blocks, 11.9 B parameters): a GPU only (--configs flux-dev)
REAL["flux-dev"] = dict(REAL["flux-slice"], config=dict(REAL["flux-slice"]["config"], depth=19, depth_single_blocks=38))
REAL_DEFAULT = ("wan1.3b", "flux-slice")
STEPS_REAL = 10
GiB = 2**30


def build(kind, config=None, dtype=None, fan_in_scale=False):
    import torch

    h = H.host()
    sm = h.comfy.supported_models
    cls = {"flux": sm.Flux, "wan": sm.WAN21_T2V}[kind]
    mc = cls(H.host_config(kind, config or CONFIGS[kind]))
    dtype = dtype or getattr(torch, H.DTYPE)
    mc.set_inference_dtype(dtype, None)
    m = mc.get_model({})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(m.named_parameters()):
            # real widths: a fan-in scale keeps activations finite at width 3072 (the small configs: 0.05)
            std = (min(0.05, 1.0 / math.sqrt(p.shape[-1])) if fan_in_scale else 0.05) if p.ndim > 1 else 0.02
            p.copy_((torch.randn(p.shape, generator=g) * std).to(p.dtype))
    return H.patcher(m)


def timed(model, kind, steps, size, repeats):
    best = float("inf")
    for _ in range(repeats):
        H.sync()
        t0 = time.perf_counter()
        H.sample(model, kind, steps=steps, size=size, batch=1)
        H.sync()
        best = min(best, time.perf_counter() - t0)
    return best


def small(args, node, defaults):
    print(
        f"{'model':5} {'full s/step':>11} {'patches on computed steps':>26} {'skipped step / full step':>25} "
        f"{'computed':>9} {'cache':>10}"
    )
    for kind in ("flux", "wan"):
        base = build(kind)
        never = node.execute(base, **dict(defaults, preset="custom", theta=1000.0)).args[0]
        skip = node.execute(base, **dict(defaults, preset="custom", theta=0.0)).args[0]
        timed(base, kind, 2, args.size, 1)  # warm-up
        t_full = timed(base, kind, args.steps, args.size, args.repeats)
        t_never = timed(never, kind, args.steps, args.size, args.repeats)
        t_skip = timed(skip, kind, args.steps, args.size, args.repeats)
        rep = skip.model_options["transformer_options"]["tcpade"].results["report"]
        per_step = t_full / args.steps
        c, n = rep.computed, rep.num_steps
        skipped_cost = (t_skip - c * per_step) / max(n - c, 1) / per_step
        print(
            f"{kind:5} {per_step:11.4f} {100 * (t_never / t_full - 1):+25.1f}% {100 * skipped_cost:24.1f}% "
            f"{c:>5d}/{n:<3d} {rep.cache_bytes / 2**20:7.2f} MB"
        )


# ------------------------------------------------------------------------------ real sizes


class CallClock:
    """Per model call: wall time of apply_model and time spent inside the cache's own code."""

    def __init__(self):
        self.calls = []  # [(apply_model seconds, cache-code seconds)]
        self._cache = 0.0
        self._pending = 0.0  # cache code that ran before the call's apply_model (the step bookkeeping)

    def apply_model_wrapper(self, executor, *args, **kwargs):
        self._cache, self._pending = self._pending, 0.0
        H.sync()
        t0 = time.perf_counter()
        out = executor(*args, **kwargs)
        H.sync()
        self.calls.append((time.perf_counter() - t0, self._cache))
        return out

    def __deepcopy__(self, memo):
        return self


def instrument(clock_ref):
    """Time the cache's code: the step bookkeeping (StackDriver.on_model_call) and the block patches' decide /
    predict / record / pass-through (BlockPatch._enter, _skipped, _leave; the engine runs inside them)."""
    import functools

    drv = H.pack_module("nodes.driver").StackDriver
    bp = H.pack_module("nodes.patcher").BlockPatch

    def wrap(owner, name, pending=False):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed_fn(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock = clock_ref[0]
                if clock is not None:
                    if pending:
                        clock._pending += time.perf_counter() - t0
                    else:
                        clock._cache += time.perf_counter() - t0

        setattr(owner, name, timed_fn)

    wrap(drv, "on_model_call", pending=True)
    for name in ("_enter", "_skipped", "_leave"):
        wrap(bp, name)


class RealSampler:
    """Sampling of one real-size model: the same seeded prompts, latent and noise for every run, each run's
    model calls timed by a CallClock (published in ``clock_ref`` while it runs, for the instrumented cache)."""

    def __init__(self, name, spec, full_res, clock_ref):
        import torch

        self.name, self.clock_ref = name, clock_ref
        g = torch.Generator().manual_seed(1)
        ctx = spec["context"]
        extra = {"pooled_output": torch.randn(1, 768, generator=g), "guidance": 3.5} if spec["kind"] == "flux" else {}
        self.pos = [[torch.randn(*ctx, generator=g), dict(extra)]]
        self.neg = [[torch.randn(*ctx, generator=g), dict(extra)]]
        self.shape = spec["full_latent"] if full_res else spec["latent"]
        self.latent = torch.zeros(self.shape)
        self.noise = torch.randn(self.shape, generator=torch.Generator().manual_seed(0))

    def run(self, model, steps=None):
        """Sample with ``model`` (``steps``: STEPS_REAL unless given); its CallClock and the output."""
        import torch
        import comfy.patcher_extension as pe

        steps = STEPS_REAL if steps is None else steps
        clock = CallClock()
        m = model.clone()
        m.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "tcpade_bench", clock.apply_model_wrapper)
        self.clock_ref[0] = clock
        H.sync()
        t = time.perf_counter()
        out = H.host().comfy.sample.sample(
            m, self.noise, steps, 2.0, "euler", "simple", self.pos, self.neg, self.latent, seed=0, disable_pbar=True
        )
        H.sync()
        clock.wall = time.perf_counter() - t
        self.clock_ref[0] = None
        assert torch.isfinite(out).all(), f"{self.name}: non-finite output"
        print(f"  {len(clock.calls)} calls in {time.perf_counter() - t:.0f} s", flush=True)
        return clock, out


def build_real(name, spec):
    """The real-size model ``name`` in bf16 with PyTorch attention, and its parameter count."""
    import torch
    from comfy.ldm.modules.attention import attention_pytorch

    t0 = time.perf_counter()
    base = build(spec["kind"], spec["config"], torch.bfloat16, fan_in_scale=True)
    n_params = sum(p.numel() for p in base.model.diffusion_model.parameters())
    base.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = lambda func, *a, **k: (
        attention_pytorch(*a, **k)
    )
    print(f"{name}: {n_params / 1e9:.2f} B parameters, bf16, built in {time.perf_counter() - t0:.0f} s", flush=True)
    return base, n_params


def preset_walls(sampler, base, node, defaults):
    """Wall clock at the presets, 20 steps (what people run): whole sampling time against the plain model;
    [(preset, computed, steps, plain / cached time)]."""
    presets = []
    plain20, _ = sampler.run(base, steps=20)
    for preset in ("slow (2x)", "fast (2.8x)"):
        pm = node.execute(base, **dict(defaults, preset=preset)).args[0]
        pc, _ = sampler.run(pm, steps=20)
        prep = pm.model_options["transformer_options"]["tcpade"].last_report
        presets.append((preset, prep.computed, prep.num_steps, plain20.wall / pc.wall))
        del pm
    return presets


def real_row(name, spec, n_params, shape, plain, never, skip, rep, presets):
    """One model's figures from its plain, never-skip and skip-all runs (CallClocks; ``rep`` the skip-all report)."""
    full = statistics.median(t for t, _ in plain.calls)
    nev = statistics.median(t for t, _ in never.calls)
    in_cache = statistics.median(c for _, c in never.calls)
    skipped = [t for (t, _), r in zip(skip.calls, rep.steps) if not r.computed]
    sk = statistics.median(skipped)
    width = spec["config"].get("hidden_size") or spec["config"]["dim"]
    lat = shape
    tokens = (lat[2] * (lat[3] // 2) * (lat[4] // 2)) if spec["kind"] == "wan" else (lat[2] // 2) * (lat[3] // 2)
    per = 2  # bf16 bytes
    formula = tokens * width * 6 * 2 * per
    proj = spec["full"]["tokens"] * width * 6 * 2 * per
    return dict(
        name=name,
        params=n_params,
        full=full,
        patch_in=in_cache / full,
        patch_call=nev / full - 1,
        skipped=sk / full,
        strip=rep.strip(),
        bytes=rep.cache_bytes,
        formula=formula,
        tokens=tokens,
        width=width,
        proj=proj,
        full_spec=spec["full"],
        presets=presets,
        in_cache_skip=statistics.median(c for (_, c), r in zip(skip.calls, rep.steps) if not r.computed) / full,
    )


def measure_real(name, args, node, defaults, clock_ref):
    """Build real-size model ``name`` and time it plain, with TC-Padé never skipping and skipping all it may
    (and, with --presets, at the presets); its row for the report."""
    spec = REAL[name]
    base, n_params = build_real(name, spec)
    sampler = RealSampler(name, spec, args.full_res, clock_ref)
    sampler.run(base, steps=1)  # warm-up
    plain, _ = sampler.run(base)
    never_m = node.execute(base, **dict(defaults, preset="custom", theta=1000.0)).args[0]
    never, _ = sampler.run(never_m)
    skip_m = node.execute(base, **dict(defaults, preset="custom", theta=0.0)).args[0]
    skip, _ = sampler.run(skip_m)
    rep = skip_m.model_options["transformer_options"]["tcpade"].last_report
    assert never_m.model_options["transformer_options"]["tcpade"].last_report.computed == STEPS_REAL
    presets = preset_walls(sampler, base, node, defaults) if args.presets else []
    return real_row(name, spec, n_params, sampler.shape, plain, never, skip, rep, presets)


def print_real_table(rows):
    print()
    print(
        f"{'config':11} {'params':>7} {'full call':>9} {'patches, in cache code':>23} {'patches, whole call':>20} "
        f"{'skipped / full':>15} {'strip':>11} {'cache (measured)':>17}"
    )
    for r in rows:
        print(
            f"{r['name']:11} {r['params'] / 1e9:6.2f}B {r['full']:8.2f}s {100 * r['patch_in']:22.3f}% "
            f"{100 * r['patch_call']:+19.1f}% {100 * r['skipped']:14.2f}% {r['strip']:>11} "
            f"{r['bytes'] / 2**20:13.1f} MiB"
        )
    if H.DEVICE != "cpu":
        print(
            "(on a GPU the time 'in cache code' is host-side and includes waiting for queued GPU work wherever the "
            "gate reads a number back; the whole-call figure is the measure there)"
        )


def print_cache_bytes(rows):
    print()
    print(
        "cache bytes = image tokens x width x 6 stack tensors (3 outputs for the predictor + 3 residuals for the "
        "TSI gate) x 2 streams (cond, uncond) x 2 bytes (bf16; 4 for an fp32 model)"
    )
    for r in rows:
        ok = "=" if r["formula"] == r["bytes"] else "!="
        print(
            f"  {r['name']}: {r['tokens']} x {r['width']} x 6 x 2 x 2 = {r['formula']} B {ok} measured {r['bytes']} B"
        )
        f = r["full_spec"]
        print(
            f"  {r['name']} projected to {f['name']} ({f['how']}): {f['tokens']} x {r['width']} x 6 x 2 x 2 = "
            f"{r['proj'] / GiB:.2f} GiB on the GPU with cache_device 'same'; 'cpu offload': 0 GiB resident on the "
            f"GPU, {r['proj'] / GiB:.2f} GiB of system RAM (fp32 model: x2; CFG 1: /2)"
        )


def print_preset_walls(rows):
    if any(r["presets"] for r in rows):
        print()
        print("wall clock at the presets, 20 steps, euler, CFG 2 (plain sampling time / cached sampling time)")
        for r in rows:
            for preset, c, n, wall in r["presets"]:
                nfe = n / c
                print(
                    f"  {r['name']:11} {preset:12} computed {c}/{n}: NFE {nfe:.2f}x, wall clock {wall:.2f}x "
                    f"({100 * wall / nfe:.0f} % of the NFE speed-up)"
                )


def print_real_targets(rows):
    print()
    print(f"targets (real widths, {H.DEVICE}): skipped step <= 5 % of a full step, patches <= 1 % on computed steps")
    for r in rows:
        print(
            f"  {r['name']}: skipped step {100 * r['skipped']:.2f} % ({'met' if r['skipped'] <= 0.05 else 'missed'}); "
            f"patches {100 * r['patch_in']:.3f} % in the cache's code ({'met' if r['patch_in'] <= 0.01 else 'missed'}),"
            f" {100 * r['patch_call']:+.1f} % whole call{' (noise on this shared CPU)' if H.DEVICE == 'cpu' else ''}; cache code on a skipped step "
            f"{100 * r['in_cache_skip']:.2f} % of a full step"
        )


def real(args, node, defaults):
    H.host()
    clock_ref = [None]
    instrument(clock_ref)
    names = [n for n in args.configs.split(",") if n in REAL] if args.configs != "real" else list(REAL_DEFAULT)
    rows = [measure_real(name, args, node, defaults, clock_ref) for name in names]
    print_real_table(rows)
    print_cache_bytes(rows)
    print_preset_walls(rows)
    print_real_targets(rows)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=32, help="latent height/width")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--configs",
        default="small",
        help="small (flux, wan), real (wan1.3b, flux-slice), or a list of "
        "real ones (also flux-dev: the whole FLUX, for a GPU)",
    )
    ap.add_argument(
        "--full-res",
        action="store_true",
        help="real configs at the full resolution (Wan 480p x 81 frames, FLUX 1024x1024): for a GPU",
    )
    ap.add_argument(
        "--presets",
        action="store_true",
        help="also time the slow/fast presets at 20 steps (wall clock against NFE speed-up)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; the real sizes were measured with 1, the CPU being shared)",
    )
    args = ap.parse_args(argv)
    if not (H.comfy_path() / "comfy" / "model_patcher.py").is_file():
        print(f"no ComfyUI checkout at {H.comfy_path()}")
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    H.load_pack()
    mappings = H.host().nodes.NODE_CLASS_MAPPINGS
    node = mappings["TCPade_TCPadeCache"]
    defaults = {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}
    if args.configs == "small":
        small(args, node, defaults)
        return 0
    return real(args, node, defaults)


if __name__ == "__main__":
    raise SystemExit(main())
