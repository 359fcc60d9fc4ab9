"""Where the prediction log goes: ``MLPLATFORM_PREDICTION_LOG_URL`` normalized, or refused
with a line that names the variable and what to do (never showing the value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplatform.prediction_log import LogLocationError, LogStore, log_url
from mlplatform.settings import ConfigError, load_settings

pytestmark = pytest.mark.unit


def test_folders_and_buckets_are_normalized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert log_url("logs") == (tmp_path / "logs").as_uri()
    assert log_url(f"file://{tmp_path}/x/") == (tmp_path / "x").as_uri()
    assert log_url(" s3://bucket/team/log/ ") == "s3://bucket/team/log"
    assert log_url("s3://bucket") == "s3://bucket"
    assert LogStore(log_url("s3://b/p")).local is False
    assert LogStore.under_home(tmp_path).url == (tmp_path / "prediction_log").as_uri()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("s3://AKIAKEY:hunter2@bucket/log", "credentials do not belong in the URL"),
        ("s3://bucket/log?endpoint_override=x", "no options in the URL"),
        ("ftp://host/log", "scheme 'ftp' is not supported"),
        ("s3:///log", "names no bucket"),
        ("file://otherhost/log", "names no host"),
    ],
)
def test_malformed_locations_say_why(value: str, reason: str) -> None:
    with pytest.raises(LogLocationError, match=reason):
        log_url(value)


def test_settings_name_the_variable_and_hide_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPLATFORM_PREDICTION_LOG_URL", "s3://AKIAKEY:hunter2@bucket/log")
    with pytest.raises(ConfigError) as info:
        load_settings(home=tmp_path)
    message = str(info.value)
    assert "MLPLATFORM_PREDICTION_LOG_URL" in message and "AWS_ACCESS_KEY_ID" in message
    assert "hunter2" not in message and "AKIAKEY" not in message

    monkeypatch.setenv("MLPLATFORM_PREDICTION_LOG_URL", "")  # as compose passes an unset one
    settings = load_settings(home=tmp_path)
    assert settings.prediction_log == LogStore.under_home(tmp_path)
    monkeypatch.setenv("MLPLATFORM_PREDICTION_LOG_URL", "s3://logs/prod/")
    assert load_settings(home=tmp_path).prediction_log.url == "s3://logs/prod"


def test_a_folder_that_cannot_be_written_is_found_at_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = LogStore(log_url(str(tmp_path / "file" / "log")))
    with pytest.raises(LogLocationError, match=r"cannot write there .*MLPLATFORM_PREDICTION_LOG"):
        store.check()
    fine = LogStore(log_url(str(tmp_path / "log")))
    fine.check()
    assert (tmp_path / "log").is_dir() and not list((tmp_path / "log").iterdir())
