"""Where people's graphs are (#10): LoRA, GGUF, torch.compile, 16-bit and fp8 weights, on tiny real host models.

Every item runs the cache nodes through the host's own nodes and sampler (``comfy.sample``) and checks
(a) never-skip settings reproduce the run without a cache (bit for bit, or to the stated tolerance where
compile forbids bit-exactness), (b) the steps the report says were skipped are exactly the steps whose
block stack did not run (first- and last-block counters, as in test_host_sampling.py).

GGUF needs the ComfyUI-GGUF custom node (city96/ComfyUI-GGUF) in the host's ``custom_nodes`` and the
``gguf`` package; without them those tests skip with one loud line.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import torch

import host_util as H

H.require_host()

TINY_CLIP = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, projection_dim=32)
# a Wan 2.1 the host's loaders detect from its state dict (comfy.model_detection: 128-wide heads, freq_dim 256,
# text_dim 4096), small enough for CPU: UNETLoader (fp8) and ComfyUI-GGUF load it from a file
WAN_FILE_CONFIG = dict(H.WAN_CONFIG, dim=256, ffn_dim=512, num_heads=2, freq_dim=256, text_dim=4096, text_len=512)
SKIP_STRIP = "##..#..."  # TC-Padé, theta 0, interval 4, 8 steps (H.SKIPPING["tcpade"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def pack():
    return H.load_pack()


@pytest.fixture(scope="module")
def models():
    return {k: H.tiny_model(k) for k in ("flux", "wan")}


@pytest.fixture
def model_folder(tmp_path, monkeypatch):
    """A temporary models folder the host's loaders read ``loras`` and ``diffusion_models`` from."""
    import folder_paths

    for name in ("loras", "diffusion_models"):
        monkeypatch.setitem(folder_paths.folder_names_and_paths, name, ([str(tmp_path)], {".safetensors", ".gguf"}))
    return tmp_path


def check_skips(model, out, first, strip=SKIP_STRIP):
    """The report's strip is ``strip`` and the stack ran exactly on the computed steps, at their sigmas."""
    rep = H.settings_of(model).last_report
    assert rep.strip() == strip
    if H.pack_module("tcpade_core.methods").leading_blocks(H.settings_of(model).cfg):  # block 0 runs every step
        assert first.calls == len(rep.steps)
    else:
        assert first.calls == rep.computed
        assert first.sigmas == H.settings_of(model).last_run.counters.computed_sigmas
    assert torch.isfinite(out).all()
    return rep


def seeded_(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_((torch.randn(p.shape, generator=g) * (0.05 if p.ndim > 1 else 0.02)).to(p.dtype))


def host_model(kind: str, config: dict, weight_dtype=torch.float32, manual_cast=None, seed: int = 0):
    """A host model (``comfy.supported_models``) with ``config``, weights stored in ``weight_dtype`` and computed
    in ``manual_cast`` (None: in the weight dtype), seeded, in a ModelPatcher."""
    h = H.host()
    sm = h.comfy.supported_models
    mc = {"flux": sm.Flux, "wan": sm.WAN21_T2V}[kind](H.host_config(kind, config))
    mc.set_inference_dtype(weight_dtype, manual_cast)
    m = mc.get_model({})
    seeded_(m, seed)
    return H.patcher(m)


def wan_file_conds(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 8, 4096, generator=g), {}]], [[torch.randn(1, 8, 4096, generator=g), {}]]


# ============================================================================ 1. LoRA

LORA_TARGETS = {  # first block of the stack, last block, and a layer outside the stack
    "flux": ["double_blocks.0.img_attn.qkv", "single_blocks.{last}.linear1", "final_layer.linear"],
    "wan": ["blocks.0.self_attn.q", "blocks.{last}.ffn.2", "head.head"],
}
CLIP_TARGETS = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc2"]


def lora_tensors(sd: dict, names, key_of, fmt: str, seed: int, rank: int = 4) -> dict:
    """LoRA tensors for the 2-D weights ``names`` of the state dict ``sd``, in one of the formats the host's
    LoRA loader maps (comfy/weight_adapter/lora.py): ``kohya`` (``.lora_up/.lora_down.weight`` + ``.alpha``)
    or ``peft`` (``.lora_B/.lora_A.weight``)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in names:
        w = sd[name + ".weight"]
        o, i = getattr(w, "tensor_shape", None) or w.shape  # a GGUF tensor: its logical, not its byte, shape
        up, down = torch.randn(o, rank, generator=g) * 0.1, torch.randn(rank, i, generator=g) * 0.1
        key = key_of(name)
        if fmt == "kohya":
            out.update(
                {
                    f"{key}.lora_up.weight": up,
                    f"{key}.lora_down.weight": down,
                    f"{key}.alpha": torch.tensor(float(rank)),
                }
            )
        else:
            out.update({f"{key}.lora_B.weight": up, f"{key}.lora_A.weight": down})
    return out


def model_lora(model, kind: str, seed: int = 3) -> tuple[dict, set]:
    """A LoRA for ``model``: Flux in the kohya format (``lora_unet_...``), Wan in the peft format
    (``diffusion_model.....lora_A``), as the LoRAs of each family are usually published. Returns the tensors and the
    model keys the host must map them to."""
    dm = model.get_model_object("diffusion_model")
    last = len(dm.single_blocks) - 1 if kind == "flux" else len(dm.blocks) - 1
    names = [n.format(last=last) for n in LORA_TARGETS[kind]]
    sd = dict(dm.named_parameters())  # (ComfyUI-GGUF's state_dict() gives quantised weights without their shape)
    if kind == "flux":
        t = lora_tensors(sd, names, lambda n: "lora_unet_" + n.replace(".", "_"), "kohya", seed)
    else:
        t = lora_tensors(sd, names, lambda n: "diffusion_model." + n, "peft", seed)
    return t, {f"diffusion_model.{n}.weight" for n in names}


def clip_lora(clip, seed: int = 4) -> tuple[dict, set]:
    sd = clip.cond_stage_model.clip_l.transformer.state_dict()
    t = lora_tensors(sd, CLIP_TARGETS, lambda n: "lora_te_" + n.replace(".", "_"), "kohya", seed)
    return t, {f"clip_l.transformer.{n}.weight" for n in CLIP_TARGETS}


def save_lora(folder, name: str, tensors: dict) -> str:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / name))
    return name


def tiny_clip(seed: int = 7):
    """A real host CLIP (``comfy.sd.CLIP``: SD1 tokenizer, CLIP-L text model) shrunk through the host's own
    ``clip_l_model_config`` option to width 32 / 2 layers, seeded: its hidden states fit the tiny Wan (text_dim 32)."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    clip = comfy.sd.CLIP(target, model_options={"clip_l_model_config": dict(TINY_CLIP)})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(clip.cond_stage_model.named_parameters()):
            p.copy_(
                torch.randn(p.shape, generator=g) * (0.05 if p.ndim > 1 else 0.02)
                + (1.0 if "layer_norm" in name and name.endswith(".weight") else 0.0)
            )
    return clip


def assert_lora_maps(tensors: dict, key_map: dict, want: set):
    """Every LoRA tensor maps onto a model weight (the host drops unmapped keys with only a log line)."""
    import comfy.lora

    assert set(comfy.lora.load_lora(tensors, key_map)) == want


@pytest.mark.parametrize("kind", ["flux", "wan"])
def test_lora_model_only_before_and_after_the_cache(models, model_folder, kind):
    import comfy.lora

    loader = H.host().nodes.LoraLoaderModelOnly()
    base = models[kind]
    tensors, want = model_lora(base, kind)
    assert_lora_maps(tensors, comfy.lora.model_lora_keys_unet(base.model, {}), want)
    name = save_lora(model_folder, f"tiny_{kind}.safetensors", tensors)
    lora = lambda m: loader.load_lora_model_only(m, name, 1.0)[0]

    plain = H.sample(base, kind, steps=8)
    ref = H.sample(lora(base), kind, steps=8)
    assert (ref - plain).abs().max() > 0.05 * plain.abs().max()  # the LoRA changes the result

    nid, kw = H.NEVER_SKIP["tcpade"]
    for m in (
        H.attach(nid, lora(base), **kw),
        lora(H.attach(nid, base, **kw)),
    ):  # cache(lora(model)), lora(cache(model))
        assert torch.equal(H.sample(m, kind, steps=8), ref)
        assert H.settings_of(m).last_report.computed == 8

    nid, kw, strip = H.SKIPPING["tcpade"]
    outs = []
    for order in ("cache(lora)", "lora(cache)"):
        counted, first, _ = H.with_counters(base, kind)
        m = H.attach(nid, lora(counted), **kw) if order == "cache(lora)" else lora(H.attach(nid, counted, **kw))
        outs.append(H.sample(m, kind, steps=8))
        check_skips(m, outs[-1], first, strip)
    assert torch.equal(outs[0], outs[1])
    no_lora = H.sample(H.attach(nid, base, **kw), kind, steps=8)
    assert (outs[0] - no_lora).abs().max() > 0.05 * no_lora.abs().max()  # the skipped steps follow the LoRA'd model


def test_lora_loader_model_and_clip_before_and_after_the_cache(model_folder):
    """``LoraLoader`` (model + CLIP) on a tiny Wan (text_dim 32) with a tiny host CLIP, both graph orders."""
    import comfy.lora

    h = H.host()
    kind = "wan"
    base = H.tiny_model(kind)
    clip = tiny_clip()
    mt, mwant = model_lora(base, kind)
    ct, cwant = clip_lora(clip)
    assert_lora_maps(mt, comfy.lora.model_lora_keys_unet(base.model, {}), mwant)
    assert_lora_maps(ct, comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {}), cwant)
    name = save_lora(model_folder, "tiny_wan_te.safetensors", {**mt, **ct})
    loader, encode = h.nodes.LoraLoader(), h.nodes.CLIPTextEncode()

    def graph(model):
        """LoraLoader -> CLIPTextEncode (positive, negative) -> the sampler."""
        m, c = loader.load_lora(model, clip, name, 1.0, 1.0)
        pos, neg = encode.encode(c, "a red cat on a blue chair")[0], encode.encode(c, "blurry")[0]
        return m, pos, neg

    m0, pos, neg = graph(base)
    plain_pos = encode.encode(clip, "a red cat on a blue chair")[0]
    assert pos[0][0].shape == (1, 77, 32)
    assert (pos[0][0] - plain_pos[0][0]).abs().max() > 1e-3  # the CLIP LoRA is active
    ref = H.sample(m0, kind, steps=8, positive=pos, negative=neg)
    plain_model = H.sample(base, kind, steps=8, positive=pos, negative=neg)
    assert (ref - plain_model).abs().max() > 0.05 * plain_model.abs().max()  # so is the model LoRA

    nid, kw = H.NEVER_SKIP["tcpade"]
    m1 = H.attach(nid, m0, **kw)  # cache(LoraLoader(model))
    m2, p2, n2 = graph(H.attach(nid, base, **kw))  # LoraLoader(cache(model))
    assert torch.equal(H.sample(m1, kind, steps=8, positive=pos, negative=neg), ref)
    assert torch.equal(H.sample(m2, kind, steps=8, positive=p2, negative=n2), ref)

    nid, kw, strip = H.SKIPPING["tcpade"]
    counted, first, _ = H.with_counters(base, kind)
    ma = H.attach(nid, graph(counted)[0], **kw)
    a = H.sample(ma, kind, steps=8, positive=pos, negative=neg)
    check_skips(ma, a, first, strip)
    counted, first, _ = H.with_counters(base, kind)
    mb = graph(H.attach(nid, counted, **kw))[0]
    b = H.sample(mb, kind, steps=8, positive=pos, negative=neg)
    check_skips(mb, b, first, strip)
    assert torch.equal(a, b)


# ============================================================================ 2. GGUF (ComfyUI-GGUF)

GGUF_NODE = "ComfyUI-GGUF"


def gguf_or_skip():
    """ComfyUI-GGUF's node mappings, loaded with the host's loader; skip with one loud line without it."""
    h = H.host()
    path = h.path / "custom_nodes" / GGUF_NODE
    if not (path / "nodes.py").is_file():
        pytest.skip(
            f"GGUF TESTS SKIPPED: no {GGUF_NODE} at {path} "
            f"(git clone https://github.com/city96/ComfyUI-GGUF there and pip install gguf)"
        )
    try:
        import gguf  # noqa: F401
    except ImportError:
        pytest.skip("GGUF TESTS SKIPPED: the gguf package is not installed (pip install gguf)")
    if "UnetLoaderGGUF" not in h.nodes.NODE_CLASS_MAPPINGS:
        assert asyncio.run(h.nodes.load_custom_node(str(path))), f"the host could not load {path}"
    return h.nodes.NODE_CLASS_MAPPINGS


def q4k_blocks(shape, rng):
    """Q4_K blocks (256 weights in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of 4-bit
    codes) with seeded scales and codes. The gguf package reads K-quants but cannot write them (no
    ``quantize_blocks`` for Q2_K..Q6_K), so the file holds a random Q4_K model rather than a quantised copy of
    the float one: weight = d * scale * code - dmin * min, std about 0.05."""
    import numpy as np

    n = shape[0] * shape[1] // 256
    b = rng.integers(0, 256, (n, 144), dtype=np.uint8)
    b[:, 0:2] = np.full(n, 2e-4, np.float16).view(np.uint8).reshape(n, 2)
    b[:, 2:4] = np.full(n, 1.5e-3, np.float16).view(np.uint8).reshape(n, 2)
    return b.reshape(shape[0], -1)


def write_gguf(path, sd: dict, qtype: str) -> dict:
    """A GGUF file of the diffusion-model state dict ``sd`` as ComfyUI-GGUF's converter lays it out: 2-D weights
    with more than 1024 values quantised (``Q8_0``: ``gguf.quants.quantize``; ``Q4_K``: :func:`q4k_blocks`), the
    rest float32, a 5-D tensor stored 4-D with its ``comfy.gguf.orig_shape``. Returns the count per type."""
    import gguf
    import numpy as np

    qt = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[qt][0]
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch="wan")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    counts: dict = {}
    for name, t in sorted(sd.items()):
        a = t.detach().float().numpy()
        quant = a.ndim == 2 and name.endswith(".weight") and a.size > 1024 and a.shape[-1] % block == 0
        if quant:
            data = gguf.quants.quantize(a, qt) if qtype == "Q8_0" else q4k_blocks(a.shape, rng)
            w.add_tensor(name, data, raw_dtype=qt)
        else:
            if a.ndim > 4:
                w.add_array(f"comfy.gguf.orig_shape.{name}", list(a.shape))
                a = a.reshape(*a.shape[:3], -1)
            w.add_tensor(name, a)
        counts[qtype if quant else "F32"] = counts.get(qtype if quant else "F32", 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return counts


@pytest.fixture(scope="module")
def gguf_models(tmp_path_factory):
    """{"fp32": the float model, "Q8_0" / "Q4_K": the same architecture loaded by UnetLoaderGGUF from a file}."""
    mappings = gguf_or_skip()
    import folder_paths

    folder = tmp_path_factory.mktemp("gguf")
    fp32 = host_model("wan", WAN_FILE_CONFIG)
    sd = fp32.get_model_object("diffusion_model").state_dict()
    out = {"fp32": fp32, "counts": {}}
    saved = folder_paths.folder_names_and_paths.get("diffusion_models")
    folder_paths.folder_names_and_paths["diffusion_models"] = ([str(folder)], {".gguf"})
    try:
        for q in ("Q8_0", "Q4_K"):
            out["counts"][q] = write_gguf(folder / f"tiny_wan_{q}.gguf", sd, q)
            out[q] = mappings["UnetLoaderGGUF"]().load_unet(f"tiny_wan_{q}.gguf")[0]
    finally:
        folder_paths.folder_names_and_paths["diffusion_models"] = saved
    return out


def qtypes(model) -> dict:
    out: dict = {}
    for _, p in model.get_model_object("diffusion_model").named_parameters():
        k = getattr(getattr(p, "tensor_type", None), "name", None) or str(p.dtype)
        out[k] = out.get(k, 0) + 1
    return out


def gguf_files_load_as_written(gguf_models):
    import gguf

    c = gguf_models["counts"]
    assert c == {"Q8_0": {"F32": 60, "Q8_0": 36}, "Q4_K": {"F32": 60, "Q4_K": 36}}
    for q in ("Q8_0", "Q4_K"):
        m = gguf_models[q]
        assert (
            type(m).__name__ == "GGUFModelPatcher"
            and type(m.get_model_object("diffusion_model")).__name__ == "WanModel"
        )
        assert qtypes(m)[q] == 36  # every quantised weight arrived quantised
    # ComfyUI-GGUF dequantises the hand-made Q4_K blocks as the gguf package's reference does
    dq = sys.modules[str(H.host().path / "custom_nodes" / GGUF_NODE).replace(".", "_x_") + ".dequant"]
    w = gguf_models["Q4_K"].get_model_object("diffusion_model").blocks[0].self_attn.q.weight
    ref = gguf.quants.dequantize(torch.Tensor(w.data).numpy(), gguf.GGMLQuantizationType.Q4_K)
    got = dq.dequantize_tensor(w, dtype=torch.float32)
    # (ComfyUI-GGUF forms d * scale and dmin * min in f16: equal up to that rounding, measured 2e-4 on weights of
    # std 0.05)
    assert got.shape == (256, 256) and torch.allclose(got.float(), torch.from_numpy(ref).float(), rtol=0, atol=5e-4)
    assert 0.02 < float(got.std()) < 0.2


def gguf_cache_node(gguf_models, qtype: str, method: str):
    pos, neg = wan_file_conds()
    run = lambda m: H.sample(m, "wan", steps=8, positive=pos, negative=neg)
    base = gguf_models[qtype]
    ref = run(base)
    if qtype == "Q8_0" and method == "tcpade":
        # quantisation, not the cache: Q8_0 stays within 2 % of the float model (measured 0.7 %)
        fp = run(gguf_models["fp32"])
        assert (ref - fp).abs().max() <= 0.02 * fp.abs().max()
    nid, kw = H.NEVER_SKIP[method]
    m = H.attach(nid, base, **kw)
    assert torch.equal(run(m), ref)
    assert H.settings_of(m).last_report.computed == 8
    nid, kw, strip = H.SKIPPING[method]
    counted, first, _ = H.with_counters(base, "wan")
    m = H.attach(nid, counted, **kw)
    out = run(m)
    check_skips(m, out, first, strip)
    assert not torch.equal(out, ref) and (out - ref).abs().max() < 0.5 * ref.abs().max()


def gguf_with_lora_both_orders(gguf_models, model_folder):
    """ComfyUI-GGUF applies LoRA patches to quantised weights on the fly; the cache sits before or after it."""
    pos, neg = wan_file_conds()
    run = lambda m: H.sample(m, "wan", steps=8, positive=pos, negative=neg)
    base = gguf_models["Q8_0"]
    tensors, _ = model_lora(base, "wan")
    name = save_lora(model_folder, "tiny_wan_gguf.safetensors", tensors)
    lora = lambda m: H.host().nodes.LoraLoaderModelOnly().load_lora_model_only(m, name, 1.0)[0]
    ref = run(lora(base))
    assert (ref - run(base)).abs().max() > 0.01 * ref.abs().max()
    nid, kw = H.NEVER_SKIP["tcpade"]
    assert torch.equal(run(H.attach(nid, lora(base), **kw)), ref)
    assert torch.equal(run(lora(H.attach(nid, base, **kw))), ref)
    nid, kw, strip = H.SKIPPING["tcpade"]
    outs = []
    for order in ("cache(lora)", "lora(cache)"):
        counted, first, _ = H.with_counters(base, "wan")
        m = H.attach(nid, lora(counted), **kw) if order == "cache(lora)" else lora(H.attach(nid, counted, **kw))
        outs.append(run(m))
        check_skips(m, outs[-1], first, strip)
    assert torch.equal(outs[0], outs[1])


def test_gguf(gguf_models, model_folder):
    """UnetLoaderGGUF (ComfyUI-GGUF) models, Q8_0 and Q4_K: every cache node, then a LoRA before and after the
    cache. One test, so that a missing ComfyUI-GGUF is one skip line; the parts say which one failed."""
    gguf_files_load_as_written(gguf_models)
    for qtype in ("Q8_0", "Q4_K"):
        for method in H.SKIPPING:
            try:
                gguf_cache_node(gguf_models, qtype, method)
            except AssertionError as e:
                raise AssertionError(f"GGUF {qtype}, {method}: {e}") from e
    gguf_with_lora_both_orders(gguf_models, model_folder)


# ============================================================================ 3. torch.compile (the host's node)


def _graphs() -> tuple:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], counters["frames"]["total"]


def pytorch_attention(model):
    """``model`` with the host's PyTorch (SDPA) attention, which ComfyUI uses on GPUs. On a CPU it picks
    sub-quadratic attention, which reads the free RAM through psutil: a graph break for fullgraph, and under
    torch.compile a guard on that number, so the compiled host model recompiles itself whenever free RAM
    changes. The attention override is the host's own ``transformer_options`` hook."""
    from comfy.ldm.modules.attention import attention_pytorch

    m = model.clone()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = lambda func, *a, **k: (
        attention_pytorch(*a, **k)
    )
    return m


def compiled_versions(fn) -> int:
    """How many compiled versions (Dynamo cache entries) the code of ``fn`` holds."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    return len(_debug_get_cache_entry_list(fn.__code__))


@pytest.mark.slow
def test_torch_compile_node():
    """The host's TorchCompileModel (inductor) with the cache node before or after it: never-skip runs equal the
    compiled model without a cache bit for bit; skipping runs agree with eager; what the cache makes Dynamo
    compile is compiled once (one compiled block per kind of block, not per block; nothing new per step,
    decision or run)."""
    from comfy_extras.nodes_torch_compile import TorchCompileModel

    kind = "flux"
    # a fresh model: the host's LoRA patching leaves the weights it patched with requires_grad=False, and Dynamo
    # guards on requires_grad, so after the LoRA tests the shared models' blocks would compile one more version each
    base = pytorch_attention(H.tiny_model(kind))
    patcher = H.pack_module("nodes.patcher")
    eager = H.sample(base, kind, steps=8)
    nid, kw, strip = H.SKIPPING["tcpade"]
    eager_skip = H.sample(H.attach(nid, base, **kw), kind, steps=8)

    compiled = TorchCompileModel.execute(base, "inductor").args[0]
    ref = H.sample(compiled, kind, steps=8)  # compiles (the slow part)
    rel = H.tol(H.compute_dtype(base), 1e-4)  # float32 1e-4; 16-bit: its floor (H.HALF_TOL)
    assert (ref - eager).abs().max() <= rel * eager.abs().max()  # inductor vs eager: float reordering only

    nid_n, kw_n = H.NEVER_SKIP["tcpade"]
    # cache(compile(model)), compile(cache(model)): bit for bit in float32. The cached model compiles its own graphs
    # (split where the cache decides), and in 16 bits where inductor's fused kernels round to the storage dtype
    # moves with the split, so there the bound is the dtype's floor (H.HALF_TOL)
    for m in (
        H.attach(nid_n, compiled, **kw_n),
        TorchCompileModel.execute(H.attach(nid_n, base, **kw_n), "inductor").args[0],
    ):
        H.assert_close(H.sample(m, kind, steps=8), ref, H.compute_dtype(base), what="never-skip under compile")
    # the stack is split where the cache decides (before the first block, after the last one), so the cached model
    # compiles its own graphs, once: the blocks run as one compiled frame per kind of block (double, single)
    assert compiled_versions(patcher._run_block) == 2
    g0 = _graphs()
    skip = H.attach(nid, compiled, **kw)
    out = H.sample(skip, kind, steps=8)
    assert H.settings_of(skip).last_report.strip() == strip
    assert (out - eager_skip).abs().max() <= rel * eager_skip.abs().max()
    assert _graphs()[0] == g0[0]  # skipped steps and a new run: no new graph
    H.sample(skip, kind, steps=12)  # a new schedule length: the host's sample_sigmas guard recompiles once (the
    g1 = _graphs()  # frames that carry transformer_options), then treats the length as dynamic
    assert g1[0] - g0[0] <= 1 and H.settings_of(skip).last_report.strip() == "##..#...#..."
    H.sample(skip, kind, steps=20)
    assert _graphs()[0] == g1[0] and compiled_versions(patcher._run_block) == 2

    counted, first, _ = H.with_counters(compiled, kind)  # the skipped steps really skipped the stack
    m = H.attach(nid, counted, **kw)
    check_skips(m, H.sample(m, kind, steps=8), first, strip)


def test_torch_compile_fullgraph_falls_back_to_eager(models, caplog):
    """fullgraph=True (the host's set_torch_compile_wrapper, as other packs call it) cannot compile through the
    cache's per-step decisions: one clear line, the run goes on eager and gives the eager result."""
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    kind = "flux"
    base = pytorch_attention(models[kind])  # so that the model alone compiles with fullgraph=True
    eager = H.sample(base, kind, steps=8)
    compiled = base.clone()
    set_torch_compile_wrapper(compiled, backend="eager", fullgraph=True)
    assert torch.allclose(H.sample(compiled, kind, steps=8), eager, atol=1e-5)  # the model alone compiles

    nid, kw = H.NEVER_SKIP["tcpade"]
    m = H.attach(nid, compiled, **kw)
    with caplog.at_level(logging.WARNING, logger="tcpade"):
        out = H.sample(m, kind, steps=8)
    lines = [r.getMessage() for r in caplog.records if r.name == "tcpade"]
    assert len(lines) == 1 and "torch.compile (fullgraph=True) cannot compile" in lines[0] and "runs eager" in lines[0]
    assert torch.equal(out, eager)
    assert H.settings_of(m).last_report.computed == 8

    nid, kw, strip = H.SKIPPING["tcpade"]
    counted, first, _ = H.with_counters(compiled, kind)
    m = H.attach(nid, counted, **kw)
    out = H.sample(m, kind, steps=8)
    check_skips(m, out, first, strip)
    assert torch.equal(out, H.sample(H.attach(nid, base, **kw), kind, steps=8))


# ============================================================================ 4. fp16 / bf16 / fp8 weights

DTYPE_CASES = {  # weights, compute (manual cast; None: the weights' dtype), as the host sets a model up
    "bf16": (torch.bfloat16, None),  # a bf16 model on a GPU
    "fp16": (torch.float16, None),
    "fp8_e4m3fn->bf16": (torch.float8_e4m3fn, torch.bfloat16),  # fp8 weights where the GPU cannot matmul fp8
}


def stack_width_tokens(kind: str, size: int = 8) -> int:
    """Values of one stream's block-stack tensor (image tokens x width) for the tiny models at ``size``."""
    if kind == "flux":
        return (size // 2) ** 2 * H.FLUX_CONFIG["hidden_size"]
    return 2 * (size // 2) ** 2 * H.WAN_CONFIG["dim"]


def run_with_stack_probe(model, kind: str, **kw):
    """Sample, recording dtype and finiteness of the block-stack output where the model reads it (the final layer)."""
    dm = model.get_model_object("diffusion_model")
    head = dm.final_layer if kind == "flux" else dm.head
    seen = []
    hook = head.register_forward_pre_hook(lambda mod, a: seen.append((a[0].dtype, bool(torch.isfinite(a[0]).all()))))
    try:
        out = H.sample(model, kind, **kw)
    finally:
        hook.remove()
    return out, seen


def expected_cache_values(kind: str, method: str) -> int:
    """What each node keeps, in values, at the peak of the SKIPPING runs (2 streams: cond and uncond)."""
    n = stack_width_tokens(kind)
    return {
        "tcpade": 2 * 6 * n,  # 3 stack outputs (predictor) + 3 residuals (TSI gate) per stream
        "taylorseer": 2 * 2 * n,  # order + 1 = 2 Taylor factors per stream
        "tracache": 2 * 3 * n,  # max_order + 1 = 3 stack outputs per stream
        # 1 residual per stream + the lead stream's gate input: Flux's modulated image tokens, Wan's e0 (6 x width)
        "teacache": 2 * n + (n if kind == "flux" else 6 * H.WAN_CONFIG["dim"]),
        "magcache": 2 * n,  # 1 residual per stream; its gate keeps three numbers
        # 2 Taylor factors of the residual per stream (the default TaylorSeer calibrator, order 1) + the lead
        # stream's leading-block residuals of this step and of its last computed one
        "first_block": 2 * 2 * n + 2 * n,
        "spectrum": 2 * 4 * n,  # the 4 computed stack outputs of its schedule (0, 1, 3, 5) per stream
    }[method]


@pytest.mark.parametrize("case", list(DTYPE_CASES))
@pytest.mark.parametrize("kind", ["flux", "wan"])
def test_16bit_and_fp8_weights(kind, case):
    weight, cast = DTYPE_CASES[case]
    base = host_model(kind, H.FLUX_CONFIG if kind == "flux" else H.WAN_CONFIG, weight, cast)
    act = cast or weight
    assert {p.dtype for n, p in base.model.diffusion_model.named_parameters() if p.ndim == 2} == {weight}
    ref = H.sample(base, kind, steps=8)
    for method in H.SKIPPING:
        nid, kw = H.NEVER_SKIP[method]
        assert torch.equal(H.sample(H.attach(nid, base, **kw), kind, steps=8), ref), method

        nid, kw, strip = H.SKIPPING[method]
        counted, first, _ = H.with_counters(base, kind)
        m = H.attach(nid, counted, **kw)
        out, seen = run_with_stack_probe(m, kind, steps=8)
        rep = check_skips(m, out, first, strip)
        # the stack output keeps the model's compute dtype on computed and skipped steps alike, never NaN/Inf
        assert len(seen) == 8 and all(dt == act and ok for dt, ok in seen), (method, seen)
        # the cache stores in that dtype (its maths runs in float32: test_core), and says so in its byte count
        assert rep.cache_bytes == expected_cache_values(kind, method) * torch.tensor([], dtype=act).element_size(), (
            method
        )
        assert (out.float() - ref.float()).abs().max() < 0.5 * ref.float().abs().max()


def test_fp8_weights_through_the_host_unet_loader(model_folder):
    """UNETLoader(weight_dtype="fp8_e4m3fn") as a user picks it: the host stores fp8 and computes in what the
    model's load device can (float32 on a CPU, float16 on a CUDA GPU: asked from the host, not assumed); every
    cache node stores in that compute dtype."""
    from safetensors.torch import save_file

    h = H.host()
    fp32 = host_model("wan", WAN_FILE_CONFIG)
    save_file(
        {k: v.contiguous() for k, v in fp32.get_model_object("diffusion_model").state_dict().items()},
        str(model_folder / "tiny_wan.safetensors"),
    )
    base = h.nodes.UNETLoader().load_unet("tiny_wan.safetensors", "fp8_e4m3fn")[0]
    dm = base.get_model_object("diffusion_model")
    assert dm.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    act = base.model.manual_cast_dtype or base.model.get_dtype()
    assert act == h.comfy.model_management.unet_manual_cast(
        torch.float8_e4m3fn, base.load_device, base.model.model_config.supported_inference_dtypes
    )
    pos, neg = wan_file_conds()
    run = lambda m: H.sample(m, "wan", steps=8, positive=pos, negative=neg)
    ref = run(base)
    fp = run(fp32)
    assert (ref - fp).abs().max() <= 0.1 * fp.abs().max()  # fp8 weights: close to the float model, not equal
    for method in H.SKIPPING:
        nid, kw = H.NEVER_SKIP[method]
        assert torch.equal(run(H.attach(nid, base, **kw)), ref), method
        nid, kw, strip = H.SKIPPING[method]
        counted, first, _ = H.with_counters(base, "wan")
        m = H.attach(nid, counted, **kw)
        out, seen = run_with_stack_probe(m, "wan", steps=8, positive=pos, negative=neg)
        check_skips(m, out, first, strip)
        assert all(dt == act and ok for dt, ok in seen)
