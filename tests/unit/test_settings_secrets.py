"""The service's own secrets come from the settings' types, not from a list kept by hand."""

from __future__ import annotations

import typing

import pytest
from pydantic import SecretStr, ValidationError

from sidecar.settings import Settings


def _secret_fields() -> list[str]:
    """Every setting whose type holds `SecretStr` (alone, optional or in a tuple)."""

    def holds_secret(annotation: object) -> bool:
        if annotation is SecretStr:
            return True
        return any(holds_secret(argument) for argument in typing.get_args(annotation))

    return [name for name, field in Settings.model_fields.items() if holds_secret(field.annotation)]


def test_every_secret_typed_setting_is_masked_in_the_logs() -> None:
    fields = _secret_fields()
    assert {"api_keys", "encryption_key", "google_api_key", "brave_api_key"} <= set(fields)
    values = {name: f"value-of-{name}-0xS3CR3T" for name in fields}
    values["database_url"] = "postgresql://sidecar:pg-pass-0x52@db.internal:5432/sidecar"
    settings = Settings(
        **{
            name: (value,) if name == "api_keys" else value  # type: ignore[arg-type]
            for name, value in values.items()
        }
    )

    masked = settings.service_secrets()

    for name, value in values.items():
        assert value in masked, f"{name} is a secret setting but is not masked"
    assert "pg-pass-0x52" in masked, "a secret URL's password is masked on its own too"


def test_a_shared_database_needs_a_shared_encryption_key() -> None:
    url = "postgresql://sidecar:pg-pass-0x53@db.internal/sidecar"
    with pytest.raises(ValidationError, match="SIDECAR_ENCRYPTION_KEY") as caught:
        Settings(database_url=url)
    assert "pg-pass-0x53" not in str(caught.value.errors(include_input=False))
    with pytest.raises(ValidationError, match=r"postgresql://") as caught:
        Settings(database_url="mysql://u:pg-pass-0x54@h/db", encryption_key="k")
    assert "pg-pass-0x54" not in str(caught.value.errors(include_input=False))


def test_a_password_in_a_url_setting_is_masked() -> None:
    settings = Settings(searxng_url="https://user:url-pass-0x51@searx.example.org")

    assert "url-pass-0x51" in settings.service_secrets()
    assert "user" not in settings.service_secrets()


def test_plain_settings_are_not_masked() -> None:
    settings = Settings(google_cse_id="engine-0x77", searxng_url="https://searx.example.org")

    assert settings.service_secrets() == []
