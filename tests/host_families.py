"""Tiny real host models of every DiT family the pack targets, for the host tests (CPU, a second or two each).

Like :mod:`host_util` (whose host import, ``patcher``, ``DEVICE`` and ``DTYPE`` it reuses), nothing here is
copied from ComfyUI: each model is the host's own ``comfy.supported_models.<X>(config).get_model({})`` with a
tiny config and seeded normal weights, sampled through the host's ``comfy.sample.sample``. The configs adapt to
the running host by asking it (a key is added only where the host's params dataclass has that field), so one
config serves ComfyUI v0.3.64 and 0.33.0.

API::

    KINDS_ALL                       every kind this module knows
    available_kinds()               the kinds the running host can build (hasattr(comfy.supported_models, X))
    tiny_model(kind, seed=0)        a ModelPatcher of a real host model, seeded weights
    conds(kind, seed=0, batch=1)    (positive, negative) conditioning lists for the host's sampler
    latent(kind, batch=1)           the empty latent the host's sampler takes (LTXAV: a NestedTensor (video, audio))
    sample(model, kind, ...)        the host's comfy.sample.sample output (LTXAV: a NestedTensor, see as_tensors)
    as_tensors(x)                   [tensor] or the tensors of a NestedTensor
    stack_keys(kind, model)         the ("double_block"|"single_block", i) keys of patches_replace["dit"] the model
                                    honours, in execution order ([] for zimage)
    block_stream_key(kind)          "img", or "x" for kandinsky5: the args key of the stream a dit patch gets
    config(kind)                    the tiny unet config used on the running host

What a ``patches_replace["dit"]`` patch receives per family, ``patch(args, extra)`` with
``extra["original_block"](args)`` running the block (checked with a counting patch on ComfyUI v0.3.64 and
0.33.0). Streams are ``(batch, tokens, width)`` tensors unless said otherwise; the patch returns what
``original_block`` returns.

- flux / chroma / flux2: double ``{img, txt, vec, pe, attn_mask, transformer_options}`` -> ``{"img", "txt"}``;
  single ``{img, vec, pe, attn_mask, transformer_options}`` with ``img`` = cat(txt, img), text first (0.33.0 also
  sets ``transformer_options["img_slice"] = [txt_len, txt_len + img_len]``) -> ``{"img"}``. ``vec``: a tensor
  (flux); nested tuples of modulations (chroma: ``((m1, m2), (m1, m2))`` of ChromaModulationOut in the double
  blocks, one in the single blocks; flux2, global modulation: ``((img_m1, img_m2), (txt_m1, txt_m2))`` of
  ModulationOut, one ModulationOut in the single blocks). Flux 2 pads the text to 512 tokens.
- hunyuan_video / hunyuan_video15: double ``{img, txt, vec, pe, attention_mask, modulation_dims_img,
  modulation_dims_txt, transformer_options}`` -> ``{"img", "txt"}``; single ``{img, vec, pe, attention_mask,
  modulation_dims, transformer_options}``: 0.33.0 cat(txt, img) with ``img_slice``, v0.3.64 cat(img, txt)
  without ``img_slice`` -> ``{"img"}``. HunyuanVideo 1.5 has double blocks only.
- wan / qwen: ``{img, txt, vec, pe, transformer_options}`` -> ``{"img"}`` (qwen: ``{"img", "txt"}``).
- ltxv: ``{img, txt, attention_mask, vec, pe, transformer_options, ...}`` -> ``{"img"}``.
- ltxav: ``img`` is a tuple (video tokens, audio tokens) -> return ``{"img": (video, audio)}``.
- kandinsky5: ``{x, context, time_embed, freqs, transformer_options}`` -> the patch must return
  ``{"x": tensor}``. In 0.33.0 ``extra["original_block"]`` is broken: it calls ``block(x=..., context=...)``
  but ``TransformerDecoderBlock.forward(visual_embed, text_embed, time_embed, freqs, transformer_options)``
  raises TypeError; a patch has to call ``dm.visual_transformer_blocks[i](args["x"], args["context"],
  args["time_embed"], freqs=args["freqs"], transformer_options=...)`` itself (that returns a tensor).
- Blocks that update ``args[stream]`` IN PLACE (a patch that keeps the input tensor must clone it): Flux,
  Flux 2, HunyuanVideo 1.0 / 1.5 double and single blocks in 0.33.0 (v0.3.64: single blocks only), Chroma and
  LTX-Video on both hosts, LTX-2 (both tuple parts). Wan, Qwen-Image and Kandinsky 5 leave it untouched.
- zimage: the NextDiT layers honour no ``dit`` replace patch (only ``patches["double_block"]``, a post-block
  hook that sees the image part of the joint stream).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import host_util as H

KINDS_ALL = (
    "flux",
    "chroma",
    "wan",
    "qwen",
    "flux2",
    "zimage",
    "hunyuan_video",
    "hunyuan_video15",
    "ltxv",
    "ltxav",
    "kandinsky5",
)

# kind -> the comfy.supported_models class that builds it
_SUPPORTED = {
    "flux": "Flux",
    "chroma": "Chroma",
    "wan": "WAN21_T2V",
    "qwen": "QwenImage",
    "flux2": "Flux2",
    "zimage": "ZImage",
    "hunyuan_video": "HunyuanVideo",
    "hunyuan_video15": "HunyuanVideo15",
    "ltxv": "LTXV",
    "ltxav": "LTXAV",
    "kandinsky5": "Kandinsky5",
}

TXT_LEN = 8  # text tokens of the conditioning
TXT_DIM = 32  # their width (every family's context_in_dim / cap_feat_dim / caption_channels)
POOLED = 16  # pooled text width where the family takes one

# the configs (widths TXT_DIM / POOLED match conds()); see _CONFIGS for the keys added per host
# Flux 2 as the host detects it (global modulation, SiLU-gated MLP, no biases, 4 rope axes, 128-channel latent)
_FLUX2 = dict(
    image_model="flux2",
    in_channels=128,
    out_channels=128,
    vec_in_dim=None,
    context_in_dim=TXT_DIM,
    hidden_size=64,
    mlp_ratio=3.0,
    num_heads=2,
    depth=2,
    depth_single_blocks=2,
    axes_dim=[8, 8, 8, 8],
    theta=2000,
    patch_size=1,
    qkv_bias=False,
    guidance_embed=False,
    txt_ids_dims=[3],
    global_modulation=True,
    mlp_silu_act=True,
    ops_bias=False,
    default_ref_method="index",
    ref_index_scale=10.0,
)
# Z-Image: Lumina 2's NextDiT with z_image_modulation, as the host detects a dim-3840 checkpoint (its
# modulation takes a 256-wide timestep embedding: dim >= 256)
_ZIMAGE = dict(
    image_model="lumina2",
    patch_size=2,
    in_channels=16,
    dim=256,
    cap_feat_dim=TXT_DIM,
    n_layers=2,
    n_refiner_layers=1,
    n_heads=4,
    n_kv_heads=4,
    qk_norm=True,
    axes_dims=[16, 24, 24],
    axes_lens=[64, 64, 64],
    rope_theta=256.0,
    ffn_dim_multiplier=8.0 / 3.0,
    multiple_of=16,
    z_image_modulation=True,
    time_scale=1000.0,
)
_HUNYUAN = dict(
    image_model="hunyuan_video",
    in_channels=16,
    out_channels=16,
    patch_size=[1, 2, 2],
    vec_in_dim=POOLED,
    context_in_dim=TXT_DIM,
    hidden_size=64,
    mlp_ratio=2.0,
    num_heads=2,
    depth=2,
    depth_single_blocks=2,
    axes_dim=[8, 12, 12],
    theta=256,
    qkv_bias=True,
    guidance_embed=True,
    byt5=False,
    meanflow=False,
)
_HUNYUAN_EXTRA = dict(use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False)
# HunyuanVideo 1.5: 32-channel latent, patch 1x1x1, image cond + mask concatenated (65 in), double blocks
# only (the released model has no single blocks), no pooled vector, cond-type embedding, a (small) vision
# projection; no ByT5 mapper (its fixed 1472 -> 2048 layers are large)
_HUNYUAN15 = dict(
    _HUNYUAN,
    in_channels=65,
    out_channels=32,
    patch_size=[1, 1, 1],
    vec_in_dim=None,
    guidance_embed=False,
    depth=3,
    depth_single_blocks=0,
)
_HUNYUAN15_EXTRA = dict(use_cond_type_embedding=True, vision_in_dim=16, meanflow_sum=True)
_LTXV = dict(
    image_model="ltxv",
    in_channels=128,
    num_layers=2,
    num_attention_heads=2,
    attention_head_dim=32,
    cross_attention_dim=64,
    caption_channels=TXT_DIM,
)
# LTX-2: video stream 2 heads x 32, audio stream 2 heads x 16; the text connectors' width (heads x head dim)
# is the caption width, so raw TXT_DIM-wide embeddings go through the host's own preprocess_text_embeds
_LTXAV = dict(
    _LTXV,
    image_model="ltxav",
    audio_in_channels=128,
    audio_num_attention_heads=2,
    audio_attention_head_dim=16,
    audio_cross_attention_dim=32,
    connector_attention_head_dim=16,
    connector_num_attention_heads=2,
    connector_num_layers=1,
)
# Kandinsky 5 video: 16-channel latent + 16 image-cond + 1 mask channels, patch 1x2x2 -> 33 * 4 = 132
_KANDINSKY5 = dict(
    image_model="kandinsky5",
    in_visual_dim=16,
    out_visual_dim=16,
    in_text_dim=TXT_DIM,
    in_text_dim2=POOLED,
    time_dim=32,
    model_dim=64,
    ff_dim=128,
    visual_embed_dim=132,
    patch_size=(1, 2, 2),
    num_text_blocks=1,
    num_visual_blocks=3,
    axes_dims=(8, 12, 12),
)

# kind -> (config, params dataclass "module:Class" or None, extra keys added when that dataclass has them); flux,
# chroma, wan and qwen are host_util's tiny models (host_util.host_config)
_CONFIGS: Dict[str, Tuple[dict, Optional[str], dict]] = {
    "flux2": (_FLUX2, None, {}),
    "zimage": (_ZIMAGE, None, {}),
    "hunyuan_video": (_HUNYUAN, "comfy.ldm.hunyuan_video.model:HunyuanVideoParams", _HUNYUAN_EXTRA),
    "hunyuan_video15": (_HUNYUAN15, "comfy.ldm.hunyuan_video.model:HunyuanVideoParams", _HUNYUAN15_EXTRA),
    "ltxv": (_LTXV, None, {}),
    "ltxav": (_LTXAV, None, {}),
    "kandinsky5": (_KANDINSKY5, None, {}),
}

# kind -> latent shape for batch 1 (channels as the host's latent format; video kinds get a time axis)
_LATENT = {
    "flux": (16, 8, 8),
    "chroma": (16, 8, 8),
    "flux2": (128, 8, 8),
    "zimage": (16, 8, 8),
    "wan": (16, 2, 8, 8),
    "qwen": (16, 1, 8, 8),
    "hunyuan_video": (16, 2, 8, 8),
    "hunyuan_video15": (32, 2, 4, 4),
    "kandinsky5": (16, 2, 8, 8),
    "ltxv": (128, 2, 2, 2),
    "ltxav": (128, 2, 2, 2),
}
LTXAV_AUDIO = (8, 4, 16)  # (channels, latent frames, frequency bins) of the LTXAV audio latent (host constants 8, 16)


def _check(kind: str) -> None:
    if kind not in KINDS_ALL:
        raise KeyError(f"unknown kind {kind!r}; one of {KINDS_ALL}")


def available_kinds() -> List[str]:
    """The kinds of :data:`KINDS_ALL` whose supported-model class the running host has."""
    sm = H.host().comfy.supported_models
    return [k for k in KINDS_ALL if hasattr(sm, _SUPPORTED[k])]


def config(kind: str) -> dict:
    """The tiny unet config for ``kind`` on the running host (extra keys only where the host's params have them)."""
    _check(kind)
    if kind not in _CONFIGS:  # flux, chroma, wan, qwen: host_util's tiny models
        return H.host_config(kind)
    cfg, params, extra = _CONFIGS[kind]
    return H.with_host_fields(cfg, params, extra) if params else dict(cfg)


def tiny_model(kind: str, seed: int = 0):
    """A real host model (``comfy.model_base``) of ``kind`` with seeded normal weights, in a ModelPatcher."""
    _check(kind)
    sm = H.host().comfy.supported_models
    if not hasattr(sm, _SUPPORTED[kind]):
        raise RuntimeError(f"this host has no comfy.supported_models.{_SUPPORTED[kind]} ({kind})")
    return H.build_model(getattr(sm, _SUPPORTED[kind]), config(kind), seed)


def conds(kind: str, seed: int = 0, batch: int = 1):
    """(positive, negative): ``[[context (batch, TXT_LEN, TXT_DIM), extras]]`` with the extras the family needs
    (pooled vector, guidance, LTXV's text mask); seeded, positive and negative differ."""
    import torch

    _check(kind)
    g = torch.Generator().manual_seed(1000 + seed)

    def one():
        extra = {}
        if kind in ("flux", "chroma", "hunyuan_video", "kandinsky5"):
            extra["pooled_output"] = torch.randn(batch, POOLED, generator=g)
        elif kind == "hunyuan_video15":
            extra["pooled_output"] = None  # what a text encoder without pooled output hands over
        if kind == "flux":
            extra["guidance"] = 3.5
        if kind == "ltxv":  # its T5 encoder hands a mask over and LTXV's forward requires one
            extra["attention_mask"] = torch.ones(batch, TXT_LEN, dtype=torch.long)  # integer, as the host keeps it
        ctx = torch.randn(batch, TXT_LEN, TXT_DIM, generator=g)
        return [[ctx, extra]]

    return one(), one()


def latent(kind: str, batch: int = 1):
    """The empty latent for a tiny run: a zero tensor, or for LTXAV the host's AV latent, a
    ``comfy.nested_tensor.NestedTensor((video, audio))`` as LTXVConcatAVLatent builds it."""
    import torch

    _check(kind)
    H.host()
    video = torch.zeros((batch,) + _LATENT[kind])
    if kind != "ltxav":
        return video
    import comfy.nested_tensor

    return comfy.nested_tensor.NestedTensor((video, torch.zeros((batch,) + LTXAV_AUDIO)))


def _noise(lat, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    if getattr(lat, "is_nested", False):
        import comfy.nested_tensor

        return comfy.nested_tensor.NestedTensor([torch.randn(t.shape, generator=g) for t in lat.unbind()])
    return torch.randn(lat.shape, generator=g)


def as_tensors(x) -> list:
    """The tensors of a sampler output: ``[x]``, or the streams of a NestedTensor."""
    return list(x.unbind()) if getattr(x, "is_nested", False) else [x]


def sample(
    model,
    kind: str,
    steps: int = 6,
    cfg: float = 2.0,
    sampler: str = "euler",
    scheduler: str = "simple",
    seed: int = 0,
    batch: int = 1,
    positive=None,
    negative=None,
    **kw,
):
    """Sample the empty :func:`latent` through the host's ``comfy.sample.sample`` (seeded noise, :func:`conds`
    unless given); returns what the host returns (LTXAV: a NestedTensor (video, audio))."""
    h = H.host()
    lat = latent(kind, batch)
    pos, neg = conds(kind, 0, batch)
    pos = positive if positive is not None else pos
    neg = negative if negative is not None else neg
    return h.comfy.sample.sample(
        model, _noise(lat, seed), steps, cfg, sampler, scheduler, pos, neg, lat, seed=seed, disable_pbar=True, **kw
    )


def _diffusion_model(model):
    return model.get_model_object("diffusion_model") if hasattr(model, "get_model_object") else model


def stack_keys(kind: str, model) -> List[Tuple[str, int]]:
    """The ``patches_replace["dit"]`` keys the model calls, in execution order (``model``: a ModelPatcher or its
    diffusion model). Chroma leaves out the blocks it skips; Z-Image honours none."""
    _check(kind)
    dm = _diffusion_model(model)
    if kind == "zimage":
        return []
    if kind in ("flux", "flux2", "chroma", "hunyuan_video", "hunyuan_video15"):
        skip_d = set(getattr(dm, "skip_mmdit", None) or []) if kind == "chroma" else set()
        skip_s = set(getattr(dm, "skip_dit", None) or []) if kind == "chroma" else set()
        return [("double_block", i) for i in range(len(dm.double_blocks)) if i not in skip_d] + [
            ("single_block", i) for i in range(len(dm.single_blocks)) if i not in skip_s
        ]
    blocks = {
        "wan": "blocks",
        "qwen": "transformer_blocks",
        "ltxv": "transformer_blocks",
        "ltxav": "transformer_blocks",
        "kandinsky5": "visual_transformer_blocks",
    }[kind]
    return [("double_block", i) for i in range(len(getattr(dm, blocks)))]


def block_stream_key(kind: str) -> str:
    """The ``args`` key of the stream a dit block patch receives and must return: "x" for Kandinsky 5, else "img"."""
    _check(kind)
    return "x" if kind == "kandinsky5" else "img"
