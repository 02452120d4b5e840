"""What the host's samplers do between model calls, as data: which inject fresh noise, which choose
their own steps. The patcher reads it at the start of a run (the sampler object is the OUTER_SAMPLE
wrapper's third argument: ``KSAMPLER.sampler_function`` and its ``extra_options``); nothing is imported
from the host here.

Families (README "Samplers"):
- ``deterministic``: one model call per step (euler, ddim, ...);
- ``multistep``: one call per step, several past calls combined (dpmpp_2m, uni_pc, ipndm, deis, ...);
- ``two-evaluation``: an extra call inside each step (heun, dpm_2, ...): it follows its step's decision;
- ``stochastic``: fresh noise enters the latent between steps (ancestral and SDE samplers, ddpm, ...);
- ``lcm``: re-noises the denoised latent every step;
- ``adaptive``: picks its own times (dpm_fast, dpm_adaptive), which do not follow the schedule;
- ``unknown``: a sampler not in this table (a newer host's, another pack's): the pack cannot know whether it
  injects noise or picks its own times, so every method computes every step and says why (it holds).

``exp_heun_2_x0`` (ComfyUI 2026) is SEEDS-2 with r = 1 and no noise: a second evaluation at the next step's
sigma, like Heun; ``exp_heun_2_x0_sde`` is the same with noise (eta, s_noise).
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = {
    "deterministic": ("euler", "euler_cfg_pp", "ddim", "gradient_estimation", "gradient_estimation_cfg_pp"),
    "multistep": (
        "lms",
        "dpmpp_2m",
        "dpmpp_2m_cfg_pp",
        "ipndm",
        "ipndm_v",
        "deis",
        "res_multistep",
        "res_multistep_cfg_pp",
        "uni_pc",
        "uni_pc_bh2",
        "unipc",
        "unipc_bh2",
    ),
    "two-evaluation": ("heun", "heunpp2", "dpm_2", "exp_heun_2_x0"),
    "stochastic": (
        "euler_ancestral",
        "euler_ancestral_cfg_pp",
        "dpm_2_ancestral",
        "dpmpp_2s_ancestral",
        "dpmpp_2s_ancestral_cfg_pp",
        "dpmpp_sde",
        "dpmpp_sde_gpu",
        "dpmpp_2m_sde",
        "dpmpp_2m_sde_gpu",
        "dpmpp_2m_sde_heun",
        "dpmpp_2m_sde_heun_gpu",
        "dpmpp_3m_sde",
        "dpmpp_3m_sde_gpu",
        "ddpm",
        "res_multistep_ancestral",
        "res_multistep_ancestral_cfg_pp",
        "er_sde",
        "seeds_2",
        "seeds_3",
        "sa_solver",
        "sa_solver_pece",
        "exp_heun_2_x0_sde",
    ),
    "lcm": ("lcm",),
    "adaptive": ("dpm_fast", "dpm_adaptive"),
}
FAMILY_OF = {name: fam for fam, names in FAMILIES.items() for name in names}
NOISE_OPTIONS = ("eta", "s_noise")  # extra_options that switch the noise off when 0


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    family: str  # one of FAMILIES, or "unknown"

    @property
    def injects_noise(self) -> bool:
        return self.family in ("stochastic", "lcm")

    @property
    def own_steps(self) -> bool:
        return self.family == "adaptive"

    @property
    def unknown(self) -> bool:
        return self.family == "unknown"


def sampler_name(sampler) -> str:
    """The host's name of a KSAMPLER: ``sample_euler_ancestral`` -> ``euler_ancestral``,
    ``dpm_fast_function`` -> ``dpm_fast``; '' for an object without a sampler function."""
    fn = getattr(sampler, "sampler_function", None)
    name = getattr(fn, "__name__", "") or ""
    if name.startswith("sample_"):
        return name[len("sample_") :]
    if name.endswith("_function"):
        return name[: -len("_function")]
    return name


def classify(sampler) -> SamplerInfo:
    name = sampler_name(sampler)
    fam = FAMILY_OF.get(name, "unknown")
    opts = getattr(sampler, "extra_options", None) or {}
    if fam == "stochastic" and any(opts.get(k) == 0 for k in NOISE_OPTIONS):
        fam = "deterministic"  # eta = 0 or s_noise = 0: the sampler adds no noise
    return SamplerInfo(name, fam)
