"""DiT-XL/2 (facebookresearch/DiT, class-conditional ImageNet) as a ComfyUI model.

ComfyUI has no DiT loader. This module gives it one without copying any host forward:

* :class:`ComfyDiT` is ``tcpade_core``'s DiT with ComfyUI's diffusion-model calling convention
  ``forward(x, timesteps, context, y=..., transformer_options=...)``. Every block honours
  ``patches_replace["dit"][("double_block", i)]`` with the same argument names Wan uses
  (``img``, ``vec``, ``transformer_options``), so the pack's cache patcher (and any other pack's
  block patches) work on it. The learned-sigma half of the output is dropped: ComfyUI's samplers use
  the schedule's own sigmas, exactly as DiT's DDIM sampling does.
* :func:`build_patcher` turns an official checkpoint (``.pt`` or ``.safetensors``, 256 or 512) into
  a ``ModelPatcher`` of an EPS model with DiT's training schedule (linear betas 1e-4..0.02, 1000 steps;
  ComfyUI calls that ``sqrt_linear``) and the SD VAE latent format (scale 0.18215).

Class conditioning rides in the CONDITIONING dict as ``tcpade_class_label`` and reaches the model as
``y`` through ``extra_conds``; the null class (index ``num_classes``) is the unconditional branch.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch

from ..tcpade_core.models.dit import DiT, infer_dit_config, sincos_pos_embed_2d

log = logging.getLogger("tcpade")

CLASS_KEY = "tcpade_class_label"


class ComfyDiT(DiT):
    """DiT with ComfyUI's calling convention and per-block ``dit`` patches."""

    def __init__(self, device=None, operations=None, dtype=None, **config):
        config.pop("image_model", None)
        super().__init__(**config)
        self._pos_cache = {}

    @property
    def dtype(self) -> torch.dtype:
        return self.x_embedder.proj.weight.dtype

    def _pos(self, gh: int, gw: int, like: torch.Tensor) -> torch.Tensor:
        if gh == gw == self.grid_size:
            return self.pos_embed.to(like)
        key = (gh, gw)
        if key not in self._pos_cache:   # DiT's embedding is fixed sin-cos: recompute for other sizes
            if gh != gw:
                raise ValueError(f"DiT needs a square latent; got {gh * self.patch_size}x{gw * self.patch_size}")
            log.warning("TCPade DiT: latent %dx%d differs from the checkpoint's %dx%d; using a recomputed sin-cos "
                        "position embedding", gh * self.patch_size, gw * self.patch_size, self.input_size, self.input_size)
            self._pos_cache[key] = torch.from_numpy(sincos_pos_embed_2d(self.hidden_size, gh)).float().unsqueeze(0)
        return self._pos_cache[key].to(like)

    def forward(self, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kwargs):
        b, _, hgt, wid = x.shape
        p = self.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"DiT latent height/width must be multiples of {p}; got {hgt}x{wid}")
        if y is None:
            y = torch.full((b,), self.null_class, dtype=torch.long, device=x.device)
        y = y.reshape(-1).long().to(x.device)
        if y.shape[0] != b:
            y = y.repeat((b + y.shape[0] - 1) // y.shape[0])[:b]
        h = self.x_embedder(x) + self._pos(hgt // p, wid // p, x)
        c = self.t_embedder(timesteps.to(x.dtype)) + self.y_embedder(y)
        replace = transformer_options.get("patches_replace", {}).get("dit", {})
        for i, blk in enumerate(self.blocks):
            patch = replace.get(("double_block", i))
            if patch is None:
                h = blk(h, c)
                continue

            def original(args, blk=blk):
                return {"img": blk(args["img"], args["vec"])}

            h = patch({"img": h, "vec": c, "transformer_options": transformer_options}, {"original_block": original})["img"]
        out = self.final_layer(h, c)
        g_h, g_w, oc = hgt // p, wid // p, self.out_channels
        out = out.reshape(b, g_h, g_w, p, p, oc).permute(0, 5, 1, 3, 2, 4).reshape(b, oc, hgt, wid)
        return out[:, : self.in_channels]

    def modulated_input_from_args(self, args: dict) -> torch.Tensor:
        return self.blocks[0].modulated_input(args["img"], args["vec"])


def _host():
    import comfy.conds
    import comfy.latent_formats
    import comfy.model_base
    import comfy.supported_models_base
    return comfy


def make_model_classes():
    """Build the host-side config/model classes lazily (no host import at pack load time)."""
    comfy = _host()

    class DiTConfig(comfy.supported_models_base.BASE):
        unet_config = {}
        latent_format = comfy.latent_formats.SD15
        sampling_settings = {"beta_schedule": "sqrt_linear", "linear_start": 0.0001, "linear_end": 0.02, "timesteps": 1000}
        memory_usage_factor = 1.0
        supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]

    class DiTModel(comfy.model_base.BaseModel):
        def __init__(self, model_config, device=None):
            super().__init__(model_config, comfy.model_base.ModelType.EPS, device=device, unet_model=ComfyDiT)

        def extra_conds(self, **kwargs):
            out = super().extra_conds(**kwargs)
            label = kwargs.get(CLASS_KEY)
            if label is None:
                label = self.diffusion_model.null_class
            out["y"] = comfy.conds.CONDRegular(torch.tensor([int(label)], dtype=torch.long))
            return out

    return DiTConfig, DiTModel


def state_dict_from_file(path: str) -> dict:
    import comfy.utils
    sd = comfy.utils.load_torch_file(path, safe_load=True)
    for key in ("ema", "model", "state_dict"):
        if isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd


def build_patcher(sd: dict, weight_dtype: Optional[torch.dtype] = None):
    """ModelPatcher for a DiT state dict with the official key layout."""
    import comfy.model_management as mm
    import comfy.model_patcher
    cfg = infer_dit_config(sd)
    cfg.pop("arch", None)
    DiTConfig, DiTModel = make_model_classes()
    model_config = DiTConfig(dict(cfg))
    model = DiTModel(model_config, device=mm.unet_offload_device())
    missing, unexpected = model.diffusion_model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"not a DiT checkpoint: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    if weight_dtype is not None:
        model.diffusion_model.to(weight_dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
