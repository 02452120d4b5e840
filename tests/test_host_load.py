"""The pack as ComfyUI sees it: loaded from custom_nodes by the host's loader, V3 schemas, validation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import host_util as H

H.require_host()

NODE_IDS = [
    "TCPade_TCPadeCache",
    "TCPade_TaylorSeer",
    "TCPade_TeaCache",
    "TCPade_TraCache",
    "TCPade_FirstBlockCache",
    "TCPade_MagCache",
    "TCPade_Spectrum",
]
OTHER_IDS = [
    "TCPade_Compare",
    "TCPade_ClassLabel",
    "TCPade_DiTLoader",
    "TCPade_BenchModelLoader",
    "TCPade_BenchLatent",
    "TCPade_BenchDecode",
]


@pytest.fixture(scope="module")
def pack():
    return H.load_pack()


@pytest.fixture(scope="module")
def mappings(pack):
    return H.host().nodes.NODE_CLASS_MAPPINGS


def params(node_cls, **overrides):
    """The node's widget defaults from its schema, with overrides."""
    out = {}
    for inp in node_cls.GET_SCHEMA().inputs:
        if inp.id != "model" and hasattr(inp, "default"):  # widgets; the optional calibration socket stays None
            out[inp.id] = inp.default
    out.update(overrides)
    return out


def test_loaded_by_host_loader_with_prefixed_ids(pack, mappings):
    ours = sorted(k for k, v in mappings.items() if getattr(v, "RELATIVE_PYTHON_MODULE", "").endswith(H.PACK_FOLDER))
    assert set(NODE_IDS + OTHER_IDS) <= set(ours)
    assert all(k.startswith("TCPade_") for k in ours)
    # categories never end in "/" (the library would show an unnamed folder)
    assert {mappings[nid].GET_SCHEMA().category for nid in OTHER_IDS} == {"tcpade", "tcpade/models"}
    for nid in NODE_IDS:
        schema = mappings[nid].GET_SCHEMA()
        assert schema.node_id == nid and schema.category == "tcpade"
        assert H.host().nodes.NODE_DISPLAY_NAME_MAPPINGS[nid] == schema.display_name
        assert [o.io_type for o in schema.outputs] == ["MODEL"]
        assert schema.inputs[0].id == "model" and schema.inputs[0].io_type == "MODEL"


def test_v3_entrypoint_only_and_web_directory(pack):
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    assert callable(pack.comfy_entrypoint)
    assert pack.WEB_DIRECTORY == "./web"
    webdirs = H.host().nodes.EXTENSION_WEB_DIRS
    assert (H.PACK_ROOT / "web" / "tcpade.js").is_file()
    assert webdirs[H.PACK_FOLDER] == os.path.abspath(H.host().path / "custom_nodes" / H.PACK_FOLDER / "web")


def test_every_widget_has_a_tooltip_with_its_range(mappings):
    for nid in NODE_IDS:
        info = mappings[nid].GET_NODE_INFO_V1()
        required = info["input"]["required"]
        assert "model" in required
        for name, (kind, opts) in required.items():
            assert opts.get("tooltip"), f"{nid}.{name} has no tooltip"
            if kind in ("FLOAT", "INT"):
                lo, hi = opts["min"], opts["max"]
                assert f"{lo}-{hi}" in opts["tooltip"], (nid, name, lo, hi)
                assert lo <= opts["default"] <= hi


def test_tcpade_widgets(mappings):
    req = mappings["TCPade_TCPadeCache"].GET_NODE_INFO_V1()["input"]["required"]
    assert (req["theta"][1]["min"], req["theta"][1]["max"], req["theta"][1]["default"]) == (0.0, 2.0, 1.0)
    # the node's defaults are the engine's measured defaults (README "Notes on the equations")
    from tcpade_core import TCPadeConfig

    d = TCPadeConfig()
    assert (d.lam, d.alpha1, d.beta, d.interval) == (2.0, 1.0, 0.3, 4)
    assert req["lam"][1]["default"] == d.lam and req["alpha1"][1]["default"] == d.alpha1
    assert req["beta"][1]["default"] == d.beta and req["interval"][1]["default"] == d.interval
    assert (req["start_percent"][1]["default"], req["end_percent"][1]["default"]) == (0.0, 1.0)
    assert req["preset"][1]["options"] == ["slow (2x)", "fast (2.8x)", "custom"]
    assert [req[k][1].get("display_name") for k in ("theta", "lam", "alpha1", "beta")] == ["θ", "λ", "α1", "β"]
    assert req["cache_device"][1]["options"] == ["same", "cpu offload"]
    assert req["mode"][1]["options"] == ["default", "paper_literal", "official"]


@pytest.fixture(scope="module")
def flux():
    return H.tiny_model("flux")


def test_clone_never_mutates_input(mappings, flux):
    before = repr(flux.model_options)
    wrappers_before = {k: dict(v) for k, v in flux.wrappers.items()}
    out = mappings["TCPade_TaylorSeer"].execute(flux, **params(mappings["TCPade_TaylorSeer"])).args[0]
    assert out is not flux
    assert repr(flux.model_options) == before and "tcpade" not in flux.model_options.get("transformer_options", {})
    assert {k: dict(v) for k, v in flux.wrappers.items()} == wrappers_before
    for kind in ("outer_sample", "calc_cond_batch", "diffusion_model"):
        assert len(out.get_wrappers(kind, "tcpade")) == 1


def test_presets_are_speed_targets(mappings, flux):
    node = mappings["TCPade_TCPadeCache"]
    to = lambda m: m.model_options["transformer_options"]["tcpade"]
    fast = to(node.execute(flux, **params(node, preset="fast (2.8x)", target_speedup=1.5, theta=1.9)).args[0])
    custom = to(node.execute(flux, **params(node, preset="custom", target_speedup=1.5, theta=1.9)).args[0])
    off = to(node.execute(flux, **params(node, preset="custom", target_speedup=0.0)).args[0])
    paper = to(node.execute(flux, **params(node, mode="paper_literal", cache_device="cpu offload")).args[0])
    assert (fast.target_speedup, custom.target_speedup, off.target_speedup) == (2.8, 1.5, 0.0)
    assert fast.cfg.theta == 1.9 and custom.cfg.theta == 1.9
    assert paper.cfg.mode == "paper_literal" and paper.cfg.numerator == "literal" and paper.store_device == "cpu"


@pytest.mark.parametrize(
    "nid, bad, name",
    [
        ("TCPade_TCPadeCache", dict(lam=0.0), "lam"),
        ("TCPade_TCPadeCache", dict(interval=0), "interval"),
        ("TCPade_TCPadeCache", dict(alpha1=1.5), "alpha1"),
        ("TCPade_TCPadeCache", dict(start_percent=0.8, end_percent=0.2), "end_percent"),
        ("TCPade_TaylorSeer", dict(order=9), "order"),
        ("TCPade_TeaCache", dict(threshold=-1.0), "threshold"),
        ("TCPade_TeaCache", dict(coefficients="custom", custom_coefficients="1, x"), "custom_coefficients"),
        ("TCPade_TraCache", dict(max_order=7), "max_order"),
        ("TCPade_TraCache", dict(start_percent=1.5), "start_percent"),
        ("TCPade_MagCache", dict(K=-1), "K"),
        ("TCPade_MagCache", dict(retention_ratio=1.2), "retention_ratio"),
        ("TCPade_MagCache", dict(ratios="flux2"), "ratios"),
        ("TCPade_TaylorSeer", dict(target_speedup=0.5), "target_speedup"),
        ("TCPade_TCPadeCache", dict(preset="custom", target_speedup=0.9), "target_speedup"),
    ],
)
def test_bad_values_raise_config_error_naming_the_widget(pack, mappings, flux, nid, bad, name):
    ConfigError = sys.modules[H._STATE["pack_name"] + ".tcpade_core"].ConfigError
    node = mappings[nid]
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        node.execute(flux, **params(node, **bad))


def test_teacache_coefficients_auto_detect(pack, mappings, flux):
    tables = H.pack_module("nodes.teacache_tables")
    node = mappings["TCPade_TeaCache"]
    s = node.execute(flux, **params(node)).args[0].model_options["transformer_options"]["tcpade"]
    assert s.cfg.coefficients == tables.COEFFICIENTS["flux"]
    wan = H.tiny_model("wan")
    # the tiny Wan (width 64) is no published Wan: no table, the raw relative L1 distance (coefficients 1, 0)
    s = node.execute(wan, **params(node)).args[0].model_options["transformer_options"]["tcpade"]
    assert s.cfg.coefficients == (1.0, 0.0)
    wan.model.model_config.unet_config["dim"] = 1536  # the width the host detects for Wan 2.1 T2V 1.3B (not run)
    s = node.execute(wan, **params(node)).args[0].model_options["transformer_options"]["tcpade"]
    assert s.cfg.coefficients == tables.COEFFICIENTS["wan2.1 t2v 1.3B"]
    s = (
        node.execute(wan, **params(node, coefficients="wan2.1 i2v 720p"))
        .args[0]
        .model_options["transformer_options"]["tcpade"]
    )
    assert s.cfg.coefficients == tables.COEFFICIENTS["wan2.1 i2v 720p"]
    s = node.execute(flux, **params(node, coefficients="custom", custom_coefficients="2, 0.5")).args[0]
    assert s.model_options["transformer_options"]["tcpade"].cfg.coefficients == (2.0, 0.5)
    conf = lambda **uc: type("C", (), {"unet_config": {"image_model": "wan2.1", **uc}})()
    assert tables.wan_table(conf(model_type="t2v", dim=5120)) == "wan2.1 t2v 14B"
    assert tables.wan_table(conf(model_type="t2v", dim=1536)) == "wan2.1 t2v 1.3B"
    assert tables.wan_table(conf(model_type="i2v"), (1, 16, 21, 90, 160)) == "wan2.1 i2v 720p"
    assert tables.wan_table(conf(model_type="i2v"), (1, 16, 21, 60, 104)) == "wan2.1 i2v 480p"
    assert tables.wan_table(conf(model_type="t2v", in_dim=36), None) == "wan2.1 i2v 480p"
    assert tables.wan_table(conf(model_type="vace")) is None


def test_pack_imports_without_comfyui(tmp_path):
    """Outside ComfyUI the package and its host-free modules import and pull in no host module."""
    (tmp_path / "tcpade_pack").symlink_to(H.PACK_ROOT, target_is_directory=True)
    code = textwrap.dedent("""
        import sys
        import tcpade_pack, tcpade_pack.nodes.driver, tcpade_pack.nodes.families, tcpade_pack.nodes.teacache_tables
        import tcpade_pack.nodes.patcher
        bad = sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'nodes', 'server', 'folder_paths'))
        assert not bad, bad
        assert tcpade_pack.WEB_DIRECTORY == './web'
        print('OK')
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr[-2000:]
