"""Daemon-path benchmark: landing files on an empty home with ``mlplatform ui`` running, until
the newest cutoff's bundle is published, vs ``mlplatform materialize`` of the same data
in-process; peak memory of the daemon path; runs launched on a home the CLI already built.

Same machine, same run, one fresh home per side, the example project ``churn`` unchanged (its
candidates, training window and default sensor interval; ``--interval`` overrides the interval)
and its data from ``mlplatform generate --months M --rows R`` (default: 36 x 2,000, seed 7):

* ``cli_s``: ``mlplatform materialize churn`` (its Typer command called in this process, as
  the CLI runs it: every landed partition, then the newest cutoff; the heavy libraries are
  imported on first use, as in a fresh ``mlplatform`` process), on home ``cli``.
* ``daemon_s``: home ``daemon`` starts empty; ``mlplatform ui`` (webserver, daemon, code server,
  run workers; the embedded instance's queue, so as many work runs at once as the machine
  holds) runs until its landing and automation sensors have ticked once; then the M files are
  renamed into the landing folder at once; ``daemon_s`` runs from there to the newest cutoff's
  ``bundle`` materialization in the instance. Then the bench waits until the queue is empty
  and both sensors have ticked after the last run, counts every run launched and splits
  ``daemon_s`` into phases from the run records (sensor latency, data runs, automation
  latency, training run).
* ``peak_rss_mb``: the largest sum of VmRSS over the process tree of ``mlplatform ui``, sampled
  from /proc every 0.5 s from its start until it is stopped (an upper bound: shared pages
  count once per process).
* ``runs_on_built_home``: ``mlplatform ui`` started on home ``cli``, runs launched while its
  landing and automation sensors tick three times each (goal 0).

``--dequeue-threads N`` is an experiment, not the shipped configuration: the daemon home gets
the embedded instance yaml with ``dequeue_use_threads: true`` (Dagster's queue then launches
up to N runs at once instead of one after the other; a launch waits for the run worker to
import the code location).

Prints a table, then (last stdout line) ``{"bench": "daemon_path", "months", "rows",
"daemon_s", "cli_s", "ratio", "peak_rss_mb", "runs_launched", "runs_on_built_home"}`` with
ratio = daemon_s / cli_s. Goals: ratio <= 1.5, peak_rss_mb <= 4096 on 2 cores. Run:
``.venv/bin/python bench/daemon_path.py [--months 36] [--rows 2000] [--interval S]
[--dequeue-threads N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from _common import emit, progress, quiet, table, work_dir

from mlplatform.settings import EXAMPLES_DIR, Settings, load_settings
from mlplatform.spec import Automation

BIN = Path(sys.executable).parent
PROJECT = "churn"
SAMPLE_SECONDS = 0.5
OTHER_INSTANCE = ("DAGSTER_HOME", "MLPLATFORM_DAGSTER_HOME_DIR")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=36, help="monthly landing files (>= 13)")
    parser.add_argument("--rows", type=int, default=2000, help="rows per month")
    parser.add_argument(
        "--interval", type=int, default=None, help="sensor interval in seconds (default: spec's)"
    )
    parser.add_argument(
        "--dequeue-threads",
        type=int,
        default=0,
        help="experiment: the daemon home's instance launches up to N queued runs in parallel "
        "(dequeue_use_threads; default: the embedded instance as shipped)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per wait")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    return parser.parse_args()


# ---------------------------------------------------------------- processes and memory


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(root: int) -> dict[int, int]:
    """{pid: start time} of ``root`` and all its descendants."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            parents.setdefault(info[0], []).append(int(entry))
            starts[int(entry)] = info[1]
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            tree[pid] = starts[pid]
            todo += parents.get(pid, [])
    return tree


@dataclass
class Sampler:
    """Samples the summed RSS of a process tree every 0.5 s in a thread; remembers every
    process it saw (pid and start time), so that leftovers can be ended by their id."""

    root: int
    peak_kb: int = 0
    peak_procs: int = 0
    seen: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            tree = process_tree(self.root)
            self.seen |= tree
            total = sum(_rss_kb(pid) for pid in tree)
            if total > self.peak_kb:
                self.peak_kb, self.peak_procs = total, len(tree)
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class Ui:
    proc: subprocess.Popen[bytes]
    sampler: Sampler
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def platform_env(settings: Settings) -> dict[str, str]:
    """This environment for ``settings``' home (``mlplatform`` sets DAGSTER_HOME from it)."""
    env = {k: v for k, v in os.environ.items() if k not in OTHER_INSTANCE}
    return env | {"MLPLATFORM_HOME": str(settings.home)}


@contextlib.contextmanager
def running_ui(settings: Settings, env: dict[str, str], log: Path) -> Iterator[Ui]:
    """``mlplatform ui`` on ``settings``' home, sampled; stopped with SIGTERM (what a service
    manager sends), then whatever of its tree is left is killed by pid."""
    port = free_port()
    command = [
        str(BIN / "mlplatform"), "ui", "--port", str(port),
        "--home", str(settings.home), "--projects", str(settings.projects_dir),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    sampler = Sampler(proc.pid).start()
    try:
        yield Ui(proc, sampler, f"http://127.0.0.1:{port}", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sampler.stop()
        for pid, started in sampler.seen.items():
            info = _stat(pid)
            if info is not None and info[1] == started:  # the same process, still there
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def wait_for(what: str, check: Callable[[], Any], seconds: float, ui: Ui | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if ui is not None and ui.proc.poll() is not None:
            tail = ui.log.read_text(errors="replace")[-3000:]
            raise SystemExit(
                f"mlplatform ui exited ({ui.proc.returncode}) waiting for {what}:\n{tail}"
            )
        if time.monotonic() > deadline:
            tail = ui.log.read_text(errors="replace")[-3000:] if ui else ""
            raise SystemExit(f"timed out after {seconds:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.5)


# ---------------------------------------------------------------- instance queries


def finished_ticks(instance: Any, sensor: str, after: float) -> int:
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == f"{PROJECT}__{sensor}":
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
            return sum(1 for t in ticks if t.status != TickStatus.STARTED)
    return 0


def in_flight(instance: Any) -> int:
    import dagster as dg
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

    return int(instance.get_runs_count(dg.RunsFilter(statuses=NOT_FINISHED_STATUSES)))


def quiet_since(instance: Any, since: float, ticks: int) -> bool:
    """No run queued or in progress, and the landing and automation sensors have each
    finished ``ticks`` ticks after ``since`` and after the last run ended."""
    if in_flight(instance):
        return False
    ends = [r.end_time or 0.0 for r in instance.get_run_records(limit=5)]
    after = max([since, *ends])
    return all(finished_ticks(instance, s, after) >= ticks for s in ("landing", "automation"))


def bundle_published(instance: Any, cutoff: str) -> bool:
    import dagster as dg

    key = dg.AssetKey([PROJECT, "bundle"])
    filter_ = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[cutoff])
    return bool(instance.fetch_materializations(filter_, limit=1).records)


def failed_runs(instance: Any) -> list[str]:
    import dagster as dg

    failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    return [f"{r.job_name} {r.tags.get('dagster/partition', '')}" for r in failed]


# ---------------------------------------------------------------- the two sides


def make_home(root: Path, name: str, spec: dict[str, Any]) -> Settings:
    projects = root / name / "projects"
    projects.mkdir(parents=True)
    (projects / f"{PROJECT}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    settings = load_settings(home=root / name / "home", projects_dir=projects)
    settings.home.mkdir(parents=True)
    return settings


def materialize_in_process(settings: Settings) -> float:
    """``mlplatform materialize churn`` in this process (its output to stderr); seconds."""
    import typer

    from mlplatform.cli import app

    command = typer.main.get_command(app)
    args = ["materialize", PROJECT, "--home", str(settings.home)]
    args += ["--projects", str(settings.projects_dir)]
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        code = command.main(args, standalone_mode=False)
    seconds = time.perf_counter() - started
    if code not in (None, 0):
        raise SystemExit(f"mlplatform materialize exited {code}")
    return seconds


def launch_in_parallel(settings: Settings, workers: int) -> None:
    """The embedded instance configuration with ``dequeue_use_threads`` (an edited copy: without
    the managed first line, ``mlplatform`` keeps it)."""
    from mlplatform.defs.runs import EMBEDDED_YAML

    config = yaml.safe_load(EMBEDDED_YAML.read_text(encoding="utf-8"))
    config["run_coordinator"]["config"] |= {
        "dequeue_use_threads": True,
        "dequeue_num_workers": workers,
    }
    settings.dagster_home.mkdir(parents=True)
    (settings.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def phases(instance: Any, landed_at: float, bundle_at: float, newest: str) -> list[list[object]]:
    """Where the daemon path's time went, from the run records (seconds)."""
    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    data = [r for r in records if r.dagster_run.tags.get("mlplatform/trigger") == "landing"]
    train = [r for r in records if r.dagster_run.tags.get("dagster/partition") == newest]
    train = [r for r in train if r not in data]
    if not data or not train or train[-1].end_time is None:
        return []
    t = train[-1]
    created = [r.create_timestamp.timestamp() for r in data]
    data_end = max(r.end_time or 0.0 for r in data)
    lengths = [r.end_time - r.start_time for r in data if r.start_time and r.end_time]
    t_created = t.create_timestamp.timestamp()
    return [
        ["  landing -> first run requested (landing sensor tick)", min(created) - landed_at, ""],
        ["  first run requested -> last requested (one tick)", max(created) - min(created), ""],
        ["  first run requested -> last data run ended", data_end - min(created), len(data)],
        ["    mean data run, started -> ended", sum(lengths) / len(lengths), ""],
        ["  last data run ended -> training requested (automation)", t_created - data_end, ""],
        ["  training requested -> started (queue, worker start)", t.start_time - t_created, ""],
        ["  training run started -> ended", t.end_time - t.start_time, 1],
        ["  training run ended -> bundle seen by the bench", bundle_at - t.end_time, ""],
    ]


def instance_of(settings: Settings) -> Any:
    import dagster as dg

    return dg.DagsterInstance.from_config(str(settings.dagster_home))


def main() -> None:
    args = parse_args()
    if args.months < 13:
        raise SystemExit("--months must be at least 13 (churn trains on 12 months + holdout)")
    quiet()  # no warm_imports(): the CLI side pays its lazy imports once, as `mlplatform` does
    spec = yaml.safe_load((EXAMPLES_DIR / f"{PROJECT}.yaml").read_text(encoding="utf-8"))
    if args.interval is not None:
        spec["automation"] = {"enabled": True, "sensor_interval_seconds": args.interval}
    interval = (spec.get("automation") or {}).get(
        "sensor_interval_seconds", Automation().sensor_interval_seconds
    )
    rows: list[list[object]] = []
    with work_dir(args.keep) as root:
        gen = make_home(root, "generated", spec)
        progress(f"mlplatform generate: {args.months} months x {args.rows:,} rows in {root}")
        env = platform_env(gen)
        subprocess.run(
            [BIN / "mlplatform", "generate", "--months", str(args.months),
             "--rows", str(args.rows), "--home", str(gen.home),
             "--projects", str(gen.projects_dir)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        files = sorted((gen.home / "landing" / PROJECT).glob("*.csv"))
        newest = files[-1].stem

        # ---- CLI side: in-process materialize on a fresh home
        cli = make_home(root, "cli", spec)
        landing = cli.home / "landing" / PROJECT
        landing.mkdir(parents=True)
        for f in files:
            shutil.copy2(f, landing / f.name)
        progress(f"mlplatform materialize {PROJECT} (in-process) ...")
        cli_s = materialize_in_process(cli)
        os.environ.pop("DAGSTER_HOME", None)  # set by the CLI for this process only
        rows.append(["mlplatform materialize (in-process)", cli_s, len(files) + 1, "-"])

        # ---- daemon side: mlplatform ui on an empty home, then the files land at once
        daemon = make_home(root, "daemon", spec)
        if args.dequeue_threads:
            launch_in_parallel(daemon, args.dequeue_threads)
        incoming = daemon.home / "incoming"
        incoming.mkdir()
        for f in files:
            shutil.copy2(f, incoming / f.name)
        landing = daemon.home / "landing" / PROJECT
        landing.mkdir(parents=True)
        progress("mlplatform ui on an empty home ...")
        with running_ui(daemon, platform_env(daemon), root / "ui-daemon.log") as ui:
            up = time.time()
            wait_for("the web UI", lambda: _answers(ui.url), args.timeout, ui)
            instance = instance_of(daemon)
            wait_for(
                "the first landing and automation ticks",
                lambda: all(finished_ticks(instance, s, up) for s in ("landing", "automation")),
                args.timeout,
                ui,
            )
            progress(f"{len(files)} files land at once; waiting for the {newest} bundle ...")
            landed_at = time.time()
            t0 = time.perf_counter()
            for f in files:
                os.replace(incoming / f.name, landing / f.name)
            wait_for(
                f"the {newest} bundle", lambda: bundle_published(instance, newest), args.timeout, ui
            )
            daemon_s = time.perf_counter() - t0
            bundle_at = time.time()
            progress(f"bundle published after {daemon_s:.1f}s; waiting for the queue to empty")
            wait_for("quiet", lambda: quiet_since(instance, landed_at, 1), args.timeout, ui)
            runs_launched = instance.get_runs_count()
            failed = failed_runs(instance)
            breakdown = phases(instance, landed_at, bundle_at, newest)
            instance.dispose()
        peak_mb, peak_procs = ui.sampler.peak_kb / 1024, ui.sampler.peak_procs
        rows.append(["daemon path (mlplatform ui)", daemon_s, runs_launched, f"{peak_mb:,.0f}"])
        rows += [[*row, ""] for row in breakdown]

        # ---- mlplatform ui on the home the CLI built: goal 0 runs
        progress("mlplatform ui on the home the CLI built: 3 ticks of each sensor ...")
        with running_ui(cli, platform_env(cli), root / "ui-cli.log") as ui:
            up = time.time()
            instance = instance_of(cli)
            before = instance.get_runs_count()
            wait_for(
                "3 landing and automation ticks",
                lambda: all(
                    finished_ticks(instance, s, up) >= 3 for s in ("landing", "automation")
                ),
                args.timeout,
                ui,
            )
            runs_on_built_home = instance.get_runs_count() - before
            instance.dispose()
        rows.append(["mlplatform ui on the CLI-built home", "-", runs_on_built_home, "-"])

    ratio = round(daemon_s / cli_s, 3)
    print(
        f"daemon-path benchmark: {PROJECT} (example spec; sensor interval {interval} s"
        f"{'; experiment: dequeue_use_threads' if args.dequeue_threads else ''}), "
        f"{len(files)} months x {args.rows:,} rows, newest cutoff {newest}; "
        f"{os.cpu_count()} cores"
    )
    print()
    print(table(["side", "seconds", "runs", "peak RSS MB"], rows))
    print()
    print(f"ratio daemon/cli: {ratio:.3f} (goal <= 1.5)")
    print(
        f"peak total RSS of the daemon path: {peak_mb:,.0f} MB over "
        f"{peak_procs} processes at the peak (goal <= 4096)"
    )
    print(
        f"runs launched by the daemon path: {runs_launched} (expected {len(files) + 1}: one per "
        f"landed month and one for the newest cutoff); failed: {failed or 'none'}"
    )
    print(f"runs launched on the CLI-built home: {runs_on_built_home} (goal 0)")
    emit(
        {
            "bench": "daemon_path",
            "months": len(files),
            "rows": args.rows,
            "daemon_s": round(daemon_s, 3),
            "cli_s": round(cli_s, 3),
            "ratio": ratio,
            "peak_rss_mb": round(peak_mb, 1),
            "runs_launched": runs_launched,
            "runs_on_built_home": runs_on_built_home,
        }
    )


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
