"""Throughput of the embedded default: task creation (HTTP and Python API) and no-op draining.

Prints figures; asserts nothing. Each figure is shown next to a baseline measured in the same
run on the same machine, so the engine's overhead can be read off directly:

* creation, Python API: ``TaskService.create_task`` (validation, one transaction with its
  audit event) against a bare SQLAlchemy insert of the same row in its own transaction;
* creation, HTTP API: ``POST /api/v1/tasks`` from concurrent clients against ``spire serve``;
* draining: queued no-op tasks completed per second by one worker with the default pool.

HTTP load comes from wrk when it is installed (apt-get install wrk): a Python client on the
same two cores saturates before the server does.

Usage: .venv/bin/python bench/throughput.py [--tasks N] [--http-clients C] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.server import SpireServer

from phantom_spire.engine.worker import Worker
from phantom_spire.runtime import Runtime
from phantom_spire.services.identity import SYSTEM
from phantom_spire.services.tasks import TaskSpec
from phantom_spire.settings import Settings
from phantom_spire.store.schema import tasks

NOOP = TaskSpec.model_validate({"name": "bench", "type": "noop"})


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10,.0f} /s  ({n} in {seconds:.2f} s)"


def bench_python_create(runtime: Runtime, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        runtime.tasks.create_task(NOOP)
    return time.perf_counter() - started


def bench_raw_insert(runtime: Runtime, n: int) -> float:
    row = runtime.tasks._build_row(NOOP, execute=False, actor=SYSTEM)
    engine = runtime.store._write_engine
    started = time.perf_counter()
    for i in range(n):
        with engine.begin() as conn:
            conn.execute(sa.insert(tasks).values(**{**row, "id": f"raw-{i}"}))
    return time.perf_counter() - started


def bench_bulk_create(runtime: Runtime, n: int) -> float:
    started = time.perf_counter()
    for start in range(0, n, 1000):
        runtime.tasks.create_tasks([NOOP] * min(1000, n - start), execute=True)
    return time.perf_counter() - started


def bench_drain(runtime: Runtime, n: int) -> tuple[float, list[float]]:
    runtime.tasks.create_tasks([NOOP] * n, execute=True)
    worker = Worker(runtime.store, runtime.registry, runtime.settings)
    claim_latencies: list[float] = []

    async def main() -> float:
        job = asyncio.create_task(worker.run())
        started = time.perf_counter()
        while True:
            counts = await asyncio.to_thread(runtime.store.count_tasks_by_status)
            if counts.get("completed", 0) >= n and not counts.get("queued"):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        worker.stop()
        await job
        return elapsed

    elapsed = asyncio.run(main())
    # Claim latency with a deep queue: time one claim of 1 task from the backlog.
    runtime.tasks.create_tasks([NOOP] * n, execute=True)
    for _ in range(20):
        t0 = time.perf_counter()
        runtime.store.claim_tasks("bench-probe", 1, 30)
        claim_latencies.append(time.perf_counter() - t0)
    return elapsed, claim_latencies


async def _http_create(url: str, n: int, clients: int, headers: dict[str, str]) -> float:
    body = {"name": "bench", "type": "noop"}
    per_client = n // clients

    async def client_loop(http: httpx.AsyncClient) -> None:
        for _ in range(per_client):
            response = await http.post("/api/v1/tasks", json=body)
            response.raise_for_status()

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        return time.perf_counter() - started


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"name": "bench", "type": "noop"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%s"
"""


def _wrk_create(url: str, folder: Path, clients: int, seconds: int, key: str) -> tuple[int, float]:
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT % key)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "-s", str(script), f"{url}/api/v1/tasks"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return total, float(seconds)


def bench_http_create(
    database_url: str, folder: Path, n: int, clients: int
) -> tuple[str, int, float]:
    """POST /tasks from concurrent clients. wrk when installed; httpx (client-bound) if not."""
    server = SpireServer(database_url, folder / "serve.log", run_workers="false").start()
    try:
        if shutil.which("wrk"):
            total, seconds = _wrk_create(server.url, folder, clients, 5, server.api_key)
            return "wrk", total, seconds
        return (
            "httpx, client-bound",
            n,
            asyncio.run(_http_create(server.url, n, clients, server.headers)),
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per measurement")
    parser.add_argument("--http-clients", type=int, default=16)
    parser.add_argument("--postgres", metavar="URL", help="measure on PostgreSQL instead")
    args = parser.parse_args()
    n = args.tasks

    with tempfile.TemporaryDirectory(prefix="spire-bench-") as tmp:
        folder = Path(tmp)
        url = args.postgres or f"sqlite:///{folder / 'bench.db'}"
        runtime = Runtime(Settings(database_url=url))
        store_name = "PostgreSQL" if args.postgres else "SQLite (embedded default)"
        print(f"Phantom Spire throughput, {store_name}, {n} tasks per figure")
        print(
            f"  worker pool: {runtime.settings.workers} slots, poll {runtime.settings.poll_seconds}s"
        )
        print()

        raw = bench_raw_insert(runtime, n)
        py = bench_python_create(runtime, n)
        bulk = bench_bulk_create(runtime, n)
        print("creation")
        print(f"  baseline: bare insert, 1 txn each   {rate(n, raw)}")
        print(
            f"  Python API create_task              {rate(n, py)}   ({py / raw:.1f}x baseline time)"
        )
        print(f"  Python API create_tasks (bulk 1000) {rate(n, bulk)}")
        runtime.close()

        runtime = Runtime(Settings(database_url=url.replace("bench.db", "drain.db")))
        drain, latencies = bench_drain(runtime, n)
        runtime.close()

        client, total, seconds = bench_http_create(
            url.replace("bench.db", "http.db"), folder, n, args.http_clients
        )
        label = f"HTTP API POST /tasks ({client}, {args.http_clients} conns)"
        print(f"  {label:<36}{rate(total, seconds)}")
        print()
        print("execution")
        print(f"  no-op tasks drained, default pool   {rate(n, drain)}")
        print(
            f"  claim latency with {n} queued       median "
            f"{statistics.median(latencies) * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
