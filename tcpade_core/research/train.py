"""Train the TC-Padé benchmark models (CPU).

    python -m tcpade_core.research.train --model a      # DiT on 16x16 sklearn digits (DDPM eps), ~12 min
    python -m tcpade_core.research.train --model b      # FLUX-like rectified flow on 32x32 shapes, ~27 min

Everything is seeded (init, data order, noise, timesteps, class dropout) and the number of
iterations is fixed per model, so a rerun reproduces the shipped weights. The shipped files were
trained with ``--threads 1`` (the default here: both models were trained side by side on a
2-core machine shared with other work, where one thread per process was faster than two);
another thread count or CPU may change floating-point reductions and hence the exact bits.
Measured wall times are stored in the safetensors metadata (``wall_time_s``): model A 721 s,
model B 1597 s, each on one thread of a 2-core machine shared with the other run and other work
(A: about 2.7 it/s when not contended, B: about 1.1-1.6 it/s).

Known limitation of model B (2000 iterations): the colour scheme is always right and filled
circles/squares/triangles come out, but rings and crosses often come out as fragments, so its
class agreement is well below model A's. Candidate fixes, not applied to the shipped weights:
``label_init_std=0.5``, ``train_t_shift=True``, a RoPE base suited to an 8x8 grid (e.g. 100), and
more iterations.

The EMA weights are saved as float16 safetensors to ``tcpade_core/weights/``; the final class
agreement (100 samples, 20 steps, seed 0) is measured after that fp16 round trip and written to
the metadata too (``class_agreement_20steps``). Intermediate EMA checkpoints go to
``/tmp/tcpade_ckpt_<model>.safetensors`` every 300 iterations.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F

from ..models.dit import DiT
from ..models.fluxlike import FluxLike
from ..models.zoo import MODEL_FILES, WEIGHTS_DIR, load_model, save_model
from .datasets import load_digits_16, shapes_batch, textures_batch

PRESETS = {
    "a": dict(
        config=dict(
            input_size=16,
            patch_size=2,
            in_channels=1,
            hidden_size=128,
            depth=6,
            num_heads=4,
            mlp_ratio=4.0,
            num_classes=10,
            learn_sigma=True,
            class_dropout_prob=0.1,
        ),
        iters=1800,
        batch=32,
        lr=8e-4,
        warmup=150,
        ema=0.998,
        seed=0,
        eval_cfg=1.5,
        label_init_std=0.5,
    ),
    "b": dict(
        config=dict(
            input_size=32,
            patch_size=4,
            in_channels=3,
            hidden_size=128,
            num_heads=4,
            depth_double=2,
            depth_single=4,
            mlp_ratio=4.0,
            num_classes=10,
            txt_tokens=4,
            shift=2.0,
            class_dropout_prob=0.1,
        ),
        iters=2000,
        batch=32,
        lr=8e-4,
        warmup=150,
        ema=0.998,
        seed=0,
        eval_cfg=2.0,
        label_init_std=None,
        train_t_shift=False,
    ),
    "c": dict(
        config=dict(
            input_size=32,
            patch_size=4,
            in_channels=3,
            hidden_size=128,
            num_heads=4,
            depth_double=1,
            depth_single=4,
            mlp_ratio=4.0,
            num_classes=10,
            txt_tokens=4,
            shift=2.0,
            class_dropout_prob=0.1,
            rope_theta=100.0,
        ),
        iters=10000,
        batch=32,
        lr=6e-4,
        warmup=150,
        ema=0.998,
        seed=0,
        eval_cfg=4.0,
        label_init_std=0.5,
        train_t_shift=True,
    ),
}
# Model D: a second held-out model, trained after every decision that looked at C (2026-12-07). Model C's
# recipe (architecture, data, optimiser) with another seed and 6000 iterations (the session's budget), so
# that choices read post hoc from C's rows can be tested on a model of its kind that no tool has seen.
PRESETS["d"] = dict(PRESETS["c"], seed=1, iters=6000)
# Model E: a third held-out model, registered before the planner's contraction (docs/contraction.txt) was run on
# any held-out row (2026-12-07): C's recipe with seed 2 and D's 6000 iterations.
PRESETS["e"] = dict(PRESETS["c"], seed=2, iters=6000)
# Model F: a fourth held-out model, registered before the planner's margin (docs/plan_margin.txt) was run on any
# held-out row (2026-12-07): C's recipe with seed 3 and D's 6000 iterations.
PRESETS["f"] = dict(PRESETS["c"], seed=3, iters=6000)
# Model G: a fifth held-out model, registered before an order chosen from the calibration (docs/order2_closed_loop.txt)
# was run on any held-out row (2026-12-07): C's recipe with seed 4 and D's 6000 iterations.
PRESETS["g"] = dict(PRESETS["c"], seed=4, iters=6000)
# Model H: the first held-out eps-prediction model, registered before TaylorSeer's order by prediction type
# (docs/order_eps.txt) was run on any of its rows (2026-12-07): A's recipe (architecture, data, optimiser,
# iterations) with training seed 1.
PRESETS["h"] = dict(PRESETS["a"], seed=1)
# arch / data of each preset (A and H: DiT, digits, eps; B to G: FluxLike, flow)
PRESET_KIND = {"a": ("dit", "digits"), "b": ("fluxlike", "shapes"), "c": ("fluxlike", "textures")}
PRESET_KIND["d"] = PRESET_KIND["e"] = PRESET_KIND["f"] = PRESET_KIND["g"] = PRESET_KIND["c"]
PRESET_KIND["h"] = PRESET_KIND["a"]
DATA_BATCH = {"shapes": shapes_batch, "textures": textures_batch}


def lr_at(i: int, base: float, warmup: int, total: int) -> float:
    if i < warmup:
        return base * (i + 1) / warmup
    prog = (i - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))


def evaluate(name: str, n: int = 100, steps: int = 20, cfg: float = 1.5, seed: int = 0, path=None) -> float:
    """Full-compute class agreement of ``n`` samples (labels 0..9 cycled) from the saved weights."""
    from .classifiers import class_agreement
    from .sampling import sample

    model = load_model(name, path)
    labels = torch.arange(n) % model.num_classes
    t0 = time.time()
    imgs = sample(model, labels, seed=seed, steps=steps, cfg_scale=cfg)
    agree = class_agreement(imgs, labels, name)
    print(
        f"[eval] model {name}: {n} samples, {steps} steps, cfg {cfg}: class agreement {agree:.3f} "
        f"(sampling {time.time() - t0:.1f}s)",
        flush=True,
    )
    return agree


def _init_models(arch: str, preset: dict) -> tuple:
    """The model (seeded from torch's global generator, as set by the caller) and its EMA copy."""
    Arch = DiT if arch == "dit" else FluxLike
    model = Arch(**preset["config"])
    # The official DiT init (std 0.02) makes the class embedding tiny next to the timestep
    # embedding; with a training budget of minutes the model then ignores the class. A larger
    # init of the class vectors makes class conditioning emerge within the budget.
    if preset.get("label_init_std") is not None:
        label_table = model.y_embedder.embedding_table if arch == "dit" else model.vector_in
        torch.nn.init.normal_(label_table.weight, std=preset["label_init_std"])
    ema = Arch(**preset["config"])
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    return model, ema


def _data_batch(data: str, B: int, g: torch.Generator, digits) -> tuple:
    """One training batch (x0, labels): drawn from the digits ``(data_x, data_y)``, or rendered on the fly."""
    if data == "digits":
        data_x, data_y = digits
        idx = torch.randint(0, data_x.shape[0], (B,), generator=g)
        return data_x[idx], data_y[idx]
    return DATA_BATCH[data](B, g)


def _drop_labels(y: torch.Tensor, pdrop: float, null: int, g: torch.Generator) -> torch.Tensor:
    """Class dropout: each label becomes the null class with probability ``pdrop``."""
    drop = torch.rand(y.shape[0], generator=g) < pdrop
    return torch.where(drop, torch.full_like(y, null), y)


def _loss(model, arch: str, preset: dict, x0: torch.Tensor, y: torch.Tensor, g: torch.Generator, acp) -> torch.Tensor:
    """The training loss of one batch: DDPM eps MSE (DiT, ``acp`` the cumulative alphas) or rectified flow."""
    B = x0.shape[0]
    noise = torch.randn(x0.shape, generator=g)
    if arch == "dit":
        t = torch.randint(0, 1000, (B,), generator=g)
        a = acp[t].view(B, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = model(xt, t.float(), y)[:, : model.in_channels]
        return F.mse_loss(pred, noise)
    # logit-normal(0, 1) time sampling; optionally shifted like the sampling schedule
    # (more weight on high noise levels). The shipped model B used the unshifted form.
    s = torch.sigmoid(torch.randn(B, generator=g))
    if preset.get("train_t_shift", False):
        s = model.shift * s / (1 + (model.shift - 1) * s)
    sv = s.view(B, 1, 1, 1)
    xt = (1 - sv) * x0 + sv * noise
    pred = model(xt, s, y)
    return F.mse_loss(pred, noise - x0)


def _ema_update(ema, model, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            if pm.requires_grad:
                pe.lerp_(pm, 1 - decay)


def _save_checkpoints(ema, name: str, done: int, iters: int, ckpt_every: int, ckpt_prefix: str, t_start: float) -> None:
    """After ``done`` iterations: the rolling checkpoint every 300 and, with ``ckpt_every``, the kept ones."""
    if done % 300 == 0 and done < iters:
        save_model(ema, f"/tmp/tcpade_ckpt_{name}.safetensors", {"iter": done})
    if ckpt_every and done % ckpt_every == 0 and done < iters:
        save_model(
            ema, f"{ckpt_prefix}_{done}.safetensors", {"iter": done, "elapsed_s": round(time.time() - t_start, 1)}
        )


def _train_meta(name: str, preset: dict, arch: str, data: str, iters: int, wall: float, threads: int) -> dict:
    """The safetensors metadata of the trained weights."""
    return {
        "model": name,
        "train_seed": preset["seed"],
        "train_iters": iters,
        "data": data,
        "batch_size": preset["batch"],
        "lr": preset["lr"],
        "lr_schedule": f"linear warmup {preset['warmup']} iters, then cosine to 0.1x",
        "ema_decay": preset["ema"],
        "label_init_std": preset.get("label_init_std"),
        "wall_time_s": round(wall, 1),
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "weights": "EMA, stored as float16",
        "objective": "eps MSE, DDPM linear betas 1e-4..0.02 x1000 (sigma channels untrained, unused by DDIM)"
        if arch == "dit"
        else "rectified flow velocity (noise - x0) MSE, "
        + ("shifted " if preset.get("train_t_shift", False) else "")
        + "logit-normal t",
    }


def train(
    name: str,
    iters: int | None = None,
    threads: int = 1,
    log_every: int = 100,
    out=None,
    eval_n: int = 100,
    preset: dict | None = None,
    kind: tuple | None = None,
    ckpt_every: int = 0,
    ckpt_prefix: str = "/tmp/tcpade_ckpt",
) -> None:
    """Train preset ``name`` (or an explicit ``preset``/``kind`` for exploration runs, saved as model ``name``).

    ``ckpt_every`` > 0 also keeps EMA checkpoints ``{ckpt_prefix}_{iter}.safetensors`` every that many iterations.
    """
    preset = preset or PRESETS[name]
    arch, data = kind or PRESET_KIND[name]
    iters = iters or preset["iters"]
    torch.set_num_threads(threads)
    seed = preset["seed"]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model, ema = _init_models(arch, preset)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model {name}: {n_params / 1e6:.2f}M trainable params, {iters} iters, batch {preset['batch']}", flush=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=preset["lr"], weight_decay=0.0)
    B = preset["batch"]
    null = model.null_class
    pdrop = preset["config"]["class_dropout_prob"]

    digits = acp = None
    if data == "digits":
        digits = load_digits_16()
        acp = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0).float()

    t_start = time.time()
    run_loss = 0.0
    for i in range(iters):
        for pg in opt.param_groups:
            pg["lr"] = lr_at(i, preset["lr"], preset["warmup"], iters)
        x0, y = _data_batch(data, B, g, digits)
        y = _drop_labels(y, pdrop, null, g)
        loss = _loss(model, arch, preset, x0, y, g, acp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _ema_update(ema, model, min(preset["ema"], (1 + i) / (10 + i)))
        run_loss += loss.item()
        if (i + 1) % log_every == 0:
            el = time.time() - t_start
            print(
                f"iter {i + 1}/{iters} loss {run_loss / log_every:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"elapsed {el:.0f}s ({(i + 1) / el:.2f} it/s)",
                flush=True,
            )
            run_loss = 0.0
        _save_checkpoints(ema, name, i + 1, iters, ckpt_every, ckpt_prefix, t_start)
    wall = time.time() - t_start
    path = out or (WEIGHTS_DIR / MODEL_FILES[name])
    meta = _train_meta(name, preset, arch, data, iters, wall, threads)
    save_model(ema, path, meta)
    print(f"saved {path} after {wall:.0f}s of training", flush=True)
    if eval_n > 0:
        agree = evaluate(name, n=eval_n, cfg=preset["eval_cfg"], path=path)
        meta["class_agreement_20steps"] = {"n": eval_n, "cfg": preset["eval_cfg"], "seed": 0, "value": round(agree, 4)}
        save_model(ema, path, meta)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(PRESETS), required=True)
    ap.add_argument("--iters", type=int, default=None, help="override the preset iteration count")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1, as used for the shipped weights; 2 is faster on an idle 2-core machine)",
    )
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--out", default=None, help="write weights here instead of tcpade_core/weights/")
    ap.add_argument("--eval-n", type=int, default=100)
    ap.add_argument("--ckpt-every", type=int, default=0, help="also keep EMA checkpoints every N iterations")
    ap.add_argument("--ckpt-prefix", default="/tmp/tcpade_ckpt", help="checkpoint path prefix for --ckpt-every")
    args = ap.parse_args(argv)
    train(
        args.model,
        iters=args.iters,
        threads=args.threads,
        log_every=args.log_every,
        out=args.out,
        eval_n=args.eval_n,
        ckpt_every=args.ckpt_every,
        ckpt_prefix=args.ckpt_prefix,
    )


if __name__ == "__main__":
    main()
