"""Every collected test carries exactly one kind marker; collection names those that don't."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the suite under test runs in a subprocess from a temporary folder: it finds our markers
# module from the checkout (mlplatform_tests is not part of the installed package)
CONFTEST = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from mlplatform_tests.markers import assign_kinds

def pytest_collection_modifyitems(items):
    assign_kinds(items)
"""
INI = """
[pytest]
markers =
    unit: u
    dagster: d
    e2e: e
    browser: b
    stack: s
"""


def _suite(pytester: pytest.Pytester, tests: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.mkpydir("unit").joinpath("test_kinds.py").write_text(tests, encoding="utf-8")
    pytester.mkpydir("elsewhere").joinpath("test_loose.py").write_text(
        "def test_loose():\n    pass\n", encoding="utf-8"
    )
    return pytester.runpytest_subprocess("--collect-only", "-q", "unit")


def test_folder_gives_the_kind_and_one_own_marker_is_kept(pytester: pytest.Pytester) -> None:
    tests = (
        "import pytest\n\ndef test_a():\n    pass\n\n@pytest.mark.e2e\ndef test_b():\n    pass\n"
    )
    result = _suite(pytester, tests)
    assert result.ret == 0, result.stdout.str()
    listed = pytester.runpytest_subprocess("-q", "-m", "unit", "unit")
    listed.assert_outcomes(passed=1, deselected=1)


def test_two_kinds_or_none_fail_the_collection(pytester: pytest.Pytester) -> None:
    tests = "import pytest\n\n@pytest.mark.unit\n@pytest.mark.e2e\ndef test_both():\n    pass\n"
    result = _suite(pytester, tests)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*exactly one of the markers*", "*test_both: e2e, unit*"])
    result = pytester.runpytest_subprocess("--collect-only", "-q", "elsewhere")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*test_loose.py::test_loose: none*"])
