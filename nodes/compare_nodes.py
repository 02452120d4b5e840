"""Score a cached branch against the uncached one: PSNR, SSIM and an amplified difference image.

The metrics are :mod:`tcpade_core.metrics` (torch; scikit-image's definitions), the same code the
benchmark uses, so a number in the UI and a number in the README mean the same thing. ComfyUI IMAGE tensors are
``(B, H, W, C)`` in ``[0, 1]``; the metrics take ``(B, C, H, W)`` in ``[-1, 1]``. A batch is scored
image by image (a video is a batch of frames): the score is the mean over the images.

The node previews the amplified difference as one grid image, small images scaled up by a whole
factor with nearest neighbour (pixels stay sharp, :func:`image_grid`); **Preview Image Grid**
(``TCPade_PreviewGrid``) does the same for any IMAGE batch, e.g. the tiny bench models' 16x16 and
32x32 samples, which the host's preview would show about 40 px wide.

Timing is not measured here: a node cannot see how long an upstream sampler ran. The web extension
(``web/tcpade.js``) times each sampler from the server's execution events and shows every branch's
seconds and speed-up on this node (see its header for how model loading is kept out).
"""

from __future__ import annotations

import math

import torch
from comfy_api.latest import io, ui

from ..tcpade_core import metrics
from ..tcpade_core.report import finite_or_none
from .patcher import LAST_COMPARES, current_prompt_id

CATEGORY = "tcpade"
UI_KEY = "tcpade_compare"  # the node's UI payload; read by web/tcpade.js
PREVIEW_IMAGES = 8  # the node previews at most this many difference images (the output has all)
GRID_MIN_SIZE = 256  # preview tiles are scaled up (whole factor, nearest) to at least this long side
GRID_MAX_SIDE = 2048  # a preview grid larger than this is scaled down to it
GRID_GAP = 4  # pixels between tiles
GRID_GAP_VALUE = 0.3  # grey of the gaps (visible between black difference images)
CHANGED_FLOOR_DB = metrics.CHANGED_FLOOR_DB  # below it an image shows other content (README "Compare")


def to_metric_space(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``(B, H, W, C)`` in [0, 1] -> ``(B, 3, H, W)`` float32 in [-1, 1] (RGB only)."""
    if images.ndim != 4:
        raise ValueError(f"expected an IMAGE tensor (batch, height, width, channels); got shape {tuple(images.shape)}")
    x = images[..., :3].float()
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    return x.movedim(-1, 1) * 2.0 - 1.0


def match_batches(test: torch.Tensor, reference: torch.Tensor):
    """Same size required; a single reference image is compared with every test image (and vice versa)."""
    if tuple(test.shape[1:3]) != tuple(reference.shape[1:3]):
        raise ValueError(
            f"test and reference images differ in size: {test.shape[2]}x{test.shape[1]} vs "
            f"{reference.shape[2]}x{reference.shape[1]}. Use the same latent size in both branches."
        )
    bt, br = test.shape[0], reference.shape[0]
    if bt == br:
        return test, reference
    if br == 1:
        return test, reference.expand(bt, *reference.shape[1:])
    if bt == 1:
        return test.expand(br, *test.shape[1:]), reference
    raise ValueError(f"test has {bt} images/frames and reference {br}; they must match (or one must be 1).")


def difference_image(test: torch.Tensor, reference: torch.Tensor, amplify: float) -> torch.Tensor:
    """``clamp(|test - reference| * amplify, 0, 1)`` per channel, as an IMAGE."""
    return ((test[..., :3].float() - reference[..., :3].float()).abs() * float(amplify)).clamp(0.0, 1.0)


def grid_shape(n: int, height: int, width: int, columns: int = 0, aspect: float = 1.6) -> tuple:
    """(rows, columns) of a grid of ``n`` images: ``columns`` if given, else no empty cell if possible and
    the grid's width / height closest to ``aspect``."""
    if n < 1:
        raise ValueError("an image grid needs at least one image")
    if columns:
        cols = max(1, min(int(columns), n))
        return math.ceil(n / cols), cols
    best = None
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        score = (rows * cols - n, abs(math.log((cols * width) / (rows * height) / aspect)))
        if best is None or score < best[0]:
            best = (score, (rows, cols))
    return best[1]


def image_grid(
    images: torch.Tensor,
    columns: int = 0,
    min_size: int = GRID_MIN_SIZE,
    max_side: int = GRID_MAX_SIDE,
    gap: int = GRID_GAP,
    gap_value: float = GRID_GAP_VALUE,
) -> torch.Tensor:
    """IMAGE ``(B, H, W, C)`` -> one IMAGE ``(1, GH, GW, 3)``: the images in rows and columns
    (:func:`grid_shape`), each scaled up by the smallest whole factor that makes its longer side at least
    ``min_size`` (nearest neighbour: every pixel becomes a sharp square), ``gap`` pixels of grey between
    them; a grid longer than ``max_side`` is scaled down (area) to it."""
    if images.ndim != 4:
        raise ValueError(f"expected an IMAGE tensor (batch, height, width, channels); got shape {tuple(images.shape)}")
    x = images[..., :3].float()
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    b, h, w, _ = x.shape
    k = max(1, math.ceil(min_size / max(h, w)))
    if k > 1:
        x = x.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
        h, w = h * k, w * k
    rows, cols = grid_shape(b, h, w, columns)
    out = torch.full(
        (rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), float(gap_value), dtype=x.dtype, device=x.device
    )
    for i in range(b):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = x[i]
    long_side = max(out.shape[0], out.shape[1])
    if long_side > max_side:
        scale = max_side / long_side
        size = (max(1, round(out.shape[0] * scale)), max(1, round(out.shape[1] * scale)))
        out = torch.nn.functional.interpolate(out.movedim(-1, 0)[None], size=size, mode="area")[0].movedim(0, -1)
    return out[None].clamp(0.0, 1.0)


def frame_psnr(a: torch.Tensor, b: torch.Tensor, vals: list = None):
    """(mean PSNR over the images that differ, number of identical images); inf when all are identical.

    :func:`tcpade_core.metrics.psnr` is +inf for an identical image, so a plain mean over a batch would be
    inf as soon as one image is unchanged (e.g. a static first video frame); those are counted instead.
    """
    vals = metrics.psnr_per_image(a, b) if vals is None else vals
    finite = [v for v in vals if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.inf
    return mean, len(vals) - len(finite)


def worst_and_changed(vals: list, floor: float = CHANGED_FLOOR_DB):
    """(worst PSNR, its index) over the images, and the indices of the images whose content changed (PSNR below
    ``floor``); (inf, None, []) for no image, (inf, 0, []) when every image is identical."""
    if not vals:
        return math.inf, None, []
    i = min(range(len(vals)), key=lambda k: vals[k])
    return vals[i], i, [k for k, v in enumerate(vals) if v < floor]


def format_scores(
    psnr: float, ssim: float, images: int, identical: int = 0, worst: float = math.inf, worst_index=None, changed=()
) -> str:
    """One line for the UI. A batch is called "images": the node cannot tell a video's frames from a batch."""
    if math.isinf(psnr):
        p = "∞ dB (identical)"
    else:
        p = f"{psnr:.2f} dB"
    notes = []
    if images > 1:
        notes.append(f"mean of {images} images")
    if identical and not math.isinf(psnr):
        notes.append(f"PSNR over the {images - identical} that differ")
    if images > 1 and worst_index is not None and math.isfinite(worst):
        notes.append(f"worst {worst:.2f} dB, image {worst_index + 1}")
    tail = f" ({'; '.join(notes)})" if notes else ""
    line = f"PSNR {p} · SSIM {ssim:.4f}{tail}"
    if changed:
        which = ", ".join(str(k + 1) for k in changed[:8]) + (", ..." if len(changed) > 8 else "")
        line += (
            f" · {len(changed)} image{'s' if len(changed) > 1 else ''} changed content "
            f"(below {CHANGED_FLOOR_DB:g} dB): {which}"
        )
    return line


class Compare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_Compare",
            display_name="Compare to Reference (PSNR / SSIM)",
            category=CATEGORY,
            description="Scores a cached branch against the uncached reference: PSNR and SSIM (scikit-image's "
            "definitions, data range [0, 1], mean over the images of a batch or the frames of a video; PSNR over "
            "the images that differ) and an amplified difference image, previewed as a grid (small "
            "images scaled up sharply). With the pack's web extension it also shows each branch's "
            "sampling time and speed-up.",
            inputs=[
                io.Image.Input("test", tooltip="The images (or video frames) from the cached branch."),
                io.Image.Input(
                    "reference",
                    tooltip="The images (or video frames) from the uncached branch, same size "
                    "and seed. One reference image is compared with every test image.",
                ),
                io.Float.Input(
                    "amplify",
                    display_name="amplify",
                    default=4.0,
                    min=1.0,
                    max=100.0,
                    step=0.5,
                    tooltip="1.0-100.0. Multiplier of |test - reference| in the difference image (black: "
                    "identical). Higher: small differences become visible. Scores are unaffected.",
                ),
            ],
            outputs=[
                io.Float.Output(
                    "psnr",
                    display_name="PSNR",
                    tooltip="Peak signal-to-noise ratio in dB, mean over the images that differ (higher: "
                    "closer to the reference; inf when every image is identical).",
                ),
                io.Float.Output("ssim", display_name="SSIM", tooltip="Structural similarity, up to 1.0 (identical)."),
                io.Image.Output(
                    "difference",
                    display_name="difference",
                    tooltip="clamp(|test - reference| x amplify, 0, 1), one per image, at the images' size "
                    "(the node's preview is a grid of the first 8, scaled up).",
                ),
            ],
            is_output_node=True,
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, test, reference, amplify) -> io.NodeOutput:
        test, reference = match_batches(test, reference)
        a, b = to_metric_space(test), to_metric_space(reference)
        vals = metrics.psnr_per_image(a, b)
        psnr, identical = frame_psnr(a, b, vals)
        worst, worst_index, changed = worst_and_changed(vals)
        ssim = metrics.ssim(a, b)
        diff = difference_image(test, reference, amplify)
        text = format_scores(psnr, ssim, test.shape[0], identical, worst, worst_index, changed)
        hidden = getattr(cls, "hidden", None)
        node_id = getattr(hidden, "unique_id", None)
        payload = {
            "psnr": finite_or_none(psnr),
            "ssim": finite_or_none(ssim),
            "identical_images": identical,
            "images": int(test.shape[0]),
            "previewed": min(int(test.shape[0]), PREVIEW_IMAGES),
            "amplify": float(amplify),
            "text": text,
            "worst_psnr": finite_or_none(worst),
            "worst_index": worst_index,
            "per_image_psnr": [finite_or_none(v) for v in vals],
            "changed": changed,
            "changed_floor_db": CHANGED_FLOOR_DB,
            "node": node_id,
            "prompt_id": current_prompt_id(),
        }
        if node_id is not None:
            LAST_COMPARES[str(node_id)] = payload
        preview = ui.PreviewImage(image_grid(diff[:PREVIEW_IMAGES]), cls=cls).as_dict()
        # JSON for the websocket: no inf/nan (the browser's JSON.parse rejects them)
        ui_out = {**preview, "text": [text], UI_KEY: [payload]}
        return io.NodeOutput(psnr, ssim, diff, ui=ui_out)


class PreviewGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_PreviewGrid",
            display_name="Preview Image Grid (sharp upscale)",
            category=CATEGORY,
            description="Preview a batch of images as one grid, small images scaled up by a whole factor with "
            "nearest neighbour so every pixel stays a sharp square (the tiny bench models' 16x16 and "
            "32x32 samples become 256 px). The grid is also an output; the images are not changed.",
            inputs=[
                io.Image.Input("images", tooltip="The images to show (a batch, or video frames)."),
                io.Int.Input(
                    "columns",
                    display_name="columns",
                    default=0,
                    min=0,
                    max=64,
                    tooltip="0-64. Images per row; 0: chosen so the grid has no empty cell and is about 16:10.",
                ),
                io.Int.Input(
                    "min_size",
                    display_name="min size",
                    default=GRID_MIN_SIZE,
                    min=16,
                    max=1024,
                    step=16,
                    tooltip="16-1024. Each image is scaled up by the smallest whole factor that makes its "
                    "longer side at least this (nearest neighbour); larger images are not scaled. "
                    f"A grid longer than {GRID_MAX_SIDE} px is scaled down to it.",
                ),
            ],
            outputs=[io.Image.Output(display_name="grid", tooltip="The grid as one image.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, columns, min_size) -> io.NodeOutput:
        grid = image_grid(images, columns=columns, min_size=min_size)
        return io.NodeOutput(grid, ui=ui.PreviewImage(grid, cls=cls).as_dict())


NODE_LIST = [Compare, PreviewGrid]
