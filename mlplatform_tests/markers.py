"""Test kinds: every collected test carries exactly one of the markers below."""

from __future__ import annotations

import pytest

KINDS = ("unit", "training", "dagster", "e2e", "browser", "stack")

# A test module's default marker, from its folder (a module or test may set its own).
FOLDER_MARKERS = {
    "unit": "unit",
    "serving": "unit",
    "docker": "unit",
    "defs": "dagster",
    "e2e": "e2e",
    "ui": "browser",
    "stack": "stack",
}


def kinds_of(item: pytest.Item) -> set[str]:
    """The test's kinds: its own marker wins over its module's ``pytestmark``."""
    own = {m.name for m in item.own_markers} & set(KINDS)
    return own or {m.name for m in item.iter_markers()} & set(KINDS)


def assign_kinds(items: list[pytest.Item]) -> None:
    """Give each test without a kind its folder's (``browser`` if it drives the browser);
    fail the collection naming every test that ends with no kind or more than one."""
    wrong = []
    for item in items:
        own = kinds_of(item)
        if not own:
            if "browser" in getattr(item, "fixturenames", ()):
                item.add_marker("browser")
            elif item.path.parent.name in FOLDER_MARKERS:
                item.add_marker(FOLDER_MARKERS[item.path.parent.name])
            own = kinds_of(item)
        if len(own) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(sorted(own)) or 'none'}")
    if wrong:
        raise pytest.UsageError(
            f"each test needs exactly one of the markers {', '.join(KINDS)}; "
            f"mark these with one (pytestmark or @pytest.mark.<kind>):\n  " + "\n  ".join(wrong)
        )
