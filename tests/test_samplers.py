"""web UI 1.10 sampler and schedule names -> diffusers schedulers that sample web UI's sigmas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator import schedules
from generator.samplers import BASES, UnknownSamplerError, make_scheduler, parse_sampler
from guard.webui.infotext import Infotext
from guard.webui.samplers import SCHEDULES, all_choices, describe, resolve

# Stable Diffusion 1.5's scheduler config, as shipped in its model folder
SD15 = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}

EXPECTED = {
    "Euler": "EulerDiscreteScheduler",
    "Euler a": "EulerAncestralDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "DPM++ 2M SDE": "DPMSolverMultistepScheduler",
    "DPM++ 2M SDE Heun": "DPMSolverMultistepScheduler",
    "DPM++ 3M SDE": "DPMSolverMultistepScheduler",
    "DPM++ SDE": "DPMSolverSDEScheduler",
    "DPM++ 2S a": "DPMSolverSinglestepScheduler",
    "DPM2": "KDPM2DiscreteScheduler",
    "DPM2 a": "KDPM2AncestralDiscreteScheduler",
    "Heun": "HeunDiscreteScheduler",
    "LMS": "LMSDiscreteScheduler",
    "DDIM": "DDIMScheduler",
    "PLMS": "PNDMScheduler",
    "UniPC": "UniPCMultistepScheduler",
    "LCM": "LCMScheduler",
    "DDPM": "DDPMScheduler",
    "DEIS": "DEISMultistepScheduler",
}
MODEL = schedules.ModelSigmas(make_scheduler("Euler", SD15).alphas_cumprod.numpy())


def test_every_sampler_is_known_and_keeps_the_model_schedule():
    assert set(BASES) == set(EXPECTED)
    for name, cls in EXPECTED.items():
        sch = make_scheduler(name, SD15)
        assert type(sch).__name__ == cls, name
        assert sch.config.beta_schedule == "scaled_linear"
        assert sch.config.beta_end == pytest.approx(0.012)


def test_algorithm_variants():
    assert make_scheduler("DPM++ 2M", SD15).config.algorithm_type == "dpmsolver++"
    assert make_scheduler("DPM++ 2M SDE", SD15).config.algorithm_type == "sde-dpmsolver++"
    heun = make_scheduler("DPM++ 2M SDE Heun", SD15).config
    assert heun.algorithm_type == "sde-dpmsolver++" and heun.solver_type == "heun"
    assert make_scheduler("DPM++ 3M SDE", SD15).config.solver_order == 3
    assert make_scheduler("PLMS", SD15).config.skip_prk_steps is True
    assert parse_sampler("DPM++ SDE").brownian
    assert parse_sampler("DPM++ 2S a").approximate
    assert not parse_sampler("Euler a").approximate


@pytest.mark.parametrize(
    ("sampler", "schedule", "expected"),
    [
        # web UI 1.10's reading: "Automatic" is the sampler's own default schedule
        ("DPM++ 2M", None, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M", "Automatic", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE", None, ("DPM++ 2M SDE", "Exponential")),
        ("DPM++ 3M SDE", None, ("DPM++ 3M SDE", "Exponential")),
        ("DPM2 a", None, ("DPM2 a", "Karras")),
        ("Euler a", None, ("Euler a", "Automatic")),
        ("UniPC", None, ("UniPC", "Automatic")),
        # legacy combined names and the separate field
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M Karras", "Automatic", ("DPM++ 2M", "Karras")),
        ("Euler a Exponential", None, ("Euler a", "Exponential")),
        ("DPM++ 2M", "Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M", "Uniform", ("DPM++ 2M", "Uniform")),
        ("Euler", "sgm_uniform", ("Euler", "SGM Uniform")),
        ("Euler", "SGMUniform", ("Euler", "SGM Uniform")),
        ("Euler SGM Uniform", None, ("Euler", "SGM Uniform")),
        ("Euler DDIM", None, ("Euler", "DDIM")),
        ("DDIM", None, ("DDIM", "Automatic")),
        # aliases as web UI's API, old scripts and ComfyUI spell them; case and spacing as typed
        ("k_euler_a", None, ("Euler a", "Automatic")),
        ("k_euler_ancestral", None, ("Euler a", "Automatic")),
        ("dpmpp_2m", "karras", ("DPM++ 2M", "Karras")),
        ("k_dpmpp_2m_ka", None, ("DPM++ 2M", "Karras")),
        ("k_dpmpp_2m_sde_heun", None, ("DPM++ 2M SDE Heun", "Exponential")),
        ("  dpm++   2m  karras ", None, ("DPM++ 2M", "Karras")),
        ("deis", "align_your_steps", ("DEIS", "Align Your Steps")),
    ],
)
def test_names_resolve_as_web_ui_reads_them(sampler, schedule, expected):
    c = resolve(sampler, schedule)
    assert (c.name, c.schedule) == expected


def test_infotext_fields_are_web_ui_1_10s():
    assert resolve("DPM++ 2M").infotext_fields() == {
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
    }
    assert resolve("Euler a").infotext_fields() == {
        "Sampler": "Euler a",
        "Schedule type": "Automatic",
    }
    assert resolve("Euler", "Beta").infotext_fields() == {
        "Sampler": "Euler",
        "Schedule type": "Beta",
        "Beta schedule alpha": "0.6",
        "Beta schedule beta": "0.6",
    }
    assert parse_sampler("DPM++ 2M").name == "DPM++ 2M Karras"  # the pre-1.9 spelling


@pytest.mark.slow
def test_every_pair_resolves_samples_and_round_trips_through_the_infotext():
    choices = all_choices()
    pairs = [(c.name, c.schedule) for c in choices]
    assert len(pairs) == len(set(pairs)) > 150
    for choice in choices:
        fields = choice.infotext_fields()
        text = Infotext("a cat", "", {"Steps": "5", **fields, "Seed": "1"}).to_text()
        back = Infotext.parse(text)
        again = resolve(back.params["Sampler"], back.params.get("Schedule type"))
        assert again == choice, choice
        # the legacy spelling means the same
        assert resolve(choice.legacy_name) == choice, choice.legacy_name
        sch = make_scheduler(parse_sampler(choice.name, choice.schedule), SD15)
        assert sch.guard_webui == (choice.name, choice.schedule)
        sch.set_timesteps(5)
        x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
        x = x * sch.init_noise_sigma
        gen = torch.Generator().manual_seed(1)
        for t in sch.timesteps:
            out = 0.1 * sch.scale_model_input(x, t)
            kwargs = {"generator": gen} if "generator" in sch.step.__code__.co_varnames else {}
            x = sch.step(out, t, x, **kwargs).prev_sample
        assert torch.isfinite(x).all(), choice


def _step_sigmas(name: str, schedule: str | None, steps: int) -> np.ndarray:
    sch = make_scheduler(parse_sampler(name, schedule), SD15)
    sch.set_timesteps(steps)
    return sch.sigmas.numpy().astype(np.float64)


def test_the_scheduler_samples_web_uis_sigmas():
    # DPM++ 2M Karras: k-diffusion's Karras over the model's whole sigma range (14.61 .. 0.0292)
    got = _step_sigmas("DPM++ 2M", None, 20)
    assert got[0] == pytest.approx(14.6146, abs=1e-3) and got[-2] == pytest.approx(0.0292, abs=1e-4)
    ramp = np.linspace(0, 1, 20)
    lo, hi = MODEL.sigma_min ** (1 / 7), MODEL.sigma_max ** (1 / 7)
    np.testing.assert_allclose(got[:-1], (hi + ramp * (lo - hi)) ** 7, rtol=1e-5)
    assert got[-1] == 0
    # Euler's Automatic = k-diffusion's own get_sigmas: evenly spaced t from 999 down to 0,
    # interpolated in log sigma (not diffusers' "leading" spacing from the model config)
    euler = _step_sigmas("Euler", None, 10)
    expected = MODEL.t_to_sigma(np.linspace(999, 0, 10))
    np.testing.assert_allclose(euler[:-1], expected, rtol=1e-5)
    np.testing.assert_allclose(_step_sigmas("Euler a", None, 10), euler, rtol=1e-6)


@pytest.mark.parametrize(
    ("sdxl", "table"), [(False, schedules.AYS_SD15), (True, schedules.AYS_SDXL)]
)
def test_align_your_steps_uses_the_published_tables(sdxl, table):
    # web UI uses the table as is only at 11 steps; otherwise it interpolates log-linearly
    eleven = schedules.align_your_steps(11, sdxl)
    assert eleven.tolist() == [*table, 0.0]
    ten = schedules.align_your_steps(10, sdxl)
    assert len(ten) == 11 and ten[0] == pytest.approx(table[0]) and ten[-2] == pytest.approx(0.029)
    assert np.all(np.diff(ten[:-1]) < 0)
    sch = make_scheduler(parse_sampler("Euler", "Align Your Steps"), SD15, sdxl=sdxl)
    sch.set_timesteps(11)
    np.testing.assert_allclose(sch.sigmas.numpy()[:-1], table, rtol=1e-6)


def test_schedule_formulas():
    lo, hi = MODEL.sigma_min, MODEL.sigma_max
    kl = schedules.kl_optimal(4, lo, hi)
    assert kl[0] == pytest.approx(hi) and kl[-1] == pytest.approx(lo)  # ends at sigma_min
    poly = schedules.polyexponential(5, lo, hi)  # rho 1: the exponential schedule
    np.testing.assert_allclose(poly, schedules.exponential(5, lo, hi))
    # Simple picks every len/n-th model sigma from the top; DDIM every 1000//n-th from t = 1 up
    assert schedules.ModelSigmas.simple(MODEL, 4)[:-1].tolist() == [
        MODEL.sigmas[-1],
        MODEL.sigmas[-251],
        MODEL.sigmas[-501],
        MODEL.sigmas[-751],
    ]
    ddim = MODEL.ddim(20)
    assert len(ddim) == 21 and ddim[0] == MODEL.sigmas[951] and ddim[-2] == MODEL.sigmas[1]
    assert len(MODEL.ddim(30)) == 32  # 1000 // 30 = 33 spacing: web UI samples 31 steps
    beta = schedules.beta(5, lo, hi)
    assert beta[0] == pytest.approx(hi) and beta[-2] == pytest.approx(lo) and beta[-1] == 0
    # SGM Uniform and Normal: evenly spaced t, with and without the endpoint
    assert MODEL.sgm_uniform(4)[1] == pytest.approx(float(MODEL.t_to_sigma(np.array(749.25))))
    np.testing.assert_allclose(MODEL.normal(6), MODEL.uniform(6), rtol=1e-9)


def test_discard_penultimate_sigma_for_dpm2_and_3m_sde():
    plain = schedules.sampling_sigmas("Karras", 10, MODEL)
    dropped = schedules.sampling_sigmas("Karras", 10, MODEL, discard_penultimate=True)
    assert len(plain) == len(dropped) == 11
    eleven = schedules.sampling_sigmas("Karras", 11, MODEL)
    np.testing.assert_allclose(dropped, np.concatenate([eleven[:-2], eleven[-1:]]))
    sch = make_scheduler("DPM++ 3M SDE", SD15)
    sch.set_timesteps(10)
    exp11 = schedules.sampling_sigmas("Exponential", 11, MODEL)
    np.testing.assert_allclose(sch.sigmas.numpy()[:-1], exp11[:-2], rtol=1e-5)


def test_a_karras_model_config_does_not_leak_into_other_schedules():
    config = {**SD15, "_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}
    exp = make_scheduler(parse_sampler("DPM++ 2M", "Exponential"), config)
    exp.set_timesteps(8)
    np.testing.assert_allclose(
        exp.sigmas.numpy()[:-1],
        schedules.exponential(8, MODEL.sigma_min, MODEL.sigma_max)[:-1],
        rtol=1e-5,
    )
    ddim = make_scheduler("DDIM", config)
    assert "use_karras_sigmas" not in ddim.config
    ddim.set_timesteps(20)
    assert int(ddim.timesteps[0]) == 951  # the model's own spacing, as web UI's DDIM


@pytest.mark.parametrize("bad", ["Euler b", "DPM++ 4M", "", "Karras", "DPM++ 2M Fast"])
def test_unknown_name_lists_what_is_supported(bad):
    with pytest.raises(UnknownSamplerError) as info:
        parse_sampler(bad)
    message = str(info.value)
    for base in BASES:
        assert base in message
    for schedule in SCHEDULES:
        assert schedule in message


def test_unavailable_and_impossible_combinations_say_why():
    with pytest.raises(UnknownSamplerError, match="DPM fast has no diffusers equivalent"):
        parse_sampler("DPM fast")
    with pytest.raises(UnknownSamplerError, match="DDIMScheduler has a fixed timestep schedule"):
        parse_sampler("DDIM", "Karras")
    with pytest.raises(UnknownSamplerError, match="already says Karras"):
        parse_sampler("DPM++ 2M Karras", "Exponential")
    with pytest.raises(UnknownSamplerError, match="schedule type 'Fast'"):
        parse_sampler("Euler", "Fast")


def test_describe_names_a_foreign_scheduler_as_web_ui_would():
    assert describe("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}) == (
        "DPM++ 2M",
        "Karras",
    )
    assert describe(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}
    ) == ("DPM++ 2M SDE Heun", "Uniform")
    # SD 1.5's "leading" spacing (t = 951, 901, ... 1) is web UI's DDIM schedule
    assert describe("EulerDiscreteScheduler", {"timestep_spacing": "leading"}) == ("Euler", "DDIM")
    assert describe("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}) == (
        "Euler a",
        "SGM Uniform",
    )
    assert describe("PNDMScheduler", {"skip_prk_steps": True}) == ("PLMS", "Automatic")
    assert describe("FlowMatchEulerDiscreteScheduler", {}) == (
        "FlowMatchEulerDiscreteScheduler",
        None,
    )
