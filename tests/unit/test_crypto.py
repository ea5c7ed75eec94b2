"""SecretBox: encryption at rest of stored header values."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sidecar.registry.crypto import DecryptionError, KeyFileError, SecretBox

SECRET = "Bearer sk-live-0123456789abcdef"


def test_encrypted_value_round_trips() -> None:
    box = SecretBox(Fernet.generate_key())
    token = box.encrypt(SECRET)
    assert token.startswith("enc:v1:")
    assert SECRET not in token
    assert SecretBox.is_encrypted(token)
    assert box.decrypt(token) == SECRET


def test_is_encrypted_is_false_for_plain_text() -> None:
    assert not SecretBox.is_encrypted(SECRET)


def test_wrong_key_raises_decryption_error_without_the_plaintext_or_token() -> None:
    token = SecretBox(Fernet.generate_key()).encrypt(SECRET)
    with pytest.raises(DecryptionError) as caught:
        SecretBox(Fernet.generate_key()).decrypt(token)
    message = str(caught.value)
    assert "cannot be decrypted" in message
    assert SECRET not in message
    assert token not in message
    assert isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("token", ["enc:v1:garbage", "enc:v1:é", SECRET])
def test_malformed_token_raises_decryption_error(token: str) -> None:
    with pytest.raises(DecryptionError) as caught:
        SecretBox(Fernet.generate_key()).decrypt(token)
    assert SECRET not in str(caught.value)


def test_configured_fernet_key_is_used_as_is(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    token = SecretBox(key).encrypt(SECRET)
    box = SecretBox.from_settings(key.decode(), tmp_path / "encryption.key")
    assert box.decrypt(token) == SECRET
    assert not (tmp_path / "encryption.key").exists()


def test_passphrase_derivation_is_stable(tmp_path: Path) -> None:
    key_path = tmp_path / "encryption.key"
    token = SecretBox.from_settings("correct horse battery staple", key_path).encrypt(SECRET)
    again = SecretBox.from_settings("correct horse battery staple", key_path)
    assert again.decrypt(token) == SECRET
    with pytest.raises(DecryptionError):
        SecretBox.from_settings("another passphrase", key_path).decrypt(token)
    assert not key_path.exists()


def test_generated_key_file_is_owner_only_and_reused(tmp_path: Path) -> None:
    key_path = tmp_path / "state" / "encryption.key"
    token = SecretBox.from_settings(None, key_path).encrypt(SECRET)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) & 0o077 == 0
    before = key_path.read_bytes()
    assert SecretBox.from_settings(None, key_path).decrypt(token) == SECRET
    assert key_path.read_bytes() == before


def test_empty_configured_key_falls_back_to_the_key_file(tmp_path: Path) -> None:
    key_path = tmp_path / "encryption.key"
    token = SecretBox.from_settings("", key_path).encrypt(SECRET)
    assert SecretBox.from_settings(None, key_path).decrypt(token) == SECRET


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    key_path = tmp_path / "encryption.key"
    key_path.write_bytes(Fernet.generate_key())
    os.chmod(key_path, 0o644)
    with pytest.raises(KeyFileError, match="group or others"):
        SecretBox.from_settings(None, key_path)


def test_malformed_key_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key_path = tmp_path / "encryption.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("not-a-key-hunter2")
    with pytest.raises(KeyFileError, match="Fernet key") as caught:
        SecretBox.from_settings(None, key_path)
    assert "hunter2" not in str(caught.value)


def test_repr_hides_the_key() -> None:
    key = Fernet.generate_key()
    assert key.decode() not in repr(SecretBox(key))
