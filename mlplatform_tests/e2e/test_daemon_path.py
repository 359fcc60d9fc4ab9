"""The daemon path as users drive it (ARCHITECTURE §4, "Automation follows data versions" and
"Runs are bounded"): `mlplatform materialize` builds a home, then the real `dagster-daemon run`
starts on it with the embedded instance's queue in force (one work run at a time).

1. Starting the daemon on a home the CLI built launches nothing.
2. A new month → exactly its raw + features and the new cutoff's models, evaluation, bundle.
3. A corrected earlier month → its raw + features and only the cutoffs that read it and were
   built before (not the newest cutoff, which does not read it; not cutoffs never built).
4. An approval while training runs wait in the queue → the promotion run jumps the queue
   (lane ``promotion``, priority 100) and the ledger's production pointer moves.

The daemon starts once for the module; the tests run in file order, each on the state the one
before left (they say so where it matters). Waiting is counted in sensor ticks, not seconds.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.dagster_run import RunRecord

from mlplatform.defs.runs import MANAGED_MARK
from mlplatform.defs.ticks import latest_storage_id, materialized_since
from mlplatform.deploy.coordinator import LANE_TAG, PRIORITY_TAG, PROMOTION_PRIORITY
from mlplatform.examples.generate import generate_example
from mlplatform.ledger import Ledger
from mlplatform.settings import load_settings
from mlplatform_tests.projects import variant
from mlplatform_tests.sensor_ticks import completed_ticks, finished_ticks, settled
from mlplatform_tests.waiting import wait_for

BIN = Path(sys.executable).parent
P = "live"
INTERVAL = 5  # the spec's automation.sensor_interval_seconds (the smallest it allows)
TICK = 2 * INTERVAL  # the sensor daemon loops every 5 s: a 5 s sensor ticks every ~10 s
LIMIT = 1  # MLPLATFORM_MAX_CONCURRENT_RUNS: work runs at once
MONTHS, ROWS = 7, 150  # 6 land before the daemon starts, the 7th while it runs
OTHER_INSTANCE = ("DAGSTER_HOME", "MLPLATFORM_DAGSTER_HOME_DIR")  # the CLI picks the home's
TRAINING = ("model/logreg", "model/forest", "evaluation", "bundle")


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    instance: dg.DagsterInstance
    months: list[str]  # partition keys of the generated files, oldest first
    held_back: Path  # the 7th month, not landed yet
    log: Path
    daemon: subprocess.Popen[bytes]
    daemon_started: float
    cli_runs: int
    seen_runs: list[str] = field(default_factory=list)

    @property
    def landing(self) -> Path:
        return self.home / "landing" / P

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"daemon log tail:\n{text[-4000:]}"

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(a) for a in args], env=self.env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        return result


def records(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> list[RunRecord]:
    ids = list(run_ids)
    return list(instance.get_run_records(dg.RunsFilter(run_ids=ids))) if ids else []


def ids(recs: Iterable[RunRecord]) -> list[str]:
    return [r.dagster_run.run_id for r in recs]


def new_runs(p: Platform) -> list[RunRecord]:
    """Runs created since the last call (oldest first)."""
    known = set(p.seen_runs)
    fresh = [r for r in p.instance.get_run_records() if r.dagster_run.run_id not in known]
    fresh.sort(key=lambda r: r.create_timestamp)
    p.seen_runs += [r.dagster_run.run_id for r in fresh]
    return fresh


def failures(instance: dg.DagsterInstance, recs: Iterable[RunRecord]) -> list[str]:
    out = []
    for r in recs:
        run = r.dagster_run
        if run.status == dg.DagsterRunStatus.SUCCESS:
            continue
        steps = [
            f"{e.step_key}: {e.message}"
            for e in instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
        ]
        out.append(f"{run.job_name} {run.tags.get('dagster/partition')} {run.status}: {steps}")
    return out


def most_at_once(recs: Iterable[RunRecord], lane: str = "work") -> int:
    """The most runs of ``lane`` between their start and end at any moment."""
    now = time.time()
    edges = []
    for r in recs:
        if r.dagster_run.tags.get(LANE_TAG) == lane and r.start_time is not None:
            edges += [(r.start_time, 1), (r.end_time or now, -1)]
    most = running = 0
    for _, step in sorted(edges):  # at equal times an end (-1) sorts before a start
        running += step
        most = max(most, running)
    return most


def timeline(recs: Iterable[RunRecord], t0: float) -> str:
    """Created, started and ended (seconds after ``t0``) of each run, for failure messages."""

    def at(t: float | None) -> str:
        return "-" if t is None else f"{t - t0:.1f}"

    return "\n".join(
        f"{r.dagster_run.job_name} {r.dagster_run.tags.get('dagster/partition', '-')}"
        f" created {at(r.create_timestamp.timestamp())} started {at(r.start_time)}"
        f" ended {at(r.end_time)} {r.dagster_run.status.value}"
        for r in sorted(recs, key=lambda r: r.create_timestamp)
    )


def expected(months: Iterable[str], cutoffs: Iterable[str]) -> set[tuple[str, str]]:
    data = {(f"{P}/{a}", m) for m in months for a in ("raw", "features")}
    return data | {(f"{P}/{a}", c) for c in cutoffs for a in TRAINING}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("daemon_path")
    projects, home = root / "projects", root / "home"
    projects.mkdir()
    spec = variant("binary", P)
    spec["automation"] = {"enabled": True, "sensor_interval_seconds": INTERVAL}
    (projects / f"{P}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    files = generate_example(root / "generated", months=MONTHS, rows_per_month=ROWS, seed=7)
    landing = home / "landing" / P
    landing.mkdir(parents=True)
    for f in files[:-1]:
        shutil.copy2(f, landing / f.name)
    env = {k: v for k, v in os.environ.items() if k not in OTHER_INSTANCE}
    env |= {
        "MLPLATFORM_HOME": str(home),
        "MLPLATFORM_PROJECTS_DIR": str(projects),
        "MLPLATFORM_MAX_CONCURRENT_RUNS": str(LIMIT),
    }
    built = subprocess.run(
        [BIN / "mlplatform", "materialize", P], env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    dagster_home = load_settings(home=home).dagster_home
    assert (dagster_home / "dagster.yaml").read_text().startswith(MANAGED_MARK)  # queue on
    env["DAGSTER_HOME"] = str(dagster_home)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    log = root / "daemon.log"
    started = time.time()
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [BIN / "dagster-daemon", "run", "-m", "mlplatform.definitions"],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    platform = Platform(
        home=home,
        env=env,
        instance=instance,
        months=[f.stem for f in files],
        held_back=files[-1],
        log=log,
        daemon=daemon,
        daemon_started=started,
        cli_runs=instance.get_runs_count(),
        seen_runs=[r.dagster_run.run_id for r in instance.get_run_records()],
    )
    try:
        yield platform
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        instance.dispose()


def test_daemon_on_a_home_built_by_the_cli_launches_nothing(platform: Platform) -> None:
    p = platform
    assert p.cli_runs == 7  # 6 data partitions and the newest cutoff, in-process

    def three_ticks_each() -> bool:
        return all(
            completed_ticks(p.instance, P, s, p.daemon_started) >= 3
            for s in ("landing", "automation", "promotion")
        )

    wait_for("three ticks of every sensor", three_ticks_each, 90 + 3 * TICK, details=p.tail)
    assert p.daemon.poll() is None, p.tail()
    assert p.instance.get_runs_count() == p.cli_runs, [r.job_name for r in p.instance.get_runs()]
    assert new_runs(p) == []


def test_a_new_month_builds_its_partition_and_the_new_cutoff_only(platform: Platform) -> None:
    p = platform
    mark = latest_storage_id(p.instance)
    shutil.copy2(p.held_back, p.landing / p.held_back.name)
    since = time.time()
    wait_for(
        "the new month's runs to finish and automation to go quiet",
        lambda: settled(p.instance, P, since),
        240,
        details=p.tail,
    )
    runs = new_runs(p)
    assert failures(p.instance, runs) == []
    new = p.months[-1]
    assert materialized_since(p.instance, mark) == expected([new], [new])
    assert len(runs) == 2  # one run per partition: the landing run and the new cutoff's
    assert most_at_once(records(p.instance, p.seen_runs)) <= LIMIT


def test_a_corrected_month_retrains_only_cutoffs_built_before_that_read_it(
    platform: Platform,
) -> None:
    """Before: cutoffs months[5] (CLI) and months[6] (test 2) are built. months[2] is read by
    cutoffs months[3..5] (window 3 + the holdout); of those only months[5] was built."""
    p = platform
    corrected = p.landing / f"{p.months[2]}.csv"
    lines = corrected.read_text().splitlines(keepends=True)
    mark = latest_storage_id(p.instance)
    corrected.write_text("".join(lines[:-1]))  # a duplicate row removed upstream
    since = time.time()
    wait_for(
        "the corrected month's runs to finish and automation to go quiet",
        lambda: settled(p.instance, P, since),
        240,
        details=p.tail,
    )
    runs = new_runs(p)
    assert failures(p.instance, runs) == []
    assert materialized_since(p.instance, mark) == expected([p.months[2]], [p.months[5]])
    assert most_at_once(records(p.instance, p.seen_runs)) <= LIMIT


def test_an_approval_jumps_the_queue_of_training_runs(platform: Platform) -> None:
    """A backtest of the other landed cutoffs (three after tests 2 and 3) fills the queue (one
    work run at a time); an approval of the cutoff months[5]'s bundle then becomes a production
    run that starts before the queued training runs do."""
    p = platform
    new_runs(p)
    key = dg.AssetKey([P, "bundle"])
    filter_ = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[p.months[5]])
    mat = p.instance.fetch_materializations(filter_, limit=1).records[0].asset_materialization
    assert mat is not None
    bundle_id = str(mat.metadata["bundle_id"].value)
    landed = sorted(f.stem for f in p.landing.glob("*.csv"))
    backtest = [c for c in landed[3:] if c != p.months[5]]  # window 3: cutoffs from the 4th
    p.run(BIN / "dagster", "job", "backfill", "-m", "mlplatform.definitions", "-j",
          f"{P}__train", "--partitions", ",".join(backtest), "--noprompt")  # fmt: skip
    training = new_runs(p)
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in training) == sorted(backtest)
    queued = [r for r in records(p.instance, ids(training)) if r.start_time is None]
    assert len(queued) >= len(backtest) - LIMIT, "the backtest should wait in the queue"

    approved_at = time.time()
    p.run(BIN / "mlplatform", "approve", P, bundle_id[:12], "-m", "ok")
    ledger = Ledger(load_settings(home=p.home).ledger)

    def promoted() -> bool:
        current = ledger.production(P)
        return current is not None and current.to_bundle == bundle_id

    wait_for("the production pointer to move", promoted, 60 + TICK, details=p.tail)
    promotion = [r for r in new_runs(p) if r.dagster_run.tags.get(LANE_TAG) == "promotion"]
    assert len(promotion) == 1
    run = promotion[0].dagster_run
    assert run.tags[PRIORITY_TAG] == PROMOTION_PRIORITY
    # requested by the first promotion tick after the approval (or one already under way)
    approval = ledger.decisions(P, bundle_id)[-1].created_at.timestamp()
    ticks = finished_ticks(p.instance, P, "promotion", approval - 2 * TICK)
    (requested_by,) = [t for t in ticks if run.run_id in t.run_ids]
    first_after = next(t for t in ticks if t.timestamp > approval)
    assert requested_by.timestamp <= first_after.timestamp, p.tail()
    # the approver is the system account of the CLI process (identities come from credentials)
    assert ledger.production(P).actor == pwd.getpwuid(os.getuid()).pw_name  # type: ignore[union-attr]

    def promotion_done() -> RunRecord | None:
        (r,) = records(p.instance, [run.run_id])
        return r if r.end_time is not None else None

    done = wait_for("the promotion run to end", promotion_done, 60, details=p.tail)
    assert done.dagster_run.status == dg.DagsterRunStatus.SUCCESS, failures(p.instance, [done])
    backtest_runs = records(p.instance, ids(training))
    overtaken = [r for r in backtest_runs if r.start_time is None or r.start_time > done.start_time]
    assert overtaken, timeline([*backtest_runs, done], approved_at)

    wait_for(
        "the backtest to finish",
        lambda: settled(p.instance, P, approved_at, 1),
        240,
        details=p.tail,
    )
    backtest_runs = records(p.instance, ids(training))
    assert failures(p.instance, backtest_runs) == []
    # automation does not react to a backtest. (An MLflow-alias re-sync by the promotion sensor,
    # run key ``sync:<row>``, is tolerated here: the sensor skips it while a promotion run is in
    # flight, tested deterministically in defs/test_production.py, but a tick racing the end
    # of the run was seen once in CI. Harmless: it only sets the alias again.)
    later = [
        r
        for r in new_runs(p)
        if not r.dagster_run.tags.get("dagster/run_key", "").startswith("sync:")
    ]
    assert later == []
    assert most_at_once(records(p.instance, p.seen_runs)) <= LIMIT
