"""The `guard` command as a user and a script see it: outputs, messages, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.ledger import Ledger
from tests.helpers import art, make_chain, png_bomb, sha256, write


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    return write(art(), tmp_path / "art.png")


def test_sign_then_verify_human_and_json(picture: Path) -> None:
    code, out, err = run("sign", picture, "--no-watermark", "--author", "Ada", "--source", "ai")
    assert code == 0, err
    signed = picture.with_name("art.signed.png")
    assert f"{signed}" in out
    assert "created a signing identity" in err  # said once, on first use
    code, out, _ = run("verify", signed, "--no-watermark")
    assert code == 0
    assert "TRUSTED" in out and "AI-generated" in out and "AI training not allowed" in out
    code, out, _ = run("verify", signed, "--no-watermark", "--json")
    [report] = json.loads(out)
    assert report["file"] == str(signed)
    assert report["c2pa"]["state"] == "trusted"
    assert report["c2pa"]["signer"]["subject"]
    assert report["c2pa"]["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert report["c2pa"]["training_mining"]["cawg.ai_training"] == "notAllowed"
    assert report["c2pa"]["failures"] == []
    assert report["xmp"]["digital_source_type"] == report["c2pa"]["digital_source_type"]
    assert report["xmp"]["data_mining"].endswith("DMI-PROHIBITED-AIMLTRAINING")
    code, _, err = run("sign", picture, "--no-watermark")
    assert "created a signing identity" not in err


def test_output_options_and_no_overwrite(picture: Path, tmp_path: Path) -> None:
    assert run("sign", picture, "-o", tmp_path / "x.jpg", "--no-watermark")[0] == 0
    assert (tmp_path / "x.jpg").read_bytes()[:2] == b"\xff\xd8"  # format follows -o
    code, _, err = run("sign", picture, "-o", tmp_path / "x.jpg", "--no-watermark")
    assert code == 2 and "already exists" in err and "--force" in err
    assert run("sign", picture, "-o", tmp_path / "x.jpg", "--no-watermark", "--force")[0] == 0
    code, _, _ = run("sign", picture, "--out-dir", tmp_path / "signed", "--no-watermark")
    assert code == 0 and (tmp_path / "signed" / "art.signed.png").exists()


def test_sign_output_creates_its_missing_folder(picture: Path, tmp_path: Path) -> None:
    """`sign -o newdir/x.png` creates the folder, as `sign --out-dir`, `protect -o` and
    `generate -o` do."""
    from guard.verdict import verify

    out = tmp_path / "new" / "deeper" / "x.png"
    code, stdout, err = run("sign", picture, "-o", out, "--no-watermark")
    assert code == 0, err
    assert str(out) in stdout and verify(out, watermark=False).ok
    # a bad input creates no folder
    bad = write(art(), tmp_path / "bad.png")
    bad.write_bytes(b"not a picture" * 20)
    code, _, err = run("sign", bad, "-o", tmp_path / "other" / "x.png", "--no-watermark")
    assert code == 2 and str(bad) in err and not (tmp_path / "other").exists()


def test_force_never_overwrites_the_input(picture: Path) -> None:
    before = sha256(picture)
    code, _, err = run("sign", picture, "-o", picture, "--force", "--no-watermark")
    assert code == 2 and "input" in err
    assert sha256(picture) == before


def test_verify_exit_codes(picture: Path, tmp_path: Path) -> None:
    run("sign", picture, "--no-watermark")
    signed = picture.with_name("art.signed.png")
    assert run("verify", signed, "--no-watermark")[0] == 0
    assert run("verify", picture, "--no-watermark")[0] == 1  # absent
    code, out, _ = run("verify", signed, picture, "--no-watermark", "--json")
    assert code == 1
    assert [r["c2pa"]["state"] for r in json.loads(out)] == ["trusted", "absent"]
    assert run("verify", tmp_path / "missing.png")[0] == 2


def test_verify_walks_folders(picture: Path, tmp_path: Path) -> None:
    run("sign", picture, "--no-watermark")
    (tmp_path / "notes.txt").write_text("not an image, not walked")
    code, out, _ = run("verify", tmp_path, "--no-watermark", "--json")
    assert sorted(Path(r["file"]).name for r in json.loads(out)) == ["art.png", "art.signed.png"]
    assert code == 1


def test_verify_of_a_folder_without_images_is_an_input_error(tmp_path: Path) -> None:
    """ "Nothing to check" must not look like "everything checked out" (exit 0, empty list)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    code, out, err = run("verify", empty, "--json")
    assert code == 2
    assert "no images" in err and str(empty) in err
    assert out.strip() == ""


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    frames = [art(40, 40, seed=i) for i in range(2)]
    anim = tmp_path / "anim.png"
    frames[0].save(anim, "PNG", save_all=True, append_images=frames[1:])
    full = tmp_path / "full.png"
    art().save(full)
    cases = {
        "empty": b"",
        "text": b"hello, I am a text file\n" * 20,
        "bomb": png_bomb(),
        "truncated": full.read_bytes()[:4000],
    }
    paths = {name: tmp_path / f"{name}.png" for name in cases}
    for name, data in cases.items():
        paths[name].write_bytes(data)
    paths["animated"] = anim
    return paths


@pytest.mark.parametrize("command", ["sign", "verify"])
def test_bad_inputs_exit_2_with_one_line_and_stay_untouched(tmp_path: Path, command: str) -> None:
    for name, path in _bad_inputs(tmp_path).items():
        before = sha256(path)
        code, out, err = run(command, path)
        assert code == 2, (name, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("guard: error:") and str(path) in lines[0], (
            name
        )
        assert "Traceback" not in err
        assert sha256(path) == before
        assert not list(tmp_path.glob(f"{name}.signed*"))


def test_keys_init_show_export_and_trust(tmp_path: Path) -> None:
    code, out, _ = run("keys", "init", "--name", "Ada Lovelace", "--org", "Analytical", "--json")
    info = json.loads(out)
    assert code == 0 and "CN=Ada Lovelace" in info["subject"] and "O=Analytical" in info["subject"]
    assert run("keys", "init")[0] == 2  # refuses to replace without --force
    code, out, _ = run("keys", "show")
    assert code == 0 and "Ada Lovelace" in out and "PRIVATE" not in out
    code, out, _ = run("keys", "export-ca")
    assert out.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in out
    ca_file = tmp_path / "ca.pem"
    assert run("keys", "export-ca", "-o", ca_file)[0] == 0 and ca_file.read_text() == out

    # trusting a foreign CA turns its signatures from valid into trusted
    chain, key, foreign_ca = make_chain(tmp_path)
    pic = write(art(), tmp_path / "p.png")
    run("sign", pic, "--cert", chain, "--key", key, "--no-watermark")
    signed = tmp_path / "p.signed.png"
    assert (
        json.loads(run("verify", signed, "--json", "--no-watermark")[1])[0]["c2pa"]["state"]
        == "valid"
    )
    assert run("verify", signed, "--trust", foreign_ca, "--no-watermark")[0] == 0
    assert run("keys", "trust", foreign_ca)[0] == 0
    assert (
        json.loads(run("verify", signed, "--json", "--no-watermark")[1])[0]["c2pa"]["state"]
        == "trusted"
    )


def test_cert_without_key_is_a_usage_error(picture: Path, tmp_path: Path) -> None:
    chain, _, _ = make_chain(tmp_path)
    code, _, err = run("sign", picture, "--cert", chain)
    assert code == 2 and "--cert and --key go together" in err


def test_unknown_source_is_a_usage_error(picture: Path) -> None:
    code, _, err = run("sign", picture, "--source", "painting")
    assert code == 2 and "digital-art" in err


def test_verify_help_does_not_import_torch_or_diffusers() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from guard.cli import main\n"
        "r = CliRunner().invoke(main, ['verify', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'diffusers', 'onnxruntime', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_verify_without_a_bar_or_the_mark_never_imports_tqdm_or_numpy(tmp_path: Path) -> None:
    """Logs and pipes get no bar, so they need no tqdm: 30 ms of every start (a folder of 50
    files takes 0.4 s in all). Without the watermark check nothing needs NumPy (70 ms more)."""
    for i in range(5):  # five files: a bar would be drawn on a terminal
        art(96, 80, seed=i).save(tmp_path / f"{i}.png")
    code = (
        "import sys\n"
        "from guard.cli import main\n"
        f"sys.argv = ['guard', 'verify', '--no-watermark', {str(tmp_path)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, 'tqdm' in sys.modules, 'numpy' in sys.modules,\n"
        "          file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "exit 1 False False", result.stderr
    assert result.stdout.count(": ABSENT — no Content Credentials") == 5  # every verdict printed


def test_library_api_imports_without_torch() -> None:
    code = (
        "import sys, guard\n"
        "guard.sign, guard.verify, guard.Identity, guard.Verdict\n"
        "print(','.join(m for m in ('torch', 'diffusers') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_batch_outputs_never_collide(tmp_path: Path) -> None:
    """Two inputs that would be written to one name: refused before any work, even with --force."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write(art(seed=1), tmp_path / "a" / "pic.png")
    second = write(art(seed=2), tmp_path / "b" / "pic.png")
    out = tmp_path / "out"
    code, _, err = run("sign", first, second, "--out-dir", out, "--force")
    assert code == 2 and "Traceback" not in err
    assert str(out / "pic.signed.png") in err and str(first) in err and str(second) in err
    assert not (out / "pic.signed.png").exists()
    with Ledger() as ledger:
        assert len(ledger) == 0  # no work was done
    code, _, err = run("sign", first, first, "--out-dir", out, "--force", "--no-watermark")
    assert code == 2 and str(out / "pic.signed.png") in err


def test_sidecars_collide_too(tmp_path: Path) -> None:
    png = write(art(seed=1), tmp_path / "pic.png")
    jpg = write(art(seed=2), tmp_path / "pic.jpg", "JPEG")
    code, _, err = run("sign", png, jpg, "--sidecar", "--out-dir", tmp_path / "o", "--no-watermark")
    assert code == 2 and "pic.signed.c2pa" in err
    assert not (tmp_path / "o" / "pic.signed.png").exists()


def test_a_batch_never_overwrites_its_own_inputs(tmp_path: Path) -> None:
    pic = write(art(seed=1), tmp_path / "pic.png")
    other = write(art(seed=2), tmp_path / "pic.signed.png")  # an input, and pic.png's output name
    before = sha256(other)
    code, _, err = run("sign", pic, other, "--force", "--no-watermark")
    assert code == 2 and "input" in err and str(other) in err
    assert sha256(other) == before


def test_watermark_embed_never_replaces_its_input(tmp_path: Path) -> None:
    """The output named as a hard link of the input is the input: refused even with --force
    (it was replaced before: only a path comparison guarded it)."""
    import os

    pic = write(art(), tmp_path / "pic.png")
    link = tmp_path / "link.png"
    os.link(pic, link)
    before = sha256(pic)
    code, _, err = run("watermark", "embed", pic, "-o", link, "--force")
    assert code == 2 and "is an input of this run" in err and "Traceback" not in err
    assert link.samefile(pic) and sha256(pic) == before
    code, _, err = run("watermark", "embed", pic, "-o", tmp_path / "." / "pic.png", "--force")
    assert code == 2 and sha256(pic) == before


def test_info_json_is_a_list_for_one_image_too(tmp_path: Path) -> None:
    """One shape per command, as verify, sign and generate: a list, whatever the input count."""
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5")
    made = write(art(32, 32), tmp_path / "made.png", pnginfo=meta)
    plain = write(art(32, 32), tmp_path / "plain.png")
    code, out, _ = run("info", made, "--json")
    assert code == 0
    [report] = json.loads(out)
    assert report["file"] == str(made) and report["found"] and report["seed"] == 5
    code, out, _ = run("info", plain, "--json")
    assert code == 1 and json.loads(out) == [{"file": str(plain), "found": False}]
    code, out, _ = run("info", made, plain, "--json")
    assert code == 1 and [r["found"] for r in json.loads(out)] == [True, False]


def test_verify_and_info_report_each_file_of_a_batch(tmp_path: Path) -> None:
    """The shared per-file loop: a bad file is one line (or its JSON entry) and the rest go on;
    exit 2 when a file failed, else as documented (verify 0/1, info 1 when one has none)."""
    good = write(art(), tmp_path / "good.png")
    run("sign", good, "--no-watermark")
    signed = tmp_path / "good.signed.png"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture" * 20)
    code, out, err = run("verify", signed, bad, "--no-watermark")
    assert code == 2 and "TRUSTED" in out.upper()
    assert [line for line in err.splitlines() if line.startswith("guard: error:")] == [
        line for line in err.splitlines() if str(bad) in line
    ]
    code, out, _ = run("verify", bad, "--json")
    assert code == 2 and json.loads(out) == [
        {"file": str(bad), "error": json.loads(out)[0]["error"]}
    ]
    assert str(bad) in json.loads(out)[0]["error"]
    code, out, err = run("info", bad, good, "--json")
    assert code == 2 and json.loads(out) == [{"file": str(good), "found": False}]
    assert err.strip().startswith("guard: error:") and str(bad) in err
    assert run("info", good)[0] == 1


# ---- one meaning per flag ---------------------------------------------------------------------
def test_watermark_key_is_one_option_everywhere_and_key_is_the_signing_key(tmp_path: Path) -> None:
    """--key is the PEM key beside --cert; the watermark key is --watermark-key in every command
    that marks or reads a mark. verify, scan and watermark once took --key for it: still taken,
    with a deprecation warning, for one release."""
    pic, wm_key = tmp_path / "in.png", tmp_path / "wm.key"
    write(art(320, 320), pic)
    wm_key.write_bytes(b"platform secret\n")
    signed = tmp_path / "signed.png"
    code, out, err = run("sign", pic, "-o", signed, "--watermark-key", wm_key, "--json")
    assert code == 0, err
    [record] = json.loads(out)

    def found(*args: str | Path) -> tuple[bool, str]:
        code, out, err = run("verify", signed, "--json", *args)
        assert code in (0, 1), err
        return json.loads(out)[0]["watermark"]["found"], err

    assert found("--watermark-key", wm_key) == (True, "")
    assert found()[0] is False  # marked under the private key: the public one sees nothing
    with_old, warning = found("--key", wm_key)
    assert with_old is True and "deprecated" in warning and "--watermark-key" in warning
    assert record["watermark_id"]
    for command in ("sign", "protect", "generate", "serve"):
        help_text = run(command, "--help")[1]
        assert "--watermark-key" in help_text and "PEM private key for --cert" in help_text
    for command in (("verify",), ("scan",), ("watermark", "detect")):
        help_text = run(*command, "--help")[1]
        assert "--watermark-key" in help_text and "--key" not in help_text.replace("-key F", "")
    other = tmp_path / "other.key"
    other.write_bytes(b"another")
    code, _, err = run("verify", signed, "--key", other, "--watermark-key", wm_key)
    assert code == 2 and "old spelling" in err


def test_trust_is_declared_once() -> None:
    from guard.cli import _common, scan, serve, verify

    for module in (scan, serve, verify):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert '"--trust"' not in source and "trust_option" in source, module.__name__
    assert '"--trust"' in Path(_common.__file__).read_text(encoding="utf-8")
