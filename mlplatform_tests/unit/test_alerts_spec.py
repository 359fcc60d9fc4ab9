"""The ``alerts`` spec section names an environment variable; a URL there is refused without
being echoed (it is the secret)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlplatform.alerting.webhook import where
from mlplatform.spec import SpecError, load_spec
from mlplatform_tests.projects import variant


def test_webhook_url_in_the_spec_is_refused_without_echoing_it(tmp_path: Path) -> None:
    data = variant("binary", "shop")
    data["alerts"] = {"webhook_env": "https://hooks.slack.com/services/T0/B0/sekrit"}
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "alerts.webhook_env" in str(err.value)
    assert "not an environment variable name" in str(err.value)
    assert "sekrit" not in str(err.value) and "hooks.slack" not in str(err.value)
    data["alerts"] = {"webhook_env": "SHOP_ALERTS_URL", "events": ["failed_check"]}
    path.write_text(yaml.safe_dump(data))
    assert load_spec(path).alerts.events == ("failed_check",)


def test_the_webhook_is_shown_by_host_only() -> None:
    assert where("https://hooks.slack.com/services/T0/B0/sekrit") == "https://hooks.slack.com"
    assert where("http://127.0.0.1:8123/hook?token=x") == "http://127.0.0.1:8123"
