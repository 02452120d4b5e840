"""Class-conditional transformers of this pack as ComfyUI models: DiT-XL/2 and the two bench models.

ComfyUI has no DiT loader, and the bench models of ``tcpade_core`` are not host models. This module
gives them the host's conventions without copying any host forward:

* :class:`ComfyDiT` is ``tcpade_core``'s DiT with ComfyUI's diffusion-model calling convention
  ``forward(x, timesteps, context, y=..., control=..., transformer_options=...)``. Every block
  honours ``patches_replace["dit"][("double_block", i)]`` with args ``img``, ``vec``,
  ``transformer_options`` (Wan's names), so the pack's cache patcher and other packs' block patches
  work on it. The learned-sigma half of the output is dropped: ComfyUI's samplers use the schedule's
  own sigmas, exactly as DiT's DDIM sampling does.
* :class:`ComfyFluxLike` does the same for the FLUX-like bench model: double blocks
  ``("double_block", i)`` get ``img``, ``txt``, ``vec``, ``pe``; single blocks ``("single_block", i)``
  get the joined ``[txt, img]`` stream as ``img`` (ComfyUI's Flux convention). Only the block loop is
  written here; every computation is a call into the engine's submodules.
* Both forwards run through the host's ``DIFFUSION_MODEL`` wrappers (EasyCache, this pack's
  model-level fallback), with ``transformer_options`` as the last positional argument.
* :func:`dit_patcher` turns an official DiT state dict (read by
  :func:`tcpade_core.models.dit.read_checkpoint`, ``.pt`` or ``.safetensors``, 256 or 512) into a ``ModelPatcher`` of an EPS model with DiT's training schedule (linear betas 1e-4..0.02 over
  1000 steps; ComfyUI calls that ``sqrt_linear``; its "linear" is the SD schedule) and the SD VAE
  latent format (scale 0.18215). :func:`bench_patcher` does the same for a ``tcpade_core`` bench
  model: model A (DiT, digits) is EPS on the same schedule, model B (rectified flow) is
  ``ModelType.FLOW`` with ``shift`` = the model's shift and ``multiplier`` 1, so that
  ``model_sampling.timestep(sigma) == sigma``, the ``t`` that ``FluxLike.embed`` was trained with
  (it scales by 1000 itself; see ``tcpade_core.research.sampling``).

Class conditioning rides in the CONDITIONING dict as ``tcpade_class_label`` (plus
``tcpade_num_classes`` of the label set, checked against the model) and reaches the model as ``y``
(a ``CONDRegular``, so cond/uncond batching and batch sizes > 1 repeat it like any host cond). The
null class (index ``num_classes``) is the unconditional branch.

Host modules are imported inside functions; the module imports without ComfyUI.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn as nn

from ..tcpade_core.models.dit import DiT, check_state_dict, infer_dit_config, sincos_pos_embed_2d, timestep_embedding
from ..tcpade_core.models.fluxlike import FluxLike

log = logging.getLogger("tcpade")

CLASS_KEY = "tcpade_class_label"  # CONDITIONING dict key: class index (num_classes = null class)
NUM_CLASSES_KEY = "tcpade_num_classes"  # CONDITIONING dict key: size of the label set the index is from

# DiT's training schedule (facebookresearch/DiT: linear betas 1e-4..0.02, 1000 steps)
DDPM_SETTINGS = {"beta_schedule": "sqrt_linear", "linear_start": 0.0001, "linear_end": 0.02, "timesteps": 1000}

_HOST_OPS = (("Linear", nn.Linear), ("Conv2d", nn.Conv2d), ("Embedding", nn.Embedding), ("LayerNorm", nn.LayerNorm))


def adopt_host_operations(module: nn.Module, operations) -> None:
    """Turn the plain torch layers of ``module`` into the host's ``operations`` layers (same parameters).

    The host picks ``operations`` per load (``comfy.ops.manual_cast`` when the weights are stored in
    a dtype the device does not compute in, e.g. fp16 on CPU); its layers cast weights on the fly and
    let the ModelPatcher offload them. The engine builds plain ``nn.Linear`` etc.; the host classes are
    subclasses with the same state, so switching the class of each instance is enough.
    """
    if operations is None:
        return
    for m in module.modules():
        for name, base in _HOST_OPS:
            host_cls = getattr(operations, name, None)
            if type(m) is base and host_cls is not None and issubclass(host_cls, base):
                m.__class__ = host_cls
                if not hasattr(m, "bias"):  # the host's casting reads .bias (its Embedding sets None at init)
                    m.bias = None


def _labels(y: Optional[torch.Tensor], batch: int, null_class: int, device) -> torch.Tensor:
    """Class indices (batch,) from the host's ``y`` (None: the null class)."""
    if y is None:
        return torch.full((batch,), null_class, dtype=torch.long, device=device)
    y = y.reshape(-1).long().to(device)
    if y.shape[0] != batch:
        if batch % y.shape[0]:
            raise ValueError(f"class labels for a batch of {batch}: got {y.shape[0]} labels")
        y = y.repeat(batch // y.shape[0])
    return y


def _through_wrappers(impl, args: tuple, transformer_options: dict):
    """Call ``impl(*args, transformer_options)`` through the host's DIFFUSION_MODEL wrappers, if any."""
    try:
        import comfy.patcher_extension as pe
    except ImportError:  # outside ComfyUI
        return impl(*args, transformer_options)
    wrappers = pe.get_all_wrappers(pe.WrappersMP.DIFFUSION_MODEL, transformer_options)
    return pe.WrapperExecutor.new_class_executor(impl, impl.__self__, wrappers).execute(*args, transformer_options)


class ComfyDiT(DiT):
    """DiT with ComfyUI's calling convention and per-block ``dit`` patches.

    Built on the meta device and materialised uninitialised (as the host's own layers are): load a
    state dict. The fixed sin-cos position embedding is recomputed, so it is right either way.
    """

    def __init__(self, device=None, operations=None, dtype=None, **config):
        config.pop("image_model", None)
        with torch.device("meta"):
            super().__init__(**config)
        adopt_host_operations(self, operations)
        if dtype is not None:
            self.to(dtype)
        self.to_empty(device=device if device is not None else "cpu")
        self.requires_grad_(False)  # inference weights, on every host (see ComfyFluxLike)
        with torch.no_grad():
            self.pos_embed.copy_(torch.from_numpy(sincos_pos_embed_2d(self.hidden_size, self.grid_size)).unsqueeze(0))
        self._pos_cache = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.x_embedder.proj.weight.dtype

    def _pos(self, gh: int, gw: int, like: torch.Tensor) -> torch.Tensor:
        if gh == gw == self.grid_size:
            return self.pos_embed.to(like)
        if gh != gw:
            raise ValueError(
                f"DiT needs a square latent; got {gh * self.patch_size}x{gw * self.patch_size} (height x width)"
            )
        if gh not in self._pos_cache:  # the embedding is a fixed sin-cos table: recompute it for this size
            log.warning(
                "TCPade DiT: latent %dx%d differs from the checkpoint's %dx%d; using a recomputed sin-cos "
                "position embedding",
                gh * self.patch_size,
                gh * self.patch_size,
                self.input_size,
                self.input_size,
            )
            self._pos_cache[gh] = torch.from_numpy(sincos_pos_embed_2d(self.hidden_size, gh)).float().unsqueeze(0)
        return self._pos_cache[gh].to(like)

    def forward(self, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kwargs):
        return _through_wrappers(self._forward, (x, timesteps, context, y, control), transformer_options)

    def _forward(self, x, timesteps, context, y, control, transformer_options):
        b, ch, hgt, wid = x.shape
        p = self.patch_size
        if ch != self.in_channels:
            raise ValueError(
                f"this DiT takes {self.in_channels}-channel latents; got {ch} channels "
                f"(DiT-XL/2: EmptyLatentImage, SD VAE; bench model A: TCPade_BenchLatent)"
            )
        if hgt % p or wid % p:
            raise ValueError(f"DiT latent height/width must be multiples of {p}; got {hgt}x{wid}")
        y = _labels(y, b, self.null_class, x.device)
        h = self.x_embedder(x)
        h = h + self._pos(hgt // p, wid // p, h)
        t_freq = timestep_embedding(timesteps, self.t_embedder.frequency_embedding_size).to(h.dtype)
        c = self.t_embedder.mlp(t_freq) + self.y_embedder(y).to(h.dtype)
        replace = transformer_options.get("patches_replace", {}).get("dit", {})
        for i, blk in enumerate(self.blocks):
            patch = replace.get(("double_block", i))
            if patch is None:
                h = blk(h, c)
                continue

            def original(args, blk=blk):
                return {"img": blk(args["img"], args["vec"])}

            h = patch({"img": h, "vec": c, "transformer_options": transformer_options}, {"original_block": original})[
                "img"
            ]
        out = self.final_layer(h, c)
        g_h, g_w, oc = hgt // p, wid // p, self.out_channels
        out = out.reshape(b, g_h, g_w, p, p, oc).permute(0, 5, 1, 3, 2, 4).reshape(b, oc, hgt, wid)
        return out[:, : self.in_channels]  # epsilon; the learned-sigma channels are not used

    def modulated_input_from_args(self, args: dict) -> torch.Tensor:
        """TeaCache's input: block 0's ``modulate(norm1(img), shift_msa, scale_msa)``."""
        return self.blocks[0].modulated_input(args["img"], args["vec"])


class ComfyFluxLike(FluxLike):
    """The FLUX-like bench model with ComfyUI's calling convention and per-block ``dit`` patches."""

    def __init__(self, device=None, operations=None, dtype=None, **config):
        config.pop("image_model", None)
        super().__init__(**config)
        adopt_host_operations(self, operations)
        self.to(device=device, dtype=dtype)
        self.rope = self.rope.float()  # RoPE tables stay fp32 (the engine's attention applies them in fp32)
        # Inference weights, frozen on every host, as zoo.load_model freezes the engine model. This is not
        # cosmetic: torch's linear on a 3-D input that is not contiguous (the double blocks' txt/img slices of the
        # joint attention output) folds it into one 2-D GEMM when the weight requires grad and runs a batched GEMM
        # when it does not, and the two round differently. ComfyUI 0.33.0's BaseModel freezes the diffusion model
        # itself (v0.3.64 does not), so without this the host model's last bits depended on the host version.
        self.requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.img_in.weight.dtype

    def forward(self, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kwargs):
        return _through_wrappers(self._forward, (x, timesteps, context, y, control), transformer_options)

    def _forward(self, x, timesteps, context, y, control, transformer_options):
        want = (self.in_channels, self.input_size, self.input_size)
        if tuple(x.shape[1:]) != want:
            raise ValueError(
                f"this FLUX-like bench model takes latents of shape {want} (channels, height, width); "
                f"got {tuple(x.shape[1:])}. Use TCPade_BenchLatent."
            )
        y = _labels(y, x.shape[0], self.null_class, x.device)
        img, ctx = self.embed(x, timesteps, y)  # FluxLike.embed scales t by 1000 itself
        vec, txt, pe = ctx["c"], ctx["txt"], self.rope
        replace = transformer_options.get("patches_replace", {}).get("dit", {})
        for i, blk in enumerate(self.double_blocks):
            patch = replace.get(("double_block", i))
            if patch is None:
                img, txt = blk(img, txt, vec, pe)
                continue

            def original(args, blk=blk):
                o_img, o_txt = blk(args["img"], args["txt"], args["vec"], args["pe"])
                return {"img": o_img, "txt": o_txt}

            out = patch(
                {"img": img, "txt": txt, "vec": vec, "pe": pe, "transformer_options": transformer_options},
                {"original_block": original},
            )
            img, txt = out["img"], out["txt"]
        n_txt = txt.shape[1]
        joint = torch.cat((txt, img), dim=1)
        for i, blk in enumerate(self.single_blocks):
            patch = replace.get(("single_block", i))
            if patch is None:
                joint = blk(joint, vec, pe)
                continue

            def original(args, blk=blk):
                return {"img": blk(args["img"], args["vec"], args["pe"])}

            joint = patch(
                {"img": joint, "vec": vec, "pe": pe, "transformer_options": transformer_options},
                {"original_block": original},
            )["img"]
        return self.unembed(joint[:, n_txt:], ctx)

    def modulated_input_from_args(self, args: dict) -> torch.Tensor:
        """TeaCache's input: double block 0's ``(1 + scale) * LN(img) + shift`` of the image stream."""
        return self.double_blocks[0].modulated_img_input(args["img"], args["vec"])


# ---------------------------------------------------------------------------------------- host side
# The host's base classes exist only once ComfyUI is imported, so each host class is defined here as a mixin
# and joined to its host base by host_classes (_on_host_base).


class _BenchDigitsLatentMixin:
    """Bench model A works in pixel space: 1 grey channel in [-1, 1]."""

    latent_channels = 1
    scale_factor = 1.0
    latent_rgb_factors = [[1.0, 1.0, 1.0]]


class _BenchShapesLatentMixin:
    """Bench model B works in pixel space: RGB in [-1, 1]."""

    latent_channels = 3
    scale_factor = 1.0
    latent_rgb_factors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


class _ClassCondMixin:
    """A host model whose only conditioning is a class index (``y``)."""

    def extra_conds(self, **kwargs):
        import comfy.conds

        out = super().extra_conds(**kwargs)
        out.pop("c_crossattn", None)  # the CONDITIONING tensor is a placeholder; these models take no text
        n = int(self.diffusion_model.num_classes)
        label, label_set = kwargs.get(CLASS_KEY), kwargs.get(NUM_CLASSES_KEY)
        if label is None:
            if not getattr(self, "_warned_no_label", False):
                self._warned_no_label = True
                log.warning(
                    "TCPade: a conditioning without a class label reached a class-conditional model; "
                    "using the null class for it. Make conditioning with TCPade_ClassLabel."
                )
            label = n
        if label_set is not None and int(label_set) != n:
            raise ValueError(
                f"the class label comes from a label set of {int(label_set)} classes but the model has "
                f"{n} classes; pick the matching label set in TCPade_ClassLabel"
            )
        label = int(label)
        if not 0 <= label <= n:
            raise ValueError(
                f"class label {label} is out of range for a model with {n} classes (0-{n - 1}, {n} = null class)"
            )
        out["y"] = comfy.conds.CONDRegular(torch.tensor([label], dtype=torch.long))
        return out


def _on_host_base(name: str, mixin: type, base: type) -> type:
    """The class ``name``: ``mixin`` (its attributes and methods first) on the host class ``base``."""
    return type(name, (mixin, base), {"__doc__": mixin.__doc__})


def _config_class(smb, name: str, latent_format, sampling_settings: dict, dtypes, memory_factor: float) -> type:
    """A host model config class (``smb``: ``comfy.supported_models_base``) with these settings."""
    attrs = dict(
        unet_config={},
        unet_extra_config={},
        latent_format=latent_format,
        sampling_settings=dict(sampling_settings),
        supported_inference_dtypes=list(dtypes),
        memory_usage_factor=memory_factor,
    )
    return type(name, (smb.BASE,), attrs)


_HOST: Optional[SimpleNamespace] = None


def host_classes() -> SimpleNamespace:
    """The host-side latent formats, model configs and model class (built once, on first use)."""
    global _HOST
    if _HOST is not None:
        return _HOST
    import comfy.latent_formats as lf
    import comfy.model_base as mb
    import comfy.supported_models_base as smb

    BenchDigitsLatent = _on_host_base("BenchDigitsLatent", _BenchDigitsLatentMixin, lf.LatentFormat)
    BenchShapesLatent = _on_host_base("BenchShapesLatent", _BenchShapesLatentMixin, lf.LatentFormat)
    fp32 = [torch.float32]
    DiTConfig = _config_class(
        smb, "TCPadeDiTConfig", lf.SD15, DDPM_SETTINGS, [torch.float16, torch.bfloat16, torch.float32], 1.0
    )
    BenchAConfig = _config_class(smb, "TCPadeBenchAConfig", BenchDigitsLatent, DDPM_SETTINGS, fp32, 0.1)
    BenchBConfig = _config_class(
        smb, "TCPadeBenchBConfig", BenchShapesLatent, {"shift": 1.0, "multiplier": 1.0}, fp32, 0.1
    )
    ClassCondModel = _on_host_base("ClassCondModel", _ClassCondMixin, mb.BaseModel)
    _HOST = SimpleNamespace(
        BenchDigitsLatent=BenchDigitsLatent,
        BenchShapesLatent=BenchShapesLatent,
        DiTConfig=DiTConfig,
        BenchAConfig=BenchAConfig,
        BenchBConfig=BenchBConfig,
        ClassCondModel=ClassCondModel,
        ModelType=mb.ModelType,
    )
    return _HOST


def _load_strict(model, sd: dict, what: str) -> None:
    dm = model.diffusion_model
    check_state_dict(dm.state_dict(), sd, f"{what}: the weights do not fit the inferred model")
    dm.load_state_dict(sd, strict=True)


def _patcher(model, load_device, offload_device):
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def dit_patcher(
    sd: dict, weight_dtype: Optional[torch.dtype] = None, num_heads: Optional[int] = None, name: str = "DiT checkpoint"
):
    """ModelPatcher for a DiT state dict with the official key layout (DiT-XL/2 256 or 512, or any DiT).

    ``weight_dtype`` None: the host picks the storage dtype for the device, as its own loaders do
    (``model_management.unet_dtype``); the compute dtype follows ``unet_manual_cast``.
    """
    import comfy.model_management as mm
    import comfy.utils

    try:
        cfg = infer_dit_config(sd, num_heads=num_heads)
    except ValueError as e:
        raise ValueError(f"{name} is not a DiT checkpoint (facebookresearch/DiT key layout): {e}") from None
    H = host_classes()
    model_config = H.DiTConfig(cfg)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    supported = list(model_config.supported_inference_dtypes)
    if weight_dtype is None:
        weight_dtype = mm.unet_dtype(
            model_params=comfy.utils.calculate_parameters(sd),
            supported_dtypes=supported,
            weight_dtype=comfy.utils.weight_dtype(sd),
        )
    model_config.set_inference_dtype(weight_dtype, mm.unet_manual_cast(weight_dtype, load_device, supported))
    model = H.ClassCondModel(model_config, H.ModelType.EPS, device=offload_device, unet_model=ComfyDiT)
    _load_strict(model, sd, name)
    log.info(
        "TCPade DiT: %s, %d blocks, width %d, %d heads, %dx%d latent, %d classes, learned sigma %s",
        name,
        cfg["depth"],
        cfg["hidden_size"],
        cfg["num_heads"],
        cfg["input_size"],
        cfg["input_size"],
        cfg["num_classes"],
        cfg["learn_sigma"],
    )
    return _patcher(model, load_device, offload_device)


def bench_patcher(engine_model: nn.Module):
    """ModelPatcher for a ``tcpade_core`` bench model (``zoo.load_model``), always fp32 (they are tiny)."""
    import comfy.model_management as mm

    H = host_classes()
    cfg = dict(engine_model.config)
    arch = cfg.pop("arch")
    if arch == "dit":
        model_config, mtype, unet = H.BenchAConfig(cfg), H.ModelType.EPS, ComfyDiT
    elif arch == "fluxlike":
        model_config, mtype, unet = H.BenchBConfig(cfg), H.ModelType.FLOW, ComfyFluxLike
        model_config.sampling_settings["shift"] = float(cfg["shift"])
    else:
        raise ValueError(f"unknown bench model arch {arch!r}")
    model_config.set_inference_dtype(torch.float32, None)
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    model = H.ClassCondModel(model_config, mtype, device=offload_device, unet_model=unet)
    _load_strict(model, {k: v.float() for k, v in engine_model.state_dict().items()}, f"bench model {arch}")
    return _patcher(model, load_device, offload_device)
