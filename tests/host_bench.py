"""Speed and memory of the ComfyUI patcher on small real host models (a benchmark, not a test).

    python tests/host_bench.py            # needs a ComfyUI checkout ($COMFYUI_PATH or ~/ComfyUI)

For Flux and Wan 2.1 host models (``comfy.supported_models``, seeded weights, a larger tiny config so
the block stack dominates a step as it does on real models), sampled through ``comfy.sample`` at 20
steps, euler, CFG 2 (cond and uncond batched):

- patch cost on computed steps: TC-Padé with a θ that never skips (gate, block patches, residual
  recorded every step) against the plain model;
- cost of a skipped step: TC-Padé θ = 0 (every step the gate allows is skipped); the time left after
  the computed steps, per skipped step, relative to a full step;
- cache memory: the bytes the run report says the histories held.

Times are the minimum of ``--repeats`` runs, all taken side by side in this one process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import host_util as H  # noqa: E402

CONFIGS = {
    "flux": dict(H.FLUX_CONFIG, hidden_size=256, num_heads=4, depth=4, depth_single_blocks=8, mlp_ratio=4.0,
                 axes_dim=[16, 24, 24]),
    "wan": dict(H.WAN_CONFIG, dim=256, ffn_dim=1024, num_heads=4, num_layers=10),
}


def build(kind):
    import torch
    h = H.host()
    sm = h.comfy.supported_models
    cls = {"flux": sm.Flux, "wan": sm.WAN21_T2V}[kind]
    mc = cls(dict(CONFIGS[kind]))
    mc.set_inference_dtype(torch.float32, None)
    m = mc.get_model({})
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(m.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.ndim > 1 else 0.02))
    cpu = torch.device("cpu")
    return h.comfy.model_patcher.ModelPatcher(m, load_device=cpu, offload_device=cpu)


def timed(model, kind, steps, size, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        H.sample(model, kind, steps=steps, size=size, batch=1)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=32, help="latent height/width")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not (H.comfy_path() / "comfy" / "model_patcher.py").is_file():
        print(f"no ComfyUI checkout at {H.comfy_path()}")
        return 2
    H.load_pack()
    mappings = H.host().nodes.NODE_CLASS_MAPPINGS
    node = mappings["TCPade_TCPadeCache"]
    defaults = {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}
    print(f"{'model':5} {'full s/step':>11} {'patches on computed steps':>26} {'skipped step / full step':>25} "
          f"{'computed':>9} {'cache':>10}")
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
        print(f"{kind:5} {per_step:11.4f} {100 * (t_never / t_full - 1):+25.1f}% {100 * skipped_cost:24.1f}% "
              f"{c:>5d}/{n:<3d} {rep.cache_bytes / 2**20:7.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
