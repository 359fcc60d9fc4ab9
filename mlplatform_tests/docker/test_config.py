"""docker-compose.yml, dagster.docker.yaml and the Helm values, checked as data (no Docker
engine or cluster here): every service and its health check, the names that must agree across
files, the Dagster instance config validated by Dagster itself, and the chart's keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mlplatform_tests.docker import files

SERVICES = {"postgres", "mlflow", "code-server", "webserver", "daemon", "serving"}
PLATFORM_SERVICES = {"mlflow", "code-server", "webserver", "daemon"}
PG_ENV = {
    "DAGSTER_PG_HOST": "postgres",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "mlplatform",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_MAX_CONCURRENT_RUNS": "4",
}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} (enough for our file)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op == ":-":
            return arg or ""
        raise AssertionError(f"{name} is required: {arg}")

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", sub, value)


DOTENV = {
    "POSTGRES_USER": "mlplatform",
    "POSTGRES_PASSWORD": "secret",
    "MLPLATFORM_READER_TOKENS": "{}",
    "MLPLATFORM_APPROVER_TOKENS": "{}",
}


def service(name: str) -> dict[str, Any]:
    return files.compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment") or {}
    assert isinstance(env, dict), f"{name}: environment must be a mapping"
    return {k: interpolate(str(v), DOTENV) for k, v in env.items()}


# -- compose --------------------------------------------------------------------------------


def test_compose_has_every_service_with_a_health_check() -> None:
    services = files.compose()["services"]
    assert set(services) == SERVICES
    for name, svc in services.items():
        check = svc.get("healthcheck", {}).get("test")
        assert isinstance(check, list) and check[0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") == "unless-stopped", name
    for name in SERVICES - {"postgres"}:
        deps = services[name]["depends_on"]
        assert all(d["condition"] == "service_healthy" for d in deps.values()), name


def test_compose_images_and_builds() -> None:
    for name in PLATFORM_SERVICES:
        svc = service(name)
        assert svc["image"] == "${MLPLATFORM_IMAGE:-mlplatform:0.1.0}", name
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
    serving = service("serving")
    assert serving["build"]["dockerfile"] == "docker/Dockerfile.serving"
    assert serving["image"].startswith("${MLPLATFORM_SERVING_IMAGE")
    assert re.fullmatch(r"postgres:\d+\.\d+-\w+", service("postgres")["image"])
    for svc in files.compose()["services"].values():
        build = svc.get("build")
        if build:
            assert (files.COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()


def test_compose_volumes_and_network_match_the_run_launcher() -> None:
    doc = files.compose()
    assert {v["name"] for v in doc["volumes"].values()} == {
        "mlplatform-pgdata",
        "mlplatform-mlflow",
        "mlplatform-data",
        "mlplatform-prediction-log",
    }
    launcher = files.load_yaml(files.DOCKER_INSTANCE)["run_launcher"]["config"]
    # Run containers mount the data volumes by their fixed names and join the compose network.
    assert launcher["container_kwargs"]["volumes"] == [
        "mlplatform-data:/data",
        "mlplatform-prediction-log:/prediction_log",
    ]
    assert doc["volumes"]["data"]["name"] == "mlplatform-data"
    assert launcher["network"] == doc["networks"]["default"]["name"]
    for name in ("code-server", "webserver", "daemon"):
        assert "data:/data" in service(name)["volumes"], name
    assert "data:/data:ro" in service("serving")["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in service("postgres")["volumes"]
    for name in ("webserver", "daemon"):
        assert "/var/run/docker.sock:/var/run/docker.sock" in service(name)["volumes"]
        assert service(name)["group_add"] == ["${DOCKER_GID:-999}"]


def test_serving_and_the_monitoring_runs_share_the_prediction_log() -> None:
    """Serving writes the log (its data volume is read-only): a volume of its own, mounted
    where every platform service and run container reads it, or the same bucket."""
    launcher = files.load_yaml(files.DOCKER_INSTANCE)["run_launcher"]["config"]
    url = environment("serving")["MLPLATFORM_PREDICTION_LOG_URL"]
    assert url == environment("daemon")["MLPLATFORM_PREDICTION_LOG_URL"]
    folder = url.split(":-", 1)[-1].rstrip("}")  # the default: a folder
    assert "prediction-log:" + folder in service("serving")["volumes"]  # writable
    for name in ("code-server", "webserver", "daemon"):
        assert "prediction-log:" + folder in service(name)["volumes"], name
    assert f"mlplatform-prediction-log:{folder}" in launcher["container_kwargs"]["volumes"]
    assert files.compose()["volumes"]["prediction-log"]["name"] == "mlplatform-prediction-log"
    for var in ("MLPLATFORM_PREDICTION_LOG_URL", "AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY"):
        assert var in launcher["env_vars"] and var in environment("serving"), var


def test_run_containers_get_every_variable_they_are_promised() -> None:
    launcher = files.load_yaml(files.DOCKER_INSTANCE)["run_launcher"]["config"]
    daemon = environment("daemon")
    for var in launcher["env_vars"]:
        # "NAME" is read from the daemon's environment when it launches a run
        assert "=" not in var and var in daemon, var
    assert daemon["DAGSTER_HOME"] == "/opt/dagster/docker"
    assert environment("code-server")["DAGSTER_CURRENT_IMAGE"] == daemon["MLPLATFORM_IMAGE"]


def test_platform_services_share_one_environment() -> None:
    reference = environment("daemon")
    for name in ("code-server", "webserver"):
        env = environment(name)
        assert {k: v for k, v in env.items() if k != "DAGSTER_CURRENT_IMAGE"} == reference
    assert reference["DAGSTER_CODE_SERVER_HOST"] == "code-server"
    port = reference["DAGSTER_CODE_SERVER_PORT"]
    assert files.with_option(files.service_command("code-server"), "-p", port) == (
        files.service_command("code-server")
    )


def test_the_three_databases_exist_and_are_the_ones_used() -> None:
    sql = (files.DOCKER / "postgres-init" / "01-databases.sql").read_text(encoding="utf-8")
    created = set(re.findall(r"CREATE DATABASE (\w+);", sql))
    created.add(environment("postgres")["POSTGRES_DB"])
    assert created == {"dagster", "mlflow", "mlplatform"}
    assert "./postgres-init:/docker-entrypoint-initdb.d:ro" in service("postgres")["volumes"]
    env = environment("daemon")
    used = {
        env["DAGSTER_PG_DB"],
        env["MLPLATFORM_LEDGER_URL"].rsplit("/", 1)[1],
        env["MLPLATFORM_SEARCH_URL"].rsplit("/", 1)[1],
        environment("serving")["MLPLATFORM_LEDGER_URL"].rsplit("/", 1)[1],
    }
    mlflow = files.service_command("mlflow")
    backend = interpolate(mlflow[mlflow.index("--backend-store-uri") + 1], DOTENV)
    used.add(backend.rsplit("/", 1)[1])
    assert used == created
    for url in (env["MLPLATFORM_LEDGER_URL"], backend):
        assert url.startswith("postgresql+psycopg2://mlplatform:secret@postgres:5432/")


def test_mlflow_server_serves_artifacts_to_the_other_containers() -> None:
    command = files.service_command("mlflow")
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow:5000" in hosts  # the Host header the platform containers send
    assert environment("daemon")["MLPLATFORM_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "mlflow:/mlflow" in service("mlflow")["volumes"]


def test_env_example_sets_every_required_variable() -> None:
    example = {}
    for line in (files.DOCKER / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", files.COMPOSE.read_text()))
    assert required <= set(example), required - set(example)
    import json

    for key in ("MLPLATFORM_READER_TOKENS", "MLPLATFORM_APPROVER_TOKENS"):
        assert isinstance(json.loads(example[key]), dict)
    assert (files.DOCKER / ".gitignore").read_text().split().count(".env") == 1


def test_workspace_and_instance_paths_exist_in_the_image() -> None:
    copies = {}
    for ins in files.final_stage(files.PLATFORM_DOCKERFILE):
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            src, dest = ins.args.split()
            copies[dest] = src
    for name in ("webserver", "daemon"):
        command = files.service_command(name)
        assert copies[command[command.index("-w") + 1]] == "mlplatform/deploy/workspace.yaml"
    home = environment("daemon")["DAGSTER_HOME"]
    assert copies[f"{home}/dagster.yaml"] == "docker/dagster.docker.yaml"
    workspace = files.load_yaml(files.TEAM_WORKSPACE)["load_from"][0]["grpc_server"]
    assert workspace["location_name"] == files.service_command("code-server")[-1]


def test_code_server_command_is_the_images_default() -> None:
    assert files.service_command("code-server") == files.cmd(files.PLATFORM_DOCKERFILE)


# -- dagster.docker.yaml --------------------------------------------------------------------


def test_docker_instance_keeps_the_team_deployments_settings() -> None:
    team = files.load_yaml(files.TEAM_INSTANCE)
    docker = files.load_yaml(files.DOCKER_INSTANCE)
    own = {"run_launcher", "compute_logs"}
    assert set(docker) - own == set(team)
    for key, value in team.items():
        assert docker[key] == value, f"{key} differs from mlplatform/deploy/dagster.yaml"


def test_docker_instance_is_a_valid_dagster_instance_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData, class_from_code_pointer
    from dagster_docker import DockerRunLauncher

    for key, value in {**PG_ENV, "MLPLATFORM_IMAGE": "mlplatform:0.1.0"}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text(files.DOCKER_INSTANCE.read_text(encoding="utf-8"))
    config, _ = dagster_instance_config(str(tmp_path))  # the instance schema, as Dagster checks it
    assert set(config["storage"]) == {"postgres"}

    # Each configurable class, with its own config schema and env vars resolved.
    for section in ("run_coordinator", "run_launcher", "compute_logs"):
        data = config[section]
        cls = class_from_code_pointer(data["module"], data["class"])
        result = process_config(cls.config_type(), data["config"])  # type: ignore[attr-defined]
        assert result.success, (section, result.errors)
    from dagster_postgres import PostgresRunStorage

    pg = process_config(PostgresRunStorage.config_type(), config["storage"]["postgres"])
    assert pg.success, pg.errors
    assert pg.value["postgres_db"]["hostname"] == "postgres"

    import yaml

    launcher = ConfigurableClassData(
        config["run_launcher"]["module"],
        config["run_launcher"]["class"],
        yaml.safe_dump(config["run_launcher"]["config"]),
    ).rehydrate(as_type=DockerRunLauncher)
    assert launcher.image == "mlplatform:0.1.0" and launcher.networks == ["mlplatform"]
    assert launcher.container_kwargs == {
        "volumes": ["mlplatform-data:/data", "mlplatform-prediction-log:/prediction_log"]
    }


def test_a_broken_docker_instance_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validation above can fail: a misspelt key and a wrong launcher field are caught."""
    from dagster._config import process_config
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config
    from dagster_docker import DockerRunLauncher

    doc = files.load_yaml(files.DOCKER_INSTANCE)
    doc["run_monitorin"] = doc.pop("run_monitoring")
    import yaml

    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))
    bad = dict(files.load_yaml(files.DOCKER_INSTANCE)["run_launcher"]["config"], volumes=["x"])
    assert not process_config(DockerRunLauncher.config_type(), bad).success


# -- Helm values ----------------------------------------------------------------------------
# Keys as the official chart defines them (helm/dagster/schema/.../values.py and subschema/ in
# dagster-io/dagster: the pydantic models that generate values.schema.json; webserver.py,
# daemon.py, run_launcher.py, user_deployments.py forbid unknown keys).

CHART_TOP = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql",
    "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
    "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher",
    "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
    "global", "retention", "additionalInstanceConfig",
}  # fmt: skip
WEBSERVER = {
    "replicaCount", "image", "nameOverride", "pathPrefix", "service", "workspace", "env",
    "envConfigMaps", "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity",
    "tolerations", "podSecurityContext", "securityContext", "resources", "readinessProbe",
    "livenessProbe", "startupProbe", "annotations", "enableReadOnly", "dbStatementTimeout",
    "dbPoolRecycle", "logLevel", "schedulerName", "volumeMounts", "volumes",
}  # fmt: skip
DAEMON = {
    "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps",
    "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
    "startupProbe", "annotations", "runMonitoring", "runRetries", "sensors", "schedules",
    "schedulerName", "volumeMounts", "volumes",
}  # fmt: skip
USER_DEPLOYMENT = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
    "port", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
    "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe",
    "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName",
}  # fmt: skip
K8S_RUN_LAUNCHER = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
    "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
    "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
POSTGRESQL = {
    "image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
    "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service",
}  # fmt: skip
GLOBAL = {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"}
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}


def helm() -> dict[str, Any]:
    return files.load_yaml(files.HELM_VALUES)


def check_image(image: dict[str, Any]) -> None:
    assert set(image) == {"repository", "tag", "pullPolicy"}
    assert image["repository"].endswith("/mlplatform") and isinstance(image["tag"], str)
    assert image["pullPolicy"] in PULL_POLICIES


def test_helm_values_use_only_chart_keys() -> None:
    values = helm()
    assert set(values) <= CHART_TOP, set(values) - CHART_TOP
    assert set(values["global"]) <= GLOBAL
    assert set(values["postgresql"]) <= POSTGRESQL
    assert set(values["dagsterWebserver"]) <= WEBSERVER
    assert set(values["dagsterDaemon"]) <= DAEMON
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert set(deployment) <= USER_DEPLOYMENT
    assert set(values["dagster-user-deployments"]) <= {
        "enabled", "enableSubchart", "imagePullSecrets", "deployments"
    }  # fmt: skip
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(values["runLauncher"]["config"]) == {"k8sRunLauncher"}
    assert set(values["runLauncher"]["config"]["k8sRunLauncher"]) <= K8S_RUN_LAUNCHER


def test_helm_runs_our_image_everywhere_with_the_code_server() -> None:
    values = helm()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    images = [
        values["dagsterWebserver"]["image"],
        values["dagsterDaemon"]["image"],
        deployment["image"],
    ]
    for image in images:
        check_image(image)
    assert len({(i["repository"], i["tag"]) for i in images}) == 1
    # The chart runs: dagster code-server start -h 0.0.0.0 -p <port> <codeServerArgs>
    compose = files.service_command("code-server")
    assert compose[compose.index("-p") + 1] == str(deployment["port"])
    assert deployment["codeServerArgs"] == compose[compose.index("-p") + 2 :]
    assert "dagsterApiGrpcArgs" not in deployment
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert values["global"]["dagsterHome"] == files.env(files.PLATFORM_DOCKERFILE)["DAGSTER_HOME"]
    (user,) = [i.args for i in files.final_stage(files.PLATFORM_DOCKERFILE) if i.keyword == "USER"]
    uid = int(user.split(":")[0])
    for part in (values["dagsterWebserver"], values["dagsterDaemon"], deployment):
        assert part["podSecurityContext"]["runAsUser"] == uid
        assert part["podSecurityContext"]["runAsNonRoot"] is True
    # uid 10001 cannot bind port 80 (the chart's default webserver port)
    assert values["dagsterWebserver"]["service"]["port"] > 1024


def test_helm_instance_matches_the_team_deployment() -> None:
    values, team = helm(), files.load_yaml(files.TEAM_INSTANCE)
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "CustomRunCoordinator"
    assert coordinator["config"]["customRunCoordinator"] == team["run_coordinator"]
    # run_monitoring / run_retries verbatim (the chart's own rendering of them is switched off)
    extra = values["additionalInstanceConfig"]
    assert extra == {k: team[k] for k in ("run_monitoring", "run_retries")}
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is False
    assert values["dagsterDaemon"]["runRetries"]["enabled"] is False
    pg = values["postgresql"]
    assert pg["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert pg["postgresqlScheme"] == team["storage"]["postgres"]["postgres_db"]["scheme"]
    assert pg["postgresqlDatabase"] == "dagster"
    assert values["telemetry"] == team["telemetry"]
    # every component that loads the instance can resolve the coordinator's env var
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for part in (values["dagsterWebserver"], values["dagsterDaemon"], deployment):
        assert {"name": "DAGSTER_MAX_CONCURRENT_RUNS", "value": "4"} in part["env"]


def test_helm_compute_logs_and_data_live_on_the_shared_volume() -> None:
    values = helm()
    docker_logs = files.load_yaml(files.DOCKER_INSTANCE)["compute_logs"]
    custom = values["computeLogManager"]["config"]["customComputeLogManager"]
    assert values["computeLogManager"]["type"] == "CustomComputeLogManager"
    assert custom == docker_logs
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for part in (values["dagsterWebserver"], values["dagsterDaemon"], deployment):
        assert {"name": "data", "mountPath": "/data"} in part["volumeMounts"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in part["volumes"]]
        assert claims == ["mlplatform-data"]
    assert {"name": "mlplatform-env"} in deployment["envSecrets"]
