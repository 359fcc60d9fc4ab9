"""Single-row in-process prediction latency of ``Client.predict`` (input conversion included).

    python -m mlplatform_tests.serving.bench_client [--n 20000]

Builds real bundles in a temp folder, serves them with uvicorn, pulls the production bundle
with the client, then times ``client.predict(project, [row])`` on raw string rows. Not a test:
timings depend on the machine, so nothing asserts them.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from mlplatform.ledger import Ledger
from mlplatform.serving.app import create_app
from mlplatform.serving.client import Client, ClientError
from mlplatform.settings import load_settings
from mlplatform_tests.serving.builders import PROJECT, build


def served(client: Client) -> str | None:
    try:
        return client.pull(PROJECT).bundle_id
    except ClientError:  # 404 until the server has seen the first promotion
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="timed predictions per bundle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        built = build(root / "build")
        settings = load_settings(
            home=root / "build", projects_dir=built.projects_dir, reader_tokens={"r": "t"}
        )
        ledger = Ledger(settings.ledger)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, poll_seconds=0.05), log_level="warning")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        previous = None
        for key in ("a", "b"):
            bundle_id = built.bundles[key]
            ledger.promote(PROJECT, bundle_id, "bench", "bench", expected_from=previous)
            previous = bundle_id
            with Client(url, "t", root / "cache") as client:
                while served(client) != bundle_id:
                    time.sleep(0.05)
                candidate = client.pull(PROJECT).manifest["candidate"]
                rows = [[dict(r)] for r in built.rows]
                for row in rows[:500]:
                    client.predict(PROJECT, row)
                timings = []
                for i in range(args.n):
                    row = rows[i % len(rows)]
                    t0 = time.perf_counter()
                    client.predict(PROJECT, row)
                    timings.append(time.perf_counter() - t0)
            timings.sort()
            us = [t * 1e6 for t in timings]
            print(
                f"{candidate:>8}: single-row Client.predict  p50 {us[len(us) // 2]:6.1f} µs  "
                f"p90 {us[int(len(us) * 0.9)]:6.1f} µs  p99 {us[int(len(us) * 0.99)]:6.1f} µs  "
                f"mean {statistics.fmean(us):6.1f} µs  (n={len(us)})"
            )
        server.should_exit = True
        thread.join(10)
        ledger.dispose()


if __name__ == "__main__":
    main()
