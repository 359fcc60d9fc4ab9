"""Hyperparameter search: resumes after a crash, prunes, keeps the best trial, and bad
``search:`` sections fail validation with the field path and the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from mlplatform.spec import Candidate, ProjectSpec, Search, SearchParam, SpecError, load_spec
from mlplatform.steps import (
    candidates,
    ingest,
    search,
    search_result,
    search_space,
    search_storage,
)
from mlplatform.steps.features import build_features
from mlplatform.steps.model_types import EpochLog, OnEpoch
from mlplatform.steps.split import training_frame
from mlplatform_tests.projects import ProjectFactory, variant
from mlplatform_tests.waiting import let_time_pass, wait_for

pytestmark = pytest.mark.training

C_LOG = SearchParam(type="float", low=1e-3, high=10.0, log=True)


def train_frame(project: Any) -> pd.DataFrame:
    """Features of every generated partition, in partition order (no holdout needed here)."""
    spec = project.spec
    feats = {}
    for f in project.files:
        typed, report = ingest.parse_partition(ingest.read_landing_file(f, spec), spec, f)
        assert report.passed, report.problems
        feats[f.stem] = build_features(typed, spec)
    return training_frame(feats)


@pytest.fixture
def binary(make_project: ProjectFactory) -> tuple[ProjectSpec, pd.DataFrame]:
    project = make_project("binary", months=3, rows=200)
    return project.spec, train_frame(project)


def logreg(**search: Any) -> Candidate:
    search.setdefault("space", {"C": C_LOG})
    return Candidate(
        name="logreg",
        estimator="logistic_regression",
        params={"max_iter": 300, "C": 1.0},
        search=Search(**search),
    )


def url(tmp_path: Path, name: str = "search.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def stored_trials(storage_url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    store = search_storage.storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
    finally:
        store.engine.dispose()


# ------------------------------------------------------------------------------ resume


def crash_worker(spec_file: str, frame_file: str, storage_url: str, name: str) -> None:
    """Run in a child process: two quick trials, then a trial that hangs until killed."""
    spec = load_spec(spec_file)
    calls = []

    def fit(train: pd.DataFrame, spec: ProjectSpec, cand: Candidate, on_epoch: Any) -> Any:
        calls.append(cand)
        if len(calls) > 2:
            let_time_pass(600)  # a trial that hangs until its process is killed
        return candidates.fit(train, spec, cand, on_epoch)

    search.run_search(
        pd.read_parquet(frame_file), spec, logreg(n_trials=6), storage_url, name, fit=fit
    )


@pytest.mark.e2e  # a child process is killed mid-search
def test_search_resumes_after_the_process_is_killed(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project("binary", months=3, rows=200)
    check_resume_after_kill(project.spec, train_frame(project), url(tmp_path), tmp_path)


def check_resume_after_kill(
    spec: ProjectSpec, train: pd.DataFrame, storage_url: str, tmp_path: Path
) -> None:
    """A child process runs a search and is SIGKILLed in its third trial, after two finished;
    the search then resumes here (also used by the PostgreSQL test)."""
    assert spec.source_file is not None
    frame_file = tmp_path / "train.parquet"
    train.to_parquet(frame_file)
    name = search.study_name(spec, logreg(n_trials=6), "2023-04-01", "data-v1")
    code = (
        "from mlplatform_tests.unit.test_search import crash_worker; "
        f"crash_worker({str(spec.source_file)!r}, {str(frame_file)!r}, {storage_url!r}, {name!r})"
    )
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=out)
    try:

        def third_trial_hangs() -> bool:
            assert child.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                trials = stored_trials(storage_url, name)
            except (KeyError, sa.exc.SQLAlchemyError):  # the child is still creating the study
                trials = []
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            return (
                len(complete) >= 2
                and bool(running)
                and search_storage.PID_ATTR in running[0].user_attrs
            )

        wait_for(
            "2 finished trials and a running third",
            third_trial_hangs,
            60,
            interval=0.1,
            details=lambda: str([t.state for t in stored_trials(storage_url, name)]),
        )
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    before = stored_trials(storage_url, name)
    finished_before = sum(t.state in search.FINISHED for t in before)
    assert finished_before >= 2
    (killed,) = [t.number for t in before if t.state == optuna.trial.TrialState.RUNNING]

    seen: list[search_result.TrialRecord] = []
    result = search.run_search(
        train, spec, logreg(n_trials=6), storage_url, name, on_trial=seen.append
    )

    assert result.resumed_from == finished_before
    assert result.finished == 6 and result.complete == 6
    assert result.ran == 6 - finished_before == len(seen)
    states = {t.number: t.state for t in result.trials}
    assert states[killed] == "FAIL" and result.failed == 1
    assert next(t for t in result.trials if t.number == killed).error == "its process died"
    assert "RUNNING" not in states.values()
    # finished trials from before the crash are kept, not re-run
    assert {t.number for t in seen}.isdisjoint({t.number for t in before})
    # a resumed search does not replay the samples it already tried
    params = [t.params["C"] for t in result.trials if t.state == "COMPLETE"]
    assert len(set(params)) == len(params)
    # nothing left to do: the next call runs no trial and gives the same answer
    again = search.run_search(train, spec, logreg(n_trials=6), storage_url, name)
    assert again.ran == 0 and again.resumed_from == 6
    assert (again.best_trial, again.best_params) == (result.best_trial, result.best_params)


# ------------------------------------------------------------------------------ results


def test_same_seed_same_samples_and_best_params_are_the_best_trials(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary
    cand = logreg(
        n_trials=5,
        space={
            "C": C_LOG,
            "class_weight": SearchParam(type="categorical", choices=[None, "balanced"]),
        },
    )
    runs = [search.run_search(train, spec, cand, url(tmp_path, f"{i}.db"), "s") for i in range(2)]
    assert [t.params for t in runs[0].trials] == [t.params for t in runs[1].trials]
    assert [t.value for t in runs[0].trials] == [t.value for t in runs[1].trials]
    reseeded = spec.model_copy(update={"training": spec.training.model_copy(update={"seed": 99})})
    other = search.run_search(train, reseeded, cand, url(tmp_path, "2.db"), "s")
    assert [t.params for t in other.trials] != [t.params for t in runs[0].trials]

    result = runs[0]
    assert result.metric == "roc_auc" and result.direction == "maximize"
    best = max((t for t in result.trials if t.state == "COMPLETE"), key=lambda t: t.value or 0)
    assert (result.best_trial, result.best_value, result.best_params) == (
        best.number,
        best.value,
        best.params,
    )
    assert result.params == {"max_iter": 300, **best.params}
    assert result.chosen(cand).params == result.params
    assert result.storage == url(tmp_path, "0.db")
    assert result.to_json()["trials"][0]["params"] == result.trials[0].params
    # the objective is the validation score of a fit on the rest of the window
    fit_part, valid = search.validation_split(train, cand.search.validation_fraction)  # type: ignore[union-attr]
    refit = candidates.fit(fit_part, spec, result.chosen(cand))
    assert search.validation_score(refit, valid, spec, "roc_auc") == pytest.approx(best.value)


def test_lower_is_better_metric_minimizes(make_project: ProjectFactory, tmp_path: Path) -> None:
    project = make_project("regression", months=3, rows=200)
    spec, train = project.spec, train_frame(project)
    cand = Candidate(
        name="ridge",
        estimator="ridge",
        search=Search(
            space={"alpha": SearchParam(type="float", low=1e-3, high=1e3, log=True)},
            n_trials=4,
            metric="mae",
        ),
    )
    result = search.run_search(train, spec, cand, url(tmp_path), "r")
    assert (result.metric, result.direction) == ("mae", "minimize")
    assert result.best_value == min(t.value for t in result.trials if t.value is not None)


def test_categorical_list_choices_round_trip(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary
    layers = [[8], [8, 4], [16, 8, 4]]
    cand = Candidate(
        name="mlp",
        kind="torch",
        params={"max_epochs": 2},
        search=Search(
            space={
                "hidden_layers": SearchParam(type="categorical", choices=layers),
                "class_weights": SearchParam(type="categorical", choices=["balanced", "none"]),
            },
            n_trials=6,
            pruning=False,
        ),
    )
    fitted: list[Candidate] = []

    def fit(train: pd.DataFrame, spec: ProjectSpec, c: Candidate, on_epoch: OnEpoch | None) -> Any:
        fitted.append(c)
        return candidates.fit(train, spec, logreg())

    result = search.run_search(train, spec, cand, url(tmp_path), "c", fit=fit)
    assert [c.params["hidden_layers"] for c in fitted] == [
        t.params["hidden_layers"] for t in result.trials
    ]
    assert all(c.params["hidden_layers"] in layers for c in fitted)
    assert all(c.params["max_epochs"] == 2 for c in fitted)
    assert {c.params["class_weights"] for c in fitted} <= {"balanced", "none"}
    assert result.best_params["hidden_layers"] in layers
    manifest = json.loads(json.dumps(result.to_json(), allow_nan=False))  # as the manifest has it
    assert manifest["best_params"] == result.best_params
    assert [t["params"] for t in manifest["trials"]] == [t.params for t in result.trials]
    assert result.chosen(cand).torch_params().hidden_layers == tuple(
        result.best_params["hidden_layers"]
    )
    # stored by Optuna as JSON text, read back as lists
    stored = stored_trials(url(tmp_path), "c")[0].params["hidden_layers"]
    assert (
        isinstance(stored, str)
        and search_space.decode_params(cand.search.space, {"hidden_layers": stored})[
            "hidden_layers"
        ]
        in layers
    )  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ pruning


class ConstantModel:
    """A fitted model stand-in: the same probabilities for every row."""

    def __init__(self) -> None:
        self.classes = ["no", "yes"]
        self.history: list[EpochLog] = []

    def predict(self, features: pd.DataFrame) -> Any:
        return np.tile([0.5, 0.5], (len(features), 1))


def fake_iterative(epochs: int = 10) -> tuple[search.Fit, list[int]]:
    """An iterative trainer whose validation roc_auc per epoch is set by C: small C is bad.
    Returns the fit and the number of epochs each call got through."""
    reached: list[int] = []

    def fit(
        train: pd.DataFrame, spec: ProjectSpec, cand: Candidate, on_epoch: OnEpoch | None
    ) -> Any:
        reached.append(0)
        quality = min(1.0, cand.params["C"])
        for epoch in range(1, epochs + 1):
            reached[-1] = epoch
            if on_epoch is not None:
                auc = 0.5 + 0.4 * quality * epoch / epochs
                on_epoch(EpochLog(epoch, 1.0, 1.0, {"roc_auc": auc}))
        return ConstantModel()

    return fit, reached


def test_pruning_stops_hopeless_trials(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary
    fit, reached = fake_iterative()
    result = search.run_search(train, spec, logreg(n_trials=12), url(tmp_path), "p", fit=fit)
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    assert result.pruned == len(pruned) >= 2 and result.complete + result.pruned == 12
    for t in pruned:
        assert max(t.intermediate) < 10 and reached[t.number] == max(t.intermediate)
        assert t.value is None
    done = [t for t in result.trials if t.state == "COMPLETE"]
    assert all(len(t.intermediate) == 10 for t in done)
    # every pruned trial was worse than the median of the completed trials before it
    for t in pruned:
        step = max(t.intermediate)
        earlier = [e.intermediate[step] for e in done if e.number < t.number]
        assert len(earlier) >= 2 and t.intermediate[step] < np.median(earlier)
        assert step >= 3  # epochs 1 and 2 are never judged

    fit, reached = fake_iterative()
    off = search.run_search(
        train, spec, logreg(n_trials=12, pruning=False), url(tmp_path), "q", fit=fit
    )
    assert off.pruned == 0 and reached == [10] * 12
    assert all(len(t.intermediate) == 10 for t in off.trials)


def test_pruning_a_real_torch_search(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary
    cand = Candidate(
        name="mlp",
        kind="torch",
        params={
            "hidden_layers": [8],
            "max_epochs": 8,
            "patience": 8,
            "batch_size": 64,
            "device": "cpu",
        },
        search=Search(
            space={"learning_rate": SearchParam(type="float", low=1e-6, high=0.05, log=True)},
            n_trials=8,
        ),
    )
    result = search.run_search(train, spec, cand, url(tmp_path), "t")
    assert result.pruned >= 1 and result.complete + result.pruned == 8
    assert all(t.intermediate for t in result.trials)
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    assert all(max(t.intermediate) < 8 for t in pruned)
    assert 1e-6 <= result.best_params["learning_rate"] <= 0.05


# ------------------------------------------------------------------------------ failures


def test_failing_trials_are_recorded_and_the_search_goes_on(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary
    calls: list[int] = []

    def flaky(train: pd.DataFrame, spec: ProjectSpec, cand: Candidate, on_epoch: Any) -> Any:
        calls.append(1)
        if len(calls) % 3 == 2:
            raise RuntimeError("out of memory (simulated)")
        return candidates.fit(train, spec, cand)

    seen: list[search_result.TrialRecord] = []
    result = search.run_search(
        train, spec, logreg(n_trials=6), url(tmp_path), "f", fit=flaky, on_trial=seen.append
    )
    assert result.complete == 6 and result.failed == 3
    failed = [t for t in result.trials if t.state == "FAIL"]
    assert all(t.error == "RuntimeError: out of memory (simulated)" for t in failed)
    assert [t.state for t in seen] == [t.state for t in result.trials]


def test_no_completed_trial_is_a_clear_error(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary

    def broken(train: pd.DataFrame, spec: ProjectSpec, cand: Candidate, on_epoch: Any) -> Any:
        raise ValueError("the estimator exploded")

    with pytest.raises(
        search_result.SearchError, match=r"candidate 'logreg': no trial completed"
    ) as info:
        search.run_search(train, spec, logreg(n_trials=20), url(tmp_path), "z", fit=broken)
    assert "the estimator exploded" in str(info.value)
    states = [t.state.name for t in stored_trials(url(tmp_path), "z")]
    assert states == ["FAIL"] * search.MAX_FAILURES_WITHOUT_SUCCESS


def test_timeout_stops_starting_trials(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary

    def slow(train: pd.DataFrame, spec: ProjectSpec, cand: Candidate, on_epoch: Any) -> Any:
        let_time_pass(0.3)  # a slow trial: the search timeout must stop starting more
        return candidates.fit(train, spec, cand)

    cand = logreg(n_trials=30, timeout_seconds=0.5)
    result = search.run_search(train, spec, cand, url(tmp_path), "t", fit=slow)
    assert result.ran < 30, "the timeout did not stop the search"
    assert result.ran > 0 and result.complete == result.ran
    more = search.run_search(train, spec, cand, url(tmp_path), "t", fit=slow)
    assert more.resumed_from == result.ran and more.complete == result.ran + more.ran


def test_study_name_follows_what_a_trial_means(binary: tuple[ProjectSpec, pd.DataFrame]) -> None:
    spec, _ = binary
    base = search.study_name(spec, logreg(), "2023-04-01", "d1")
    assert base.startswith("small_binary.logreg.2023-04-01.")
    assert search.study_name(spec, logreg(), "2023-04-01", "d1") == base
    assert search.study_name(spec, logreg(), "2023-05-01", "d1") != base
    assert search.study_name(spec, logreg(), "2023-04-01", "d2") != base
    assert search.study_name(spec, logreg(pruning=False), "2023-04-01", "d1") != base
    assert search.study_name(spec, logreg(validation_fraction=0.3), "2023-04-01", "d1") != base
    # how long to search is not what a trial means: more trials continue the same study
    assert search.study_name(spec, logreg(n_trials=7), "2023-04-01", "d1") == base
    assert search.study_name(spec, logreg(timeout_seconds=9), "2023-04-01", "d1") == base
    wider = logreg(space={"C": SearchParam(type="float", low=1e-4, high=10.0, log=True)})
    assert search.study_name(spec, wider, "2023-04-01", "d1") != base
    manifest = {"partitions": ["a"], "rows": {"a": 1}, "data_versions": {"a": "h"}}
    assert search.data_key(manifest) == search.data_key({**manifest, "cutoff": "x"})
    assert search.data_key(manifest) != search.data_key({**manifest, "data_versions": {"a": "g"}})
    assert search.safe_url("postgresql+psycopg2://u:secret@db/mlplatform") == (
        "postgresql+psycopg2://u:***@db/mlplatform"
    )


# ------------------------------------------------------------------------------ MLflow


def test_mlflow_parent_run_with_nested_trials(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    from mlplatform.resources.mlflow import MlflowTracking

    spec, train = binary
    fit, _ = fake_iterative(epochs=4)
    tracking = MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art")
    )
    name = "small_binary.logreg.2023-04-01.x"
    streamed: list[str | None] = []

    def on_trial(record: search_result.TrialRecord) -> None:
        streamed.append(
            tracking.log_trial(spec.name, "logreg", "2023-04-01", name, "roc_auc", record)
        )

    result = search.run_search(
        train, spec, logreg(n_trials=6), url(tmp_path), name, fit=fit, on_trial=on_trial
    )
    assert all(streamed)
    parent = tracking.log_search(spec.name, "2023-04-01", result)
    assert parent is not None and tracking.log_search(spec.name, "2023-04-01", result) == parent
    client = tracking.client
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["mlplatform.study"] == name
    assert run.data.metrics["best_roc_auc"] == pytest.approx(result.best_value)
    assert run.data.tags["mlplatform.best_trial"] == str(result.best_trial)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert sorted(int(c.data.tags["mlplatform.trial"]) for c in children) == list(range(6))
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}
    for child in children:
        trial = result.trials[int(child.data.tags["mlplatform.trial"])]
        assert child.info.status == status[trial.state]
        assert float(child.data.params["C"]) == pytest.approx(trial.params["C"])
        history = client.get_metric_history(child.info.run_id, "val_roc_auc")
        assert [m.step for m in history] == sorted(trial.intermediate)

    broken = MlflowTracking(
        tracking_uri="sqlite:////proc/no-such-dir/mlflow.db", artifact_root=str(tmp_path)
    )
    assert broken.log_trial(spec.name, "logreg", "c", name, "roc_auc", result.trials[0]) is None
    assert broken.log_search(spec.name, "2023-04-01", result) is None  # warns, search unharmed


# ------------------------------------------------------------------------------ spec


def spec_with(tmp_path: Path, cand: dict[str, Any], task: str = "binary") -> Path:
    data = variant(task, "proj")
    data["candidates"] = [cand]
    path = tmp_path / "proj.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def logreg_dict(**search: Any) -> dict[str, Any]:
    return {"name": "logreg", "estimator": "logistic_regression", "search": search}


BAD_SEARCH = [
    (
        {
            "name": "mlp",
            "kind": "torch",
            "search": {"space": {"layers": {"type": "int", "low": 1, "high": 3}}},
        },
        "candidates.0.search.space.layers",
        "not a torch param",
    ),
    (
        logreg_dict(space={"C": {"type": "float", "low": 1.0, "high": 1.0}}),
        "candidates.0.search.space.C",
        "'low' (1.0) must be below 'high' (1.0)",
    ),
    (
        logreg_dict(space={"C": {"type": "float", "low": 0, "high": 1, "log": True}}),
        "candidates.0.search.space.C",
        "needs 'low' > 0",
    ),
    (
        logreg_dict(space={"penalty": {"type": "categorical"}}),
        "candidates.0.search.space.penalty",
        "non-empty 'choices'",
    ),
    (
        logreg_dict(space={"penalty": {"type": "categorical", "choices": []}}),
        "candidates.0.search.space.penalty",
        "non-empty 'choices'",
    ),
    (
        logreg_dict(space={"C": {"type": "float", "low": 0.1, "high": 1}}, metric="rmse"),
        "candidates.0.search.metric",
        "'rmse' is not a binary metric",
    ),
    (
        logreg_dict(space={}),
        "candidates.0.search.space",
        "at least 1 item",
    ),
    (
        logreg_dict(space={"C": {"type": "float", "low": 0.1, "high": 1}}, n_trials=0),
        "candidates.0.search.n_trials",
        "greater than or equal to 1",
    ),
    (
        {
            "name": "mlp",
            "kind": "torch",
            "search": {"space": {"dropout": {"type": "float", "low": 0.5, "high": 1.5}}},
        },
        "candidates.0.search.space.dropout",
        "less than 1",
    ),
]


@pytest.mark.parametrize(("cand", "where", "reason"), BAD_SEARCH)
def test_bad_search_section_names_the_field(
    tmp_path: Path, cand: dict[str, Any], where: str, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_with(tmp_path, cand))
    # loading reports a lone cross-field problem under the file (''), with the path in the text
    lines = [f"{loc}: {msg}" if loc else msg for loc, msg in info.value.problems]
    assert any(line.startswith(f"{where}: ") and reason in line for line in lines), lines


def test_sklearn_search_param_the_estimator_lacks(tmp_path: Path) -> None:
    from mlplatform.steps.train_sklearn import candidate_problems

    cand = logreg_dict(space={"hidden_layers": {"type": "int", "low": 1, "high": 3}})
    spec = load_spec(spec_with(tmp_path, cand))
    assert candidate_problems(spec) == [
        (
            "candidates.0.search.space.hidden_layers",
            "logistic_regression has no parameter 'hidden_layers'",
        )
    ]


def test_validate_command_reports_bad_search_sections(tmp_path: Path) -> None:
    from mlplatform.cli import app

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    unknown = spec_with(
        tmp_path / "a", logreg_dict(space={"depth": {"type": "int", "low": 1, "high": 3}})
    )
    inverted = spec_with(
        tmp_path / "b", logreg_dict(space={"C": {"type": "float", "low": 2, "high": 1}})
    )
    result = CliRunner().invoke(app, ["validate", str(unknown), str(inverted)])
    assert result.exit_code == 1
    assert (
        "candidates.0.search.space.depth: logistic_regression has no parameter 'depth'"
        in result.output
    )
    assert "candidates.0.search.space.C: 'low' (2.0) must be below 'high' (1.0)" in result.output
    good = spec_with(
        tmp_path,
        logreg_dict(
            space={"C": {"type": "float", "low": 0.01, "high": 10, "log": True}}, n_trials=5
        ),
    )
    result = CliRunner().invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output


def test_raising_n_trials_continues_the_study(
    binary: tuple[ProjectSpec, pd.DataFrame], tmp_path: Path
) -> None:
    spec, train = binary
    name = search.study_name(spec, logreg(n_trials=3), "2023-04-01", "d")
    first = search.run_search(train, spec, logreg(n_trials=3), url(tmp_path), name)
    assert search.study_name(spec, logreg(n_trials=5), "2023-04-01", "d") == name
    more = search.run_search(train, spec, logreg(n_trials=5), url(tmp_path), name)
    assert (first.ran, more.resumed_from, more.ran, more.complete) == (3, 3, 2, 5)
    assert [t.params for t in more.trials[:3]] == [t.params for t in first.trials]


def test_readme_torch_search_example_validates(tmp_path: Path) -> None:
    import re

    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```yaml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "search:" in b and "kind: torch" in b)
    spec = load_spec(spec_with(tmp_path, yaml.safe_load(example)[0]))
    assert spec.candidates[0].search is not None
    assert spec.candidates[0].search.space["hidden_layers"].choices == ([64], [64, 32], [128, 64])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_only_trials_of_dead_processes_are_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = search_storage.storage(url(tmp_path))
    study = optuna.create_study(storage=store, study_name="o")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {
            search_storage.HOST_ATTR: search_storage.socket.gethostname(),
            search_storage.PID_ATTR: sleeper.pid,
            search_storage.START_ATTR: search_storage._process_start(sleeper.pid),
        }
        alive, reused, anonymous = study.ask(), study.ask(), study.ask()
        for key, value in owner.items():
            alive.set_user_attr(key, value)
            reused.set_user_attr(key, value if key != search_storage.START_ATTR else "12345")
        assert search_storage.fail_orphans(study) == [reused.number]
        monkeypatch.setattr(
            search_storage, "GRACE_SECONDS", 0
        )  # a trial that never named its owner
        assert search_storage.fail_orphans(study) == [anonymous.number]
        sleeper.kill()
        sleeper.wait(timeout=30)
        assert search_storage.fail_orphans(study) == [alive.number]
        states = [t.state.name for t in study.get_trials()]
        assert states == ["FAIL", "FAIL", "FAIL"]
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
        store.engine.dispose()
