"""Serving benchmark: our app vs stock ``mlflow models serve`` on the same production bundle.

One bundle is built with the platform's pure steps (``benchchurn``, 4 generated months, the
previous 3 as training window, the last as holdout and cutoff), published into a temp home
and made production in the home's ledger (``Ledger.promote``). Then, one server at a time:

* ours: ``mlplatform serve`` (uvicorn, 1 worker, log level warning) in its own process group,
  ``POST /v1/projects/benchchurn/predict`` with ``{"rows": [row]}`` and a reader token;
* mlflow: ``mlflow models serve -m <bundle>/model --env-manager local`` (uvicorn, its default
  of 1 worker, stock settings), ``POST /invocations`` with ``{"dataframe_split": ...}``.

Both get the same load: a closed-loop generator in this process (raw asyncio HTTP/1.1 with
keep-alive; httpx costs more CPU per request than the server under test) with 16 connections
for a fixed time, each request predicting one real landing row of the holdout month (feature
columns, values as they land). Servers are warmed up first (health, then ~50 requests, then a
check that both give the same probabilities). Any non-2xx answer, timeout or socket error is
an error. Servers, load generator and this script share the machine's CPU cores.

Finally ``Client.pull`` from our server and ``Client.predict`` of 20,000 single rows in
process (input conversion included), as ``Client`` users predict.

Prints a table, then (last stdout line) ``{"bench": "serving", "ours_rps", "ours_p50_ms",
"ours_p99_ms", "mlflow_rps", "mlflow_p50_ms", "mlflow_p99_ms", "ratio", "client_p50_us",
"client_p99_us"}`` with ratio = ours_rps / mlflow_rps. Run: ``.venv/bin/python
bench/serving.py [--quick] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import (
    PROJECT,
    Size,
    candidates_text,
    emit,
    generate,
    make_home,
    progress,
    quiet,
    table,
    work_dir,
)

from mlplatform.ledger import Ledger
from mlplatform.serving.client import Client
from mlplatform.settings import Settings
from mlplatform.spec import ProjectSpec

HOST = "127.0.0.1"
TOKEN = "bench-reader-token"
FULL = Size(months=4, rows=2_000, window=3)
QUICK = Size(months=4, rows=500, window=3)
PARITY_TOLERANCE = 1e-4  # as the platform's bundle parity check
AGREE_ROWS = 20  # rows both servers must predict alike before any timing
REQUEST_TIMEOUT_S = 10.0
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
GOAL_RATIO = 25.0
GOAL_P99_MS = 20.0
LOG_ROUNDS = 4  # alternating log-on / log-off loads


# -- the production bundle --------------------------------------------------------------------


@dataclass
class Production:
    settings: Settings
    spec: ProjectSpec
    bundle_id: str
    candidate: str
    cutoff: str
    rows: list[dict[str, Any]]  # feature columns of the holdout's landing rows, as they land


def build_production(root: Path, size: Size) -> Production:
    """Train, evaluate, export and publish one bundle; make it production in the ledger."""
    from mlplatform.bundles import build
    from mlplatform.defs.bundles import bundle_manifest
    from mlplatform.defs.evaluation import model_predictor
    from mlplatform.digests import file_sha256
    from mlplatform.steps import evaluate, ingest, sklearn_onnx, split, train_sklearn
    from mlplatform.steps.baselines import baseline_predictors
    from mlplatform.steps.features import build_features

    settings, spec = make_home(root, "serving", size)
    files = generate(spec, root / "generated", size.months, size.rows)
    features, shas = {}, {}
    for path in files:
        typed, quality = ingest.parse_partition(ingest.read_landing_file(path, spec), spec, path)
        if not quality.passed:
            raise SystemExit(f"{path.name} fails its quality checks: {quality.problems}")
        features[path.stem] = build_features(typed, spec)
        shas[path.stem] = file_sha256(path)
    keys = sorted(features)
    cutoff = keys[-1]
    parts = {k: features[k] for k in keys[-1 - size.window : -1]}
    train = split.training_frame(parts)
    base = split.training_manifest(parts, {k: shas[k] for k in parts})
    pipelines, manifests = {}, {}
    for cand in spec.candidates:
        pipelines[cand.name] = train_sklearn.fit_candidate(train, spec, cand)
        manifests[cand.name] = {**base, "cutoff": cutoff, "candidate": cand.name}
    holdout = features[cutoff]
    predictors = {
        n: model_predictor(train_sklearn.SklearnModel(p, spec)) for n, p in pipelines.items()
    }
    targets = {k: f[spec.target].dropna().to_numpy() for k, f in parts.items()}
    baselines = baseline_predictors(spec, targets)
    result = evaluate.evaluate(holdout, predictors, spec, cutoff, baselines)
    if not result.winner:
        raise SystemExit(f"no candidate passed the gates for {cutoff}: {result.reasons}")
    winner = pipelines[result.winner]
    evaluation = {"result": result.to_json(), "training_manifests": manifests}
    manifest = bundle_manifest(spec, cutoff, evaluation, "bench")
    stage = build.write_bundle(
        settings.staging_dir, sklearn_onnx.pipeline_to_onnx(winner, spec), spec, manifest
    )
    audit = build.audit_bundle(stage, train_sklearn.SklearnModel(winner, spec), holdout, spec)
    if not audit["parity_error"] <= PARITY_TOLERANCE:
        raise SystemExit(f"ONNX parity {audit['parity_error']:.2e} for {cutoff}")
    bundle_id = build.publish_bundle(stage, settings.bundles_dir).name
    ledger = Ledger(settings.ledger)
    try:
        ledger.promote(spec.name, bundle_id, "bench", "serving benchmark", expected_from=None)
    finally:
        ledger.dispose()
    raw = ingest.read_landing_file(files[-1], spec)
    columns = list(spec.feature_columns)
    rows = [
        {c: (None if v is None or v != v else v) for c, v in zip(columns, values, strict=True)}
        for values in raw[columns].itertuples(index=False, name=None)
    ]
    return Production(settings, spec, bundle_id, result.winner, cutoff, rows)


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def venv_env(**extra: str) -> dict[str, str]:
    """This environment with this interpreter's bin first on PATH (mlflow runs ``uvicorn``)."""
    env = {**os.environ, **extra}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return env


def executable(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"cannot find the {name!r} command next to {sys.executable}")
    return found


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL to whatever is left after STOP_TIMEOUT_S."""
        if self.stopped:
            return
        self.stopped = True
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while group_alive(self.process) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not group_alive(self.process):
                break
        self.process.poll()


def group_alive(process: subprocess.Popen[bytes]) -> bool:
    """Whether any process of the group led by ``process`` is left (the leader is reaped)."""
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Starts a server command so that it gets SIGTERM should this process die without stopping it
# (Linux PR_SET_PDEATHSIG; skipped elsewhere), then becomes that command (exec).
LAUNCHER = """
import os, signal, sys
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("the benchmark is gone")
os.execv(sys.argv[2], sys.argv[2:])
"""


@contextmanager
def running(
    name: str, cmd: Sequence[str], port: int, env: dict[str, str], logs: Path
) -> Iterator[Server]:
    """A server command in its own process group; the whole group is stopped on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(os.getpid()), *cmd],
            env=env,
            cwd=logs,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, port, process, log)
    try:
        yield server
    finally:
        server.stop()


def wait_ready(server: Server, path: str, ready: Any, timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``GET path`` until ``ready(response)``; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=5.0) as http:
        while True:
            if server.process.poll() is not None:
                raise SystemExit(
                    f"{server.name} server exited with {server.process.returncode}:\n"
                    f"{server.log_tail()}"
                )
            try:
                if ready(http.get(path)):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{server.name} server not ready after {timeout:.0f}s:\n{server.log_tail()}"
                )
            time.sleep(0.1)


def log_off(settings: Settings) -> Path:
    """A copy of the projects folder whose spec logs nothing (``monitoring.log.rate: 0``)."""
    import yaml

    folder = settings.projects_dir.parent / "projects-log-off"
    folder.mkdir(exist_ok=True)
    for path in settings.projects_dir.glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["monitoring"] = {"log": {"rate": 0}}
        (folder / path.name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return folder


def log_counts(server: Server, wait_s: float = 30.0) -> dict[str, int]:
    """The prediction log's counts of the project from ``/healthz``, once every sample offered
    is written, dropped or failed (or after ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        while True:
            found = http.get("/healthz").json().get("prediction_log", {}).get(PROJECT, {})
            done = found.get("written_requests", 0) + found.get("dropped", 0)
            if done + found.get("failed_requests", 0) >= found.get("offered", 0):
                return dict(found)
            if time.monotonic() > deadline:
                return dict(found)
            time.sleep(0.2)


def interleaved(
    on: Server,
    off: Server,
    on_requests: Sequence[bytes],
    off_requests: Sequence[bytes],
    args: argparse.Namespace,
    seconds: float,
) -> list[float]:
    """req/s with the log on / off, both servers up, loads alternating (the machine's other
    work then weighs on both alike); one ratio per round."""
    ratios = []
    for _ in range(LOG_ROUNDS):
        a = measure(on, on_requests, args.connections, seconds / 4)
        b = measure(off, off_requests, args.connections, seconds / 4)
        ratios.append(a.rps / b.rps if b.rps else float("nan"))
    return ratios


def ours_command(settings: Settings, port: int, projects: Path | None = None) -> list[str]:
    return [
        executable("mlplatform"),
        "serve",
        "--home",
        str(settings.home),
        "--projects",
        str(projects or settings.projects_dir),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


# A bare ASGI app answering every request with one fixed prediction: no framework, no model.
# Served by the same uvicorn, it is the most any uvicorn app can answer under this load here.
CEILING_APP = """
BODY = %r


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%%d" %% len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
"""


def ceiling_command(folder: Path, answer: bytes, port: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ceiling_app.py").write_text(CEILING_APP % answer, encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "ceiling_app:app",
        "--app-dir",
        str(folder),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]


def mlflow_command(model_dir: Path, port: int) -> list[str]:
    return [
        executable("mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        HOST,
    ]


# -- load generator ---------------------------------------------------------------------------


def http_request(path: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("ascii") + body


def ours_body(row: dict[str, Any]) -> bytes:
    return json.dumps({"rows": [row]}).encode("utf-8")


def mlflow_body(row: dict[str, Any]) -> bytes:
    split = {"columns": list(row), "data": [list(row.values())]}
    return json.dumps({"dataframe_split": split}).encode("utf-8")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, keep_alive = None, False, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            keep_alive = False
    if length is not None:
        return status, await reader.readexactly(length), keep_alive
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return status, b"".join(parts), keep_alive
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, await reader.read(), False


@dataclass
class Load:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    first_error: str = ""

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e3

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


async def connection_loop(
    port: int, requests: Sequence[bytes], start: int, stop: Any, load: Load
) -> None:
    """One keep-alive connection sending requests back to back until ``stop(sent)``."""
    reader = writer = None
    sent = 0
    i = start
    try:
        while not stop(sent):
            request = requests[i % len(requests)]
            i += 1
            sent += 1
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(HOST, port), REQUEST_TIMEOUT_S
                    )
                except (OSError, TimeoutError) as exc:
                    load.error(f"connect: {exc!r}")
                    await asyncio.sleep(0.01)
                    continue
            t0 = time.perf_counter()
            try:
                writer.write(request)
                status, body, keep_alive = await asyncio.wait_for(
                    read_response(reader), REQUEST_TIMEOUT_S
                )
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                load.error(f"request: {exc!r}")
                writer.close()
                reader = writer = None
                continue
            elapsed = time.perf_counter() - t0
            if 200 <= status < 300:
                load.latencies.append(elapsed)
            else:
                load.error(f"HTTP {status}: {body[:300]!r}")
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def drive(
    port: int,
    requests: Sequence[bytes],
    connections: int,
    *,
    seconds: float | None = None,
    per_connection: int | None = None,
) -> Load:
    """Closed loop: ``connections`` connections, each sending its next request on an answer."""
    load = Load()
    started = time.perf_counter()
    if seconds is not None:
        deadline = started + seconds

        def stop(sent: int) -> bool:
            return time.perf_counter() >= deadline
    else:
        limit = per_connection or 1

        def stop(sent: int) -> bool:
            return sent >= limit

    step = max(1, len(requests) // connections)
    await asyncio.gather(
        *(connection_loop(port, requests, c * step, stop, load) for c in range(connections))
    )
    load.seconds = time.perf_counter() - started  # includes the requests in flight at the end
    return load


def measure(server: Server, requests: Sequence[bytes], connections: int, seconds: float) -> Load:
    """Warm-up (~50 requests over all connections), then the timed closed loop."""
    warm = asyncio.run(
        drive(server.port, requests, connections, per_connection=max(1, 50 // connections + 1))
    )
    if warm.errors:
        raise SystemExit(f"{server.name}: warm-up requests failed: {warm.first_error}")
    progress(f"  {server.name}: {connections} connections for {seconds:.0f}s ...")
    load = asyncio.run(drive(server.port, requests, connections, seconds=seconds))
    progress(
        f"  {server.name}: {load.rps:,.0f} requests/s, p50 {load.ms(50):.2f} ms, "
        f"p99 {load.ms(99):.2f} ms, {load.errors} errors"
    )
    return load


# -- correctness and the in-process client ----------------------------------------------------


def ours_predict(server: Server, rows: Sequence[dict[str, Any]]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        r = http.post(f"/v1/projects/{PROJECT}/predict", content=ours_body_many(rows))
    r.raise_for_status()
    return r


def probabilities(response: httpx.Response) -> np.ndarray:
    preds = response.json()["predictions"]
    classes = sorted(preds[0]["probabilities"])
    return np.array([[p["probabilities"][c] for c in classes] for p in preds])


def ours_body_many(rows: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"rows": list(rows)}).encode("utf-8")


def mlflow_probabilities(server: Server, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    out = []
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for row in rows:  # one row per request, exactly as the load sends them
            r = http.post(
                "/invocations",
                content=mlflow_body(row),
                headers={"Content-Type": "application/json"},
            )
            r.raise_for_status()
            (pred,) = r.json()["predictions"]
            classes = sorted(k for k in pred if k.startswith("proba_"))
            out.append([pred[c] for c in classes])
    return np.array(out)


@dataclass
class ClientTiming:
    n: int
    us: list[float]

    def q(self, q: float) -> float:
        return percentile(self.us, q)


def time_client(
    server: Server, rows: Sequence[dict[str, Any]], n: int, cache: Path
) -> ClientTiming:
    """``Client.pull`` then ``n`` single-row ``Client.predict`` calls (after 500 warm-up)."""
    singles = [[dict(r)] for r in rows]
    timings = []
    with Client(server.base_url, TOKEN, cache) as client:
        client.pull(PROJECT)
        for row in singles[:500]:
            client.predict(PROJECT, row)
        perf = time.perf_counter
        for i in range(n):
            row = singles[i % len(singles)]
            t0 = perf()
            client.predict(PROJECT, row)
            timings.append(perf() - t0)
    return ClientTiming(n, [t * 1e6 for t in timings])


# -- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: 3 s per server, 4 months x 500 rows"
    )
    parser.add_argument("--seconds", type=float, default=None, help="load time per server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--client-n", type=int, default=None, help="timed Client.predict calls")
    parser.add_argument("--timeout", type=float, default=540.0, help="limit for everything (s)")
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip the bare-uvicorn ceiling measurement"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the work dir here")
    return parser.parse_args()


def on_alarm(signum: int, frame: object) -> None:
    # SystemExit, not an Exception: asyncio must not catch it in a transport callback
    raise SystemExit("the benchmark ran past --timeout")


def on_term(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> int:
    args = parse_args()
    quiet()
    size = QUICK if args.quick else FULL
    seconds = args.seconds or (3.0 if args.quick else 20.0)
    client_n = args.client_n or (2_000 if args.quick else 20_000)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.timeout)))
    try:
        return run(args, size, seconds, client_n)
    finally:
        signal.alarm(0)


def run(args: argparse.Namespace, size: Size, seconds: float, client_n: int) -> int:
    with work_dir(args.keep) as root:
        progress(f"building the production bundle ({size.months} months x {size.rows:,} rows)")
        t0 = time.perf_counter()
        prod = build_production(root, size)
        progress(
            f"  {prod.candidate} bundle {prod.bundle_id[:12]} is production "
            f"({time.perf_counter() - t0:.1f}s)"
        )
        bundle_dir = prod.settings.bundles_dir / prod.bundle_id
        logs = root / "logs"
        ours_port, mlflow_port, ceiling_port = free_port(), free_port(), free_port()
        nolog_port = free_port()
        ours_headers = {"Authorization": f"Bearer {TOKEN}"}
        ours_requests = [
            http_request(f"/v1/projects/{PROJECT}/predict", ours_port, ours_body(r), ours_headers)
            for r in prod.rows
        ]
        mlflow_requests = [
            http_request("/invocations", mlflow_port, mlflow_body(r), {}) for r in prod.rows
        ]
        ceiling_requests = [
            http_request(
                f"/v1/projects/{PROJECT}/predict", ceiling_port, ours_body(r), ours_headers
            )
            for r in prod.rows
        ]
        nolog_requests = [
            http_request(f"/v1/projects/{PROJECT}/predict", nolog_port, ours_body(r), ours_headers)
            for r in prod.rows
        ]
        env = venv_env(MLPLATFORM_READER_TOKENS=json.dumps({"bench": TOKEN}))
        sample = prod.rows[:AGREE_ROWS]

        with ExitStack() as stack:
            progress("ours: mlplatform serve ...")
            ours = stack.enter_context(
                running("ours", ours_command(prod.settings, ours_port), ours_port, env, logs)
            )
            wait_ready(
                ours,
                "/healthz",
                lambda r: (
                    r.status_code == 200
                    and r.json()["projects"][PROJECT]["bundle_id"] == prod.bundle_id
                ),
            )
            ours_proba = probabilities(ours_predict(ours, sample))
            answer = ours_predict(ours, sample[:1]).content
            ours_load = measure(ours, ours_requests, args.connections, seconds)
            logged = log_counts(ours)
            progress(f"  prediction log: {logged}")
            progress(f"  Client.pull + {client_n:,} single-row Client.predict ...")
            client = time_client(ours, prod.rows, client_n, root / "client-cache")
            ours.stop()

            progress("ours, prediction log off (monitoring.log.rate: 0) ...")
            cmd = ours_command(prod.settings, nolog_port, log_off(prod.settings))
            nolog = stack.enter_context(running("ours-nolog", cmd, nolog_port, env, logs))
            wait_ready(nolog, "/healthz", lambda r: r.status_code == 200)
            nolog_load = measure(nolog, nolog_requests, args.connections, seconds)
            progress(f"log on vs off, interleaved: {LOG_ROUNDS} rounds of {seconds / 4:.1f}s each")
            again = stack.enter_context(
                running("ours-again", ours_command(prod.settings, ours_port), ours_port, env, logs)
            )
            wait_ready(again, "/healthz", lambda r: r.status_code == 200)
            log_ratios = interleaved(again, nolog, ours_requests, nolog_requests, args, seconds)
            again.stop()
            nolog.stop()

            progress("mlflow: mlflow models serve ...")
            mlflow = stack.enter_context(
                running(
                    "mlflow",
                    mlflow_command(bundle_dir / "model", mlflow_port),
                    mlflow_port,
                    env,
                    logs,
                )
            )
            wait_ready(mlflow, "/ping", lambda r: r.status_code == 200)
            mlflow_proba = mlflow_probabilities(mlflow, sample)
            mlflow_load = measure(mlflow, mlflow_requests, args.connections, seconds)
            mlflow.stop()

            ceiling_load = None
            if not args.no_ceiling:
                progress("ceiling: bare ASGI app on uvicorn ...")
                cmd = ceiling_command(root / "ceiling", answer, ceiling_port)
                ceiling = stack.enter_context(running("ceiling", cmd, ceiling_port, env, logs))
                wait_ready(ceiling, "/", lambda r: r.status_code == 200)
                ceiling_load = measure(ceiling, ceiling_requests, args.connections, seconds)
                ceiling.stop()

    gap = float(np.max(np.abs(ours_proba - mlflow_proba)))
    if not gap <= PARITY_TOLERANCE:
        raise SystemExit(f"the servers disagree: largest probability difference {gap:.2e}")
    ratio = ours_load.rps / mlflow_load.rps if mlflow_load.rps else float("inf")
    cores = os.cpu_count() or 0

    print(
        f"serving benchmark: {PROJECT} production bundle {prod.bundle_id[:12]} "
        f"(winner {prod.candidate}, cutoff {prod.cutoff}; {size.months} months x "
        f"{size.rows:,} rows, window {size.window})"
    )
    print(f"candidates: {candidates_text(prod.spec)}")
    print(
        f"load: closed loop, {args.connections} keep-alive connections, {seconds:.0f} s per "
        f"server, one-row requests cycling through {len(prod.rows):,} landing rows "
        f"(raw asyncio HTTP/1.1 client in this process); servers run one at a time"
    )
    print(
        f"note: the load generator and the server under test share this machine's {cores} CPU cores"
    )
    print()
    headers = ["server", "req/s", "p50_ms", "p90_ms", "p99_ms", "requests", "errors", "what"]
    servers = [
        (
            "ours",
            ours_load,
            "mlplatform serve (uvicorn, 1 worker, log warning): POST /v1/projects/"
            f"{PROJECT}/predict {{rows: [row]}}",
        ),
        (
            "mlflow",
            mlflow_load,
            "mlflow models serve --env-manager local (uvicorn, 1 worker, stock): "
            "POST /invocations {dataframe_split}",
        ),
    ]
    servers.insert(
        1,
        (
            "ours-nolog",
            nolog_load,
            "the same, prediction log off (monitoring.log.rate: 0); ours logs every request",
        ),
    )
    if ceiling_load is not None:
        servers.append(
            (
                "ceiling",
                ceiling_load,
                "reference, not a server: bare ASGI app on the same uvicorn, fixed answer "
                "(no framework, no model)",
            )
        )
    rows = [
        [
            name,
            load.rps,
            load.ms(50),
            load.ms(90),
            load.ms(99),
            load.ok,
            load.errors,
            what,
        ]
        for name, load, what in servers
    ]
    print(table(headers, rows))
    print()
    print(
        table(
            ["in-process", "p50_us", "p90_us", "p99_us", "mean_us", "calls"],
            [
                [
                    "Client.predict (1 row)",
                    client.q(50),
                    client.q(90),
                    client.q(99),
                    statistics.fmean(client.us),
                    client.n,
                ]
            ],
        )
    )
    print()
    ok_ratio = "met" if ratio >= GOAL_RATIO else "MISSED"
    ok_p99 = "met" if ours_load.ms(99) <= GOAL_P99_MS else "MISSED"
    print(f"ratio ours/mlflow req/s: {ratio:.1f} (goal >= {GOAL_RATIO:.0f}: {ok_ratio})")
    print(f"ours p99: {ours_load.ms(99):.2f} ms (goal <= {GOAL_P99_MS:.0f} ms: {ok_p99})")
    log_ratio = statistics.median(log_ratios)
    print(
        f"prediction log on/off req/s, median of {LOG_ROUNDS} interleaved rounds: "
        f"{log_ratio:.3f} ({', '.join(f'{r:.3f}' for r in log_ratios)}); log counts: {logged}"
    )
    print(f"both servers agree on {len(sample)} rows: largest probability difference {gap:.1e}")
    for name, load, _ in servers:
        if load.errors:
            print(f"{name}: first error: {load.first_error}")
    emit(
        {
            "bench": "serving",
            "ours_rps": round(ours_load.rps, 1),
            "ours_p50_ms": round(ours_load.ms(50), 3),
            "ours_p99_ms": round(ours_load.ms(99), 3),
            "mlflow_rps": round(mlflow_load.rps, 1),
            "mlflow_p50_ms": round(mlflow_load.ms(50), 3),
            "mlflow_p99_ms": round(mlflow_load.ms(99), 3),
            "ratio": round(ratio, 2),
            "client_p50_us": round(client.q(50), 1),
            "client_p99_us": round(client.q(99), 1),
            "nolog_rps": round(nolog_load.rps, 1),
            "log_ratio": round(log_ratio, 3),
            "log_dropped": logged.get("dropped", -1),
            "log_written_rows": logged.get("written_rows", -1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
