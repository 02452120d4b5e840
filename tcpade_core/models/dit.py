"""DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers"), written from the paper.

Parameter names and shapes follow the official facebookresearch/DiT checkpoints exactly, so
``DiT(depth=28, hidden_size=1152, patch_size=2, num_heads=16, in_channels=4, input_size=32,
num_classes=1000, learn_sigma=True)`` loads ``DiT-XL-2-256x256.pt`` directly (``input_size=64`` for
the 512x512 checkpoint).

The model follows the TC-Padé block-stack protocol:

* ``embed(x, t, y) -> (h, ctx)``: patch tokens + positional embedding, and ``ctx = {"c": c}``
  where ``c = t_emb + y_emb`` is the adaLN conditioning vector.
* ``run_blocks(h, ctx) -> h_out``: the whole stack of DiT blocks.
* ``modulated_input(h, ctx)``: ``modulate(norm1(h), shift_msa, scale_msa)`` of block 0.
* ``unembed(h_out, ctx)``: final adaLN layer + linear + unpatchify.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DiT",
    "DiT_XL_2",
    "load_dit_state_dict",
    "read_checkpoint",
    "num_heads_from_metadata",
    "check_state_dict",
    "infer_dit_config",
    "timestep_embedding",
    "sincos_pos_embed_2d",
    "modulate",
]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: per-sample shift/scale broadcast over the token axis."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, layout [cos | sin] as in DiT."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    assert dim % 2 == 0
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = pos.reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> np.ndarray:
    """Fixed 2-D sin-cos positional embedding, shape (grid_size**2, dim), row-major tokens.

    The first half of the channels encodes the column (w) coordinate and the second half the row
    (h) coordinate, which is the layout the official DiT checkpoints were trained with.
    """
    assert dim % 4 == 0, "hidden size must be divisible by 4 for the 2-D sin-cos embedding"
    coords = np.arange(grid_size, dtype=np.float64)
    ww, hh = np.meshgrid(coords, coords)  # ww varies along columns, hh along rows
    return np.concatenate([_sincos_1d(dim // 2, ww), _sincos_1d(dim // 2, hh)], axis=1)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, T, D)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Class embedding table with one extra row (index ``num_classes``) used as the null class."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(B, L, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.fc2 = nn.Linear(hidden, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def modulation(self, c: torch.Tensor):
        return self.adaLN_modulation(c).chunk(6, dim=1)

    def modulated_input(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa = self.modulation(c)[:2]
        return modulate(self.norm1(x), shift_msa, scale_msa)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(c)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class StackModel(nn.Module):
    """The block protocol the engine drives a model through: ``embed(x, t, y) -> (h, ctx)``, ``run_blocks(h, ctx)``
    (the cached stack), ``modulated_input(h, ctx)`` (block 0's modulated input, TeaCache's signal) and
    ``unembed(h_out, ctx)`` (needs ``final_layer`` and ``unpatchify``). ``forward`` runs them, handing the stack to
    a :class:`tcpade_core.engine.Stack` (a CacheRun) when one is given."""

    def unembed(self, h_out: torch.Tensor, ctx: dict) -> torch.Tensor:
        return self.unpatchify(self.final_layer(h_out, ctx["c"]))

    def forward(self, x, t, y, stack: Optional[Callable] = None, stream: str = "cond"):
        h, ctx = self.embed(x, t, y)
        lead, trail = self.split_of(stack)
        if stack is None:
            h_out = self.run_blocks(h, ctx)
        elif trail > 0:  # the method's trailing blocks run on every step, on the cached stack's computed or predicted
            # output (with the text stream the stack left on a computed step, the leading blocks' on a predicted one)
            end = self.num_blocks - trail
            h_lead, rest = self.run_leading(h, ctx, lead) if lead > 0 else (h, ctx)
            mid = {}

            def middle(hh):
                mid["out"], mid["ctx"] = self.run_middle(hh, rest, lead, end)
                return mid["out"]

            h_mid = stack(
                stream,
                h_lead,
                middle,
                lambda: self.modulated_input(h, ctx),
                leading_fn=(lambda: (h, h_lead)) if lead > 0 else None,
            )
            h_out = self.run_trailing(h_mid, mid["ctx"] if h_mid is mid.get("out") else rest, end)
        elif lead > 0:  # the method's leading blocks run on every step; the stack it caches starts after them
            h_lead, rest = self.run_leading(h, ctx, lead)
            h_out = stack(
                stream,
                h_lead,
                lambda hh: self.run_rest(hh, rest, lead),
                lambda: self.modulated_input(h, ctx),
                leading_fn=lambda: (h, h_lead),
            )
        else:
            h_out = stack(stream, h, lambda hh: self.run_blocks(hh, ctx), lambda: self.modulated_input(h, ctx))
        return self.unembed(h_out, ctx)

    def split_of(self, stack) -> tuple:
        """(leading, trailing) blocks of ``stack`` on this model, clamped to leave one block cached (a CacheRun notes
        what it clamped in its report); (0, 0) without a stack."""
        if stack is None:
            return 0, 0
        split = getattr(stack, "split_blocks", None)
        if split is not None:
            return split(self.num_blocks)
        return min(getattr(stack, "leading_blocks", 0), self.num_blocks - 1), 0

    # the stack split after its first n blocks (a method's leading blocks, at least one block left to cache):
    # run_rest(*run_leading(h, ctx, n), n) is run_blocks(h, ctx), operation for operation; with m - n blocks cached
    # and trailing blocks after them, run_trailing(*run_middle(*run_leading(h, ctx, n), n, m), m) is too
    @property
    def num_blocks(self) -> int:
        raise NotImplementedError

    def run_leading(self, h: torch.Tensor, ctx: dict, n: int):
        """The first ``n`` blocks: (their output, what :meth:`run_rest` needs)."""
        raise NotImplementedError

    def run_rest(self, h: torch.Tensor, ctx: dict, n: int) -> torch.Tensor:
        """The blocks after the first ``n``, from their input ``h``."""
        raise NotImplementedError

    def run_middle(self, h: torch.Tensor, ctx: dict, n: int, m: int):
        """Blocks ``n`` to ``m - 1`` from their input ``h`` (the context :meth:`run_leading` left): (their output,
        what :meth:`run_trailing` needs)."""
        raise NotImplementedError

    def run_trailing(self, h: torch.Tensor, ctx: dict, m: int) -> torch.Tensor:
        """The blocks from block ``m`` on, from their input ``h``: :meth:`run_rest` after the first ``m``."""
        return self.run_rest(h, ctx, m)


class DiT(StackModel):
    """Class-conditional DiT with adaLN-Zero blocks (epsilon + optional learned-sigma output)."""

    kind = "ddpm_eps"

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        class_dropout_prob: float = 0.1,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.config = dict(
            arch="dit",
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
            class_dropout_prob=class_dropout_prob,
        )
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.null_class = num_classes
        self.learn_sigma = learn_sigma
        self.class_dropout_prob = class_dropout_prob

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.grid_size = input_size // patch_size
        num_patches = self.grid_size**2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    # ------------------------------------------------------------------ init
    def initialize_weights(self) -> None:
        def _basic(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(_basic)
        pe = sincos_pos_embed_2d(self.hidden_size, self.grid_size)
        with torch.no_grad():
            self.pos_embed.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for blk in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # -------------------------------------------------------- block protocol
    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor):
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t.to(x.dtype)) + self.y_embedder(y)
        return h, {"c": c}

    def run_blocks(self, h: torch.Tensor, ctx: dict) -> torch.Tensor:
        c = ctx["c"]
        for blk in self.blocks:
            h = blk(h, c)
        return h

    def modulated_input(self, h: torch.Tensor, ctx: dict) -> torch.Tensor:
        return self.blocks[0].modulated_input(h, ctx["c"])

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def run_leading(self, h: torch.Tensor, ctx: dict, n: int):
        c = ctx["c"]
        for blk in self.blocks[:n]:
            h = blk(h, c)
        return h, ctx

    def run_rest(self, h: torch.Tensor, ctx: dict, n: int) -> torch.Tensor:
        c = ctx["c"]
        for blk in self.blocks[n:]:
            h = blk(h, c)
        return h

    def run_middle(self, h: torch.Tensor, ctx: dict, n: int, m: int):
        c = ctx["c"]
        for blk in self.blocks[n:m]:
            h = blk(h, c)
        return h, ctx

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, p*p*C) -> (B, C, H, W), inverse of the Conv2d patch embedding layout."""
        p, c, g = self.patch_size, self.out_channels, self.grid_size
        x = x.reshape(x.shape[0], g, g, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, g * p, g * p)


def DiT_XL_2(input_size: int = 32, **kwargs) -> DiT:
    kwargs.setdefault("num_classes", 1000)
    return DiT(input_size=input_size, patch_size=2, hidden_size=1152, depth=28, num_heads=16, **kwargs)


# ---------------------------------------------------------------------------- loading
# Heads cannot be read from the weights; these are the official DiT-{S,B,L,XL} widths.
_HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16}


def read_checkpoint(path_or_dict: Any) -> tuple[dict, dict]:
    """The one DiT checkpoint reader: (state dict, metadata) from a dict, a ``.safetensors``/``.sft`` file
    (its metadata too) or a ``.pt``/``.pth``/``.ckpt`` file (``torch.load(weights_only=True)``; a
    training checkpoint ``{"model", "ema", "opt", "args"}`` with an ``argparse.Namespace`` is accepted).
    ``ema`` / ``model`` / ``state_dict`` / ``module`` wrappers are unwrapped (EMA first, as DiT's own
    sampling script uses it) and a ``module.`` / ``_orig_mod.`` prefix on every key is stripped."""
    meta: dict = {}
    if isinstance(path_or_dict, (str, os.PathLike)):
        path = os.fspath(path_or_dict)
        if path.lower().endswith((".safetensors", ".sft")):
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(path, framework="pt") as f:
                meta = dict(f.metadata() or {})
            sd = load_file(path)
        else:
            import argparse
            import pickle

            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                with torch.serialization.safe_globals([argparse.Namespace]):
                    sd = torch.load(path, map_location="cpu", weights_only=True)
    elif isinstance(path_or_dict, dict):
        sd = path_or_dict
    else:
        raise TypeError(f"expected a path or a state dict, got {type(path_or_dict).__name__}")
    for wrapper in ("ema", "model", "state_dict", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
            break
    if not isinstance(sd, dict):
        raise ValueError("checkpoint does not contain a state dict")
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd, meta


def num_heads_from_metadata(meta: dict) -> Optional[int]:
    """``num_heads`` from a ``config`` JSON in safetensors metadata (heads cannot be read from weights)."""
    try:
        return int(json.loads(meta["config"])["num_heads"])
    except (KeyError, ValueError, TypeError):
        return None


def check_state_dict(expected: dict, sd: dict, what: str) -> None:
    """Raise ``ValueError`` naming every missing, unexpected or wrongly-shaped key of ``sd``."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    bad_shape = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(sd)
        if tuple(sd[k].shape) != tuple(expected[k].shape)
    )
    parts = [
        f"{name}: {keys}"
        for name, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", bad_shape))
        if keys
    ]
    if parts:
        raise ValueError(f"{what}: " + "; ".join(parts))


def infer_dit_config(sd: dict, num_heads: Optional[int] = None) -> dict:
    """Infer DiT constructor arguments from the keys/shapes of a state dict."""
    required = ["x_embedder.proj.weight", "pos_embed", "y_embedder.embedding_table.weight", "final_layer.linear.weight"]
    missing = [k for k in required if k not in sd]
    if missing:
        raise ValueError(f"not a DiT state dict: missing keys {missing}")
    pw = sd["x_embedder.proj.weight"]
    if len(pw.shape) != 4 or pw.shape[2] != pw.shape[3]:
        raise ValueError(f"x_embedder.proj.weight has unexpected shape {tuple(pw.shape)}")
    hidden, in_ch, patch = int(pw.shape[0]), int(pw.shape[1]), int(pw.shape[2])
    depth_idx = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    depth = (max(depth_idx) + 1) if depth_idx else 0
    if depth == 0:
        raise ValueError("not a DiT state dict: no 'blocks.N.*' keys")
    n_tok = int(sd["pos_embed"].shape[1])
    grid = int(round(math.sqrt(n_tok)))
    if grid * grid != n_tok:
        raise ValueError(f"pos_embed has {n_tok} tokens, which is not a square grid")
    num_classes = int(sd["y_embedder.embedding_table.weight"].shape[0]) - 1
    out_ch = int(sd["final_layer.linear.weight"].shape[0]) // (patch * patch)
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    mlp_ratio = float(fc1.shape[0]) / hidden if fc1 is not None else 4.0
    if num_heads is None:
        num_heads = _HEADS_BY_WIDTH.get(hidden, max(1, hidden // 64))
    return dict(
        input_size=grid * patch,
        patch_size=patch,
        in_channels=in_ch,
        hidden_size=hidden,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        num_classes=num_classes,
        learn_sigma=(out_ch == 2 * in_ch),
    )


def load_dit_state_dict(path_or_dict: Any, num_heads: Optional[int] = None, dtype: torch.dtype = torch.float32) -> DiT:
    """Build a :class:`DiT` whose config is inferred from a checkpoint and load its weights.

    Accepts a state dict, a ``.pt``/``.pth`` file (``torch.load(weights_only=True)``; ``{"ema": ...}``
    and ``{"model": ...}`` wrappers are unwrapped) or a ``.safetensors`` file (a ``config`` JSON in
    the metadata supplies ``num_heads``). Raises ``ValueError`` naming every missing, unexpected or
    wrongly-shaped key. If the tensors live on the ``meta`` device the model is built on ``meta``
    too (useful for checking a key mapping without allocating memory).
    """
    sd, meta = read_checkpoint(path_or_dict)
    if num_heads is None:
        num_heads = num_heads_from_metadata(meta)
    cfg = infer_dit_config(sd, num_heads=num_heads)
    on_meta = any(getattr(v, "is_meta", False) for v in sd.values())
    if on_meta:
        with torch.device("meta"):
            model = DiT(**cfg)
    else:
        model = DiT(**cfg)
    check_state_dict(model.state_dict(), sd, f"DiT state dict does not match the inferred config {cfg}")
    if on_meta:
        model.load_state_dict(sd, strict=True, assign=True)
    else:
        model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
    model.pos_embed.requires_grad_(False)
    return model.to(dtype).eval()
