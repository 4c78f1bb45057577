"""web UI 1.10's schedule types as sigma lists, computed from the model's own noise schedule.

diffusers implements Karras, Exponential and Beta, but from the spaced timesteps of the model's
config (so "Karras" starts below sigma_max with SD 1.5's "leading" spacing), and it has no Uniform
in web UI's sense (log-sigma interpolation at evenly spaced t), Simple, Normal, DDIM, KL Optimal,
Polyexponential or Align Your Steps. These follow the published formulas that web UI runs
(modules/sd_schedulers.py and k-diffusion's get_sigmas_*), so a web UI schedule gives the same
sigmas here; generator/samplers.py hands them to the diffusers scheduler.

Each function returns the sampling sigmas *including* web UI's final value (0, or sigma_min for KL
Optimal), as a float64 numpy array.
"""

from __future__ import annotations

import numpy as np

# NVIDIA's published Align Your Steps sigmas (10 steps), as web UI ships them
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)


class ModelSigmas:
    """The model's discrete noise levels, sigma_t = sqrt((1 - alphabar_t) / alphabar_t), with
    k-diffusion's conversions between a sigma and a (fractional) timestep."""

    def __init__(self, alphas_cumprod: np.ndarray) -> None:
        acp = np.asarray(alphas_cumprod, dtype=np.float64)
        self.sigmas = np.sqrt((1 - acp) / acp)
        self.log_sigmas = np.log(self.sigmas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_to_sigma(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        low = np.floor(t).astype(int)
        high = np.ceil(t).astype(int)
        w = t - low
        return np.exp((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high])

    def sigma_to_t(self, sigma: float) -> float:
        log_sigma = np.log(sigma)
        dists = log_sigma - self.log_sigmas
        low = int(np.clip(np.cumsum(dists >= 0).argmax(), 0, len(self.log_sigmas) - 2))
        low_s, high_s = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = np.clip((low_s - log_sigma) / (low_s - high_s), 0, 1)
        return float((1 - w) * low + w * (low + 1))

    # -- schedules that need the model's table ------------------------------------------------------
    def uniform(self, n: int) -> np.ndarray:
        t = np.linspace(len(self.sigmas) - 1, 0, n)
        return np.append(self.t_to_sigma(t), 0.0)

    def sgm_uniform(self, n: int) -> np.ndarray:
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return np.append(self.t_to_sigma(np.linspace(start, end, n + 1)[:-1]), 0.0)

    def normal(self, n: int) -> np.ndarray:
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return np.append(self.t_to_sigma(np.linspace(start, end, n)), 0.0)

    def simple(self, n: int) -> np.ndarray:
        step = len(self.sigmas) / n
        return np.append([self.sigmas[-(1 + int(x * step))] for x in range(n)], 0.0)

    def ddim(self, n: int) -> np.ndarray:
        step = max(len(self.sigmas) // n, 1)
        picked = self.sigmas[1::step][::-1]
        return np.append(picked, 0.0)


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return np.append((hi + ramp * (lo - hi)) ** rho, 0.0)


def exponential(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    return np.append(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), n)), 0.0)


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> np.ndarray:
    ramp = np.linspace(1, 0, n) ** rho
    return np.append(
        np.exp(ramp * (np.log(sigma_max) - np.log(sigma_min)) + np.log(sigma_min)), 0.0
    )


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    i = np.arange(n + 1) / n
    return np.tan(i * np.arctan(sigma_min) + (1.0 - i) * np.arctan(sigma_max))


def beta(n: int, sigma_min: float, sigma_max: float, alpha: float = 0.6, b: float = 0.6):
    from scipy import stats

    ppf = stats.beta.ppf(1 - np.linspace(0, 1, n), alpha, b)
    return np.append(sigma_min + ppf * (sigma_max - sigma_min), 0.0)


def align_your_steps(n: int, sdxl: bool) -> np.ndarray:
    """The published 10-step table, log-linearly interpolated to n steps as web UI does (web UI
    interpolates unless n equals the table's length, 11)."""
    table = np.array(AYS_SDXL if sdxl else AYS_SD15)
    if n == len(table):
        return np.append(table, 0.0)
    xs = np.linspace(0, 1, len(table))
    ys = np.log(table[::-1])
    interpolated = np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]
    return np.append(interpolated, 0.0)


def sigmas_for(label: str, n: int, model: ModelSigmas, sdxl: bool = False) -> np.ndarray:
    """web UI's sigmas for schedule `label` and n steps ("Automatic" = "Uniform" here)."""
    lo, hi = model.sigma_min, model.sigma_max
    table = {
        "Automatic": lambda: model.uniform(n),
        "Uniform": lambda: model.uniform(n),
        "Karras": lambda: karras(n, lo, hi),
        "Exponential": lambda: exponential(n, lo, hi),
        "Polyexponential": lambda: polyexponential(n, lo, hi),
        "SGM Uniform": lambda: model.sgm_uniform(n),
        "KL Optimal": lambda: kl_optimal(n, lo, hi),
        "Align Your Steps": lambda: align_your_steps(n, sdxl),
        "Simple": lambda: model.simple(n),
        "Normal": lambda: model.normal(n),
        "DDIM": lambda: model.ddim(n),
        "Beta": lambda: beta(n, lo, hi),
    }
    return np.asarray(table[label](), dtype=np.float64)


def sampling_sigmas(
    label: str, steps: int, model: ModelSigmas, *, sdxl: bool = False, discard_penultimate=False
) -> np.ndarray:
    """The sigmas web UI samples `steps` steps with, final value included.

    With discard_penultimate (DPM2, DPM2 a, DPM++ 3M SDE) web UI computes one step more and drops
    the next-to-last sigma, as its KDiffusionSampler.get_sigmas does.
    """
    if discard_penultimate:
        s = sigmas_for(label, steps + 1, model, sdxl)
        return np.concatenate([s[:-2], s[-1:]])
    return sigmas_for(label, steps, model, sdxl)
