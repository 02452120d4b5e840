"""Speed targets and calibration cost on small real host models (a benchmark, not a test).

    python tests/host_targets.py            # needs a ComfyUI checkout ($COMFYUI_PATH or ~/ComfyUI)

For Flux and Wan 2.1 host models (the larger tiny configs of ``tests/host_bench.py``, seeded weights),
sampled through ``comfy.sample`` (euler, CFG 2, cond and uncond batched): every cache node at its default
settings with a target of 1.5x, 2x, 2.5x and 3x at 10, 20 and 30 steps, computed steps against
round(steps / target); then the cost of using a stored calibration (the model fingerprint at node time,
the lookup per run) against one full step.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import host_util as H  # noqa: E402
from host_bench import build  # noqa: E402

NODES = ("TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache", "TCPade_Spectrum")
TARGETS = (1.5, 2.0, 2.5, 3.0)


def main() -> int:
    import torch

    torch.set_num_threads(1)
    H.load_pack()
    import folder_paths

    folder_paths.set_user_directory(tempfile.mkdtemp(prefix="tcpade_user_"))
    nodes = H.host().nodes.NODE_CLASS_MAPPINGS
    CAL = H.pack_module("nodes.calibration")
    print(f"{'model':5} {'steps':>5} {'target':>6} | " + " ".join(f"{n[7:]:>14}" for n in NODES))
    bad = 0
    for kind in ("flux", "wan"):
        model = build(kind)
        for steps in (10, 20, 30):
            for target in TARGETS:
                cells = []
                for nid in NODES:
                    node = nodes[nid]
                    p = {i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}
                    p["target_speedup"] = target
                    if "preset" in p:
                        p["preset"] = "custom"
                    m = node.execute(model, **p).args[0]
                    H.sample(m, kind, steps=steps, size=8)
                    rep = m.model_options["transformer_options"]["tcpade"].last_report
                    want = int(steps / target + 0.5)
                    ok = abs(rep.computed - want) <= 1
                    bad += not ok
                    cells.append(f"{rep.computed:2d}/{want:<2d} {'ok' if ok else 'MISSED':>6}")
                print(f"{kind:5} {steps:5d} {target:5g}x | " + " ".join(f"{c:>14}" for c in cells), flush=True)
        # calibration cost: fingerprint (node time) + lookup (per run) against one full step
        t0 = time.perf_counter()
        key = CAL.model_key(model)
        t_key = time.perf_counter() - t0
        from tcpade_core.calibrate import Calibration

        CAL.save(Calibration(key, 20, 2.0, (1.0, 0.0), 0.3, dict(interval=3, order=1, first_enhance=2), 1.0, 1, {}))
        t0 = time.perf_counter()
        for _ in range(20):
            CAL.lookup(key, 20)
        t_lookup = (time.perf_counter() - t0) / 20
        t0 = time.perf_counter()
        H.sample(model, kind, steps=4, size=8)
        t_step = (time.perf_counter() - t0) / 4
        print(
            f"{kind}: one full step {1000 * t_step:.1f} ms; stored-calibration lookup per run {1000 * t_lookup:.2f} ms "
            f"({100 * t_lookup / t_step:.2f} % of a step); model fingerprint once per node run "
            f"{1000 * t_key:.2f} ms ({100 * t_key / t_step:.2f} % of a step)"
        )
    print(f"targets missed: {bad}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
