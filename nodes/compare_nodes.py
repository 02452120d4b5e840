"""Score a cached branch against the uncached one: PSNR, SSIM and an amplified difference image.

The metrics are :mod:`tcpade_core.metrics` (torch; scikit-image's definitions), the same code the
benchmark uses, so a number in the UI and a number in the README mean the same thing. ComfyUI IMAGE tensors are
``(B, H, W, C)`` in ``[0, 1]``; the metrics take ``(B, C, H, W)`` in ``[-1, 1]``. A video is a batch
of frames: its score is the mean over frames.

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

CATEGORY = "tcpade"
UI_KEY = "tcpade_compare"   # the node's UI payload; read by web/tcpade.js
PREVIEW_FRAMES = 8          # the node previews at most this many difference images (the output has all)


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
        raise ValueError(f"test and reference images differ in size: {test.shape[2]}x{test.shape[1]} vs "
                         f"{reference.shape[2]}x{reference.shape[1]}. Use the same latent size in both branches.")
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


def frame_psnr(a: torch.Tensor, b: torch.Tensor):
    """(mean PSNR over the frames that differ, number of identical frames); inf when all are identical.

    :func:`tcpade_core.metrics.psnr` is +inf for an identical image, so a plain mean over a batch would be
    inf as soon as one frame is unchanged (e.g. a static first frame); those frames are counted instead.
    """
    vals = [metrics.psnr(a[i:i + 1], b[i:i + 1]) for i in range(a.shape[0])]
    finite = [v for v in vals if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.inf
    return mean, len(vals) - len(finite)


def format_scores(psnr: float, ssim: float, frames: int, identical: int = 0) -> str:
    if math.isinf(psnr):
        p = "∞ dB (identical)"
    else:
        p = f"{psnr:.2f} dB"
    notes = []
    if frames > 1:
        notes.append(f"mean of {frames} frames")
    if identical and not math.isinf(psnr):
        notes.append(f"PSNR over the {frames - identical} that differ")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"PSNR {p} · SSIM {ssim:.4f}{tail}"


class Compare(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TCPade_Compare",
            display_name="Compare to Reference (PSNR / SSIM)",
            category=CATEGORY,
            description="Scores a cached branch against the uncached reference: PSNR and SSIM (scikit-image's "
                        "definitions, data range [0, 1], mean over a batch or video frames; PSNR over the frames that differ) and an "
                        "amplified difference image. With the pack's web extension it also shows each branch's "
                        "sampling time and speed-up.",
            inputs=[
                io.Image.Input("test", tooltip="The image (or video frames) from the cached branch."),
                io.Image.Input("reference", tooltip="The image (or video frames) from the uncached branch, same size "
                                                    "and seed. One reference image is compared with every test image."),
                io.Float.Input("amplify", default=4.0, min=1.0, max=100.0, step=0.5,
                               tooltip="1.0-100.0. Multiplier of |test - reference| in the difference image (black: "
                                       "identical). Higher: small differences become visible. Scores are unaffected."),
            ],
            outputs=[
                io.Float.Output("psnr", display_name="PSNR",
                                tooltip="Peak signal-to-noise ratio in dB, mean over the frames that differ (higher: "
                                        "closer to the reference; inf when every frame is identical)."),
                io.Float.Output("ssim", display_name="SSIM", tooltip="Structural similarity, up to 1.0 (identical)."),
                io.Image.Output("difference", display_name="difference",
                                tooltip="clamp(|test - reference| x amplify, 0, 1)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, test, reference, amplify) -> io.NodeOutput:
        test, reference = match_batches(test, reference)
        a, b = to_metric_space(test), to_metric_space(reference)
        psnr, identical = frame_psnr(a, b)
        ssim = metrics.ssim(a, b)
        diff = difference_image(test, reference, amplify)
        text = format_scores(psnr, ssim, test.shape[0], identical)
        payload = {"psnr": finite_or_none(psnr), "ssim": finite_or_none(ssim), "identical_frames": identical,
                   "frames": int(test.shape[0]), "amplify": float(amplify), "text": text}
        preview = ui.PreviewImage(diff[:PREVIEW_FRAMES], cls=cls).as_dict()
        # JSON for the websocket: no inf/nan (the browser's JSON.parse rejects them)
        ui_out = {**preview, "text": [text], UI_KEY: [payload]}
        return io.NodeOutput(psnr, ssim, diff, ui=ui_out)


NODE_LIST = [Compare]
