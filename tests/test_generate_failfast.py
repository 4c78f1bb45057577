"""`guard generate` fails fast: every input is checked before any model loads, and a failed run
leaves no empty output folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli import main
from tests.helpers import art, write


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Loading a model is the expensive step; record any attempt instead of doing it."""
    import generator.models

    loads: list[str] = []

    def refuse(ref, **kwargs):
        loads.append(str(ref))
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(generator.models, "load_model", refuse)
    return loads


def test_an_init_image_that_does_not_decode_fails_before_the_model(
    tmp_path: Path, no_model: list[str]
) -> None:
    bad = tmp_path / "init.png"
    bad.write_bytes(b"not a picture at all" * 50)
    out = tmp_path / "outputs"
    code, _, err = run("generate", "a cat", "--init-image", bad, "-o", out)
    assert code == 2 and str(bad) in err and "Traceback" not in err
    assert no_model == [] and not out.exists()


def test_a_mask_that_does_not_decode_fails_before_the_model(
    tmp_path: Path, no_model: list[str]
) -> None:
    init = write(art(64, 64), tmp_path / "init.png")
    full = write(art(64, 64), tmp_path / "full.png").read_bytes()
    mask = tmp_path / "mask.png"
    mask.write_bytes(full[: len(full) // 2])  # truncated
    out = tmp_path / "outputs"
    code, _, err = run("generate", "a cat", "--init-image", init, "--mask", mask, "-o", out)
    assert code == 2 and str(mask) in err
    assert no_model == [] and not out.exists()


@pytest.mark.parametrize("option", ["--init-image", "--mask"])
def test_an_input_with_an_oversized_text_chunk_is_one_clear_line(
    tmp_path: Path, no_model: list[str], option: str
) -> None:
    """Issue 9 item 4: a PNG whose zTXt chunk inflates past 1 MB goes through guard's loader."""
    from tests.helpers import png_bytes
    from tests.test_verify_hardening import with_big_text

    big = tmp_path / "big.png"
    big.write_bytes(with_big_text(png_bytes(art(64, 64)), b"zTXt"))
    init = big if option == "--init-image" else write(art(64, 64), tmp_path / "init.png")
    extra = ["--mask", big] if option == "--mask" else []
    out = tmp_path / "outputs"
    code, _, err = run("generate", "a cat", "--init-image", init, *extra, "-o", out)
    assert code == 2 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"guard: error: {option}: {big}")
    assert "text chunk 'workflow'" in line
    assert no_model == [] and not out.exists()


@pytest.mark.parametrize("cfg", ["nan", "inf", "-inf"])
def test_cfg_must_be_finite(tmp_path: Path, no_model: list[str], cfg: str) -> None:
    out = tmp_path / "outputs"
    code, _, err = run("generate", "a cat", "--cfg", cfg, "-o", out)
    assert code == 2 and "--cfg" in err
    assert no_model == [] and not out.exists()


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path: Path, monkeypatch) -> None:
    """The model loads, then generation fails: the folder the run created is gone again."""
    import generator.generate
    import generator.models
    from generator.errors import GenerationError

    class Broken:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def generate(self, settings, out_dir, options=None):
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            raise GenerationError("the pipeline failed")

    monkeypatch.setattr(generator.models, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(generator.generate, "Generator", Broken)
    out = tmp_path / "new" / "outputs"
    code, _, err = run("generate", "a cat", "-o", out)
    assert code == 2 and "the pipeline failed" in err
    assert not (tmp_path / "new").exists()
    # a folder that existed before the run is left alone, even if empty
    out.mkdir(parents=True)
    assert run("generate", "a cat", "-o", out)[0] == 2
    assert out.is_dir()


def test_a_prompt_lora_tag_without_its_file_fails_before_the_model(
    tmp_path: Path, no_model: list[str]
) -> None:
    """`<lora:missing:0.7>` with no --lora file of that name is refused like every other input:
    before any model loads, also when another --lora is given."""
    other = tmp_path / "detail.safetensors"
    other.write_bytes(b"not read before the model")
    out = tmp_path / "outputs"
    for extra in ([], ["--lora", other]):
        code, _, err = run("generate", "a cat <lora:missing:0.7>", *extra, "-o", out)
        assert code == 2 and "Traceback" not in err
        [line] = err.strip().splitlines()
        assert line.startswith("guard: error:") and "'missing'" in line and "--lora" in line
    assert no_model == [] and not out.exists()


def test_a_sampler_web_ui_does_not_know_is_a_warning(tmp_path: Path, monkeypatch) -> None:
    """DDPM and DEIS are written as `Sampler: DDPM`, which web UI's paste reads as DPM++ 2M:
    say so once, on stderr, before the run; web UI's own samplers get no warning."""
    import generator.models
    from generator.errors import GenerationError

    def stop(ref, **kwargs):
        raise GenerationError("stopped at the model load")

    monkeypatch.setattr(generator.models, "load_model", stop)
    assert run("keys", "init")[0] == 0  # its first-use lines are not what this test reads
    for name in ("DDPM", "deis"):
        code, stdout, err = run("generate", "a cat", "--sampler", name, "-o", tmp_path / "o")
        assert code == 2 and stdout == ""
        warning, error = err.strip().splitlines()
        assert warning.startswith("guard: warning:") and "web UI" in warning
        assert name.upper() in warning and "DPM++ 2M" in warning
        assert error == "guard: error: stopped at the model load"
    for name in ("Euler a", "DPM++ 2M Karras", "UniPC"):
        code, _, err = run("generate", "a cat", "--sampler", name, "-o", tmp_path / "o")
        assert code == 2 and err == "guard: error: stopped at the model load\n"
