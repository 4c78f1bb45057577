"""Keys: warn as ssh does when a private key can be read by others; say the right thing about
encryption and passphrases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard import config
from guard.cli import main
from tests.helpers import art, make_chain, write


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_key_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    chain, key, _ = make_chain(tmp_path)
    pic = write(art(), tmp_path / "p.png")
    key.chmod(0o644)
    code, _, err = run("sign", pic, "--cert", chain, "--key", key, "--no-watermark")
    assert code == 0
    assert "warning" in err and str(key) in err and "chmod 600" in err
    key.chmod(0o600)
    code, _, err = run("sign", pic, "--cert", chain, "--key", key, "--no-watermark", "--force")
    assert code == 0 and "warning" not in err


def test_an_identity_folder_others_can_read_is_warned_about(tmp_path: Path) -> None:
    assert run("keys", "init")[0] == 0
    pic = write(art(), tmp_path / "p.png")
    folder = config.identity_dir()
    _, _, err = run("sign", pic, "--no-watermark")
    assert "warning" not in err  # created 0700 / 0600
    folder.chmod(0o755)
    (folder / "signer.key").chmod(0o644)
    _, _, err = run("sign", pic, "--no-watermark", "--force")
    assert "warning" in err and str(folder) in err


def test_a_passphrase_for_a_plain_key_is_not_called_encrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, key, _ = make_chain(tmp_path)
    key.chmod(0o600)
    monkeypatch.setenv("GUARD_KEY_PASSPHRASE", "hunter2")
    pic = write(art(), tmp_path / "p.png")
    code, _, err = run("sign", pic, "--cert", chain, "--key", key, "--no-watermark")
    assert "is encrypted" not in err
    assert code == 0 and "not encrypted" in err  # signs, and says the passphrase was not needed


def test_encrypted_keys_say_what_is_missing(tmp_path: Path, monkeypatch) -> None:
    chain, key, _ = make_chain(tmp_path, passphrase=b"correct horse")
    key.chmod(0o600)
    pic = write(art(), tmp_path / "p.png")
    monkeypatch.delenv("GUARD_KEY_PASSPHRASE", raising=False)
    code, _, err = run("sign", pic, "--cert", chain, "--key", key, "--no-watermark")
    assert code == 2 and "is encrypted" in err and "GUARD_KEY_PASSPHRASE" in err
    monkeypatch.setenv("GUARD_KEY_PASSPHRASE", "wrong")
    code, _, err = run("sign", pic, "--cert", chain, "--key", key, "--no-watermark")
    assert code == 2 and "passphrase" in err and "wrong" in err
    monkeypatch.setenv("GUARD_KEY_PASSPHRASE", "correct horse")
    assert run("sign", pic, "--cert", chain, "--key", key, "--no-watermark")[0] == 0
    assert os.stat(key).st_mode & 0o077 == 0
