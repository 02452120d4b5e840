"""A small FLUX-like rectified-flow transformer ("model B").

Structure (a scaled-down version of the FLUX.1 layout, written from its description):

* image tokens: patchified RGB (``img_in``), 2-D rotary position embedding (RoPE) on (row, col);
* "text" stream: ``txt_tokens`` learned tokens per class (+ one null class row for CFG),
  projected by ``txt_in``; text tokens get position (0, 0), i.e. no rotation;
* conditioning vector ``c = time_in(timestep_embedding(1000 * t)) + vector_in(class)``;
* ``depth_double`` double-stream blocks (separate img/txt weights and adaLN modulation, joint
  attention over [txt, img] with QK RMS-norm), then ``depth_single`` single-stream blocks over the
  concatenated tokens (fused qkv+mlp input projection, parallel attention and MLP);
* final adaLN layer + linear + unpatchify predicting the velocity ``noise - x0``.

Block-stack protocol: ``h`` (the stack input) is the IMAGE tokens only; the text tokens are kept
in ``ctx["txt"]`` and re-used fresh on every ``run_blocks`` call, which returns the image tokens
after the last single-stream block.
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from .dit import FinalLayer, StackModel, timestep_embedding

__all__ = ["FluxLike"]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.scale


class QKNorm(nn.Module):
    def __init__(self, head_dim: int):
        super().__init__()
        self.query_norm = RMSNorm(head_dim)
        self.key_norm = RMSNorm(head_dim)

    def forward(self, q, k):
        return self.query_norm(q), self.key_norm(k)


def rope_freqs(pos: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """cos/sin tables for 1-D positions ``pos`` (L,), returns (L, dim//2, 2)."""
    omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    ang = pos.double()[:, None] * omega[None]
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1).float()


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (B, H, L, Dh) by freqs (L, Dh//2, 2)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = freqs[..., 0], freqs[..., 1]
    x0, x1 = xs[..., 0], xs[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


def attention(q, k, v, freqs):
    q, k = apply_rope(q, freqs), apply_rope(k, freqs)
    o = F.scaled_dot_product_attention(q, k, v)
    B, H, L, Dh = o.shape
    return o.transpose(1, 2).reshape(B, L, H * Dh)


class Modulation(nn.Module):
    def __init__(self, dim: int, n: int):
        super().__init__()
        self.n = n
        self.lin = nn.Linear(dim, n * dim, bias=True)

    def forward(self, c: torch.Tensor):
        return [m.unsqueeze(1) for m in self.lin(F.silu(c)).chunk(self.n, dim=-1)]


def _mod(x, shift, scale):  # shift/scale already (B, 1, D)
    return x * (1 + scale) + shift


class DoubleStreamBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_heads = num_heads
        hd = dim // num_heads
        hidden = int(dim * mlp_ratio)
        for s in ("img", "txt"):
            setattr(self, f"{s}_mod", Modulation(dim, 6))
            setattr(self, f"{s}_norm1", nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6))
            setattr(self, f"{s}_qkv", nn.Linear(dim, 3 * dim, bias=True))
            setattr(self, f"{s}_qknorm", QKNorm(hd))
            setattr(self, f"{s}_proj", nn.Linear(dim, dim, bias=True))
            setattr(self, f"{s}_norm2", nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6))
            setattr(
                self,
                f"{s}_mlp",
                nn.Sequential(
                    nn.Linear(dim, hidden, bias=True), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim, bias=True)
                ),
            )

    def modulated_img_input(self, img, c):
        shift, scale = self.img_mod(c)[:2]
        return _mod(self.img_norm1(img), shift, scale)

    def _qkv(self, s: str, x: torch.Tensor):
        B, L, D = x.shape
        qkv = getattr(self, f"{s}_qkv")(x).reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = getattr(self, f"{s}_qknorm")(q, k)
        return q, k, v

    def forward(self, img, txt, c, freqs):
        i_sh1, i_sc1, i_g1, i_sh2, i_sc2, i_g2 = self.img_mod(c)
        t_sh1, t_sc1, t_g1, t_sh2, t_sc2, t_g2 = self.txt_mod(c)
        iq, ik, iv = self._qkv("img", _mod(self.img_norm1(img), i_sh1, i_sc1))
        tq, tk, tv = self._qkv("txt", _mod(self.txt_norm1(txt), t_sh1, t_sc1))
        o = attention(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2), freqs)
        n_txt = txt.shape[1]
        t_o, i_o = o[:, :n_txt], o[:, n_txt:]
        img = img + i_g1 * self.img_proj(i_o)
        img = img + i_g2 * self.img_mlp(_mod(self.img_norm2(img), i_sh2, i_sc2))
        txt = txt + t_g1 * self.txt_proj(t_o)
        txt = txt + t_g2 * self.txt_mlp(_mod(self.txt_norm2(txt), t_sh2, t_sc2))
        return img, txt


class SingleStreamBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_heads = num_heads
        self.dim = dim
        self.mlp_hidden = int(dim * mlp_ratio)
        self.modulation = Modulation(dim, 3)
        self.pre_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear1 = nn.Linear(dim, 3 * dim + self.mlp_hidden, bias=True)
        self.norm = QKNorm(dim // num_heads)
        self.linear2 = nn.Linear(dim + self.mlp_hidden, dim, bias=True)

    def forward(self, x, c, freqs):
        shift, scale, gate = self.modulation(c)
        xm = _mod(self.pre_norm(x), shift, scale)
        qkv, mlp = torch.split(self.linear1(xm), [3 * self.dim, self.mlp_hidden], dim=-1)
        B, L, _ = x.shape
        q, k, v = qkv.reshape(B, L, 3, self.num_heads, self.dim // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.norm(q, k)
        a = attention(q, k, v, freqs)
        return x + gate * self.linear2(torch.cat([a, F.gelu(mlp, approximate="tanh")], dim=-1))


class FluxLike(StackModel):
    kind = "flow"

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 3,
        hidden_size: int = 128,
        num_heads: int = 4,
        depth_double: int = 2,
        depth_single: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 10,
        txt_tokens: int = 4,
        shift: float = 2.0,
        class_dropout_prob: float = 0.1,
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        self.config = dict(
            arch="fluxlike",
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            num_heads=num_heads,
            depth_double=depth_double,
            depth_single=depth_single,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            txt_tokens=txt_tokens,
            shift=shift,
            class_dropout_prob=class_dropout_prob,
            rope_theta=rope_theta,
        )
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.null_class = num_classes
        self.shift = shift
        self.class_dropout_prob = class_dropout_prob
        self.grid_size = input_size // patch_size
        head_dim = hidden_size // num_heads
        if head_dim % 4:
            raise ValueError("head_dim must be divisible by 4 for 2-D RoPE")

        self.img_in = nn.Linear(in_channels * patch_size * patch_size, hidden_size, bias=True)
        self.time_in = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.vector_in = nn.Embedding(num_classes + 1, hidden_size)
        self.txt_embed = nn.Parameter(torch.randn(num_classes + 1, txt_tokens, hidden_size) * 0.5)
        self.txt_in = nn.Linear(hidden_size, hidden_size, bias=True)
        self.double_blocks = nn.ModuleList(
            [DoubleStreamBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth_double)]
        )
        self.single_blocks = nn.ModuleList(
            [SingleStreamBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth_single)]
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

        # RoPE table for [txt (pos 0,0), img (row, col)]; half the head channels per axis
        g = self.grid_size
        rows = torch.arange(g).repeat_interleave(g)
        cols = torch.arange(g).repeat(g)
        zeros = torch.zeros(txt_tokens, dtype=torch.long)
        fr = rope_freqs(torch.cat([zeros, rows]), head_dim // 2, rope_theta)
        fc = rope_freqs(torch.cat([zeros, cols]), head_dim // 2, rope_theta)
        self.register_buffer("rope", torch.cat([fr, fc], dim=1), persistent=False)  # (Ltot, hd/2, 2)
        self.initialize_weights()

    def initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.vector_in.weight, std=0.02)
        nn.init.normal_(self.time_in[0].weight, std=0.02)
        nn.init.normal_(self.time_in[2].weight, std=0.02)
        for blk in self.double_blocks:
            for mod in (blk.img_mod, blk.txt_mod):
                nn.init.zeros_(mod.lin.weight)
                nn.init.zeros_(mod.lin.bias)
        for blk in self.single_blocks:
            nn.init.zeros_(blk.modulation.lin.weight)
            nn.init.zeros_(blk.modulation.lin.bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # -------------------------------------------------------------- patching
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p, g = self.patch_size, self.grid_size
        x = x.reshape(B, C, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(B, g * g, C * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        p, g, C = self.patch_size, self.grid_size, self.out_channels
        x = x.reshape(B, g, g, C, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(B, C, g * p, g * p)

    # -------------------------------------------------------- block protocol
    def embed(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor):
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        h = self.img_in(self.patchify(x))
        c = self.time_in(timestep_embedding(t.to(x.dtype) * 1000.0, 256)) + self.vector_in(y)
        txt = self.txt_in(self.txt_embed[y])
        return h, {"c": c, "txt": txt}

    def run_blocks(self, h: torch.Tensor, ctx: dict) -> torch.Tensor:
        c, txt = ctx["c"], ctx["txt"]
        img = h
        freqs = self.rope
        for blk in self.double_blocks:
            img, txt = blk(img, txt, c, freqs)
        n_txt = txt.shape[1]
        x = torch.cat([txt, img], dim=1)
        for blk in self.single_blocks:
            x = blk(x, c, freqs)
        return x[:, n_txt:]

    def modulated_input(self, h: torch.Tensor, ctx: dict) -> torch.Tensor:
        return self.double_blocks[0].modulated_img_input(h, ctx["c"])

    @property
    def num_blocks(self) -> int:
        return len(self.double_blocks) + len(self.single_blocks)

    def run_leading(self, h: torch.Tensor, ctx: dict, n: int):
        """The first ``n`` blocks (double, then single): the image tokens after them, and the text stream (or the
        text part of the joint stream) they leave for :meth:`run_rest`."""
        c, txt, freqs = ctx["c"], ctx["txt"], self.rope
        img, nd = h, len(self.double_blocks)
        for blk in self.double_blocks[:n]:
            img, txt = blk(img, txt, c, freqs)
        if n <= nd:
            return img, {**ctx, "txt": txt}
        n_txt = txt.shape[1]
        x = torch.cat([txt, img], dim=1)
        for blk in self.single_blocks[: n - nd]:
            x = blk(x, c, freqs)
        return x[:, n_txt:], {**ctx, "txt": x[:, :n_txt]}

    def run_rest(self, h: torch.Tensor, ctx: dict, n: int) -> torch.Tensor:
        c, txt, freqs = ctx["c"], ctx["txt"], self.rope
        img, nd = h, len(self.double_blocks)
        for blk in self.double_blocks[n:]:
            img, txt = blk(img, txt, c, freqs)
        n_txt = txt.shape[1]
        x = torch.cat([txt, img], dim=1)
        for blk in self.single_blocks[max(n - nd, 0) :]:
            x = blk(x, c, freqs)
        return x[:, n_txt:]

    def run_middle(self, h: torch.Tensor, ctx: dict, n: int, m: int):
        """Blocks ``n`` to ``m - 1`` (double, then single) from the image tokens ``h`` and the text stream in ``ctx``:
        the image tokens after them, and the text stream (or the text part of the joint stream) they leave."""
        c, txt, freqs = ctx["c"], ctx["txt"], self.rope
        img, nd = h, len(self.double_blocks)
        for blk in self.double_blocks[n:m]:
            img, txt = blk(img, txt, c, freqs)
        if m <= nd:
            return img, {**ctx, "txt": txt}
        n_txt = txt.shape[1]
        x = torch.cat([txt, img], dim=1)
        for blk in self.single_blocks[max(n - nd, 0) : m - nd]:
            x = blk(x, c, freqs)
        return x[:, n_txt:], {**ctx, "txt": x[:, :n_txt]}
