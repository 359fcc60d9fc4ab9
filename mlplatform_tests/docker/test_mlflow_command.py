"""The compose mlflow service's command, checked with MLflow's own code (starting the server
costs ~30 s of imports on a busy test machine): its options parse, and its ``--allowed-hosts``
accepts the Host header the platform containers send (``mlflow:5000``; MLflow's DNS rebinding
protection refuses it by default) and the health check's, and refuses others."""

from __future__ import annotations

from mlplatform_tests.docker import files


def test_mlflow_command_options_parse() -> None:
    from mlflow.cli import cli

    command = files.service_command("mlflow")
    assert command[:2] == ["mlflow", "server"]
    server = cli.commands["server"]
    ctx = server.make_context("server", command[2:])  # an unknown option raises
    assert ctx.params["serve_artifacts"] is True
    assert ctx.params["port"] == 5000 and ctx.params["host"] == "0.0.0.0"
    assert ctx.params["backend_store_uri"].endswith("@postgres:5432/mlflow")
    assert ctx.params["artifacts_destination"] == "/mlflow/artifacts"  # on the mlflow volume


def test_mlflow_allowed_hosts_let_the_platform_in() -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    command = files.service_command("mlflow")
    hosts = [h.strip() for h in command[command.index("--allowed-hosts") + 1].split(",")]
    assert is_allowed_host_header(hosts, "mlflow:5000")  # MLPLATFORM_MLFLOW_TRACKING_URI
    assert is_allowed_host_header(hosts, "127.0.0.1:5000")  # the health check, in container
    assert is_allowed_host_header(hosts, "localhost:5000")  # a browser via the published port
    assert not is_allowed_host_header(hosts, "evil.example")
    assert not is_allowed_host_header(hosts, "mlflow.evil.example:5000")
