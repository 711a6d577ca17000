"""Time to create and fully resolve 10,000-task workflows, and readiness cost per task.

Three shapes: a chain, a wide fan-out (one root, 9,998 leaves, one join) and a random DAG
(each task depends on up to three earlier ones). Handlers are no-ops: a loop plays the
worker, claiming tasks and completing them at once through the store, so the figures are
the engine's own overhead. "readiness per task" is the time spent inside the readiness
listener (counters, decisions, admission) divided by the tasks that finished.

    .venv/bin/python bench/dag.py [--tasks 10000] [--database-url URL]

Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from phantom_spire.engine.lifecycle import ExecutionStatus, TaskStatus
from phantom_spire.runtime import Runtime
from phantom_spire.services.workflows import WorkflowRequest
from phantom_spire.settings import Settings
from phantom_spire.store import migrate


def chain(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"s{i}", "handler": "noop", "dependsOn": [f"s{i - 1}"] if i else []}
        for i in range(n)
    ]


def fan_out(n: int) -> list[dict[str, Any]]:
    return [
        {"id": "root", "handler": "noop"},
        {
            "id": "leaf",
            "handler": "noop",
            "dependsOn": ["root"],
            "forEach": list(range(n - 2)),
        },
        {"id": "join", "handler": "noop", "dependsOn": ["leaf"]},
    ]


def random_dag(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    steps = []
    for i in range(n):
        ups = sorted({f"s{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        steps.append({"id": f"s{i}", "handler": "noop", "dependsOn": ups})
    return steps


def run(rt: Runtime, name: str, steps: list[dict[str, Any]], parallel: int) -> None:
    definition = {"name": name, "maxParallel": parallel, "steps": steps}
    started = time.perf_counter()
    workflow = rt.workflows.create_workflow(WorkflowRequest(definition=definition))
    created = time.perf_counter() - started

    stats = rt.workflows.store.stats
    stats.finished_tasks, stats.seconds = 0, 0.0
    resolve_started = time.perf_counter()
    while True:
        claims = rt.store.claim_tasks("bench", 500, 60)
        if not claims:
            break
        for claim in claims:
            rt.store.finish_execution(
                claim,
                "bench",
                execution_status=ExecutionStatus.COMPLETED,
                task_status=TaskStatus.COMPLETED,
                result={},
            )
    resolved = time.perf_counter() - resolve_started
    body = rt.workflows.get_workflow(workflow["id"])
    per_task_ms = 1000 * stats.seconds / max(stats.finished_tasks, 1)
    print(
        f"{name:<10} tasks={body['progress']['total']:>6} status={body['status']:<9} "
        f"create={created:7.2f}s resolve={resolved:7.2f}s "
        f"readiness/task={per_task_ms:6.3f}ms ({stats.finished_tasks} finished)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--parallel", type=int, default=10_000, help="workflow maxParallel")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="spire-dag-")
    url = args.database_url or f"sqlite:///{Path(folder) / 'dag.db'}"
    migrate(url)
    rt = Runtime(Settings(database_url=url, data_dir=Path(folder)), run_migrations=False)
    print(f"store: {rt.store.dialect}; no-op handlers; workflow maxParallel={args.parallel}")
    for name, steps in (
        ("chain", chain(args.tasks)),
        ("fan-out", fan_out(args.tasks)),
        ("random", random_dag(args.tasks)),
    ):
        run(rt, name, steps, args.parallel)
    rt.close()


if __name__ == "__main__":
    main()
