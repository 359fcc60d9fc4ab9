"""Passwords in URLs are masked, and secrets of the environment blanked, even in text that is
too malformed to parse."""

from __future__ import annotations

from mlplatform.redaction import mask_url, redact, secret_values


def test_url_passwords_are_masked_even_in_malformed_urls() -> None:
    assert (
        mask_url("postgresql+psycopg2://u:pw-1@h:5433/db")
        == "postgresql+psycopg2://u:***@h:5433/db"
    )
    assert mask_url("postgres ql://u:pw-2@h/db") == "postgres ql://u:***@h/db"
    assert mask_url("postgresql://u:p@ss:w@rd@h/db?x=a@b") == "postgresql://u:***@h/db?x=a@b"
    for plain in ("sqlite:////tmp/a.db", "http://127.0.0.1:8000/x", "http://user@h/"):
        assert mask_url(plain) == plain


def test_every_secret_of_the_environment_is_blanked() -> None:
    env = {
        "MLPLATFORM_APPROVER_TOKENS": '{"alice": "atok-1111", "bob": ["btok-2222"]}',
        "MLPLATFORM_READER_TOKENS": '{"rita": "rtok-3333"',  # not JSON: its parts still count
        "MLPLATFORM_TOKEN": "mytok-4444",
        "MLPLATFORM_LEDGER_URL": "postgres ql://u:pw-5555@h/db",
        "DAGSTER_PG_PASSWORD": "pg-6666",
        "MLPLATFORM_HOME": "/srv/home-7777",
    }
    secrets = secret_values(env)
    text = " ".join(env.values())
    shown = redact(text, secrets)
    for secret in ("atok-1111", "btok-2222", "rtok-3333", "mytok-4444", "pw-5555", "pg-6666"):
        assert secret in text and secret not in shown
    assert "/srv/home-7777" in shown
    assert redact("alice approved it", secrets) == "alice approved it"  # identities are no secret
