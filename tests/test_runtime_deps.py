"""The runtime needs only torch, numpy, safetensors and what ComfyUI installs.

scikit-image, scikit-learn, matplotlib and tqdm are research-kit (``bench`` extra) dependencies. A stock
ComfyUI has none of the first three: a subprocess blocks them from import, loads the pack with the host's
loader, runs the Compare node and every cache node on a tiny real host model and on a shipped bench model,
and checks none of them was imported. tqdm cannot be blocked that way, because ComfyUI itself imports it
(it is in the host's requirements.txt); a static check makes sure no runtime module of the pack imports any
of the four. The torch metrics are checked against scikit-image where it is installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import host_util as H
from tcpade_core import metrics

BLOCKED = ("skimage", "sklearn", "matplotlib")  # absent from a stock ComfyUI
RESEARCH_ONLY = BLOCKED + ("tqdm",)  # present in ComfyUI, never imported by the pack's runtime


def test_runtime_modules_never_import_research_packages():
    import ast

    runtime = [p for p in (H.PACK_ROOT / "tcpade_core").rglob("*.py") if "research" not in p.parts]
    runtime += list((H.PACK_ROOT / "nodes").rglob("*.py")) + [H.PACK_ROOT / "__init__.py"]
    assert len(runtime) > 10
    for path in runtime:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert name.split(".")[0] not in RESEARCH_ONLY, f"{path} imports {name}"
                assert "research" not in name.split("."), f"{path} imports the research kit ({name})"


def test_metrics_match_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    import numpy as np

    g = torch.Generator().manual_seed(0)
    for shape in [(3, 3, 32, 32), (2, 1, 16, 16), (2, 3, 5, 9), (1, 3, 64, 48)]:
        a = torch.rand(shape, generator=g) * 2 - 1
        b = (a + 0.1 * torch.randn(shape, generator=g)).clamp(-1, 1)
        A = ((a + 1) / 2).permute(0, 2, 3, 1).double().numpy()
        B = ((b + 1) / 2).permute(0, 2, 3, 1).double().numpy()
        win = metrics.ssim_window(shape[2], shape[3])
        want_ssim = np.mean(
            [skm.structural_similarity(r, x, data_range=1.0, channel_axis=-1, win_size=win) for x, r in zip(A, B)]
        )
        want_psnr = np.mean([skm.peak_signal_noise_ratio(r, x, data_range=1.0) for x, r in zip(A, B)])
        assert abs(metrics.psnr(a, b) - want_psnr) < 1e-3
        assert abs(metrics.ssim(a, b) - want_ssim) < 1e-4
    assert metrics.psnr(a, a) == float("inf") and metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


SCRIPT = textwrap.dedent("""
    import sys
    BLOCKED = {blocked!r}
    for name in BLOCKED:   # "import name" now raises ImportError, importlib.util.find_spec(name) says "absent"
        sys.modules[name] = None
    sys.path.insert(0, {tests!r})
    import torch
    import host_util as H
    H.load_pack()
    import comfy.model_management, folder_paths
    folder_paths.set_temp_directory({tmp!r})
    nodes = H.host().nodes.NODE_CLASS_MAPPINGS
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 16, 16, 3, generator=g)
    out = nodes["TCPade_Compare"].execute((ref + 0.05).clamp(0, 1), ref, 4.0)
    assert 20.0 < out.args[0] < 40.0 and 0.5 < out.args[1] < 1.0, out.args[:2]
    flux = H.tiny_model("flux")
    bench = nodes["TCPade_BenchModelLoader"].execute("B: FLUX-like shapes 32x32").args[0]
    pos, neg = [x.args for x in [nodes["TCPade_ClassLabel"].execute("B: shapes", 2, "")]][0]
    import comfy.sample
    for nid in ("TCPade_TCPadeCache", "TCPade_TaylorSeer", "TCPade_TeaCache", "TCPade_TraCache", "TCPade_MagCache"):
        node = nodes[nid]
        params = {{i.id: i.default for i in node.GET_SCHEMA().inputs if i.id != "model" and hasattr(i, "default")}}
        m = node.execute(flux, **params).args[0]
        x = H.sample(m, "flux", steps=8)
        rep = m.model_options["transformer_options"]["tcpade"].last_report
        assert rep.num_steps == 8 and torch.isfinite(x).all()
        m = node.execute(bench, **params).args[0]
        noise = torch.randn(1, 3, 32, 32, generator=g)
        x = comfy.sample.sample(m, noise, 8, 2.0, "euler", "simple", pos, neg, torch.zeros(1, 3, 32, 32),
                                seed=0, disable_pbar=True)
        rep = m.model_options["transformer_options"]["tcpade"].last_report
        assert rep.num_steps == 8 and torch.isfinite(x).all()
    leaked = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] in BLOCKED and mod is not None)
    assert not leaked, leaked
    print("RUNTIME-OK")
""")


def test_pack_runs_without_research_dependencies(tmp_path):
    H.require_host()
    script = SCRIPT.format(blocked=BLOCKED, tests=str(H.PACK_ROOT / "tests"), tmp=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=str(H.comfy_path()),
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0 and "RUNTIME-OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
