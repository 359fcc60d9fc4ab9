"""Keep secrets out of messages: mask passwords in URLs, blank out known secret values.

Plain standard library (no SQLAlchemy): used by the settings and by the CLI's last-resort
error handler, which may run before any setting could be read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

MASK = "***"
TOKEN_VARIABLES = (
    "MLPLATFORM_APPROVER_TOKENS",
    "MLPLATFORM_READER_TOKENS",
    "MLPLATFORM_TOKEN",
)
"""Variables whose whole value (and every string inside its JSON) is secret."""
URL_VARIABLES = (
    "MLPLATFORM_LEDGER_URL",
    "MLPLATFORM_SEARCH_URL",
    "MLPLATFORM_MLFLOW_TRACKING_URI",
    "MLPLATFORM_SERVE_URL",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_BACKEND_STORE_URI",
)
"""Variables holding URLs whose password (``scheme://user:password@host``) is secret."""
PASSWORD_VARIABLES = ("DAGSTER_PG_PASSWORD", "PGPASSWORD", "MLFLOW_TRACKING_PASSWORD")
MIN_SECRET = 4  # shorter values would blank out ordinary words of a message


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """(before the password, the password, after it) of ``scheme://user:password@host...``,
    read by hand so that a URL too malformed for ``urlsplit`` still has its password found."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return None
    user, password = userinfo.split(":", 1)
    return f"{scheme}://{user}:", password, "@" + rest[len(userinfo) + 1 :]


def url_password(url: str) -> str | None:
    """The password of a URL, or None (also for text that is no URL)."""
    found = _userinfo(url)
    return found[1] if found and found[1] else None


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (unchanged when it has none)."""
    found = _userinfo(url)
    if found is None or not found[1]:
        return url
    return f"{found[0]}{MASK}{found[2]}"


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the environment holds: tokens (raw and each JSON string inside), URL
    passwords and database passwords; longest first, so a longer one is blanked whole."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name in TOKEN_VARIABLES:
        raw = env.get(name, "")
        found.add(raw.strip())
        try:
            found.update(_strings(json.loads(raw)))
        except ValueError:
            found.update(part.strip(" \"'{}[]") for part in raw.replace(",", ":").split(":"))
    for name in URL_VARIABLES:
        found.add(url_password(env.get(name, "")) or "")
    for name in PASSWORD_VARIABLES:
        found.add(env.get(name, ""))
    return sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret (default: those of the environment) replaced by ``***``."""
    for secret in secret_values() if secrets is None else secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
