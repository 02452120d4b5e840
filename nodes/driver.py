"""Drive a :class:`tcpade_core.CacheRun` from host callbacks: steps from sigmas, a split decide/record API.

The engine's public call ``run(stream, h, run_fn)`` wants a closure around the whole block stack. The
host gives us per-block patches instead, so the stack is entered at its first block and left at its
last one. :class:`StackDriver` splits the engine call into :meth:`enter` (decide; predict on a
skipped step) and :meth:`leave` (record a computed step), on top of the engine's split API
(:meth:`CacheRun.enter` / :meth:`CacheRun.leave`), adding the host's step bookkeeping and counters.

Several streams (cond / uncond, one per ``transformer_options["uuids"]`` entry) share one batched
forward, so one decision covers the whole batch: if any stream cannot be predicted yet the whole
batch computes, and the step is reported as computed (reason ``forced (...)``).

Steps. A model call begins engine step ``i`` when its sigma equals ``sample_sigmas[i]`` for an
``i`` beyond the current step. Any other call is an *extra* evaluation (Heun's and dpmpp_2s'
second evaluation, SkipLayerGuidance's extra pass, ...):

- at a sigma inside the current step's interval ``[sigma[i+1], sigma[i]]``, or at the current
  step's sigma again, it follows the step's decision (computed: full compute; skipped: predicted
  from the same history with its own input), and is never recorded in the history, so the history
  holds exactly one entry per computed step;
- anywhere else (a sampler that revisits the schedule), it computes in full and touches no state.

Heun's corrector of step ``i`` runs at ``sigma[i+1]`` and therefore begins step ``i+1``; the
predictor evaluation of step ``i+1`` at the same sigma is then an extra evaluation of that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch

from ..tcpade_core import CacheRun, RunReport


def match_index(sigmas: Sequence[float], sigma: float, rel: float = 1e-5) -> Optional[int]:
    """The first index ``i < len(sigmas) - 1`` with ``sigmas[i] == sigma`` (to a relative tolerance), or None."""
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        if s == sigma or abs(s - sigma) <= rel * max(abs(s), abs(sigma), 1e-12):
            return i
    return None


WINDOW_TOL = 1e-5  # relative tolerance of the sigma window boundaries (sample_sigmas are float32)


def in_window(sigma: float, start_sigma: float, end_sigma: float) -> bool:
    """The cache may skip a step at ``sigma`` when ``end_sigma < sigma <= start_sigma`` (the host's EasyCache
    convention), both comparisons to a relative tolerance of ``WINDOW_TOL``: a step whose sigma *is* a
    boundary may sit just above it in float32."""
    le = lambda s, bound: s <= bound + WINDOW_TOL * max(abs(bound), 1e-12)
    return le(sigma, start_sigma) and not le(sigma, end_sigma)


@dataclass
class CallCtx:
    """What the first block of one forward call hands to the blocks after it."""

    streams: List[str]
    inputs: List[torch.Tensor]  # stack input per stream (image tokens)
    predicted: Optional[torch.Tensor]  # the stack output on a skipped call, else None
    img_len: int = 0
    packed: object = None  # families.Packed of a tuple stream (LTX-2), else None


@dataclass
class Counters:
    model_calls: int = 0  # model evaluations seen by the run
    computed_sigmas: List[float] = field(default_factory=list)  # sigma of every call that ran the stack
    unscheduled: int = 0  # calls outside the schedule (always computed)
    streams_seen: List[str] = field(default_factory=list)  # cond / uncond streams, in order of appearance
    computed_seconds: List[float] = field(default_factory=list)  # wall time of each model call that ran the stack
    skipped_seconds: List[float] = field(default_factory=list)  # ... and of each call that predicted it

    def timing(self) -> dict:
        """This run's wall-clock estimate, from its own calls only: the mean time of a call that ran the stack
        (the run's first call left out when there are others: it carries the warm-up) and of a call that
        predicted it, and the speed-up they imply over computing every call. Values are None when unknown."""
        comp = self.computed_seconds[1:] if len(self.computed_seconds) > 1 else self.computed_seconds
        c = sum(comp) / len(comp) if comp else None
        s = sum(self.skipped_seconds) / len(self.skipped_seconds) if self.skipped_seconds else None
        nc, ns = len(self.computed_seconds), len(self.skipped_seconds)
        est = None
        if c is not None and c > 0 and (ns == 0 or s is not None):
            est = (nc + ns) * c / (nc * c + ns * (s or 0.0))
        basis = (
            (
                "this run's own model calls: mean of the computed calls"
                + (" after the first" if len(comp) < nc else "")
                + (" and of the skipped ones" if ns else "")
            )
            if c is not None
            else ""
        )
        return {"computed_s": c, "skipped_s": s, "estimated_speedup": est, "basis": basis}


class StackDriver:
    """One per sampling run (and per model): owns the run's CacheRun and its step bookkeeping.

    Everything the run needs is given here: the engine config (with its speed target; ``target_speedup``, when
    given, replaces it), the schedule (``sigmas``, ``sigma_max``),
    the start/end window in sigma, where the stack is (``layout``; None: cache the whole model output),
    the host's diffusion model (read only) and its output channels.
    """

    def __init__(
        self,
        cfg,
        sigmas: Sequence[float],
        sigma_max: float,
        window: Tuple[float, float],
        layout=None,
        dm=None,
        out_channels: Optional[int] = None,
        store_device: Optional[str] = None,
        label: str = "TC-Padé",
        target_speedup: Optional[float] = None,
    ):
        self.sigmas = [float(s) for s in sigmas]
        self.num_steps = max(len(self.sigmas) - 1, 0)
        self.sigma_max = (
            float(sigma_max)
            if sigma_max and math.isfinite(sigma_max) and sigma_max > 0
            else max(self.sigmas[:1] or [1.0])
        )
        self.start_sigma, self.end_sigma = (float(w) for w in window)
        self.run = CacheRun(cfg, store_device=store_device, target_speedup=target_speedup)
        self.leading_blocks = self.run.leading_blocks  # blocks that run on every step, ahead of the cached stack
        # the stack's input before the leading blocks, for a gate that reads their residual (patcher.LeadingInput)
        self.lead_input: Optional[torch.Tensor] = None
        self.layout = layout
        self.dm = dm
        self.out_channels = out_channels
        self.label = label
        self.index: Optional[int] = None
        self.mode = "idle"  # "step" (first call of a step), "extra", "full", "idle"
        self.ctx: Optional[CallCtx] = None
        self.model_ctx = None  # model-level fallback: (streams, inputs) of the running call
        self.counters = Counters()
        self.current_sigma: Optional[float] = None
        self.disabled = False  # model-level fallback: the output did not match the input
        self.unsupported: Optional[str] = None  # why the pack cannot cache this model's inputs (then it holds)
        self.wrapper_calls = 0  # calls that reached the DIFFUSION_MODEL wrapper (torch.compile may bypass it)
        self.block_entries = 0  # calls that reached the stack's first block patch
        self.recompiled = False  # the compiled graphs were reset once in this run (see patcher)
        self.inactive: Optional[str] = None  # why the cache never ran in this run (reported, never 0/0)
        self.last_to: Optional[dict] = None
        self.recorder = None  # calibration: nodes.calibration.Recorder
        self._rec_stream: Optional[str] = None

    # ---------------------------------------------------------------- step bookkeeping
    def t_of(self, sigma: float) -> float:
        return max(0.0, min(1.0, sigma / self.sigma_max)) if self.sigma_max > 0 else 0.0

    def on_model_call(self, sigma: float) -> str:
        """Called once per model evaluation (the CALC_COND_BATCH wrapper). Returns the call's mode."""
        self.counters.model_calls += 1
        self.current_sigma = sigma
        i = match_index(self.sigmas, sigma)
        if i is None and self.index is None and self.num_steps >= 1 and self._first_offset(sigma):
            i = 0
        if i is not None and (self.index is None or i > self.index):
            self.index = i
            s = self.sigmas[i]
            self.run.begin_step(
                i, self.num_steps, self.t_of(sigma), active=in_window(s, self.start_sigma, self.end_sigma)
            )
            self.mode = "step"
            self._rec_stream = None
        elif self.index is not None and (i == self.index or self._inside_step(sigma)):
            self.mode = "extra"
        else:
            self.mode = "full"
        return self.mode

    def _first_offset(self, sigma: float) -> bool:
        """The first call of a run at a sigma a sampler moved slightly off ``sigmas[0]`` (the host's SDE samplers
        start flow models at ``percent_to_sigma(1e-4)`` instead of 1): still step 0 while it lies above
        ``sigmas[1]`` and within 1 % of ``sigmas[0]``."""
        s0 = self.sigmas[0]
        s1 = self.sigmas[1] if len(self.sigmas) > 1 else 0.0
        return s1 < sigma <= s0 * (1 + 1e-5) and sigma >= s0 * 0.99

    def _inside_step(self, sigma: float) -> bool:
        hi = self.sigmas[self.index]
        lo = self.sigmas[self.index + 1] if self.index + 1 < len(self.sigmas) else 0.0
        return lo <= sigma <= hi

    # ---------------------------------------------------------------- split engine API
    def enter(
        self, streams: List[str], inputs: List[torch.Tensor], modulated_fn=None, lead: int = 0, leading_fn=None
    ) -> Optional[List[torch.Tensor]]:
        """At the stack's first block. Returns None to compute the stack, else the predicted outputs.

        ``lead``: index of the stream that decides for the step (the first cond; ``modulated_fn`` is its input,
        ``leading_fn`` the (input, output) of its leading blocks).
        """
        run = self.run
        if self.mode in ("idle", "full") or run.step is None:
            self.counters.computed_sigmas.append(self.current_sigma)  # outside the schedule: always computes
            self.counters.unscheduled += 1
            return None
        self.counters.streams_seen.extend(s for s in streams if s not in self.counters.streams_seen)
        if self.recorder is not None and self.mode == "step" and self._rec_stream is None:
            self._rec_stream = streams[lead]
            self.recorder.enter(run.step.t, inputs[lead], modulated_fn)
        out = run.enter(streams, inputs, modulated_fn, lead, leading_fn)
        if out is None:
            self.counters.computed_sigmas.append(self.current_sigma)
        return out

    def leave(self, streams: List[str], inputs: List[torch.Tensor], outputs: List[torch.Tensor]) -> None:
        """At the stack's last block of a computed call: record each stream once per step."""
        if self.mode in ("idle", "full") or self.run.step is None:
            return
        if self._rec_stream in streams:
            self.recorder.leave(outputs[streams.index(self._rec_stream)])
            self._rec_stream = None
        self.run.leave(streams, inputs, outputs)

    def finish(self, interrupted: bool = False) -> RunReport:
        """The run's report (``interrupted``: the sampler stopped early); every cached tensor is dropped."""
        self.ctx = self.model_ctx = self.lead_input = None
        report = self.run.end_run()
        report.planned_steps = self.num_steps
        report.interrupted = interrupted
        c = self.counters
        if self.inactive is not None or (c.model_calls and not report.steps):
            report.inactive = self.inactive or "the model never reached the pack's hooks"
        if c.model_calls != report.num_steps:  # several evaluations per step: say what really ran
            report.model_calls, report.stack_calls = c.model_calls, len(c.computed_sigmas)
        self.run.reset()
        return report
