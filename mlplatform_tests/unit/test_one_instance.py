"""One Dagster instance and one code location name, whatever starts Dagster.

The definitions refuse to load into any DAGSTER_HOME but the platform's (one line saying what
to run instead); every legitimate entry point sets it: ``mlplatform ui``, the team stack, the
docker images and compose, Helm. The code location is called ``mlplatform`` everywhere, so run
and asset links are the same whichever way the web UI was started.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from mlplatform.local_ui import WORKSPACE, dagster_dev_command, ui_env
from mlplatform.settings import Settings, instance_problem, load_settings
from mlplatform.stack.config import LOCATION_NAME, StackConfig, platform_env
from mlplatform_tests.docker import files
from mlplatform_tests.docker.test_config import environment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_platform_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLPLATFORM_HOME", "MLPLATFORM_DAGSTER_HOME_DIR", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)


def test_the_platforms_own_instance_loads(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    assert instance_problem(settings, str(tmp_path / "home" / "dagster")) is None
    assert instance_problem(settings, str(tmp_path / "home" / "dagster") + "/") is None
    assert instance_problem(settings, str(tmp_path / "home" / "x" / ".." / "dagster")) is None


@pytest.mark.parametrize("dagster_home", [None, "", "/elsewhere/dagster"])
def test_another_instance_is_refused_with_one_line_saying_what_to_run(
    tmp_path: Path, dagster_home: str | None
) -> None:
    settings = load_settings(home=tmp_path / "home")
    expected = tmp_path / "home" / "dagster"
    problem = instance_problem(settings, dagster_home)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("mlplatform: DAGSTER_HOME is ")
    assert (dagster_home or "unset") in problem
    assert f"not this platform's instance {expected}" in problem
    assert problem.endswith(f"run `mlplatform ui`, or export DAGSTER_HOME={expected}")


def test_a_configured_dagster_home_is_the_platforms_instance(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", dagster_home_dir=tmp_path / "team")
    assert instance_problem(settings, str(tmp_path / "team")) is None
    assert instance_problem(settings, str(tmp_path / "home" / "dagster")) is not None


def _settings_from(env: dict[str, str]) -> Settings:
    return load_settings(
        home=Path(env["MLPLATFORM_HOME"]), dagster_home_dir=Path(env["MLPLATFORM_DAGSTER_HOME_DIR"])
    )


def test_mlplatform_ui_sets_the_platforms_instance(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    env = ui_env(settings, settings.dagster_home)
    assert instance_problem(_settings_from(env), env["DAGSTER_HOME"]) is None
    assert env["DAGSTER_HOME"] == str(settings.dagster_home)


def test_the_team_stack_sets_the_platforms_instance(tmp_path: Path) -> None:
    env = platform_env(StackConfig(home=tmp_path / "home", projects_dir=tmp_path), SecretStr("pw"))
    assert instance_problem(_settings_from(env), env["DAGSTER_HOME"]) is None


def test_docker_and_helm_set_the_platforms_instance() -> None:
    for service in ("code-server", "webserver", "daemon"):
        env = environment(service)
        assert env["MLPLATFORM_DAGSTER_HOME_DIR"] == env["DAGSTER_HOME"], service
    launcher = files.load_yaml(files.DOCKER_INSTANCE)["run_launcher"]["config"]
    assert {"DAGSTER_HOME", "MLPLATFORM_DAGSTER_HOME_DIR"} <= set(launcher["env_vars"])
    image = files.env(files.PLATFORM_DOCKERFILE)
    assert image["MLPLATFORM_DAGSTER_HOME_DIR"] == image["DAGSTER_HOME"]
    helm = files.load_yaml(files.HELM_VALUES)
    assert helm["global"]["dagsterHome"] == image["MLPLATFORM_DAGSTER_HOME_DIR"]


def _location_names(workspace: Path) -> list[str]:
    entries = yaml.safe_load(workspace.read_text(encoding="utf-8"))["load_from"]
    return [next(iter(entry.values()))["location_name"] for entry in entries]


def test_one_code_location_name_everywhere() -> None:
    assert _location_names(WORKSPACE) == [LOCATION_NAME] == ["mlplatform"]
    assert _location_names(ROOT / "workspace.yaml") == [LOCATION_NAME]
    assert _location_names(files.TEAM_WORKSPACE) == [LOCATION_NAME]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["dagster"]["code_location_name"] == LOCATION_NAME
    compose = files.service_command("code-server")
    assert compose[compose.index("--location-name") + 1] == LOCATION_NAME
    command = dagster_dev_command("127.0.0.1", 3000)
    assert command[command.index("-w") + 1] == str(WORKSPACE)
    assert "-m" not in command  # `dagster dev -m module` would name the location after the module
