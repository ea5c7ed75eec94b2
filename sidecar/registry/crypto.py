"""Encryption at rest of stored header values (SPEC §3), with Fernet.

    ValueError
    ├── DecryptionError   a stored value the configured key cannot decrypt
    └── KeyFileError      an encryption key file that is unsafe or malformed

Neither message ever contains a key, a token or a plaintext.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ENCRYPTED_PREFIX", "DecryptionError", "KeyFileError", "SecretBox"]

ENCRYPTED_PREFIX = "enc:v1:"
# Fixed so that a passphrase derives the same key on every start and every replica.
_HKDF_SALT = b"orq-sidecar/encryption-key/salt/v1"
_HKDF_INFO = b"orq-sidecar/stored-header-values/v1"


class DecryptionError(ValueError):
    """A stored value that cannot be decrypted with the configured key."""


class KeyFileError(ValueError):
    """An encryption key file that is group/other readable or not a Fernet key."""


class SecretBox:
    """Encrypts and decrypts stored values with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    @classmethod
    def from_settings(cls, configured: str | None, key_path: Path) -> SecretBox:
        """The box for a configured key or passphrase, else for the key file (made if missing)."""
        if configured is not None and configured.strip():
            return cls(_key_from_configured(configured.strip()))
        return cls(_load_or_create_key(key_path))

    def encrypt(self, plaintext: str) -> str:
        """`enc:v1:` followed by the Fernet token of `plaintext`."""
        token = self._fernet.encrypt(plaintext.encode("utf-8"))
        return ENCRYPTED_PREFIX + token.decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of a value made by `encrypt`; DecryptionError when it cannot be had."""
        if not self.is_encrypted(token):
            raise DecryptionError("stored value is not an encrypted value")
        try:
            data = token[len(ENCRYPTED_PREFIX) :].encode("ascii")
            return self._fernet.decrypt(data).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionError(
                "stored value cannot be decrypted with the configured key"
            ) from None

    @staticmethod
    def is_encrypted(text: str) -> bool:
        """Whether `text` carries the encrypted-value prefix."""
        return text.startswith(ENCRYPTED_PREFIX)


def _is_fernet_key(text: str) -> bool:
    if len(text) != 44:
        return False
    try:
        raw = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeError):
        return False
    return len(raw) == 32


def _key_from_configured(configured: str) -> bytes:
    if _is_fernet_key(configured):
        return configured.encode("ascii")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(configured.encode("utf-8")))


def _load_or_create_key(key_path: Path) -> bytes:
    try:
        return _read_key_file(key_path)
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process won the race; use its key.
        return _read_key_file(key_path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def _read_key_file(key_path: Path) -> bytes:
    fd = os.open(key_path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"encryption key file {key_path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {key_path}`"
            )
        text = handle.read().decode("ascii", errors="replace").strip()
    if not _is_fernet_key(text):
        raise KeyFileError(
            f"encryption key file {key_path} does not hold a Fernet key "
            "(urlsafe base64 of 32 bytes)"
        )
    return text.encode("ascii")
