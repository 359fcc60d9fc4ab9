"""Abusive requests against a real ``mlplatform serve`` process, and ``/healthz`` latency
while they run (used by the hardening test and ``bench/healthz_abuse.py``)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlplatform_tests import waiting

PROJECT = "shop"
ROWS = 10_000_000  # {} rows: 28 MiB, under the predict cap, 1000x the row limit
DECLARED = 300 * 1024 * 1024  # the Content-Length an unauthenticated decision claims


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_process(
    home: Path, projects: Path, tokens: dict[str, dict[str, str]], log: Path
) -> Iterator[str]:
    """``mlplatform serve`` in its own process group on a free port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "MLPLATFORM_READER_TOKENS": json.dumps(tokens.get("reader_tokens", {})),
        "MLPLATFORM_APPROVER_TOKENS": json.dumps(tokens.get("approver_tokens", {})),
    }
    argv = [sys.executable, "-m", "mlplatform.cli", "serve", "--home", str(home)]
    argv += ["--projects", str(projects), "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        waiting.wait_for("mlplatform serve to answer /healthz", up, 60, interval=0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)


def raw_status(url: str, head: str, body: bytes, timeout: float = 10.0) -> int:
    """Send a request head and the first part of its body on a raw socket; the status of the
    answer (read without sending the rest). Raises TimeoutError when none comes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed without an answer: {answer!r}")
            answer += chunk
        return int(answer.split(b" ", 2)[1])


def request_head(method: str, path: str, headers: dict[str, str]) -> str:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return "\r\n".join(lines) + "\r\n"


def unauthenticated_huge_decision(url: str, bundle_id: str) -> int:
    """An approval claiming 300 MB without a token; only its first MiB is sent."""
    head = request_head(
        "POST",
        f"/v1/projects/{PROJECT}/candidates/{bundle_id}/approve",
        {"Content-Type": "application/json", "Content-Length": str(DECLARED)},
    )
    return raw_status(url, head, b"{" + b" " * (1 << 20))


def oversize_decision(url: str, bundle_id: str, token: str) -> int:
    """An approver's approval streamed in chunks (no Content-Length) past the cap."""

    def chunks() -> Iterator[bytes]:
        yield b'{"comment": "'
        for _ in range(64):
            yield b"x" * 16384

    path = f"/v1/projects/{PROJECT}/candidates/{bundle_id}/approve"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        return httpx.post(f"{url}{path}", content=chunks(), headers=headers, timeout=30).status_code
    except httpx.HTTPError:  # the server may close while we still send
        return 0


def many_rows_body(rows: int = ROWS) -> bytes:
    return b'{"rows": [' + b"{}," * (rows - 1) + b"{}]}"


def many_rows(url: str, token: str, body: bytes) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.post(
        f"{url}/v1/projects/{PROJECT}/predict", content=body, headers=headers, timeout=60
    ).status_code


@dataclass
class AbuseResult:
    """``/healthz`` latencies (seconds) and the statuses each abuser got."""

    healthz: list[float] = field(default_factory=list)
    healthz_errors: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def p(self, q: float) -> float:
        ordered = sorted(self.healthz)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _loop(send: Callable[[], int], stop: Any, started: Any, out: Any) -> None:
    statuses: Counter[int] = Counter()
    while not stop.is_set():
        try:
            status = send()
        except (OSError, httpx.HTTPError):
            status = 0
        statuses[status] += 1
        started.set()
    out.put(dict(statuses))


def abuse(url: str, abusers: dict[str, Callable[[], int]], seconds: float) -> AbuseResult:
    """Run every abuser in a loop in its own (forked) process for ``seconds`` while one client
    asks ``/healthz`` back to back; return the latencies and statuses. Processes, so that the
    abusers' own work does not delay this process's measuring client."""
    result = AbuseResult(statuses={name: Counter() for name in abusers})
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    running = []
    started = []
    for name, send in abusers.items():
        out, first = context.Queue(), context.Event()
        process = context.Process(target=_loop, args=(send, stop, first, out), daemon=True)
        process.start()
        running.append((name, process, out))
        started.append(first)
    waiting.wait_for(
        "every abuser to have sent a request",
        lambda: all(e.is_set() for e in started),
        60,
        interval=0.01,
    )
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                ok = client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            result.healthz.append(time.perf_counter() - start)
            result.healthz_errors += not ok
            waiting.let_time_pass(0.005)  # pace the measuring client: a steady probe
    stop.set()
    for name, process, out in running:
        result.statuses[name].update(out.get(timeout=120))
        process.join(30)
    return result
