"""web UI sampler names map onto the right diffusers schedulers, keeping the model's own config."""

from __future__ import annotations

import pytest

from generator.samplers import (
    BASES,
    SCHEDULES,
    UnknownSamplerError,
    make_scheduler,
    parse_sampler,
    valid_names,
)

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
}


def test_every_web_ui_sampler_is_known():
    assert set(BASES) == set(EXPECTED)
    for name, cls in EXPECTED.items():
        sch = make_scheduler(name, SD15)
        assert type(sch).__name__ == cls, name
        # the model's noise schedule is kept whatever the sampler
        assert sch.config.beta_schedule == "scaled_linear"
        assert sch.config.beta_end == pytest.approx(0.012)


def test_algorithm_variants():
    assert make_scheduler("DPM++ 2M", SD15).config.algorithm_type == "dpmsolver++"
    assert make_scheduler("DPM++ 2M SDE", SD15).config.algorithm_type == "sde-dpmsolver++"
    assert make_scheduler("PLMS", SD15).config.skip_prk_steps is True
    assert parse_sampler("DPM++ SDE").brownian
    assert parse_sampler("DPM++ 2S a").approximate
    assert not parse_sampler("Euler a").approximate


@pytest.mark.parametrize(
    ("name", "flag", "value"),
    [
        ("DPM++ 2M Karras", "use_karras_sigmas", True),
        ("DPM++ 2M Exponential", "use_exponential_sigmas", True),
        ("Euler SGM Uniform", "timestep_spacing", "trailing"),
        ("dpm++ 2m karras", "use_karras_sigmas", True),  # case and spacing as people type them
        ("  DPM++   2M  Karras ", "use_karras_sigmas", True),
    ],
)
def test_schedule_suffixes(name, flag, value):
    s = parse_sampler(name)
    assert s.schedule is not None
    assert getattr(make_scheduler(s, SD15).config, flag) == value


def test_newer_web_ui_writes_schedule_type_separately():
    s = parse_sampler("DPM++ 2M", "Karras")
    assert s.name == "DPM++ 2M Karras"
    assert parse_sampler("Euler a", "Automatic").name == "Euler a"


def test_plain_name_resets_a_karras_model_config():
    """A model that ships Karras sigmas still gets the plain schedule for 'DPM++ 2M'."""
    config = {**SD15, "_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}
    assert make_scheduler("DPM++ 2M", config).config.use_karras_sigmas is False
    assert make_scheduler("DPM++ 2M Karras", config).config.use_karras_sigmas is True


def test_karras_sigmas_differ_from_default():
    plain = make_scheduler("DPM++ 2M", SD15)
    karras = make_scheduler("DPM++ 2M Karras", SD15)
    plain.set_timesteps(10)
    karras.set_timesteps(10)
    assert not (plain.sigmas == karras.sigmas).all()


def test_sgm_uniform_starts_at_the_last_training_step():
    sch = make_scheduler("Euler SGM Uniform", SD15)
    sch.set_timesteps(4)
    assert int(sch.timesteps[0]) == 999


def test_every_valid_name_builds_and_sets_timesteps():
    names = valid_names()
    assert len(names) == len(set(names))
    for name in names:
        sch = make_scheduler(name, SD15)
        sch.set_timesteps(4)
        assert len(sch.timesteps) >= 4, name
    assert "DPM++ 2M Karras" in names and "Euler a SGM Uniform" in names


@pytest.mark.parametrize("bad", ["Euler b", "DPM++ 3M", "", "Karras", "DPM++ 2M Fast"])
def test_unknown_name_lists_the_valid_ones(bad):
    with pytest.raises(UnknownSamplerError) as info:
        parse_sampler(bad)
    message = str(info.value)
    for base in BASES:
        assert base in message
    for schedule in SCHEDULES:
        assert schedule in message


def test_unsupported_combination_says_why():
    with pytest.raises(UnknownSamplerError, match="EulerAncestralDiscreteScheduler has no Karras"):
        parse_sampler("Euler a Karras")
    with pytest.raises(UnknownSamplerError, match="schedule type 'Exponential'"):
        parse_sampler("DPM++ 2M Karras", "Exponential")
